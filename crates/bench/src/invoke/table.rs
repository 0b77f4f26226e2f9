//! The side-by-side table: each figure for Kappa and the emulator, and their ratio.

use std::fmt::Write as _;
use std::time::Duration;

use super::measure::Measurements;
use crate::latency::{LatencySummary, Samples};

/// Both sides' figures for one function.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub function: String,
    pub kappa: Measurements,
    pub emulator: Measurements,
}

/// Which statistic of a summary a row shows.
#[derive(Debug, Clone, Copy)]
enum Statistic {
    P50,
    P90,
    P99,
    Max,
    Mean,
}

impl Statistic {
    fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
            Self::Max => "max",
            Self::Mean => "mean",
        }
    }

    fn of(self, summary: &LatencySummary) -> Duration {
        match self {
            Self::P50 => summary.p50,
            Self::P90 => summary.p90,
            Self::P99 => summary.p99,
            Self::Max => summary.max,
            Self::Mean => summary.mean,
        }
    }
}

/// One group of rows: a kind of measurement and the statistics shown for it.
struct Figure {
    name: &'static str,
    statistics: &'static [Statistic],
    samples: fn(&Measurements) -> &Samples,
}

const FIGURES: [Figure; 3] = [
    Figure {
        name: "warm invoke",
        statistics: &[
            Statistic::P50,
            Statistic::P90,
            Statistic::P99,
            Statistic::Mean,
        ],
        samples: |m| &m.warm,
    },
    // With tens of cold starts, p99 is the maximum.
    Figure {
        name: "cold start: first invoke",
        statistics: &[Statistic::P50, Statistic::P90, Statistic::Max],
        samples: |m| &m.cold_invoke,
    },
    Figure {
        name: "cold start: new config/process → answer",
        statistics: &[Statistic::P50, Statistic::P90, Statistic::Max],
        samples: |m| &m.cold_from_change,
    },
];

/// A markdown table with one row per function and figure.
pub fn comparison_table(comparisons: &[Comparison]) -> String {
    let mut table = String::from(
        "| Function | Figure | Samples | Kappa (ms) | RIE (ms) | Kappa / RIE |\n\
         |---|---|---:|---:|---:|---:|\n",
    );
    for comparison in comparisons {
        for figure in &FIGURES {
            let kappa = LatencySummary::of((figure.samples)(&comparison.kappa));
            let emulator = LatencySummary::of((figure.samples)(&comparison.emulator));
            let (Some(kappa), Some(emulator)) = (kappa, emulator) else {
                continue;
            };
            for statistic in figure.statistics {
                let kappa_value = statistic.of(&kappa);
                let emulator_value = statistic.of(&emulator);
                let _ = writeln!(
                    table,
                    "| {} | {} {} | {} | {} | {} | {} |",
                    comparison.function,
                    figure.name,
                    statistic.name(),
                    kappa.requests,
                    millis(kappa_value),
                    millis(emulator_value),
                    ratio(kappa_value, emulator_value),
                );
            }
        }
    }
    table
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

fn ratio(kappa: Duration, emulator: Duration) -> String {
    if emulator.is_zero() {
        "–".to_owned()
    } else {
        format!("{:.2}×", kappa.as_secs_f64() / emulator.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::measure::cold_samples;

    fn measurements(warm_us: u64, cold_ms: u64) -> Measurements {
        let warm = (1..=100).map(|i| Duration::from_micros(warm_us * i / 50));
        Measurements {
            warm: cold_samples("warm", warm.collect()),
            cold_invoke: cold_samples("cold", vec![Duration::from_millis(cold_ms); 4]),
            cold_from_change: cold_samples("from", vec![Duration::from_millis(cold_ms + 1); 4]),
        }
    }

    #[test]
    fn each_figure_has_both_sides_and_the_ratio() {
        let table = comparison_table(&[Comparison {
            function: "Rust echo".into(),
            kappa: measurements(300, 9),
            emulator: measurements(200, 3),
        }]);
        assert!(table.contains("| Rust echo | warm invoke p50 | 100 | 0.300 | 0.200 | 1.50× |"));
        assert!(table.contains("| Rust echo | warm invoke p99 | 100 | 0.594 | 0.396 | 1.50× |"));
        assert!(
            table.contains(
                "| Rust echo | cold start: first invoke max | 4 | 9.000 | 3.000 | 3.00× |"
            )
        );
        assert!(table.contains(
            "| Rust echo | cold start: new config/process → answer p50 | 4 | 10.000 | 4.000 | 2.50× |"
        ));
        assert_eq!(table.lines().count(), 2 + 4 + 3 + 3);
    }

    #[test]
    fn a_zero_denominator_has_no_ratio() {
        assert_eq!(ratio(Duration::from_millis(1), Duration::ZERO), "–");
    }
}
