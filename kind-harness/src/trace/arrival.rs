//! The arrival sequence of one run, as the paper builds it (recipe §1.3, §5.3): the pod rows in file
//! (name) order, shuffled uniformly with the seed; then, if the trace asks for less GPU than
//! `tune` × capacity, clones drawn uniformly with replacement from the original rows are appended
//! while the total GPU request stays within `tune` × capacity (a clone that would pass it ends the
//! sequence); if the trace asks for more, uniformly chosen rows are dropped until it fits.
//!
//! Clones are named `<name>-clone-<k>` (k counts clones from 1), so every arrival has a unique name.

use super::input::PodRow;
use super::rng::Rng;

/// One submitted pod: which original row it copies, and its clone number (0 for the original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Index into the original pod rows.
    pub row: usize,
    /// 0 for the row itself, k > 0 for its k-th clone in this sequence.
    pub clone: u32,
}

impl Arrival {
    /// The arrival's unique pod name.
    pub fn name(&self, rows: &[PodRow]) -> String {
        let base = rows.get(self.row).map_or("pod", |r| r.name.as_str());
        if self.clone == 0 {
            base.to_string()
        } else {
            format!("{base}-clone-{}", self.clone)
        }
    }
}

/// Random stream used for the arrival sequence (independent of the node order and the policies).
pub const ARRIVAL_STREAM: u64 = 1;

/// Builds the arrival sequence for `seed`: shuffle, then resample to `tune` × `capacity_milli`.
pub fn arrival_sequence(
    rows: &[PodRow],
    capacity_milli: u64,
    tune: f64,
    seed: u64,
) -> Vec<Arrival> {
    let mut rng = Rng::stream(seed, ARRIVAL_STREAM);
    let mut sequence: Vec<Arrival> = (0..rows.len())
        .map(|row| Arrival { row, clone: 0 })
        .collect();
    rng.shuffle(&mut sequence);
    let limit = tune * capacity_milli as f64;
    let request = |a: &Arrival| rows.get(a.row).map_or(0, PodRow::gpu_request_milli);
    let mut total: u64 = sequence.iter().map(request).sum();

    if total as f64 > limit {
        while total as f64 > limit && !sequence.is_empty() {
            let dropped = sequence.remove(rng.below(sequence.len()));
            total -= request(&dropped);
        }
        return sequence;
    }

    // Only GPU tasks move the total; without any, there is nothing to resample.
    if rows.iter().all(|r| r.gpu_request_milli() == 0) {
        return sequence;
    }
    let mut clones = vec![0u32; rows.len()];
    // A bound that is never reached in practice (it would need ~100 CPU-only draws per GPU draw)
    // but guarantees termination on any input.
    let max_draws = rows.len().saturating_mul(1000).max(1000);
    for _ in 0..max_draws {
        let row = rng.below(rows.len());
        let extra = rows[row].gpu_request_milli();
        if (total + extra) as f64 > limit {
            break;
        }
        total += extra;
        clones[row] += 1;
        sequence.push(Arrival {
            row,
            clone: clones[row],
        });
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, num_gpu: u32, gpu_milli: u32) -> PodRow {
        PodRow {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 1024,
            num_gpu,
            gpu_milli,
            gpu_spec: vec![],
        }
    }

    fn total(rows: &[PodRow], seq: &[Arrival]) -> u64 {
        seq.iter().map(|a| rows[a.row].gpu_request_milli()).sum()
    }

    #[test]
    fn shuffles_every_row_once_then_appends_clones_up_to_the_limit() {
        let rows: Vec<PodRow> = (0..20)
            .map(|i| {
                row(
                    &format!("p{i}"),
                    u32::from(i % 3 != 0),
                    if i % 3 != 0 { 500 } else { 0 },
                )
            })
            .collect();
        // 13 GPU rows × 500 = 6500 milli of 10 GPUs; tune 1.3 → limit 13000.
        let seq = arrival_sequence(&rows, 10_000, 1.3, 42);
        let mut originals: Vec<usize> =
            seq.iter().filter(|a| a.clone == 0).map(|a| a.row).collect();
        assert_ne!(originals, (0..20).collect::<Vec<_>>(), "shuffled");
        originals.sort_unstable();
        assert_eq!(originals, (0..20).collect::<Vec<_>>());
        assert!(
            seq[..20].iter().all(|a| a.clone == 0),
            "originals come first"
        );
        let t = total(&rows, &seq);
        assert!(t <= 13_000 && t > 13_000 - 500, "{t}");
        let names: std::collections::HashSet<String> = seq.iter().map(|a| a.name(&rows)).collect();
        assert_eq!(names.len(), seq.len(), "names are unique");
        assert_eq!(
            seq,
            arrival_sequence(&rows, 10_000, 1.3, 42),
            "deterministic"
        );
        assert_ne!(seq, arrival_sequence(&rows, 10_000, 1.3, 43));
    }

    #[test]
    fn drops_rows_when_the_trace_asks_too_much() {
        let rows: Vec<PodRow> = (0..10).map(|i| row(&format!("p{i}"), 1, 1000)).collect();
        let seq = arrival_sequence(&rows, 5_000, 1.3, 1);
        assert_eq!(seq.len(), 6);
        assert!(total(&rows, &seq) <= 6_500);
        assert!(seq.iter().all(|a| a.clone == 0));
    }

    #[test]
    fn cpu_only_traces_are_not_resampled() {
        let rows: Vec<PodRow> = (0..5).map(|i| row(&format!("p{i}"), 0, 0)).collect();
        assert_eq!(arrival_sequence(&rows, 1000, 1.3, 3).len(), 5);
        assert!(arrival_sequence(&[], 1000, 1.3, 3).is_empty());
    }
}
