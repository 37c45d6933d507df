//! Why a bind failed: [`BindError`], whose text is the extender's `Error` and the `BindingFailed`
//! event's message (HAMi's texts where HAMi has one), and its metric label.

use super::ApiFailure;
use crate::codec::Quoted;
use crate::codec::lock::LockError;
use jiff::Timestamp;

/// What a [`BindError::BindingUnverified`] message says after the `Binding`'s failure.
pub const BINDING_UNVERIFIED: &str =
    "the pod could not be read back to tell whether the Binding landed";

/// Why a bind failed. The text is the extender's `Error` and the `BindingFailed` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// The lock is held by another pod and no rule frees it (HAMi's text).
    #[error("node {node} has been locked within {timeout}: node lock contention")]
    Contention {
        /// Node.
        node: String,
        /// The lock timeout, formatted as Go formats a `time.Duration`.
        timeout: String,
    },
    /// The lock value does not parse and has not been there for the timeout yet.
    #[error(
        "node {node} has a malformed lock {value} ({problem}); it is reclaimed {timeout} after it was first seen, at {reclaim_at}: node lock contention"
    )]
    MalformedLock {
        /// Node.
        node: String,
        /// The value, quoted.
        value: Quoted,
        /// The parse error.
        problem: String,
        /// The lock timeout, Go format.
        timeout: String,
        /// When it will be reclaimed.
        reclaim_at: Timestamp,
    },
    /// The node does not exist (HAMi's text).
    #[error("failed to get node {node}")]
    NodeNotFound {
        /// Node.
        node: String,
    },
    /// The node could not be read.
    #[error("failed to get node {node}: {failure}")]
    NodeUnreadable {
        /// Node.
        node: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The pod does not exist (any more).
    #[error("pod {pod} not found")]
    PodGone {
        /// `namespace/name`.
        pod: String,
    },
    /// The pod could not be read.
    #[error("failed to get pod {pod}: {failure}")]
    PodUnreadable {
        /// `namespace/name`.
        pod: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// A pod with this name exists but is another pod.
    #[error("pod {pod} was replaced: uid {expected} is now {found}")]
    PodReplaced {
        /// `namespace/name`.
        pod: String,
        /// The uid the bind was asked for.
        expected: String,
        /// The uid found.
        found: String,
    },
    /// The pod has finished or is being deleted.
    #[error("pod {pod} is finished or being deleted")]
    PodFinished {
        /// `namespace/name`.
        pod: String,
    },
    /// The pod's decision does not allow this bind (see [`super::PodDecision`]).
    #[error("pod {pod} cannot be bound to node {node}: {problem}")]
    DecisionRefused {
        /// `namespace/name`.
        pod: String,
        /// The node kube-scheduler asked for.
        node: String,
        /// Why, naming the annotation.
        problem: String,
    },
    /// The caller went away before the `Binding` ([`super::BindMachine::abandon`]).
    #[error("bind of pod {pod} to node {node} abandoned: the caller went away before the Binding")]
    Abandoned {
        /// `namespace/name`.
        pod: String,
        /// The node.
        node: String,
    },
    #[error("pod {pod} is already bound to node {bound}")]
    BoundElsewhere {
        /// `namespace/name`.
        pod: String,
        /// Where it is bound.
        bound: String,
    },
    /// The lock holder could not be looked up.
    #[error("failed to get lock holder pod {holder} of node {node}: {failure}")]
    HolderUnreadable {
        /// Node.
        node: String,
        /// `namespace/name`.
        holder: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The lock write kept failing (HAMi's text, with the attempt count instead of the strategy).
    #[error("failed to set node lock (node={node}, attempts={attempts}): {last}")]
    LockNotSet {
        /// Node.
        node: String,
        /// Writes tried.
        attempts: u32,
        /// The last failure.
        last: ApiFailure,
    },
    /// The pod name cannot be written into a lock value.
    #[error("cannot lock node {node} for pod {pod}: {problem}")]
    Unlockable {
        /// Node.
        node: String,
        /// `namespace/name`.
        pod: String,
        /// Why.
        problem: LockError,
    },
    /// The `bind-phase` patch failed.
    #[error("failed to patch pod {pod} annotations: {failure}")]
    PodPatchFailed {
        /// `namespace/name`.
        pod: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The `Binding` failed.
    #[error("failed to bind pod {pod} to node {node}: {failure}")]
    BindingFailed {
        /// `namespace/name`.
        pod: String,
        /// Node.
        node: String,
        /// The API failure.
        failure: ApiFailure,
    },
    /// The `Binding` got no definite answer (or a conflict), and every read of the pod since
    /// failed too: it may be bound. Not HAMi's: HAMi never reads back (see
    /// [`super::machine`]'s `device-plugin` mode for what happens to the lock).
    #[error("failed to bind pod {pod} to node {node}: {failure}; {what}: {read}", what = BINDING_UNVERIFIED)]
    BindingUnverified {
        /// `namespace/name`.
        pod: String,
        /// Node.
        node: String,
        /// The `Binding`'s failure.
        failure: ApiFailure,
        /// The last read's failure.
        read: ApiFailure,
    },
}

impl BindError {
    /// The metric label of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            BindError::Contention { .. } | BindError::MalformedLock { .. } => "contention",
            BindError::NodeNotFound { .. } | BindError::NodeUnreadable { .. } => "node_error",
            BindError::PodGone { .. }
            | BindError::PodReplaced { .. }
            | BindError::PodFinished { .. } => "pod_gone",
            BindError::PodUnreadable { .. } | BindError::PodPatchFailed { .. } => "pod_error",
            BindError::BoundElsewhere { .. } => "bound_elsewhere",
            BindError::DecisionRefused { .. } => "decision_refused",
            BindError::Abandoned { .. } => "abandoned",
            BindError::HolderUnreadable { .. }
            | BindError::LockNotSet { .. }
            | BindError::Unlockable { .. } => "lock_error",
            BindError::BindingFailed { .. } | BindError::BindingUnverified { .. } => {
                "binding_error"
            }
        }
    }

    /// True for lock contention (the node is busy; kube-scheduler retries later).
    pub fn is_contention(&self) -> bool {
        self.kind() == "contention"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lock_contention_is_contention() {
        let contention = BindError::Contention {
            node: "n1".into(),
            timeout: "5m0s".into(),
        };
        assert!(contention.is_contention());
        assert_eq!(contention.kind(), "contention");
        let abandoned = BindError::Abandoned {
            pod: "ns/p".into(),
            node: "n1".into(),
        };
        assert!(!abandoned.is_contention());
        assert_eq!(abandoned.kind(), "abandoned");
    }
}
