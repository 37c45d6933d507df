//! A GPU pod as plain data: init and regular containers, each with `nvidia.com/gpu`, `gpumem`,
//! `gpumem-percentage` and `gpucores` in limits, requests or both, plus the pod annotations that
//! steer placement (policies, type/UUID selectors, numa-bind, vgpu-mode, scoring weights).
//!
//! [`PodPlan::to_pod`] writes the Kubernetes object the scheduler reads. [`PodPlan::requests`] reads
//! the plan back with this crate's own reading of spec §2 (limits before requests, 101 = percentage
//! unset, no memory means the whole card, per-GPU amounts): the oracle uses it, never the
//! scheduler's `request` module.

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sliceguard_core::annotations::{
    RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM, RESOURCE_GPUMEM_PERCENTAGE,
};
use std::collections::BTreeMap;
use std::fmt;

/// A resource as written in a container: in limits, in requests, or both (limits win).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ResourceValue {
    /// The value in `resources.limits`.
    pub limit: Option<u32>,
    /// The value in `resources.requests`.
    pub request: Option<u32>,
}

impl ResourceValue {
    /// Only in limits.
    pub fn limit(value: u32) -> Self {
        ResourceValue {
            limit: Some(value),
            request: None,
        }
    }

    /// The value the scheduler reads: limits, else requests.
    pub fn effective(&self) -> Option<u32> {
        self.limit.or(self.request)
    }
}

impl fmt::Debug for ResourceValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.limit, self.request) {
            (Some(l), None) => write!(f, "{l}"),
            (None, Some(r)) => write!(f, "req:{r}"),
            (Some(l), Some(r)) => write!(f, "{l}(req:{r})"),
            (None, None) => write!(f, "-"),
        }
    }
}

/// One container's GPU resources.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ContainerPlan {
    /// `nvidia.com/gpu`.
    pub gpu: ResourceValue,
    /// `nvidia.com/gpumem` (MiB per GPU).
    pub mem: ResourceValue,
    /// `nvidia.com/gpumem-percentage`.
    pub pct: ResourceValue,
    /// `nvidia.com/gpucores`.
    pub cores: ResourceValue,
}

impl fmt::Debug for ContainerPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (name, v) in [
            ("gpu", self.gpu),
            ("mem", self.mem),
            ("pct", self.pct),
            ("cores", self.cores),
        ] {
            if v != ResourceValue::default() {
                parts.push(format!("{name}={v:?}"));
            }
        }
        if parts.is_empty() {
            write!(f, "[no gpu]")
        } else {
            write!(f, "[{}]", parts.join(" "))
        }
    }
}

/// HAMi's percentage sentinel: no percentage given.
pub const PERCENT_UNSET: u32 = 101;

/// What one container asks of each of its GPUs, as this crate reads spec §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GpuRequest {
    /// GPUs.
    pub nums: u32,
    /// MiB per GPU; 0 when a percentage applies.
    pub mem_mib: u32,
    /// Percent of each GPU's memory, or [`PERCENT_UNSET`].
    pub mem_percent: u32,
    /// Cores per GPU as written (the fit clamps at 100).
    pub cores: u32,
}

impl GpuRequest {
    /// MiB this request takes on a device of `devmem` MiB: explicit MiB, else the percentage,
    /// truncating.
    pub fn mib_on(&self, devmem: u32) -> u64 {
        if self.mem_mib > 0 {
            u64::from(self.mem_mib)
        } else if self.mem_percent == PERCENT_UNSET {
            0
        } else {
            u64::from(devmem) * u64::from(self.mem_percent) / 100
        }
    }

    /// Cores as recorded and checked: at most 100.
    pub fn cores_capped(&self) -> u32 {
        self.cores.min(100)
    }
}

impl ContainerPlan {
    /// A container asking for `gpus` GPUs of `mem` MiB and `cores` cores, all in limits.
    pub fn fraction(gpus: u32, mem: u32, cores: u32) -> Self {
        ContainerPlan {
            gpu: ResourceValue::limit(gpus),
            mem: ResourceValue::limit(mem),
            pct: ResourceValue::default(),
            cores: ResourceValue::limit(cores),
        }
    }

