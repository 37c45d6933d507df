//! A simulated cluster reached as a user's cluster is: `kind-harness sim serve` and `sliceguard
//! serve` as two separate processes (webhook over HTTPS with the certificate `sim serve` wrote,
//! extender over HTTP), a kubeconfig on disk, and kubectl. Both processes are killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process killed (and reaped) on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The `sliceguard` binary next to `kind-harness` (Cargo puts every workspace binary in one
/// directory); built with Cargo when a `-p sliceguard-kind-harness` run did not build it.
pub fn sliceguard_binary() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_BIN_EXE_kind-harness"));
    let dir = harness
        .parent()
        .expect("the binary's directory")
        .to_path_buf();
    let binary = dir.join("sliceguard");
    if !binary.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "sliceguard-scheduler",
                "--bin",
                "sliceguard",
            ])
            .status()
            .expect("running cargo build for the sliceguard binary");
        assert!(
            status.success(),
            "cargo build -p sliceguard-scheduler failed"
        );
    }
    assert!(binary.exists(), "{} was not built", binary.display());
    binary
}

/// One raw HTTP/1.0 GET on loopback: the status code, if anything answered.
pub fn http_status(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The two processes and where they write.
pub struct Cluster {
    /// Scratch directory (kubeconfig, TLS, logs, kubectl cache).
    pub dir: PathBuf,
    /// The kubeconfig `sim serve` wrote.
    pub kubeconfig: PathBuf,
    sim: Reaped,
    sliceguard: Reaped,
}

impl Cluster {
    /// Starts `kind-harness sim serve EXTRA...` and `sliceguard serve` against it; returns when
    /// sliceguard's `/readyz` answers 200.
    pub fn start(tag: &str, extra: &[&str]) -> Cluster {
        let dir = std::env::temp_dir().join(format!("kh-cluster-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let kubeconfig = dir.join("kubeconfig");
        let scheduler_kubeconfig = dir.join("sliceguard.kubeconfig");
        let log =
            |name: &str| Stdio::from(std::fs::File::create(dir.join(name)).expect("log file"));
        let api = format!("127.0.0.1:{}", free_port());
        let webhook = format!("127.0.0.1:{}", free_port());
        let extender = format!("127.0.0.1:{}", free_port());
        let metrics = format!("127.0.0.1:{}", free_port());
        let mut sim = Reaped(
            Command::new(env!("CARGO_BIN_EXE_kind-harness"))
                .args(["sim", "serve", "--addr", &api])
                .args(extra)
                .arg("--kubeconfig-out")
                .arg(&kubeconfig)
                // sliceguard connects as its ServiceAccount: the webhook's guard lets only that
                // user write scheduling state.
                .arg("--scheduler-kubeconfig-out")
                .arg(&scheduler_kubeconfig)
                .arg("--tls-out")
                .arg(dir.join("tls"))
                .args(["--webhook-url", &format!("https://{webhook}/webhook")])
                .args(["--extender-url", &format!("http://{extender}")])
                .stdout(Stdio::null())
                .stderr(log("sim-serve.log"))
                .spawn()
                .expect("starting kind-harness sim serve"),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !kubeconfig.exists() || !scheduler_kubeconfig.exists() {
            if let Ok(Some(status)) = sim.0.try_wait() {
                panic!(
                    "sim serve exited {status}: {}",
                    read(&dir.join("sim-serve.log"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "sim serve did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut sliceguard = Reaped(
            Command::new(sliceguard_binary())
                .arg("serve")
                .arg("--kubeconfig")
                .arg(&scheduler_kubeconfig)
                .arg("--tls-cert")
                .arg(dir.join("tls/tls.crt"))
                .arg("--tls-key")
                .arg(dir.join("tls/tls.key"))
                .args(["--webhook-bind-address", &webhook])
                .args(["--http_bind", &extender])
                .args(["--metrics-bind-address", &metrics])
                .stdout(Stdio::null())
                .stderr(log("sliceguard.log"))
                .spawn()
                .expect("starting sliceguard serve"),
        );
        loop {
            if let Ok(Some(status)) = sliceguard.0.try_wait() {
                panic!(
                    "sliceguard serve exited {status}: {}",
                    read(&dir.join("sliceguard.log"))
                );
            }
            if http_status(&extender, "/readyz") == Some(200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sliceguard serve was not ready within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Cluster {
            dir,
            kubeconfig,
            sim,
            sliceguard,
        }
    }

    /// Runs kubectl against the cluster: (success, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .output()
            .expect("kubectl is required for this test (installed on the dev and CI machines: /usr/bin/kubectl)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Both processes' logs (for a failure message).
    pub fn logs(&self) -> String {
        format!(
            "--- sim serve ---\n{}\n--- sliceguard ---\n{}",
            tail(&read(&self.dir.join("sim-serve.log"))),
            tail(&read(&self.dir.join("sliceguard.log")))
        )
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The seed's three manifests (`examples/seed/01..03`).
pub fn seed_manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    [
        "01-fractional-pod.yaml",
        "02-overrequest-pending.yaml",
        "03-placement-spread.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect()
}
