//! The typical workload: the task shapes the cluster runs ([`TaskShape`], grouped by their GPU part),
//! their weights ([`TypicalWorkload`], [`Weighting`]) and the [`WorkloadProfile`] that learns them
//! from the GPU pods the scheduler sees, or is configured.

use crate::policy::PodPreferences;
use crate::request::{ContainerRequest, PodRequest};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Share of observed containers the typical shapes cover (the paper's 95 %).
pub const DEFAULT_COVERAGE: f64 = 0.95;

/// The most distinct shapes a profile counts; beyond it, the rarest quarter is dropped (every pod
/// may write its own memory size, and the profile must not grow with them).
pub const MAX_SHAPES: usize = 4096;

/// What one GPU container asks of each of its GPUs, with its CPU and GPU-type constraints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskShape {
    /// GPUs.
    pub nums: u32,
    /// MiB per GPU (0 when a percentage applies).
    pub memreq: u32,
    /// Percent of each GPU's memory, or `request::PERCENTAGE_UNSET`.
    pub mem_percentage: u32,
    /// Cores (percent) per GPU, clamped to 100.
    pub cores: u32,
    /// CPU request (millicores) that comes with it.
    pub cpu_milli: u64,
    /// `use-gputype` entries (upper-case substrings); empty means any type.
    pub use_types: Vec<String>,
    /// `nouse-gputype` entries (upper-case substrings).
    pub nouse_types: Vec<String>,
}

impl TaskShape {
    /// The shape of one container's request under the pod's type selectors, with `cpu_milli`.
    pub fn of(request: &ContainerRequest, prefs: &PodPreferences, cpu_milli: u64) -> Self {
        TaskShape {
            nums: request.nums,
            memreq: request.memreq,
            mem_percentage: request.mem_percentage,
            cores: request.cores_clamped(),
            cpu_milli,
            use_types: prefs.use_types.clone(),
            nouse_types: prefs.nouse_types.clone(),
        }
    }
}

impl TaskShape {
    /// The GPUs one such task takes: `nums` × its share of a GPU, the larger of its cores and its
    /// memory percentage (a shape asking only for MiB counts its cores; one asking for nothing
    /// measurable counts a tenth of a GPU, so that it still weighs something).
    pub fn gpu_demand(&self) -> f64 {
        let memory = if self.mem_percentage <= 100 {
            self.mem_percentage
        } else {
            0
        };
        let share = f64::from(self.cores.max(memory)) / 100.0;
        f64::from(self.nums) * if share > 0.0 { share } else { 0.1 }
    }
}

/// The shapes of a pod's GPU containers; the pod's CPU is split evenly between them.
fn pod_shapes<'a>(
    request: &'a PodRequest,
    prefs: &'a PodPreferences,
    cpu_milli: u64,
) -> impl Iterator<Item = TaskShape> + 'a {
    let gpu_containers = request
        .containers
        .iter()
        .filter(|c| c.request.as_ref().is_some_and(|r| r.nums > 0))
        .count()
        .max(1) as u64;
    request
        .containers
        .iter()
        .filter_map(|c| c.request.as_ref())
        .filter(|r| r.nums > 0)
        .map(move |r| TaskShape::of(r, prefs, cpu_milli / gpu_containers))
}

/// The GPU part of a shape (a shape without its CPU): what decides whether a device hosts it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct GpuKind {
    pub(super) nums: u32,
    request: (u32, u32, u32),
    use_types: Vec<String>,
    nouse_types: Vec<String>,
}

impl GpuKind {
    fn of(shape: &TaskShape) -> Self {
        GpuKind {
            nums: shape.nums,
            request: (shape.memreq, shape.mem_percentage, shape.cores),
            use_types: shape.use_types.clone(),
            nouse_types: shape.nouse_types.clone(),
        }
    }

