//! The `tenant` fault: people with pod create and update rights trying to forge scheduling state,
//! through admission as in a real cluster (sliceguard's webhook, called with a tenant's user), and
//! the invariant that makes such a forgery visible if it ever gets through.
//!
//! What a tenant tries ([`Attempt`]):
//! - **forged create**: a GPU pod created already carrying `hami.io/vgpu-node` (annotation and
//!   label), `hami.io/vgpu-devices-allocated` and `-to-allocate` and `hami.io/bind-phase`, claiming
//!   the whole memory and every core of a device a placed pod uses (HAMi issue #3041's attack; the
//!   device plugin would serve it);
//! - **strip**: a placed pod's `hami.io/vgpu-node` label and annotation and its allocation removed,
//!   so that the ledger stops counting devices its containers still use;
//! - **forge**: a placed pod's allocation rewritten to claim its device whole.
//!
//! Every attempt goes to the webhook as an AdmissionReview (CREATE, or UPDATE with the stored pod
//! as `oldObject`) with the user [`TENANT_USER`]; only an admitted request reaches the store. With a
//! correct webhook every attempt is denied and the store never changes, so the fault leaves the
//! rest of a run exactly as it was (the tenant draws from its own generator, not the world's).
//!
//! **Granted capacity** ([`Grants`]): the kubelet and device plugin hand a container the devices its
//! pod's allocation names when it starts, and nothing takes them back while it runs; HAMi-core then
//! enforces those limits. The grants are recorded from each pod's allocation when it is first seen
//! Running, and after every step the running pods' grants must fit every device (the `capacity`
//! invariant, computed by `sliceguard_invariants::checks::check_capacity` over the granted
//! allocations). An annotation stripped or rewritten later changes what the scheduler counts, not
//! what the containers hold, so a forgery that got through shows up here even when the annotations
//! themselves still add up.

use crate::store::{Part, Resource};
use crate::world::{Fault, Rng, World};
use base64::Engine as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use sliceguard::annotations::{
    BACKEND_NVIDIA, BIND_PHASE, DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, NODE_REGISTER, VGPU_NODE,
    bind_phase,
};
use sliceguard::model::{ContainerDevice, PodDevices};
use sliceguard::objects::{GpuAsk, gpu_pod};
use std::collections::{BTreeMap, BTreeSet};

/// The user every tenant request is made by: a namespace's ServiceAccount, which HAMi's own update
/// rule (any service account) would trust and sliceguard's does not.
pub const TENANT_USER: &str = "system:serviceaccount:team-a:default";

/// One thing a tenant tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Create a GPU pod carrying a forged allocation.
    ForgedCreate,
    /// Strip a placed pod's node label, node annotation and allocation.
    Strip,
    /// Rewrite a placed pod's allocation to claim its device whole.
    Forge,
}

impl Attempt {
    /// Every attempt, in the order the generator draws them.
    pub const ALL: [Attempt; 3] = [Attempt::ForgedCreate, Attempt::Strip, Attempt::Forge];

    /// The attempt's name in the trace.
    pub fn as_str(self) -> &'static str {
        match self {
            Attempt::ForgedCreate => "forged create",
            Attempt::Strip => "strip",
            Attempt::Forge => "forge",
        }
    }
}

/// What became of an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The webhook denied it, with this message.
    Denied(String),
    /// It was admitted and written.
    Admitted,
    /// Nothing to try it on (no placed pod, no registered device) or no webhook running.
    NotTried,
}

/// The tenants of a world: their own seeded generator and how many pods they created.
#[derive(Debug, Clone)]
pub struct Tenants {
    rng: Rng,
    created: u64,
}

impl Tenants {
    /// Tenants for a world of `seed`.
    pub fn new(seed: u64) -> Self {
        Tenants {
            rng: Rng::new(seed ^ 0x7e4a_4e70_0000_0013),
            created: 0,
        }
    }

    /// One step: with the configured fault rate, one random attempt on a random pod.
    pub fn step(&mut self, world: &mut World) {
        if !world.fault_active(Fault::Tenant)
            || !self.rng.chance_per_mille(world.config().fault_per_mille)
        {
            return;
        }
        let attempt = Attempt::ALL[self.rng.below(Attempt::ALL.len() as u64) as usize];
        let pick = self.rng.next_u64();
        self.attempt(world, attempt, pick);
    }

