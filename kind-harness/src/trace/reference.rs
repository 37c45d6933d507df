//! The paper's baselines, re-implemented from the artifact (`hkust-adsl/kubernetes-scheduler-simulator`,
//! `pkg/simulator/plugin/{best_fit,fgd,random}_score.go`, `open_gpu_share.go`) to calibrate this
//! replay against the published numbers. They work on the harness's [`Cluster`] mirror, not through
//! sliceguard's core, and exist only so that "our replay of BestFit gives the paper's BestFit" can be
//! checked; every sliceguard policy goes through the core ([`super::placer::CorePlacer`]).
//!
//! Common to all three, as in the artifact: a node is feasible when kube-scheduler's filters pass
//! (CPU, memory, pods), the model is allowed, and the GPU part fits (a GPU with at least `gpu_milli`
//! left for a sharing task, `num_gpu` entirely free GPUs otherwise). Scores are integers 0–100; the
//! highest wins and ties go to the smallest node name, i.e. the seeded rank. Whole-GPU tasks take the
//! lowest-index free GPUs.
//!
//! - **BestFit**: `int(100 · (1 − [0.5·(cpu_left − cpu)/128000 + 0.5·(gpu_left − gpu)/8000]))`, then
//!   min-max normalised (which never changes the winner, so it is skipped); a sharing task takes the
//!   GPU with the least milli left that still fits (lowest index on ties).
//! - **FGD**: `int(100 · sigmoid((F_before − F_after)/1000))` with F the node's expected fragmentation
//!   including host CPU ([`super::metrics::node_frag`]), typical tasks from the original trace; a
//!   sharing task takes the GPU with the best such score (lowest index on ties).
//! - **Random**: a uniformly random feasible node; a sharing task takes a random fitting GPU.

use super::cluster::{Cluster, ClusterNode, DeviceGrant};
use super::input::PodRow;
use super::metrics::{TypicalTask, node_frag};
use super::placer::{Choice, Placer, PlacerError, ReferencePolicy};
use super::rng::Rng;
use std::time::{Duration, Instant};

/// Random stream of the Random policy.
pub const RANDOM_POLICY_STREAM: u64 = 3;

/// The artifact's normalisers: 128 cores, 8 GPUs.
const MAX_SPEC_CPU: f64 = 128_000.0;
const MAX_SPEC_GPU: f64 = 8_000.0;

/// A paper baseline as a placer.
#[derive(Debug)]
pub struct ReferencePlacer {
    policy: ReferencePolicy,
    typical: Vec<TypicalTask>,
    rng: Rng,
    decisions: u64,
    decision_time: Duration,
}

impl ReferencePlacer {
    /// A placer for `policy`; `typical` is FGD's typical workload, `seed` drives Random.
    pub fn new(policy: ReferencePolicy, typical: Vec<TypicalTask>, seed: u64) -> Self {
        ReferencePlacer {
            policy,
            typical,
            rng: Rng::stream(seed, RANDOM_POLICY_STREAM),
            decisions: 0,
            decision_time: Duration::ZERO,
        }
    }

    /// The GPUs the task would get on `node` by the "best" rule, or `None` when it does not fit.
    fn best_gpus(node: &ClusterNode, pod: &PodRow) -> Option<Vec<usize>> {
        if pod.is_sharing() {
            node.gpus
                .iter()
                .enumerate()
                .filter(|(_, g)| g.milli_left() >= pod.gpu_milli)
                .min_by_key(|(i, g)| (g.milli_left(), *i))
                .map(|(i, _)| vec![i])
        } else {
            free_gpus(node, pod.num_gpu as usize)
        }
    }

