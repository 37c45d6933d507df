//! Memory of what `sliceguard serve` keeps per device: the heap bytes the registry, the usage
//! ledger and the placement index hold once built at the largest fleet (20,000 nodes × 8 GPUs by
//! default), next to the resident bytes each build added.
//!
//! Heap bytes are counted by the global allocator: mimalloc, as `serve` runs it, wrapped by the
//! `cap` crate's counting allocator (the workspace forbids the `unsafe` a hand-written one needs).
//! They are the sizes requested, before mimalloc's size classes; resident bytes
//! (`/proc/self/statm`) include that rounding and the pages the allocator keeps. The counting costs
//! an atomic add per allocation, so it lives in its own binary, away from the timed rows of the
//! placement bench. The fleets are the placement bench's (`fleet/mod.rs`), built through the same
//! `Registry::upsert` and `Ledger::upsert` as `serve`'s watches.
//!
//! `cargo bench -p sliceguard-scheduler --bench memory` prints the rows;
//! `SLICEGUARD_BENCH_MEMORY_JSON=<path>` also writes them (one JSON object per structure) for
//! `make bench`'s report; `SLICEGUARD_BENCH_NODES=100,1000` builds the largest size listed.

use sliceguard::index::PlacementIndex;
use std::fmt::Write as _;
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

mod fleet;
use fleet::{GPUS, ledger_of, pods_of, registry_of};

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Heap bytes (counted) and resident bytes that `build` adds.
fn measure<T>(build: impl FnOnce() -> T) -> (T, usize, usize) {
    let (heap, resident) = (ALLOCATOR.allocated(), rss_bytes());
    let built = build();
    (
        built,
        ALLOCATOR.allocated().saturating_sub(heap),
        rss_bytes().saturating_sub(resident),
    )
}

fn main() {
    let nodes = std::env::var("SLICEGUARD_BENCH_NODES")
        .ok()
        .and_then(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).max())
        .unwrap_or(20_000usize);
    let ((registry, names), registry_heap, registry_resident) = measure(|| registry_of(nodes));
    // The names are the fleet's list for the benches, not the registry's: not counted.
    let names_heap = names.iter().map(String::capacity).sum::<usize>()
        + names.capacity() * std::mem::size_of::<String>();
    drop(names);
    let pods = pods_of(&registry);
    let (ledger, ledger_heap, ledger_resident) = measure(|| ledger_of(&pods));
    let (index, index_heap, index_resident) = measure(|| PlacementIndex::build(&registry, &ledger));
    black_box((&registry, &ledger, &index));
    let devices = nodes * GPUS;
    let mut out = String::new();
    for (name, heap, resident) in [
        (
            "registry",
            registry_heap.saturating_sub(names_heap),
            registry_resident,
        ),
        ("ledger", ledger_heap, ledger_resident),
        ("index", index_heap, index_resident),
    ] {
        eprintln!(
            "memory {name}: {heap} heap bytes ({:.0} per device), {resident} resident, for {devices} devices and {} pods",
            heap as f64 / devices as f64,
            pods.len()
        );
        let _ = writeln!(
            out,
            "{{\"group\":\"memory\",\"name\":{name:?},\"nodes\":{nodes},\"median_ns\":0,\"p99_ns\":0,\"samples\":{},\"bytes\":{heap},\"resident\":{resident}}}",
            pods.len()
        );
    }
    if let Ok(path) = std::env::var("SLICEGUARD_BENCH_MEMORY_JSON")
        && let Err(e) = std::fs::write(&path, out)
    {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
}
