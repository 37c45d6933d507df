//! The pods no node holds yet, as kube-scheduler's pod informer knows them: kept from the store's
//! event log (each event's JSON read for two fields, nothing typed), so queueing the unbound pods
//! after a step costs what changed, not a walk over every stored pod.

use crate::store::{EventType, Resource, Store};
use serde_json::Value;
use std::collections::BTreeSet;

/// Keys (`namespace/name`) of the stored pods that have a spec and no `spec.nodeName`.
#[derive(Debug, Default)]
pub(super) struct UnboundPods {
    /// The store's resourceVersion the set is up to date with.
    applied: u64,
    keys: BTreeSet<String>,
}

impl UnboundPods {
    /// Brings the set up to date with `store` (from every stored pod when its event log no longer
    /// reaches back far enough); returns the keys of the pods that became unbound (or changed while
    /// unbound) since the last call.
    pub fn refresh(&mut self, store: &Store) -> Vec<String> {
        let mut newly = Vec::new();
        match store.events_after(self.applied) {
            Ok(events) => {
                for event in events.filter(|e| e.resource == Resource::Pods) {
                    let key = key_of(&event.object);
                    if event.event_type != EventType::Deleted && unbound(&event.object) {
                        self.keys.insert(key.clone());
                        newly.push(key);
                    } else {
                        self.keys.remove(&key);
                    }
                }
            }
            Err(_) => {
                self.keys = store
                    .objects(Resource::Pods)
                    .filter(|p| unbound(p))
                    .map(key_of)
                    .collect();
                newly.extend(self.keys.iter().cloned());
            }
        }
        self.applied = store.resource_version();
        newly
    }

    /// Whether the pod `key` is stored and unbound (as of the last [`UnboundPods::refresh`]).
    pub fn contains(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
}

fn unbound(pod: &Value) -> bool {
    pod["spec"].is_object() && pod["spec"]["nodeName"].is_null()
}

fn key_of(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default()
    )
}
