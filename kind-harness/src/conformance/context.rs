//! One scenario's run: its namespace, the pods it created, its checks (each with what was
//! expected and what was seen), its skip when the cluster cannot offer what it needs, the waits it
//! does (each says what it is waiting for once it has waited long), and the cleanup and lock
//! check that end it.

use super::observe::{self, Inventory};
use super::precondition::ClusterState;
use crate::driver::Driver;
use crate::evidence::{Check, PodRow, Skip};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::Value;
use std::time::{Duration, Instant};

/// Says what a wait is waiting for once it has waited `every`, and again every `every` after.
#[derive(Debug)]
pub struct Patience {
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Patience {
    /// Starts counting now.
    pub fn new(every: Duration) -> Patience {
        let now = Instant::now();
        Patience {
            started: now,
            last: now,
            every,
        }
    }

    /// Prints `still waiting after N s for WHAT` when it is time to.
    pub fn note(&mut self, what: impl FnOnce() -> String) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            eprintln!(
                "  still waiting after {:.0} s for {}",
                self.started.elapsed().as_secs_f64(),
                what()
            );
        }
    }
}

/// A scenario's working state.
pub struct Ctx<'d> {
    /// The cluster.
    pub driver: &'d Driver,
    /// The scenario's own namespace.
    pub namespace: String,
    /// Checks so far.
    pub checks: Vec<Check>,
    /// Pods created, in creation order.
    pub created: Vec<String>,
    /// Pod rows captured before cleanup (for the report).
    pub rows: Vec<PodRow>,
    /// Pods and events of the namespace captured before cleanup (for the snapshots).
    pub snapshot: Option<(Vec<Value>, Vec<Value>)>,
    /// Set when the cluster could not offer what the scenario needs.
    pub skipped: Option<Skip>,
    /// Pods deleted during the scenario, as they were just before (rows and objects).
    deleted: Vec<(PodRow, Value)>,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("namespace", &self.namespace)
            .field("checks", &self.checks)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// An API failure as text.
pub fn api_error(what: &str, e: kube::Error) -> String {
    format!("{what}: {e}")
}

impl<'d> Ctx<'d> {
    /// A context with namespace `namespace` (created by [`Ctx::setup`]).
    pub fn new(driver: &'d Driver, namespace: String) -> Ctx<'d> {
        Ctx {
            driver,
            namespace,
            checks: Vec::new(),
            created: Vec::new(),
            rows: Vec::new(),
            snapshot: None,
            skipped: None,
            deleted: Vec::new(),
        }
    }

    /// Marks the scenario skipped: the cluster's state does not meet `precondition`; `seen` says
    /// what it offered. The scenario returns right after, claiming nothing.
    pub fn skip(&mut self, precondition: impl Into<String>, seen: impl Into<String>) {
        let skip = Skip {
            precondition: precondition.into(),
            seen: seen.into(),
        };
        eprintln!("  SKIPPED: needs {}; seen {}", skip.precondition, skip.seen);
        self.skipped = Some(skip);
    }

    /// The cluster's GPU nodes and current usage (every node, every pod, read as the audit reads them).
    pub async fn cluster_state(&self) -> Result<ClusterState, String> {
        let nodes = self.nodes().await?;
        let pods: Api<Pod> = Api::all(self.driver.client.clone());
        let pods = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("listing pods in every namespace", e))?
            .items;
        Ok(ClusterState::from_objects(&nodes, &pods))
    }

    fn patience(&self) -> Patience {
        Patience::new(self.driver.waits.patience)
    }

