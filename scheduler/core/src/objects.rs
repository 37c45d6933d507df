//! Kubernetes objects the project builds: fake GPU fleet nodes (as the seed lab's `register-hami.sh`
//! annotates them) and GPU pods. Used by `sliceguard fleet`, the tests, the harness and the simulated
//! cluster, so every tier builds the same objects the same way.

use crate::annotations::{
    NODE_HANDSHAKE, NODE_REGISTER, RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM,
    RESOURCE_GPUMEM_PERCENTAGE,
};
use crate::codec::handshake::{self, Handshake};
use crate::codec::register;
use crate::model::DeviceInfo;
use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodSpec, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// A homogeneous fake GPU fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSpec {
    /// Number of nodes.
    pub nodes: usize,
    /// GPUs per node.
    pub gpus_per_node: usize,
    /// MiB per GPU.
    pub memory_mib: u32,
    /// Cores per GPU (100 = one GPU).
    pub cores: u32,
    /// Split count per GPU.
    pub split: u32,
    /// GPU model; prefixed with `NVIDIA-` unless it already starts with `NVIDIA`, as HAMi's plugin does.
    pub device_type: String,
    /// Node name prefix; nodes are named as kind names workers: `P`, `P2`, `P3`, ...
    pub name_prefix: String,
}

impl Default for FleetSpec {
    fn default() -> Self {
        FleetSpec {
            nodes: 3,
            gpus_per_node: 8,
            memory_mib: 81920,
            cores: 100,
            split: 10,
            device_type: "NVIDIA-H100-80GB-HBM3".into(),
            name_prefix: "hami-sim-worker".into(),
        }
    }
}

/// The model name as HAMi's device plugin registers it.
pub fn plugin_type_name(model: &str) -> String {
    if model.starts_with("NVIDIA") {
        model.to_string()
    } else {
        format!("NVIDIA-{model}")
    }
}

/// The `i`-th node name (0-based), kind style: `P`, `P2`, `P3`, ...
pub fn fleet_node_name(prefix: &str, i: usize) -> String {
    if i == 0 {
        prefix.to_string()
    } else {
        format!("{prefix}{}", i + 1)
    }
}

/// For the core's tests: `nodes` registered nodes `n`, `n2`, … of `gpus` GPUs of 10,000 MiB (split
/// count 20), and their names.
#[cfg(test)]
pub(crate) fn registered_fleet(
    nodes: usize,
    gpus: usize,
) -> (crate::registry::Registry, Vec<String>) {
    let spec = FleetSpec {
        nodes,
        gpus_per_node: gpus,
        memory_mib: 10000,
        split: 20,
        name_prefix: "n".into(),
        ..FleetSpec::default()
    };
    let mut registry = crate::registry::Registry::new();
    for node in fleet(&spec, jiff::Timestamp::UNIX_EPOCH) {
        registry
            .upsert_node(&node)
            .expect("a generated node registers");
    }
    let names = (0..nodes).map(|i| fleet_node_name("n", i)).collect();
    (registry, names)
}

/// The devices of one fleet node, as `register-hami.sh` writes them (`GPU-<node>-<i>`, no index).
pub fn fleet_devices(node: &str, spec: &FleetSpec) -> Vec<DeviceInfo> {
    (0..spec.gpus_per_node)
        .map(|i| DeviceInfo {
            id: format!("GPU-{node}-{i}"),
            index: 0,
            count: spec.split,
            devmem: spec.memory_mib,
            devcore: spec.cores,
            device_type: plugin_type_name(&spec.device_type).into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        })
        .collect()
}

