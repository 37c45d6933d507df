//! The kind tier without kind: the preflight (an empty PATH names every missing tool and exits 2,
//! never a panic), the deploy manifests parsed into their Kubernetes types (and applied to the
//! simulated store where it serves the kind), the rendered webhook certificate verified against
//! the bundled CA, the kind cluster config, and the nightly workflow calling only Makefile verbs.

mod binary;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kind_harness::kind::{
    OVERLAYS, deploy_manifest, render_overlay, webhook_dns_names, webhook_probe_pod, webhook_tls,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn harness(args: &[&str], path: &str) -> (i32, String, String) {
    binary::outcome(
        binary::kind_harness()
            .args(args)
            .env("PATH", path)
            .env_remove("K8S_VERSION"),
    )
}

#[test]
fn preflight_with_an_empty_path_names_every_missing_tool_and_exits_2() {
    for args in [
        vec!["conformance", "--cluster", "kind"],
        vec!["up", "--k8s-version", "v1.33.1"],
        vec!["down"],
    ] {
        let (code, stdout, stderr) = harness(&args, "");
        assert_eq!(code, 2, "{args:?}: stdout {stdout} stderr {stderr}");
        for tool in ["docker", "kind", "kubectl"] {
            assert!(
                stderr.contains(&format!("- {tool}")),
                "{args:?}: {tool} not named in:\n{stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn conformance_flags_are_checked_before_anything_runs() {
    let (code, _, stderr) = harness(&["conformance", "--scenario", "nope"], "");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown scenario \"nope\"") && stderr.contains("sharing"),
        "{stderr}"
    );
    let (code, _, stderr) = harness(
        &["conformance", "--cluster", "kind", "--gpu-memory", "40000"],
        "",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("simulated fleet only"), "{stderr}");
    let (code, stdout, _) = harness(&["conformance", "--help"], "");
    assert_eq!(code, 0);
    for needle in [
        "--cluster",
        "--scenario",
        "--evidence",
        "--gpu-memory",
        "Examples:",
        "Exit status",
    ] {
        assert!(stdout.contains(needle), "--help lacks {needle}:\n{stdout}");
    }
    let (code, stdout, _) = harness(&["conformance", "--list"], "");
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    let (code, _, stderr) = harness(&["up", "--k8s-version", "v1.31.0"], "/nonexistent");
    assert_eq!(code, 2, "{stderr}");
}

fn docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

/// Parses into `T` and back; any field `T` does not know would be lost, so the round trip must be
/// the identity.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(doc: &Value) -> T {
    let object: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} {}: {e}", doc["kind"], doc["metadata"]["name"]));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(&back, doc, "a field did not survive the typed round trip");
    object
}

#[test]
fn every_overlay_renders_into_valid_kubernetes_objects() {
    for overlay in OVERLAYS {
        check_overlay(overlay);
    }
}