    /// One container's request of this kind.
    pub(super) fn request(&self) -> ContainerRequest {
        ContainerRequest {
            nums: self.nums,
            memreq: self.request.0,
            mem_percentage: self.request.1,
            coresreq: self.request.2,
        }
    }

    pub(super) fn constrained(&self) -> bool {
        !self.use_types.is_empty() || !self.nouse_types.is_empty()
    }

    /// True when the upper-cased device type passes the type selectors.
    pub(super) fn type_allowed(&self, upper_type: &str) -> bool {
        (self.use_types.is_empty()
            || self
                .use_types
                .iter()
                .any(|t| upper_type.contains(t.as_str())))
            && !self
                .nouse_types
                .iter()
                .any(|t| upper_type.contains(t.as_str()))
    }
}

/// The typical workload: shapes and their probabilities (summing to 1 unless empty).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypicalWorkload {
    pub(super) shapes: Vec<(TaskShape, f64)>,
    /// The distinct GPU parts of the shapes.
    pub(super) kinds: Vec<GpuKind>,
    /// For each shape, its GPU part in `kinds`.
    pub(super) kind_of: Vec<usize>,
    pub(super) constrained: bool,
}

impl TypicalWorkload {
    /// A workload from weighted shapes; weights are normalised, non-positive ones and shapes
    /// without GPUs dropped.
    pub fn from_weights(weights: impl IntoIterator<Item = (TaskShape, f64)>) -> Self {
        let mut shapes: Vec<(TaskShape, f64)> = weights
            .into_iter()
            .filter(|(s, w)| *w > 0.0 && w.is_finite() && s.nums > 0)
            .collect();
        let total: f64 = shapes.iter().map(|(_, w)| w).sum();
        for (_, w) in &mut shapes {
            *w /= total;
        }
        let mut kinds: Vec<GpuKind> = Vec::new();
        let mut numbered: HashMap<GpuKind, usize> = HashMap::new();
        let kind_of = shapes
            .iter()
            .map(|(s, _)| {
                *numbered.entry(GpuKind::of(s)).or_insert_with_key(|kind| {
                    kinds.push(kind.clone());
                    kinds.len() - 1
                })
            })
            .collect();
        let constrained = kinds.iter().any(GpuKind::constrained);
        TypicalWorkload {
            shapes,
            kinds,
            kind_of,
            constrained,
        }
    }

    /// The pod's own GPU containers, equally weighted (the workload when nothing else is known).
    pub fn of_pod(request: &PodRequest, prefs: &PodPreferences, cpu_milli: u64) -> Self {
        TypicalWorkload::from_weights(pod_shapes(request, prefs, cpu_milli).map(|s| (s, 1.0)))
    }

    /// The profile's typical shapes, or the pod's own when the profile is absent or empty.
    pub fn resolve<'a>(
        profile: Option<&'a WorkloadProfile>,
        request: &PodRequest,
        prefs: &PodPreferences,
        cpu_milli: u64,
    ) -> Cow<'a, TypicalWorkload> {
        match profile {
            Some(p) if !p.typical.is_empty() => Cow::Borrowed(&p.typical),
            _ => Cow::Owned(TypicalWorkload::of_pod(request, prefs, cpu_milli)),
        }
    }

    /// The shapes and their probabilities.
    pub fn shapes(&self) -> &[(TaskShape, f64)] {
        &self.shapes
    }

    /// True when there is no shape.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }
}

/// How the typical shapes are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// Frequency × the GPUs a shape takes ([`TaskShape::gpu_demand`]).
    Demand,
    /// Frequency alone, as FGD weights them.
    Count,
    /// Frequency × the GPU demand raised to `percent`/100 (clamped to 100): between `Count` (0)
    /// and `Demand` (100).
    DemandPower(u8),
}

/// sliceguard's weighting: frequency × √(GPU demand), between FGD's count weighting and demand
/// weighting. On the Alibaba trace it was chosen on seeds 42–45 of ten of the trace's variants and
/// checked on the other five and on seeds 200–203 (`bench/FGD-GAP.md`); `bench/QUALITY.md`
/// measures it alone, against both ends, and on held-out seeds.
pub const DEFAULT_WEIGHTING: Weighting = Weighting::DemandPower(50);

