//! `sliceguard register`: a fake GPU inventory on a cluster's nodes, as HAMi's device plugin (or the
//! seed lab's `register-hami.sh`) would announce it.
//!
//! For each node matching the label selector it writes, with JSON merge patches:
//! - `metadata.annotations`: `hami.io/node-nvidia-register` (the devices of
//!   [`crate::objects::fleet_devices`], rendered by [`crate::codec::register::render_json`]) and a
//!   `hami.io/node-handshake` of `Requesting_<now>`;
//! - the **status** subresource: `capacity` and `allocatable` `nvidia.com/gpu` = GPUs × split, so the
//!   kubelet admits as many sharing pods as the scheduler can place (seed-lab report, finding (c)).
//!   A kubelet device plugin that owns `nvidia.com/gpu` on the node overwrites this.
//!
//! `--dry-run` lists the matching nodes and prints the patches (one JSON object per line) without
//! writing.

use super::Failure;
use super::serve::{parse_std_duration, runtime};
use crate::annotations::{NODE_HANDSHAKE, NODE_REGISTER, RESOURCE_GPU};
use crate::codec::handshake::{self, Handshake};
use crate::codec::register::render_json;
use crate::objects::{FleetSpec, fleet_devices};
use crate::server::{KubeSource, ServeError, connect, kube_cluster};
use clap::Args;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// Write a fake GPU inventory (register annotation, handshake, nvidia.com/gpu capacity) onto nodes.
///
/// Every node matching --nodes gets the hami.io/node-nvidia-register annotation with
/// --gpus-per-node devices named GPU-<node>-<i>, a hami.io/node-handshake, and status capacity and
/// allocatable nvidia.com/gpu = GPUs × split. With --dry-run the matching nodes are listed and the
/// patches printed, one JSON object per line, and nothing is written.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sliceguard register --nodes gpu=on --gpus-per-node 8 --memory 81920 --type NVIDIA-H100-80GB-HBM3"
)]
pub struct RegisterArgs {
    /// Label selector of the nodes to register (e.g. gpu=on, or '!node-role.kubernetes.io/control-plane').
    #[arg(long, value_name = "SELECTOR")]
    nodes: String,
    /// GPUs per node.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    gpus_per_node: u32,
    /// Memory per GPU in MiB.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    memory: u32,
    /// GPU model (prefixed with NVIDIA- unless it starts with NVIDIA, as HAMi's plugin does).
    #[arg(long = "type", default_value = "NVIDIA-H100-80GB-HBM3")]
    device_type: String,
    /// Split count: the most tasks sharing one GPU.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    split: u32,
    /// Compute per GPU in percent (100 = one GPU).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    cores: u32,
    /// List the nodes and print the patches; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// kubeconfig context to use instead of the current one.
    #[arg(long)]
    context: Option<String>,
    /// API connect timeout and reachability bound (Go duration).
    #[arg(long, default_value = "10s", value_parser = parse_std_duration)]
    kube_timeout: Duration,
}

/// The two patches for one node.
pub fn node_patches(node: &str, spec: &FleetSpec, now: jiff::Timestamp) -> (Value, Value) {
    let devices = fleet_devices(node, spec);
    let handshake = handshake::render(&Handshake::Requesting(
        jiff::tz::Offset::UTC.to_datetime(now),
    ));
    let slots = u64::from(spec.split) * spec.gpus_per_node as u64;
    let metadata = json!({"metadata": {"annotations": {
        NODE_REGISTER: render_json(&devices),
        NODE_HANDSHAKE: handshake,
    }}});
    let status = json!({"status": {
        "capacity": {RESOURCE_GPU: slots.to_string()},
        "allocatable": {RESOURCE_GPU: slots.to_string()},
    }});
    (metadata, status)
}

pub fn run(args: &RegisterArgs) -> Result<(), Failure> {
    if args.device_type.is_empty() || args.device_type.contains([',', ':']) {
        return Err(Failure::input(format!(
            "--type {:?}: must be non-empty and contain no ',' or ':'",
            args.device_type
        )));
    }
    if args.nodes.trim().is_empty() {
        return Err(Failure::input(
            "--nodes: a label selector is required (e.g. gpu=on)",
        ));
    }
    let spec = FleetSpec {
        nodes: 0,
        gpus_per_node: args.gpus_per_node as usize,
        memory_mib: args.memory,
        cores: args.cores,
        split: args.split,
        device_type: args.device_type.clone(),
        name_prefix: String::new(),
    };
    let source = KubeSource {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        timeout: args.kube_timeout,
    };
    runtime()?
        .block_on(register(&source, &args.nodes, &spec, args.dry_run))
        .map_err(|e| Failure {
            code: e.exit_code(),
            message: e.to_string(),
        })
}

async fn register(
    source: &KubeSource,
    selector: &str,
    spec: &FleetSpec,
    dry_run: bool,
) -> Result<(), ServeError> {
    let (client, _) = connect(source).await?;
    let api: Api<Node> = Api::all(client);
    let listed = api
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| {
            ServeError::Api(format!(
                "cannot list nodes with --nodes {selector:?}: {}",
                kube_cluster::failure(e)
            ))
        })?;
    let names: Vec<String> = listed
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    if names.is_empty() {
        return Err(ServeError::Api(format!(
            "no node matches --nodes {selector:?}"
        )));
    }
    let now = jiff::Timestamp::now();
    let mut out = String::new();
    for name in &names {
        let (metadata, status) = node_patches(name, spec, now);
        if dry_run {
            out.push_str(&json!({"node": name, "patch": metadata}).to_string());
            out.push('\n');
            out.push_str(
                &json!({"node": name, "subresource": "status", "patch": status}).to_string(),
            );
            out.push('\n');
            continue;
        }
        let patched = |e: kube::Error, what: &str| {
            ServeError::Api(format!(
                "cannot patch node {name} {what}: {}",
                kube_cluster::failure(e)
            ))
        };
        api.patch(name, &PatchParams::default(), &Patch::Merge(&metadata))
            .await
            .map_err(|e| patched(e, "annotations"))?;
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(|e| patched(e, "status"))?;
        out.push_str(&format!(
            "node/{name} registered: {} × {} MiB {}, split {} (nvidia.com/gpu = {})\n",
            spec.gpus_per_node,
            spec.memory_mib,
            crate::objects::plugin_type_name(&spec.device_type),
            spec.split,
            u64::from(spec.split) * spec.gpus_per_node as u64
        ));
    }
    super::print(&out).map_err(|f| ServeError::Api(f.message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_carry_the_inventory_and_the_kubelet_capacity() {
        let spec = FleetSpec {
            gpus_per_node: 2,
            memory_mib: 1000,
            split: 4,
            ..FleetSpec::default()
        };
        let (metadata, status) = node_patches("w1", &spec, "2026-01-02T03:04:05Z".parse().unwrap());
        let annotations = &metadata["metadata"]["annotations"];
        assert_eq!(
            annotations[NODE_HANDSHAKE],
            "Requesting_2026-01-02 03:04:05"
        );
        let devices =
            crate::codec::register::parse(annotations[NODE_REGISTER].as_str().unwrap()).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].id, "GPU-w1-1");
        assert_eq!(devices[0].devmem, 1000);
        assert_eq!(devices[0].count, 4);
        assert_eq!(status["status"]["capacity"][RESOURCE_GPU], "8");
        assert_eq!(status["status"]["allocatable"][RESOURCE_GPU], "8");
    }
}