    fn choose(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        offered: &[usize],
    ) -> Option<(usize, Vec<usize>)> {
        let feasible: Vec<(usize, Vec<usize>)> = offered
            .iter()
            .filter(|&&i| pod.allows_model(&cluster.nodes[i].model))
            .filter_map(|&i| {
                if pod.num_gpu == 0 {
                    Some((i, Vec::new()))
                } else {
                    Self::best_gpus(&cluster.nodes[i], pod).map(|g| (i, g))
                }
            })
            .collect();
        if feasible.is_empty() {
            return None;
        }
        match self.policy {
            ReferencePolicy::Random => {
                let (node, best) = feasible[self.rng.below(feasible.len())].clone();
                if pod.is_sharing() {
                    let fitting: Vec<usize> = (0..cluster.nodes[node].gpus.len())
                        .filter(|&g| cluster.nodes[node].gpus[g].milli_left() >= pod.gpu_milli)
                        .collect();
                    let pick = fitting.get(self.rng.below(fitting.len())).copied();
                    Some((node, pick.map_or(best, |g| vec![g])))
                } else {
                    Some((node, best))
                }
            }
            ReferencePolicy::BestFit => pick_max(
                cluster,
                feasible.into_iter().map(|(i, gpus)| {
                    let n = &cluster.nodes[i];
                    let cpu_term = (n.cpu_left() as f64 - pod.cpu_milli as f64) / MAX_SPEC_CPU;
                    let gpu_term =
                        (n.milli_left() as f64 - pod.gpu_request_milli() as f64) / MAX_SPEC_GPU;
                    let score = ((1.0 - (0.5 * cpu_term + 0.5 * gpu_term)) * 100.0) as i64;
                    (i, score, gpus)
                }),
            ),
            ReferencePolicy::Fgd => {
                let typical = &self.typical;
                pick_max(
                    cluster,
                    feasible.into_iter().map(|(i, gpus)| {
                        let n = &cluster.nodes[i];
                        let before = node_frag(n, typical);
                        let score_with = |chosen: &[usize]| {
                            let mut after = n.clone();
                            after.cpu_requested += pod.cpu_milli;
                            for &g in chosen {
                                after.gpus[g].milli += pod.gpu_milli;
                            }
                            fgd_score(before - node_frag(&after, typical))
                        };
                        if pod.is_sharing() {
                            let mut best: Option<(i64, usize)> = None;
                            for g in 0..n.gpus.len() {
                                if n.gpus[g].milli_left() >= pod.gpu_milli {
                                    let s = score_with(&[g]);
                                    if best.is_none_or(|(b, _)| s > b) {
                                        best = Some((s, g));
                                    }
                                }
                            }
                            let (score, g) =
                                best.unwrap_or((0, gpus.first().copied().unwrap_or(0)));
                            (i, score, vec![g])
                        } else {
                            let score = score_with(&gpus);
                            (i, score, gpus)
                        }
                    }),
                )
            }
        }
    }
}

/// `int(100 · sigmoid(reduction / 1000))`.
fn fgd_score(reduction_milli: f64) -> i64 {
    (100.0 / (1.0 + (-reduction_milli / 1000.0).exp())) as i64
}

/// The `count` lowest-index entirely free GPUs, if the node has that many.
fn free_gpus(node: &ClusterNode, count: usize) -> Option<Vec<usize>> {
    let free: Vec<usize> = (0..node.gpus.len())
        .filter(|&g| node.gpus[g].milli == 0)
        .take(count)
        .collect();
    (free.len() == count).then_some(free)
}

/// The highest score; ties to the smallest node name.
fn pick_max(
    cluster: &Cluster,
    scored: impl Iterator<Item = (usize, i64, Vec<usize>)>,
) -> Option<(usize, Vec<usize>)> {
    let mut best: Option<(usize, i64, Vec<usize>)> = None;
    for (i, score, gpus) in scored {
        let better = match &best {
            None => true,
            Some((b, s, _)) => {
                score > *s || (score == *s && cluster.nodes[i].name < cluster.nodes[*b].name)
            }
        };
        if better {
            best = Some((i, score, gpus));
        }
    }
    best.map(|(i, _, g)| (i, g))
}

