//! A pod's GPU requests, read from its spec with HAMi's `GenerateResourceRequests` semantics (spec §2).
//!
//! Per container, init containers first:
//! - `nums` is `nvidia.com/gpu` from limits, else requests; 0 means the container has no GPU request;
//! - `memreq` is `nvidia.com/gpumem` (MiB, per GPU), limits before requests;
//! - `mem_percentage` is `nvidia.com/gpumem-percentage` with HAMi's sentinel [`PERCENTAGE_UNSET`] (101):
//!   values above 100 clamp to 100, values ≤ 0 mean unset;
//! - neither memory nor percentage given means the **whole card** (percentage 100), unless a default
//!   memory is configured;
//! - `coresreq` is `nvidia.com/gpucores` (percent, per GPU), else the configured default (0).
//!
//! Deliberate difference: HAMi silently treats a container whose `gpumem` is not a whole `int32`
//! (`16Gi`, `-1`, `0.5`) as having *no GPU request at all*, so such a pod is placed without any
//! accounting. sliceguard returns a [`RequestError`] naming the container, the resource and the value;
//! the webhook denies the pod and the filter rejects it.

use crate::annotations::{
    RESOURCE_GPU, RESOURCE_GPUCORES, RESOURCE_GPUMEM, RESOURCE_GPUMEM_PERCENTAGE,
};
use crate::quantity::{QuantityError, parse_integer};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::Serialize;
use std::collections::BTreeMap;

/// `mem_percentage` value meaning "no percentage given".
pub const PERCENTAGE_UNSET: u32 = 101;

/// What one container asks of each of its GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ContainerRequest {
    /// Number of GPUs.
    pub nums: u32,
    /// MiB per GPU (0 when a percentage applies).
    pub memreq: u32,
    /// Percent of each GPU's memory, or [`PERCENTAGE_UNSET`].
    pub mem_percentage: u32,
    /// Cores (percent) per GPU; may exceed 100, which the fit clamps.
    pub coresreq: u32,
}

impl ContainerRequest {
    /// The MiB this request reserves on a device with `total` MiB (HAMi's per-device conversion:
    /// explicit memory wins, otherwise `total * pct / 100`, truncating).
    pub fn memory_on(&self, total: u32) -> u64 {
        if self.memreq > 0 {
            u64::from(self.memreq)
        } else if self.mem_percentage != PERCENTAGE_UNSET {
            u64::from(total) * u64::from(self.mem_percentage) / 100
        } else {
            0
        }
    }

    /// Cores as the fit uses them (clamped to 100, HAMi's "core limit can't exceed 100").
    pub fn cores_clamped(&self) -> u32 {
        self.coresreq.min(100)
    }
}

/// `2 GPUs of 4000 MiB and 30 % cores each` (memory as the request states it: MiB, a percentage,
/// or `all memory` when neither is set).
impl std::fmt::Display for ContainerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gpus = if self.nums == 1 { "GPU" } else { "GPUs" };
        write!(f, "{} {gpus} of ", self.nums)?;
        if self.memreq > 0 {
            write!(f, "{} MiB", self.memreq)?;
        } else if self.mem_percentage != PERCENTAGE_UNSET {
            write!(f, "{} % memory", self.mem_percentage)?;
        } else {
            write!(f, "all memory")?;
        }
        write!(f, " and {} % cores", self.coresreq)?;
        if self.nums != 1 {
            write!(f, " each")?;
        }
        Ok(())
    }
}

/// Each container that asks for GPUs, by name: `c-0: 1 GPU of 60 % memory and 0 % cores; c-1: …`.
impl std::fmt::Display for PodRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut asks = self
            .containers
            .iter()
            .filter_map(|c| c.request.as_ref().map(|r| (&c.name, r)));
        if let Some((name, request)) = asks.next() {
            write!(f, "{name}: {request}")?;
        }
        for (name, request) in asks {
            write!(f, "; {name}: {request}")?;
        }
        Ok(())
    }
}

/// One container's place in the pod's annotation index space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ContainerSlot {
    /// Container name.
    pub name: String,
    /// True for an init container.
    pub init: bool,
    /// The GPU request, if the container has one.
    pub request: Option<ContainerRequest>,
}

/// Every container of a pod, init containers first, with their GPU requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PodRequest {
    /// Init containers, then regular containers.
    pub containers: Vec<ContainerSlot>,
}

