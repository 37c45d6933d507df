//! The owner-checked release of a node lock ([`LockRelease`]), used by the binder and by the
//! shell's lock reaper.
//!
//! ## Release
//! Only the owner releases: [`LockRelease`] clears the annotation with a resourceVersion
//! precondition, and after a conflict or a lost answer it re-reads the node and clears it only if it
//! still belongs to the same owner. In [`ReleaseMode::AfterBind`] the binder releases right after the
//! `Binding` (and `bind-phase=success`); in [`ReleaseMode::DevicePlugin`] the lock stays with the
//! pod for HAMi's device plugin, and the shell's lock reaper releases it by [`judge_lock`] when the
//! pod's `bind-phase` settles, the pod ends or goes away, or the timeout passes. If a release keeps
//! failing, the outcome says [`LockFate::Stranded`] with the instant from which the expiry rule frees
//! it; the reaper also frees it earlier by the holder rules.
//!
//! [`ReleaseMode::AfterBind`]: super::ReleaseMode::AfterBind
//! [`ReleaseMode::DevicePlugin`]: super::ReleaseMode::DevicePlugin
//! [`judge_lock`]: super::judge_lock
//! [`LockFate::Stranded`]: super::LockFate::Stranded

use super::effect::unexpected;
use super::{ApiFailure, Effect, Observation};
use crate::codec::lock::{self, LockHolder};

/// Whose lock a [`LockRelease`] may clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOwner {
    /// Any value held by this pod (the binder's owner check, HAMi's suffix check).
    Pod(LockHolder),
    /// Exactly this value (the reaper, which judged that value).
    Value(String),
}

