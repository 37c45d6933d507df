//! `kind-harness up` and `down`: sliceguard on a kind cluster, and the preflight every kind verb
//! runs first.
//!
//! `up` does, in order (each step names its command when it fails):
//! 1. the preflight: `docker`, `kind` and `kubectl` on PATH, or exit 2 listing every missing one;
//! 2. `kind create cluster` with `deploy/kind-cluster.yaml` and the node image
//!    `kindest/node:<K8S_VERSION>` (skipped when the cluster exists);
//! 3. `docker build` of the repository's `Dockerfile` and `kind load docker-image`;
//! 4. a CA and a webhook serving certificate generated now ([`webhook_tls`]), the kustomize overlay
//!    `deploy/overlays/<--overlay>` (default `fake-fleet`) rendered with `kubectl kustomize`
//!    ([`render_overlay`]), its placeholders replaced with `K8S_VERSION` (the kube-scheduler image:
//!    the same version as the node image), the image and the CA bundle, plus the TLS Secret,
//!    applied with `kubectl apply`;
//! 5. the worker nodes labelled as the seed lab labels them and a fake fleet registered with
//!    `sliceguard register`, which runs as the ServiceAccount `sliceguard-register` (a token from
//!    `kubectl create token`, in a kubeconfig written next to the rendered manifest) when the
//!    overlay is fake-fleet;
//! 6. `kubectl rollout status` of the Deployment, then a server-side dry-run pod create until the
//!    webhook answers (the dry-run pod comes back with sliceguard's `schedulerName`).
//!
//! `down` runs `kind delete cluster`.

use crate::driver::DriverError;
use base64::Engine;
use clap::Args;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The overlay `up` deploys unless told otherwise.
pub const DEFAULT_OVERLAY: &str = "fake-fleet";

/// The overlays, and how `up` renders one (shared with the embedded cluster, which reads its
/// webhook configuration from the same rendering).
pub use sliceguard_sim::deploy::{OVERLAYS, render_overlay};

/// The ServiceAccount `sliceguard register` runs as (the fake-fleet overlay's).
pub const REGISTER_ACCOUNT: &str = "sliceguard-register";

/// The kubeconfig `kubectl config view --minify --raw -o json` printed, with its user replaced by
/// `account`'s bearer `token`: the context's cluster, nothing of the admin's credentials.
pub fn service_account_kubeconfig(raw: &str, account: &str, token: &str) -> Result<String, String> {
    if token.is_empty() {
        return Err(format!("kubectl create token {account} printed no token"));
    }
    let mut config: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| format!("kubectl config view --minify --raw -o json: {e}"))?;
    let contexts = config["contexts"]
        .as_array_mut()
        .filter(|c| c.len() == 1)
        .ok_or("kubectl config view --minify: expected exactly one context")?;
    contexts[0]["context"]["user"] = serde_json::Value::String(account.to_string());
    config["users"] = serde_json::json!([{"name": account, "user": {"token": token}}]);
    serde_json::to_string_pretty(&config).map_err(|e| e.to_string())
}

/// Runs `sliceguard register` on the nodes labelled `gpu=on`, as `identity` (kubectl-style
/// connection flags), with `gpus` GPUs of `memory` MiB each: the fake fleet both the kind and the
/// k3s tiers schedule onto.
pub fn register_fake_fleet(
    sliceguard: &Path,
    identity: &[&str],
    gpus: &str,
    memory: &str,
) -> Result<(), KindError> {
    let mut args = vec!["register"];
    args.extend_from_slice(identity);
    args.extend_from_slice(&[
        "--nodes",
        "gpu=on",
        "--gpus-per-node",
        gpus,
        "--memory",
        memory,
    ]);
    run_command(&sliceguard.display().to_string(), &args)
}

/// A kubeconfig for the `sliceguard-register` ServiceAccount (the fake-fleet overlay's
/// least-privilege identity for `sliceguard register`), written privately into `dir`: a 15-minute
/// token from `kubectl create token`, on the server and CA of the admin connection `admin` (kubectl
/// flags naming it: `--context NAME` or `--kubeconfig FILE`). The kind and k3s tiers both register
/// through it, so both exercise that ClusterRole.
pub fn register_kubeconfig(admin: &[&str], dir: &Path) -> Result<PathBuf, KindError> {
    let kubectl = |rest: &[&str]| {
        let args: Vec<&str> = admin.iter().chain(rest).copied().collect();
        command_output("kubectl", &args)
    };
    let token = kubectl(&[
        "-n",
        NAMESPACE,
        "create",
        "token",
        REGISTER_ACCOUNT,
        "--duration=15m",
    ])?;
    let raw = kubectl(&["config", "view", "--minify", "--raw", "-o", "json"])?;
    let kubeconfig = service_account_kubeconfig(&raw, REGISTER_ACCOUNT, token.trim())
        .map_err(KindError::failed)?;
    let path = dir.join("register.kubeconfig");
    write_private(&path, &kubeconfig)?;
    Ok(path)
}

