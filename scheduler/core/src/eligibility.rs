//! Which nodes kube-scheduler would offer the extender: the subset of its filters that a GPU pod
//! meets before sliceguard sees it (`NodeUnschedulable`, `NodeAffinity` for `nodeSelector`,
//! `TaintToleration` for `NoSchedule`/`NoExecute`), with kube-scheduler's messages. Used by
//! `sliceguard place` and the simulated cluster's scheduler stand-in. Resources that sliceguard
//! manages are `ignoredByScheduler`, so they are not checked here.

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};

/// Why kube-scheduler would not offer a node.
pub fn ineligibility(node: &Node, pod: &Pod) -> Option<String> {
    let spec = node.spec.as_ref();
    let pod_spec = pod.spec.as_ref();
    let tolerations: &[Toleration] = pod_spec
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    if spec.and_then(|s| s.unschedulable) == Some(true) {
        let tolerated = tolerations.iter().any(|t| {
            tolerates(
                t,
                &Taint {
                    key: "node.kubernetes.io/unschedulable".into(),
                    effect: "NoSchedule".into(),
                    ..Default::default()
                },
            )
        });
        if !tolerated {
            return Some("node(s) were unschedulable".into());
        }
    }
    if let Some(selector) = pod_spec.and_then(|s| s.node_selector.as_ref()) {
        let labels = node.metadata.labels.as_ref();
        let matches = selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    for taint in spec.and_then(|s| s.taints.as_deref()).unwrap_or(&[]) {
        if (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
            && !tolerations.iter().any(|t| tolerates(t, taint))
        {
            let value = taint
                .value
                .as_deref()
                .map(|v| format!(": {v}"))
                .unwrap_or_default();
            return Some(format!(
                "node(s) had untolerated taint {{{}{value}}}",
                taint.key
            ));
        }
    }
    None
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec};
    use std::collections::BTreeMap;

    fn node(labels: &[(&str, &str)], taints: Vec<Taint>, unschedulable: bool) -> Node {
        let mut n = Node::default();
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(NodeSpec {
            taints: Some(taints),
            unschedulable: Some(unschedulable),
            ..Default::default()
        });
        n
    }

    fn pod(selector: &[(&str, &str)], tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                node_selector: (!selector.is_empty()).then(|| {
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>()
                }),
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn control_plane_taint() -> Taint {
        Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_taints_and_cordons() {
        assert_eq!(
            ineligibility(
                &node(&[("gpu", "on")], vec![], false),
                &pod(&[("gpu", "on")], vec![])
            ),
            None
        );
        assert_eq!(
            ineligibility(&node(&[], vec![], false), &pod(&[("gpu", "on")], vec![])).unwrap(),
            "node(s) didn't match Pod's node affinity/selector"
        );
        assert_eq!(
            ineligibility(
                &node(&[], vec![control_plane_taint()], false),
                &pod(&[], vec![])
            )
            .unwrap(),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane}"
        );
        let exists = Toleration {
            key: Some("node-role.kubernetes.io/control-plane".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            ineligibility(
                &node(&[], vec![control_plane_taint()], false),
                &pod(&[], vec![exists])
            ),
            None
        );
        let wildcard = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert_eq!(
            ineligibility(
                &node(&[], vec![control_plane_taint()], true),
                &pod(&[], vec![wildcard])
            ),
            None
        );
        assert_eq!(
            ineligibility(&node(&[], vec![], true), &pod(&[], vec![])).unwrap(),
            "node(s) were unschedulable"
        );
        let prefer = Taint {
            key: "x".into(),
            effect: "PreferNoSchedule".into(),
            ..Default::default()
        };
        assert_eq!(
            ineligibility(&node(&[], vec![prefer], false), &pod(&[], vec![])),
            None
        );
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let equal = |v: &str| Toleration {
            key: Some("k".into()),
            value: Some(v.into()),
            ..Default::default()
        };
        assert!(tolerates(&equal("v"), &taint));
        assert!(!tolerates(&equal("w"), &taint));
        let wrong_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..equal("v")
        };
        assert!(!tolerates(&wrong_effect, &taint));
        let same_effect = Toleration {
            effect: Some("NoSchedule".into()),
            ..equal("v")
        };
        assert!(tolerates(&same_effect, &taint));
        let empty_effect = Toleration {
            effect: Some(String::new()),
            ..equal("v")
        };
        assert!(
            tolerates(&empty_effect, &taint),
            "an empty effect matches every effect"
        );
    }

    #[test]
    fn a_cordon_is_tolerated_only_by_its_own_key_and_effect() {
        let cordon = |key: &str, effect: &str| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        let cordoned = node(&[], vec![], true);
        let unschedulable = "node.kubernetes.io/unschedulable";
        assert_eq!(
            ineligibility(
                &cordoned,
                &pod(&[], vec![cordon(unschedulable, "NoSchedule")])
            ),
            None
        );
        for other in [
            cordon("other", "NoSchedule"),
            cordon(unschedulable, "NoExecute"),
        ] {
            assert_eq!(
                ineligibility(&cordoned, &pod(&[], vec![other])).as_deref(),
                Some("node(s) were unschedulable")
            );
        }
    }
}
