//! `make bench`'s report writer: reads the rows of `scheduler/benches/placement.rs`
//! (`SLICEGUARD_BENCH_JSON`), measures end-to-end pods per second through the simulated cluster
//! (in process through the deterministic world, and over loopback HTTP through the embedded live
//! cluster), and writes `bench/REPORT.md`: machine, date, commit, one table per group with median
//! and p99, and the ratios sliceguard/scan, sliceguard/rebuild-and-scan and sliceguard/floor, each
//! from the same run, then the targets met or missed.
//!
//! It also measures the peak RSS of the release `sliceguard serve` holding a large cluster: it starts
//! `kind-harness sim serve --nodes N --pods P --no-webhook` (the simulated API server preloaded with
//! N nodes × 8 GPUs and P placed GPU pods), then `sliceguard serve --kubeconfig` against it, waits
//! for `GET /readyz` = 200 (its initial lists done), sends a few `/filter` calls, and reads `VmHWM`
//! from `/proc/<pid>/status`; the same again with half the pods separates per-pod from per-node
//! cost. Both binaries come from `--bin-dir` (default `target/release`; `make bench` builds them).
//!
//! `cargo run --release -p sliceguard-kind-harness --example bench_report -- --rows <json> --out
//! bench/REPORT.md [--e2e-nodes 1000] [--e2e-pods 1000] [--serve-nodes 20000] [--serve-pods 100000]
//! [--bin-dir target/release] [--skip-serve] [--only in-process|loopback|serve]
//! [--service-rows <json>] [--memory-rows <json>] [--splice]` (`--only` runs one measurement and
//! prints it, for profiling, without writing the report; `--only serve --splice` instead replaces
//! the serve section and its target row in `--out`, keeping the rest as it was measured; `--service-rows` adds the service benchmark's rows,
//! written by `scheduler/benches/service.rs`; `--memory-rows` the memory bench's, written by
//! `scheduler/benches/memory.rs`)

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::Value;
use sliceguard::objects::{FleetSpec, GpuAsk, gpu_pod};
use sliceguard_sim::embedded::{Embedded, EmbeddedOptions};
use sliceguard_sim::world::{SimConfig, World};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