/// A Ready node carrying `devices` in its register annotation, a handshake stamped at `now`, the seed
/// lab's labels, and `nvidia.com/gpu` capacity and allocatable of Σ split counts (so the kubelet
/// admits as many sharing pods as the scheduler can place).
pub fn gpu_node(name: &str, devices: &[DeviceInfo], now: jiff::Timestamp) -> Node {
    let slots: u64 = devices.iter().map(|d| u64::from(d.count)).sum();
    let handshake = Handshake::Requesting(jiff::tz::Offset::UTC.to_datetime(now));
    let annotations = BTreeMap::from([
        (NODE_REGISTER.to_string(), register::render_json(devices)),
        (NODE_HANDSHAKE.to_string(), handshake::render(&handshake)),
    ]);
    let labels = BTreeMap::from([
        ("gpu".to_string(), "on".to_string()),
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        (
            "run.ai/simulated-gpu-node-pool".to_string(),
            "default".to_string(),
        ),
    ]);
    let resources: BTreeMap<String, Quantity> = BTreeMap::from([
        ("cpu".to_string(), Quantity("16".into())),
        ("memory".to_string(), Quantity("64Gi".into())),
        ("pods".to_string(), Quantity("110".into())),
        (RESOURCE_GPU.to_string(), Quantity(slots.to_string())),
    ]);
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            capacity: Some(resources.clone()),
            allocatable: Some(resources),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("kubelet is posting ready status".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// Every node of a fleet.
pub fn fleet(spec: &FleetSpec, now: jiff::Timestamp) -> Vec<Node> {
    (0..spec.nodes)
        .map(|i| {
            let name = fleet_node_name(&spec.name_prefix, i);
            gpu_node(&name, &fleet_devices(&name, spec), now)
        })
        .collect()
}

/// What one container asks for, in the user's terms (`None` leaves a resource out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuAsk {
    /// `nvidia.com/gpu`.
    pub gpus: Option<u32>,
    /// `nvidia.com/gpumem` (MiB).
    pub memory_mib: Option<u32>,
    /// `nvidia.com/gpumem-percentage`.
    pub memory_percent: Option<u32>,
    /// `nvidia.com/gpucores`.
    pub cores: Option<u32>,
}

impl GpuAsk {
    /// `gpu: 1, gpumem: mem, gpucores: cores`, the usual fractional request.
    pub fn fraction(memory_mib: u32, cores: u32) -> Self {
        GpuAsk {
            gpus: Some(1),
            memory_mib: Some(memory_mib),
            memory_percent: None,
            cores: Some(cores),
        }
    }

    fn container(&self, name: &str) -> Container {
        let mut limits = BTreeMap::new();
        let mut put = |k: &str, v: Option<u32>| {
            if let Some(v) = v {
                limits.insert(k.to_string(), Quantity(v.to_string()));
            }
        };
        put(RESOURCE_GPU, self.gpus);
        put(RESOURCE_GPUMEM, self.memory_mib);
        put(RESOURCE_GPUMEM_PERCENTAGE, self.memory_percent);
        put(RESOURCE_GPUCORES, self.cores);
        Container {
            name: name.to_string(),
            image: Some("registry.k8s.io/pause:3.9".into()),
            resources: (!limits.is_empty()).then(|| ResourceRequirements {
                limits: Some(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A pod in `default` with the given init containers and containers (named `init-<i>`, `c-<i>`).
pub fn gpu_pod(name: &str, init: &[GpuAsk], containers: &[GpuAsk]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            init_containers: (!init.is_empty()).then(|| {
                init.iter()
                    .enumerate()
                    .map(|(i, a)| a.container(&format!("init-{i}")))
                    .collect()
            }),
            containers: containers
                .iter()
                .enumerate()
                .map(|(i, a)| a.container(&format!("c-{i}")))
                .collect(),
            restart_policy: Some("Never".into()),
            ..Default::default()
        }),
        status: None,
    }
}

/// Sets pod annotations (builder style).
pub fn with_annotations(mut pod: Pod, annotations: &[(&str, &str)]) -> Pod {
    let map = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in annotations {
        map.insert((*k).to_string(), (*v).to_string());
    }
    pod
}

/// Turns numbers inside quantity maps (`limits`, `requests`, `capacity`, `allocatable`, `overhead`,
/// `hard`) into strings, as the API server canonicalizes them (kubectl POSTs `"nvidia.com/gpu": 1`).
pub fn canonicalize_quantities(value: &mut serde_json::Value) {
    stringify_quantities(value, false);
}

fn stringify_quantities(value: &mut serde_json::Value, in_quantity_map: bool) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let quantity_map = matches!(
                    k.as_str(),
                    "limits" | "requests" | "capacity" | "allocatable" | "overhead" | "hard"
                );
                if in_quantity_map && let serde_json::Value::Number(n) = v {
                    *v = serde_json::Value::String(n.to_string());
                    continue;
                }
                stringify_quantities(v, quantity_map && v.is_object());
            }
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .for_each(|v| stringify_quantities(v, false)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_pods_have_the_shape_the_harness_relies_on() {
        let node = gpu_node(
            "n1",
            &fleet_devices("n1", &FleetSpec::default()),
            "2026-07-27T18:22:36Z".parse().unwrap(),
        );
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["gpu"], "on");
        let status = node.status.as_ref().unwrap();
        assert_eq!(status.capacity, status.allocatable);
        assert_eq!(
            status.capacity.as_ref().unwrap()[RESOURCE_GPU],
            Quantity("80".into()),
            "Σ split counts: 8 GPUs × 10"
        );
        let ready = &status.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (ready.type_.as_str(), ready.status.as_str()),
            ("Ready", "True")
        );

        let pod = gpu_pod("p", &[GpuAsk::fraction(1, 1)], &[GpuAsk::default()]);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        let init = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!(init.name, "init-0");
        assert_eq!(spec.containers[0].name, "c-0");
        assert!(
            spec.containers[0].image.is_some(),
            "kubectl and the API require an image"
        );
        assert!(
            spec.containers[0].resources.is_none(),
            "an ask of nothing sets no limits"
        );
    }

    #[test]
    fn fleet_matches_the_seed_register_script() {
        let nodes = fleet(
            &FleetSpec::default(),
            "2026-07-27T18:22:36Z".parse().unwrap(),
        );
        let names: Vec<_> = nodes
            .iter()
            .map(|n| n.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            ["hami-sim-worker", "hami-sim-worker2", "hami-sim-worker3"]
        );
        let annos = nodes[0].metadata.annotations.as_ref().unwrap();
        let reg = &annos[NODE_REGISTER];
        assert!(reg.starts_with(r#"[{"id":"GPU-hami-sim-worker-0","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-H100-80GB-HBM3","mode":"hami-core","health":true},"#), "{reg}");
        assert_eq!(register::parse(reg).unwrap().len(), 8);
        assert_eq!(annos[NODE_HANDSHAKE], "Requesting_2026-07-27 18:22:36");
        let alloc = nodes[0]
            .status
            .as_ref()
            .unwrap()
            .allocatable
            .as_ref()
            .unwrap();
        assert_eq!(alloc[RESOURCE_GPU].0, "80");
    }

    #[test]
    fn numeric_quantities_become_strings_and_nothing_else_changes() {
        let mut v = serde_json::json!({"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}],
            "resources": {"limits": {"nvidia.com/gpu": 1, "cpu": 0.5}, "requests": {"memory": "1Gi"}}}]},
            "status": {"capacity": {"pods": 110}}});
        canonicalize_quantities(&mut v);
        assert_eq!(
            v["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        assert_eq!(
            v["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "0.5"
        );
        assert_eq!(v["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
        assert_eq!(v["status"]["capacity"]["pods"], "110");
    }

    #[test]
    fn plugin_prefixes_model_names() {
        assert_eq!(plugin_type_name("A100"), "NVIDIA-A100");
        assert_eq!(plugin_type_name("NVIDIA-A100"), "NVIDIA-A100");
    }
}
