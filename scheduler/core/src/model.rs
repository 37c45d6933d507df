//! Plain data shared by every layer: registered devices, their usage, and what a pod was given.
//!
//! Numbers follow HAMi's `int32` fields but are unsigned here: a negative memory, core or split count
//! has no meaning, and the codecs reject it instead of letting it corrupt the accounting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// One GPU as a node registers it in `hami.io/node-nvidia-register` (HAMi's `DeviceInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device UUID, e.g. `GPU-9a3603f4-...`. Pod allocations refer to devices by this id.
    pub id: String,
    /// Index of the device on its node (`omitempty`: absent means 0).
    pub index: u32,
    /// Split count: the most container-GPU tasks this device accepts at once.
    pub count: u32,
    /// Device memory in MiB.
    pub devmem: u32,
    /// Compute units in percent of one GPU (100 unless the plugin scales cores).
    pub devcore: u32,
    /// Model name, e.g. `NVIDIA-H100-80GB-HBM3` (shared: the registry keeps one copy per name).
    #[serde(rename = "type")]
    pub device_type: Arc<str>,
    /// NUMA node of the device (`omitempty`: absent means 0).
    pub numa: u32,
    /// Sharing mode: `hami-core`, `mig` or `mps` (absent means empty; shared like the model name).
    pub mode: Arc<str>,
    /// Whether the kubelet reports the device healthy (`omitempty`: absent means false).
    pub health: bool,
}

/// `text.to_lowercase().contains("nvidia")` without allocating (the fit asks it of every device of
/// every node it evaluates). ASCII case folding gives the same answer: the only characters outside
/// ASCII whose lower case holds an ASCII letter are the Kelvin sign (`k`) and `İ` (`i` followed by a
/// combining dot, which breaks the word, since `i` is never the word's last letter).
fn contains_nvidia(text: &str) -> bool {
    text.as_bytes()
        .windows(6)
        .any(|window| window.eq_ignore_ascii_case(b"nvidia"))
}

impl DeviceInfo {
    /// True for an NVIDIA device: the only kind the fit considers (HAMi's NVIDIA device filter
    /// matches `nvidia` in the type, case-insensitively).
    pub fn is_nvidia(&self) -> bool {
        contains_nvidia(&self.device_type)
    }

    /// True for a device in MIG mode (sliceguard does not place MIG profiles yet).
    pub fn is_mig(&self) -> bool {
        &*self.mode == "mig"
    }
}

/// The state of one node that a placement reads: devices in registration order, their usage, cordons.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// Registered devices, in registration order.
    pub devices: &'a [DeviceInfo],
    /// Usage of each device (same order).
    pub usage: &'a [DeviceUsage],
    /// Cordoned device ids (`hami.io/device-cordon`).
    pub cordoned: &'a BTreeSet<String>,
}

impl NodeView<'_> {
    /// Indices of the node's NVIDIA devices: the fit's candidates.
    pub fn nvidia_devices(&self) -> Vec<usize> {
        (0..self.devices.len())
            .filter(|&i| self.devices[i].is_nvidia())
            .collect()
    }
}

/// What is in use on one device: container-GPU tasks, MiB and cores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceUsage {
    /// Container-GPU tasks holding the device (compared with the split count).
    pub used: u64,
    /// MiB in use.
    pub usedmem: u64,
    /// Cores (percent) in use.
    pub usedcores: u64,
}

impl DeviceUsage {
    /// Adds another usage to this one.
    pub fn add(&mut self, other: DeviceUsage) {
        self.used += other.used;
        self.usedmem += other.usedmem;
        self.usedcores += other.usedcores;
    }

    /// Removes another usage from this one; the ledger only removes what it added, so this never
    /// goes below zero, and saturates defensively if it would.
    pub fn remove(&mut self, other: DeviceUsage) {
        self.used = self.used.saturating_sub(other.used);
        self.usedmem = self.usedmem.saturating_sub(other.usedmem);
        self.usedcores = self.usedcores.saturating_sub(other.usedcores);
    }

    /// True when nothing is in use.
    pub fn is_idle(&self) -> bool {
        *self == DeviceUsage::default()
    }
}

/// One device given to one container: an entry of `hami.io/vgpu-devices-allocated`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerDevice {
    /// Device UUID.
    pub uuid: String,
    /// Backend key (`NVIDIA`), not the model name.
    #[serde(rename = "type")]
    pub backend: String,
    /// MiB reserved on this device for this container.
    pub usedmem: u32,
    /// Cores (percent) reserved on this device for this container.
    pub usedcores: u32,
}

/// The devices of one container (empty for a container without GPUs).
pub type ContainerDevices = Vec<ContainerDevice>;

/// The devices of every container of a pod, init containers first, then regular containers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodDevices(pub Vec<ContainerDevices>);

impl PodDevices {
    /// True when no container holds any device.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(Vec::is_empty)
    }
}

/// A pod's allocation split into its init and regular containers, which HAMi accounts differently:
/// init containers run one after another, regular containers run together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct PodAllocation {
    /// Devices per init container.
    pub init: Vec<ContainerDevices>,
    /// Devices per regular container.
    pub app: Vec<ContainerDevices>,
}

impl PodAllocation {
    /// Splits a decoded annotation at `init_count` (the number of init containers in the pod spec).
    /// Entries beyond the pod's containers (HAMi's trailing empty entry) are kept with the regular
    /// containers; they are empty in every well-formed annotation.
    pub fn from_pod_devices(devices: PodDevices, init_count: usize) -> Self {
        let mut all = devices.0;
        let split = init_count.min(all.len());
        let app = all.split_off(split);
        PodAllocation { init: all, app }
    }

