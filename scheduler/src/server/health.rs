//! Honest health: what `/healthz` and `/readyz` answer beyond the watches' first sync.
//!
//! [`Health`] is told, by the parts that know:
//! - the kube client layer ([`super::api_requests::ApiObserverLayer`]): the API answered;
//! - the watches ([`super::watch`]): an event arrived, or the watch failed (a restart follows);
//! - the background tasks (watches, reaper, API heartbeat) through a [`TaskGuard`] each: a task
//!   ended before shutdown (returned or panicked);
//! - `serve`'s shutdown: from its first moment.
//!
//! Readiness fails while shutting down, while the API has not answered for longer than
//! [`HealthSettings::api_silence_limit`], and while a watch's latest news is a failure (its error
//! is more recent than its latest event, within the silence limit). Liveness fails once a
//! background task has died. The service's own condition (watches synced) is checked by the
//! `/readyz` handler next to this one.
//!
//! The API heartbeat ([`api_heartbeat`]) asks `GET /version` every third of the silence limit so
//! that a quiet cluster (no watch events) still proves the API answers.

use super::metrics::HealthMetrics;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Health thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Unready when the API has not answered for longer than this.
    pub api_silence_limit: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            api_silence_limit: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct WatchState {
    last_event: Option<Instant>,
    last_error: Option<(Instant, String)>,
}

#[derive(Debug)]
struct State {
    last_api_answer: Instant,
    watches: BTreeMap<&'static str, WatchState>,
    died: Vec<&'static str>,
}

/// The process's health beyond the service's sync state.
#[derive(Debug)]
pub struct Health {
    settings: HealthSettings,
    shutting_down: AtomicBool,
    state: Mutex<State>,
    metrics: HealthMetrics,
}

impl Health {
    /// Healthy, with the API counted as answering now.
    pub fn new(settings: HealthSettings) -> Arc<Health> {
        Arc::new(Health {
            settings,
            shutting_down: AtomicBool::new(false),
            state: Mutex::new(State {
                last_api_answer: Instant::now(),
                watches: BTreeMap::new(),
                died: Vec::new(),
            }),
            metrics: HealthMetrics::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The metrics this module owns (API errors, watch restarts, readiness).
    pub fn metrics(&self) -> &HealthMetrics {
        &self.metrics
    }

    /// The settings.
    pub fn settings(&self) -> HealthSettings {
        self.settings
    }

    /// Shutdown began: unready from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.metrics.ready.set(0);
    }

    /// True once shutdown began.
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// The API answered a request (any status).
    pub fn api_answered(&self) {
        self.state().last_api_answer = Instant::now();
    }

    /// `watch` delivered an event.
    pub fn watch_event(&self, watch: &'static str) {
        self.state().watches.entry(watch).or_default().last_event = Some(Instant::now());
    }

    /// `watch` failed; the watcher retries with backoff (a restart).
    pub fn watch_failed(&self, watch: &'static str, error: String) {
        self.metrics.watch_restart(watch);
        self.state().watches.entry(watch).or_default().last_error = Some((Instant::now(), error));
    }

    /// A guard for a background task: dropped before shutdown began, it marks the process dead.
    pub fn task_guard(self: &Arc<Self>, task: &'static str) -> TaskGuard {
        TaskGuard {
            health: self.clone(),
            task,
        }
    }

    /// Ok, or why this replica must not receive traffic.
    pub fn readiness(&self) -> Result<(), String> {
        let result = self.readiness_now(Instant::now());
        self.metrics.ready.set(i64::from(result.is_ok()));
        result
    }

    fn readiness_now(&self, now: Instant) -> Result<(), String> {
        if self.shutting_down() {
            return Err("shutting down".into());
        }
        let limit = self.settings.api_silence_limit;
        let state = self.state();
        let mut reasons = Vec::new();
        let silent = now.saturating_duration_since(state.last_api_answer);
        if silent > limit {
            reasons.push(format!(
                "the Kubernetes API has not answered for {:.1}s (limit {:?})",
                silent.as_secs_f64(),
                limit
            ));
        }
        for (name, watch) in &state.watches {
            if let Some((at, error)) = &watch.last_error {
                let recent = now.saturating_duration_since(*at) <= limit;
                let newer_than_events = watch.last_event.is_none_or(|event| event <= *at);
                if recent && newer_than_events {
                    reasons.push(format!("the {name} watch failed: {error}"));
                }
            }
        }
        if !state.died.is_empty() {
            reasons.push(format!("background task ended: {}", state.died.join(", ")));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }

    /// Ok, or which background task has died.
    pub fn liveness(&self) -> Result<(), String> {
        let state = self.state();
        if state.died.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "background task ended before shutdown: {}",
                state.died.join(", ")
            ))
        }
    }
}