    /// Makes one attempt; `pick` chooses the pod (modulo the placed pods).
    pub fn attempt(&mut self, world: &mut World, attempt: Attempt, pick: u64) -> Answer {
        let placed = placed_pods(world);
        let target =
            (!placed.is_empty()).then(|| placed[(pick % placed.len() as u64) as usize].clone());
        let answer = match attempt {
            Attempt::ForgedCreate => {
                self.created += 1;
                let name = format!("tenant-{}", self.created);
                forged_create(world, &name, target.as_ref())
            }
            Attempt::Strip | Attempt::Forge => match &target {
                Some(pod) => forged_update(world, attempt, pod),
                None => Answer::NotTried,
            },
        };
        let what = match (attempt, &target) {
            (Attempt::ForgedCreate, _) => format!("tenant-{}", self.created),
            (_, Some(pod)) => key_of(pod),
            (_, None) => "no placed pod".into(),
        };
        let outcome = match &answer {
            Answer::Denied(message) => format!("denied: {message}"),
            Answer::Admitted => "ADMITTED".into(),
            Answer::NotTried => "not tried".into(),
        };
        world.log(format!(
            "fault tenant: {TENANT_USER} tries a {} of {what}: {outcome}",
            attempt.as_str()
        ));
        answer
    }
}

fn key_of(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or("default"),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Pods holding an allocation and not finished, in store order.
fn placed_pods(world: &World) -> Vec<Value> {
    world.with_store(|s| {
        s.objects(Resource::Pods)
            .filter(|p| {
                p["metadata"]["annotations"][VGPU_NODE].is_string()
                    && p["metadata"]["annotations"][DEVICES_ALLOCATED].is_string()
                    && !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
            })
            .cloned()
            .collect()
    })
}

/// A device to claim: the first device of `pod`'s allocation on its node, else the first
/// registered device of the first node; its node, id and registered memory.
fn device_to_claim(world: &World, pod: Option<&Value>) -> Option<(String, String, u32)> {
    let nodes = world.with_store(|s| s.typed::<Node>(Resource::Nodes));
    let registered = |node: &str| -> Vec<sliceguard::model::DeviceInfo> {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(node))
            .and_then(|n| n.metadata.annotations.as_ref()?.get(NODE_REGISTER))
            .and_then(|v| sliceguard::codec::register::parse(v).ok())
            .unwrap_or_default()
    };
    if let Some(pod) = pod {
        let node = pod["metadata"]["annotations"][VGPU_NODE].as_str()?;
        let allocated = pod["metadata"]["annotations"][DEVICES_ALLOCATED].as_str()?;
        let devices = sliceguard::codec::pod_devices::parse(allocated).ok()?;
        let uuid = devices.0.iter().flatten().next()?.uuid.clone();
        let devmem = registered(node).iter().find(|d| d.id == uuid)?.devmem;
        return Some((node.to_string(), uuid, devmem));
    }
    let node = nodes.first()?.metadata.name.clone()?;
    let device = registered(&node).into_iter().next()?;
    Some((node, device.id, device.devmem))
}

/// `uuid` whole, for one container.
fn whole_device(uuid: &str, devmem: u32) -> Option<String> {
    sliceguard::codec::pod_devices::render(&PodDevices(vec![vec![ContainerDevice {
        uuid: uuid.to_string(),
        backend: BACKEND_NVIDIA.into(),
        usedmem: devmem,
        usedcores: 100,
    }]]))
    .ok()
}

fn forged_create(world: &mut World, name: &str, target: Option<&Value>) -> Answer {
    let Some((node, uuid, devmem)) = device_to_claim(world, target) else {
        return Answer::NotTried;
    };
    let Some(claim) = whole_device(&uuid, devmem) else {
        return Answer::NotTried;
    };
    let Ok(mut pod) = serde_json::to_value(gpu_pod(name, &[], &[GpuAsk::fraction(1000, 10)]))
    else {
        return Answer::NotTried;
    };
    pod["metadata"]["namespace"] = json!("default");
    pod["metadata"]["annotations"] = json!({
        VGPU_NODE: node,
        DEVICES_ALLOCATED: claim,
        DEVICES_TO_ALLOCATE: claim,
        BIND_PHASE: bind_phase::ALLOCATING,
    });
    pod["metadata"]["labels"] = json!({VGPU_NODE: node});
    pod["spec"]["schedulerName"] = json!("default-scheduler");
    let review = review_body("CREATE", name, &pod, None);
    match admit(world, &review, &pod) {
        Ok(admitted) => {
            let written =
                world.with_store_mut(|s| s.create(Resource::Pods, Some("default"), admitted));
            match written {
                Ok(_) => Answer::Admitted,
                Err(e) => Answer::Denied(e.to_string()),
            }
        }
        Err(answer) => answer,
    }
}