    /// The usage this allocation puts on each device, HAMi's `CollapseInitContainerUsage`: per device,
    /// memory and cores are the larger of the init-container peak and the sum over regular containers;
    /// tasks are the larger of one (if any init container used it) and the regular containers' count,
    /// and at least one. Sorted by UUID.
    pub fn collapsed_usage(&self) -> Vec<(String, DeviceUsage)> {
        use std::collections::BTreeMap;
        #[derive(Default)]
        struct Acc {
            init_mem: u64,
            init_cores: u64,
            init_seen: bool,
            app_mem: u64,
            app_cores: u64,
            app_count: u64,
        }
        let mut per_device: BTreeMap<&str, Acc> = BTreeMap::new();
        for device in self.init.iter().flatten() {
            let acc = per_device.entry(device.uuid.as_str()).or_default();
            acc.init_mem = acc.init_mem.max(u64::from(device.usedmem));
            acc.init_cores = acc.init_cores.max(u64::from(device.usedcores));
            acc.init_seen = true;
        }
        for device in self.app.iter().flatten() {
            let acc = per_device.entry(device.uuid.as_str()).or_default();
            acc.app_mem += u64::from(device.usedmem);
            acc.app_cores += u64::from(device.usedcores);
            acc.app_count += 1;
        }
        per_device
            .into_iter()
            .map(|(uuid, acc)| {
                let usage = DeviceUsage {
                    used: u64::from(acc.init_seen).max(acc.app_count).max(1),
                    usedmem: acc.init_mem.max(acc.app_mem),
                    usedcores: acc.init_cores.max(acc.app_cores),
                };
                (uuid.to_string(), usage)
            })
            .collect()
    }

    /// All containers, init first, as written in the annotation.
    pub fn to_pod_devices(&self) -> PodDevices {
        PodDevices(self.init.iter().chain(self.app.iter()).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nvidia_is_found_in_any_case_and_nowhere_else() {
        for (text, expected) in [
            ("NVIDIA-H100-80GB-HBM3", true),
            ("nvidia", true),
            ("Tesla nVidia T4", true),
            ("NVIDI", false),
            ("NV-IDIA", false),
            ("AMD-MI300", false),
            ("", false),
            ("NV\u{130}DIA", false),
            ("NVID\u{130}A", false),
            ("\u{212A}NVIDIA", true),
        ] {
            assert_eq!(contains_nvidia(text), expected, "{text:?}");
            assert_eq!(text.to_lowercase().contains("nvidia"), expected, "{text:?}");
        }
    }

    proptest! {
        /// The allocation-free test agrees with lower-casing, on text joined from pieces of the word
        /// in mixed case, whole words, and the characters whose lower case is special (three of the
        /// fifteen pieces are the whole word, so many cases hold it).
        #[test]
        fn nvidia_test_agrees_with_lowercasing(
            pieces in proptest::collection::vec(
                prop::sample::select(vec![
                    "nvidia", "NVIDIA", "nViDiA", "nv", "NV", "idia", "IDIA", "i", "I", "\u{130}",
                    "\u{131}", "\u{212A}", "-", "\u{e9}", "nv\u{130}dia",
                ]),
                0..8,
            ),
        ) {
            let text: String = pieces.concat();
            prop_assert_eq!(contains_nvidia(&text), text.to_lowercase().contains("nvidia"));
        }
    }

    fn dev(uuid: &str, mem: u32, cores: u32) -> ContainerDevice {
        ContainerDevice {
            uuid: uuid.into(),
            backend: "NVIDIA".into(),
            usedmem: mem,
            usedcores: cores,
        }
    }

    #[test]
    fn pod_devices_are_empty_only_when_no_container_holds_one() {
        assert!(PodDevices::default().is_empty());
        assert!(PodDevices(vec![vec![], vec![]]).is_empty());
        assert!(!PodDevices(vec![vec![], vec![dev("GPU-0", 1, 1)]]).is_empty());
    }

    #[test]
    fn collapse_takes_init_peak_or_app_sum_per_device() {
        let alloc = PodAllocation {
            init: vec![vec![dev("a", 5000, 20)], vec![dev("a", 3000, 50)]],
            app: vec![
                vec![dev("a", 2000, 10)],
                vec![dev("a", 2500, 10), dev("b", 100, 0)],
            ],
        };
        let usage = alloc.collapsed_usage();
        assert_eq!(
            usage,
            vec![
                (
                    "a".to_string(),
                    DeviceUsage {
                        used: 2,
                        usedmem: 5000,
                        usedcores: 50
                    }
                ),
                (
                    "b".to_string(),
                    DeviceUsage {
                        used: 1,
                        usedmem: 100,
                        usedcores: 0
                    }
                ),
            ]
        );
    }

    #[test]
    fn collapse_counts_an_init_only_device_as_one_task() {
        let alloc = PodAllocation {
            init: vec![vec![dev("a", 10, 1)], vec![dev("a", 20, 2)]],
            app: vec![vec![]],
        };
        assert_eq!(
            alloc.collapsed_usage(),
            vec![(
                "a".into(),
                DeviceUsage {
                    used: 1,
                    usedmem: 20,
                    usedcores: 2
                }
            )]
        );
    }

    #[test]
    fn split_keeps_trailing_entries_with_app_containers() {
        let pd = PodDevices(vec![
            vec![dev("a", 1, 1)],
            vec![],
            vec![dev("b", 2, 2)],
            vec![],
        ]);
        let alloc = PodAllocation::from_pod_devices(pd.clone(), 1);
        assert_eq!(alloc.init.len(), 1);
        assert_eq!(alloc.app.len(), 3);
        assert_eq!(alloc.to_pod_devices(), pd);
        let short = PodAllocation::from_pod_devices(PodDevices(vec![]), 3);
        assert!(short.init.is_empty() && short.app.is_empty());
    }
}