fn check_overlay(overlay: &str) {
    let template = render_overlay(&repo(), overlay).unwrap();
    let tls = webhook_tls().unwrap();
    let rendered = deploy_manifest(&template, "v1.33.1", "sliceguard:test", &tls).unwrap();
    assert!(!rendered.contains("${"));
    let docs = docs(&rendered);
    let kinds: BTreeSet<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    let mut expected = BTreeSet::from([
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
        "Secret",
    ]);
    if overlay == "ha" {
        expected.extend(["Role", "PodDisruptionBudget"]);
    }
    assert_eq!(kinds, expected, "{overlay}");
    assert_eq!(
        docs[0]["kind"], "Namespace",
        "{overlay}: the namespace comes first"
    );
    let mut services = Vec::new();
    let mut deployment = None;
    let mut config_map = None;
    let mut webhook = None;
    let mut secret = None;
    let mut namespace = None;
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "Namespace" => namespace = Some(typed::<Namespace>(doc)),
            "ServiceAccount" => {
                typed::<ServiceAccount>(doc);
            }
            "ClusterRole" => {
                typed::<ClusterRole>(doc);
            }
            "ClusterRoleBinding" => {
                typed::<ClusterRoleBinding>(doc);
            }
            "RoleBinding" => {
                typed::<RoleBinding>(doc);
            }
            "Role" => {
                typed::<Role>(doc);
            }
            "PodDisruptionBudget" => {
                typed::<PodDisruptionBudget>(doc);
            }
            "NetworkPolicy" => {
                typed::<NetworkPolicy>(doc);
            }
            "ConfigMap" => config_map = Some(typed::<ConfigMap>(doc)),
            "Deployment" => deployment = Some(typed::<Deployment>(doc)),
            "Service" => services.push(typed::<Service>(doc)),
            "MutatingWebhookConfiguration" => {
                webhook = Some(typed::<MutatingWebhookConfiguration>(doc))
            }
            "Secret" => secret = Some(typed::<Secret>(doc)),
            other => panic!("unexpected kind {other}"),
        }
    }
    let (deployment, config_map, webhook, secret, namespace) = (
        deployment.unwrap(),
        config_map.unwrap(),
        webhook.unwrap(),
        secret.unwrap(),
        namespace.unwrap(),
    );

    // The kube-scheduler image carries the same pinned version as the node image.
    let pod = deployment.spec.template.spec.unwrap();
    let scheduler = pod
        .containers
        .iter()
        .find(|c| c.name == "kube-scheduler")
        .unwrap();
    assert_eq!(
        scheduler.image.as_deref(),
        Some("registry.k8s.io/kube-scheduler:v1.33.1")
    );
    let sliceguard = pod
        .containers
        .iter()
        .find(|c| c.name == "sliceguard")
        .unwrap();
    assert_eq!(sliceguard.image.as_deref(), Some("sliceguard:test"));
    let args = sliceguard.args.clone().unwrap();
    let arg = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("no --{name} in {args:?}"))
            .to_string()
    };
    assert_eq!(args[0], "serve");

    // The scheduler configuration: sliceguard is the extender at the address serve listens on,
    // kube-scheduler's NodeResourcesFit leaves every nvidia.com/ resource to it, and the extender
    // manages no resource list (so a CPU-only pod routed to the profile reaches it too).
    let config: Value = serde_saphyr::from_str(&config_map.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config["kind"], "KubeSchedulerConfiguration");
    assert_eq!(
        config["profiles"][0]["schedulerName"].as_str(),
        Some(arg("scheduler-name").as_str())
    );
    let extender = &config["extenders"][0];
    assert_eq!(
        extender["urlPrefix"].as_str().unwrap(),
        format!("http://{}", arg("extender-addr"))
    );
    assert!(
        extender.get("managedResources").is_none(),
        "managedResources would hide CPU-only pods from the extender: {extender}"
    );
    let fit = config["profiles"][0]["pluginConfig"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "NodeResourcesFit")
        .expect("NodeResourcesFit is configured");
    let ignored: BTreeSet<&str> = fit["args"]["ignoredResourceGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    for r in [
        "nvidia.com/gpu",
        "nvidia.com/gpumem",
        "nvidia.com/gpucores",
        "nvidia.com/gpumem-percentage",
        "nvidia.com/priority",
    ] {
        let group = r.split_once('/').unwrap().0;
        assert!(
            ignored.contains(group),
            "{r} is checked by NodeResourcesFit"
        );
    }

    // The webhook reaches serve through the Service, on the port serve listens on.
    let hook = &webhook.webhooks.unwrap()[0];
    let client = &hook.client_config;
    let svc_ref = client.service.as_ref().unwrap();
    let service = services
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some(svc_ref.name.as_str()))
        .expect("the webhook's Service is rendered");
    assert_eq!(
        (svc_ref.name.as_str(), svc_ref.namespace.as_str()),
        (
            service.metadata.name.as_deref().unwrap(),
            service.metadata.namespace.as_deref().unwrap()
        )
    );
    assert_eq!(namespace.metadata.name, service.metadata.namespace);
    let port = &service.spec.unwrap().ports.unwrap()[0];
    assert_eq!(Some(port.port), svc_ref.port);
    let target = match port.target_port.as_ref().unwrap() {
        k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s.clone(),
        other => panic!("target port {other:?}"),
    };
    let container_port = sliceguard
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some(target.as_str()))
        .unwrap()
        .container_port;
    assert!(arg("webhook-addr").ends_with(&format!(":{container_port}")));
    assert_eq!(
        hook.rules.as_ref().unwrap()[0].operations.as_deref(),
        Some(&["CREATE".to_string(), "UPDATE".to_string()][..])
    );

    // The CA bundle is the generated CA, which verifies the serving certificate in the Secret for
    // the Service's DNS name.
    let ca_bundle = client.ca_bundle.as_ref().unwrap();
    assert_eq!(String::from_utf8(ca_bundle.0.clone()).unwrap(), tls.ca_pem);
    let data = secret.data.unwrap();
    let cert_pem = String::from_utf8(data["tls.crt"].0.clone()).unwrap();
    assert_eq!(cert_pem, tls.cert_pem);
    verify_chain(
        &tls.ca_pem,
        &cert_pem,
        &format!("{}.{}.svc", svc_ref.name, svc_ref.namespace),
    );
    assert!(webhook_dns_names().contains(&format!("{}.{}.svc", svc_ref.name, svc_ref.namespace)));
    let volume_secret = pod
        .volumes
        .unwrap()
        .iter()
        .find_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()));
    assert_eq!(volume_secret, secret.metadata.name);

    // What the simulated cluster serves of it, it accepts: the namespace, and the webhook probe pod.
    let mut store = sliceguard_sim::store::Store::new(jiff::Timestamp::now());
    store
        .create(
            sliceguard_sim::store::Resource::Namespaces,
            None,
            docs[0].clone(),
        )
        .unwrap();
    store
        .create(
            sliceguard_sim::store::Resource::Pods,
            Some("default"),
            serde_json::to_value(webhook_probe_pod()).unwrap(),
        )
        .unwrap();
}

