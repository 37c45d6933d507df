//! The node inventory: which nodes are registered and with which devices, read from each Node's
//! `hami.io/node-nvidia-register` and `hami.io/device-cordon` annotations.
//!
//! A node is registered when its register annotation parses (JSON or legacy text) and lists at least
//! one device with a unique id that the pod device format can carry. Otherwise it is unregistered,
//! and the filter answers HAMi's `node unregistered` for it; the precise problem is kept for
//! diagnostics ([`Registry::problem`]). Unlike HAMi, registration does not wait for the handshake or
//! for allocatable `nvidia.com/gpu` to change: the annotation is the inventory.

use crate::annotations::{DEVICE_CORDON, NODE_REGISTER};
use crate::codec::register;
use crate::model::DeviceInfo;
use k8s_openapi::api::core::v1::Node;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// A registered node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredNode {
    /// Node name.
    pub name: String,
    /// Devices in registration order.
    pub devices: Vec<DeviceInfo>,
    /// Cordoned device ids.
    pub cordoned: BTreeSet<String>,
}

/// Why a node is not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unregistered {
    /// No register annotation (HAMi: `annos not found hami.io/node-nvidia-register`).
    #[error("annos not found {NODE_REGISTER}")]
    MissingAnnotation,
    /// The annotation does not parse.
    #[error("{0}")]
    Invalid(#[from] register::RegisterError),
    /// The annotation lists no device (HAMi: `no gpu found on node`).
    #[error("no gpu found on node")]
    NoDevices,
    /// Two devices share an id, so allocations could not be told apart.
    #[error("device id {0:?} is registered twice")]
    DuplicateDevice(String),
    /// A device id that pod device annotations cannot carry.
    #[error("device id {0:?} contains ',', ':' or ';'")]
    UnrepresentableId(String),
}