impl PodRequest {
    /// True when some container asks for a GPU.
    pub fn has_gpu_request(&self) -> bool {
        self.containers.iter().any(|c| c.request.is_some())
    }

    /// The GPUs the pod's containers ask for in all (init containers included).
    pub fn gpus(&self) -> u32 {
        self.containers
            .iter()
            .filter_map(|c| c.request.as_ref())
            .fold(0u32, |sum, r| sum.saturating_add(r.nums))
    }

    /// Init-container slots.
    pub fn init(&self) -> impl Iterator<Item = &ContainerSlot> {
        self.containers.iter().filter(|c| c.init)
    }

    /// Regular-container slots.
    pub fn app(&self) -> impl Iterator<Item = &ContainerSlot> {
        self.containers.iter().filter(|c| !c.init)
    }
}

/// Cluster-wide request defaults (HAMi's `nvidia:` device config); both 0 by default, as in HAMi's chart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDefaults {
    /// MiB used when a GPU container gives neither memory nor percentage (0: whole card).
    pub default_memory: u32,
    /// Cores used when a GPU container gives none.
    pub default_cores: u32,
}

/// A resource value that cannot be used, with the container and resource named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("container {container:?}: invalid {resource} value {value:?}: {problem}")]
pub struct RequestError {
    /// Container name.
    pub container: String,
    /// Resource name, e.g. `nvidia.com/gpumem`.
    pub resource: &'static str,
    /// The quantity as written.
    pub value: String,
    /// What is wrong.
    pub problem: String,
}

/// Reads a pod's GPU requests.
pub fn pod_request(pod: &Pod, defaults: RequestDefaults) -> Result<PodRequest, RequestError> {
    let mut containers = Vec::new();
    if let Some(spec) = &pod.spec {
        for c in spec.init_containers.iter().flatten() {
            containers.push(ContainerSlot {
                name: c.name.clone(),
                init: true,
                request: container_request(c, defaults)?,
            });
        }
        for c in &spec.containers {
            containers.push(ContainerSlot {
                name: c.name.clone(),
                init: false,
                request: container_request(c, defaults)?,
            });
        }
    }
    Ok(PodRequest { containers })
}

/// True when the pod asks for a GPU in some container, or when its GPU quantities cannot be read
/// (then it may hold devices; leaving them out would free them). The one rule for "this pod may
/// hold an allocation": the ledger counts, and the audit accepts, allocations only on such pods.
pub fn requests_gpu(pod: &Pod) -> bool {
    pod_request(pod, RequestDefaults::default()).map_or(true, |r| r.has_gpu_request())
}

/// The quantity of `resource` in limits, else requests.
pub fn limit_or_request<'a>(container: &'a Container, resource: &str) -> Option<&'a Quantity> {
    let resources = container.resources.as_ref()?;
    let from = |m: &'a Option<BTreeMap<String, Quantity>>| m.as_ref().and_then(|m| m.get(resource));
    from(&resources.limits).or_else(|| from(&resources.requests))
}