    /// This crate's reading of spec §2 (default memory 0, default cores 0).
    pub fn request(&self) -> Option<GpuRequest> {
        let nums = self.gpu.effective().unwrap_or(0);
        if nums == 0 {
            return None;
        }
        let mem_mib = self.mem.effective().unwrap_or(0);
        let mut mem_percent = match self.pct.effective() {
            None | Some(0) => PERCENT_UNSET,
            Some(p) if p > 100 => 100,
            Some(p) => p,
        };
        if mem_percent == PERCENT_UNSET && mem_mib == 0 {
            mem_percent = 100;
        }
        Some(GpuRequest {
            nums,
            mem_mib,
            mem_percent,
            cores: self.cores.effective().unwrap_or(0),
        })
    }

    fn container(&self, name: String) -> Container {
        let mut limits = BTreeMap::new();
        let mut requests = BTreeMap::new();
        for (resource, value) in [
            (RESOURCE_GPU, self.gpu),
            (RESOURCE_GPUMEM, self.mem),
            (RESOURCE_GPUMEM_PERCENTAGE, self.pct),
            (RESOURCE_GPUCORES, self.cores),
        ] {
            if let Some(l) = value.limit {
                limits.insert(resource.to_string(), Quantity(l.to_string()));
            }
            if let Some(r) = value.request {
                requests.insert(resource.to_string(), Quantity(r.to_string()));
            }
        }
        Container {
            name,
            image: Some("registry.k8s.io/pause:3.9".into()),
            resources: (!limits.is_empty() || !requests.is_empty()).then(|| ResourceRequirements {
                limits: (!limits.is_empty()).then_some(limits),
                requests: (!requests.is_empty()).then_some(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// A pod: init containers, regular containers, annotations.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PodPlan {
    /// Init containers, in order.
    pub init: Vec<ContainerPlan>,
    /// Regular containers, in order.
    pub app: Vec<ContainerPlan>,
    /// Pod annotations (policies and selectors).
    pub annotations: BTreeMap<String, String>,
}

impl fmt::Debug for PodPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.init.is_empty() {
            write!(f, "init{:?} ", self.init)?;
        }
        write!(f, "app{:?}", self.app)?;
        if !self.annotations.is_empty() {
            write!(f, " {:?}", self.annotations)?;
        }
        Ok(())
    }
}

impl PodPlan {
    /// The Kubernetes pod `default/<name>` (containers `init-<i>` and `c-<i>`).
    pub fn to_pod(&self, name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some("default".into()),
                annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: (!self.init.is_empty()).then(|| {
                    self.init
                        .iter()
                        .enumerate()
                        .map(|(i, c)| c.container(format!("init-{i}")))
                        .collect()
                }),
                containers: self
                    .app
                    .iter()
                    .enumerate()
                    .map(|(i, c)| c.container(format!("c-{i}")))
                    .collect(),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Every container's request, init containers first (the annotation's index space).
    pub fn requests(&self) -> Vec<Option<GpuRequest>> {
        self.init
            .iter()
            .chain(self.app.iter())
            .map(ContainerPlan::request)
            .collect()
    }

    /// True when some container asks for a GPU.
    pub fn has_gpu_request(&self) -> bool {
        self.requests().iter().any(Option::is_some)
    }

    /// Number of regular containers that ask for a GPU: where the greedy fit can differ from the
    /// oracle (see the crate README).
    pub fn gpu_app_containers(&self) -> usize {
        self.app.iter().filter(|c| c.request().is_some()).count()
    }
}

/// Vocabularies the pod annotation generator draws from, chosen against [`crate::fleet`]'s names.
pub mod vocabulary {
    /// `hami.io/node-scheduler-policy` values (anything but `spread` is binpack).
    pub const NODE_POLICIES: [&str; 3] = ["binpack", "spread", "weird-policy"];
    /// `hami.io/gpu-scheduler-policy` values; `spread-mutex` has no `mutex` token (HAMi compares
    /// whole comma-separated tokens), so it orders as spread and refuses nothing.
    pub const GPU_POLICIES: [&str; 7] = [
        "binpack",
        "spread",
        "mutex",
        "binpack,mutex",
        "topology-aware",
        "spread,numa",
        "spread-mutex",
    ];
    /// `nvidia.com/use-gputype` values; `none-such` excludes every device.
    pub const USE_TYPES: [&str; 7] = [
        "a100",
        "H100",
        "t4",
        "nvidia",
        "A30,l40s",
        " a100 , ,h100",
        "none-such",
    ];
    /// `nvidia.com/nouse-gputype` values; `nvidia` excludes every candidate.
    pub const NOUSE_TYPES: [&str; 4] = ["t4", "a100", "nvidia", "h100,L40S"];
    /// `nvidia.com/use-gpuuuid` values; `GPU-nowhere` excludes every device, blanks constrain nothing.
    pub const USE_UUIDS: [&str; 6] = [
        "GPU-n0-0",
        "GPU-n0-1,GPU-n1-0",
        " GPU-n1-1 ",
        "GPU-n2-3,GPU-n0-7",
        "GPU-nowhere",
        "  ",
    ];
    /// `nvidia.com/nouse-gpuuuid` values.
    pub const NOUSE_UUIDS: [&str; 3] = ["GPU-n0-0", "GPU-n0-0,GPU-n0-1,GPU-n1-0", "GPU-n3-2"];
    /// `nvidia.com/numa-bind` values; `yes` is not a Go boolean, so the pod is invalid.
    pub const NUMA_BIND: [&str; 7] = ["true", "false", "1", "0", "TRUE", "t", "yes"];
    /// `nvidia.com/vgpu-mode` values (substring test against the device mode).
    pub const VGPU_MODES: [&str; 5] = ["hami-core", "mps", "mig", "hami-core,mps", "hami"];
    /// `hami.io/device-scoring-weights` values; the last lacks a key, so the pod is invalid.
    pub const WEIGHTS: [&str; 4] = [
        "slot=1,core=1,memory=1",
        "slot=0,core=5,memory=1",
        "slot=3,core=0,memory=0",
        "slot=1,core=2",
    ];
}

/// Proptest strategies for pods.
#[cfg(feature = "strategies")]
pub mod strategies {
    use super::vocabulary::*;
    use super::*;
    use proptest::prelude::*;
    use sliceguard_core::annotations::{
        DEVICE_SCORING_WEIGHTS, GPU_SCHEDULER_POLICY, NODE_SCHEDULER_POLICY, NOUSE_GPUTYPE,
        NOUSE_GPUUUID, NUMA_BIND as NUMA_BIND_KEY, USE_GPUTYPE, USE_GPUUUID, VGPU_MODE,
    };

    /// A value placed in limits (mostly), requests, or both with different numbers.
    fn placed(value: impl Strategy<Value = u32> + Clone) -> impl Strategy<Value = ResourceValue> {
        prop_oneof![
            8 => value.clone().prop_map(|v| ResourceValue { limit: Some(v), request: None }),
            2 => value.clone().prop_map(|v| ResourceValue { limit: None, request: Some(v) }),
            1 => (value.clone(), value).prop_map(|(l, r)| ResourceValue { limit: Some(l), request: Some(r) }),
        ]
    }

    fn optional(
        weight_present: f64,
        value: impl Strategy<Value = u32> + Clone,
    ) -> impl Strategy<Value = ResourceValue> {
        proptest::option::weighted(weight_present, placed(value))
            .prop_map(Option::unwrap_or_default)
    }

    /// GPU counts: mostly 1 or 2, sometimes more than a node has.
    pub fn gpu_count() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![10 => Just(1u32), 4 => Just(2u32), 1 => Just(3u32), 1 => 4u32..=9]
    }

    /// MiB per GPU: common sizes around the fleet's devices, and anything up to 120000.
    pub fn memory_mib() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![
            6 => prop::sample::select(vec![1u32, 100, 512, 1000, 2000, 3000, 4096, 6000, 8000, 10000, 15360, 16000, 20000, 40000, 81920, 90000]),
            2 => 1u32..=120_000,
        ]
    }

    /// Memory percentages, including 0 (unset) and 150 (clamped to 100).
    pub fn memory_percent() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![
            1 => Just(0u32),
            4 => prop::sample::select(vec![1u32, 10, 25, 33, 50, 75, 100]),
            1 => Just(150u32),
        ]
    }