impl Placer for ReferencePlacer {
    fn place_gpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        _name: &str,
        offered: &[usize],
    ) -> Result<Option<Choice>, PlacerError> {
        let started = Instant::now();
        let chosen = self.choose(cluster, pod, offered);
        self.decision_time += started.elapsed();
        self.decisions += 1;
        Ok(chosen.map(|(node, gpus)| {
            let devmem = cluster.nodes[node].devmem;
            let cores = if pod.is_sharing() {
                pod.gpu_milli / 10
            } else {
                100
            };
            Choice {
                node,
                grants: gpus
                    .into_iter()
                    .map(|gpu| DeviceGrant {
                        gpu,
                        cores,
                        memory_mib: u64::from(devmem) * u64::from(cores) / 100,
                    })
                    .collect(),
            }
        }))
    }

    fn place_cpu(
        &mut self,
        cluster: &Cluster,
        pod: &PodRow,
        _name: &str,
        offered: &[usize],
    ) -> Option<usize> {
        self.choose(cluster, pod, offered).map(|(n, _)| n)
    }

    fn places_cpu_pods(&self) -> bool {
        true
    }

    fn decision_stats(&self) -> (u64, Duration) {
        (self.decisions, self.decision_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::input::NodeRow;

    fn node(name: &str, cpu: u64, gpus: u32) -> NodeRow {
        NodeRow {
            name: name.into(),
            cpu_milli: cpu,
            memory_mib: 1 << 20,
            gpus,
            model: "T4".into(),
        }
    }

    fn pod(cpu: u64, num_gpu: u32, milli: u32) -> PodRow {
        PodRow {
            name: "p".into(),
            cpu_milli: cpu,
            memory_mib: 1,
            num_gpu,
            gpu_milli: milli,
            gpu_spec: vec![],
        }
    }

    fn grant(gpu: usize, cores: u32) -> DeviceGrant {
        DeviceGrant {
            gpu,
            cores,
            memory_mib: 0,
        }
    }

    #[test]
    fn best_fit_prefers_the_tightest_node_and_gpu() {
        let rows = [node("a", 64_000, 2), node("b", 64_000, 2)];
        let mut c = Cluster::new(&rows, 20, 110, 1);
        c.apply(1, &pod(0, 1, 500), &[grant(0, 50)]).unwrap();
        c.apply(1, &pod(0, 1, 300), &[grant(1, 30)]).unwrap();
        let mut p = ReferencePlacer::new(ReferencePolicy::BestFit, vec![], 1);
        // b has less GPU left; on b, GPU 0 (500 left) is tighter than GPU 1 (700 left).
        let choice = p
            .place_gpu(&c, &pod(1000, 1, 400), "x", &[0, 1])
            .unwrap()
            .unwrap();
        assert_eq!((choice.node, choice.grants[0].gpu), (1, 0));
        // A whole GPU does not fit on b.
        let choice = p
            .place_gpu(&c, &pod(1000, 1, 1000), "x", &[0, 1])
            .unwrap()
            .unwrap();
        assert_eq!((choice.node, choice.grants[0].gpu), (0, 0));
        assert!(
            p.place_gpu(&c, &pod(1000, 2, 1000), "x", &[1])
                .unwrap()
                .is_none()
        );
        assert_eq!(p.decision_stats().0, 3);
    }

    #[test]
    fn fgd_avoids_stranding_and_random_stays_feasible() {
        let rows = [node("a", 64_000, 1), node("b", 64_000, 1)];
        let mut c = Cluster::new(&rows, 20, 110, 1);
        c.apply(0, &pod(0, 1, 500), &[grant(0, 50)]).unwrap();
        // Typical work: whole GPUs. a's 500 left is a fragment (F_a = 500); filling it removes it
        // (score int(100·sigmoid(0.5)) = 62), while using b's idle GPU creates one (37).
        let typical = vec![TypicalTask {
            cpu_milli: 0,
            gpu_milli: 1000,
            num_gpu: 1,
            gpu_spec: vec![],
            p: 1.0,
        }];
        let mut fgd = ReferencePlacer::new(ReferencePolicy::Fgd, typical, 1);
        let choice = fgd
            .place_gpu(&c, &pod(0, 1, 500), "x", &[0, 1])
            .unwrap()
            .unwrap();
        assert_eq!(choice.node, 0, "filling a's half GPU removes a fragment");
        assert_eq!(choice.grants[0].cores, 50);

        let mut random = ReferencePlacer::new(ReferencePolicy::Random, vec![], 7);
        for _ in 0..20 {
            let choice = random
                .place_gpu(&c, &pod(0, 1, 600), "x", &[0, 1])
                .unwrap()
                .unwrap();
            assert_eq!(choice.node, 1, "only b has 600 left");
        }
        assert_eq!(fgd_score(0.0), 50);
        assert!(fgd_score(1000.0) > fgd_score(0.0));
    }
}
