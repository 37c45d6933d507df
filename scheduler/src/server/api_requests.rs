//! What a Kubernetes API request is in RBAC's terms, and the kube client layer that watches the
//! answers.
//!
//! [`classify`] maps a request line (method, path, query) to the RBAC verb, API group, resource and
//! subresource it needs, the way kube-apiserver's request-info resolver does for the paths a kube
//! client issues. The deployment's least-privilege test records the requests `serve` and `register`
//! send to the simulated API and compares [`classify`]'s answers with the rendered Roles; the
//! [`ApiObserverLayer`] uses the same function to count API errors by verb and code.
//!
//! [`ApiObserverLayer`] wraps the kube client's HTTP service: every answer (any status) tells
//! [`Health`] that the API is answering; an answer with status 400 or above, and a transport error
//! (code `transport`), counts in `sliceguard_api_errors_total{verb,code}`.

use super::health::Health;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One resource request in RBAC's terms.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiRequest {
    /// RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    /// API group (`""` for the core group).
    pub group: String,
    /// Resource, plural (`pods`).
    pub resource: String,
    /// Subresource (`binding`, `status`), if any.
    pub subresource: Option<String>,
}

impl ApiRequest {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// The RBAC view of a request; `None` for a non-resource path (`/version`, discovery).
pub fn classify(method: &str, path: &str, query: Option<&str>) -> Option<ApiRequest> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_string(), rest),
        _ => return None,
    };
    // namespaces/<ns>/<resource>/... ; a bare namespaces[/<name>] is the namespaces resource.
    let rest = match rest {
        ["namespaces", _ns, resource, tail @ ..] => {
            let mut v = vec![*resource];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some((*sub).to_string())),
        _ => return None,
    };
    if resource.is_empty() {
        return None;
    }
    let watching = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| matches!(pair, "watch=true" | "watch=1" | "watch=True"))
    });
    let verb = match (method, name.is_some()) {
        ("GET", _) if watching => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    };
    Some(ApiRequest {
        verb,
        group,
        resource: resource.to_string(),
        subresource,
    })
}

/// A tower layer over the kube client's HTTP service that reports answers to [`Health`].
#[derive(Debug, Clone)]
pub struct ApiObserverLayer {
    health: Arc<Health>,
}

impl ApiObserverLayer {
    /// Reports to `health`.
    pub fn new(health: Arc<Health>) -> Self {
        ApiObserverLayer { health }
    }
}

impl<S> tower::Layer<S> for ApiObserverLayer {
    type Service = ApiObserver<S>;

    fn layer(&self, inner: S) -> ApiObserver<S> {
        ApiObserver {
            inner,
            health: self.health.clone(),
        }
    }
}

/// The service of [`ApiObserverLayer`].
#[derive(Debug, Clone)]
pub struct ApiObserver<S> {
    inner: S,
    health: Arc<Health>,
}

impl<S, B, RB> tower::Service<axum::http::Request<B>> for ApiObserver<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let verb = classify(
            request.method().as_str(),
            request.uri().path(),
            request.uri().query(),
        )
        .map_or("nonresource", |r| r.verb);
        let health = self.health.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => {
                    health.api_answered();
                    let status = response.status().as_u16();
                    if status >= 400 {
                        health.metrics().api_error(verb, &status.to_string());
                    }
                }
                Err(_) => health.metrics().api_error(verb, "transport"),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb_of(method: &str, path: &str, query: Option<&str>) -> Option<(String, String)> {
        classify(method, path, query).map(|r| (r.verb.to_string(), r.rbac_resource()))
    }

    #[test]
    fn requests_map_to_rbac_verbs() {
        let v = |verb: &str, res: &str| Some((verb.to_string(), res.to_string()));
        assert_eq!(verb_of("GET", "/api/v1/nodes", None), v("list", "nodes"));
        assert_eq!(
            verb_of("GET", "/api/v1/nodes", Some("watch=true&resourceVersion=5")),
            v("watch", "nodes")
        );
        assert_eq!(verb_of("GET", "/api/v1/nodes/n1", None), v("get", "nodes"));
        assert_eq!(
            verb_of("PATCH", "/api/v1/nodes/n1/status", None),
            v("patch", "nodes/status")
        );
        assert_eq!(
            verb_of("POST", "/api/v1/namespaces/default/pods/p/binding", None),
            v("create", "pods/binding")
        );
        assert_eq!(
            verb_of("GET", "/api/v1/pods", Some("labelSelector=x")),
            v("list", "pods")
        );
        assert_eq!(
            verb_of(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                None
            ),
            v("update", "leases")
        );
        assert_eq!(
            verb_of("GET", "/api/v1/namespaces/kube-system", None),
            v("get", "namespaces")
        );
        assert_eq!(
            verb_of("DELETE", "/api/v1/namespaces/d/pods", None),
            v("deletecollection", "pods")
        );
        assert_eq!(
            classify(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/s/leases/l",
                None
            )
            .map(|r| r.group),
            Some("coordination.k8s.io".to_string())
        );
        assert_eq!(verb_of("GET", "/version", None), None);
        assert_eq!(verb_of("GET", "/apis", None), None);
        assert_eq!(verb_of("OPTIONS", "/api/v1/nodes", None), None);
    }
}
