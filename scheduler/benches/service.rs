//! Service throughput: sliceguard alone, as kube-scheduler drives it. `sliceguard serve`'s extender
//! (the production router, [`extender_router`], behind the production accept loop, [`http::serve`])
//! listens on loopback; a separate client process (this binary again, `--client`) plays
//! kube-scheduler's extender calls with 1 to 64 concurrent connections: `POST /filter` with
//! `ExtenderArgs` carrying the pod and the candidate node names (`nodeCacheCapable: true`), then
//! `POST /bind` with `ExtenderBindingArgs` for the node the filter chose.
//!
//! The Kubernetes API is an in-process stand-in ([`StandIn`], a [`ClusterApi`]) that answers every
//! effect in constant time from typed objects (no JSON store, no HTTP): pod patches, the binding,
//! node lock writes with their resourceVersion precondition, events. Each write it accepts is fed
//! back to the service as the watches would deliver it (`apply_pod`, `apply_node`), and bound pods
//! finish (`delete_pod`) once more than half the fleet's capacity is bound, so the fleet never
//! fills. The watch feed calls are sliceguard's own code and count as sliceguard's time; building
//! and cloning the typed objects the stand-in hands over (kube-rs's JSON decoding in production)
//! counts as the stand-in's. The stand-in's time is wall-clock inside its critical sections, so
//! on a busy machine, where a thread can be descheduled inside one, its share reads high.
//!
//! What differs from production, said plainly: no kube-rs client (the stand-in replaces
//! `KubeCluster`'s requests and its JSON), no watch decoding, no TLS (the extender listens on plain
//! HTTP in production too), and the clients pre-build nothing a real kube-scheduler would not.
//!
//! Measured per row: pods per second (filter plus bind, wall-clock over the whole client run), p50
//! and p99 of each call as the client sees it, the server process's CPU per pod (every thread's
//! `/proc/self/task/*/schedstat`), and the stand-in's share of that CPU (its own time, summed around
//! every effect it answers and every object it removes).
//!
//! `cargo bench -p sliceguard-scheduler --bench service` prints the table; with
//! `SLICEGUARD_BENCH_SERVICE_JSON=<path>` it also writes one JSON object per row (`make bench` turns
//! them into `bench/REPORT.md`'s service section). `SLICEGUARD_BENCH_SERVICE_NODES=1000,5000`,
//! `SLICEGUARD_BENCH_SERVICE_CLIENTS=1,4,16,64` and `SLICEGUARD_BENCH_SERVICE_PODS=6000` choose the
//! rows.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};
use sliceguard::annotations::NODE_LOCK;
use sliceguard::bind::{ApiFailure, Effect, NodeLockView, Observation, PodView};
use sliceguard::ledger;
use sliceguard::objects::{FleetSpec, GpuAsk, fleet, gpu_pod};
use sliceguard::server::service::system_clock;
use sliceguard::server::{ClusterApi, Scheduler, SchedulerConfig, http};
use std::collections::{HashMap, VecDeque};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The allocator the `sliceguard` binary runs with (`src/main.rs`), so the bench measures it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const GPUS_PER_NODE: usize = 8;

/// The two pod shapes of the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Shape {
    /// One GPU, 8,000 MiB and 10 % of its cores (up to ten share a GPU).
    Fractional,
    /// One whole GPU (`nvidia.com/gpu: 1` alone).
    Whole,
}

