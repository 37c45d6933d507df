//! The webhook: real AdmissionReview v1 and v1beta1 bodies in-process, malformed and oversized
//! reviews, and a real TLS handshake against the accept loop with a certificate made in the test.

#[path = "../core/tests/bind_support/mod.rs"]
mod bind_support;
mod http_support;

use axum::http::StatusCode;
use base64::Engine as _;
use http_support::{call, call_json, synced_service};
use serde_json::{Value, json};
use sliceguard::server::SchedulerConfig;
use sliceguard::server::http::{serve, webhook_router};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn review(version: &str, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": version,
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": null,
            "dryRun": false
        }
    })
}

fn pod(limits: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "job-", "namespace": "default"},
           "spec": {"containers": [{"name": "cuda", "image": "nvidia/cuda", "resources": {"limits": limits}}]}})
}

fn decoded_patch(answer: &Value) -> Vec<Value> {
    let encoded = answer["response"]["patch"].as_str().expect("a patch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn v1_and_v1beta1_reviews_get_json_patches() {
    let (svc, _) = synced_service(SchedulerConfig::default());
    let router = webhook_router(svc.clone());
    for version in ["admission.k8s.io/v1", "admission.k8s.io/v1beta1"] {
        let body = review(
            version,
            "CREATE",
            pod(json!({"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000"})),
        );
        let (status, answer) = call_json(&router, "/webhook", &body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["apiVersion"], version);
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(answer["response"]["allowed"], true);
        assert_eq!(answer["response"]["patchType"], "JSONPatch");
        let patch = decoded_patch(&answer);
        assert!(
            patch.contains(&json!({"op": "add", "path": "/spec/schedulerName", "value": "sliceguard-scheduler"})),
            "{patch:?}"
        );
    }
    assert!(
        svc.metrics()
            .encode()
            .contains("sliceguard_webhook_reviews_total{verdict=\"routed\"} 2")
    );
}

#[tokio::test]
async fn denials_carry_hamis_messages() {
    let (svc, _) = synced_service(SchedulerConfig::default());
    let router = webhook_router(svc);
    let mut privileged = pod(json!({"nvidia.com/gpu": "1"}));
    privileged["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
    let mut assigned = pod(json!({"nvidia.com/gpu": "1"}));
    assigned["spec"]["nodeName"] = json!("n1");
    let cases = [
        (privileged, "container cuda is privileged"),
        (assigned, "pod has node assigned"),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "e"}, "spec": {"containers": []}}),
            "pod has no containers",
        ),
    ];
    for (object, message) in cases {
        let (status, answer) = call_json(
            &router,
            "/webhook",
            &review("admission.k8s.io/v1beta1", "CREATE", object),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["response"]["allowed"], false, "{message}");
        assert_eq!(answer["response"]["status"]["code"], 403);
        assert_eq!(answer["response"]["status"]["message"], message);
    }
    // A pod for another scheduler passes untouched.
    let mut other = pod(json!({"nvidia.com/gpu": "1"}));
    other["spec"]["schedulerName"] = json!("volcano");
    let (_, answer) = call_json(
        &router,
        "/webhook",
        &review("admission.k8s.io/v1", "CREATE", other),
    )
    .await;
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(
        answer["response"]["status"]["message"],
        "pod already has different scheduler assigned"
    );
}

#[tokio::test]
async fn malformed_reviews_are_http_400_and_oversized_ones_413() {
    let (svc, _) = synced_service(SchedulerConfig::default());
    let router = webhook_router(svc.clone());
    let (status, body) = call(&router, "POST", "/webhook", "not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        String::from_utf8(body)
            .unwrap()
            .starts_with("AdmissionReview is not valid JSON")
    );
    let (status, body) = call(
        &router,
        "POST",
        "/webhook",
        r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{}}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        "AdmissionReview.request.uid is missing or not a non-empty string\n"
    );
    // An object that is not a pod: HAMi's Errored(400) inside an HTTP 200 review.
    let (status, answer) = call_json(
        &router,
        "/webhook",
        &review(
            "admission.k8s.io/v1",
            "CREATE",
            json!({"spec": {"containers": {}}}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["response"]["status"]["code"], 400);
    let mut huge = review("admission.k8s.io/v1", "CREATE", pod(json!({})));
    huge["padding"] = json!("x".repeat(8 << 20));
    let (status, _) = call(&router, "POST", "/webhook", huge.to_string()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        svc.metrics()
            .encode()
            .contains("sliceguard_webhook_reviews_total{verdict=\"malformed\"} 2")
    );
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sliceguard-{}-{name}", std::process::id()))
}

/// Sends one HTTP/1.1 request over `stream` and returns the whole answer.
async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    body: &str,
) -> String {
    let request = format!(
        "POST /webhook HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // A TLS peer may close without close_notify; what was read is what counts.
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_webhook_answers_over_a_real_tls_handshake() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert_path = temp_path("tls.crt");
    let key_path = temp_path("tls.key");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    let acceptor = sliceguard::server::tls_acceptor(&cert_path, &key_path).unwrap();

    let (svc, _) = synced_service(SchedulerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        webhook_router(svc),
        Some(acceptor),
        shutdown.clone(),
        Duration::from_secs(2),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(server_name, tcp).await.unwrap();
    let (_, session) = tls.get_ref();
    assert!(session.protocol_version().is_some(), "handshake completed");

    let body = review(
        "admission.k8s.io/v1",
        "CREATE",
        pod(json!({"nvidia.com/gpu": "1"})),
    )
    .to_string();
    let answer = exchange(&mut tls, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    let json_start = answer.find("{\"apiVersion\"").unwrap();
    let review_answer: Value = serde_json::from_str(&answer[json_start..]).unwrap();
    assert_eq!(review_answer["response"]["allowed"], true);
    let patch = decoded_patch(&review_answer);
    assert!(patch.iter().any(|op| op["path"] == "/spec/schedulerName"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = exchange(&mut plain, &body).await;
    assert!(!answer.starts_with("HTTP/1.1"), "{answer}");

    // A certificate the client does not trust fails the handshake.
    let strange = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let mut other_roots = rustls::RootCertStore::empty();
    other_roots.add(strange.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(other_roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await;
    assert!(refused.is_err());

    shutdown.cancel();
    server.await.unwrap();
    let _ = std::fs::remove_file(cert_path);
    let _ = std::fs::remove_file(key_path);
}

#[test]
fn certificate_errors_name_the_file() {
    let missing = temp_path("missing.crt");
    let err = sliceguard::server::tls_acceptor(&missing, &missing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("cannot load TLS certificate from "),
        "{err}"
    );
    assert!(err.contains("missing.crt"), "{err}");
    let empty = temp_path("empty.crt");
    std::fs::write(&empty, "not a pem").unwrap();
    let err = sliceguard::server::tls_acceptor(&empty, &empty)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no CERTIFICATE block"), "{err}");
    let _ = std::fs::remove_file(empty);
}
