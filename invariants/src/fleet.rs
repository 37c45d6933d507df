//! A GPU fleet as plain data: nodes `n0, n1, ...`, each with 1..8 devices `GPU-n<i>-<j>` of varied
//! memory, cores, split count, health, NUMA node, mode and model name, some cordoned.
//!
//! The fleet writes its own `hami.io/node-nvidia-register` annotations (JSON with `omitempty`, or the
//! legacy text form) and `hami.io/device-cordon` with this crate's encoders, not the scheduler's, and
//! registers them in a [`Registry`] the way the scheduler reads real nodes. A node can also be given
//! a broken registration, which the scheduler must answer with `node unregistered`.

use serde_json::{Map, Value, json};
use sliceguard_core::annotations::{DEVICE_CORDON, NODE_REGISTER};
use sliceguard_core::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;

/// Model names the generator draws from. Two are not NVIDIA-typed (case-insensitively), so the
/// scheduler does not count them as candidates at all.
pub const DEVICE_TYPES: [&str; 8] = [
    "NVIDIA-Tesla T4",
    "NVIDIA-A100-SXM4-80GB",
    "NVIDIA-H100-80GB-HBM3",
    "NVIDIA-NVIDIA A30",
    "NVIDIA-L40S",
    "nvidia-rtx-4090",
    "Tesla-V100",
    "MLU-370",
];

/// One device as the device plugin would register it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DevicePlan {
    /// UUID, `GPU-<node>-<j>`.
    pub id: String,
    /// Index on the node.
    pub index: u32,
    /// Split count.
    pub count: u32,
    /// MiB.
    pub devmem: u32,
    /// Cores (100 = one GPU).
    pub devcore: u32,
    /// Model name.
    pub device_type: String,
    /// NUMA node.
    pub numa: u32,
    /// `hami-core`, `mps`, `mig` or empty.
    pub mode: String,
    /// Kubelet health.
    pub health: bool,
}

impl fmt::Debug for DevicePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} {}MiB {}c x{} numa{}{}{}",
            self.id,
            self.device_type,
            self.devmem,
            self.devcore,
            self.count,
            self.numa,
            if self.mode == "hami-core" {
                String::new()
            } else {
                format!(" mode={:?}", self.mode)
            },
            if self.health { "" } else { " UNHEALTHY" }
        )
    }
}

/// How a node's register annotation is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Registration {
    /// JSON, `omitempty` style (HAMi ≥ v2.8).
    Json,
    /// The legacy text form (7 fields when possible, else 9).
    Text,
    /// A value that does not parse: the node is offered but unregistered.
    Broken,
}

/// One node.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NodePlan {
    /// Node name, `n<i>`.
    pub name: String,
    /// Devices in registration order.
    pub devices: Vec<DevicePlan>,
    /// UUIDs listed in `hami.io/device-cordon`.
    pub cordoned: Vec<String>,
    /// How the register annotation is written.
    pub registration: Registration,
}

impl fmt::Debug for NodePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}", self.name, self.registration)?;
        if !self.cordoned.is_empty() {
            write!(f, ", cordoned {:?}", self.cordoned)?;
        }
        write!(f, ") ")?;
        f.debug_list().entries(&self.devices).finish()
    }
}

/// A fleet.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct FleetPlan {
    /// Nodes in name order.
    pub nodes: Vec<NodePlan>,
}

impl fmt::Debug for FleetPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.nodes).finish()
    }
}

/// The JSON register value, written field by field with `omitempty` for zero/false/empty.
pub fn register_json(devices: &[DevicePlan]) -> String {
    let array: Vec<Value> = devices
        .iter()
        .map(|d| {
            let mut object = Map::new();
            object.insert("id".into(), json!(d.id));
            let mut number = |key: &str, value: u32| {
                if value != 0 {
                    object.insert(key.into(), json!(value));
                }
            };
            number("index", d.index);
            number("count", d.count);
            number("devmem", d.devmem);
            number("devcore", d.devcore);
            object.insert("type".into(), json!(d.device_type));
            if d.numa != 0 {
                object.insert("numa".into(), json!(d.numa));
            }
            if !d.mode.is_empty() {
                object.insert("mode".into(), json!(d.mode));
            }
            if d.health {
                object.insert("health".into(), json!(true));
            }
            Value::Object(object)
        })
        .collect();
    Value::Array(array).to_string()
}

