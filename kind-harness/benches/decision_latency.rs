//! Decision latency of sliceguard's core at 5,000 nodes × 8 GPUs (about half used), every node
//! offered, for HAMi's binpack/binpack and binpack/spread and sliceguard's fragmentation policy.
//! Run with `cargo bench -p sliceguard-kind-harness --bench decision_latency`. The target: the
//! fragmentation policy within 3× binpack's latency (see `bench/QUALITY.md`, which measures the same
//! fixture).

use kind_harness::trace::latency::LatencyFixture;
use std::sync::{Mutex, OnceLock};

/// One fleet for every policy: each decision learns its pod and assumes its placement, as `serve`'s
/// filter does, so the fleet and the profile move on between decisions.
fn fixture() -> &'static Mutex<LatencyFixture> {
    static FIXTURE: OnceLock<Mutex<LatencyFixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(LatencyFixture::new(5_000, 8)))
}

fn main() {
    divan::main();
}

#[divan::bench(args = [("binpack", "binpack"), ("binpack", "spread"), ("binpack", "fragmentation")], sample_count = 30)]
fn decision(bencher: divan::Bencher, (node, gpu): (&str, &str)) {
    let mut fixture = fixture()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Ok(pods) = fixture.prepared(node, gpu) else {
        return;
    };
    let mut i = 0;
    bencher.bench_local(|| {
        let (pod, cpu) = &pods[i % pods.len()];
        i += 1;
        fixture.decide(pod, *cpu)
    });
}