struct Args {
    rows: String,
    /// Rows of `scheduler/benches/service.rs` (`SLICEGUARD_BENCH_SERVICE_JSON`), if measured.
    service_rows: Option<String>,
    /// Rows of `scheduler/benches/memory.rs` (`SLICEGUARD_BENCH_MEMORY_JSON`), if measured.
    memory_rows: Option<String>,
    out: String,
    e2e_nodes: usize,
    e2e_pods: usize,
    serve_nodes: usize,
    serve_pods: usize,
    bin_dir: String,
    skip_serve: bool,
    /// Runs one measurement and prints it without writing the report (for profiling it alone).
    only: Option<String>,
    /// With `--only serve`: splice the new measurements into `out` instead of printing them.
    splice: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rows: String::new(),
        service_rows: None,
        memory_rows: None,
        out: "bench/REPORT.md".into(),
        e2e_nodes: 1000,
        e2e_pods: 1000,
        serve_nodes: 20_000,
        serve_pods: 100_000,
        bin_dir: "target/release".into(),
        skip_serve: false,
        only: None,
        splice: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String, flag: &str| {
            v.parse::<usize>()
                .map_err(|e| format!("{flag}: {v:?} is not a count: {e}"))
        };
        match flag.as_str() {
            "--rows" => args.rows = value()?,
            "--service-rows" => args.service_rows = Some(value()?),
            "--memory-rows" => args.memory_rows = Some(value()?),
            "--out" => args.out = value()?,
            "--e2e-nodes" => args.e2e_nodes = number(value()?, "--e2e-nodes")?,
            "--e2e-pods" => args.e2e_pods = number(value()?, "--e2e-pods")?,
            "--serve-nodes" => args.serve_nodes = number(value()?, "--serve-nodes")?,
            "--serve-pods" => args.serve_pods = number(value()?, "--serve-pods")?,
            "--bin-dir" => args.bin_dir = value()?,
            "--skip-serve" => args.skip_serve = true,
            "--splice" => args.splice = true,
            "--only" => {
                let section = value()?;
                if !["in-process", "loopback", "serve"].contains(&section.as_str()) {
                    return Err(format!(
                        "--only {section:?}: expected in-process, loopback or serve"
                    ));
                }
                args.only = Some(section);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.rows.is_empty() && args.only.is_none() {
        return Err("--rows <file written by the placement bench> is required".into());
    }
    Ok(args)
}

fn fleet(nodes: usize) -> FleetSpec {
    FleetSpec {
        nodes,
        gpus_per_node: 8,
        ..FleetSpec::default()
    }
}

/// Fractional pods, four to a GPU at most, so that every pod fits.
fn e2e_pod(i: usize) -> Pod {
    gpu_pod(&format!("e2e-{i}"), &[], &[GpuAsk::fraction(8_000, 10)])
}

/// Pods per second through the deterministic world: webhook, filter, bind and kubelet in process.
/// The world checks its safety invariants only at the end here (`World::set_check_every(0)`); the
/// final check still fails the measurement on any violation.
fn in_process(nodes: usize, pods: usize) -> Result<(f64, String), String> {
    let mut world = World::new(SimConfig {
        fleet: fleet(nodes),
        ..SimConfig::default()
    });
    world.set_check_every(0);
    // Let the scheduler sync before timing.
    for _ in 0..3 {
        world.step();
    }
    let start = Instant::now();
    for i in 0..pods {
        world.create_pod(&e2e_pod(i))?;
    }
    let mut steps = 0usize;
    while world.bound_at().len() < pods && steps < pods * 4 + 100 {
        world.step();
        steps += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bound = world.bound_at().len();
    if bound < pods {
        return Err(format!(
            "only {bound} of {pods} pods bound after {steps} steps"
        ));
    }
    let checked = Instant::now();
    world.check();
    let check_s = checked.elapsed().as_secs_f64();
    if let Some(v) = world.violations().first() {
        return Err(format!(
            "{} invariant violations, the first: {v}",
            world.violations().len()
        ));
    }
    let note = format!(
        "{pods} pods bound in {elapsed:.2} s over {steps} world steps (one pod scheduled per step; invariants checked once at the end, {check_s:.2} s, not timed); violations: 0"
    );
    Ok((pods as f64 / elapsed, note))
}

/// Pods per second over loopback HTTP: the embedded live cluster (API façade, HTTPS admission
/// webhook, kube-scheduler stand-in calling the extender, kubelets) with sliceguard serving, its API
/// client paced at `api_qps` requests per second (`None`: `serve`'s default, `--kube-api-qps 50`).
fn loopback(nodes: usize, pods: usize, api_qps: Option<u64>) -> Result<(f64, String), String> {
    let mut limits = sliceguard::server::ServeLimits::default();
    if let Some(qps) = api_qps {
        limits.api.qps = qps;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let cluster = Embedded::start(EmbeddedOptions {
            fleet: fleet(nodes),
            limits,
            ..EmbeddedOptions::default()
        })
        .await?;
        let api: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let start = Instant::now();
        let mut created = 0usize;
        for chunk in (0..pods).collect::<Vec<_>>().chunks(32) {
            let mut batch = Vec::new();
            for &i in chunk {
                let api = api.clone();
                batch.push(tokio::spawn(async move {
                    api.create(&PostParams::default(), &e2e_pod(i)).await
                }));
            }
            for task in batch {
                if matches!(task.await, Ok(Ok(_))) {
                    created += 1;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        let bound = loop {
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let bound = list
                .items
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                .count();
            if bound >= created || Instant::now() > deadline {
                break bound;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let elapsed = start.elapsed().as_secs_f64();
        cluster.stop().await;
        if bound < pods {
            return Err(format!(
                "{bound} of {pods} pods bound ({created} created) within 300 s"
            ));
        }
        Ok((
            pods as f64 / elapsed,
            format!("{pods} pods created by 32 concurrent clients and bound in {elapsed:.2} s"),
        ))
    })
}

/// One peak-RSS measurement of the release `sliceguard serve` against a preloaded simulated cluster.
#[derive(Debug, Clone)]
struct ServeRss {
    nodes: usize,
    pods: usize,
    /// `VmHWM` of the sliceguard process once ready and after the filter calls, KiB.
    hwm_kib: u64,
    /// `VmRSS` at the same moment, KiB.
    rss_kib: u64,
    /// Seconds `kind-harness sim serve` took to preload and listen.
    facade_s: f64,
    /// Seconds from starting `sliceguard serve` to `/readyz` = 200 (initial lists done).
    ready_s: f64,
    /// `/filter` calls answered 200 with a node, of those sent, and their median latency.
    filters_ok: usize,
    filters_sent: usize,
    filter_ms: f64,
}

/// Kills and reaps a child process when dropped, so that no error path leaves one running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// A minimal HTTP/1.1 call (`Connection: close`); returns the status code and the raw body.
fn http_call(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let socket: std::net::SocketAddr =
        addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{method} {addr}{path}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{method} {addr}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{method} {addr}{path}: no HTTP status in the answer"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A `VmHWM:`-style field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{path} has no {field} line"))
}

/// Starts the preloaded simulated cluster and `sliceguard serve` against it; reads the peak RSS.
fn serve_rss(bin_dir: &str, nodes: usize, pods: usize) -> Result<ServeRss, String> {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!(
        "sliceguard-bench-serve-{}-{pods}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let log = |name: &str| {
        std::fs::File::create(dir.join(name))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null())
    };
    let api = format!("127.0.0.1:{}", free_port()?);
    let harness = format!("{bin_dir}/kind-harness");
    let started = Instant::now();
    let mut facade = Reaped(
        Command::new(&harness)
            .args(["sim", "serve", "--addr", &api, "--nodes"])
            .arg(nodes.to_string())
            .args(["--gpus-per-node", "8", "--pods"])
            .arg(pods.to_string())
            .args(["--no-webhook", "--extender-url", "http://127.0.0.1:1"])
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(log("sim-serve.log"))
            .spawn()
            .map_err(|e| {
                format!("cannot start {harness}: {e} (run `make bench`, which builds it)")
            })?,
    );
    let deadline = Instant::now() + Duration::from_secs(900);
    while !kubeconfig.exists() {
        if let Ok(Some(status)) = facade.0.try_wait() {
            return Err(format!(
                "kind-harness sim serve exited with {status} (log: {})",
                dir.join("sim-serve.log").display()
            ));
        }
        if Instant::now() > deadline {
            return Err("kind-harness sim serve did not listen within 900 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let facade_s = started.elapsed().as_secs_f64();
    let http = format!("127.0.0.1:{}", free_port()?);
    let metrics = format!("127.0.0.1:{}", free_port()?);
    let binary = format!("{bin_dir}/sliceguard");
    let started = Instant::now();
    let mut sliceguard = Reaped(
        Command::new(&binary)
            .arg("serve")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--http_bind", &http, "--metrics-bind-address", &metrics])
            .stdout(Stdio::null())
            .stderr(log("sliceguard.log"))
            .spawn()
            .map_err(|e| {
                format!("cannot start {binary}: {e} (run `make bench`, which builds it)")
            })?,
    );
    let pid = sliceguard.0.id();
    loop {
        if let Ok(Some(status)) = sliceguard.0.try_wait() {
            return Err(format!(
                "sliceguard serve exited with {status} (log: {})",
                dir.join("sliceguard.log").display()
            ));
        }
        if matches!(http_call(&http, "GET", "/readyz", None), Ok((200, _))) {
            break;
        }
        if Instant::now() > deadline {
            return Err("sliceguard serve was not ready within 900 s".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ready_s = started.elapsed().as_secs_f64();
    // A few filter calls for pods that exist in the cluster (created through the API, as a
    // person would), each offered the first 64 nodes.
    let names: Vec<String> = (0..nodes.min(64))
        .map(|i| sliceguard::objects::fleet_node_name(&FleetSpec::default().name_prefix, i))
        .collect();
    let mut latencies = Vec::new();
    let filters_sent = 5;
    let mut filters_ok = 0;
    for i in 0..filters_sent {
        let mut pod = e2e_pod(1_000_000 + i);
        // As the webhook would: the pod goes to sliceguard (whose extender the cluster cannot reach
        // here, so only these calls place it).
        if let Some(spec) = pod.spec.as_mut() {
            spec.scheduler_name = Some("sliceguard-scheduler".into());
        }
        let body = serde_json::to_string(&pod).map_err(|e| e.to_string())?;
        let (status, answer) =
            http_call(&api, "POST", "/api/v1/namespaces/default/pods", Some(&body))?;
        if status != 201 && status != 200 {
            return Err(format!(
                "creating pod {i} in the simulated cluster: {status} {answer}"
            ));
        }
        let created: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let args = serde_json::json!({"Pod": created, "NodeNames": names});
        let t = Instant::now();
        let (status, answer) = http_call(&http, "POST", "/filter", Some(&args.to_string()))?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        let result: Value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        let chose = result["NodeNames"]
            .as_array()
            .is_some_and(|n| !n.is_empty());
        if status == 200 && chose {
            filters_ok += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    let hwm_kib = proc_status_kib(pid, "VmHWM")?;
    let rss_kib = proc_status_kib(pid, "VmRSS")?;
    drop(sliceguard);
    drop(facade);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ServeRss {
        nodes,
        pods,
        hwm_kib,
        rss_kib,
        facade_s,
        ready_s,
        filters_ok,
        filters_sent,
        filter_ms: latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or(f64::NAN),
    })
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn shell(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.trim_start_matches("MemTotal:").trim().to_string())
        })
        .unwrap_or_default();
    let kernel = shell("uname", &["-sr"]).unwrap_or_default();
    format!("{cpu}, {cores} cores available, {memory} memory, {kernel}")
}

#[derive(Debug, Clone)]
struct Row {
    group: String,
    name: String,
    nodes: u64,
    median: f64,
    p99: f64,
    samples: u64,
    bytes: Option<u64>,
    /// Resident bytes added (memory rows).
    resident: Option<u64>,
}

fn read_rows(path: &str) -> Result<Vec<Row>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("{path} line {}: {e}", i + 1))?;
            let field = |k: &str| {
                v.get(k)
                    .ok_or_else(|| format!("{path} line {}: no field {k:?}", i + 1))
            };
            Ok(Row {
                group: field("group")?.as_str().unwrap_or_default().to_string(),
                name: field("name")?.as_str().unwrap_or_default().to_string(),
                nodes: field("nodes")?.as_u64().unwrap_or(0),
                median: field("median_ns")?.as_f64().unwrap_or(f64::NAN),
                p99: field("p99_ns")?.as_f64().unwrap_or(f64::NAN),
                samples: field("samples")?.as_u64().unwrap_or(0),
                bytes: v.get("bytes").and_then(Value::as_u64),
                resident: v.get("resident").and_then(Value::as_u64),
            })
        })
        .collect()
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Some(section) = &args.only {
        match section.as_str() {
            "in-process" => println!("{:?}", in_process(args.e2e_nodes, args.e2e_pods)),
            "loopback" => {
                // What a default `serve` does, then the path with its API pacing lifted.
                println!("{:?}", loopback(args.e2e_nodes, args.e2e_pods, None));
                println!(
                    "--kube-api-qps 5000: {:?}",
                    loopback(args.e2e_nodes, args.e2e_pods, Some(5000))
                );
            }
            _ if args.splice => {
                let serve = measure_serve(&args);
                if let Err(e) = splice_serve(&args.out, &serve) {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
                eprintln!("{}: serve section and target row replaced", args.out);
            }
            _ => println!(
                "{:?}",
                serve_rss(&args.bin_dir, args.serve_nodes, args.serve_pods)
            ),
        }
        return;
    }
    let rows = match read_rows(&args.rows).and_then(|mut rows| {
        if let Some(path) = &args.memory_rows {
            rows.extend(read_rows(path)?);
        }
        Ok(rows)
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    eprintln!(
        "end to end in process: {} nodes, {} pods",
        args.e2e_nodes, args.e2e_pods
    );
    let e2e_in = in_process(args.e2e_nodes, args.e2e_pods);
    eprintln!("  {e2e_in:?}");
    eprintln!(
        "end to end over loopback HTTP: {} nodes, {} pods",
        args.e2e_nodes, args.e2e_pods
    );
    let e2e_http = loopback(args.e2e_nodes, args.e2e_pods, None);
    eprintln!("  {e2e_http:?}");
    let serve = if args.skip_serve {
        Vec::new()
    } else {
        measure_serve(&args)
    };
    let service = match &args.service_rows {
        Some(path) => match read_service_rows(path) {
            Ok(rows) => rows,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        },
        None => Vec::new(),
    };
    let report = render(&rows, &args, &e2e_in, &e2e_http, &serve, &service);
    if let Some(dir) = std::path::Path::new(&args.out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(&args.out, report) {
        eprintln!("error: cannot write {}: {e}", args.out);
        std::process::exit(1);
    }
    eprintln!("wrote {}", args.out);
}

type E2e = Result<(f64, String), String>;

fn render(
    rows: &[Row],
    args: &Args,
    e2e_in: &E2e,
    e2e_http: &E2e,
    serve: &[Result<ServeRss, String>],
    service: &[ServiceRow],
) -> String {
    let mut md = String::new();
    let commit = shell("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or("unknown".into());
    let dirty = shell("git", &["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|s| !s.is_empty());
    let _ = writeln!(md, "# sliceguard performance report\n");
    let _ = writeln!(
        md,
        "Generated by `make bench` (`scheduler/benches/placement.rs`, then `kind-harness/examples/bench_report.rs`).\n"
    );
    let _ = writeln!(md, "- Machine: {}", machine());
    let _ = writeln!(md, "- Date: {}", jiff::Timestamp::now());
    let _ = writeln!(
        md,
        "- Commit: `{commit}`{}",
        if dirty {
            " (with uncommitted changes in the tree)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "- Fleets: seeded, N nodes × 8 GPUs (80 GiB, split 10), per GPU 30 % idle, 25 % whole, 45 % shared by 1–3 fractional tasks (about half the memory in use, fragmented). Every registered node is offered.\n- Timing: own sampler (divan reports no percentiles); calls under 20 µs are timed in batches; median and p99 over the samples shown. Other work on the machine shows up in p99.\n- Paths: **index** = `PlacementIndex::decide` (what `decision::decide` runs for `serve`, `place` and the replay from 64 offered nodes); **scan** = `scan::decide`, every offered node evaluated (HAMi's approach); **rebuild+scan** = usage rebuilt from every pod's (already decoded) allocation, then the scan (HAMi's per-call cost); **floor** = one pass over a flat array of every device's state checking the request, no strings or maps (the least any exhaustive decision must do); **offered-set** = only reading the offered names into the set the index walk checks candidates against (`index::offered_set`, part of **index**, the one part linear in the offered list); **names-read** = the floor of that: every offered name hashed once with the same hasher (every byte read, nothing stored).\n"
    );

    let mut groups: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    let median = |group: &str, name: &str, nodes: u64| {
        rows.iter()
            .find(|r| r.group == group && r.name == name && r.nodes == nodes)
            .map(|r| r.median)
    };
    for (group, list) in &groups {
        if group.starts_with("decision/") {
            let _ = writeln!(md, "## {group}\n");
            let _ = writeln!(
                md,
                "| nodes | path | median | p99 | samples | index/this (median) |\n|---:|---|---:|---:|---:|---:|"
            );
            for r in list {
                let ratio = median(group, "index", r.nodes)
                    .map(|i| format!("{:.4}", i / r.median))
                    .unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    r.nodes,
                    r.name,
                    fmt_ns(r.median),
                    fmt_ns(r.p99),
                    r.samples,
                    ratio
                );
            }
            let _ = writeln!(
                md,
                "\n| nodes | sliceguard/scan | sliceguard/rebuild+scan | sliceguard/floor | scan/sliceguard (speed-up) | rebuild+scan/sliceguard |\n|---:|---:|---:|---:|---:|---:|"
            );
            let mut sizes: Vec<u64> = list.iter().map(|r| r.nodes).collect();
            sizes.dedup();
            for n in sizes {
                let get = |name| median(group, name, n).unwrap_or(f64::NAN);
                let (i, s, rb, f) = (get("index"), get("scan"), get("rebuild+scan"), get("floor"));
                let _ = writeln!(
                    md,
                    "| {n} | {:.5} | {:.6} | {:.2} | {:.0}× | {:.0}× |",
                    i / s,
                    i / rb,
                    i / f,
                    s / i,
                    rb / i
                );
            }
            let _ = writeln!(md);
        }
    }
    if let Some(list) = groups.get("ledger update per pod event") {
        let _ = writeln!(
            md,
            "## Ledger update per pod event\n\nOne watch event of a GPU pod (annotation decoded, usage replaced); `ledger+index` is `ClusterView::apply_pod` as the service runs it, with the index refresh of the node.\n\n| nodes | path | median | p99 | samples |\n|---:|---|---:|---:|---:|"
        );
        for r in list {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                r.nodes,
                r.name,
                fmt_ns(r.median),
                fmt_ns(r.p99),
                r.samples
            );
        }
        let _ = writeln!(md);
    }
    if let Some(list) = groups.get("annotation parsing") {
        let _ = writeln!(
            md,
            "## Annotation parsing\n\n| format | input bytes | median | p99 | throughput (median) |\n|---|---:|---:|---:|---:|"
        );
        for r in list {
            let bytes = r.bytes.unwrap_or(0) as f64;
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0} MB/s |",
                r.name,
                bytes,
                fmt_ns(r.median),
                fmt_ns(r.p99),
                bytes / r.median * 1e3
            );
        }
        let _ = writeln!(md);
    }
    let mut per_device_total = None;
    if let Some(list) = groups.get("memory") {
        let _ = writeln!(
            md,
            "## Memory\n\n`scheduler/benches/memory.rs`: heap bytes each structure holds once built at the largest fleet, counted by that bench's global allocator (mimalloc, as `sliceguard serve` runs it, wrapped by the `cap` crate's counting allocator; sizes as requested, before mimalloc's size classes), and next to them the resident bytes the build added (`/proc/self/statm`, which includes size-class rounding and pages the allocator keeps). Built through the same `Registry::upsert` and `Ledger::upsert` as `serve`'s watches; the fleet's own list of node names is not counted. The timed rows above run on plain mimalloc (`sliceguard serve`'s allocator) in their own binary, without the counting.\n\n| structure | nodes | devices | pods | heap bytes | per device | resident bytes | per device |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        let mut sum = 0.0;
        for r in list {
            let devices = r.nodes * 8;
            let bytes = r.bytes.unwrap_or(0);
            let per = bytes as f64 / devices.max(1) as f64;
            let resident = r.resident.map_or("–".to_string(), |b| b.to_string());
            let resident_per = r.resident.map_or("–".to_string(), |b| {
                format!("{:.0}", b as f64 / devices.max(1) as f64)
            });
            if matches!(r.name.as_str(), "registry" | "ledger" | "index") {
                sum += per;
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.0} | {resident} | {resident_per} |",
                r.name, r.nodes, devices, r.samples, bytes, per
            );
        }
        let _ = writeln!(
            md,
            "\nRegistry + ledger + index: **{sum:.0} heap bytes per device**.\n"
        );
        per_device_total = Some(sum);
    }
    let _ = writeln!(
        md,
        "## End to end ({} nodes × 8 GPUs, {} fractional pods)\n\n| path | pods/s | notes |\n|---|---:|---|",
        args.e2e_nodes, args.e2e_pods
    );
    for (name, e2e) in [
        (
            "in process (deterministic world: webhook, filter, bind, kubelet)",
            e2e_in,
        ),
        (
            "loopback HTTP (embedded live cluster, `sliceguard serve` in process)",
            e2e_http,
        ),
    ] {
        match e2e {
            Ok((rate, note)) => {
                let _ = writeln!(md, "| {name} | {rate:.0} | {note} |");
            }
            Err(e) => {
                let _ = writeln!(md, "| {name} | not measured | {e} |");
            }
        }
    }
    let _ = writeln!(md);
    render_service(&mut md, service);
    let full = serve.first().and_then(|r| r.as_ref().ok());
    render_serve(&mut md, serve, args.skip_serve);
    let _ = writeln!(md);

    // Targets.
    let _ = writeln!(
        md,
        "## Targets\n\n| target | measured | verdict |\n|---|---|---|"
    );
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let g = |group: &str, name: &str, n: u64| median(group, name, n);
    if let Some(f5) = g("decision/fractional", "index", 5000) {
        let _ = writeln!(
            md,
            "| fractional decision at 5,000 nodes: median ≤ 50 µs | {} | {} |",
            fmt_ns(f5),
            verdict(f5 <= 50_000.0)
        );
        if let Some(f20) = g("decision/fractional", "index", 20000) {
            let _ = writeln!(
                md,
                "| fractional at 20,000 nodes ≤ 2× the 5,000-node median | {:.2}× | {} |",
                f20 / f5,
                verdict(f20 <= 2.0 * f5)
            );
        }
        if let (Some(f20), Some(o5), Some(o20)) = (
            g("decision/fractional", "index", 20000),
            g("decision/fractional", "offered-set", 5000),
            g("decision/fractional", "offered-set", 20000),
        ) {
            let _ = writeln!(
                md,
                "| (profile of the row above) reading the offered list, `offered-set` | {} at 5,000, {} at 20,000 ({:.2}×); the rest of the decision: {} and {} ({:.2}×) | explains |",
                fmt_ns(o5),
                fmt_ns(o20),
                o20 / o5,
                fmt_ns((f5 - o5).max(0.0)),
                fmt_ns((f20 - o20).max(0.0)),
                (f20 - o20).max(0.0) / (f5 - o5).max(1.0)
            );
        }
        if let (Some(o20), Some(r20)) = (
            g("decision/fractional", "offered-set", 20000),
            g("decision/fractional", "names-read", 20000),
        ) {
            let _ = writeln!(
                md,
                "| reading 20,000 offered names into the membership structure ≤ 1.2× reading the names alone (`offered-set` / `names-read`) | {} / {} = {:.2}× | {} |",
                fmt_ns(o20),
                fmt_ns(r20),
                o20 / r20,
                verdict(o20 <= 1.2 * r20)
            );
        }
        if let Some(s) = g("decision/fractional", "scan", 5000) {
            let _ = writeln!(
                md,
                "| fractional at 5,000 nodes ≥ 20× faster than the plain scan | {:.0}× | {} |",
                s / f5,
                verdict(s / f5 >= 20.0)
            );
        }
        if let Some(rb) = g("decision/fractional", "rebuild+scan", 5000) {
            let _ = writeln!(
                md,
                "| fractional at 5,000 nodes ≥ 100× faster than rebuild-and-scan | {:.0}× | {} |",
                rb / f5,
                verdict(rb / f5 >= 100.0)
            );
        }
    }
    if let Some(i5) = g("decision/impossible", "index", 5000) {
        let _ = writeln!(
            md,
            "| impossible request with full reasons at 5,000 nodes: median ≤ 2 ms | {} | {} |",
            fmt_ns(i5),
            verdict(i5 <= 2e6)
        );
    }
    match e2e_in {
        Ok((rate, _)) => {
            let _ = writeln!(
                md,
                "| end to end in process at 1,000 nodes ≥ 5,000 pods/s | {rate:.0} pods/s | {} |",
                verdict(*rate >= 5000.0)
            );
        }
        Err(_) => {
            let _ = writeln!(
                md,
                "| end to end in process ≥ 5,000 pods/s | not measured | **missed** |"
            );
        }
    }
    match e2e_http {
        Ok((rate, _)) => {
            let _ = writeln!(
                md,
                "| end to end over loopback HTTP at 1,000 nodes ≥ 500 pods/s | {rate:.0} pods/s | {} |",
                verdict(*rate >= 500.0)
            );
        }
        Err(_) => {
            let _ = writeln!(
                md,
                "| end to end over loopback HTTP ≥ 500 pods/s | not measured | **missed** |"
            );
        }
    }
    service_targets(&mut md, service);
    if let Some(per) = per_device_total {
        let _ = writeln!(
            md,
            "| ledger + registry (+ index) ≤ 256 bytes per device | {per:.0} heap bytes | {} |",
            verdict(per <= 256.0)
        );
    }
    let _ = writeln!(md, "{}", serve_target_row(full));
    md
}

/// One row of `scheduler/benches/service.rs`.
#[derive(Debug, Clone, serde::Deserialize)]
struct ServiceRow {
    nodes: usize,
    shape: String,
    clients: usize,
    offered: usize,
    bound: usize,
    pods_per_s: f64,
    filter_p50_ns: u64,
    filter_p99_ns: u64,
    bind_p50_ns: u64,
    bind_p99_ns: u64,
    sliceguard_cpu_per_pod_ns: u64,
    stand_in_share: f64,
    client_cpu_per_pod_ns: u64,
}

fn read_service_rows(path: &str) -> Result<Vec<ServiceRow>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{path}:{}: {e}", i + 1)))
        .collect()
}

fn render_service(md: &mut String, rows: &[ServiceRow]) {
    let _ = writeln!(
        md,
        "## Service: `/filter` then `/bind` through sliceguard's HTTP handlers\n\n`scheduler/benches/service.rs`: the production extender router and accept loop on loopback; a separate client process plays kube-scheduler (one HTTP/1.1 connection per client, `ExtenderArgs` with the pod and the node names kube-scheduler's `numFeasibleNodesToFind` would offer, then `ExtenderBindingArgs` for the chosen node); the Kubernetes API is an in-process stand-in answering every effect in constant time from typed objects and feeding each write back through the service's watch handlers; bound pods finish once half the fleet's capacity is bound. CPU per pod is the server process's (every thread's schedstat) less the stand-in's own time; the stand-in's share is of the server process's CPU. The client process shares the same two cores.\n"
    );
    if rows.is_empty() {
        let _ = writeln!(md, "Not measured in this run.\n");
        return;
    }
    let _ = writeln!(
        md,
        "| nodes | pods | offered | clients | pods/s | `/filter` p50 | `/filter` p99 | `/bind` p50 | `/bind` p99 | sliceguard CPU per pod | stand-in share | client CPU per pod |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} % | {} |",
            r.nodes,
            r.shape,
            r.offered,
            r.clients,
            r.pods_per_s,
            fmt_ns(r.filter_p50_ns as f64),
            fmt_ns(r.filter_p99_ns as f64),
            fmt_ns(r.bind_p50_ns as f64),
            fmt_ns(r.bind_p99_ns as f64),
            fmt_ns(r.sliceguard_cpu_per_pod_ns as f64),
            r.stand_in_share * 100.0,
            fmt_ns(r.client_cpu_per_pod_ns as f64),
        );
    }
    let _ = writeln!(md);
}

/// The service targets: the best rate at 1,000 nodes (any shape and client count) with the stand-in
/// under 20 % of the profile, and the worst `/filter` p99 at 5,000 nodes over the rows.
fn service_targets(md: &mut String, rows: &[ServiceRow]) {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let best = rows
        .iter()
        .filter(|r| r.nodes == 1000 && r.bound > 0)
        .max_by(|a, b| a.pods_per_s.total_cmp(&b.pods_per_s));
    match best {
        Some(r) => {
            let _ = writeln!(
                md,
                "| filter + bind through sliceguard's HTTP handlers at 1,000 nodes ≥ 5,000 pods/s, stand-in < 20 % | {:.0} pods/s ({} pods, {} clients), stand-in {:.1} % | {} |",
                r.pods_per_s,
                r.shape,
                r.clients,
                r.stand_in_share * 100.0,
                verdict(r.pods_per_s >= 5000.0 && r.stand_in_share < 0.2)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| filter + bind through sliceguard's HTTP handlers at 1,000 nodes ≥ 5,000 pods/s | not measured | **missed** (not measured) |"
            );
        }
    }
    let worst = rows
        .iter()
        .filter(|r| r.nodes == 5000)
        .max_by_key(|r| r.filter_p99_ns);
    match worst {
        Some(r) => {
            let _ = writeln!(
                md,
                "| `/filter` p99 ≤ 2 ms at 5,000 nodes (worst row) | {} ({} pods, {} clients) | {} |",
                fmt_ns(r.filter_p99_ns as f64),
                r.shape,
                r.clients,
                verdict(r.filter_p99_ns <= 2_000_000)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| `/filter` p99 ≤ 2 ms at 5,000 nodes | not measured | **missed** (not measured) |"
            );
        }
    }
}

/// The `sliceguard serve` peak RSS section (its heading to the per-pod estimate).
fn render_serve(md: &mut String, serve: &[Result<ServeRss, String>], skipped: bool) {
    let _ = writeln!(
        md,
        "## `sliceguard serve` peak RSS\n\nThe release `sliceguard serve` (no webhook, otherwise its defaults: every pod watched, `--watch-pods all`, so every pod's CPU request is counted on its node for the fragmentation policy, and the workload profile learned from the listed GPU pods) against `kind-harness sim serve --nodes N --gpus-per-node 8 --pods P --no-webhook` (P Running GPU pods of 1024 MiB / 5 cores and 250m CPU, placed round robin over the devices and annotated as sliceguard leaves them; nodes with 16 CPUs allocatable), read from `/proc/<pid>/status` after `/readyz` answered 200 (initial node and pod lists done) and five `/filter` calls (pods created through the API, 64 nodes offered each).\n\n| nodes | devices | pods | VmHWM (peak) | VmRSS | façade preload | sliceguard ready after | filters answered with a node | filter median |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in serve {
        match r {
            Ok(m) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.1} MiB | {:.1} MiB | {:.1} s | {:.1} s | {}/{} | {:.1} ms |",
                    m.nodes,
                    m.nodes * 8,
                    m.pods,
                    m.hwm_kib as f64 / 1024.0,
                    m.rss_kib as f64 / 1024.0,
                    m.facade_s,
                    m.ready_s,
                    m.filters_ok,
                    m.filters_sent,
                    m.filter_ms
                );
            }
            Err(e) => {
                let _ = writeln!(md, "| | | | not measured: {e} | | | | | |");
            }
        }
    }
    if skipped {
        let _ = writeln!(md, "| | | | not measured (--skip-serve) | | | | | |");
    }
    if let (Some(Ok(a)), Some(Ok(b))) = (serve.first(), serve.get(1))
        && a.pods > b.pods
    {
        let per_pod = (a.hwm_kib as f64 - b.hwm_kib as f64) * 1024.0 / (a.pods - b.pods) as f64;
        let rest = a.hwm_kib as f64 * 1024.0 - per_pod * a.pods as f64;
        let _ = writeln!(
            md,
            "\nFrom the two runs (same nodes, pods halved): about **{per_pod:.0} bytes of peak per pod**, {:.1} MiB for {} pods; the rest, {:.1} MiB, is the nodes and the process itself ({:.0} bytes per device).",
            per_pod * a.pods as f64 / 1048576.0,
            a.pods,
            rest / 1048576.0,
            rest / (a.nodes * 8).max(1) as f64
        );
    }
}

/// The targets table's row for `serve`'s peak RSS.
fn serve_target_row(full: Option<&ServeRss>) -> String {
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    match full {
        Some(m) => {
            let mib = m.hwm_kib as f64 / 1024.0;
            format!(
                "| `serve` peak RSS ≤ 256 MiB at {} nodes and {} pods | {mib:.1} MiB | {} |",
                m.nodes,
                m.pods,
                verdict(mib <= 256.0 && m.nodes >= 20_000 && m.pods >= 100_000)
            )
        }
        None => "| `serve` peak RSS ≤ 256 MiB at 20,000 nodes and 100,000 pods | not measured | **missed** (not measured) |".to_string(),
    }
}

/// Measures `serve`'s peak RSS at the full and at half the pods.
fn measure_serve(args: &Args) -> Vec<Result<ServeRss, String>> {
    let mut serve = Vec::new();
    for pods in [args.serve_pods, args.serve_pods / 2] {
        eprintln!(
            "sliceguard serve peak RSS: {} nodes × 8 GPUs, {pods} pods",
            args.serve_nodes
        );
        let measured = serve_rss(&args.bin_dir, args.serve_nodes, pods);
        eprintln!("  {measured:?}");
        serve.push(measured);
    }
    serve
}

/// Replaces the serve section and the serve target row of the report at `path` with new
/// measurements (`--only serve --splice`), leaving every other section as it was measured.
fn splice_serve(path: &str, serve: &[Result<ServeRss, String>]) -> Result<(), String> {
    let report = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let heading = "## `sliceguard serve` peak RSS";
    let start = report
        .find(heading)
        .ok_or_else(|| format!("{path} has no section {heading:?}"))?;
    let end = report[start + heading.len()..]
        .find("\n## ")
        .map_or(report.len(), |i| start + heading.len() + i + 1);
    let mut section = String::new();
    render_serve(&mut section, serve, false);
    let _ = writeln!(section);
    let mut spliced = format!("{}{section}{}", &report[..start], &report[end..]);
    let row_start = spliced
        .find("| `serve` peak RSS ≤")
        .ok_or_else(|| format!("{path} has no serve row in its targets table"))?;
    let row_end = spliced[row_start..]
        .find('\n')
        .map_or(spliced.len(), |i| row_start + i);
    let full = serve.first().and_then(|r| r.as_ref().ok());
    spliced.replace_range(row_start..row_end, &serve_target_row(full));
    std::fs::write(path, spliced).map_err(|e| format!("{path}: {e}"))
}