/// The legacy text register value: the 7-field form when it carries everything (index 0, mode
/// `hami-core`), else the 9-field form.
pub fn register_text(devices: &[DevicePlan]) -> String {
    let mut out = String::new();
    for d in devices {
        out.push_str(&format!(
            "{},{},{},{},{},{},{}",
            d.id, d.count, d.devmem, d.devcore, d.device_type, d.numa, d.health
        ));
        if d.index != 0 || d.mode != "hami-core" {
            out.push_str(&format!(",{},{}", d.index, d.mode));
        }
        out.push(':');
    }
    out
}

impl NodePlan {
    /// The node's annotations: register value in its form, and the cordon list with HAMi's
    /// tolerated noise (spaces, empty entries).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let register = match self.registration {
            Registration::Json => register_json(&self.devices),
            Registration::Text => register_text(&self.devices),
            Registration::Broken => format!("{}, but broken", register_json(&self.devices)),
        };
        let mut annotations = BTreeMap::from([(NODE_REGISTER.to_string(), register)]);
        if !self.cordoned.is_empty() {
            annotations.insert(
                DEVICE_CORDON.to_string(),
                format!(" {} ,, ", self.cordoned.join(" ,")),
            );
        }
        annotations
    }

    /// The device with this UUID.
    pub fn device(&self, uuid: &str) -> Option<&DevicePlan> {
        self.devices.iter().find(|d| d.id == uuid)
    }

    /// True when the device is listed in the cordon annotation.
    pub fn is_cordoned(&self, uuid: &str) -> bool {
        self.cordoned.iter().any(|c| c == uuid)
    }
}

impl FleetPlan {
    /// Registers every node in a fresh registry. Returns an error naming the node if a node that
    /// should register does not, or one that should not does.
    pub fn registry(&self) -> Result<Registry, String> {
        self.registry_in_order(self.nodes.iter())
    }

    /// Registers the nodes in the given order (the registry must not depend on it).
    pub fn registry_in_order<'a>(
        &self,
        nodes: impl Iterator<Item = &'a NodePlan>,
    ) -> Result<Registry, String> {
        let mut registry = Registry::new();
        for node in nodes {
            let result = registry.upsert(&node.name, &node.annotations());
            match (node.registration, result) {
                (Registration::Broken, Ok(())) => {
                    return Err(format!("node {} registered a broken annotation", node.name));
                }
                (Registration::Broken, Err(_)) | (_, Ok(())) => {}
                (_, Err(e)) => return Err(format!("node {} did not register: {e}", node.name)),
            }
        }
        Ok(registry)
    }

    /// The node with this name.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Nodes the scheduler registers (not broken).
    pub fn registered(&self) -> impl Iterator<Item = &NodePlan> {
        self.nodes
            .iter()
            .filter(|n| n.registration != Registration::Broken)
    }

    /// Every node name.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }
}

/// Proptest strategies for fleets.
#[cfg(feature = "strategies")]
pub mod strategies {
    use super::*;
    use proptest::prelude::*;

    /// A device before it is named: everything but the id.
    fn device_body() -> impl Strategy<Value = DevicePlan> {
        let count = prop_oneof![8 => Just(10u32), 2 => 1u32..=4, 1 => Just(0u32)];
        let devmem = prop_oneof![
            8 => prop::sample::select(vec![8000u32, 15360, 16384, 24576, 40960, 81920]),
            2 => 1u32..=100_000,
            1 => Just(0u32),
        ];
        let devcore =
            prop_oneof![12 => Just(100u32), 1 => Just(200u32), 1 => Just(50u32), 1 => Just(0u32)];
        let device_type = prop_oneof![
            12 => prop::sample::select(DEVICE_TYPES[..6].to_vec()),
            1 => prop::sample::select(DEVICE_TYPES[6..].to_vec()),
        ];
        let mode =
            prop_oneof![12 => Just("hami-core"), 1 => Just("mps"), 1 => Just("mig"), 1 => Just("")];
        let health = prop::bool::weighted(0.92);
        (count, devmem, devcore, device_type, 0u32..=1, mode, health).prop_map(
            |(count, devmem, devcore, device_type, numa, mode, health)| DevicePlan {
                id: String::new(),
                index: 0,
                count,
                devmem,
                devcore,
                device_type: device_type.to_string(),
                numa,
                mode: mode.to_string(),
                health,
            },
        )
    }