fn forged_update(world: &mut World, attempt: Attempt, old: &Value) -> Answer {
    let mut new = old.clone();
    match attempt {
        Attempt::Strip => {
            if let Some(labels) = new["metadata"]["labels"].as_object_mut() {
                labels.remove(VGPU_NODE);
            }
            if let Some(annotations) = new["metadata"]["annotations"].as_object_mut() {
                annotations.remove(VGPU_NODE);
                annotations.remove(DEVICES_ALLOCATED);
            }
        }
        Attempt::Forge | Attempt::ForgedCreate => {
            let Some((_, uuid, devmem)) = device_to_claim(world, Some(old)) else {
                return Answer::NotTried;
            };
            let Some(claim) = whole_device(&uuid, devmem) else {
                return Answer::NotTried;
            };
            new["metadata"]["annotations"][DEVICES_ALLOCATED] = json!(claim);
        }
    }
    let name = old["metadata"]["name"].as_str().unwrap_or("").to_string();
    let namespace = old["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let review = review_body("UPDATE", &name, &new, Some(old));
    match admit(world, &review, &new) {
        Ok(admitted) => {
            let written = world.with_store_mut(|s| {
                s.replace(
                    Resource::Pods,
                    Some(&namespace),
                    &name,
                    Part::Main,
                    admitted,
                )
            });
            match written {
                Ok(_) => Answer::Admitted,
                Err(e) => Answer::Denied(e.to_string()),
            }
        }
        Err(answer) => answer,
    }
}

fn review_body(operation: &str, name: &str, object: &Value, old: Option<&Value>) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": format!("tenant-{operation}-{name}"),
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": object["metadata"]["namespace"], "name": name,
        "operation": operation,
        "userInfo": {"username": TENANT_USER, "groups": ["system:serviceaccounts", "system:authenticated"]},
        "object": object, "oldObject": old}})
}

/// Sends the review to the world's webhook; the admitted object (its patch applied), or the answer.
fn admit(world: &mut World, review: &Value, object: &Value) -> Result<Value, Answer> {
    let answer = match world.admission_review(review) {
        Some(Ok(answer)) => answer,
        Some(Err(e)) => return Err(Answer::Denied(e)),
        None => return Err(Answer::NotTried),
    };
    let response = &answer["response"];
    if response["allowed"] != true {
        return Err(Answer::Denied(
            response["status"]["message"]
                .as_str()
                .unwrap_or("denied")
                .to_string(),
        ));
    }
    let mut admitted = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        let applied = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .ok()
            .and_then(|b| serde_json::from_slice::<json_patch::Patch>(&b).ok())
            .is_some_and(|p| json_patch::patch(&mut admitted, &p).is_ok());
        if !applied {
            return Err(Answer::Denied("the webhook's patch does not apply".into()));
        }
    }
    Ok(admitted)
}

/// What each running container was handed when its pod started: `uid` → the pod as it was then.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    granted: BTreeMap<String, Pod>,
}

impl Grants {
    /// Records the allocation of every pod newly seen Running; forgets pods gone or finished.
    pub fn observe(&mut self, pods: &[std::sync::Arc<Pod>]) {
        let listed: BTreeSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        self.granted.retain(|uid, _| listed.contains(uid.as_str()));
        for pod in pods {
            self.apply(pod, false);
        }
    }

    /// Applies one change of one pod (`gone`: deleted): records its allocation when it is first
    /// seen Running, keeps its status current while it runs, forgets it once it is not. Returns the
    /// pod's `namespace/name` and its grant now (`None`: no longer granted) when it is or was granted.
    pub fn apply(&mut self, pod: &Pod, gone: bool) -> Option<(String, Option<&Pod>)> {
        let uid = pod.metadata.uid.as_deref()?;
        let running =
            !gone && pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        if !running {
            let granted = self.granted.remove(uid)?;
            return Some((sliceguard_invariants::recount::key(&granted), None));
        }
        let grant = self
            .granted
            .entry(uid.to_string())
            .and_modify(|granted| granted.status = pod.status.clone())
            .or_insert_with(|| pod.clone());
        Some((sliceguard_invariants::recount::key(grant), Some(grant)))
    }

    /// The running pods as granted (their allocation annotations as they were at start).
    pub fn pods(&self) -> Vec<&Pod> {
        self.granted.values().collect()
    }

    /// The uids of the granted pods.
    pub fn uids(&self) -> impl Iterator<Item = &str> {
        self.granted.keys().map(String::as_str)
    }
}