/// Reads `resource` as an integer in `0..=max`.
pub fn integer_resource(
    container: &Container,
    resource: &'static str,
    max: i64,
) -> Result<Option<u32>, RequestError> {
    let Some(quantity) = limit_or_request(container, resource) else {
        return Ok(None);
    };
    let err = |problem: String| RequestError {
        container: container.name.clone(),
        resource,
        value: quantity.0.clone(),
        problem,
    };
    match parse_integer(&quantity.0) {
        Ok(v) if v < 0 => Err(err("must not be negative".into())),
        Ok(v) if v > max => Err(err(format!("larger than {max}"))),
        Ok(v) => Ok(Some(v as u32)),
        Err(QuantityError::Fraction(_)) => Err(err("must be a whole number".into())),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Reads one container's GPU request (`None` when it asks for no GPU).
pub fn container_request(
    container: &Container,
    defaults: RequestDefaults,
) -> Result<Option<ContainerRequest>, RequestError> {
    let int_max = i64::from(i32::MAX);
    let nums = integer_resource(container, RESOURCE_GPU, int_max)?.unwrap_or(0);
    if nums == 0 {
        return Ok(None);
    }
    let mut memreq = integer_resource(container, RESOURCE_GPUMEM, int_max)?.unwrap_or(0);
    let mut mem_percentage = match integer_resource(container, RESOURCE_GPUMEM_PERCENTAGE, int_max)?
    {
        Some(0) | None => PERCENTAGE_UNSET,
        Some(p) => p.min(100),
    };
    if mem_percentage == PERCENTAGE_UNSET && memreq == 0 {
        if defaults.default_memory != 0 {
            memreq = defaults.default_memory;
        } else {
            mem_percentage = 100;
        }
    }
    let coresreq =
        integer_resource(container, RESOURCE_GPUCORES, int_max)?.unwrap_or(defaults.default_cores);
    Ok(Some(ContainerRequest {
        nums,
        memreq,
        mem_percentage,
        coresreq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_request_names_each_container_that_asks() {
        let slot = |name: &str, request: Option<ContainerRequest>| ContainerSlot {
            name: name.into(),
            init: false,
            request,
        };
        let ask = ContainerRequest {
            nums: 1,
            memreq: 0,
            mem_percentage: 60,
            coresreq: 0,
        };
        let request = PodRequest {
            containers: vec![slot("a", Some(ask)), slot("b", None), slot("c", Some(ask))],
        };
        assert_eq!(
            request.to_string(),
            "a: 1 GPU of 60 % memory and 0 % cores; c: 1 GPU of 60 % memory and 0 % cores"
        );
        assert_eq!(PodRequest::default().to_string(), "");
    }

    #[test]
    fn a_container_request_reads_as_asked() {
        let ask = |nums, memreq, mem_percentage, coresreq| ContainerRequest {
            nums,
            memreq,
            mem_percentage,
            coresreq,
        };
        assert_eq!(
            ask(1, 0, 60, 0).to_string(),
            "1 GPU of 60 % memory and 0 % cores"
        );
        assert_eq!(
            ask(2, 4000, PERCENTAGE_UNSET, 30).to_string(),
            "2 GPUs of 4000 MiB and 30 % cores each"
        );
        assert_eq!(
            ask(1, 0, PERCENTAGE_UNSET, 100).to_string(),
            "1 GPU of all memory and 100 % cores"
        );
    }
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn container(name: &str, limits: &[(&str, &str)], requests: &[(&str, &str)]) -> Container {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                limits: map(limits),
                requests: map(requests),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn req(limits: &[(&str, &str)]) -> Option<ContainerRequest> {
        container_request(&container("c", limits, &[]), RequestDefaults::default()).unwrap()
    }

    #[test]
    fn fractional_request() {
        let r = req(&[
            (RESOURCE_GPU, "1"),
            (RESOURCE_GPUMEM, "3000"),
            (RESOURCE_GPUCORES, "30"),
        ])
        .unwrap();
        assert_eq!(
            r,
            ContainerRequest {
                nums: 1,
                memreq: 3000,
                mem_percentage: PERCENTAGE_UNSET,
                coresreq: 30
            }
        );
    }

    #[test]
    fn gpu_alone_means_whole_card() {
        let r = req(&[(RESOURCE_GPU, "2")]).unwrap();
        assert_eq!(
            r,
            ContainerRequest {
                nums: 2,
                memreq: 0,
                mem_percentage: 100,
                coresreq: 0
            }
        );
        assert_eq!(r.memory_on(81920), 81920);
        let with_default = container_request(
            &container("c", &[(RESOURCE_GPU, "1")], &[]),
            RequestDefaults {
                default_memory: 512,
                default_cores: 7,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                with_default.memreq,
                with_default.mem_percentage,
                with_default.coresreq
            ),
            (512, PERCENTAGE_UNSET, 7)
        );
    }

    #[test]
    fn percentage_rules() {
        let r = req(&[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM_PERCENTAGE, "50")]).unwrap();
        assert_eq!((r.memreq, r.mem_percentage), (0, 50));
        assert_eq!(r.memory_on(15360), 7680);
        assert_eq!(r.memory_on(15361), 7680, "truncating");
        assert_eq!(
            req(&[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM_PERCENTAGE, "150")])
                .unwrap()
                .mem_percentage,
            100
        );
        // Zero percentage is "unset", which with no memory means the whole card (TestZeroMemoryPercentageIsAccountedAsWholeCard).
        assert_eq!(
            req(&[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM_PERCENTAGE, "0")])
                .unwrap()
                .mem_percentage,
            100
        );
        // Explicit memory wins over a percentage.
        let both = req(&[
            (RESOURCE_GPU, "1"),
            (RESOURCE_GPUMEM, "1000"),
            (RESOURCE_GPUMEM_PERCENTAGE, "50"),
        ])
        .unwrap();
        assert_eq!(both.memory_on(8000), 1000);
    }

    #[test]
    fn limits_before_requests_and_no_gpu() {
        let c = container(
            "c",
            &[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM, "100")],
            &[(RESOURCE_GPUMEM, "200")],
        );
        assert_eq!(
            container_request(&c, RequestDefaults::default())
                .unwrap()
                .unwrap()
                .memreq,
            100
        );
        let c = container("c", &[], &[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM, "200")]);
        assert_eq!(
            container_request(&c, RequestDefaults::default())
                .unwrap()
                .unwrap()
                .memreq,
            200
        );
        assert_eq!(req(&[(RESOURCE_GPUMEM, "100")]), None);
        assert_eq!(req(&[(RESOURCE_GPU, "0"), (RESOURCE_GPUMEM, "100")]), None);
        assert_eq!(req(&[("cpu", "1")]), None);
        assert_eq!(req(&[(RESOURCE_GPU, "1k")]).unwrap().nums, 1000);
    }

    #[test]
    fn cores_above_100_are_kept_for_the_fit_to_clamp() {
        let r = req(&[(RESOURCE_GPU, "1"), (RESOURCE_GPUCORES, "150")]).unwrap();
        assert_eq!((r.coresreq, r.cores_clamped()), (150, 100));
    }

    #[test]
    fn unusable_values_are_errors_naming_container_resource_and_value() {
        for (resource, value, problem) in [
            (RESOURCE_GPUMEM, "16Gi", "larger than 2147483647"),
            (RESOURCE_GPUMEM, "-1", "must not be negative"),
            (RESOURCE_GPUMEM, "0.5", "whole number"),
            (RESOURCE_GPU, "abc", "not a Kubernetes quantity"),
            (RESOURCE_GPUCORES, "100m", "whole number"),
        ] {
            let mut limits = vec![(RESOURCE_GPU, "1")];
            if resource == RESOURCE_GPU {
                limits.clear();
            }
            limits.push((resource, value));
            let err = container_request(
                &container("trainer", &limits, &[]),
                RequestDefaults::default(),
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("\"trainer\"")
                    && msg.contains(resource)
                    && msg.contains(value)
                    && msg.contains(problem),
                "{msg}"
            );
        }
    }

    #[test]
    fn init_containers_come_first() {
        let pod = Pod {
            spec: Some(PodSpec {
                init_containers: Some(vec![container(
                    "init",
                    &[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM, "5000")],
                    &[],
                )]),
                containers: vec![
                    container("plain", &[], &[]),
                    container(
                        "app",
                        &[(RESOURCE_GPU, "1"), (RESOURCE_GPUMEM, "4000")],
                        &[],
                    ),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let r = pod_request(&pod, RequestDefaults::default()).unwrap();
        let names: Vec<_> = r
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.init, c.request.map(|q| q.memreq)))
            .collect();
        assert_eq!(
            names,
            [
                ("init", true, Some(5000)),
                ("plain", false, None),
                ("app", false, Some(4000))
            ]
        );
        assert_eq!(r.init().count(), 1);
        assert!(r.has_gpu_request());
    }

    /// The largest accepted value is the bound itself; one more is refused with the bound named.
    #[test]
    fn integer_resource_accepts_its_bound_and_refuses_one_more() {
        let max = i64::from(i32::MAX);
        let at = container("c", &[(RESOURCE_GPUMEM, "2147483647")], &[]);
        assert_eq!(
            integer_resource(&at, RESOURCE_GPUMEM, max),
            Ok(Some(2_147_483_647))
        );
        let past = container("c", &[(RESOURCE_GPUMEM, "2147483648")], &[]);
        let e = integer_resource(&past, RESOURCE_GPUMEM, max).unwrap_err();
        assert_eq!(e.problem, "larger than 2147483647");
        let none = container("c", &[], &[]);
        assert_eq!(integer_resource(&none, RESOURCE_GPUMEM, max), Ok(None));
    }
}
