//! What a platform team reads in `deploy/` before approving it, checked on the rendered overlays
//! (`kubectl kustomize deploy/overlays/<each>`, parsed into k8s-openapi types): restricted pods
//! (non-root, read-only root, no capabilities, RuntimeDefault seccomp, requests and limits), a
//! namespace enforcing Pod Security `restricted`, a narrowly scoped webhook (CEL matchConditions,
//! namespaceSelector excluding kube-system and sliceguard-system, CREATE and UPDATE), a preStop
//! delay, the lock-release mode per overlay, and `ha`'s two replicas with leader election, a PDB and
//! the Lease Role. Parsing into the typed objects and the typed round trip are in
//! `kind_tooling.rs`; serve's and register's RBAC against their real requests is
//! `sim/tests/deploy_rbac.rs`.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::Role;
use kind_harness::kind::{OVERLAYS, deploy_manifest, render_overlay, webhook_tls};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(overlay: &str) -> Vec<Value> {
    let template = render_overlay(&repo(), overlay).unwrap();
    let tls = webhook_tls().unwrap();
    let text = deploy_manifest(&template, "v1.33.1", "sliceguard:test", &tls).unwrap();
    text.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
        .collect()
}

fn one<T: serde::de::DeserializeOwned>(docs: &[Value], kind: &str) -> T {
    let mut found = docs.iter().filter(|d| d["kind"] == kind);
    let doc = found.next().unwrap_or_else(|| panic!("no {kind}"));
    assert!(found.next().is_none(), "more than one {kind}");
    serde_json::from_value(doc.clone()).unwrap()
}

fn serve_args(deployment: &Deployment) -> Vec<String> {
    let pod = deployment.spec.template.spec.as_ref().unwrap();
    let serve = pod
        .containers
        .iter()
        .find(|c| c.name == "sliceguard")
        .unwrap();
    serve.args.clone().unwrap()
}

#[test]
fn pods_are_restricted_and_the_namespace_enforces_it() {
    for overlay in OVERLAYS {
        let docs = docs(overlay);
        let namespace: Namespace = one(&docs, "Namespace");
        let labels = namespace.metadata.labels.unwrap();
        for mode in ["enforce", "audit", "warn"] {
            assert_eq!(
                labels[&format!("pod-security.kubernetes.io/{mode}")],
                "restricted",
                "{overlay}"
            );
        }
        let deployment: Deployment = one(&docs, "Deployment");
        let pod = deployment.spec.template.spec.unwrap();
        let pod_security = pod.security_context.unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true), "{overlay}");
        assert!(pod_security.run_as_user.is_some_and(|u| u > 0), "{overlay}");
        assert_eq!(
            pod_security.seccomp_profile.unwrap().type_,
            "RuntimeDefault",
            "{overlay}"
        );
        assert!(
            pod.termination_grace_period_seconds
                .is_some_and(|s| s >= 40)
        );
        for container in &pod.containers {
            let name = &container.name;
            let sc = container.security_context.as_ref().unwrap();
            assert_eq!(
                sc.allow_privilege_escalation,
                Some(false),
                "{overlay} {name}"
            );
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{overlay} {name}");
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{overlay} {name}"
            );
            let resources = container.resources.as_ref().unwrap();
            for (what, list) in [
                ("requests", &resources.requests),
                ("limits", &resources.limits),
            ] {
                let list = list
                    .as_ref()
                    .unwrap_or_else(|| panic!("{overlay} {name}: no {what}"));
                assert!(
                    list.contains_key("cpu") && list.contains_key("memory"),
                    "{overlay} {name} {what}"
                );
            }
        }
        let serve = pod
            .containers
            .iter()
            .find(|c| c.name == "sliceguard")
            .unwrap();
        let pre_stop = serve.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
        assert!(
            pre_stop.sleep.as_ref().is_some_and(|s| s.seconds >= 3),
            "{overlay}"
        );
        assert_eq!(
            serve
                .readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert_eq!(
            serve
                .liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/healthz")
        );
    }
}