    /// Cores, including 0, exactly 100 (exclusive) and above 100 (clamped).
    pub fn cores() -> impl Strategy<Value = u32> + Clone {
        prop_oneof![
            2 => Just(0u32),
            5 => prop::sample::select(vec![1u32, 5, 10, 20, 25, 30, 50, 60, 75, 99]),
            2 => Just(100u32),
            1 => prop::sample::select(vec![101u32, 150, 200]),
        ]
    }

    /// A container; `gpu_weight` is the probability it asks for GPUs.
    pub fn container(gpu_weight: f64) -> impl Strategy<Value = ContainerPlan> {
        (
            optional(gpu_weight, gpu_count()),
            optional(0.65, memory_mib()),
            optional(0.2, memory_percent()),
            optional(0.7, cores()),
        )
            .prop_map(|(gpu, mem, pct, cores)| ContainerPlan {
                gpu,
                mem,
                pct,
                cores,
            })
    }

    fn annotation(
        key: &'static str,
        weight: f64,
        values: &'static [&'static str],
    ) -> impl Strategy<Value = Option<(String, String)>> {
        proptest::option::weighted(
            weight,
            prop::sample::select(values).prop_map(move |v| (key.to_string(), v.to_string())),
        )
    }

    /// Pod annotations: each one present with its own probability.
    pub fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
        (
            annotation(NODE_SCHEDULER_POLICY, 0.3, &NODE_POLICIES),
            annotation(GPU_SCHEDULER_POLICY, 0.5, &GPU_POLICIES),
            annotation(USE_GPUTYPE, 0.12, &USE_TYPES),
            annotation(NOUSE_GPUTYPE, 0.08, &NOUSE_TYPES),
            annotation(USE_GPUUUID, 0.08, &USE_UUIDS),
            annotation(NOUSE_GPUUUID, 0.08, &NOUSE_UUIDS),
            annotation(NUMA_BIND_KEY, 0.15, &NUMA_BIND),
            annotation(VGPU_MODE, 0.06, &VGPU_MODES),
            annotation(DEVICE_SCORING_WEIGHTS, 0.08, &WEIGHTS),
        )
            .prop_map(|(a, b, c, d, e, f, g, h, i)| {
                [a, b, c, d, e, f, g, h, i].into_iter().flatten().collect()
            })
    }

    /// A pod: 0..=2 init containers, 1..=3 regular containers, annotations. Some pods get an
    /// init container asking for more memory than any of their regular containers (HAMi collapses
    /// init usage into the peak, so the init container decides what the pod holds at first), and
    /// some a GPU-less regular container between two GPU ones (the annotation keeps its empty
    /// slot).
    pub fn pod() -> impl Strategy<Value = PodPlan> {
        let init_count = prop_oneof![6 => Just(0usize), 3 => Just(1usize), 1 => Just(2usize)];
        let app_count = prop_oneof![6 => Just(1usize), 3 => Just(2usize), 2 => Just(3usize)];
        let shape = prop_oneof![8 => Just(Shape::AsDrawn), 1 => Just(Shape::LargeInit), 1 => Just(Shape::GapBetween)];
        (init_count, app_count, shape)
            .prop_flat_map(|(i, a, shape)| {
                (
                    prop::collection::vec(container(0.55), i),
                    prop::collection::vec(container(0.85), a),
                    annotations(),
                    Just(shape),
                )
            })
            .prop_map(|(mut init, mut app, annotations, shape)| {
                match shape {
                    Shape::AsDrawn => {}
                    Shape::LargeInit => {
                        let largest = app
                            .iter()
                            .filter_map(ContainerPlan::request)
                            .map(|r| r.mib_on(LARGE_INIT_SCALE))
                            .max()
                            .unwrap_or(0);
                        let mem = (largest.max(500) * 2).min(120_000) as u32;
                        init.insert(0, ContainerPlan::fraction(1, mem, 20));
                    }
                    Shape::GapBetween => {
                        let gpu = |c: &ContainerPlan| c.request().is_some();
                        let first = app.iter().find(|c| gpu(c)).cloned();
                        if let Some(first) = first {
                            app = vec![first.clone(), ContainerPlan::default(), first];
                        }
                    }
                }
                PodPlan {
                    init,
                    app,
                    annotations,
                }
            })
    }

    /// The device memory a large init container is sized against when regular containers ask for
    /// a percentage (24 GiB, a common card).
    pub const LARGE_INIT_SCALE: u32 = 24_576;

    #[derive(Debug, Clone, Copy)]
    enum Shape {
        AsDrawn,
        LargeInit,
        GapBetween,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sliceguard_core::request::{RequestDefaults, pod_request};

    #[test]
    fn own_reading_of_spec_section_2() {
        let whole = ContainerPlan {
            gpu: ResourceValue::limit(2),
            ..Default::default()
        };
        let r = whole.request().unwrap();
        assert_eq!((r.nums, r.mem_mib, r.mem_percent, r.cores), (2, 0, 100, 0));
        assert_eq!(r.mib_on(81920), 81920);

        let pct = ContainerPlan {
            gpu: ResourceValue::limit(1),
            pct: ResourceValue {
                limit: None,
                request: Some(150),
            },
            ..Default::default()
        };
        assert_eq!(pct.request().unwrap().mem_percent, 100);
        let zero_pct = ContainerPlan {
            gpu: ResourceValue::limit(1),
            pct: ResourceValue::limit(0),
            ..Default::default()
        };
        assert_eq!(zero_pct.request().unwrap().mem_percent, 100);
        let both = ContainerPlan {
            gpu: ResourceValue::limit(1),
            mem: ResourceValue::limit(1000),
            pct: ResourceValue::limit(50),
            ..Default::default()
        };
        assert_eq!(both.request().unwrap().mib_on(8000), 1000);
        let limits_win = ContainerPlan {
            gpu: ResourceValue {
                limit: Some(1),
                request: Some(3),
            },
            ..Default::default()
        };
        assert_eq!(limits_win.request().unwrap().nums, 1);
        let no_gpu = ContainerPlan {
            mem: ResourceValue::limit(100),
            ..Default::default()
        };
        assert_eq!(no_gpu.request(), None);
    }

    #[test]
    fn the_pod_object_carries_what_the_plan_says() {
        let plan = PodPlan {
            init: vec![ContainerPlan::fraction(1, 5000, 20)],
            app: vec![
                ContainerPlan::default(),
                ContainerPlan {
                    gpu: ResourceValue {
                        limit: None,
                        request: Some(2),
                    },
                    cores: ResourceValue {
                        limit: Some(30),
                        request: Some(60),
                    },
                    ..Default::default()
                },
            ],
            annotations: BTreeMap::new(),
        };
        let pod = plan.to_pod("p");
        let read = pod_request(&pod, RequestDefaults::default()).unwrap();
        let theirs: Vec<_> = read
            .containers
            .iter()
            .map(|c| c.request.map(|r| (r.nums, r.coresreq)))
            .collect();
        let ours: Vec<_> = plan
            .requests()
            .iter()
            .map(|r| r.map(|r| (r.nums, r.cores)))
            .collect();
        assert_eq!(theirs, ours);
        assert_eq!(ours, [Some((1, 20)), None, Some((2, 30))]);
        assert_eq!(plan.gpu_app_containers(), 1);
    }
}
