//! Placement benchmarks: the decision through the placement index against the plain scan of every
//! node (HAMi's approach), against a rebuild of usage from every pod followed by the scan (HAMi's
//! per-call cost), and against a floor (one pass over every device's state, the least any
//! exhaustive decision must do), on seeded fleets of 100 to 20,000 nodes × 8 GPUs at about 50 %
//! utilisation with fragmentation; plus the ledger update per pod event and annotation parsing.
//!
//! `cargo bench -p sliceguard-scheduler --bench placement` runs the divan benches (fractional
//! decision, index and scan). With `SLICEGUARD_BENCH_JSON=<path>` it instead runs every row with its
//! own sampler (divan reports no percentiles) and writes one JSON object per row (median and p99 in
//! nanoseconds) to `<path>`; `make bench` turns that file into `bench/REPORT.md`.
//! `SLICEGUARD_BENCH_NODES=100,1000` limits the fleet sizes. The memory rows are the `memory`
//! bench's (its own binary: it counts every allocation, which the timings here must not pay).

use k8s_openapi::api::core::v1::Pod;
use sliceguard::annotations::{DEVICES_ALLOCATED, VGPU_NODE};
use sliceguard::cluster_view::ClusterView;
use sliceguard::codec::{pod_devices, reasons, register};
use sliceguard::decision::{self, PreparedPod, SchedulerSettings};
use sliceguard::index::PlacementIndex;
use sliceguard::ledger::Ledger;
use sliceguard::model::{DeviceInfo, PodAllocation};
use sliceguard::objects::{GpuAsk, gpu_pod};
use sliceguard::registry::Registry;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// The allocator `sliceguard serve` runs on, so that the decisions and ledger updates are timed
/// with the allocations they make in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod fleet;
use fleet::{DEVMEM, GPUS, device, ledger_of, pods_of, registry_of};

const SIZES: [usize; 4] = [100, 1_000, 5_000, 20_000];

/// A seeded fleet, its pods and everything each decision path reads.
struct Fleet {
    registry: Registry,
    ledger: Ledger,
    index: PlacementIndex,
    names: Vec<String>,
    /// Every pod: key, node, allocation (decoded once, as HAMi's cache keeps them).
    pods: Vec<(String, String, PodAllocation)>,
    /// Flat device state for the floor: (devmem, usedmem, count, used, usedcores) per device.
    flat: Vec<[u64; 5]>,
}

impl Fleet {
    fn new(nodes: usize) -> Fleet {
        let (registry, names) = registry_of(nodes);
        let pods = pods_of(&registry);
        let ledger = ledger_of(&pods);
        let index = PlacementIndex::build(&registry, &ledger);
        let flat = Self::flatten(&registry, &ledger);
        Fleet {
            registry,
            ledger,
            index,
            names,
            pods,
            flat,
        }
    }

    fn flatten(registry: &Registry, ledger: &Ledger) -> Vec<[u64; 5]> {
        use sliceguard::ledger::UsageSource;
        registry
            .nodes()
            .flat_map(|n| {
                n.devices.iter().map(|d| {
                    let u = ledger.device_usage(&n.name, &d.id);
                    [
                        u64::from(d.devmem),
                        u.usedmem,
                        u64::from(d.count),
                        u.used,
                        u.usedcores,
                    ]
                })
            })
            .collect()
    }
}

/// The requests decided: fractional, 4 whole GPUs, one exclusive GPU, and one nothing can hold.
fn requests() -> Vec<(&'static str, PreparedPod, u64, u64)> {
    let settings = SchedulerSettings::default();
    let make = |name: &str, ask: GpuAsk| {
        let pod = gpu_pod(name, &[], &[ask]);
        decision::prepare(&pod, &settings)
            .unwrap_or_else(|e| panic!("fixture pod {name} is invalid: {e}"))
    };
    vec![
        (
            "fractional",
            make("fractional", GpuAsk::fraction(16_384, 20)),
            16_384,
            20,
        ),
        (
            "four-gpu",
            make(
                "four-gpu",
                GpuAsk {
                    gpus: Some(4),
                    memory_mib: None,
                    memory_percent: Some(100),
                    cores: Some(100),
                },
            ),
            u64::from(DEVMEM),
            100,
        ),
        (
            "exclusive",
            make(
                "exclusive",
                GpuAsk {
                    gpus: Some(1),
                    memory_mib: None,
                    memory_percent: Some(100),
                    cores: Some(100),
                },
            ),
            u64::from(DEVMEM),
            100,
        ),
        (
            "impossible",
            make("impossible", GpuAsk::fraction(200_000, 10)),
            200_000,
            10,
        ),
    ]
}