#[test]
fn the_webhook_is_scoped_to_gpu_pods_and_guarded_keys_outside_system_namespaces() {
    for overlay in OVERLAYS {
        let docs = docs(overlay);
        let config: MutatingWebhookConfiguration = one(&docs, "MutatingWebhookConfiguration");
        let hook = &config.webhooks.unwrap()[0];
        assert_eq!(hook.failure_policy.as_deref(), Some("Fail"), "{overlay}");
        assert_eq!(hook.side_effects, "None");
        let rule = &hook.rules.as_ref().unwrap()[0];
        assert_eq!(rule.resources.as_deref(), Some(&["pods".to_string()][..]));
        let excluded = hook
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.key == "kubernetes.io/metadata.name")
            .unwrap();
        assert_eq!(excluded.operator, "NotIn");
        let values = excluded.values.as_ref().unwrap();
        for ns in ["kube-system", "sliceguard-system"] {
            assert!(
                values.iter().any(|v| v == ns),
                "{overlay}: {ns} not excluded"
            );
        }
        let conditions = hook.match_conditions.as_ref().unwrap();
        let expression = &conditions[0].expression;
        for needle in [
            "nvidia.com/",
            "initContainers",
            "oldObject",
            "hami.io/vgpu-node",
            "hami.io/vgpu-time",
            "hami.io/vgpu-devices-allocated",
            "hami.io/vgpu-devices-to-allocate",
            "hami.io/bind-phase",
        ] {
            assert!(expression.contains(needle), "{overlay}: CEL lacks {needle}");
        }
    }
}

#[test]
fn each_overlay_sets_its_lock_mode_and_ha_runs_two_leader_elected_replicas() {
    let mode = |overlay: &str| {
        let docs = docs(overlay);
        let deployment: Deployment = one(&docs, "Deployment");
        let args = serve_args(&deployment);
        assert!(
            args.iter().any(|a| a == "--extender-addr=127.0.0.1:8080"),
            "{overlay}: the extender stays on loopback"
        );
        (deployment, args, docs)
    };
    let (base_like, args, docs) = mode("fake-fleet");
    assert!(args.contains(&"--lock-release=after-bind".to_string()));
    let spec = base_like.spec;
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.strategy.unwrap().type_.as_deref(), Some("Recreate"));
    assert!(
        docs.iter().any(
            |d| d["kind"] == "ServiceAccount" && d["metadata"]["name"] == "sliceguard-register"
        )
    );

    let (plugin, args, docs) = mode("hami-device-plugin");
    assert!(args.contains(&"--lock-release=device-plugin".to_string()));
    assert_eq!(plugin.spec.replicas, Some(1));
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["name"] == "sliceguard-register")
    );

    let (ha, args, docs) = mode("ha");
    assert!(args.contains(&"--lock-release=device-plugin".to_string()));
    assert!(args.contains(&"--leader-elect".to_string()));
    // sliceguard lines up with the Lease kube-scheduler's configuration elects on.
    let followed = args
        .iter()
        .find_map(|a| a.strip_prefix("--leader-elect-follow="))
        .expect("the ha overlay follows kube-scheduler's Lease");
    let (namespace, lease) = followed.split_once('/').unwrap();
    let config = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "sliceguard-scheduler-config"
        })
        .and_then(|d| d["data"]["config.yaml"].as_str())
        .expect("kube-scheduler's configuration");
    assert!(config.contains("leaderElect: true"), "{config}");
    assert!(
        config.contains(&format!("resourceName: {lease}")),
        "{config}"
    );
    assert!(
        config.contains(&format!("resourceNamespace: {namespace}")),
        "{config}"
    );
    let spec = ha.spec;
    assert_eq!(spec.replicas, Some(2));
    let strategy = spec.strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let pdb: PodDisruptionBudget = one(&docs, "PodDisruptionBudget");
    let pdb_spec = pdb.spec.unwrap();
    assert_eq!(
        pdb_spec.min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        pdb_spec.selector.unwrap().match_labels,
        spec.selector.match_labels
    );
    let role: Role = one(&docs, "Role");
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["coordination.k8s.io".to_string()][..])
    );
    assert_eq!(rule.resources.as_deref(), Some(&["leases".to_string()][..]));
    assert_eq!(rule.verbs, ["get", "create", "update"]);
    let config: ConfigMap = one(&docs, "ConfigMap");
    let scheduler: Value = serde_saphyr::from_str(&config.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(scheduler["leaderElection"]["leaderElect"], true);
    assert_eq!(
        scheduler["leaderElection"]["resourceName"],
        "sliceguard-kube-scheduler"
    );
    assert_eq!(
        scheduler["leaderElection"]["resourceNamespace"],
        "sliceguard-system"
    );
}

