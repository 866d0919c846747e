//! The round-trip tables: every client against one peer, in interleaved rounds, as rates and
//! as ratios to the hand-written floor of the same run.

use std::time::Instant;

use crate::engine_report::log;
use crate::rtt::{Client, Peer};
use crate::stats::{interleave, Variant};
use crate::Row;

/// Measures `clients` against `peer`, `n` round trips per sample, in `rounds` rounds. The
/// first client is the baseline.
pub fn run(
    group: &'static str,
    case: &str,
    peer: &Peer,
    clients: &[Client],
    n: u64,
    rounds: usize,
) -> Vec<Row> {
    let mut variants: Vec<Variant<'_>> = clients
        .iter()
        .map(|&c| Variant::new(c.name(), move || c.sample(peer, n)))
        .collect();
    let started = Instant::now();
    interleave(&mut variants, rounds);
    log(&format!(
        "{group} {case}: {rounds} rounds of {n} round trips in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    rows(group, case, &variants)
}

/// Rows for measured variants, the first being the baseline: the ratio of the medians, and in
/// the absolute figure, the best sample's rate and its ratio to the floor's best.
pub fn rows(group: &'static str, case: &str, variants: &[Variant<'_>]) -> Vec<Row> {
    let floor = variants[0].rate();
    let floor_best = variants[0].best_rate();
    variants
        .iter()
        .map(|v| Row {
            group,
            case: case.to_owned(),
            measure: v.name.to_owned(),
            absolute: format!(
                "{:.0} round trips/s (best {:.0}, {:.2}×)",
                v.rate(),
                v.best_rate(),
                v.best_rate() / floor_best
            ),
            ratio: v.rate() / floor,
            baseline: "floor",
        })
        .collect()
}
