//! What a platform team checks before letting the webhook near a cluster: the 3 MiB body limit, the
//! in-flight limit (requests over it wait or get 429, never dropped), the certificate rotated under
//! a live TLS listener without a restart, `/readyz` following the API (unready while it stops
//! answering, ready again when it returns), SIGTERM turning `/readyz` unready before the listeners
//! close, and the extender refusing a non-loopback address.

#[path = "../core/tests/bind_support/mod.rs"]
mod bind_support;
mod http_support;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use http_support::api_stub::{ApiStub, StubState, kubeconfig_for};
use http_support::{call, fleet_nodes, synced_service};
use serde_json::json;
use sliceguard::server::health::HealthSettings;
use sliceguard::server::http::{
    WEBHOOK_BODY_LIMIT, limit_in_flight, serve, webhook_router, webhook_router_with_limit,
};
use sliceguard::server::{KubeSource, SchedulerConfig, ServeLimits, ServeOptions, tls};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_sliceguard");

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sliceguard-health-{}-{name}", std::process::id()))
}

/// One HTTP/1.1 request on a fresh connection: `None` when the connection is refused or dropped.
async fn http(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    let code = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

fn review() -> serde_json::Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-a000-000000000001",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"metadata": {"name": "p", "namespace": "default"},
                       "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
        }
    })
}

#[tokio::test]
async fn a_3_mib_body_is_read_and_3_mib_plus_one_byte_is_413() {
    assert_eq!(WEBHOOK_BODY_LIMIT, 3 * 1024 * 1024);
    let (svc, _) = synced_service(SchedulerConfig::default());
    let router = webhook_router(svc);
    // Exactly at the limit: read, then refused for what it is (not JSON), not for its size.
    let (status, body) = call(&router, "POST", "/webhook", "x".repeat(WEBHOOK_BODY_LIMIT)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, _) = call(
        &router,
        "POST",
        "/webhook",
        "x".repeat(WEBHOOK_BODY_LIMIT + 1),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_limit_wait_then_get_429() {
    let rejected = Arc::new(AtomicUsize::new(0));
    let counted = rejected.clone();
    let slow = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            "done"
        }),
    );
    let router = limit_in_flight(slow, 2, Duration::from_millis(50), move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move { call(&router, "GET", "/slow", "").await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (2, 6), "{statuses:?}");
    assert_eq!(rejected.load(Ordering::SeqCst), 6);
    // The slots are free again.
    assert_eq!(call(&router, "GET", "/slow", "").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_webhook_requests_is_answered_and_the_server_survives() {
    let (svc, _) = synced_service(SchedulerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        webhook_router_with_limit(svc.clone(), 2),
        None,
        shutdown.clone(),
        Duration::from_secs(2),
    ));
    let body = review().to_string();
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let body = body.clone();
            tokio::spawn(async move { http(port, "POST", "/webhook", &body).await })
        })
        .collect();
    let mut answered = 0;
    let mut limited = 0;
    for c in calls {
        let (code, _) = c.await.unwrap().expect("every request is answered");
        assert!(code == 200 || code == 429, "unexpected status {code}");
        answered += 1;
        limited += usize::from(code == 429);
    }
    assert_eq!(answered, 200);
    // Still serving afterwards.
    let (code, text) = http(port, "POST", "/webhook", &body).await.unwrap();
    assert_eq!(code, 200, "{text}");
    let metrics = svc.metrics().encode();
    if limited > 0 {
        assert!(
            metrics.contains(&format!(
                "sliceguard_webhook_rejected_total{{reason=\"overloaded\"}} {limited}"
            )),
            "{metrics}"
        );
    }
    shutdown.cancel();
    server.await.unwrap();
}

/// A CA and two serving certificates for `localhost` it signed.
struct Pki {
    ca_der: Vec<u8>,
    leaves: Vec<(String, String, Vec<u8>)>,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rotation-test-ca");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaves = (0..2)
        .map(|i| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("webhook-{i}"));
            let cert = params.signed_by(&key, &ca).unwrap();
            (cert.pem(), key.serialize_pem(), cert.der().to_vec())
        })
        .collect();
    Pki {
        ca_der: ca.der().to_vec(),
        leaves,
    }
}

