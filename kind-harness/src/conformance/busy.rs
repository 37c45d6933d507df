//! A busy simulated cluster: the state a real cluster is in when conformance runs on it, written
//! straight into the simulated store (as an existing cluster's state, not through admission, which
//! would rightly refuse a tenant writing scheduler-owned annotations).
//!
//! On the fleet of `kind-harness sim serve` it adds:
//! - on **every** node, GPU 0 shared by two fractional pods (6000 MiB / 20 cores and 4000 MiB /
//!   10 cores) and GPU 1 held by a whole-GPU pod (all its memory, 100 cores) on even nodes, by a
//!   large fractional pod (20000 MiB / 50 cores) on odd ones, so nodes differ in usage;
//! - a **cordoned device**: GPU 2 of the first node listed in its `hami.io/device-cordon`;
//! - a node with a **second GPU model** (`hami-sim-a100`: four NVIDIA-A100-SXM4-40GB, 40960 MiB),
//!   its GPU 0 already holding a 10000 MiB / 30-core pod.
//!
//! The pods are Running, bound, and carry the annotations a bind leaves (`hami.io/vgpu-node`,
//! `hami.io/vgpu-devices-allocated`, `hami.io/bind-phase: success`), in namespace `busy`.

use serde_json::{Value, json};
use sliceguard::annotations::{
    BACKEND_NVIDIA, BIND_PHASE, DEVICE_CORDON, DEVICES_ALLOCATED, VGPU_NODE, bind_phase,
};
use sliceguard::model::{ContainerDevice, PodDevices};
use sliceguard::objects::{FleetSpec, GpuAsk, fleet, fleet_devices, fleet_node_name, gpu_pod};
use sliceguard_sim::store::{Part, Resource, Store};

/// The namespace of the preloaded pods.
pub const NAMESPACE: &str = "busy";

/// The node of the second GPU model.
pub const SECOND_MODEL_NODE: &str = "hami-sim-a100";

/// The second GPU model.
pub const SECOND_MODEL: &str = "NVIDIA-A100-SXM4-40GB";

/// What the preload wrote, in words (for a banner).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preloaded {
    /// Pods created.
    pub pods: usize,
    /// `node/uuid` of the cordoned device.
    pub cordoned: String,
    /// Nodes added.
    pub nodes: Vec<String>,
}

fn placed_pod(
    name: &str,
    node: &str,
    uuid: &str,
    mem: u32,
    cores: u32,
    scheduler: &str,
) -> Result<Value, String> {
    let allocation = PodDevices(vec![vec![ContainerDevice {
        uuid: uuid.to_string(),
        backend: BACKEND_NVIDIA.into(),
        usedmem: mem,
        usedcores: cores,
    }]]);
    let rendered = sliceguard::codec::pod_devices::render(&allocation)
        .map_err(|e| format!("busy pod {name}: {e}"))?;
    let mut value = serde_json::to_value(gpu_pod(name, &[], &[GpuAsk::fraction(mem, cores)]))
        .map_err(|e| e.to_string())?;
    value["metadata"]["annotations"] = json!({
        VGPU_NODE: node,
        DEVICES_ALLOCATED: rendered,
        BIND_PHASE: bind_phase::SUCCESS,
    });
    value["metadata"]["labels"] = json!({VGPU_NODE: node, "app": "busy"});
    value["metadata"]["namespace"] = json!(NAMESPACE);
    value["spec"]["schedulerName"] = json!(scheduler);
    value["spec"]["nodeName"] = json!(node);
    value["status"] = json!({"phase": "Running"});
    Ok(value)
}

