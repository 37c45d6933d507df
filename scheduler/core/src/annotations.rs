//! Every annotation key, label key and extended-resource name of the HAMi protocol, in one place.
//!
//! Values are HAMi v2.10's (`pkg/util/types.go`, `pkg/device/nvidia/device.go`).

/// Node: JSON device inventory written by the device plugin (or `sliceguard register`).
pub const NODE_REGISTER: &str = "hami.io/node-nvidia-register";
/// Node: scheduler handshake, `Requesting_<YYYY-MM-DD HH:MM:SS>`.
pub const NODE_HANDSHAKE: &str = "hami.io/node-handshake";
/// Node: the bind lock, `<RFC3339>,<namespace>,<pod>`.
pub const NODE_LOCK: &str = "hami.io/mutex.lock";
/// Node: comma-separated GPU UUIDs excluded from new allocations.
pub const DEVICE_CORDON: &str = "hami.io/device-cordon";

/// Namespace or pod label: `ignore` takes the object out of the webhook's selectors.
pub const WEBHOOK_LABEL: &str = "hami.io/webhook";
/// The [`WEBHOOK_LABEL`] value that opts a pod or namespace out.
pub const WEBHOOK_OPT_OUT: &str = "ignore";

/// Pod (annotation and label): the node chosen by the filter.
pub const VGPU_NODE: &str = "hami.io/vgpu-node";
/// Pod: Unix seconds of the filter decision.
pub const VGPU_TIME: &str = "hami.io/vgpu-time";
/// Pod: devices still to hand out by the device plugin's Allocate (erased as it goes).
pub const DEVICES_TO_ALLOCATE: &str = "hami.io/vgpu-devices-to-allocate";
/// Pod: devices allocated by the filter; never erased; the scheduler's source of truth.
pub const DEVICES_ALLOCATED: &str = "hami.io/vgpu-devices-allocated";
/// Pod: `allocating` (scheduler), `success` or `failed` (device plugin or sliceguard's binder).
pub const BIND_PHASE: &str = "hami.io/bind-phase";
/// Pod: Unix seconds of the bind.
pub const BIND_TIME: &str = "hami.io/bind-time";

/// Pod: comma list of GPU types to use (case-insensitive substring in HAMi).
pub const USE_GPUTYPE: &str = "nvidia.com/use-gputype";
/// Pod: comma list of GPU types to avoid.
pub const NOUSE_GPUTYPE: &str = "nvidia.com/nouse-gputype";
/// Pod: comma list of GPU UUIDs to use (exact).
pub const USE_GPUUUID: &str = "nvidia.com/use-gpuuuid";
/// Pod: comma list of GPU UUIDs to avoid (exact).
pub const NOUSE_GPUUUID: &str = "nvidia.com/nouse-gpuuuid";
/// Pod: all GPUs of one container on one NUMA node (Go `strconv.ParseBool`).
pub const NUMA_BIND: &str = "nvidia.com/numa-bind";
/// Pod: allowed device modes (substring test, so `hami-core,mig` allows both).
pub const VGPU_MODE: &str = "nvidia.com/vgpu-mode";
/// Pod: GPU policy override (`binpack`, `spread`, `mutex`, ...).
pub const GPU_SCHEDULER_POLICY: &str = "hami.io/gpu-scheduler-policy";
/// Pod: node policy override (`binpack` or `spread`).
pub const NODE_SCHEDULER_POLICY: &str = "hami.io/node-scheduler-policy";
/// Pod: device score weights, `slot=<int>,core=<int>,memory=<int>`.
pub const DEVICE_SCORING_WEIGHTS: &str = "hami.io/device-scoring-weights";

/// Extended resource: number of GPUs per container.
pub const RESOURCE_GPU: &str = "nvidia.com/gpu";
/// Extended resource: MiB of device memory per GPU.
pub const RESOURCE_GPUMEM: &str = "nvidia.com/gpumem";
/// Extended resource: percent of device memory per GPU.
pub const RESOURCE_GPUMEM_PERCENTAGE: &str = "nvidia.com/gpumem-percentage";
/// Extended resource: percent of one GPU's compute per GPU (100 = exclusive).
pub const RESOURCE_GPUCORES: &str = "nvidia.com/gpucores";
/// Extended resource: task priority, passed to the container as `CUDA_TASK_PRIORITY`.
pub const RESOURCE_PRIORITY: &str = "nvidia.com/priority";

/// The backend key written in pod device annotations (`uuid,NVIDIA,mem,cores:`).
pub const BACKEND_NVIDIA: &str = "NVIDIA";

/// `hami.io/bind-phase` values.
pub mod bind_phase {
    /// Set by the binder before the Binding is created.
    pub const ALLOCATING: &str = "allocating";
    /// Set by the device plugin after Allocate, or by sliceguard's binder in `after-bind` mode.
    pub const SUCCESS: &str = "success";
    /// Set by the device plugin when Allocate failed.
    pub const FAILED: &str = "failed";
}