fn verify_chain(ca_pem: &str, cert_pem: &str, name: &str) {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let server = ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&cert, &[], &server, &[], UnixTime::now())
        .unwrap_or_else(|e| panic!("the serving certificate does not verify for {name}: {e}"));
    let wrong = ServerName::try_from("evil.example".to_string()).unwrap();
    assert!(
        verifier
            .verify_server_cert(&cert, &[], &wrong, &[], UnixTime::now())
            .is_err()
    );
}

#[test]
fn the_kind_cluster_has_one_control_plane_and_three_workers() {
    let config: Value = serde_saphyr::from_str(&read("deploy/kind-cluster.yaml")).unwrap();
    assert_eq!(config["kind"], "Cluster");
    assert_eq!(config["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let roles: Vec<&str> = config["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            assert!(
                n.get("image").is_none(),
                "the image comes from K8S_VERSION only"
            );
            n["role"].as_str().unwrap()
        })
        .collect();
    assert_eq!(roles, vec!["control-plane", "worker", "worker", "worker"]);
}

fn makefile_targets() -> BTreeSet<String> {
    read("Makefile")
        .lines()
        .filter_map(|l| {
            let (name, _) = l.split_once(':')?;
            (!name.is_empty()
                && !name.starts_with('.')
                && !name.contains(' ')
                && !name.contains('=')
                && !l.starts_with('\t'))
            .then(|| name.to_string())
        })
        .collect()
}

#[test]
fn the_nightly_workflow_is_valid_yaml_and_calls_only_makefile_verbs() {
    let targets = makefile_targets();
    for t in [
        "conformance",
        "kind-up",
        "kind-conformance",
        "kind-down",
        "kind-tools",
        "evidence",
        "audit",
        "clean",
    ] {
        assert!(targets.contains(t), "Makefile lacks {t}");
    }
    let workflow: Value = serde_saphyr::from_str(&read("ci/nightly-kind.yml")).unwrap();
    let jobs = workflow["jobs"].as_object().unwrap();
    assert!(!jobs.is_empty());
    let mut verbs = Vec::new();
    let mut uploads = 0;
    for job in jobs.values() {
        for step in job["steps"].as_array().unwrap() {
            if let Some(run) = step.get("run").and_then(Value::as_str) {
                for line in run.lines().filter(|l| !l.trim().is_empty()) {
                    let mut words = line.split_whitespace();
                    assert_eq!(
                        words.next(),
                        Some("make"),
                        "a step runs something else: {line}"
                    );
                    for verb in words {
                        assert!(targets.contains(verb), "{verb} is not a Makefile target");
                        verbs.push(verb.to_string());
                    }
                }
            } else {
                let uses = step["uses"].as_str().unwrap_or_else(|| panic!("{step}"));
                assert!(
                    uses.starts_with("actions/checkout@")
                        || uses.starts_with("actions/upload-artifact@"),
                    "unexpected action {uses}"
                );
                if uses.starts_with("actions/upload-artifact@") {
                    assert_eq!(step["with"]["path"], "evidence/");
                    assert_eq!(step["if"], "always()");
                    uploads += 1;
                }
            }
        }
    }
    assert_eq!(uploads, jobs.len(), "every job uploads its evidence");
    for v in [
        "kind-up",
        "kind-conformance",
        "kind-down",
        "conformance-k3s",
    ] {
        assert!(
            verbs.iter().any(|x| x == v),
            "the nightly job does not run make {v}"
        );
    }
}