/// An annotation parser: true when the input parses.
type Parser = fn(&str) -> bool;

fn now() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_750_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The floor: one pass over every device's state, checking the request on each and keeping the
/// best-scored node with a fitting device (no allocation, no strings, no maps).
fn floor(flat: &[[u64; 5]], mem: u64, cores: u64) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (n, node) in flat.chunks_exact(GPUS).enumerate() {
        let mut fits = false;
        let mut used = 0u64;
        for d in node {
            used += d[1];
            fits |= d[0] - d[1].min(d[0]) >= mem && d[3] < d[2] && 100 - d[4].min(100) >= cores;
        }
        if fits && best.is_none_or(|(b, _)| used > b) {
            best = Some((used, n));
        }
    }
    best.map(|(_, n)| n)
}

fn rebuild_and_scan(fleet: &Fleet, pod: &PreparedPod) -> decision::Decision {
    let ledger = ledger_of(&fleet.pods);
    sliceguard::scan::decide(
        &fleet.registry,
        &ledger,
        pod,
        &fleet.names,
        now(),
        Default::default(),
    )
}

// ---- report mode: own sampler, JSON rows ----

struct Row {
    group: String,
    name: String,
    nodes: usize,
    median_ns: f64,
    p99_ns: f64,
    samples: usize,
    bytes: Option<usize>,
}

/// Times `f` (per call) until `budget` is spent or `max` samples are taken (at least 5). Calls
/// shorter than 20 µs are timed in batches so the clock's resolution does not dominate.
fn sample(mut f: impl FnMut(), max: usize, budget: Duration) -> (f64, f64, usize) {
    let start = Instant::now();
    f();
    let first = start.elapsed().as_nanos().max(1) as f64;
    let batch = ((20_000.0 / first).ceil() as usize).clamp(1, 10_000);
    let mut times: Vec<f64> = Vec::new();
    let begin = Instant::now();
    while times.len() < max && (times.len() < 5 || begin.elapsed() < budget) {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        times.push(t.elapsed().as_nanos() as f64 / batch as f64);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (pick(0.5), pick(0.99), times.len())
}

fn json_rows(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        let bytes = r.bytes.map_or("null".to_string(), |b| b.to_string());
        let _ = writeln!(
            out,
            "{{\"group\":{:?},\"name\":{:?},\"nodes\":{},\"median_ns\":{:.1},\"p99_ns\":{:.1},\"samples\":{},\"bytes\":{}}}",
            r.group, r.name, r.nodes, r.median_ns, r.p99_ns, r.samples, bytes
        );
    }
    out
}