impl Shape {
    fn parse(text: &str) -> Result<Shape, String> {
        match text {
            "fractional" => Ok(Shape::Fractional),
            "whole" => Ok(Shape::Whole),
            other => Err(format!("--shape {other:?}: expected fractional or whole")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Fractional => "fractional",
            Shape::Whole => "whole",
        }
    }

    /// Pods of this shape one GPU holds.
    fn per_gpu(self) -> usize {
        match self {
            Shape::Fractional => 10,
            Shape::Whole => 1,
        }
    }
}

/// Pod `i` of a row, identical in the server (which registers it) and the client (which sends it).
fn bench_pod(shape: Shape, i: usize) -> Pod {
    let ask = match shape {
        Shape::Fractional => GpuAsk::fraction(8_000, 10),
        Shape::Whole => GpuAsk {
            gpus: Some(1),
            ..GpuAsk::default()
        },
    };
    let mut pod = gpu_pod(&format!("svc-{i}"), &[], &[ask]);
    pod.metadata.uid = Some(format!("uid-svc-{i}"));
    if let Some(spec) = pod.spec.as_mut() {
        spec.scheduler_name = Some("sliceguard-scheduler".into());
    }
    pod
}

/// How many feasible nodes kube-scheduler looks for before it calls the extender with them
/// (`numFeasibleNodesToFind`, pkg/scheduler/schedule_one.go: the adaptive percentage
/// `50 - nodes/125`, at least 5 %, and at least 100 nodes).
fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes <= 100 {
        return nodes;
    }
    let percentage = (50 - (nodes / 125) as i64).max(5) as usize;
    (nodes * percentage / 100).max(100)
}

