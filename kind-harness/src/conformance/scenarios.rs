//! The scenarios: the seed lab's three exercises, checked by code, and what the seed could not
//! show (sharing, exclusivity, selectors, multi-GPU, churn, routing, locks).
//!
//! Every scenario reads the GPU inventory and its current usage from the cluster
//! ([`ClusterState`], the audit's reading) instead of assuming an empty fleet, picks targets that
//! meet its preconditions (an idle GPU, GPUs with room, a second model) or is SKIPPED naming the
//! precondition and what it saw, pins pods to GPUs with `nvidia.com/use-gpuuuid` where a claim is
//! about one GPU, derives the reason it expects from HAMi's `Fit` order ([`observe::fit_reason`])
//! and the node it expects from the product's own fit and score on the observed usage. A
//! precondition is about the cluster's state only: a fleet too small for a claim (40000 MiB GPUs
//! for `sharing`) still runs, and fails with what it expected and what it saw.

use super::context::Ctx;
use super::observe;
use super::precondition::ClusterState;
use k8s_openapi::api::core::v1::Pod;
use sliceguard::annotations::{
    DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, NODE_SCHEDULER_POLICY, NOUSE_GPUTYPE, NOUSE_GPUUUID,
    USE_GPUTYPE, USE_GPUUUID, VGPU_NODE,
};
use sliceguard::objects::{GpuAsk, gpu_pod, with_annotations};
use std::collections::BTreeSet;

/// Every scenario, in the order a run goes through them.
pub const ALL: [(&str, &str); 10] = [
    (
        "fractional",
        "seed exercise 1: gpu 1, gpumem 3000, gpucores 30 is Scheduled and Running, hami.io/vgpu-devices-allocated gives 3000 MiB and 30 cores on one device, and a FilteringSucceed event names the node",
    ),
    (
        "pending",
        "seed exercise 2: gpumem 999999 stays Pending with CardInsufficientMemory from every GPU node; nothing is allocated and no lock is taken",
    ),
    (
        "placement",
        "seed exercise 3: three small replicas each get a FilteringSucceed with node and score; under binpack they consolidate on one node, under spread they land on distinct nodes",
    ),
    (
        "sharing",
        "beyond the seed: ten pods of 8000 MiB and 10 cores share one 81920 MiB GPU, all Running; the eleventh stays Pending with HAMi's reason for that GPU",
    ),
    (
        "exclusive",
        "nvidia.com/gpu: 1 alone takes a whole GPU (all its memory, 100 cores); a fractional pod pinned to that GPU then cannot land",
    ),
    (
        "selectors",
        "nvidia.com/use-gputype, nouse-gputype, use-gpuuuid and nouse-gpuuuid are honoured (a matching pod lands where asked, an excluded one is refused with CardTypeMismatch / lands elsewhere)",
    ),
    (
        "multi-gpu",
        "gpu 2 in one container gets two distinct GPUs of one node, the node the pod is bound to",
    ),
    (
        "churn",
        "deleting a pod returns its capacity: a pod waiting for that GPU schedules once the holder is gone",
    ),
    (
        "routing",
        "the webhook leaves alone a pod without GPU resources and a GPU pod for another scheduler: no schedulerName change, no allocation, no scheduler events",
    ),
    (
        "locks",
        "no node holds hami.io/mutex.lock at the end of the run (every scenario also checks this at its own end)",
    ),
];

/// Names of every scenario.
pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|(n, _)| *n).collect()
}

/// What a scenario proves.
pub fn proves(name: &str) -> &'static str {
    ALL.iter().find(|(n, _)| *n == name).map_or("", |(_, p)| *p)
}

fn pod(name: &str, ask: GpuAsk) -> Pod {
    gpu_pod(name, &[], &[ask])
}

fn pinned(name: &str, ask: GpuAsk, uuid: &str) -> Pod {
    with_annotations(pod(name, ask), &[(USE_GPUUUID, uuid)])
}