/// Handshakes with the server trusting only the CA; returns the leaf certificate it served.
async fn served_certificate(port: u16, ca_der: &[u8]) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    session.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let pki = pki();
    let cert = temp_path("rotate.crt");
    let key = temp_path("rotate.key");
    std::fs::write(&cert, &pki.leaves[0].0).unwrap();
    std::fs::write(&key, &pki.leaves[0].1).unwrap();
    let acceptor = tls::tls_acceptor(&cert, &key).unwrap();
    let (svc, _) = synced_service(SchedulerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        webhook_router(svc),
        Some(acceptor),
        shutdown.clone(),
        Duration::from_secs(2),
    ));
    assert_eq!(served_certificate(port, &pki.ca_der).await, pki.leaves[0].2);

    // Rotate the files under the running listener (as a Secret update does).
    std::fs::write(&cert, &pki.leaves[1].0).unwrap();
    std::fs::write(&key, &pki.leaves[1].1).unwrap();
    let started = Instant::now();
    loop {
        if served_certificate(port, &pki.ca_der).await == pki.leaves[1].2 {
            break;
        }
        assert!(
            started.elapsed() < tls::RELOAD_CHECK_INTERVAL * 5,
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A broken key (half-written rotation) keeps the last good pair in service.
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
    tokio::time::sleep(tls::RELOAD_CHECK_INTERVAL + Duration::from_millis(200)).await;
    assert_eq!(served_certificate(port, &pki.ca_der).await, pki.leaves[1].2);

    shutdown.cancel();
    server.await.unwrap();
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn a_mismatched_rotation_is_refused_and_the_old_pair_stays() {
    let pki = pki();
    let cert = temp_path("mismatch.crt");
    let key = temp_path("mismatch.key");
    std::fs::write(&cert, &pki.leaves[0].0).unwrap();
    std::fs::write(&key, &pki.leaves[0].1).unwrap();
    let resolver = tls::ReloadingCert::load(&cert, &key, Duration::ZERO).unwrap();
    assert!(!resolver.reload().unwrap(), "nothing changed");
    // The certificate of one pair with the key of the other.
    std::fs::write(&cert, &pki.leaves[1].0).unwrap();
    let err = resolver.reload().unwrap_err().to_string();
    assert!(err.contains("key"), "{err}");
    assert_eq!(resolver.current().cert[0].to_vec(), pki.leaves[0].2);
    std::fs::write(&key, &pki.leaves[1].1).unwrap();
    assert!(resolver.reload().unwrap());
    assert_eq!(resolver.current().cert[0].to_vec(), pki.leaves[1].2);
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

/// A TCP proxy in front of the API that can stop forwarding (connections stay open, nothing
/// answers: an API that stops answering) and resume.
struct Proxy {
    port: u16,
    paused: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            changed = paused.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn proxy(upstream: std::net::SocketAddr) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (paused, _) = tokio::sync::watch::channel(false);
    let watch = paused.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, watch.subscribe()));
            tokio::spawn(pump(server_read, client_write, watch.subscribe()));
        }
    });
    Proxy { port, paused, task }
}