/// Reads a node's registration from its annotations.
pub fn registered_node(
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<RegisteredNode, Unregistered> {
    let value = annotations
        .get(NODE_REGISTER)
        .ok_or(Unregistered::MissingAnnotation)?;
    let devices = register::parse(value)?;
    if devices.is_empty() {
        return Err(Unregistered::NoDevices);
    }
    let mut seen = BTreeSet::new();
    for d in &devices {
        if d.id.contains([',', ':', ';']) {
            return Err(Unregistered::UnrepresentableId(d.id.clone()));
        }
        if !seen.insert(d.id.as_str()) {
            return Err(Unregistered::DuplicateDevice(d.id.clone()));
        }
    }
    let cordoned = annotations
        .get(DEVICE_CORDON)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok(RegisteredNode {
        name: name.to_string(),
        devices,
        cordoned,
    })
}

/// Every registered node, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    nodes: BTreeMap<String, RegisteredNode>,
    problems: BTreeMap<String, Unregistered>,
    /// Model names and sharing modes, each stored once and shared by every device that has it (a
    /// fleet has a handful; issue 17: bytes per device). Names no device has any more are dropped
    /// once the set has doubled since the last sweep.
    shared_names: HashSet<Arc<str>>,
    /// The set's size after the last sweep.
    swept_len: usize,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a node from its object; returns why it is not registered, if it is not.
    pub fn upsert_node(&mut self, node: &Node) -> Result<(), Unregistered> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let empty = BTreeMap::new();
        let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
        self.upsert(&name, annotations)
    }

    /// Adds or replaces a node from its name and annotations.
    pub fn upsert(
        &mut self,
        name: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), Unregistered> {
        match registered_node(name, annotations) {
            Ok(mut node) => {
                node.devices.shrink_to_fit();
                for device in &mut node.devices {
                    device.device_type = self.shared(&device.device_type);
                    device.mode = self.shared(&device.mode);
                }
                self.problems.remove(name);
                self.nodes.insert(name.to_string(), node);
                Ok(())
            }
            Err(problem) => {
                self.nodes.remove(name);
                self.problems.insert(name.to_string(), problem.clone());
                Err(problem)
            }
        }
    }

    /// Forgets a node.
    pub fn remove(&mut self, name: &str) {
        self.nodes.remove(name);
        self.problems.remove(name);
    }

    /// The registry's copy of a model name or mode, made the shared copy if it is new.
    fn shared(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.shared_names.get(name) {
            return Arc::clone(shared);
        }
        if self.shared_names.len() >= 2 * self.swept_len.max(16) {
            // Only the set holds a name no device has any more.
            self.shared_names.retain(|n| Arc::strong_count(n) > 1);
            self.swept_len = self.shared_names.len();
        }
        self.shared_names.insert(Arc::clone(name));
        Arc::clone(name)
    }

    /// A registered node.
    pub fn get(&self, name: &str) -> Option<&RegisteredNode> {
        self.nodes.get(name)
    }

    /// Why a known node is not registered.
    pub fn problem(&self, name: &str) -> Option<&Unregistered> {
        self.problems.get(name)
    }

    /// Registered nodes in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &RegisteredNode> {
        self.nodes.values()
    }

    /// Number of registered nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no node is registered.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unused_names_are_swept_only_once_the_set_has_doubled() {
        let mut r = Registry::new();
        let one = |model: &str| registration(model, &["GPU-a"]);
        // `hami-core` and model 0 .. model 30: 32 names, 30 of them stale, none swept yet (the
        // sweep's cost is paid once per doubling, not per registration).
        for i in 0..31 {
            r.upsert("n1", &one(&format!("M-{i}"))).unwrap();
            assert_eq!(r.shared_names.len(), i + 2);
        }
        // The 33rd name sweeps: the live two stay, the new one is added.
        r.upsert("n1", &one("M-31")).unwrap();
        assert_eq!(r.shared_names.len(), 3);
        assert_eq!(r.swept_len, 2);
        for i in 32..35 {
            r.upsert("n1", &one(&format!("M-{i}"))).unwrap();
        }
        assert_eq!(r.shared_names.len(), 6);
    }

    #[test]
    fn model_names_and_modes_are_stored_once_and_swept_when_unused() {
        let mut r = Registry::new();
        let register = |model: &str| registration(model, &["GPU-a", "GPU-b"]);
        r.upsert("n1", &register("NVIDIA-A")).unwrap();
        r.upsert("n2", &register("NVIDIA-A")).unwrap();
        let (n1, n2) = (r.get("n1").unwrap(), r.get("n2").unwrap());
        assert!(Arc::ptr_eq(
            &n1.devices[0].device_type,
            &n2.devices[1].device_type
        ));
        assert!(Arc::ptr_eq(&n1.devices[1].mode, &n2.devices[0].mode));
        assert_eq!(&*n2.devices[1].device_type, "NVIDIA-A");
        assert_eq!(r.shared_names.len(), 2);
        // Models that come and go are swept once the set has doubled; live ones stay shared.
        for i in 0..40 {
            r.upsert("n3", &register(&format!("NVIDIA-{i}"))).unwrap();
        }
        assert!(r.shared_names.len() < 32, "{}", r.shared_names.len());
        assert!(r.shared_names.contains("NVIDIA-A"));
        assert!(r.shared_names.contains("NVIDIA-39"));
        assert!(!r.shared_names.contains("NVIDIA-0"));
        r.upsert("n4", &register("NVIDIA-A")).unwrap();
        assert!(Arc::ptr_eq(
            &r.get("n4").unwrap().devices[0].device_type,
            &r.get("n1").unwrap().devices[0].device_type
        ));
    }

    /// A register annotation listing `ids`, each of model `model` in `hami-core` mode.
    fn registration(model: &str, ids: &[&str]) -> BTreeMap<String, String> {
        let devices: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","type":"{model}","mode":"hami-core"}}"#))
            .collect();
        annos(&[(NODE_REGISTER, &format!("[{}]", devices.join(",")))])
    }

    fn annos(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn registration_rules() {
        let mut r = Registry::new();
        let good = r#"[{"id":"GPU-a","count":10,"devmem":100,"devcore":100,"type":"NVIDIA-X","health":true},{"id":"GPU-b","count":10,"devmem":100,"devcore":100,"type":"NVIDIA-X","health":true}]"#;
        r.upsert(
            "n1",
            &annos(&[(NODE_REGISTER, good), (DEVICE_CORDON, " GPU-b, ,")]),
        )
        .unwrap();
        assert_eq!(r.get("n1").unwrap().devices.len(), 2);
        assert_eq!(
            r.get("n1").unwrap().cordoned,
            BTreeSet::from(["GPU-b".to_string()])
        );

        assert_eq!(
            r.upsert("n2", &annos(&[])),
            Err(Unregistered::MissingAnnotation)
        );
        assert_eq!(
            r.upsert("n2", &annos(&[(NODE_REGISTER, "[]")])),
            Err(Unregistered::NoDevices)
        );
        let dup = r#"[{"id":"GPU-a"},{"id":"GPU-a"}]"#;
        assert_eq!(
            r.upsert("n2", &annos(&[(NODE_REGISTER, dup)])),
            Err(Unregistered::DuplicateDevice("GPU-a".into()))
        );
        assert!(matches!(
            r.upsert("n2", &annos(&[(NODE_REGISTER, "{")])),
            Err(Unregistered::Invalid(_))
        ));
        let semi = r#"[{"id":"GPU;a"}]"#;
        assert!(matches!(
            r.upsert("n2", &annos(&[(NODE_REGISTER, semi)])),
            Err(Unregistered::UnrepresentableId(_))
        ));
        assert!(r.get("n2").is_none());
        assert!(r.problem("n2").is_some());

        // A node that breaks is unregistered; one that is fixed comes back.
        assert!(
            r.upsert("n1", &annos(&[(NODE_REGISTER, "garbage")]))
                .is_err()
        );
        assert!(r.get("n1").is_none());
        r.upsert("n1", &annos(&[(NODE_REGISTER, good)])).unwrap();
        assert!(r.get("n1").unwrap().cordoned.is_empty());
        assert_eq!(r.len(), 1);
        assert!(!r.is_empty());
        r.upsert("n3", &annos(&[(NODE_REGISTER, good)])).unwrap();
        assert_eq!(r.len(), 2);
        r.remove("n1");
        r.remove("n3");
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
    }
}
