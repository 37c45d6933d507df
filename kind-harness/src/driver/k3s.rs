//! The `k3s` cluster driver: a real Kubernetes (K3s, one server node) started in Docker through
//! the `testcontainers` crate's K3s module, with sliceguard deployed on it the way `kind-harness up`
//! deploys it on kind (the image built from the repository's Dockerfile and imported into K3s's
//! containerd, `deploy/overlays/fake-fleet` rendered with a fresh webhook certificate, a fake fleet
//! registered with `sliceguard register`), so the same scenarios run on it.
//!
//! It needs a Docker engine and the K3s image (pulled from a registry, or loaded beforehand). When
//! either is missing, [`start`] fails with a message naming which, and `kind-harness conformance`
//! exits 2. The container is removed when the driver stops (testcontainers drops it).

use super::{DriverError, DriverOptions};
use crate::kind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testcontainers_modules::k3s::{K3s, KUBE_SECURE_PORT};
use testcontainers_modules::testcontainers::core::client::ClientError;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt, TestcontainersError};

/// The K3s image the tier runs by default: Kubernetes v1.33, the oldest the workspace's
/// k8s-openapi supports (as the kind tier's `K8S_VERSION`).
pub const K3S_IMAGE: &str = "rancher/k3s:v1.33.1-k3s1";

/// A running K3s container with sliceguard deployed.
pub struct K3sCluster {
    container: ContainerAsync<K3s>,
    /// The kubeconfig file written for the host (server rewritten to the mapped port).
    pub kubeconfig: PathBuf,
}

impl std::fmt::Debug for K3sCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("K3sCluster")
            .field("container", &self.container.id())
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl K3sCluster {
    /// Removes the container.
    pub async fn stop(self) {
        let _ = self.container.rm().await;
    }
}

/// Splits `name:tag` (a registry port's colon is not a tag).
pub fn split_image(image: &str) -> Result<(&str, &str), String> {
    match image.rsplit_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            Ok((name, tag))
        }
        _ => Err(format!(
            "--k3s-image {image:?}: expected NAME:TAG (e.g. {K3S_IMAGE})"
        )),
    }
}