impl ReleaseOwner {
    fn owns(&self, raw: &str) -> bool {
        match self {
            ReleaseOwner::Pod(holder) => {
                lock::parse(raw).is_ok_and(|v| v.is_held_by(&holder.namespace, &holder.name))
            }
            ReleaseOwner::Value(value) => value == raw,
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseResult {
    /// Cleared.
    Released,
    /// Already absent, or the node is gone.
    AlreadyGone,
    /// Another owner's value is there now; left alone.
    TakenByOther {
        /// The value found.
        value: String,
    },
    /// Gave up after retries.
    Stranded {
        /// The last failure.
        reason: String,
    },
}

/// The release machine's next move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseStep {
    /// Execute this effect and call [`LockRelease::observe`].
    Do(Effect),
    /// Finished.
    Done(ReleaseResult),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ReleaseState {
    Idle,
    Reading,
    Clearing,
    Finished(ReleaseResult),
}

/// An owner-checked release of a node lock, by compare-and-swap on the resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRelease {
    node: String,
    owner: ReleaseOwner,
    resource_version: Option<String>,
    max_retries: u32,
    retries: u32,
    state: ReleaseState,
}

impl LockRelease {
    /// A release of `owner`'s lock on `node`. With `resource_version` (the one the owner last
    /// saw), it clears directly and re-reads only on a conflict; without it, it reads first.
    pub fn new(
        node: String,
        owner: ReleaseOwner,
        resource_version: Option<String>,
        max_retries: u32,
    ) -> Self {
        LockRelease {
            node,
            owner,
            resource_version,
            max_retries,
            retries: 0,
            state: ReleaseState::Idle,
        }
    }

    /// The node.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The first effect.
    pub fn start(&mut self) -> ReleaseStep {
        if self.state != ReleaseState::Idle {
            return self.finished_or_read();
        }
        match self.resource_version.clone() {
            Some(rv) => self.clear(rv),
            None => self.read(),
        }
    }

    /// Feeds the answer to the last effect.
    pub fn observe(&mut self, observation: Observation) -> ReleaseStep {
        match std::mem::replace(&mut self.state, ReleaseState::Idle) {
            ReleaseState::Idle => self.start(),
            ReleaseState::Finished(result) => self.done(result),
            ReleaseState::Reading => match observation {
                Observation::Node(view) => match view.lock {
                    None => self.done(ReleaseResult::AlreadyGone),
                    Some(raw) if self.owner.owns(&raw) => self.clear(view.resource_version),
                    Some(value) => self.done(ReleaseResult::TakenByOther { value }),
                },
                Observation::Failed(ApiFailure::NotFound) => self.done(ReleaseResult::AlreadyGone),
                other => self.retry_or_strand(&other, true),
            },
            ReleaseState::Clearing => match observation {
                Observation::Written { .. } => self.done(ReleaseResult::Released),
                Observation::Failed(ApiFailure::NotFound) => self.done(ReleaseResult::AlreadyGone),
                other => self.retry_or_strand(&other, false),
            },
        }
    }

    /// Runs to the end with a synchronous executor.
    pub fn run(&mut self, mut execute: impl FnMut(&Effect) -> Observation) -> ReleaseResult {
        let mut step = self.start();
        loop {
            match step {
                ReleaseStep::Do(effect) => step = self.observe(execute(&effect)),
                ReleaseStep::Done(result) => return result,
            }
        }
    }

    fn finished_or_read(&mut self) -> ReleaseStep {
        match &self.state {
            ReleaseState::Finished(result) => ReleaseStep::Done(result.clone()),
            _ => self.read(),
        }
    }

    fn read(&mut self) -> ReleaseStep {
        self.state = ReleaseState::Reading;
        ReleaseStep::Do(Effect::GetNode {
            node: self.node.clone(),
        })
    }

    fn clear(&mut self, resource_version: String) -> ReleaseStep {
        self.state = ReleaseState::Clearing;
        ReleaseStep::Do(Effect::ClearLock {
            node: self.node.clone(),
            resource_version,
        })
    }

    fn retry_or_strand(&mut self, observation: &Observation, reading: bool) -> ReleaseStep {
        let reason = match observation {
            Observation::Failed(f) => f.to_string(),
            other => unexpected(if reading { "GetNode" } else { "ClearLock" }, other).to_string(),
        };
        let retryable = matches!(
            observation,
            Observation::Failed(ApiFailure::Conflict(_) | ApiFailure::Indeterminate(_))
        );
        self.retries += 1;
        if retryable && self.retries <= self.max_retries {
            // A cleared lock whose answer was lost reads as absent; a conflict reads the new version.
            self.read()
        } else {
            self.done(ReleaseResult::Stranded { reason })
        }
    }

    fn done(&mut self, result: ReleaseResult) -> ReleaseStep {
        self.state = ReleaseState::Finished(result.clone());
        ReleaseStep::Done(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::NodeLockView;

    fn release() -> LockRelease {
        LockRelease::new("n1".into(), ReleaseOwner::Value("v".into()), None, 3)
    }

    #[test]
    fn a_finished_release_answers_its_result_again_without_an_effect() {
        let mut r = release();
        assert_eq!(r.node(), "n1");
        let mut effects = 0;
        let result = r.run(|_| {
            effects += 1;
            Observation::Node(NodeLockView {
                resource_version: "1".into(),
                lock: None,
            })
        });
        assert_eq!((result.clone(), effects), (ReleaseResult::AlreadyGone, 1));
        assert_eq!(r.start(), ReleaseStep::Done(result));
    }

    /// Indeterminate answers are retried `max_retries` times, then the lock is stranded.
    #[test]
    fn endless_failures_strand_after_the_retry_budget() {
        let mut r = release();
        let mut reads = 0;
        let result = r.run(|effect| {
            assert_eq!(effect.kind(), "get-node");
            reads += 1;
            assert!(reads <= 10, "the release does not stop retrying");
            Observation::Failed(ApiFailure::Indeterminate("503".into()))
        });
        assert!(
            matches!(result, ReleaseResult::Stranded { .. }),
            "{result:?}"
        );
        assert_eq!(reads, 4);
    }
}