/// True when the cluster registers at least `need` schedulable GPUs; otherwise the scenario is
/// skipped saying so.
fn require_gpus(ctx: &mut Ctx<'_>, state: &ClusterState, need: usize) -> bool {
    if state.inventory.gpus().len() >= need {
        return true;
    }
    ctx.skip(
        format!(
            "at least {need} GPU(s) registered (hami.io/node-nvidia-register) on schedulable nodes"
        ),
        state.describe(),
    );
    false
}

/// Runs one scenario by name.
pub async fn run(name: &str, ctx: &mut Ctx<'_>) -> Result<(), String> {
    match name {
        "fractional" => fractional(ctx).await,
        "pending" => pending(ctx).await,
        "placement" => placement(ctx).await,
        "sharing" => sharing(ctx).await,
        "exclusive" => exclusive(ctx).await,
        "selectors" => selectors(ctx).await,
        "multi-gpu" => multi_gpu(ctx).await,
        "churn" => churn(ctx).await,
        "routing" => routing(ctx).await,
        "locks" => Ok(()),
        other => Err(format!(
            "unknown scenario {other:?}: expected one of {}",
            names().join(", ")
        )),
    }
}

async fn fractional(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 1) {
        return Ok(());
    }
    if state.gpus_with_room(1, 3000, 30).is_empty() {
        ctx.skip(
            "a usable GPU with 3000 MiB, 30 cores and a task slot free",
            state.describe(),
        );
        return Ok(());
    }
    let inventory = state.inventory.clone();
    ctx.create(pod("hami-fractional", GpuAsk::fraction(3000, 30)))
        .await?;
    let Some(running) = ctx.expect_running("hami-fractional").await? else {
        return Ok(());
    };
    let node = observe::node_name(&running);
    ctx.check(
        "hami-fractional is bound to a GPU node",
        node.as_ref()
            .is_some_and(|n| inventory.nodes.contains_key(n)),
        format!("one of {}", inventory.node_names().join(", ")),
        node.clone().unwrap_or_else(|| "no node".into()),
    );
    match observe::allocation(&running) {
        Some(Ok(containers)) => {
            let devices: Vec<_> = containers.iter().flatten().collect();
            let one =
                devices.len() == 1 && devices[0].usedmem == 3000 && devices[0].usedcores == 30;
            let on_node = devices.first().and_then(|d| inventory.gpu(&d.uuid));
            ctx.check(
                format!("{DEVICES_ALLOCATED} says 3000 MiB and 30 cores on one device"),
                one,
                "one device with 3000 MiB and 30 cores",
                observe::devices_text(&running),
            );
            ctx.check(
                "the allocated device is on the pod's node",
                on_node.as_ref().map(|g| &g.node) == node.as_ref(),
                format!("a device of {}", node.clone().unwrap_or_default()),
                on_node.map_or("an unregistered device".into(), |g| {
                    format!("{} of {}", g.info.id, g.node)
                }),
            );
        }
        Some(Err(e)) => {
            ctx.check(
                format!("{DEVICES_ALLOCATED} decodes"),
                false,
                "a decodable allocation",
                e,
            );
        }
        None => {
            ctx.check(
                format!("{DEVICES_ALLOCATED} is set"),
                false,
                "the annotation",
                "absent",
            );
        }
    }
    let events = ctx.events().await?;
    let about = observe::events_about(&events, "hami-fractional");
    let fits: Vec<_> = observe::messages(&about, "FilteringSucceed")
        .into_iter()
        .filter_map(observe::parse_fit)
        .collect();
    ctx.check(
        "a FilteringSucceed event names the pod's node",
        fits.iter().any(|f| Some(&f.node) == node.as_ref()),
        format!(
            "FilteringSucceed: find fit node({}), ...",
            node.clone().unwrap_or_default()
        ),
        observe::event_lines(&about).join(" | "),
    );
    Ok(())
}