async fn wait_for_readyz(port: u16, want: u16, within: Duration) -> String {
    let started = Instant::now();
    loop {
        let answer = tokio::time::timeout(Duration::from_secs(2), http(port, "GET", "/readyz", ""))
            .await
            .ok()
            .flatten();
        if let Some((code, body)) = answer
            && code == want
        {
            return body;
        }
        assert!(
            started.elapsed() < within,
            "/readyz never answered {want} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fleet_state() -> StubState {
    let mut state = StubState::default();
    for node in fleet_nodes(2) {
        state.put_node(serde_json::to_value(node).unwrap());
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_api_unready_while_it_stops_answering_ready_when_it_returns() {
    let stub = ApiStub::start(fleet_state()).await;
    let proxy = proxy(stub.address).await;
    let kubeconfig = temp_path("proxy-kubeconfig.yaml");
    std::fs::write(
        &kubeconfig,
        kubeconfig_for(&format!("http://127.0.0.1:{}", proxy.port)),
    )
    .unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let running = sliceguard::server::start(ServeOptions {
        kube: KubeSource {
            kubeconfig: Some(kubeconfig.clone()),
            context: None,
            timeout: Duration::from_secs(5),
        },
        config: SchedulerConfig::default(),
        webhook_addr: loopback,
        tls: None,
        extender_addr: loopback,
        metrics_addr: loopback,
        shutdown_grace: Duration::from_secs(1),
        election: None,
        limits: ServeLimits {
            health: HealthSettings {
                api_silence_limit: Duration::from_millis(900),
            },
            ..ServeLimits::default()
        },
    })
    .await
    .unwrap();
    let port = running.metrics_addr.port();
    wait_for_readyz(port, 200, Duration::from_secs(20)).await;

    proxy.paused.send_replace(true);
    let paused_at = Instant::now();
    let why = wait_for_readyz(port, 503, Duration::from_secs(5)).await;
    assert!(why.contains("has not answered"), "{why}");
    // Not before the silence limit, counted from the last answer (the heartbeat asks every third
    // of the limit, so the last answer came at most a third of it before the pause).
    assert!(paused_at.elapsed() >= Duration::from_millis(550), "{why}");
    let (_, metrics) = http(port, "GET", "/metrics", "").await.unwrap();
    assert!(metrics.contains("sliceguard_ready 0"), "{metrics}");

    proxy.paused.send_replace(false);
    wait_for_readyz(port, 200, Duration::from_secs(10)).await;
    let (_, metrics) = http(port, "GET", "/metrics", "").await.unwrap();
    assert!(metrics.contains("sliceguard_ready 1"), "{metrics}");
    assert_eq!(http(port, "GET", "/healthz", "").await.unwrap().0, 200);

    running.stop().await;
    let _ = std::fs::remove_file(kubeconfig);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_unready_before_the_listeners_close() {
    let stub = ApiStub::start(fleet_state()).await;
    let kubeconfig = temp_path("sigterm-kubeconfig.yaml");
    stub.kubeconfig(&kubeconfig);
    let (extender, metrics) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--kubeconfig",
            &kubeconfig.display().to_string(),
            "--http_bind",
            &format!("127.0.0.1:{extender}"),
            "--metrics-bind-address",
            &format!("127.0.0.1:{metrics}"),
            "--shutdown-delay",
            "2s",
            "--log-level",
            "warn",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_readyz(metrics, 200, Duration::from_secs(30)).await;

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let why = wait_for_readyz(metrics, 503, Duration::from_millis(1500)).await;
    assert!(why.contains("shutting down"), "{why}");
    let unready_after = signalled.elapsed();
    // Still listening (the extender too) while unready.
    assert_eq!(http(extender, "GET", "/healthz", "").await.unwrap().0, 200);
    // Then the listeners close and the process exits 0.
    let started = Instant::now();
    while http(metrics, "GET", "/readyz", "").await.is_some() {
        assert!(started.elapsed() < Duration::from_secs(10), "never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_after = signalled.elapsed();
    assert!(
        unready_after < closed_after && closed_after >= Duration::from_secs(2),
        "unready after {unready_after:?}, closed after {closed_after:?}"
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    let _ = std::fs::remove_file(kubeconfig);
}

#[test]
fn serve_refuses_a_non_loopback_extender_address_naming_the_flag() {
    let out = Command::new(BIN)
        .args(["serve", "--http_bind", "0.0.0.0:8080"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-non-loopback-extender"), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_counted_by_verb_and_code_and_answers_count_as_heard() {
    use k8s_openapi::api::core::v1::Pod;
    use sliceguard::server::health::Health;
    let stub = ApiStub::start(fleet_state()).await;
    let health = Health::new(HealthSettings::default());
    let config = kube::Config::new(stub.url().parse().unwrap());
    let client = sliceguard::server::observed_client(config, &health).unwrap();
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
    let missing = pods.get("no-such-pod").await.unwrap_err();
    assert!(
        matches!(missing, kube::Error::Api(ref s) if s.code == 404),
        "{missing}"
    );
    // Nothing listens on this port: a transport error.
    let closed = kube::Config::new(format!("http://127.0.0.1:{}", free_port()).parse().unwrap());
    let closed = sliceguard::server::observed_client(closed, &health).unwrap();
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(closed);
    assert!(nodes.list(&Default::default()).await.is_err());
    let text = health.metrics().encode_registry();
    assert!(
        text.contains("sliceguard_api_errors_total{verb=\"get\",code=\"404\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sliceguard_api_errors_total{verb=\"list\",code=\"transport\"} 1"),
        "{text}"
    );
    assert_eq!(health.readiness(), Ok(()));
}