/// Writes `text` to `path`, readable by the owner only (it holds a token).
fn write_private(path: &Path, text: &str) -> Result<(), KindError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| KindError::failed(format!("writing {}: {e}", path.display())))
}

/// The tools every kind verb needs.
pub const KIND_TOOLS: [&str; 3] = ["docker", "kind", "kubectl"];

/// The namespace sliceguard is deployed into.
pub const NAMESPACE: &str = "sliceguard-system";

/// The webhook's Service name (the certificate's DNS names derive from it).
pub const SERVICE: &str = "sliceguard-webhook";

/// The tools of `tools` not found on `path` (a `PATH`-style list; `None` reads the environment).
pub fn missing_tools(tools: &[&str], path: Option<OsString>) -> Vec<String> {
    let path = path
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    tools
        .iter()
        .filter(|tool| !dirs.iter().any(|dir| is_executable(&dir.join(tool))))
        .map(|tool| (*tool).to_string())
        .collect()
}

fn is_executable(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                meta.permissions().mode() & 0o111 != 0
            }
            #[cfg(not(unix))]
            {
                true
            }
        }
        _ => false,
    }
}

/// The preflight as an error: every missing tool, or nothing.
pub fn preflight_or_error(tools: &[&str]) -> Result<(), DriverError> {
    let missing = missing_tools(tools, None);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DriverError::MissingTools(missing))
    }
}

/// The message printed when tools are missing (then the process exits 2).
pub fn missing_tools_message(missing: &[String]) -> String {
    let mut text = format!(
        "preflight failed: {} not found on PATH:\n",
        if missing.len() == 1 {
            "this tool was"
        } else {
            "these tools were"
        }
    );
    for tool in missing {
        let hint = match tool.as_str() {
            "docker" => "https://docs.docker.com/engine/install/",
            "kind" => "https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
            "kubectl" => "https://kubernetes.io/docs/tasks/tools/",
            _ => "",
        };
        text.push_str(&format!("  - {tool}  ({hint})\n"));
    }
    text.push_str("`make kind-tools` installs kind and kubectl (ci/install-kind-tools.sh); docker must be installed by you.");
    text
}

/// Options shared by `up` and `down`.
#[derive(Debug, Args, Clone)]
pub struct KindArgs {
    /// kind cluster name (the kubeconfig context becomes kind-<NAME>).
    #[arg(long, default_value = "sliceguard")]
    pub name: String,
}

/// Create a kind cluster (one control plane, three workers) and deploy sliceguard on it.
#[derive(Debug, Args)]
#[command(
    after_help = "Needs docker, kind and kubectl on PATH (exit 2 naming the missing ones otherwise).\n\nExamples:\n  make kind-up                                   # K8S_VERSION pinned in the Makefile\n  kind-harness up --k8s-version v1.33.1\n  kind-harness up --k8s-version v1.33.1 --gpu-memory 40000   # a smaller fake fleet"
)]
pub struct UpArgs {
    #[command(flatten)]
    pub kind: KindArgs,
    /// Kubernetes version for the kind node image and the kube-scheduler image (v1.33 or newer);
    /// default: the K8S_VERSION environment variable (the Makefile pins it).
    #[arg(long, value_name = "vX.Y.Z")]
    pub k8s_version: Option<String>,
    /// The sliceguard image tag built from the repository's Dockerfile and loaded into kind.
    #[arg(long, default_value = "sliceguard:dev")]
    pub image: String,
    /// Repository root (holding Dockerfile and deploy/).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// The kustomize overlay under deploy/overlays/ to deploy (fake-fleet: `sliceguard register`ed
    /// fake GPUs, the lock released after bind).
    #[arg(long, default_value = DEFAULT_OVERLAY)]
    pub overlay: String,
    /// Fake GPUs per worker node registered with `sliceguard register`.
    #[arg(long, default_value_t = 8)]
    pub gpus_per_node: u32,
    /// MiB per fake GPU.
    #[arg(long, default_value_t = 81920)]
    pub gpu_memory: u32,
    /// The `sliceguard` binary used for `sliceguard register` (default: next to this binary, then PATH).
    #[arg(long)]
    pub sliceguard: Option<PathBuf>,
    /// How long to wait for the Deployment and the webhook, in seconds.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

/// Delete the kind cluster.
#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub kind: KindArgs,
}