async fn pending(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 1) {
        return Ok(());
    }
    let ask = GpuAsk {
        gpus: Some(1),
        memory_mib: Some(999_999),
        ..Default::default()
    };
    let overrequest = pod("hami-overrequest", ask);
    // The nodes that refuse it for memory, by the product's fit on the observed usage (a node
    // whose every usable GPU is out of task slots refuses it for that instead).
    let verdicts = state.verdicts(&overrequest)?;
    let expected: Vec<String> = verdicts
        .iter()
        .filter(|(_, v)| {
            v.as_ref()
                .is_err_and(|r| r.iter().any(|r| r == "CardInsufficientMemory"))
        })
        .map(|(n, _)| n.clone())
        .collect();
    if verdicts.values().any(Result::is_ok) || expected.is_empty() {
        ctx.skip(
            "every GPU smaller than 999999 MiB, and a GPU node with a usable GPU with a free task slot",
            state.describe(),
        );
        return Ok(());
    }
    ctx.create(overrequest).await?;
    let reasons = ctx.expect_pending("hami-overrequest").await?;
    let seen = reasons
        .get("CardInsufficientMemory")
        .cloned()
        .unwrap_or_default();
    ctx.check(
        "CardInsufficientMemory from every GPU node with a free task slot",
        expected.iter().all(|n| seen.contains(n)),
        format!("CardInsufficientMemory({})", expected.join(",")),
        format!("{reasons:?}"),
    );
    let pod = ctx.pod("hami-overrequest").await?;
    let annotations = pod.metadata.annotations.clone().unwrap_or_default();
    let allocated: Vec<&String> = [DEVICES_ALLOCATED, DEVICES_TO_ALLOCATE, VGPU_NODE]
        .iter()
        .filter(|k| annotations.contains_key(**k))
        .map(|k| &annotations[*k])
        .collect();
    ctx.check(
        "nothing is allocated to the pending pod",
        allocated.is_empty(),
        format!("no {DEVICES_ALLOCATED}, {DEVICES_TO_ALLOCATE} or {VGPU_NODE}"),
        format!("{allocated:?}"),
    );
    let locks = observe::node_locks(&ctx.nodes().await?);
    let held: Vec<String> = locks
        .iter()
        .filter(|(_, v)| v.contains("hami-overrequest"))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    ctx.check(
        "no lock is taken for the pending pod",
        held.is_empty(),
        "no hami.io/mutex.lock naming hami-overrequest",
        if held.is_empty() {
            "none".to_string()
        } else {
            held.join("; ")
        },
    );
    Ok(())
}