impl Default for Weighting {
    fn default() -> Self {
        DEFAULT_WEIGHTING
    }
}

impl Weighting {
    /// The weight of a shape seen `n` times.
    pub fn weight(self, shape: &TaskShape, n: u64) -> f64 {
        let n = n as f64;
        match self {
            Weighting::Demand => n * shape.gpu_demand(),
            Weighting::Count => n,
            Weighting::DemandPower(percent) => {
                n * shape.gpu_demand().powf(f64::from(percent.min(100)) / 100.0)
            }
        }
    }
}

/// When a [`WorkloadProfile`] derives its typical workload again from its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileRefresh {
    /// After every observation: the typical workload always matches the counts.
    EveryObservation,
    /// When the observations since the last refresh reach 1/`n` of those counted at it (after
    /// every observation while fewer than `n` were counted; `n` is at least 1). The counts the
    /// typical workload was derived from then differ from the current ones by less than 1/(`n` + 1)
    /// in total variation, and over `N`
    /// observations it changes about `n` · ln `N` times instead of `N`: what lets a node's
    /// fragmentation score be remembered across decisions ([`WorkloadProfile::typical_id`]).
    Drift(u32),
}

/// sliceguard's rule: [`ProfileRefresh::Drift`] by 1/32, so the typical workload is derived from
/// counts within 3 % (total variation) of the current ones, and a node's verdict stays valid across
/// the decisions in between ([`crate::score_memo`]).
pub const DEFAULT_PROFILE_REFRESH: ProfileRefresh = ProfileRefresh::Drift(32);

impl Default for ProfileRefresh {
    fn default() -> Self {
        DEFAULT_PROFILE_REFRESH
    }
}

/// Source of [`WorkloadProfile::typical_id`]: unique in the process, never 0.
static NEXT_TYPICAL_ID: AtomicU64 = AtomicU64::new(1);

/// The typical workload learned from the GPU pods the scheduler has seen, or configured.
#[derive(Debug, Clone)]
pub struct WorkloadProfile {
    counts: HashMap<TaskShape, u64>,
    observed: u64,
    coverage: f64,
    weighting: Weighting,
    typical: TypicalWorkload,
    refresh: ProfileRefresh,
    /// `observed` when `typical` was last derived.
    refreshed_at: u64,
    /// Identifies `typical` (see [`WorkloadProfile::typical_id`]).
    typical_id: u64,
}

impl Default for WorkloadProfile {
    fn default() -> Self {
        WorkloadProfile::with_coverage(DEFAULT_COVERAGE)
    }
}