    /// Pods of the scenario's namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.driver.client.clone(), &self.namespace)
    }

    fn events_api(&self) -> Api<Event> {
        Api::namespaced(self.driver.client.clone(), &self.namespace)
    }

    /// Creates the namespace (an existing one is fine).
    pub async fn setup(&self) -> Result<(), String> {
        let namespaces: Api<Namespace> = Api::all(self.driver.client.clone());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(self.namespace.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(api_error(
                &format!("creating namespace {}", self.namespace),
                e,
            )),
        }
    }

    /// Records a check.
    pub fn check(
        &mut self,
        what: impl Into<String>,
        passed: bool,
        expected: impl Into<String>,
        seen: impl Into<String>,
    ) -> bool {
        self.checks.push(Check {
            what: what.into(),
            passed,
            expected: expected.into(),
            seen: seen.into(),
        });
        passed
    }

    /// Reads the GPU inventory.
    pub async fn inventory(&self) -> Result<Inventory, String> {
        Ok(Inventory::from_nodes(&self.nodes().await?))
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<Node>, String> {
        let nodes: Api<Node> = Api::all(self.driver.client.clone());
        nodes
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| api_error("listing nodes", e))
    }

    /// Creates a pod in the scenario's namespace.
    pub async fn create(&mut self, mut pod: Pod) -> Result<Pod, String> {
        pod.metadata.namespace = Some(self.namespace.clone());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let created = self
            .pods()
            .create(&PostParams::default(), &pod)
            .await
            .map_err(|e| api_error(&format!("creating pod {}/{name}", self.namespace), e))?;
        self.created.push(name);
        Ok(created)
    }

    /// Reads a pod.
    pub async fn pod(&self, name: &str) -> Result<Pod, String> {
        self.pods()
            .get(name)
            .await
            .map_err(|e| api_error(&format!("reading pod {}/{name}", self.namespace), e))
    }

    /// Events of the namespace.
    pub async fn events(&self) -> Result<Vec<Event>, String> {
        self.events_api()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|e| api_error(&format!("listing events in {}", self.namespace), e))
    }

    /// A one-line account of a pod: phase, node, devices and the scheduler's last word.
    pub async fn describe(&self, name: &str) -> String {
        let pod = match self.pod(name).await {
            Ok(p) => p,
            Err(e) => return format!("{name}: {e}"),
        };
        let events = self.events().await.unwrap_or_default();
        let about = observe::events_about(&events, name);
        let last = observe::event_lines(&about)
            .into_iter()
            .filter(|l| l.starts_with("Filtering") || l.starts_with("Binding"))
            .collect::<Vec<_>>();
        format!(
            "{name}: {} on {}, devices {}{}",
            observe::phase(&pod),
            observe::node_name(&pod).unwrap_or_else(|| "no node".into()),
            observe::devices_text(&pod),
            if last.is_empty() {
                String::new()
            } else {
                format!(", events [{}]", last.join(" | "))
            }
        )
    }

    /// Waits until each pod is decided: Running, or told `FilteringFailed` (or the deadline).
    /// Returns the pods as last seen.
    pub async fn wait_decided(&self, names: &[String]) -> Result<Vec<Pod>, String> {
        let waits = self.driver.waits;
        let started = Instant::now();
        let mut patience = self.patience();
        loop {
            let events = self.events().await?;
            let mut pods = Vec::with_capacity(names.len());
            let mut undecided = Vec::new();
            for name in names {
                let pod = self.pod(name).await?;
                let about = observe::events_about(&events, name);
                let decided = observe::phase(&pod) == "Running"
                    || !observe::messages(&about, "FilteringFailed").is_empty();
                if !decided {
                    undecided.push(name.as_str());
                }
                pods.push(pod);
            }
            if undecided.is_empty() || started.elapsed() >= waits.timeout {
                return Ok(pods);
            }
            patience.note(|| {
                format!(
                    "{} to be Running or told FilteringFailed (limit {:?})",
                    undecided.join(", "),
                    waits.timeout
                )
            });
            tokio::time::sleep(waits.poll).await;
        }
    }

    /// Waits until `name` is Running; records a check either way. Returns the pod when Running.
    pub async fn expect_running(&mut self, name: &str) -> Result<Option<Pod>, String> {
        let waits = self.driver.waits;
        let started = Instant::now();
        let mut patience = self.patience();
        loop {
            let pod = self.pod(name).await?;
            patience.note(|| {
                format!(
                    "{name} to be Running (now {} on {}; limit {:?})",
                    observe::phase(&pod),
                    observe::node_name(&pod).unwrap_or_else(|| "no node".into()),
                    waits.timeout
                )
            });
            if observe::phase(&pod) == "Running" {
                let seen = self.describe(name).await;
                self.check(format!("{name} is Running"), true, "Running", seen);
                return Ok(Some(pod));
            }
            if started.elapsed() >= waits.timeout {
                let seen = self.describe(name).await;
                self.check(
                    format!("{name} is Running"),
                    false,
                    format!("Running within {:?}", waits.timeout),
                    seen,
                );
                return Ok(None);
            }
            tokio::time::sleep(waits.poll).await;
        }
    }

    /// Waits for the scheduler's `FilteringFailed` about `name`, then watches it for the settle
    /// time; checks that it stays Pending with no node. Returns the reasons by node.
    pub async fn expect_pending(
        &mut self,
        name: &str,
    ) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
        let waits = self.driver.waits;
        let started = Instant::now();
        let mut told = false;
        let mut patience = self.patience();
        while started.elapsed() < waits.timeout {
            patience.note(|| {
                format!(
                    "the scheduler's FilteringFailed about {name} (limit {:?})",
                    waits.timeout
                )
            });
            let events = self.events().await?;
            if !observe::messages(&observe::events_about(&events, name), "FilteringFailed")
                .is_empty()
            {
                told = true;
                break;
            }
            tokio::time::sleep(waits.poll).await;
        }
        tokio::time::sleep(waits.settle).await;
        let pod = self.pod(name).await?;
        let events = self.events().await?;
        let about = observe::events_about(&events, name);
        let seen = self.describe(name).await;
        self.check(
            format!("the scheduler told {name} FilteringFailed"),
            told,
            format!("a FilteringFailed event within {:?}", waits.timeout),
            seen.clone(),
        );
        let pending = observe::phase(&pod) == "Pending" && observe::node_name(&pod).is_none();
        self.check(
            format!("{name} stays Pending with no node"),
            pending,
            format!(
                "Pending, unbound, {:?} after the scheduler answered",
                waits.settle
            ),
            seen,
        );
        Ok(observe::failed_reasons(&about))
    }

    fn row(pod: &Pod, events: &[Event]) -> PodRow {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let about = observe::events_about(events, &name);
        let mut reasons: Vec<String> = Vec::new();
        for m in observe::messages(&about, "FilteringFailed") {
            if !reasons.iter().any(|r| r == m) {
                reasons.push(m.to_string());
            }
        }
        PodRow {
            pod: name,
            phase: observe::phase(pod),
            node: observe::node_name(pod),
            devices: observe::devices_text(pod),
            reasons,
            events: observe::event_lines(&about),
        }
    }

    /// Deletes a pod the scenario created (its row and object kept for the evidence), and waits
    /// until it is gone.
    pub async fn delete_now(&mut self, name: &str) -> Result<(), String> {
        if let Ok(Some(pod)) = self.pods().get_opt(name).await {
            let events = self.events().await.unwrap_or_default();
            let row = Ctx::row(&pod, &events);
            if let Ok(value) = serde_json::to_value(&pod) {
                self.deleted.retain(|(r, _)| r.pod != name);
                self.deleted.push((row, value));
            }
        }
        self.delete_quietly(name).await
    }

    async fn delete_quietly(&self, name: &str) -> Result<(), String> {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        match self.pods().delete(name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(api_error(&format!("deleting pod {name}"), e)),
        }
        let started = Instant::now();
        let mut patience = self.patience();
        while started.elapsed() < self.driver.waits.timeout {
            patience.note(|| format!("pod {}/{name} to be gone", self.namespace));
            match self.pods().get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => tokio::time::sleep(self.driver.waits.poll).await,
                Err(e) => return Err(api_error(&format!("reading pod {name}"), e)),
            }
        }
        Err(format!(
            "pod {}/{name} still exists {:?} after its deletion",
            self.namespace, self.driver.waits.timeout
        ))
    }

    /// Captures the rows and snapshots of the scenario's pods (before cleanup).
    pub async fn capture(&mut self) -> Result<(), String> {
        let pods = self
            .pods()
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("listing pods", e))?
            .items;
        let events = self.events().await?;
        let mut rows = Vec::new();
        for name in &self.created {
            if let Some(pod) = pods
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(name))
            {
                rows.push(Ctx::row(pod, &events));
            } else if let Some((row, _)) = self.deleted.iter().find(|(r, _)| &r.pod == name) {
                let mut row = row.clone();
                row.phase = format!("{}, deleted", row.phase);
                rows.push(row);
            }
        }
        self.rows = rows;
        let mut pod_values: Vec<Value> = self.deleted.iter().map(|(_, v)| v.clone()).collect();
        pod_values.extend(pods.iter().filter_map(|p| serde_json::to_value(p).ok()));
        let event_values: Vec<Value> = events
            .iter()
            .filter_map(|e| serde_json::to_value(e).ok())
            .collect();
        self.snapshot = Some((pod_values, event_values));
        Ok(())
    }

    /// Deletes every pod the scenario created and its namespace, then checks that no node holds
    /// `hami.io/mutex.lock` (waiting up to the timeout for locks to be released).
    pub async fn cleanup_and_check_locks(&mut self) -> Result<(), String> {
        for name in self.created.clone() {
            self.delete_quietly(&name).await?;
        }
        let namespaces: Api<Namespace> = Api::all(self.driver.client.clone());
        match namespaces
            .delete(&self.namespace, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
            Err(e) => {
                return Err(api_error(
                    &format!("deleting namespace {}", self.namespace),
                    e,
                ));
            }
        }
        let started = Instant::now();
        let mut patience = self.patience();
        loop {
            let locks = observe::node_locks(&self.nodes().await?);
            patience.note(|| format!("hami.io/mutex.lock to be released: {locks:?}"));
            if locks.is_empty() {
                self.check(
                    "no node holds hami.io/mutex.lock at the end",
                    true,
                    "no lock",
                    "no lock",
                );
                return Ok(());
            }
            if started.elapsed() >= self.driver.waits.timeout {
                let seen = locks
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                self.check(
                    "no node holds hami.io/mutex.lock at the end",
                    false,
                    format!("no lock within {:?}", self.driver.waits.timeout),
                    seen,
                );
                return Ok(());
            }
            tokio::time::sleep(self.driver.waits.poll).await;
        }
    }
}