async fn placement(ctx: &mut Ctx<'_>) -> Result<(), String> {
    const MEM: u32 = 1000;
    const CORES: u32 = 10;
    for policy in ["binpack", "spread"] {
        let mut names = Vec::new();
        for i in 0..3 {
            let name = format!("hami-placement-{policy}-{i}");
            let p = with_annotations(
                pod(&name, GpuAsk::fraction(MEM, CORES)),
                &[(NODE_SCHEDULER_POLICY, policy)],
            );
            // Where HAMi's policy puts it, from the usage now (earlier replicas included).
            let state = ctx.cluster_state().await?;
            let (_, best) = state.best_nodes(&p)?;
            if best.is_empty() {
                ctx.skip(
                    format!("a GPU node with room for replica {i} of {MEM} MiB / {CORES} cores"),
                    state.describe(),
                );
                return Ok(());
            }
            let scores = state.scores_text(&p);
            ctx.create(p).await?;
            // One at a time, as a Deployment's replicas usually arrive: each sees the last.
            if let Some(running) = ctx.expect_running(&name).await? {
                let node = observe::node_name(&running).unwrap_or_default();
                ctx.check(
                    format!("under {policy} {name} lands where {policy} scores best on the observed usage"),
                    best.contains(&node),
                    format!(
                        "one of {} (node scores before it: {scores})",
                        best.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    node,
                );
            }
            names.push(name);
        }
        let events = ctx.events().await?;
        for name in &names {
            let about = observe::events_about(&events, name);
            let fit = observe::messages(&about, "FilteringSucceed")
                .into_iter()
                .find_map(observe::parse_fit);
            ctx.check(
                format!("{name} has a FilteringSucceed with its node and score"),
                fit.as_ref().is_some_and(|f| f.score().is_some()),
                "find fit node(<node>), ... nodes fit(<node>:<score>, ...)",
                fit.map_or_else(
                    || observe::event_lines(&about).join(" | "),
                    |f| format!("node {} score {:?}", f.node, f.score()),
                ),
            );
        }
        for name in &names {
            ctx.delete_now(name).await?;
        }
    }
    Ok(())
}

async fn sharing(ctx: &mut Ctx<'_>) -> Result<(), String> {
    const PODS: u32 = 10;
    const MEM: u32 = 8000;
    const CORES: u32 = 10;
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 1) {
        return Ok(());
    }
    // The claim is about one GPU nobody else uses; its size is not a precondition (a GPU too
    // small for ten fails the check below, it does not skip).
    let Some(target) = state.largest_idle_gpu().map(|g| g.gpu) else {
        ctx.skip(
            "an idle GPU (no pod holds any of it, healthy, not cordoned)",
            state.describe(),
        );
        return Ok(());
    };
    let uuid = target.info.id.clone();
    ctx.check(
        "the target GPU can hold ten 8000 MiB / 10-core pods",
        target.info.devmem >= PODS * MEM
            && target.info.count >= PODS
            && target.info.devcore >= PODS * CORES,
        format!(
            "{uuid}: >= {} MiB (81920 in the seed's fleet), split >= {PODS}, >= {} cores",
            PODS * MEM,
            PODS * CORES
        ),
        format!(
            "{uuid}: {} MiB, split {}, {} cores",
            target.info.devmem, target.info.count, target.info.devcore
        ),
    );
    let mut names = Vec::new();
    for i in 1..=PODS {
        let name = format!("share-{i:02}");
        ctx.create(pinned(&name, GpuAsk::fraction(MEM, CORES), &uuid))
            .await?;
        names.push(name);
    }
    let pods = ctx.wait_decided(&names).await?;
    let mut running = 0;
    let mut on_target = 0;
    let mut accounts = Vec::new();
    for (name, pod) in names.iter().zip(&pods) {
        if observe::phase(pod) == "Running" {
            running += 1;
        }
        let devices = observe::allocated_devices(pod);
        if devices.len() == 1
            && devices[0].uuid == uuid
            && devices[0].usedmem == MEM
            && devices[0].usedcores == CORES
        {
            on_target += 1;
        }
        if observe::phase(pod) != "Running" {
            accounts.push(ctx.describe(name).await);
        }
    }
    ctx.check(
        format!("ten pods of {MEM} MiB and {CORES} cores are Running on {uuid}"),
        running == PODS && on_target == PODS,
        format!("{PODS} Running, {PODS} allocated {MEM} MiB/{CORES} cores on {uuid}"),
        format!(
            "{running} Running, {on_target} allocated on {uuid}{}",
            if accounts.is_empty() {
                String::new()
            } else {
                format!("; not running: {}", accounts.join("; "))
            }
        ),
    );
    ctx.create(pinned("share-11", GpuAsk::fraction(MEM, CORES), &uuid))
        .await?;
    let reasons = ctx.expect_pending("share-11").await?;
    let expected = observe::fit_reason(&target.info, PODS, PODS * MEM, PODS * CORES, MEM, CORES)
        .unwrap_or("none (the eleventh would fit: the GPU is larger than the seed's)");
    let seen_nodes = reasons.get(expected).cloned().unwrap_or_default();
    ctx.check(
        "the eleventh is refused on the target GPU's node with HAMi's reason",
        seen_nodes.contains(&target.node),
        format!("{expected}({})", target.node),
        format!("{reasons:?}"),
    );
    Ok(())
}