/// Held by a background task for its whole life (see [`Health::task_guard`]).
#[derive(Debug)]
pub struct TaskGuard {
    health: Arc<Health>,
    task: &'static str,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if !self.health.shutting_down() {
            tracing::error!(task = self.task, "background task ended before shutdown");
            self.health.state().died.push(self.task);
        }
    }
}

/// Asks the API for `/version` every third of the silence limit until `shutdown`, so that a quiet
/// cluster still proves the API answers (the answer itself is seen by the client layer).
pub async fn api_heartbeat(client: kube::Client, health: Arc<Health>, shutdown: CancellationToken) {
    let period = (health.settings.api_silence_limit / 3).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = shutdown.cancelled() => return,
        }
        if let Ok(Err(e)) = tokio::time::timeout(period, client.apiserver_version()).await {
            tracing::debug!(error = %e, "API heartbeat failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(limit_ms: u64) -> Arc<Health> {
        Health::new(HealthSettings {
            api_silence_limit: Duration::from_millis(limit_ms),
        })
    }

    #[test]
    fn ready_until_shutdown_begins() {
        let h = health(60_000);
        assert_eq!(h.readiness(), Ok(()));
        h.begin_shutdown();
        assert_eq!(h.readiness(), Err("shutting down".into()));
        assert!(h.metrics().encode_registry().contains("sliceguard_ready 0"));
    }

    #[test]
    fn a_silent_api_makes_it_unready_and_an_answer_ready_again() {
        let h = health(1_000);
        let later = Instant::now() + Duration::from_secs(5);
        let err = h.readiness_now(later).unwrap_err();
        assert!(err.contains("has not answered"), "{err}");
        h.api_answered();
        assert_eq!(h.readiness(), Ok(()));
    }

    #[test]
    fn a_watch_failure_counts_until_the_next_event() {
        let h = health(60_000);
        h.watch_event("node");
        h.watch_failed("node", "connection refused".into());
        let err = h.readiness().unwrap_err();
        assert!(
            err.contains("node watch failed: connection refused"),
            "{err}"
        );
        h.watch_event("node");
        assert_eq!(h.readiness(), Ok(()));
        assert!(
            h.metrics()
                .encode_registry()
                .contains("sliceguard_watch_restarts_total{watch=\"node\"} 1")
        );
    }

    #[test]
    fn a_task_ending_before_shutdown_fails_liveness_but_not_after() {
        let h = health(60_000);
        drop(h.task_guard("reaper"));
        let err = h.liveness().unwrap_err();
        assert!(err.contains("reaper"), "{err}");
        let h = health(60_000);
        h.begin_shutdown();
        drop(h.task_guard("reaper"));
        assert_eq!(h.liveness(), Ok(()));
    }

    #[test]
    fn a_panicking_task_is_seen_dead() {
        let h = health(60_000);
        let guard = h.task_guard("node watch");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _guard = guard;
            panic!("planted");
        }));
        assert!(outcome.is_err());
        assert!(h.liveness().is_err());
    }
}
