//! What a broken invariant looks like: the invariant, where (node, device), who (pods), and a
//! sentence with the numbers (`Σ memory 16000 MiB > devmem 15360 MiB by 640 MiB`).

use std::fmt;

/// The invariant families of `ARCHITECTURE.md` that this crate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Invariant {
    /// Per-device memory, cores, split count and exclusivity.
    Capacity,
    /// Unfittable requests are never placed and carry the binding reason.
    Rejection,
    /// The ledger equals the usage recomputed from pod annotations.
    Agreement,
    /// The scheduler and the reference oracle agree on feasibility.
    Oracle,
    /// The decision's shape: annotations, labels, allocations that match the request.
    Protocol,
    /// `parse(render(x)) == x`; parsers never panic.
    Codec,
    /// The same input gives the same decision.
    Determinism,
    /// A decision added usage to a device already over its registered capacity (a node
    /// re-registered with less, or an allocation written by someone else): the scheduler made it
    /// worse, unlike a pre-existing over-commit, which is the audit's finding, not a decision's.
    OverfullDecision,
    /// A scheduler's host CPU book (what the `fragmentation` policy reads as each node's free CPU)
    /// differs from the one the API's nodes and pods give.
    HostCpu,
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Invariant::Capacity => "capacity",
            Invariant::Rejection => "rejection",
            Invariant::Agreement => "agreement",
            Invariant::Oracle => "oracle",
            Invariant::Protocol => "protocol",
            Invariant::Codec => "codec",
            Invariant::Determinism => "determinism",
            Invariant::OverfullDecision => "overfull-decision",
            Invariant::HostCpu => "host-cpu",
        })
    }
}

/// One broken invariant, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// The node, when the violation is about one.
    pub node: Option<String>,
    /// The device UUID, when the violation is about one.
    pub device: Option<String>,
    /// The pods involved (`namespace/name`).
    pub pods: Vec<String>,
    /// What is wrong, with the numbers.
    pub detail: String,
}

impl Violation {
    /// A violation of `invariant` explained by `detail`.
    pub fn new(invariant: Invariant, detail: impl Into<String>) -> Self {
        Violation {
            invariant,
            node: None,
            device: None,
            pods: Vec::new(),
            detail: detail.into(),
        }
    }

    /// Names the node.
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// Names the device.
    pub fn on_device(mut self, device: &str) -> Self {
        self.device = Some(device.to_string());
        self
    }

    /// Names the pods.
    pub fn with_pods<I, S>(mut self, pods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pods = pods.into_iter().map(Into::into).collect();
        self
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.invariant)?;
        if let Some(node) = &self.node {
            write!(f, " node {node}")?;
        }
        if let Some(device) = &self.device {
            write!(f, " device {device}")?;
        }
        write!(f, ": {}", self.detail)?;
        if !self.pods.is_empty() {
            write!(f, " (pods: {})", self.pods.join(", "))?;
        }
        Ok(())
    }
}

/// Joins violations one per line, for a test failure message.
pub fn report(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_everything() {
        let v = Violation::new(Invariant::Capacity, "Σ memory 16000 MiB > devmem 15360 MiB")
            .on_node("n0")
            .on_device("GPU-n0-1")
            .with_pods(["default/p1", "default/p2"]);
        assert_eq!(
            v.to_string(),
            "[capacity] node n0 device GPU-n0-1: Σ memory 16000 MiB > devmem 15360 MiB (pods: default/p1, default/p2)"
        );
        assert_eq!(report(&[v.clone(), v]).lines().count(), 2);
    }
}