async fn exclusive(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 1) {
        return Ok(());
    }
    if state.largest_idle_gpu().is_none() {
        ctx.skip(
            "an idle GPU for a whole-GPU pod (no pod holds any of it, healthy, not cordoned)",
            state.describe(),
        );
        return Ok(());
    }
    let inventory = state.inventory.clone();
    let whole = GpuAsk {
        gpus: Some(1),
        ..Default::default()
    };
    ctx.create(pod("whole-gpu", whole)).await?;
    let Some(running) = ctx.expect_running("whole-gpu").await? else {
        return Ok(());
    };
    let devices = observe::allocated_devices(&running);
    let gpu = devices.first().and_then(|d| inventory.gpu(&d.uuid));
    let Some(gpu) = gpu else {
        ctx.check(
            "whole-gpu is allocated a registered GPU",
            false,
            "one registered device",
            observe::devices_text(&running),
        );
        return Ok(());
    };
    ctx.check(
        "nvidia.com/gpu: 1 alone takes the whole GPU",
        devices.len() == 1 && devices[0].usedmem == gpu.info.devmem && devices[0].usedcores == 100,
        format!("{} {}MiB/100%", gpu.info.id, gpu.info.devmem),
        observe::devices_text(&running),
    );
    ctx.create(pinned(
        "fraction-on-taken",
        GpuAsk::fraction(1000, 10),
        &gpu.info.id,
    ))
    .await?;
    let reasons = ctx.expect_pending("fraction-on-taken").await?;
    let expected = observe::fit_reason(&gpu.info, 1, gpu.info.devmem, 100, 1000, 10)
        .unwrap_or("CardInsufficientMemory");
    ctx.check(
        "a fractional pod cannot land on the exclusively held GPU",
        reasons.get(expected).is_some_and(|n| n.contains(&gpu.node)),
        format!("{expected}({})", gpu.node),
        format!("{reasons:?}"),
    );
    Ok(())
}

async fn selectors(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 2) {
        return Ok(());
    }
    let inventory = state.inventory.clone();
    let gpus = inventory.gpus();
    // Room for three small pods each: the selectors' pods may land on the same GPU.
    let room: Vec<_> = state
        .gpus_with_room(3, 1000, 10)
        .into_iter()
        .map(|g| g.gpu)
        .collect();
    let (Some(keep), Some(last)) = (room.first().cloned(), room.last().cloned()) else {
        ctx.skip(
            "two usable GPUs with room for three 1000 MiB / 10-core pods",
            state.describe(),
        );
        return Ok(());
    };
    if room.len() < 2 {
        ctx.skip(
            "two usable GPUs with room for three 1000 MiB / 10-core pods",
            state.describe(),
        );
        return Ok(());
    }
    let model = keep.info.device_type.to_string();
    let other_models = gpus.iter().any(|g| *g.info.device_type != *model);
    let other_models_with_room = room.iter().any(|g| *g.info.device_type != *model);
    if other_models && !other_models_with_room {
        ctx.skip(
            format!("room on a GPU of a model other than {model} (the cluster has one, but it is full, cordoned or unhealthy)"),
            state.describe(),
        );
        return Ok(());
    }
    let small = GpuAsk::fraction(1000, 10);

    // use-gputype: the fleet's model lands on it; a model nobody has is refused.
    let p = with_annotations(pod("use-type", small.clone()), &[(USE_GPUTYPE, &model)]);
    ctx.create(p).await?;
    if let Some(running) = ctx.expect_running("use-type").await? {
        let devices = observe::allocated_devices(&running);
        let types: Vec<String> = devices
            .iter()
            .filter_map(|d| inventory.gpu(&d.uuid))
            .map(|g| g.info.device_type.to_string())
            .collect();
        ctx.check(
            format!("{USE_GPUTYPE}={model} lands on a {model}"),
            !types.is_empty() && types.iter().all(|t| t == &model),
            model.clone(),
            format!("{types:?}"),
        );
    }
    let p = with_annotations(
        pod("use-type-absent", small.clone()),
        &[(USE_GPUTYPE, "NVIDIA-NO-SUCH-GPU")],
    );
    ctx.create(p).await?;
    let reasons = ctx.expect_pending("use-type-absent").await?;
    ctx.check(
        format!("{USE_GPUTYPE} of a model nobody has is refused with CardTypeMismatch"),
        reasons.contains_key("CardTypeMismatch"),
        "CardTypeMismatch(<every GPU node>)",
        format!("{reasons:?}"),
    );

    // nouse-gputype: excluding the model lands elsewhere, or nowhere in a one-model fleet.
    let p = with_annotations(pod("nouse-type", small.clone()), &[(NOUSE_GPUTYPE, &model)]);
    ctx.create(p).await?;
    if other_models {
        if let Some(running) = ctx.expect_running("nouse-type").await? {
            let types: Vec<String> = observe::allocated_devices(&running)
                .iter()
                .filter_map(|d| inventory.gpu(&d.uuid))
                .map(|g| g.info.device_type.to_string())
                .collect();
            ctx.check(
                format!("{NOUSE_GPUTYPE}={model} avoids {model}"),
                !types.is_empty() && types.iter().all(|t| t != &model),
                format!("any model but {model}"),
                format!("{types:?}"),
            );
        }
    } else {
        let reasons = ctx.expect_pending("nouse-type").await?;
        ctx.check(
            format!("{NOUSE_GPUTYPE}={model} in a fleet of only {model} is refused"),
            reasons.contains_key("CardTypeMismatch"),
            "CardTypeMismatch",
            format!("{reasons:?}"),
        );
    }

    // use-gpuuuid: the last GPU with room, exactly.
    ctx.create(pinned("use-uuid", small.clone(), &last.info.id))
        .await?;
    if let Some(running) = ctx.expect_running("use-uuid").await? {
        let devices = observe::allocated_devices(&running);
        ctx.check(
            format!("{USE_GPUUUID}={} lands on exactly that GPU", last.info.id),
            devices.len() == 1
                && devices[0].uuid == last.info.id
                && observe::node_name(&running).as_ref() == Some(&last.node),
            format!("{} on {}", last.info.id, last.node),
            format!(
                "{} on {}",
                observe::devices_text(&running),
                observe::node_name(&running).unwrap_or_default()
            ),
        );
    }

    // nouse-gpuuuid: every GPU but one (the first with room) excluded leaves exactly that one.
    let excluded: Vec<&str> = gpus
        .iter()
        .filter(|g| g.info.id != keep.info.id)
        .map(|g| g.info.id.as_str())
        .collect();
    let list = excluded.join(",");
    let p = with_annotations(pod("nouse-uuid", small), &[(NOUSE_GPUUUID, &list)]);
    ctx.create(p).await?;
    if let Some(running) = ctx.expect_running("nouse-uuid").await? {
        let devices = observe::allocated_devices(&running);
        ctx.check(
            format!(
                "{NOUSE_GPUUUID} excluding all GPUs but {} lands on it",
                keep.info.id
            ),
            devices.len() == 1 && devices[0].uuid == keep.info.id,
            keep.info.id.clone(),
            observe::devices_text(&running),
        );
    }
    Ok(())
}