impl WorkloadProfile {
    /// An empty profile whose typical shapes cover `coverage` (clamped to (0, 1]) of observations.
    pub fn with_coverage(coverage: f64) -> Self {
        let coverage = if coverage.is_finite() {
            coverage.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            DEFAULT_COVERAGE
        };
        WorkloadProfile {
            counts: HashMap::new(),
            observed: 0,
            coverage,
            weighting: Weighting::default(),
            typical: TypicalWorkload::default(),
            refresh: ProfileRefresh::default(),
            refreshed_at: 0,
            typical_id: NEXT_TYPICAL_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The same profile, deriving its typical workload when `rule` says (refreshed now).
    pub fn refreshing(mut self, rule: ProfileRefresh) -> Self {
        self.refresh = rule;
        self.refresh();
        self
    }

    /// The same profile with shapes weighted by `weighting`.
    pub fn weighted(mut self, weighting: Weighting) -> Self {
        self.weighting = weighting;
        self.refresh();
        self
    }

    /// A profile from counts (configured, e.g. from last week's workload); `observe` adds to it.
    pub fn configured(counts: impl IntoIterator<Item = (TaskShape, u64)>) -> Self {
        let mut profile = WorkloadProfile::default();
        for (shape, n) in counts {
            if shape.nums > 0 && n > 0 {
                *profile.counts.entry(shape).or_default() += n;
                profile.observed += n;
            }
        }
        profile.refresh();
        profile
    }

    /// Learns from a pod the scheduler is asked to place (one observation per GPU container);
    /// `cpu_milli` is the pod's CPU request.
    pub fn observe(&mut self, request: &PodRequest, prefs: &PodPreferences, cpu_milli: u64) {
        let before = self.observed;
        for shape in pod_shapes(request, prefs, cpu_milli) {
            *self.counts.entry(shape).or_default() += 1;
            self.observed += 1;
        }
        if self.counts.len() > MAX_SHAPES {
            self.drop_rarest();
            self.refresh();
        } else if self.observed != before && self.refresh_due() {
            self.refresh();
        }
    }

    /// True when the rule asks for a new typical workload after the counts changed.
    fn refresh_due(&self) -> bool {
        match self.refresh {
            ProfileRefresh::EveryObservation => true,
            ProfileRefresh::Drift(n) => {
                let since = self.observed.saturating_sub(self.refreshed_at);
                since.saturating_mul(u64::from(n.max(1))) >= self.refreshed_at
            }
        }
    }

    /// Drops the least frequent shapes (ties: the largest shapes first) until three quarters of
    /// [`MAX_SHAPES`] remain; their observations no longer count.
    fn drop_rarest(&mut self) {
        let mut ranked: Vec<(TaskShape, u64)> = self.counts.drain().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (_, n) in ranked.drain(MAX_SHAPES * 3 / 4..) {
            self.observed -= n;
        }
        self.counts = ranked.into_iter().collect();
    }

    /// Distinct shapes counted.
    pub fn distinct_shapes(&self) -> usize {
        self.counts.len()
    }

    /// Containers observed.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// The current typical workload.
    pub fn typical(&self) -> &TypicalWorkload {
        &self.typical
    }

    /// Identifies the current typical workload: a new value, unique in the process and never 0,
    /// each time it is derived; clones share it, as they share the workload. A node score computed
    /// under one id holds for as long as the id and the node stay the same.
    pub fn typical_id(&self) -> u64 {
        self.typical_id
    }

    /// When the typical workload is derived again.
    pub fn refresh_rule(&self) -> ProfileRefresh {
        self.refresh
    }

    /// Derives the typical workload from the current counts now, whatever the rule, if they
    /// changed since it was last derived (after a re-list, so that the workload a restarted
    /// scheduler scores with depends only on the pods it listed, not on their order).
    pub fn derive_now(&mut self) {
        if self.observed != self.refreshed_at {
            self.refresh();
        }
    }

    /// Recomputes the typical shapes: most frequent first (ties by shape, for determinism), until
    /// they cover `coverage` of the observations.
    fn refresh(&mut self) {
        let mut ranked: Vec<(&TaskShape, u64)> = self.counts.iter().map(|(s, n)| (s, *n)).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let needed = self.coverage * self.observed as f64;
        let mut covered = 0u64;
        let mut chosen = Vec::new();
        for (shape, n) in ranked {
            if covered as f64 >= needed && !chosen.is_empty() {
                break;
            }
            covered += n;
            chosen.push((shape.clone(), self.weighting.weight(shape, n)));
        }
        self.typical = TypicalWorkload::from_weights(chosen);
        self.refreshed_at = self.observed;
        self.typical_id = NEXT_TYPICAL_ID.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fragmentation::tests::shape;
    use crate::policy::PolicyDefaults;
    use crate::request::{ContainerSlot, PERCENTAGE_UNSET};
    use std::collections::BTreeMap;

    fn prefs() -> PodPreferences {
        PodPreferences::from_annotations(&BTreeMap::new(), &PolicyDefaults::default()).unwrap()
    }

    fn one_container(percent: u32) -> PodRequest {
        PodRequest {
            containers: vec![ContainerSlot {
                name: "c".into(),
                init: false,
                request: Some(ContainerRequest {
                    nums: 1,
                    memreq: 0,
                    mem_percentage: percent,
                    coresreq: percent,
                }),
            }],
        }
    }

    #[test]
    fn profile_learns_the_frequent_shapes() {
        let p = prefs();
        let mut profile = WorkloadProfile::with_coverage(0.9);
        for _ in 0..6 {
            profile.observe(&one_container(50), &p, 4000);
        }
        for _ in 0..3 {
            profile.observe(&one_container(100), &p, 8000);
        }
        profile.observe(&one_container(10), &p, 1000);
        profile.observe(&PodRequest::default(), &p, 1000);
        assert_eq!(profile.observed(), 10);
        // 6 + 3 = 90 % coverage: the rare 10 % shape is left out and the rest renormalised.
        let typical = profile.typical().shapes();
        assert_eq!(typical.len(), 2);
        assert_eq!((typical[0].0.cores, typical[1].0.cores), (50, 100));
        assert_eq!(
            (typical[0].0.cpu_milli, typical[1].0.cpu_milli),
            (4000, 8000)
        );
        // Weighted by frequency × √(GPU demand), the default: 6 · √0.5 against 3 · √1.
        let half = 6.0 * 0.5f64.sqrt();
        assert!((typical[0].1 - half / (half + 3.0)).abs() < 1e-12);
        assert!((typical[1].1 - 3.0 / (half + 3.0)).abs() < 1e-12);

        let fallback = TypicalWorkload::resolve(None, &one_container(30), &p, 0);
        assert_eq!(fallback.shapes().len(), 1);
        assert_eq!(fallback.shapes()[0].0.cores, 30);
        let learned = TypicalWorkload::resolve(Some(&profile), &one_container(30), &p, 0);
        assert_eq!(learned.shapes().len(), 2);
        let empty = WorkloadProfile::default();
        assert_eq!(
            TypicalWorkload::resolve(Some(&empty), &one_container(30), &p, 0)
                .shapes()
                .len(),
            1
        );

        let configured =
            WorkloadProfile::configured([(shape(1, 100), 3), (shape(1, 20), 1), (shape(0, 0), 5)]);
        assert_eq!(configured.observed(), 4);
        assert_eq!(configured.typical().shapes().len(), 2);
        let unset = TaskShape {
            mem_percentage: PERCENTAGE_UNSET,
            memreq: 3000,
            ..shape(1, 0)
        };
        assert_eq!(GpuKind::of(&unset).request().memory_on(10000), 3000);
        // Shapes that differ only in CPU share one GPU kind.
        let mut more_cpu = shape(1, 20);
        more_cpu.cpu_milli = 8000;
        let w = TypicalWorkload::from_weights([
            (shape(1, 20), 1.0),
            (more_cpu, 1.0),
            (shape(1, 50), 1.0),
        ]);
        assert_eq!(
            (w.kinds.len(), w.kind_of.as_slice()),
            (2, [0, 0, 1].as_slice())
        );
    }

    /// A pod's CPU is split evenly between its GPU containers; containers without a GPU get none.
    #[test]
    fn a_pods_cpu_is_split_between_its_gpu_containers() {
        let mut pod = one_container(50);
        let gpu_container = pod.containers[0].clone();
        pod.containers.push(ContainerSlot {
            name: "sidecar".into(),
            init: false,
            request: None,
        });
        pod.containers.push(ContainerSlot {
            name: "second".into(),
            ..gpu_container
        });
        let shapes: Vec<TaskShape> = pod_shapes(&pod, &prefs(), 4000).collect();
        assert_eq!(shapes.len(), 2);
        assert!(shapes.iter().all(|s| s.cpu_milli == 2000), "{shapes:?}");
        let alone: Vec<TaskShape> = pod_shapes(&one_container(50), &prefs(), 4000).collect();
        assert_eq!(alone[0].cpu_milli, 4000);
    }

    /// Only shapes with GPUs and a positive, finite weight count; the rest are dropped.
    #[test]
    fn from_weights_keeps_gpu_shapes_with_positive_finite_weights() {
        let typical = TypicalWorkload::from_weights([
            (shape(1, 50), 3.0),
            (shape(0, 50), 1.0),
            (shape(1, 100), f64::INFINITY),
            (shape(1, 30), -1.0),
            (shape(1, 20), f64::NAN),
            (shape(2, 100), 0.0),
            (shape(1, 10), 1.0),
        ]);
        let kept: Vec<(u32, f64)> = typical
            .shapes()
            .iter()
            .map(|(s, w)| (s.cores, *w))
            .collect();
        assert_eq!(kept, [(50, 0.75), (10, 0.25)]);
    }

    /// Re-weighting keeps what was learned and changes only the weights: by count as FGD does, or
    /// by count times the GPUs a shape takes.
    #[test]
    fn weighting_keeps_the_counts_and_changes_the_weights() {
        let profile = WorkloadProfile::configured([(shape(1, 50), 3), (shape(2, 100), 1)]);
        let weights = |p: &WorkloadProfile| -> Vec<(u32, f64)> {
            let mut w: Vec<(u32, f64)> = p
                .typical()
                .shapes()
                .iter()
                .map(|(s, w)| (s.nums, *w))
                .collect();
            w.sort_by_key(|a| a.0);
            w
        };
        let by_count = profile.clone().weighted(Weighting::Count);
        assert_eq!(by_count.observed(), 4);
        assert_eq!(weights(&by_count), [(1, 0.75), (2, 0.25)]);
        let by_demand = profile.clone().weighted(Weighting::Demand);
        assert_eq!(by_demand.observed(), 4);
        let demand = weights(&by_demand);
        assert!((demand[0].1 - 1.5 / 3.5).abs() < 1e-12, "{demand:?}");
        assert!((demand[1].1 - 2.0 / 3.5).abs() < 1e-12, "{demand:?}");
        // Between the two: 3 × 0.5^0.5 = 3/√2 against 1 × 2^0.5 = 2/√2, i.e. 0.6 and 0.4.
        let halfway = weights(&profile.clone().weighted(Weighting::DemandPower(50)));
        assert!((halfway[0].1 - 0.6).abs() < 1e-12, "{halfway:?}");
        assert!((halfway[1].1 - 0.4).abs() < 1e-12, "{halfway:?}");
        // The ends of the power are the other two weightings; beyond 100 % it stays at demand.
        for (power, same) in [(0, &by_count), (100, &by_demand), (250, &by_demand)] {
            let powered = weights(&profile.clone().weighted(Weighting::DemandPower(power)));
            assert_eq!(powered, weights(same), "power {power}");
        }
    }

    /// A profile never counts more than `MAX_SHAPES` distinct shapes: the rarest are dropped, with
    /// their observations, and the frequent ones stay.
    #[test]
    fn the_profile_stays_bounded_and_keeps_the_frequent_shapes() {
        let p = prefs();
        let mut profile = WorkloadProfile::default();
        for _ in 0..5 {
            profile.observe(&one_container(50), &p, 0);
        }
        let mut odd = one_container(1);
        for mib in 1..=MAX_SHAPES as u32 {
            let Some(request) = odd.containers[0].request.as_mut() else {
                unreachable!()
            };
            request.mem_percentage = PERCENTAGE_UNSET;
            request.memreq = mib;
            profile.observe(&odd, &p, 0);
        }
        assert_eq!(profile.distinct_shapes(), MAX_SHAPES * 3 / 4);
        assert_eq!(profile.observed(), (MAX_SHAPES * 3 / 4 - 1 + 5) as u64);
        assert_eq!(
            profile.typical().shapes()[0].0.cores,
            50,
            "the frequent shape stays"
        );
    }

    /// Under `Drift(n)` the typical workload is derived again once the observations since the last
    /// derivation reach 1/n of those counted then (every time while fewer than n), with a new id;
    /// `derive_now` catches up, and the workload it gives depends on the counts, not their order.
    #[test]
    fn drift_derives_the_typical_workload_again_on_drift_only() {
        let p = prefs();
        let mut profile = WorkloadProfile::default().refreshing(ProfileRefresh::Drift(4));
        let mut ids = Vec::new();
        for _ in 0..4 {
            profile.observe(&one_container(50), &p, 0);
            ids.push(profile.typical_id());
        }
        ids.dedup();
        assert_eq!(ids.len(), 4, "below 4 observations every one derives it");
        // Derived at 4: the next derivation is due at 5 (1 ≥ 4/4).
        let at_four = profile.typical_id();
        profile.observe(&one_container(100), &p, 0);
        assert_ne!(profile.typical_id(), at_four);
        assert_eq!(profile.typical().shapes().len(), 2);
        // Derived at 5: due again once 2 more are counted (2 · 4 ≥ 5).
        let at_five = profile.typical_id();
        profile.observe(&one_container(30), &p, 0);
        assert_eq!(profile.typical_id(), at_five, "1 · 4 < 5: not yet");
        assert_eq!(
            profile.typical().shapes().len(),
            2,
            "the 30 % shape is not in yet"
        );
        profile.observe(&one_container(30), &p, 0);
        assert_ne!(profile.typical_id(), at_five);
        assert_eq!(profile.typical().shapes().len(), 3);
        // Counted but not derived: derive_now catches up, and does nothing when nothing changed.
        let at_seven = profile.typical_id();
        profile.observe(&one_container(10), &p, 0);
        assert_eq!(profile.typical_id(), at_seven);
        profile.derive_now();
        let caught_up = profile.typical_id();
        assert_ne!(caught_up, at_seven);
        assert_eq!(profile.typical().shapes().len(), 4);
        profile.derive_now();
        assert_eq!(profile.typical_id(), caught_up);

        // The same pods in another order: after derive_now, the same typical workload.
        let mut reversed = WorkloadProfile::default().refreshing(ProfileRefresh::Drift(4));
        for percent in [10, 30, 30, 100, 50, 50, 50, 50] {
            reversed.observe(&one_container(percent), &p, 0);
        }
        reversed.derive_now();
        assert_eq!(reversed.typical(), profile.typical());
        assert_eq!(ProfileRefresh::default(), DEFAULT_PROFILE_REFRESH);
        assert_eq!(
            WorkloadProfile::default().refresh_rule(),
            DEFAULT_PROFILE_REFRESH
        );
    }

    /// `EveryObservation` derives the typical workload after every observation; ids are unique
    /// across profiles.
    #[test]
    fn every_observation_derives_it_each_time() {
        let p = prefs();
        let mut profile = WorkloadProfile::default().refreshing(ProfileRefresh::EveryObservation);
        let other = WorkloadProfile::default();
        let mut ids = vec![other.typical_id()];
        for _ in 0..40 {
            profile.observe(&one_container(50), &p, 0);
            ids.push(profile.typical_id());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 41);
        assert!(!ids.contains(&0), "0 stands for a pod's own containers");
    }

    /// Every observation that adds a GPU container refreshes the typical workload at once (the
    /// default rule does so while fewer than 32 were counted).
    #[test]
    fn an_observation_refreshes_the_typical_workload() {
        let mut profile = WorkloadProfile::default();
        assert!(profile.typical().shapes().is_empty());
        profile.observe(&one_container(50), &prefs(), 1000);
        assert_eq!(profile.typical().shapes().len(), 1);
        profile.observe(&one_container(100), &prefs(), 1000);
        assert_eq!(profile.typical().shapes().len(), 2);
    }
}