/// Writes the busy state into `store`, whose nodes are `fleet` (at least one node of two GPUs).
pub fn preload(
    store: &mut Store,
    fleet_spec: &FleetSpec,
    scheduler: &str,
) -> Result<Preloaded, String> {
    if fleet_spec.nodes == 0 || fleet_spec.gpus_per_node < 3 {
        return Err(format!(
            "a busy cluster needs at least one node of three GPUs (--nodes {}, --gpus-per-node {})",
            fleet_spec.nodes, fleet_spec.gpus_per_node
        ));
    }
    let api = |e: sliceguard_sim::store::ApiError| format!("busy cluster: {e}");
    let mut out = Preloaded::default();
    let _ = store.create(
        Resource::Namespaces,
        None,
        json!({"metadata": {"name": NAMESPACE}}),
    );
    let mut pods: Vec<Value> = Vec::new();
    for i in 0..fleet_spec.nodes {
        let node = fleet_node_name(&fleet_spec.name_prefix, i);
        let devices = fleet_devices(&node, fleet_spec);
        let (g0, g1) = (&devices[0], &devices[1]);
        pods.push(placed_pod(
            &format!("train-{i}-a"),
            &node,
            &g0.id,
            6000,
            20,
            scheduler,
        )?);
        pods.push(placed_pod(
            &format!("train-{i}-b"),
            &node,
            &g0.id,
            4000,
            10,
            scheduler,
        )?);
        if i % 2 == 0 {
            pods.push(placed_pod(
                &format!("whole-{i}"),
                &node,
                &g1.id,
                g1.devmem,
                100,
                scheduler,
            )?);
        } else {
            pods.push(placed_pod(
                &format!("infer-{i}"),
                &node,
                &g1.id,
                20000,
                50,
                scheduler,
            )?);
        }
        if i == 0 {
            let cordoned = devices[2].id.clone();
            let mut value = store.get(Resource::Nodes, None, &node).map_err(api)?;
            value["metadata"]["annotations"][DEVICE_CORDON] = json!(cordoned);
            store
                .replace(Resource::Nodes, None, &node, Part::Main, value)
                .map_err(api)?;
            out.cordoned = format!("{node}/{cordoned}");
        }
    }
    let second = FleetSpec {
        nodes: 1,
        gpus_per_node: 4,
        memory_mib: 40960,
        device_type: SECOND_MODEL.into(),
        name_prefix: SECOND_MODEL_NODE.into(),
        ..fleet_spec.clone()
    };
    for node in fleet(&second, store.now()) {
        let value = serde_json::to_value(node).map_err(|e| e.to_string())?;
        store.create(Resource::Nodes, None, value).map_err(api)?;
    }
    out.nodes.push(SECOND_MODEL_NODE.to_string());
    let a100 = fleet_devices(SECOND_MODEL_NODE, &second);
    pods.push(placed_pod(
        "a100-job",
        SECOND_MODEL_NODE,
        &a100[0].id,
        10000,
        30,
        scheduler,
    )?);
    for pod in pods {
        store
            .create(Resource::Pods, Some(NAMESPACE), pod)
            .map_err(api)?;
        out.pods += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::precondition::ClusterState;
    use k8s_openapi::api::core::v1::{Node, Pod};

    #[test]
    fn the_busy_cluster_reads_back_as_busy() {
        let spec = FleetSpec::default();
        let mut store = Store::new("2026-01-01T00:00:00Z".parse().unwrap());
        for node in fleet(&spec, store.now()) {
            store
                .create(Resource::Nodes, None, serde_json::to_value(node).unwrap())
                .unwrap();
        }
        let done = preload(&mut store, &spec, "sliceguard-scheduler").unwrap();
        assert_eq!(done.pods, 10);
        let all = sliceguard_sim::store::Selector::default();
        let nodes: Vec<Node> = store
            .list(Resource::Nodes, None, &all, &all)
            .unwrap()
            .0
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        let pods: Vec<Pod> = store
            .list(Resource::Pods, Some(NAMESPACE), &all, &all)
            .unwrap()
            .0
            .into_iter()
            .map(|v| serde_json::from_value(v).unwrap())
            .collect();
        let state = ClusterState::from_objects(&nodes, &pods);
        let gpus = state.gpus();
        assert_eq!(gpus.len(), 28, "3 x 8 H100 and 4 A100");
        // Every node has a GPU in use; one device is cordoned; two models.
        for node in state.inventory.nodes.keys() {
            assert!(
                gpus.iter().any(|g| &g.gpu.node == node && !g.idle()),
                "{node} carries work"
            );
        }
        assert_eq!(gpus.iter().filter(|g| g.cordoned).count(), 1);
        assert!(
            gpus.iter()
                .any(|g| &*g.gpu.info.device_type == SECOND_MODEL)
        );
        assert!(
            crate::audit::audit(
                &nodes,
                &pods,
                jiff::Timestamp::now(),
                std::time::Duration::from_secs(300)
            )
            .healthy()
        );
        assert!(
            preload(
                &mut store,
                &FleetSpec {
                    gpus_per_node: 2,
                    ..spec
                },
                "s"
            )
            .is_err()
        );
    }
}
