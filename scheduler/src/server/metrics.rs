//! Prometheus metrics (text exposition format, `prometheus-client`), served on `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sliceguard_filter_duration_seconds` | histogram | |
//! | `sliceguard_bind_duration_seconds` | histogram | |
//! | `sliceguard_filter_decisions_total` | counter | `outcome`: scheduled, unschedulable, no_gpu_request, cpu_placed (a CPU-only pod placed, `--route-cpu-pods`), invalid, error |
//! | `sliceguard_bind_outcomes_total` | counter | `outcome`: bound or the failure kind |
//! | `sliceguard_lock_acquisitions_total` | counter | |
//! | `sliceguard_lock_contentions_total` | counter | |
//! | `sliceguard_lock_takeovers_total` | counter | `rule`: expired, dangling, holder_finished, ... reentrant |
//! | `sliceguard_lock_releases_total` | counter | `by`: binder, reaper |
//! | `sliceguard_locks_held` | gauge | nodes carrying `hami.io/mutex.lock` as the node watch shows them |
//! | `sliceguard_webhook_reviews_total` | counter | `verdict`: routed, allowed, denied, errored, malformed |
//! | `sliceguard_webhook_rejected_total` | counter | `reason`: overloaded (more requests in flight than `--webhook-max-in-flight`, HTTP 429) |
//!
//! [`HealthMetrics`] (owned by [`super::health::Health`], served on the same `/metrics`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sliceguard_api_errors_total` | counter | `verb` (RBAC verb, or `nonresource`), `code` (HTTP status, or `transport`) |
//! | `sliceguard_watch_restarts_total` | counter | `watch`: node, pod |
//! | `sliceguard_ready` | gauge | 1 when `/readyz` last answered ready, else 0 |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A label set with one `outcome` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: &'static str,
}

/// A label set with one `rule` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    /// The rule.
    pub rule: &'static str,
}

/// A label set with one `by` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByLabel {
    /// Who.
    pub by: &'static str,
}

/// A label set with one `verdict` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    /// The verdict.
    pub verdict: &'static str,
}

/// A label set with one `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// The reason.
    pub reason: &'static str,
}

/// The labels of `sliceguard_api_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    /// The RBAC verb of the request.
    pub verb: &'static str,
    /// The HTTP status, or `transport`.
    pub code: String,
}

/// A label set with one `watch` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchLabel {
    /// The watch.
    pub watch: &'static str,
}

/// The health metrics (see the module table), in their own registry so that the kube client layer
/// can count before the service exists.
#[derive(Debug)]
pub struct HealthMetrics {
    registry: Registry,
    /// API errors by verb and code.
    pub api_errors: Family<ApiErrorLabels, Counter>,
    /// Watch failures, each followed by a restart.
    pub watch_restarts: Family<WatchLabel, Counter>,
    /// 1 when ready.
    pub ready: Gauge,
}