/// A failed step of `up`/`down`: the exit code (2 for missing tools and bad input, 1 otherwise)
/// and the message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KindError {
    /// Process exit code.
    pub code: u8,
    /// What went wrong.
    pub message: String,
}

impl KindError {
    fn usage(message: impl Into<String>) -> KindError {
        KindError {
            code: 2,
            message: message.into(),
        }
    }

    fn failed(message: impl Into<String>) -> KindError {
        KindError {
            code: 1,
            message: message.into(),
        }
    }
}

fn preflight() -> Result<(), KindError> {
    let missing = missing_tools(&KIND_TOOLS, None);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KindError::usage(missing_tools_message(&missing)))
    }
}

/// Checks a Kubernetes version: `vMAJOR.MINOR.PATCH`, 1.33 or newer.
pub fn check_k8s_version(version: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "K8S_VERSION {version:?} is not a version like v1.33.1 (v1.33 or newer is required)"
        )
    };
    let rest = version.strip_prefix('v').ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let numbers: Vec<u32> = parts
        .iter()
        .map(|p| p.parse::<u32>().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    if numbers[0] != 1 || numbers[1] < 33 {
        return Err(format!(
            "K8S_VERSION {version:?} is older than v1.33 (the kind tier pins v1.33 or newer)"
        ));
    }
    Ok(())
}

/// Renders the deploy template: every `${K8S_VERSION}`, `${IMAGE}` and `${CA_BUNDLE}` replaced;
/// an error names any `${...}` left over.
pub fn render_template(
    template: &str,
    k8s_version: &str,
    image: &str,
    ca_bundle_b64: &str,
) -> Result<String, String> {
    let rendered = template
        .replace("${K8S_VERSION}", k8s_version)
        .replace("${IMAGE}", image)
        .replace("${CA_BUNDLE}", ca_bundle_b64);
    if let Some(at) = rendered.find("${") {
        let end = rendered[at..]
            .find('}')
            .map_or(rendered.len(), |e| at + e + 1);
        return Err(format!(
            "deploy template: unknown placeholder {} left after rendering",
            &rendered[at..end]
        ));
    }
    Ok(rendered)
}

/// The webhook's TLS material: a CA generated now and a serving certificate it signed.
#[derive(Debug, Clone)]
pub struct WebhookTls {
    /// The CA certificate (PEM), whose base64 is the webhook's `caBundle`.
    pub ca_pem: String,
    /// The serving certificate (PEM).
    pub cert_pem: String,
    /// The serving key (PEM).
    pub key_pem: String,
}

/// The DNS names the webhook Service answers to inside the cluster.
pub fn webhook_dns_names() -> Vec<String> {
    vec![
        format!("{SERVICE}.{NAMESPACE}.svc"),
        format!("{SERVICE}.{NAMESPACE}.svc.cluster.local"),
        format!("{SERVICE}.{NAMESPACE}"),
        SERVICE.to_string(),
    ]
}

/// Generates a CA and a serving certificate for [`webhook_dns_names`].
pub fn webhook_tls() -> Result<WebhookTls, String> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| format!("generating the webhook certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sliceguard-webhook-ca");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(webhook_dns_names()).map_err(err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{SERVICE}.{NAMESPACE}.svc"));
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    Ok(WebhookTls {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The Secret `sliceguard-webhook-tls` (type `kubernetes.io/tls`) as YAML.
pub fn tls_secret_yaml(tls: &WebhookTls) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sliceguard-webhook-tls\n  namespace: {NAMESPACE}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&tls.cert_pem),
        b64(&tls.key_pem)
    )
}

/// The whole manifest `up` applies: the rendered template and the TLS Secret.
pub fn deploy_manifest(
    template: &str,
    k8s_version: &str,
    image: &str,
    tls: &WebhookTls,
) -> Result<String, String> {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(tls.ca_pem.as_bytes());
    let rendered = render_template(template, k8s_version, image, &ca_bundle)?;
    Ok(format!("{rendered}\n---\n{}", tls_secret_yaml(tls)))
}

