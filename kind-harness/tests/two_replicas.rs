//! Two `sliceguard serve` processes elected on one Lease, against the live simulated cluster (the
//! cluster `kind-harness sim serve` runs: REST façade, admission through the HTTPS webhook, the
//! kube-scheduler stand-in calling the extender, kubelets), with kubectl applying fifty fractional
//! pods while the leading replica is killed (SIGKILL: no release, no goodbye) and restarted, twice.
//!
//! kube-scheduler runs in the same pod as sliceguard and is elected too, so the extender it calls is
//! the one beside it; the test plays that part by pointing the stand-in at whichever replica says
//! `leader` on `/readyz` (and the webhook at a live replica: a standby serves it too).
//!
//! At the end: every pod is Running, or Pending with a HAMi reason in its `PodScheduled`
//! condition; exactly the 40 pods the four GPUs hold (10 cores of 100 each) run; no node lock is
//! left; and `kind-harness audit` finds every allocation consistent and no device over-committed.
//!
//! The replicas are the `sliceguard` binary of this workspace, which this package cannot name as a
//! dependency (Cargo offers `CARGO_BIN_EXE_*` only to the binary's own package): `make test` and
//! `cargo nextest run --workspace` build it; the test fails saying how to build it when it is
//! missing or older than a source file of the scheduler crates. (Building it from inside the test
//! would resolve features differently and rebuild half of the dependency tree every run.)
//! kubectl is required, as in `sim/tests/kubectl.rs`.

mod binary;

use serde_json::{Value, json};
use sliceguard::objects::FleetSpec;
use sliceguard::rules::FitReason;
use sliceguard_sim::http::{kubeconfig, kubeconfig_as};
use sliceguard_sim::live::{LiveCluster, LiveOptions, WebhookTarget};
use sliceguard_sim::store::Resource;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The ServiceAccount sliceguard runs as (deploy/): the user the façade attributes its writes to.
const SLICEGUARD_USER: &str = "system:serviceaccount:sliceguard-system:sliceguard";
const PODS: usize = 50;

/// The `sliceguard` binary in this test's target directory, checked newer than every source file
/// of the scheduler crates (a stale binary would test old code).
fn sliceguard_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests live in target/<profile>/deps");
    let binary = dir.join(format!("sliceguard{}", std::env::consts::EXE_SUFFIX));
    let build = "build it with `cargo build -p sliceguard-scheduler --bin sliceguard` (`make test` and `cargo nextest run --workspace` do)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {build}", binary.display()));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut stack = vec![root.join("scheduler/src"), root.join("scheduler/core/src")];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                assert!(
                    modified <= built,
                    "{} is older than {}: {build}",
                    binary.display(),
                    path.display()
                );
            }
        }
    }
    binary
}