#[test]
fn an_unknown_overlay_is_refused_naming_the_choices() {
    let err = render_overlay(&repo(), "production").unwrap_err();
    assert!(err.contains("fake-fleet, hami-device-plugin, ha"), "{err}");
}

/// `deploy/components/cpu-pods` added to each overlay: serve gets `--route-cpu-pods`, a second
/// webhook entry sends only labelled CPU-only pods at CREATE (failure ignored, same namespaces
/// excluded), and everything the overlay had stays as it was.
#[test]
fn the_cpu_pods_component_composes_with_every_overlay() {
    for overlay in OVERLAYS {
        // kustomize takes bases only by relative path, from a directory inside the repository.
        let dir = repo().join(format!(
            "target/kustomize-cpu-pods-{overlay}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../deploy/overlays/{overlay}\ncomponents:\n  - ../../deploy/components/cpu-pods\n"
            ),
        )
        .unwrap();
        let rendered = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            rendered.status.success(),
            "{overlay}: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let tls = webhook_tls().unwrap();
        let parse = |template: &str| -> Vec<Value> {
            deploy_manifest(template, "v1.33.1", "sliceguard:test", &tls)
                .unwrap()
                .split("\n---\n")
                .filter(|d| !d.trim().is_empty())
                .map(|d| serde_saphyr::from_str::<Value>(d).unwrap())
                .collect()
        };
        let with = parse(&String::from_utf8(rendered.stdout).unwrap());
        let without = parse(&render_overlay(&repo(), overlay).unwrap());

        let args = serve_args(&one(&with, "Deployment"));
        let mut expected = serve_args(&one(&without, "Deployment"));
        expected.push("--route-cpu-pods=sliceguard.io/placement=fragmentation".into());
        assert_eq!(args, expected, "{overlay}");
        let route: sliceguard::admission::LabelMatch = args
            .last()
            .unwrap()
            .strip_prefix("--route-cpu-pods=")
            .unwrap()
            .parse()
            .unwrap();

        let hooks = one::<MutatingWebhookConfiguration>(&with, "MutatingWebhookConfiguration")
            .webhooks
            .unwrap();
        let before = one::<MutatingWebhookConfiguration>(&without, "MutatingWebhookConfiguration")
            .webhooks
            .unwrap();
        assert_eq!(hooks.len(), 2, "{overlay}");
        assert_eq!(hooks[0], before[0], "{overlay}: the GPU entry is unchanged");
        let cpu = &hooks[1];
        assert_eq!(cpu.failure_policy.as_deref(), Some("Ignore"));
        assert_eq!(cpu.client_config, before[0].client_config, "{overlay}");
        assert_eq!(cpu.namespace_selector, before[0].namespace_selector);
        let operations = &cpu.rules.as_ref().unwrap()[0].operations;
        assert_eq!(operations.as_deref(), Some(&["CREATE".to_string()][..]));
        let selected = cpu
            .object_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .unwrap();
        assert_eq!(
            selected.get(&route.key),
            route.value.as_ref(),
            "{overlay}: the webhook sends exactly the pods serve routes"
        );
        let condition = &cpu.match_conditions.as_ref().unwrap()[0].expression;
        assert!(
            condition.starts_with("!object.spec.containers.exists")
                && condition.contains("initContainers"),
            "{overlay}: only CPU-only pods: {condition}"
        );
        // Nothing else changed.
        let others = |docs: &[Value]| -> Vec<Value> {
            docs.iter()
                .filter(|d| {
                    d["kind"] != "Deployment" && d["kind"] != "MutatingWebhookConfiguration"
                })
                .cloned()
                .collect()
        };
        assert_eq!(others(&with), others(&without), "{overlay}");
    }
}