fn sizes() -> Vec<usize> {
    std::env::var("SLICEGUARD_BENCH_NODES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| SIZES.to_vec())
}

fn report(path: &str) {
    let mut rows: Vec<Row> = Vec::new();
    let mut push = |group: &str, name: &str, nodes: usize, (m, p, s): (f64, f64, usize)| {
        eprintln!(
            "{group:>24} {name:<16} {nodes:>6} nodes  median {m:>14.0} ns  p99 {p:>14.0} ns  ({s} samples)"
        );
        rows.push(Row {
            group: group.into(),
            name: name.into(),
            nodes,
            median_ns: m,
            p99_ns: p,
            samples: s,
            bytes: None,
        });
    };
    let pods = requests();
    for nodes in sizes() {
        let fleet = Fleet::new(nodes);
        let (slow_max, slow_budget) = match nodes {
            n if n >= 20_000 => (8, Duration::from_secs(2)),
            n if n >= 5_000 => (20, Duration::from_secs(3)),
            _ => (50, Duration::from_secs(2)),
        };
        for (label, pod, mem, cores) in &pods {
            let group = format!("decision/{label}");
            let indexed = fleet
                .index
                .decide(&fleet.registry, pod, &fleet.names, now())
                .unwrap_or_else(|| panic!("the index declined {label}"));
            let scanned = sliceguard::scan::decide(
                &fleet.registry,
                &fleet.ledger,
                pod,
                &fleet.names,
                now(),
                Default::default(),
            );
            assert_eq!(
                indexed.outcome, scanned.outcome,
                "{label} at {nodes} nodes: index and scan disagree"
            );
            push(
                &group,
                "index",
                nodes,
                sample(
                    || {
                        black_box(
                            fleet
                                .index
                                .decide(&fleet.registry, pod, &fleet.names, now()),
                        );
                    },
                    2_000,
                    Duration::from_secs(2),
                ),
            );
            push(
                &group,
                "offered-set",
                nodes,
                sample(
                    || {
                        black_box(sliceguard::index::offered_set(&fleet.names));
                    },
                    2_000,
                    Duration::from_secs(2),
                ),
            );
            // The floor of reading the offered list: every byte of every name read once, by the
            // hasher the registry's name lookup uses, and nothing stored.
            let hasher = foldhash::fast::FixedState::default();
            push(
                &group,
                "names-read",
                nodes,
                sample(
                    || {
                        let mut sum = 0u64;
                        for name in black_box(&fleet.names) {
                            sum = sum.wrapping_add(std::hash::BuildHasher::hash_one(
                                &hasher,
                                name.as_str(),
                            ));
                        }
                        black_box(sum);
                    },
                    2_000,
                    Duration::from_secs(2),
                ),
            );
            push(
                &group,
                "scan",
                nodes,
                sample(
                    || {
                        black_box(sliceguard::scan::decide(
                            &fleet.registry,
                            &fleet.ledger,
                            pod,
                            &fleet.names,
                            now(),
                            Default::default(),
                        ));
                    },
                    slow_max,
                    slow_budget,
                ),
            );
            push(
                &group,
                "rebuild+scan",
                nodes,
                sample(
                    || {
                        black_box(rebuild_and_scan(&fleet, pod));
                    },
                    slow_max,
                    slow_budget,
                ),
            );
            push(
                &group,
                "floor",
                nodes,
                sample(
                    || {
                        black_box(floor(&fleet.flat, *mem, *cores));
                    },
                    2_000,
                    Duration::from_secs(1),
                ),
            );
        }
        // One pod event as the service applies it: the ledger update and the index refresh.
        let pod_objects = event_pods(&fleet, 256);
        let mut plain = fleet.ledger.clone();
        let mut i = 0usize;
        push(
            "ledger update per pod event",
            "ledger only",
            nodes,
            sample(
                || {
                    let p = &pod_objects[i % pod_objects.len()];
                    i += 1;
                    let _ = black_box(plain.observe(p));
                },
                2_000,
                Duration::from_secs(1),
            ),
        );
        let mut view = view_of(&fleet);
        let mut i = 0usize;
        push(
            "ledger update per pod event",
            "ledger+index",
            nodes,
            sample(
                || {
                    let p = &pod_objects[i % pod_objects.len()];
                    i += 1;
                    let _ = black_box(view.apply_pod(p));
                },
                2_000,
                Duration::from_secs(1),
            ),
        );
    }

    // Annotation parsing, bytes per second (fixed inputs, independent of the fleet).
    let devices: Vec<DeviceInfo> = (0..GPUS).map(|g| device("gpu-node-00000", g)).collect();
    let json = register::render_json(&devices);
    let text = register::render_text(&devices).unwrap_or_default();
    let allocated = "GPU-gpu-node-00000-0,NVIDIA,16384,20:GPU-gpu-node-00000-1,NVIDIA,16384,20:;GPU-gpu-node-00000-2,NVIDIA,81920,100:;";
    let reason = "1/8 AllocatedCardsInsufficientRequest, 2/8 CardInsufficientMemory, 5/8 CardTimeSlicingExhausted";
    let lock = "2025-06-15T10:11:12Z,default,pod-123";
    let cases: Vec<(&str, &str, Parser)> = vec![
        ("register (JSON, 8 GPUs)", json.as_str(), |s| {
            register::parse(s).is_ok()
        }),
        ("register (text, 8 GPUs)", text.as_str(), |s| {
            register::parse(s).is_ok()
        }),
        ("pod devices", allocated, |s| pod_devices::parse(s).is_ok()),
        ("reasons", reason, |s| reasons::parse(s).is_ok()),
        ("node lock", lock, |s| {
            sliceguard::codec::lock::parse(s).is_ok()
        }),
    ];
    for (name, input, parse) in cases {
        assert!(parse(input), "fixture {name} does not parse: {input}");
        let (m, p, s) = sample(
            || {
                black_box(parse(black_box(input)));
            },
            2_000,
            Duration::from_millis(500),
        );
        eprintln!("parse {name}: {} bytes, median {m:.0} ns", input.len());
        rows.push(Row {
            group: "annotation parsing".into(),
            name: name.into(),
            nodes: 0,
            median_ns: m,
            p99_ns: p,
            samples: s,
            bytes: Some(input.len()),
        });
    }
    if let Err(e) = std::fs::write(path, json_rows(&rows)) {
        eprintln!("cannot write {path}: {e}");
        std::process::exit(1);
    }
}

/// Pod objects as the watch delivers them, each annotated with one fixture allocation.
fn event_pods(fleet: &Fleet, count: usize) -> Vec<Pod> {
    fleet
        .pods
        .iter()
        .step_by((fleet.pods.len() / count).max(1))
        .take(count)
        .map(|(key, node, allocation)| {
            let name = key.trim_start_matches("default/");
            let mut pod = gpu_pod(name, &[], &[GpuAsk::fraction(1, 1)]);
            let encoded = pod_devices::render(&allocation.to_pod_devices()).unwrap_or_default();
            pod.metadata.annotations = Some(BTreeMap::from([
                (VGPU_NODE.to_string(), node.clone()),
                (DEVICES_ALLOCATED.to_string(), encoded),
            ]));
            pod
        })
        .collect()
}

/// The service's view of the fleet: nodes registered, every pod counted, index current.
fn view_of(fleet: &Fleet) -> ClusterView {
    let mut view = ClusterView::new();
    let nodes: Vec<k8s_openapi::api::core::v1::Node> = fleet
        .registry
        .nodes()
        .map(|n| sliceguard::objects::gpu_node(&n.name, &n.devices, now()))
        .collect();
    let _ = view.replace_nodes(&nodes, now());
    let _ = view.replace_pods(&event_pods(fleet, fleet.pods.len()));
    view
}

fn main() {
    match std::env::var("SLICEGUARD_BENCH_JSON") {
        Ok(path) => report(&path),
        Err(_) => divan::main(),
    }
}

// ---- divan: the fractional decision, index and plain scan ----

fn fleet_of(nodes: usize) -> &'static Fleet {
    use std::sync::{Mutex, OnceLock};
    static FLEETS: OnceLock<Mutex<BTreeMap<usize, &'static Fleet>>> = OnceLock::new();
    let fleets = FLEETS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut guard = fleets.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .entry(nodes)
        .or_insert_with(|| Box::leak(Box::new(Fleet::new(nodes))))
}

#[divan::bench(args = SIZES, sample_count = 50)]
fn fractional_index(bencher: divan::Bencher, nodes: usize) {
    let fleet = fleet_of(nodes);
    let pod = &requests()[0].1;
    bencher.bench_local(|| {
        fleet
            .index
            .decide(&fleet.registry, pod, &fleet.names, now())
    });
}

#[divan::bench(args = [100, 1_000, 5_000], sample_count = 10)]
fn fractional_scan(bencher: divan::Bencher, nodes: usize) {
    let fleet = fleet_of(nodes);
    let pod = &requests()[0].1;
    bencher.bench_local(|| {
        sliceguard::scan::decide(
            &fleet.registry,
            &fleet.ledger,
            pod,
            &fleet.names,
            now(),
            Default::default(),
        )
    });
}