impl Default for HealthMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthMetrics {
    /// Registers the health metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sliceguard");
        let api_errors = Family::<ApiErrorLabels, Counter>::default();
        let watch_restarts = Family::<WatchLabel, Counter>::default();
        let ready = Gauge::default();
        registry.register(
            "api_errors",
            "Kubernetes API requests answered with an error status or lost, by verb and code",
            api_errors.clone(),
        );
        registry.register(
            "watch_restarts",
            "Watch failures (each followed by a restart with backoff), by watch",
            watch_restarts.clone(),
        );
        registry.register("ready", "1 when /readyz last answered ready", ready.clone());
        HealthMetrics {
            registry,
            api_errors,
            watch_restarts,
            ready,
        }
    }

    /// Counts an API error.
    pub fn api_error(&self, verb: &'static str, code: &str) {
        self.api_errors
            .get_or_create(&ApiErrorLabels {
                verb,
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a watch restart.
    pub fn watch_restart(&self, watch: &'static str) {
        self.watch_restarts
            .get_or_create(&WatchLabel { watch })
            .inc();
    }

    /// These metrics in the text format, without the closing `# EOF`.
    pub fn encode_registry(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        text
    }
}

/// Every metric of the scheduler.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Filter latency.
    pub filter_duration: Histogram,
    /// Bind latency.
    pub bind_duration: Histogram,
    /// Filter decisions by outcome.
    pub filter_decisions: Family<OutcomeLabel, Counter>,
    /// Bind outcomes.
    pub bind_outcomes: Family<OutcomeLabel, Counter>,
    /// Locks written by this scheduler.
    pub lock_acquisitions: Counter,
    /// Binds refused for contention.
    pub lock_contentions: Counter,
    /// Locks taken over (or re-entered), by rule.
    pub lock_takeovers: Family<RuleLabel, Counter>,
    /// Locks released, by binder or reaper.
    pub lock_releases: Family<ByLabel, Counter>,
    /// Nodes carrying a lock now.
    pub locks_held: Gauge,
    /// Webhook reviews by verdict.
    pub webhook_reviews: Family<VerdictLabel, Counter>,
    /// Webhook requests refused before review, by reason.
    pub webhook_rejected: Family<ReasonLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sliceguard");
        let filter_duration = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let bind_duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let filter_decisions = Family::<OutcomeLabel, Counter>::default();
        let bind_outcomes = Family::<OutcomeLabel, Counter>::default();
        let lock_acquisitions = Counter::default();
        let lock_contentions = Counter::default();
        let lock_takeovers = Family::<RuleLabel, Counter>::default();
        let lock_releases = Family::<ByLabel, Counter>::default();
        let locks_held = Gauge::default();
        let webhook_reviews = Family::<VerdictLabel, Counter>::default();
        let webhook_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "filter_duration_seconds",
            "Time to answer an extender filter request",
            filter_duration.clone(),
        );
        registry.register(
            "bind_duration_seconds",
            "Time to run the bind protocol for one pod",
            bind_duration.clone(),
        );
        registry.register(
            "filter_decisions",
            "Extender filter decisions by outcome",
            filter_decisions.clone(),
        );
        registry.register(
            "bind_outcomes",
            "Bind results by outcome",
            bind_outcomes.clone(),
        );
        registry.register(
            "lock_acquisitions",
            "Node locks written by this scheduler",
            lock_acquisitions.clone(),
        );
        registry.register(
            "lock_contentions",
            "Binds refused because another pod holds the node lock",
            lock_contentions.clone(),
        );
        registry.register(
            "lock_takeovers",
            "Node locks taken over (or re-entered) by rule",
            lock_takeovers.clone(),
        );
        registry.register(
            "lock_releases",
            "Node locks released by the binder or the reaper",
            lock_releases.clone(),
        );
        registry.register(
            "locks_held",
            "Nodes carrying hami.io/mutex.lock now",
            locks_held.clone(),
        );
        registry.register(
            "webhook_reviews",
            "Admission reviews by verdict",
            webhook_reviews.clone(),
        );
        registry.register(
            "webhook_rejected",
            "Webhook requests refused before review (overloaded: HTTP 429)",
            webhook_rejected.clone(),
        );
        Metrics {
            registry,
            filter_duration,
            bind_duration,
            filter_decisions,
            bind_outcomes,
            lock_acquisitions,
            lock_contentions,
            lock_takeovers,
            lock_releases,
            locks_held,
            webhook_reviews,
            webhook_rejected,
        }
    }

    /// Counts a filter decision.
    pub fn decision(&self, outcome: &'static str) {
        self.filter_decisions
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a bind outcome.
    pub fn bind_outcome(&self, outcome: &'static str) {
        self.bind_outcomes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts a takeover.
    pub fn takeover(&self, rule: &'static str) {
        self.lock_takeovers.get_or_create(&RuleLabel { rule }).inc();
    }

    /// Counts a release.
    pub fn release(&self, by: &'static str) {
        self.lock_releases.get_or_create(&ByLabel { by }).inc();
    }

    /// Counts a webhook review.
    pub fn review(&self, verdict: &'static str) {
        self.webhook_reviews
            .get_or_create(&VerdictLabel { verdict })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// The text exposition of these metrics and `health`'s, with one closing `# EOF`.
    pub fn encode_with(&self, health: &HealthMetrics) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut text, &self.registry);
        text.push_str(&health.encode_registry());
        let _ = prometheus_client::encoding::text::encode_eof(&mut text);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exposed() {
        let m = Metrics::new();
        m.decision("scheduled");
        m.bind_outcome("bound");
        m.takeover("expired");
        m.release("binder");
        m.review("routed");
        m.lock_acquisitions.inc();
        m.lock_contentions.inc();
        m.locks_held.set(2);
        m.filter_duration.observe(0.002);
        m.bind_duration.observe(0.01);
        let text = m.encode();
        for needle in [
            "sliceguard_filter_duration_seconds_bucket",
            "sliceguard_bind_duration_seconds_count 1",
            "sliceguard_filter_decisions_total{outcome=\"scheduled\"} 1",
            "sliceguard_bind_outcomes_total{outcome=\"bound\"} 1",
            "sliceguard_lock_acquisitions_total 1",
            "sliceguard_lock_contentions_total 1",
            "sliceguard_lock_takeovers_total{rule=\"expired\"} 1",
            "sliceguard_lock_releases_total{by=\"binder\"} 1",
            "sliceguard_locks_held 2",
            "sliceguard_webhook_reviews_total{verdict=\"routed\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }

    #[test]
    fn health_metrics_join_the_exposition_under_one_eof() {
        let m = Metrics::new();
        m.webhook_rejected
            .get_or_create(&ReasonLabel {
                reason: "overloaded",
            })
            .inc();
        let h = HealthMetrics::new();
        h.api_error("patch", "409");
        h.api_error("watch", "transport");
        h.watch_restart("pod");
        h.ready.set(1);
        let text = m.encode_with(&h);
        for needle in [
            "sliceguard_webhook_rejected_total{reason=\"overloaded\"} 1",
            "sliceguard_api_errors_total{verb=\"patch\",code=\"409\"} 1",
            "sliceguard_api_errors_total{verb=\"watch\",code=\"transport\"} 1",
            "sliceguard_watch_restarts_total{watch=\"pod\"} 1",
            "sliceguard_ready 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