/// Runs `program args`, echoing the command line (`+ ...`) first; fails naming it.
pub fn run_command(program: &str, args: &[&str]) -> Result<(), KindError> {
    let shown = format!("{program} {}", args.join(" "));
    eprintln!("+ {shown}");
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| KindError::failed(format!("`{shown}` did not start: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(KindError::failed(format!("`{shown}` failed ({status})")))
    }
}

fn command_output(program: &str, args: &[&str]) -> Result<String, KindError> {
    let shown = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| KindError::failed(format!("`{shown}` did not start: {e}")))?;
    if !out.status.success() {
        return Err(KindError::failed(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sliceguard_binary(given: Option<&PathBuf>) -> Result<PathBuf, KindError> {
    if let Some(path) = given {
        return Ok(path.clone());
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        let next = dir.join("sliceguard");
        if is_executable(&next) {
            return Ok(next);
        }
    }
    if missing_tools(&["sliceguard"], None).is_empty() {
        return Ok(PathBuf::from("sliceguard"));
    }
    Err(KindError::usage(
        "the sliceguard binary was not found next to kind-harness nor on PATH: run `cargo build -p sliceguard-scheduler` or pass --sliceguard",
    ))
}

/// `kind-harness up`.
pub fn up(args: &UpArgs) -> Result<(), KindError> {
    preflight()?;
    let version = args
        .k8s_version
        .clone()
        .or_else(|| std::env::var("K8S_VERSION").ok())
        .ok_or_else(|| {
            KindError::usage("no Kubernetes version: pass --k8s-version or set K8S_VERSION (the Makefile pins it)")
        })?;
    check_k8s_version(&version).map_err(KindError::usage)?;
    let name = args.kind.name.as_str();
    let context = format!("kind-{name}");
    let cluster_config = args.repo.join("deploy/kind-cluster.yaml");
    eprintln!(
        "+ kubectl kustomize {}",
        args.repo
            .join("deploy/overlays")
            .join(&args.overlay)
            .display()
    );
    let template = render_overlay(&args.repo, &args.overlay).map_err(KindError::usage)?;
    let sliceguard = sliceguard_binary(args.sliceguard.as_ref())?;

    let clusters = command_output("kind", &["get", "clusters"])?;
    if clusters.lines().any(|l| l.trim() == name) {
        eprintln!("kind cluster {name} exists; reusing it");
    } else {
        let image = format!("kindest/node:{version}");
        let config = cluster_config.display().to_string();
        run_command(
            "kind",
            &[
                "create", "cluster", "--name", name, "--image", &image, "--config", &config,
                "--wait", "180s",
            ],
        )?;
    }
    let repo = args.repo.display().to_string();
    run_command("docker", &["build", "-t", &args.image, &repo])?;
    run_command(
        "kind",
        &["load", "docker-image", &args.image, "--name", name],
    )?;

    let tls = webhook_tls().map_err(KindError::failed)?;
    let manifest =
        deploy_manifest(&template, &version, &args.image, &tls).map_err(KindError::usage)?;
    let state = args.repo.join("target/kind-harness").join(name);
    std::fs::create_dir_all(&state)
        .map_err(|e| KindError::failed(format!("creating {}: {e}", state.display())))?;
    let manifest_path = state.join("sliceguard.rendered.yaml");
    std::fs::write(&manifest_path, &manifest)
        .map_err(|e| KindError::failed(format!("writing {}: {e}", manifest_path.display())))?;
    let manifest_arg = manifest_path.display().to_string();
    run_command(
        "kubectl",
        &["--context", &context, "apply", "-f", &manifest_arg],
    )?;
    run_command(
        "kubectl",
        &[
            "--context",
            &context,
            "label",
            "nodes",
            "-l",
            "!node-role.kubernetes.io/control-plane",
            "gpu=on",
            "run.ai/simulated-gpu-node-pool=default",
            "--overwrite",
        ],
    )?;
    let gpus = args.gpus_per_node.to_string();
    let memory = args.gpu_memory.to_string();
    // register runs as its own ServiceAccount where the overlay has one (fake-fleet), so the kind
    // tier exercises its least-privilege ClusterRole; elsewhere with the kind admin context.
    let identity = if args.overlay == DEFAULT_OVERLAY {
        let path = register_kubeconfig(&["--context", &context], &state)?;
        ["--kubeconfig".to_string(), path.display().to_string()]
    } else {
        ["--context".to_string(), context.clone()]
    };
    register_fake_fleet(&sliceguard, &[&identity[0], &identity[1]], &gpus, &memory)?;
    let wait = format!("--timeout={}s", args.wait_secs);
    run_command(
        "kubectl",
        &[
            "--context",
            &context,
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            "deployment/sliceguard-scheduler",
            &wait,
        ],
    )?;
    wait_for_webhook(&context, Duration::from_secs(args.wait_secs))?;
    eprintln!(
        "kind cluster {name} is up with sliceguard ({}, Kubernetes {version}); next: make kind-conformance",
        args.image
    );
    Ok(())
}

/// A GPU pod for the server-side dry run that proves the webhook answers.
pub fn webhook_probe_pod() -> k8s_openapi::api::core::v1::Pod {
    let mut pod = sliceguard::objects::gpu_pod(
        "sliceguard-webhook-probe",
        &[],
        &[sliceguard::objects::GpuAsk::fraction(1000, 10)],
    );
    pod.metadata.namespace = Some("default".into());
    pod
}

fn wait_for_webhook(context: &str, timeout: Duration) -> Result<(), KindError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KindError::failed(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async {
        let (client, _) = crate::driver::connect_kubeconfig(
            None,
            Some(context.to_string()),
            Duration::from_secs(30),
        )
        .await
        .map_err(KindError::failed)?;
        let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client, "default");
        let params = kube::api::PostParams {
            dry_run: true,
            ..Default::default()
        };
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            match pods.create(&params, &webhook_probe_pod()).await {
                Ok(pod) => {
                    let name = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.scheduler_name.clone())
                        .unwrap_or_default();
                    if name == "sliceguard-scheduler" {
                        eprintln!("the webhook answers (a dry-run GPU pod is routed to {name})");
                        return Ok(());
                    }
                    last = format!("the dry-run pod came back with schedulerName {name:?}");
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Err(KindError::failed(format!(
            "the webhook did not answer within {timeout:?}: {last}"
        )))
    })
}

/// `kind-harness down`.
pub fn down(args: &DownArgs) -> Result<(), KindError> {
    preflight()?;
    run_command("kind", &["delete", "cluster", "--name", &args.kind.name])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_path_misses_every_tool() {
        assert_eq!(
            missing_tools(&KIND_TOOLS, Some(OsString::new())),
            vec!["docker", "kind", "kubectl"]
        );
    }

    #[test]
    fn a_present_tool_is_not_missing() {
        let dir = std::env::temp_dir().join(format!("kh-preflight-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kind = dir.join("kind");
        std::fs::write(&kind, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&kind, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let missing = missing_tools(&KIND_TOOLS, Some(dir.clone().into_os_string()));
        assert_eq!(missing, vec!["docker", "kubectl"]);
        let message = missing_tools_message(&missing);
        assert!(message.contains("- docker") && message.contains("- kubectl"));
        assert!(!message.contains("- kind "));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn versions() {
        assert!(check_k8s_version("v1.33.1").is_ok());
        assert!(check_k8s_version("v1.34.0").is_ok());
        assert!(check_k8s_version("v1.31.0").unwrap_err().contains("older"));
        assert!(
            check_k8s_version("1.33.1")
                .unwrap_err()
                .contains("\"1.33.1\"")
        );
        assert!(check_k8s_version("v1.33").is_err());
        assert!(check_k8s_version("v1.x.1").is_err());
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let err =
            render_template("a: ${IMAGE}\nb: ${NOPE}\n", "v1.33.1", "img", "Q0E=").unwrap_err();
        assert!(err.contains("${NOPE}"), "{err}");
        let ok = render_template(
            "a: ${IMAGE}:${K8S_VERSION} ${CA_BUNDLE}",
            "v1.33.1",
            "i",
            "Q0E=",
        )
        .unwrap();
        assert_eq!(ok, "a: i:v1.33.1 Q0E=");
    }

    #[test]
    fn the_serving_certificate_is_signed_by_the_bundled_ca() {
        let tls = webhook_tls().unwrap();
        assert!(tls.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(tls.key_pem.contains("PRIVATE KEY"));
        assert_ne!(tls.ca_pem, tls.cert_pem);
        // The secret carries the serving pair, base64-encoded.
        let secret = tls_secret_yaml(&tls);
        let b64 = base64::engine::general_purpose::STANDARD.encode(tls.cert_pem.as_bytes());
        assert!(secret.contains(&b64));
    }
}