    /// A node named `n<i>` with 1..=8 devices, some possibly cordoned.
    pub fn node(i: usize) -> impl Strategy<Value = NodePlan> {
        unnamed_node().prop_map(move |node| named(node, i))
    }

    /// A node with 1..=8 devices, some possibly cordoned, named `n0` until `named` renames it.
    fn unnamed_node() -> impl Strategy<Value = NodePlan> {
        let registration = prop_oneof![
            14 => Just(Registration::Json),
            5 => Just(Registration::Text),
            1 => Just(Registration::Broken),
        ];
        (
            prop::collection::vec((device_body(), prop::bool::weighted(0.06)), 1..=8),
            registration,
        )
            .prop_map(|(bodies, registration)| {
                let mut cordoned = Vec::new();
                let devices = bodies
                    .into_iter()
                    .enumerate()
                    .map(|(j, (mut d, cordon))| {
                        d.id = format!("GPU-n0-{j}");
                        d.index = j as u32;
                        if cordon {
                            cordoned.push(d.id.clone());
                        }
                        d
                    })
                    .collect();
                NodePlan {
                    name: "n0".into(),
                    devices,
                    cordoned,
                    registration,
                }
            })
    }

    /// Names a node `n<i>` and its devices `GPU-n<i>-<j>`; cordons follow their devices.
    fn named(mut node: NodePlan, i: usize) -> NodePlan {
        let name = format!("n{i}");
        let cordoned: Vec<usize> = (0..node.devices.len())
            .filter(|&j| node.cordoned.contains(&node.devices[j].id))
            .collect();
        for (j, d) in node.devices.iter_mut().enumerate() {
            d.id = format!("GPU-{name}-{j}");
        }
        node.cordoned = cordoned
            .into_iter()
            .map(|j| node.devices[j].id.clone())
            .collect();
        node.name = name;
        node
    }

    /// A fleet of 1..=`max_nodes` nodes. Nodes are generated as a list and named by position, so
    /// shrinking can drop any of them.
    pub fn fleet(max_nodes: usize) -> impl Strategy<Value = FleetPlan> {
        prop::collection::vec(unnamed_node(), 1..=max_nodes.max(1)).prop_map(|nodes| FleetPlan {
            nodes: nodes
                .into_iter()
                .enumerate()
                .map(|(i, node)| named(node, i))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(j: u32, mode: &str) -> DevicePlan {
        DevicePlan {
            id: format!("GPU-n0-{j}"),
            index: j,
            count: 10,
            devmem: 15360,
            devcore: 100,
            device_type: "NVIDIA-Tesla T4".into(),
            numa: 0,
            mode: mode.into(),
            health: true,
        }
    }

    #[test]
    fn own_encoders_are_read_by_the_scheduler() {
        for registration in [Registration::Json, Registration::Text] {
            let node = NodePlan {
                name: "n0".into(),
                devices: vec![device(0, "hami-core"), device(1, "mps")],
                cordoned: vec!["GPU-n0-1".into()],
                registration,
            };
            let fleet = FleetPlan { nodes: vec![node] };
            let registry = fleet.registry().unwrap();
            let registered = registry.get("n0").unwrap();
            assert_eq!(registered.devices.len(), 2, "{registration:?}");
            assert_eq!(&*registered.devices[1].mode, "mps");
            assert_eq!(registered.devices[1].index, 1);
            assert!(registered.cordoned.contains("GPU-n0-1"));
        }
        assert_eq!(
            register_text(&[device(0, "hami-core")]),
            "GPU-n0-0,10,15360,100,NVIDIA-Tesla T4,0,true:"
        );
        assert_eq!(
            register_json(&[device(0, "")]),
            r#"[{"count":10,"devcore":100,"devmem":15360,"health":true,"id":"GPU-n0-0","type":"NVIDIA-Tesla T4"}]"#
        );
    }

    #[test]
    fn a_broken_node_stays_unregistered() {
        let fleet = FleetPlan {
            nodes: vec![NodePlan {
                name: "n0".into(),
                devices: vec![device(0, "hami-core")],
                cordoned: vec![],
                registration: Registration::Broken,
            }],
        };
        assert!(fleet.registry().unwrap().get("n0").is_none());
        assert_eq!(fleet.registered().count(), 0);
    }
}