async fn multi_gpu(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    let inventory = state.inventory.clone();
    let mut room_per_node: std::collections::BTreeMap<String, usize> = Default::default();
    for g in state.gpus_with_room(1, 1000, 10) {
        *room_per_node.entry(g.gpu.node).or_default() += 1;
    }
    if !room_per_node.values().any(|n| *n >= 2) {
        ctx.skip(
            "a GPU node with two usable GPUs with room for 1000 MiB / 10 cores each",
            state.describe(),
        );
        return Ok(());
    }
    let ask = GpuAsk {
        gpus: Some(2),
        memory_mib: Some(1000),
        memory_percent: None,
        cores: Some(10),
    };
    ctx.create(pod("two-gpus", ask)).await?;
    let Some(running) = ctx.expect_running("two-gpus").await? else {
        return Ok(());
    };
    let node = observe::node_name(&running);
    let containers = match observe::allocation(&running) {
        Some(Ok(c)) => c,
        other => {
            ctx.check(
                "two-gpus has a decodable allocation",
                false,
                "an allocation",
                format!("{other:?}"),
            );
            return Ok(());
        }
    };
    let devices: Vec<_> = containers.iter().flatten().collect();
    let uuids: BTreeSet<&str> = devices.iter().map(|d| d.uuid.as_str()).collect();
    let nodes: BTreeSet<String> = devices
        .iter()
        .filter_map(|d| inventory.gpu(&d.uuid))
        .map(|g| g.node)
        .collect();
    ctx.check(
        "gpu 2 gets two distinct GPUs in its one container",
        containers.iter().filter(|c| !c.is_empty()).count() == 1
            && devices.len() == 2
            && uuids.len() == 2,
        "one container with two distinct GPUs",
        observe::devices_text(&running),
    );
    ctx.check(
        "both GPUs are on the pod's node",
        nodes.len() == 1 && nodes.iter().next() == node.as_ref(),
        format!("both on {}", node.clone().unwrap_or_default()),
        format!("{nodes:?}"),
    );
    Ok(())
}