#[test]
fn the_ca_bundle_is_base64_of_the_ca() {
    let tls = webhook_tls().unwrap();
    let rendered = deploy_manifest("caBundle: ${CA_BUNDLE}\n", "v1.33.1", "i", &tls).unwrap();
    let b64 = rendered
        .lines()
        .next()
        .unwrap()
        .strip_prefix("caBundle: ")
        .unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), tls.ca_pem);
}

/// A directory of stand-in tools that log their arguments (one line per call) and succeed.
/// What the stand-in `kubectl config view --minify --raw -o json` prints.
const ADMIN_KUBECONFIG: &str = r#"{"apiVersion":"v1","kind":"Config","clusters":[{"name":"kind-t1","cluster":{"server":"https://127.0.0.1:6443"}}],"contexts":[{"name":"kind-t1","context":{"cluster":"kind-t1","user":"kind-t1"}}],"current-context":"kind-t1","users":[{"name":"kind-t1","user":{"client-key-data":"admin-secret"}}]}"#;

/// The stand-in kubectl hands `kustomize` to the real one (rendering deploy/ is not a side effect).
fn fake_tools(dir: &Path, log: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let real_kubectl = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .expect("kubectl on PATH (ci/install-kind-tools.sh kubectl installs it)");
    for tool in ["docker", "kind", "kubectl", "sliceguard"] {
        let path = dir.join(tool);
        let passthrough = if tool == "kubectl" {
            format!(
                "if [ \"$1\" = kustomize ]; then exec '{real_kubectl}' \"$@\"; fi\n\
                 case \"$*\" in\n\
                 *' create token '*) echo fake-token ;;\n\
                 *' config view '*) echo '{ADMIN_KUBECONFIG}' ;;\n\
                 esac\n"
            )
        } else {
            String::new()
        };
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{tool} $*\" >> '{}'\n{passthrough}exit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn up_runs_the_documented_steps_in_order_and_down_deletes_the_cluster() {
    let root = std::env::temp_dir().join(format!("kind-harness-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let bin = root.join("bin");
    let log = root.join("calls.log");
    let checkout = root.join("repo");
    fake_tools(&bin, &log);
    std::fs::create_dir_all(checkout.join("deploy")).unwrap();
    std::fs::copy(
        repo().join("deploy/kind-cluster.yaml"),
        checkout.join("deploy/kind-cluster.yaml"),
    )
    .unwrap();
    let copied = Command::new("cp")
        .arg("-R")
        .arg(repo().join("deploy/base"))
        .arg(repo().join("deploy/overlays"))
        .arg(checkout.join("deploy"))
        .status()
        .unwrap();
    assert!(copied.success());
    // The stand-ins pass every step; the final webhook wait has no kubeconfig to reach, so `up`
    // stops there with exit 1, naming what it waited for.
    let out = binary::kind_harness()
        .args([
            "up",
            "--name",
            "t1",
            "--k8s-version",
            "v1.33.1",
            "--image",
            "sg:t",
        ])
        .arg("--repo")
        .arg(&checkout)
        .arg("--sliceguard")
        .arg(bin.join("sliceguard"))
        .args(["--wait-secs", "5"])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("KUBECONFIG", root.join("no-such-kubeconfig"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kubeconfig") || stderr.contains("webhook"),
        "{stderr}"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    let rendered = checkout.join("target/kind-harness/t1/sliceguard.rendered.yaml");
    let register_kubeconfig = checkout.join("target/kind-harness/t1/register.kubeconfig");
    let expected = vec![
        format!(
            "kubectl kustomize {}",
            checkout.join("deploy/overlays/fake-fleet").display()
        ),
        "kind get clusters".to_string(),
        format!(
            "kind create cluster --name t1 --image kindest/node:v1.33.1 --config {} --wait 180s",
            checkout.join("deploy/kind-cluster.yaml").display()
        ),
        format!("docker build -t sg:t {}", checkout.display()),
        "kind load docker-image sg:t --name t1".to_string(),
        format!("kubectl --context kind-t1 apply -f {}", rendered.display()),
        "kubectl --context kind-t1 label nodes -l !node-role.kubernetes.io/control-plane gpu=on run.ai/simulated-gpu-node-pool=default --overwrite".to_string(),
        "kubectl --context kind-t1 -n sliceguard-system create token sliceguard-register --duration=15m".to_string(),
        "kubectl --context kind-t1 config view --minify --raw -o json".to_string(),
        format!(
            "sliceguard register --kubeconfig {} --nodes gpu=on --gpus-per-node 8 --memory 81920",
            register_kubeconfig.display()
        ),
        "kubectl --context kind-t1 -n sliceguard-system rollout status deployment/sliceguard-scheduler --timeout=5s".to_string(),
    ];
    assert_eq!(calls, expected);
    // register's kubeconfig carries the ServiceAccount's token and nothing of the admin's.
    let register: Value =
        serde_json::from_str(&std::fs::read_to_string(&register_kubeconfig).unwrap()).unwrap();
    assert_eq!(
        register["users"],
        serde_json::json!([{"name": "sliceguard-register", "user": {"token": "fake-token"}}])
    );
    assert_eq!(
        register["contexts"][0]["context"]["user"],
        "sliceguard-register"
    );
    assert_eq!(
        register["clusters"][0]["cluster"]["server"],
        "https://127.0.0.1:6443"
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&register_kubeconfig)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the token file is private");
    }
    let manifest = std::fs::read_to_string(&rendered).unwrap();
    assert!(!manifest.contains("${"));
    assert!(manifest.contains("registry.k8s.io/kube-scheduler:v1.33.1"));
    assert!(manifest.contains("image: sg:t"));

    std::fs::remove_file(&log).unwrap();
    let out = binary::kind_harness()
        .args(["down", "--name", "t1"])
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().trim(),
        "kind delete cluster --name t1"
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn make_dry_run(args: &[&str]) -> String {
    let out = Command::new("make")
        .arg("-n")
        .arg("-C")
        .arg(repo())
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("CLUSTER")
        .env_remove("K8S_VERSION")
        .env_remove("EVIDENCE_DIR")
        .output()
        .expect("make is needed to check the Makefile verbs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn make_conformance_picks_the_cluster_from_cluster_or_kubeconfig() {
    let sim = make_dry_run(&["conformance", "EVIDENCE_DIR=ev"]);
    assert!(
        sim.contains("conformance --cluster sim") && sim.contains("--evidence ev"),
        "{sim}"
    );
    let kind = make_dry_run(&["conformance", "CLUSTER=kind", "EVIDENCE_DIR=ev"]);
    assert!(
        kind.contains("--cluster kind --kind-name sliceguard"),
        "{kind}"
    );
    let other = make_dry_run(&["conformance", "KUBECONFIG=/tmp/lab.yaml", "EVIDENCE_DIR=ev"]);
    assert!(
        other.contains("--cluster kubeconfig") && other.contains("--kubeconfig /tmp/lab.yaml"),
        "{other}"
    );
    let up = make_dry_run(&["kind-up"]);
    assert!(
        up.contains("up --name sliceguard --k8s-version v1.33.1"),
        "{up}"
    );
    let audit = make_dry_run(&["audit", "KUBECONFIG=/tmp/prod.yaml"]);
    assert!(
        audit.contains("audit --kubeconfig /tmp/prod.yaml"),
        "{audit}"
    );
}