/// The error for a failed container start, naming Docker or the image as what is missing.
pub fn start_error(image: &str, error: &TestcontainersError) -> String {
    let text = error.to_string();
    let docker_missing = |detail: &str| {
        let lower = detail.to_lowercase();
        lower.contains("socket")
            || lower.contains("connect")
            || lower.contains("no such file")
            || lower.contains("docker_host")
    };
    match error {
        TestcontainersError::Client(ClientError::PullImage { err, .. })
            if !docker_missing(&err.to_string()) =>
        {
            format!(
                "--cluster k3s: the image {image} is not available: it is not present in Docker and cannot be pulled ({text}). Pull or `docker load` it where a registry is reachable, or pass --k3s-image"
            )
        }
        _ if docker_missing(&text) => format!(
            "--cluster k3s needs a running Docker engine, and none answers ({text}). Start Docker (or set DOCKER_HOST); the image {image} is needed too"
        ),
        _ => format!(
            "--cluster k3s: Docker could not start the image {image} ({text}). It needs a running Docker engine that may run privileged containers, and the image"
        ),
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), DriverError> {
    kind::run_command(program, args).map_err(|e| DriverError::Connect(e.message))
}

/// Starts K3s, deploys sliceguard on it, and returns the cluster and its kubeconfig.
pub async fn start(options: &DriverOptions, repo: &Path) -> Result<K3sCluster, DriverError> {
    let missing = kind::missing_tools(&["docker", "kubectl"], None);
    if !missing.is_empty() {
        return Err(DriverError::Connect(format!(
            "--cluster k3s needs Docker (the engine, and the docker CLI to build and import the sliceguard image), kubectl and the image {}; not on PATH: {}",
            options.k3s_image,
            missing.join(", ")
        )));
    }
    let (name, tag) = split_image(&options.k3s_image).map_err(DriverError::Usage)?;
    let state = repo.join("target/kind-harness/k3s");
    std::fs::create_dir_all(&state)
        .map_err(|e| DriverError::Connect(format!("creating {}: {e}", state.display())))?;
    eprintln!("starting {} with testcontainers ...", options.k3s_image);
    let container = K3s::default()
        .with_conf_mount(&state)
        .with_name(name)
        .with_tag(tag)
        .with_privileged(true)
        .with_userns_mode("host")
        .start()
        .await
        .map_err(|e| DriverError::Connect(start_error(&options.k3s_image, &e)))?;
    let port = container
        .get_host_port_ipv4(KUBE_SECURE_PORT)
        .await
        .map_err(|e| DriverError::Connect(format!("the K3s API port is not mapped: {e}")))?;
    let text = container
        .image()
        .read_kube_config()
        .map_err(|e| DriverError::Connect(format!("reading K3s's kubeconfig: {e}")))?;
    let text = text.replace(
        "https://127.0.0.1:6443",
        &format!("https://127.0.0.1:{port}"),
    );
    let kubeconfig = state.join("kubeconfig");
    std::fs::write(&kubeconfig, text)
        .map_err(|e| DriverError::Connect(format!("writing {}: {e}", kubeconfig.display())))?;
    let cluster = K3sCluster {
        container,
        kubeconfig,
    };
    deploy(options, repo, &cluster).await?;
    Ok(cluster)
}

/// Builds and imports the sliceguard image, applies the rendered manifest, registers a fake fleet
/// on the K3s node, and waits for the Deployment.
async fn deploy(
    options: &DriverOptions,
    repo: &Path,
    cluster: &K3sCluster,
) -> Result<(), DriverError> {
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let image = options.image.as_str();
    run(
        "docker",
        &["build", "-t", image, &repo.display().to_string()],
    )?;
    let import = format!(
        "docker save {image} | docker exec -i {} ctr images import -",
        cluster.container.id()
    );
    run("sh", &["-c", &import])?;
    // The fake-fleet overlay: a K3s node has no GPU, so `sliceguard register` gives it a fake fleet.
    let template = kind::render_overlay(repo, "fake-fleet").map_err(DriverError::Usage)?;
    let version = split_image(&options.k3s_image)
        .map(|(_, tag)| tag.split('-').next().unwrap_or(tag).to_string())
        .map_err(DriverError::Usage)?;
    let tls = kind::webhook_tls().map_err(DriverError::Connect)?;
    let manifest =
        kind::deploy_manifest(&template, &version, image, &tls).map_err(DriverError::Usage)?;
    let path = cluster
        .kubeconfig
        .with_file_name("sliceguard.rendered.yaml");
    std::fs::write(&path, manifest)
        .map_err(|e| DriverError::Connect(format!("writing {}: {e}", path.display())))?;
    run(
        "kubectl",
        &[
            "--kubeconfig",
            &kubeconfig,
            "apply",
            "-f",
            &path.display().to_string(),
        ],
    )?;
    run(
        "kubectl",
        &[
            "--kubeconfig",
            &kubeconfig,
            "label",
            "nodes",
            "--all",
            "gpu=on",
            "--overwrite",
        ],
    )?;
    let sliceguard = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("sliceguard")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("sliceguard"));
    let gpus = options.fleet.gpus_per_node.to_string();
    let memory = options.fleet.memory_mib.to_string();
    // As on kind: register runs as the overlay's own least-privilege ServiceAccount.
    let dir = cluster
        .kubeconfig
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let register = kind::register_kubeconfig(&["--kubeconfig", &kubeconfig], &dir)
        .map_err(|e| DriverError::Connect(e.message))?
        .display()
        .to_string();
    kind::register_fake_fleet(&sliceguard, &["--kubeconfig", &register], &gpus, &memory)
        .map_err(|e| DriverError::Connect(e.message))?;
    let wait = format!(
        "--timeout={}s",
        options.waits.timeout.max(Duration::from_secs(60)).as_secs()
    );
    run(
        "kubectl",
        &[
            "--kubeconfig",
            &kubeconfig,
            "-n",
            kind::NAMESPACE,
            "rollout",
            "status",
            "deployment/sliceguard-scheduler",
            &wait,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_split_into_name_and_tag() {
        assert_eq!(split_image(K3S_IMAGE), Ok(("rancher/k3s", "v1.33.1-k3s1")));
        assert_eq!(
            split_image("localhost:5000/k3s:v1"),
            Ok(("localhost:5000/k3s", "v1"))
        );
        assert!(
            split_image("localhost:5000/k3s")
                .unwrap_err()
                .contains("NAME:TAG")
        );
        assert!(split_image("k3s").is_err());
    }
}
