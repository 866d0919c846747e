//! Timing: medians of repeated samples, run in interleaved rounds so that every variant of a
//! comparison sees the same machine load.

use std::time::{Duration, Instant};

/// One measured variant: a closure that runs one sample and returns how many units (messages,
/// round trips) it did and how long the measured part took.
pub struct Variant<'a> {
    /// Its name in the report.
    pub name: &'static str,
    run: Box<dyn FnMut() -> (u64, Duration) + 'a>,
    per_unit: Vec<f64>,
}

impl<'a> Variant<'a> {
    /// A variant whose sample runs `run`.
    pub fn new(name: &'static str, run: impl FnMut() -> (u64, Duration) + 'a) -> Self {
        Variant {
            name,
            run: Box::new(run),
            per_unit: Vec::new(),
        }
    }

    /// The median time per unit over all samples, in nanoseconds.
    pub fn median_ns(&self) -> f64 {
        median(&self.per_unit)
    }

    /// Units per second at the median.
    pub fn rate(&self) -> f64 {
        1e9 / self.median_ns()
    }

    /// The least time per unit over all samples (the best sample), in nanoseconds.
    pub fn min_ns(&self) -> f64 {
        self.per_unit
            .iter()
            .copied()
            .fold(f64::NAN, |m, x| if m.is_nan() { x } else { m.min(x) })
    }

    /// Units per second in the best sample.
    pub fn best_rate(&self) -> f64 {
        1e9 / self.min_ns()
    }
}

/// Runs `rounds` rounds; each round runs one sample of every variant, in order.
pub fn interleave(variants: &mut [Variant<'_>], rounds: usize) {
    for _ in 0..rounds {
        for v in variants.iter_mut() {
            let (units, took) = (v.run)();
            v.per_unit
                .push(took.as_nanos() as f64 / units.max(1) as f64);
        }
    }
}

/// Times `f`, which does `units` units of work.
pub fn time(units: u64, f: impl FnOnce()) -> (u64, Duration) {
    let start = Instant::now();
    f();
    (units, start.elapsed())
}

/// The median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A duration in nanoseconds, printed with a unit that keeps three significant digits.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}
