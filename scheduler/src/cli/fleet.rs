//! `sliceguard fleet`: a fake GPU fleet as a Kubernetes `NodeList`.

use super::{Failure, Format, print, render};
use crate::objects::{FleetSpec, fleet};
use clap::Args;
use serde_json::json;

/// Print a fake GPU fleet as a Kubernetes NodeList.
///
/// Every node carries the `hami.io/node-nvidia-register` annotation that the seed lab's
/// `register-hami.sh` writes (devices `GPU-<node>-<i>`), a `hami.io/node-handshake`, and
/// `nvidia.com/gpu` capacity and allocatable of GPUs × split, so that the kubelet admits as many
/// sharing pods as the scheduler can place. Feed it to `sliceguard place --nodes`.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  sliceguard fleet --nodes 3 --gpus-per-node 8 --memory 81920 --type NVIDIA-H100-80GB-HBM3 > nodes.yaml"
)]
pub struct FleetArgs {
    /// Number of nodes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    nodes: u32,
    /// GPUs per node.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    gpus_per_node: u32,
    /// Memory per GPU in MiB.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    memory: u32,
    /// Compute per GPU in percent (100 = one GPU).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    cores: u32,
    /// Split count: the most tasks sharing one GPU.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=2_147_483_647))]
    split: u32,
    /// GPU model (prefixed with NVIDIA- unless it starts with NVIDIA, as HAMi's plugin does).
    #[arg(long = "type", default_value = "NVIDIA-H100-80GB-HBM3")]
    device_type: String,
    /// Node name prefix; nodes are named P, P2, P3, ... as kind names its workers.
    #[arg(long, default_value = "hami-sim-worker")]
    name_prefix: String,
    /// Output format (yaml or json).
    #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
    output: Format,
}

pub fn run(args: &FleetArgs) -> Result<(), Failure> {
    if args.device_type.is_empty() || args.device_type.contains([',', ':']) {
        return Err(Failure::input(format!(
            "--type {:?}: must be non-empty and contain no ',' or ':'",
            args.device_type
        )));
    }
    let prefix_ok = !args.name_prefix.is_empty()
        && args.name_prefix.len() <= 200
        && args
            .name_prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && args
            .name_prefix
            .starts_with(|c: char| c.is_ascii_alphanumeric());
    if !prefix_ok {
        return Err(Failure::input(format!(
            "--name-prefix {:?}: must be a DNS subdomain prefix (lowercase letters, digits, '-' and '.')",
            args.name_prefix
        )));
    }
    let spec = FleetSpec {
        nodes: args.nodes as usize,
        gpus_per_node: args.gpus_per_node as usize,
        memory_mib: args.memory,
        cores: args.cores,
        split: args.split,
        device_type: args.device_type.clone(),
        name_prefix: args.name_prefix.clone(),
    };
    let items = fleet(&spec, jiff::Timestamp::now());
    let list = json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items});
    let format = if args.output == Format::Table {
        Format::Yaml
    } else {
        args.output
    };
    print(&render(&list, format)?)
}