async fn churn(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let state = ctx.cluster_state().await?;
    if !require_gpus(ctx, &state, 1) {
        return Ok(());
    }
    let Some(target) = state.largest_idle_gpu().map(|g| g.gpu) else {
        ctx.skip(
            "an idle GPU for the holder to fill (no pod holds any of it, healthy, not cordoned)",
            state.describe(),
        );
        return Ok(());
    };
    let uuid = target.info.id.clone();
    let all_memory = GpuAsk {
        gpus: Some(1),
        memory_mib: Some(target.info.devmem),
        memory_percent: None,
        cores: Some(10),
    };
    ctx.create(pinned("holder", all_memory, &uuid)).await?;
    if ctx.expect_running("holder").await?.is_none() {
        return Ok(());
    }
    ctx.create(pinned("waiter", GpuAsk::fraction(1000, 10), &uuid))
        .await?;
    let reasons = ctx.expect_pending("waiter").await?;
    ctx.check(
        "the waiter is refused while the holder has all the memory",
        reasons
            .get("CardInsufficientMemory")
            .is_some_and(|n| n.contains(&target.node)),
        format!("CardInsufficientMemory({})", target.node),
        format!("{reasons:?}"),
    );
    ctx.delete_now("holder").await?;
    if let Some(running) = ctx.expect_running("waiter").await? {
        let devices = observe::allocated_devices(&running);
        ctx.check(
            "after the holder is deleted the waiter gets the freed GPU",
            devices.len() == 1 && devices[0].uuid == uuid,
            format!("{uuid} 1000MiB/10%"),
            observe::devices_text(&running),
        );
    }
    Ok(())
}

async fn routing(ctx: &mut Ctx<'_>) -> Result<(), String> {
    let scheduler = ctx.driver.scheduler_name.clone();
    let plain = pod("no-gpu", GpuAsk::default());
    let created = ctx.create(plain).await?;
    let name = created
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_default();
    ctx.check(
        "a pod without GPU resources keeps its scheduler",
        name != scheduler,
        "default-scheduler (not routed)",
        name,
    );
    let mut other = pod("other-scheduler", GpuAsk::fraction(1000, 10));
    if let Some(spec) = other.spec.as_mut() {
        spec.scheduler_name = Some("other-scheduler".into());
    }
    let created = ctx.create(other).await?;
    let name = created
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_default();
    ctx.check(
        "a GPU pod for another scheduler keeps its scheduler",
        name == "other-scheduler",
        "other-scheduler",
        name,
    );
    tokio::time::sleep(ctx.driver.waits.settle).await;
    let events = ctx.events().await?;
    for pod_name in ["no-gpu", "other-scheduler"] {
        let pod = ctx.pod(pod_name).await?;
        let annotations = pod.metadata.annotations.clone().unwrap_or_default();
        let hami: Vec<&String> = annotations
            .keys()
            .filter(|k| k.starts_with("hami.io/"))
            .collect();
        let about = observe::events_about(&events, pod_name);
        let scheduler_events: Vec<String> = observe::event_lines(&about)
            .into_iter()
            .filter(|l| l.starts_with("Filtering") || l.starts_with("Binding"))
            .collect();
        ctx.check(
            format!("sliceguard leaves {pod_name} alone"),
            hami.is_empty() && scheduler_events.is_empty(),
            "no hami.io/ annotation, no Filtering/Binding event",
            format!("annotations {hami:?}, events {scheduler_events:?}"),
        );
    }
    Ok(())
}