/// A loopback port free now and not handed out before in this process. The listener that found it
/// is closed at once, so the kernel may offer the same port to the next call: without the record,
/// two replicas were once given the same port (one's webhook, the other's extender), and the second
/// could not listen.
fn free_port() -> u16 {
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<std::collections::BTreeSet<u16>>> = OnceLock::new();
    let mut handed_out = HANDED_OUT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// One `sliceguard serve --leader-elect` process.
struct Replica {
    identity: &'static str,
    webhook: u16,
    extender: u16,
    metrics: u16,
    child: Option<Child>,
    log: PathBuf,
    /// Extra `serve` flags.
    extra: Vec<String>,
}

impl Replica {
    fn new(identity: &'static str, dir: &Path) -> Replica {
        Replica {
            identity,
            webhook: free_port(),
            extender: free_port(),
            metrics: free_port(),
            child: None,
            log: dir.join(format!("{identity}.log")),
            extra: Vec::new(),
        }
    }

    fn start(&mut self, binary: &Path, kubeconfig: &Path, dir: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .arg(format!("--webhook-bind-address=127.0.0.1:{}", self.webhook))
            .arg(format!("--http_bind=127.0.0.1:{}", self.extender))
            .arg(format!("--metrics-bind-address=127.0.0.1:{}", self.metrics))
            .args([
                "--leader-elect",
                "--leader-elect-namespace=sliceguard-system",
                "--leader-elect-lease-duration=2s",
                "--leader-elect-renew-deadline=1500ms",
                "--leader-elect-retry-period=250ms",
                "--shutdown-grace=1s",
                "--log-level=info",
            ])
            .arg(format!("--leader-elect-identity={}", self.identity))
            .args(&self.extra)
            // The events' reportingInstance: which replica decided; the host name is the pod's.
            .env("POD_NAME", self.identity)
            .env("HOSTNAME", self.identity)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sliceguard serve starts");
        self.child = Some(child);
    }

    /// SIGKILL: the process ends between any two instructions, its lease left to expire.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for the process to exit (it finishes its binds and releases the Lease).
    fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let status = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -TERM {}", child.id());
            let exit = child.wait().expect("the replica exits");
            assert!(exit.success(), "{} exited with {exit}", self.identity);
        }
    }

    /// The `/readyz` body on the extender port (`leader`, `standby`), or `None` when not ready.
    fn role(&self) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.extender)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        let (head, body) = answer.split_once("\r\n\r\n")?;
        (head.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
    }

    fn extender_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.extender)
    }

    fn webhook_url(&self) -> String {
        format!("https://127.0.0.1:{}/webhook", self.webhook)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn logs(replicas: &[Replica]) -> String {
    replicas
        .iter()
        .map(|r| {
            let text = std::fs::read_to_string(&r.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            format!(
                "--- {} (last lines) ---\n{}",
                r.identity,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until exactly one live replica says `leader` (and every other live one `standby`).
fn wait_for_leader(replicas: &[Replica], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let roles: Vec<Option<String>> = replicas
            .iter()
            .map(|r| r.child.as_ref().and(r.role()))
            .collect();
        let leaders: Vec<usize> = roles
            .iter()
            .enumerate()
            .filter(|(_, r)| r.as_deref() == Some("leader"))
            .map(|(i, _)| i)
            .collect();
        assert!(
            leaders.len() <= 1,
            "two replicas say leader at once: {roles:?}\n{}",
            logs(replicas)
        );
        let others_standby = roles.iter().enumerate().all(|(i, r)| {
            leaders.contains(&i) || replicas[i].child.is_none() || r.as_deref() == Some("standby")
        });
        if let [leader] = leaders[..]
            && others_standby
        {
            return leader;
        }
        assert!(
            Instant::now() < deadline,
            "no single leader within {within:?}: {roles:?}\n{}",
            logs(replicas)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Points admission at `webhook`'s replica and the kube-scheduler stand-in at `leader`'s.
fn point(cluster: &LiveCluster, ca: &str, webhook: &Replica, leader: &Replica) {
    cluster
        .configure(
            Some(WebhookTarget {
                url: webhook.webhook_url(),
                ca_pem: Some(ca.to_string()),
                ignore_failures: false,
                scope: None,
            }),
            Some(leader.extender_url()),
        )
        .expect("targets configure");
}

fn kubectl_apply(config: &Path, cache: &Path, file: &Path) {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(config)
        .arg("--cache-dir")
        .arg(cache)
        .args(["apply", "--validate=false", "-f"])
        .arg(file)
        .output()
        .expect("kubectl is required for this test (it is installed on the dev and CI machines: /usr/bin/kubectl)");
    assert!(
        out.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A List of fractional pods `frac-<from>` .. `frac-<to - 1>`: one GPU, 8000 MiB, 10 cores each.
fn pods_file(dir: &Path, from: usize, to: usize) -> PathBuf {
    let items: Vec<Value> = (from..to)
        .map(|i| {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("frac-{i:02}"), "namespace": "default"},
                "spec": {"containers": [{"name": "cuda", "image": "nvidia/cuda:12.4.0-base-ubuntu22.04",
                    "resources": {"limits": {"nvidia.com/gpu": 1, "nvidia.com/gpumem": 8000, "nvidia.com/gpucores": 10}}}]}})
        })
        .collect();
    let path = dir.join(format!("pods-{from}-{to}.json"));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(&path, list.to_string()).expect("pods file");
    path
}

/// Every pod Running, or Pending with a HAMi reason, and no lock: (Running, Pending); else what is
/// still in between.
fn settled(cluster: &LiveCluster) -> Result<(usize, usize), String> {
    let shared = cluster.shared();
    let (pods, locks) = {
        let store = shared.read();
        let pods: Vec<Value> = store.objects(Resource::Pods).cloned().collect();
        let locks: Vec<String> = store
            .objects(Resource::Nodes)
            .filter_map(|n| {
                n["metadata"]["annotations"][sliceguard::annotations::NODE_LOCK]
                    .as_str()
                    .map(|l| format!("{}: {l}", n["metadata"]["name"]))
            })
            .collect();
        (pods, locks)
    };
    if pods.len() != PODS {
        return Err(format!("{} of {PODS} pods exist", pods.len()));
    }
    if !locks.is_empty() {
        return Err(format!("locks held: {locks:?}"));
    }
    let (mut running, mut pending) = (0, 0);
    for pod in &pods {
        let name = pod["metadata"]["name"].as_str().unwrap_or("?");
        match pod["status"]["phase"].as_str() {
            Some("Running") => running += 1,
            Some("Pending") if pod["spec"]["nodeName"].is_null() => {
                let message = pod["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled"))
                    .and_then(|c| c["message"].as_str())
                    .unwrap_or("");
                if !FitReason::ALL.iter().any(|r| message.contains(r.as_str())) {
                    return Err(format!("{name} Pending without a HAMi reason: {message:?}"));
                }
                pending += 1;
            }
            other => return Err(format!("{name} is {other:?}")),
        }
    }
    Ok((running, pending))
}

/// The simulated cluster on loopback and what the replicas need: a scratch directory with the
/// webhook's TLS pair, kubeconfigs for sliceguard's ServiceAccount (`trusted`) and the admin, and
/// kubectl's cache.
struct Bench {
    dir: PathBuf,
    ca: String,
    runtime: tokio::runtime::Runtime,
    cluster: LiveCluster,
    trusted: PathBuf,
    admin: PathBuf,
    cache: PathBuf,
}

impl Bench {
    fn start(name: &str, fleet: FleetSpec) -> Bench {
        let dir = std::env::temp_dir().join(format!("sliceguard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let ca = certified.cert.pem();
        std::fs::write(dir.join("tls.crt"), &ca).unwrap();
        std::fs::write(dir.join("tls.key"), certified.signing_key.serialize_pem()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cluster = runtime
            .block_on(LiveCluster::start(LiveOptions {
                fleet,
                tick: Duration::from_millis(100),
                ..LiveOptions::default()
            }))
            .unwrap();
        let trusted = dir.join("sliceguard.kubeconfig");
        std::fs::write(&trusted, kubeconfig_as(cluster.url(), SLICEGUARD_USER)).unwrap();
        let admin = dir.join("admin.kubeconfig");
        std::fs::write(&admin, kubeconfig(cluster.url())).unwrap();
        let cache = dir.join("kubectl-cache");
        Bench {
            dir,
            ca,
            runtime,
            cluster,
            trusted,
            admin,
            cache,
        }
    }

    fn stop(self) {
        self.runtime.block_on(self.cluster.stop());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn fifty_pods_while_the_leader_is_killed_and_restarted_twice() {
    let started = Instant::now();
    let binary = sliceguard_binary();
    let bench = Bench::start(
        "two-replicas",
        FleetSpec {
            nodes: 2,
            gpus_per_node: 2,
            ..FleetSpec::default()
        },
    );
    let Bench {
        dir,
        ca,
        cluster,
        trusted,
        admin,
        cache,
        ..
    } = &bench;

    let mut replicas = [
        Replica::new("replica-a", dir),
        Replica::new("replica-b", dir),
    ];
    for r in &mut replicas {
        r.start(&binary, trusted, dir);
    }
    let batches = [(0, 17), (17, 34), (34, PODS)];
    let mut leader = wait_for_leader(&replicas, Duration::from_secs(20));
    let mut leaders = vec![replicas[leader].identity];
    for (round, (from, to)) in batches.into_iter().enumerate() {
        let standby = 1 - leader;
        point(cluster, ca, &replicas[standby], &replicas[leader]);
        kubectl_apply(admin, cache, &pods_file(dir, from, to));
        if round == batches.len() - 1 {
            break;
        }
        // Let some filters and binds start, then kill the leader in the middle of them.
        std::thread::sleep(Duration::from_millis(300));
        replicas[leader].kill();
        let killed = leader;
        leader = wait_for_leader(&replicas, Duration::from_secs(15));
        assert_ne!(leader, killed);
        leaders.push(replicas[leader].identity);
        point(cluster, ca, &replicas[leader], &replicas[leader]);
        replicas[killed].start(&binary, trusted, dir);
        // The restarted replica comes back as a standby: the survivor's lease is valid.
        assert_eq!(wait_for_leader(&replicas, Duration::from_secs(15)), leader);
    }
    assert_eq!(leaders.len(), 3);
    assert_ne!(leaders[0], leaders[1]);
    assert_ne!(leaders[1], leaders[2]);

    // Wait until every pod has settled and no lock is left.
    let deadline = Instant::now() + Duration::from_secs(45);
    let (running, pending) = loop {
        match settled(cluster) {
            Ok((running, pending)) if running == 40 => break (running, pending),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "not settled: {other:?}\n{}",
                    logs(&replicas)
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!((running, pending), (40, 10));

    // Both replicas decided pods: the filter's events name the deciding replica.
    let deciders: std::collections::BTreeSet<String> = {
        let shared = cluster.shared();
        let store = shared.read();
        store
            .objects(Resource::Events)
            .filter(|e| e["reason"] == "FilteringSucceed")
            .filter_map(|e| e["reportingInstance"].as_str().map(String::from))
            .collect()
    };
    assert_eq!(
        deciders,
        ["replica-a".to_string(), "replica-b".to_string()].into(),
        "the replicas that placed pods"
    );

    let (code, stdout, stderr) = binary::outcome(
        binary::kind_harness()
            .arg("audit")
            .arg("--kubeconfig")
            .arg(admin),
    );
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("no problem found"), "{stdout}");
    assert!(
        stdout.contains("40 pods holding devices, 0 locks"),
        "{stdout}"
    );
    // A graceful stop hands the Lease over at once: the holder is cleared before the process exits,
    // so the Lease never names the stopped replica afterwards (an expiry would leave it there for
    // the lease duration).
    let leaving = wait_for_leader(&replicas, Duration::from_secs(5));
    replicas[leaving].terminate();
    let holder = {
        let shared = cluster.shared();
        let store = shared.read();
        store
            .get(Resource::Leases, Some("sliceguard-system"), "sliceguard")
            .map(|l| {
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_ne!(
        holder, replicas[leaving].identity,
        "the Lease was not released"
    );
    assert_ne!(wait_for_leader(&replicas, Duration::from_secs(5)), leaving);

    eprintln!(
        "settled in {:.1} s: {running} Running, {pending} Pending; leaders in turn {leaders:?}",
        started.elapsed().as_secs_f64()
    );
    for r in &mut replicas {
        r.kill();
    }
    bench.stop();
}

/// Writes kube-scheduler's Lease `sliceguard-system/sliceguard-kube-scheduler` naming `holder`.
fn kube_scheduler_lease(config: &Path, cache: &Path, dir: &Path, holder: &str) {
    let file = dir.join("kube-scheduler-lease.json");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "sliceguard-kube-scheduler", "namespace": "sliceguard-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
            "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()}});
    std::fs::write(&file, serde_json::to_vec(&lease).unwrap()).unwrap();
    kubectl_apply(config, cache, &file);
}

/// Waits until replica `want` says `leader` and every other live one `standby`, never seeing two
/// leaders on the way.
fn wait_for_leader_at(replicas: &[Replica], want: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let roles: Vec<Option<String>> = replicas.iter().map(Replica::role).collect();
        let leaders = roles
            .iter()
            .filter(|r| r.as_deref() == Some("leader"))
            .count();
        assert!(
            leaders <= 1,
            "two replicas say leader at once: {roles:?}\n{}",
            logs(replicas)
        );
        let settled = roles
            .iter()
            .enumerate()
            .all(|(i, r)| r.as_deref() == Some(if i == want { "leader" } else { "standby" }));
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not become the one leader within {within:?}: {roles:?}\n{}",
            replicas[want].identity,
            logs(replicas)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `--leader-elect-follow`: sliceguard's leadership moves into the pod whose kube-scheduler holds
/// kube-scheduler's Lease (identity `<pod host name>_<uuid>`), through the real kube-rs Lease reads.
#[test]
fn the_leader_follows_kube_schedulers_lease_into_its_pod() {
    let binary = sliceguard_binary();
    let bench = Bench::start("follow", FleetSpec::default());
    let Bench {
        dir,
        trusted,
        admin,
        cache,
        ..
    } = &bench;

    // kube-scheduler leads in replica-b's pod before either sliceguard starts.
    kube_scheduler_lease(
        admin,
        cache,
        dir,
        "replica-b_6a0f3c1e-7d2b-4e9a-b1c8-3f5d7e9a0b2c",
    );
    let mut replicas = [
        Replica::new("replica-a", dir),
        Replica::new("replica-b", dir),
    ];
    for r in &mut replicas {
        r.extra = vec!["--leader-elect-follow=sliceguard-system/sliceguard-kube-scheduler".into()];
        r.start(&binary, trusted, dir);
    }
    wait_for_leader_at(&replicas, 1, Duration::from_secs(20));
    // kube-scheduler's leadership moves to replica-a's pod: sliceguard's follows, with the Lease
    // released by replica-b rather than left to expire.
    kube_scheduler_lease(
        admin,
        cache,
        dir,
        "replica-a_0c9b8a7f-6e5d-4c3b-a291-8f7e6d5c4b3a",
    );
    wait_for_leader_at(&replicas, 0, Duration::from_secs(10));
    assert!(
        std::fs::read_to_string(&replicas[1].log)
            .unwrap_or_default()
            .contains("stepping down"),
        "replica-b says it steps down\n{}",
        logs(&replicas)
    );
    for r in &mut replicas {
        r.terminate();
    }
    bench.stop();
}