fn fleet_spec(nodes: usize) -> FleetSpec {
    FleetSpec {
        nodes,
        gpus_per_node: GPUS_PER_NODE,
        name_prefix: "svc-node".into(),
        ..FleetSpec::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The API stand-in.

/// What the stand-in hands to the watch feed.
#[derive(Debug)]
enum Feed {
    Pod(Pod),
    Bound(Pod),
    Node(Node),
}

#[derive(Debug)]
struct StoredNode {
    node: Node,
    version: u64,
}

#[derive(Debug, Default)]
struct Store {
    pods: HashMap<String, Pod>,
    nodes: HashMap<String, StoredNode>,
}

/// The Kubernetes API as constant-time answers over typed objects.
#[derive(Debug, Clone)]
struct StandIn {
    store: Arc<Mutex<Store>>,
    feed: mpsc::UnboundedSender<Feed>,
    /// Nanoseconds spent inside the stand-in.
    busy_ns: Arc<AtomicU64>,
}

/// The store's key for an effect's pod: [`ledger::pod_key`]'s `namespace/name`.
fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

fn merge(
    target: &mut Option<std::collections::BTreeMap<String, String>>,
    from: &std::collections::BTreeMap<String, String>,
) {
    let map = target.get_or_insert_with(Default::default);
    for (k, v) in from {
        map.insert(k.clone(), v.clone());
    }
}

impl StandIn {
    /// Answers `effect`; the time after the store's lock is taken counts as the stand-in's (waiting
    /// for the lock is not CPU).
    fn answer(&self, effect: &Effect) -> Observation {
        let mut store = self.store.lock().unwrap();
        let started = Instant::now();
        let observation = self.answer_locked(&mut store, effect);
        self.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        observation
    }

    fn answer_locked(&self, store: &mut Store, effect: &Effect) -> Observation {
        let written = Observation::Written {
            resource_version: None,
        };
        match effect {
            Effect::GetPod { namespace, name } => match store.pods.get(&pod_key(namespace, name)) {
                Some(pod) => Observation::Pod(PodView::from_pod(pod)),
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::GetNode { node } => match store.nodes.get(node) {
                Some(stored) => Observation::Node(NodeLockView::from_node(&stored.node)),
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::WriteLock {
                node,
                value,
                resource_version,
            } => self.write_lock(store, node, Some(value), resource_version),
            Effect::ClearLock {
                node,
                resource_version,
            } => self.write_lock(store, node, None, resource_version),
            Effect::PatchPodAnnotations {
                namespace,
                name,
                annotations,
            } => match store.pods.get_mut(&pod_key(namespace, name)) {
                Some(pod) => {
                    merge(&mut pod.metadata.annotations, annotations);
                    let _ = self.feed.send(Feed::Pod(pod.clone()));
                    written
                }
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::PatchPodMetadata {
                namespace,
                name,
                uid,
                annotations,
                labels,
            } => match store.pods.get_mut(&pod_key(namespace, name)) {
                Some(pod) if !uid.is_empty() && pod.metadata.uid.as_deref() != Some(uid) => {
                    Observation::Failed(ApiFailure::Conflict("uid precondition".into()))
                }
                Some(pod) => {
                    merge(&mut pod.metadata.annotations, annotations);
                    merge(&mut pod.metadata.labels, labels);
                    let _ = self.feed.send(Feed::Pod(pod.clone()));
                    written
                }
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::CreateBinding {
                namespace,
                name,
                node,
                ..
            } => match store.pods.get_mut(&pod_key(namespace, name)) {
                Some(pod) => {
                    let spec = pod.spec.get_or_insert_with(Default::default);
                    if spec.node_name.is_some() {
                        return Observation::Failed(ApiFailure::Conflict("already bound".into()));
                    }
                    spec.node_name = Some(node.clone());
                    let _ = self.feed.send(Feed::Bound(pod.clone()));
                    written
                }
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::DeletePod {
                namespace, name, ..
            } => match store.pods.remove(&pod_key(namespace, name)) {
                Some(_) => written,
                None => Observation::Failed(ApiFailure::NotFound),
            },
            Effect::EmitEvent { .. } => written,
        }
    }

    fn write_lock(
        &self,
        store: &mut Store,
        node: &str,
        value: Option<&String>,
        resource_version: &str,
    ) -> Observation {
        let Some(stored) = store.nodes.get_mut(node) else {
            return Observation::Failed(ApiFailure::NotFound);
        };
        if stored.version.to_string() != resource_version {
            return Observation::Failed(ApiFailure::Conflict(format!(
                "node {node} is at resourceVersion {}, not {resource_version}",
                stored.version
            )));
        }
        stored.version += 1;
        let annotations = stored
            .node
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        match value {
            Some(value) => annotations.insert(NODE_LOCK.to_string(), value.clone()),
            None => annotations.remove(NODE_LOCK),
        };
        stored.node.metadata.resource_version = Some(stored.version.to_string());
        let _ = self.feed.send(Feed::Node(stored.node.clone()));
        Observation::Written {
            resource_version: Some(stored.version.to_string()),
        }
    }

    /// A pod finished: the API forgets it.
    fn remove_pod(&self, key: &str) {
        let mut store = self.store.lock().unwrap();
        let started = Instant::now();
        store.pods.remove(key);
        self.busy_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

impl ClusterApi for StandIn {
    async fn execute(&self, effect: &Effect) -> Observation {
        self.answer(effect)
    }
}

/// The watch feed: every object the stand-in wrote goes to the service as the watch would deliver
/// it; bound pods finish, oldest first, once more than `live` of them are bound.
async fn watch_feed(
    svc: Arc<Scheduler<StandIn>>,
    mut feed: mpsc::UnboundedReceiver<Feed>,
    live: usize,
) {
    let mut bound: VecDeque<Pod> = VecDeque::new();
    while let Some(item) = feed.recv().await {
        match item {
            Feed::Pod(pod) => svc.apply_pod(&pod),
            Feed::Node(node) => svc.apply_node(&node),
            Feed::Bound(pod) => {
                svc.apply_pod(&pod);
                bound.push_back(pod);
                while bound.len() > live {
                    let Some(done) = bound.pop_front() else { break };
                    svc.cluster().remove_pod(&ledger::pod_key(&done));
                    svc.delete_pod(&done);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting.

/// Nanoseconds every live thread of this process has run (`/proc/self/task/*/schedstat`).
fn process_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// The client process (kube-scheduler's extender calls).

#[derive(Debug, Serialize, Deserialize)]
struct ClientReport {
    pods: usize,
    bound: usize,
    errors: usize,
    first_error: Option<String>,
    wall_s: f64,
    filter_ns: Vec<u64>,
    bind_ns: Vec<u64>,
    cpu_ns: u64,
}

#[derive(Debug, Clone)]
struct ClientArgs {
    addr: String,
    nodes: usize,
    shape: Shape,
    clients: usize,
    pods: usize,
}

async fn one_connection(
    addr: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake {addr}: {e}"))?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    body: String,
) -> Result<serde_json::Value, String> {
    sender.ready().await.map_err(|e| format!("{path}: {e}"))?;
    let request = hyper::Request::post(path)
        .header("content-type", "application/json")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{path}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{path}: {e}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{path}: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!("{path}: HTTP {status}"));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("{path}: answer is not JSON: {e}"))
}

/// One client connection's share of the pods: filter, then bind to the node the filter chose.
async fn client_task(
    args: Arc<ClientArgs>,
    names_json: Arc<Vec<String>>,
    first: usize,
) -> Result<(Vec<u64>, Vec<u64>, usize, usize, Option<String>), String> {
    let mut sender = one_connection(&args.addr).await?;
    let offered = feasible_nodes_to_find(args.nodes);
    let (mut filter_ns, mut bind_ns) = (Vec::new(), Vec::new());
    let (mut bound, mut errors, mut first_error) = (0usize, 0usize, None);
    let mut fail = |message: String, errors: &mut usize| {
        *errors += 1;
        first_error.get_or_insert(message);
    };
    let mut i = first;
    while i < args.pods {
        let pod = bench_pod(args.shape, i);
        // kube-scheduler starts each cycle's search where the previous one stopped.
        let start = (i * offered) % args.nodes;
        let mut body = String::with_capacity(offered * 16 + 512);
        body.push_str("{\"Pod\":");
        body.push_str(&serde_json::to_string(&pod).map_err(|e| e.to_string())?);
        body.push_str(",\"NodeNames\":[");
        for k in 0..offered {
            if k > 0 {
                body.push(',');
            }
            body.push_str(&names_json[(start + k) % args.nodes]);
        }
        body.push_str("]}");
        let started = Instant::now();
        let answer = post(&mut sender, "/filter", body).await;
        filter_ns.push(started.elapsed().as_nanos() as u64);
        let node = match answer {
            Ok(value) => match value["NodeNames"].as_array().and_then(|n| n.first()) {
                Some(node) => node.as_str().unwrap_or_default().to_string(),
                None => {
                    fail(
                        format!("filter of svc-{i} placed nothing: {value}"),
                        &mut errors,
                    );
                    i += args.clients;
                    continue;
                }
            },
            Err(e) => {
                fail(e, &mut errors);
                i += args.clients;
                continue;
            }
        };
        let binding = serde_json::json!({
            "PodName": format!("svc-{i}"), "PodNamespace": "default",
            "PodUID": format!("uid-svc-{i}"), "Node": node,
        })
        .to_string();
        let started = Instant::now();
        let answer = post(&mut sender, "/bind", binding).await;
        bind_ns.push(started.elapsed().as_nanos() as u64);
        match answer {
            Ok(value) if value["Error"].as_str().unwrap_or_default().is_empty() => bound += 1,
            Ok(value) => fail(format!("bind of svc-{i}: {}", value["Error"]), &mut errors),
            Err(e) => fail(e, &mut errors),
        }
        i += args.clients;
    }
    Ok((filter_ns, bind_ns, bound, errors, first_error))
}

fn run_client(args: ClientArgs) -> Result<ClientReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let names_json: Arc<Vec<String>> = Arc::new(
        (0..args.nodes)
            .map(|i| serde_json::to_string(&fleet_node_name(i)).unwrap_or_default())
            .collect(),
    );
    let args = Arc::new(args);
    let cpu_before = process_cpu_ns();
    let started = Instant::now();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.clients)
            .map(|k| tokio::spawn(client_task(args.clone(), names_json.clone(), k)))
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(results)
    })?;
    let wall_s = started.elapsed().as_secs_f64();
    let mut report = ClientReport {
        pods: args.pods,
        bound: 0,
        errors: 0,
        first_error: None,
        wall_s,
        filter_ns: Vec::new(),
        bind_ns: Vec::new(),
        cpu_ns: process_cpu_ns().saturating_sub(cpu_before),
    };
    for result in results {
        let (filter_ns, bind_ns, bound, errors, first_error) = result?;
        report.filter_ns.extend(filter_ns);
        report.bind_ns.extend(bind_ns);
        report.bound += bound;
        report.errors += errors;
        if report.first_error.is_none() {
            report.first_error = first_error;
        }
    }
    Ok(report)
}

/// The fleet's node names as [`fleet`] names them.
fn fleet_node_name(i: usize) -> String {
    sliceguard::objects::fleet_node_name("svc-node", i)
}

// ---------------------------------------------------------------------------------------------
// The server side: one row.

/// One measured row.
#[derive(Debug, Serialize)]
struct Row {
    nodes: usize,
    shape: Shape,
    clients: usize,
    offered: usize,
    pods: usize,
    bound: usize,
    pods_per_s: f64,
    filter_p50_ns: u64,
    filter_p99_ns: u64,
    bind_p50_ns: u64,
    bind_p99_ns: u64,
    /// The server process's CPU per pod, stand-in included.
    server_cpu_per_pod_ns: u64,
    /// The server process's CPU per pod less the stand-in's time: sliceguard's.
    sliceguard_cpu_per_pod_ns: u64,
    /// The stand-in's share of the server process's CPU.
    stand_in_share: f64,
    /// The client process's CPU per pod (kube-scheduler's side, on the same two cores).
    client_cpu_per_pod_ns: u64,
}

fn percentile(samples: &mut [u64], p: f64) -> u64 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn measure(nodes: usize, shape: Shape, clients: usize, pods: usize) -> Result<Row, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (feed_tx, feed_rx) = mpsc::unbounded_channel();
    let stand_in = StandIn {
        store: Arc::default(),
        feed: feed_tx,
        busy_ns: Arc::default(),
    };
    let now: Timestamp = Timestamp::now();
    let fleet_nodes = fleet(&fleet_spec(nodes), now);
    if fleet_nodes.first().and_then(|n| n.metadata.name.clone()) != Some(fleet_node_name(0)) {
        return Err("the fleet's node names are not the ones the client offers".into());
    }
    {
        let mut store = stand_in.store.lock().unwrap();
        for node in &fleet_nodes {
            let mut node = node.clone();
            node.metadata.resource_version = Some("1".into());
            let name = node.metadata.name.clone().unwrap_or_default();
            store.nodes.insert(name, StoredNode { node, version: 1 });
        }
        for i in 0..pods {
            let pod = bench_pod(shape, i);
            store.pods.insert(ledger::pod_key(&pod), pod);
        }
    }
    let svc = Arc::new(Scheduler::new(
        stand_in.clone(),
        SchedulerConfig::default(),
        system_clock(),
    ));
    svc.replace_nodes(&fleet_nodes);
    // The pending pods, as the pod watch lists them before kube-scheduler asks for any.
    let pending: Vec<Pod> = (0..pods).map(|i| bench_pod(shape, i)).collect();
    svc.replace_pods(&pending);
    drop(pending);
    if !svc.is_ready() {
        return Err("the service did not sync from the stand-in's lists".into());
    }
    let live = nodes * GPUS_PER_NODE * shape.per_gpu() / 2;
    let shutdown = CancellationToken::new();
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind loopback: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tokio::spawn(watch_feed(svc.clone(), feed_rx, live));
        tokio::spawn(http::serve(
            listener,
            http::extender_router(svc.clone()),
            None,
            shutdown.clone(),
            Duration::from_secs(1),
        ));
        Ok::<_, String>(addr)
    })?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let busy_before = stand_in.busy_ns.load(Ordering::Relaxed);
    let cpu_before = process_cpu_ns();
    let output = Command::new(exe)
        .args([
            "--client",
            &addr.to_string(),
            &nodes.to_string(),
            shape.name(),
            &clients.to_string(),
            &pods.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("client process: {e}"))?;
    let cpu = process_cpu_ns().saturating_sub(cpu_before);
    let busy = stand_in.busy_ns.load(Ordering::Relaxed) - busy_before;
    shutdown.cancel();
    drop(runtime);
    if !output.status.success() {
        return Err(format!(
            "client process failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    let mut report: ClientReport =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("client report: {e}"))?;
    if report.errors > 0 {
        return Err(format!(
            "{} of {} pods failed; the first: {}",
            report.errors,
            report.pods,
            report.first_error.unwrap_or_default()
        ));
    }
    let per_pod = |ns: u64| ns / report.bound.max(1) as u64;
    Ok(Row {
        nodes,
        shape,
        clients,
        offered: feasible_nodes_to_find(nodes),
        pods,
        bound: report.bound,
        pods_per_s: report.bound as f64 / report.wall_s,
        filter_p50_ns: percentile(&mut report.filter_ns, 0.5),
        filter_p99_ns: percentile(&mut report.filter_ns, 0.99),
        bind_p50_ns: percentile(&mut report.bind_ns, 0.5),
        bind_p99_ns: percentile(&mut report.bind_ns, 0.99),
        server_cpu_per_pod_ns: per_pod(cpu),
        sliceguard_cpu_per_pod_ns: per_pod(cpu.saturating_sub(busy)),
        stand_in_share: busy as f64 / cpu.max(1) as f64,
        client_cpu_per_pod_ns: per_pod(report.cpu_ns),
    })
}

fn list(var: &str, default: &str) -> Result<Vec<usize>, String> {
    let text = std::env::var(var).unwrap_or_else(|_| default.to_string());
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{var}={text:?}: {s:?} is not a positive count"))
        })
        .collect()
}

fn micros(ns: u64) -> String {
    format!("{:.0} µs", ns as f64 / 1_000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--client") {
        let parsed = (|| -> Result<ClientArgs, String> {
            let word = |k: usize| args.get(position + k).cloned().ok_or("missing argument");
            let count = |k: usize| -> Result<usize, String> {
                word(k)?.parse::<usize>().map_err(|e| e.to_string())
            };
            Ok(ClientArgs {
                addr: word(1)?,
                nodes: count(2)?,
                shape: Shape::parse(&word(3)?)?,
                clients: count(4)?,
                pods: count(5)?,
            })
        })();
        let result = parsed.and_then(run_client);
        match result {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            }
            Err(e) => {
                println!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let run = || -> Result<(), String> {
        let nodes = list("SLICEGUARD_BENCH_SERVICE_NODES", "1000,5000")?;
        let clients = list("SLICEGUARD_BENCH_SERVICE_CLIENTS", "1,4,16,64")?;
        let pods = list("SLICEGUARD_BENCH_SERVICE_PODS", "6000")?[0];
        let mut out = match std::env::var("SLICEGUARD_BENCH_SERVICE_JSON") {
            Ok(path) => Some(std::fs::File::create(&path).map_err(|e| format!("{path}: {e}"))?),
            Err(_) => None,
        };
        println!(
            "| nodes | pods | clients | pods/s | filter p50 | filter p99 | bind p50 | bind p99 | sliceguard CPU/pod | stand-in share |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &nodes {
            for shape in [Shape::Fractional, Shape::Whole] {
                for &c in &clients {
                    let row = measure(n, shape, c, pods)
                        .map_err(|e| format!("{n} nodes, {}, {c} clients: {e}", shape.name()))?;
                    println!(
                        "| {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} % |",
                        row.nodes,
                        row.shape.name(),
                        row.clients,
                        row.pods_per_s,
                        micros(row.filter_p50_ns),
                        micros(row.filter_p99_ns),
                        micros(row.bind_p50_ns),
                        micros(row.bind_p99_ns),
                        micros(row.sliceguard_cpu_per_pod_ns),
                        row.stand_in_share * 100.0
                    );
                    if let Some(file) = out.as_mut() {
                        let line = serde_json::to_string(&row).map_err(|e| e.to_string())?;
                        writeln!(file, "{line}").map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok(())
    };
    if let Err(e) = run() {
        eprintln!("service bench: {e}");
        std::process::exit(1);
    }
}
