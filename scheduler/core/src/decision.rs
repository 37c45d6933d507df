//! The placement decision: HAMi's extender `Filter` as a pure function (spec §4.2), behind one entry
//! point, [`decide`], that `serve`, `sliceguard place` and the placement-quality replay all call.
//!
//! Given a pod, the names of the nodes kube-scheduler offers, the [`Fleet`] (registry, usage ledger
//! and, when the caller keeps one, the placement index) and the time, it returns the chosen node and
//! devices per container, a verdict for every offered node (its score, or its rejection), the
//! annotations to write, and the `FilteringSucceed` / `FilteringFailed` events in HAMi's formats
//! (types in [`crate::outcome`]). It performs no I/O; the caller writes the annotations, records the
//! allocation in the ledger, and emits the events.
//!
//! Two siblings answer: the plain scan ([`crate::scan`]) and the placement index
//! ([`crate::index`]). Which one is written here, once: the index when the caller passes one, the
//! pod is one the index decides ([`crate::index::applies`]) and at least [`INDEX_MIN_OFFERED`] nodes
//! are offered; for a `fragmentation` pod under the same conditions, the ranking of its verdicts
//! that the index's memo keeps ([`crate::scan::decide_briefly`]); the full scan otherwise (with the
//! memo whenever there is an index). All choose the same node and devices; the brief answers return
//! the chosen node's verdict only, and their `FilteringSucceed` message lists that node alone
//! instead of every fitting node (see [`crate::index`]). A caller that passes the same fleet, pod
//! and offered nodes gets the same decision and the same event texts, whichever caller it is.

use crate::fragmentation::FragmentationInputs;
pub use crate::index::Fleet;
use crate::ledger::UsageSource;
use crate::scan;
use k8s_openapi::api::core::v1::Pod;

pub use crate::outcome::{
    Decision, EventRecord, EventType, FILTERING_FAILED, FILTERING_SUCCEED, InvalidPod,
    NODE_UNREGISTERED, Outcome, PreparedPod, SchedulerSettings, Verdict, prepare,
};

/// From this many offered nodes up a decision goes through the placement index when the caller
/// passes one (below, the scan answers, with HAMi's full `FilteringSucceed` message).
pub const INDEX_MIN_OFFERED: usize = 64;

/// Decides where `pod` goes among `offered` at `now` (see the module documentation for which
/// sibling answers). `fragmentation` is what sliceguard's `fragmentation` policy scores against;
/// other policies ignore it.
pub fn decide<U: UsageSource>(
    fleet: Fleet<'_, U>,
    pod: &PreparedPod,
    offered: &[String],
    now: jiff::Timestamp,
    fragmentation: FragmentationInputs<'_>,
) -> Decision {
    // The index itself declines pods it does not decide (`crate::index::applies`) and a registry it
    // disagrees with; the scan answers those.
    if let Some(index) = fleet.index
        && offered.len() >= INDEX_MIN_OFFERED
    {
        if let Some(decision) = index.decide(fleet.registry, pod, offered, now) {
            return decision;
        }
        if let Some(decision) = scan::decide_briefly(fleet, pod, offered, now, fragmentation) {
            return decision;
        }
    }
    scan::decide_remembering(fleet, pod, offered, now, fragmentation)
}

/// [`decide`] for a pod object, with no fragmentation inputs: reads its requests and preferences
/// first; a pod that cannot be read gets HAMi's `calcScore failed` event and no verdicts.
pub fn filter<U: UsageSource>(
    fleet: Fleet<'_, U>,
    settings: &SchedulerSettings,
    pod: &Pod,
    offered: &[String],
    now: jiff::Timestamp,
) -> Decision {
    match prepare(pod, settings) {
        Ok(prepared) => decide(
            fleet,
            &prepared,
            offered,
            now,
            FragmentationInputs::default(),
        ),
        Err(error) => Decision::invalid(pod.metadata.name.as_deref().unwrap_or_default(), error),
    }
}
