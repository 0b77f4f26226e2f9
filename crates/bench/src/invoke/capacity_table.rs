//! The capacity table: throughput, scale-up, the cold start's parts and memory per idle
//! environment, Kappa beside the emulator where the emulator can do the same.

use std::fmt::Write as _;
use std::time::Duration;

use super::capacity::Capacity;
use super::memory::mib;
use super::table::Comparison;
use crate::latency::{LatencySummary, Samples};

/// One row's values; `None` where a side has no such figure.
struct Row {
    figure: String,
    kappa: String,
    emulator: Option<String>,
    ratio: Option<f64>,
}

/// A markdown table with the capacity rows of every function in `capacities`, beside the
/// emulator's figures from its row in `comparisons`.
pub fn capacity_table(comparisons: &[Comparison], capacities: &[Capacity]) -> String {
    let mut table = String::from(
        "| Function | Figure | Kappa | RIE | Kappa / RIE |\n|---|---|---:|---:|---:|\n",
    );
    for capacity in capacities {
        let Some(comparison) = comparisons
            .iter()
            .find(|comparison| comparison.function == capacity.label)
        else {
            continue;
        };
        for row in rows(comparison, capacity) {
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {} |",
                comparison.function,
                row.figure,
                row.kappa,
                row.emulator.unwrap_or_else(|| "–".to_owned()),
                row.ratio
                    .filter(|ratio| ratio.is_finite())
                    .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}×")),
            );
        }
    }
    table
}

fn rows(comparison: &Comparison, capacity: &Capacity) -> Vec<Row> {
    let mut rows = Vec::new();
    let emulator_serial = LatencySummary::of(&comparison.emulator.warm).map(|s| s.ops_per_sec);
    for throughput in [&capacity.throughput.serial, &capacity.throughput.concurrent] {
        let rate = throughput.per_second();
        let clients = match throughput.clients {
            1 => "1 client".to_owned(),
            n => format!("{n} clients"),
        };
        rows.push(Row {
            figure: format!(
                "warm invokes/s, {clients} ({} requests; RIE: 1 client)",
                throughput.requests
            ),
            kappa: format!("{rate:.0}"),
            emulator: emulator_serial.map(|rate| format!("{rate:.0}")),
            ratio: emulator_serial.map(|serial| rate / serial),
        });
    }

    let scale = &capacity.scale_up;
    let count = scale.latencies.latencies.len();
    if let Some(summary) = LatencySummary::of(&scale.latencies) {
        for (name, value) in [("p50", summary.p50), ("max", summary.max)] {
            rows.push(kappa_only(
                format!("scale-up: {count} concurrent first invokes, {name} (ms)"),
                millis(value),
            ));
        }
    }
    rows.push(kappa_only(
        format!("scale-up: {count} concurrent first invokes, all answered (ms)"),
        millis(scale.wall_time()),
    ));
    rows.push(kappa_only(
        "scale-up: answers from a new environment".to_owned(),
        format!("{} of {count}", scale.new_environments),
    ));

    let breakdown = &capacity.breakdown;
    for (name, samples) in [
        ("first invoke", &breakdown.first_invoke),
        (
            "`Init Duration` (sandbox handover, runtime init)",
            &breakdown.init,
        ),
        (
            "remainder (request, event, first response)",
            &breakdown.remainder,
        ),
    ] {
        rows.push(kappa_only(
            format!(
                "cold start p50, {} samples: {name} (ms)",
                samples.latencies.len()
            ),
            p50_millis(samples),
        ));
    }

    let density = &capacity.density;
    let emulator = &capacity.emulator_memory;
    let runtime = emulator.runtime_bytes as f64;
    let emulator_total = (emulator.runtime_bytes + emulator.emulator_bytes) as f64;
    let environments = density.environments;
    rows.push(kappa_only(
        format!("idle environment ({environments} started): cgroup memory (MiB)"),
        format!("{:.1}", mib(density.group_bytes())),
    ));
    rows.push(Row {
        figure: "idle environment: its processes' RSS (MiB; RIE: the runtime's)".to_owned(),
        kappa: format!("{:.1}", mib(density.process_rss_bytes())),
        emulator: Some(format!("{:.1}", mib(runtime))),
        ratio: Some(density.process_rss_bytes() / runtime),
    });
    rows.push(Row {
        figure:
            "idle environment: server RSS growth, zygotes included (MiB; RIE: the emulator's RSS)"
                .to_owned(),
        kappa: format!("{:.1}", mib(density.server_bytes())),
        emulator: Some(format!("{:.1}", mib(emulator.emulator_bytes as f64))),
        ratio: None,
    });
    rows.push(Row {
        figure: "idle environment: host memory (MiB; Kappa: cgroup + server share, RIE: runtime + emulator RSS)"
            .to_owned(),
        kappa: format!("{:.1}", mib(density.host_bytes())),
        emulator: Some(format!("{:.1}", mib(emulator_total))),
        ratio: Some(density.host_bytes() / emulator_total),
    });
    let available = density.available_bytes as f64;
    rows.push(Row {
        figure: format!(
            "idle environments that fit in {:.1} GiB available",
            mib(available) / 1024.0
        ),
        kappa: density.fit().to_string(),
        emulator: Some(format!("{:.0}", (available / emulator_total).floor())),
        ratio: Some(density.host_bytes().recip() * emulator_total),
    });
    rows
}

fn kappa_only(figure: String, kappa: String) -> Row {
    Row {
        figure,
        kappa,
        emulator: None,
        ratio: None,
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

fn p50_millis(samples: &Samples) -> String {
    LatencySummary::of(samples).map_or_else(|| "–".to_owned(), |summary| millis(summary.p50))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoke::breakdown::ColdBreakdown;
    use crate::invoke::density::{EmulatorMemory, KappaDensity};
    use crate::invoke::measure::{Measurements, cold_samples};
    use crate::invoke::memory::GroupsMemory;
    use crate::invoke::scale::ScaleUp;
    use crate::invoke::throughput::{Throughput, Throughputs};

    const MIB: u64 = 1024 * 1024;

    fn measurements(warm_us: u64, count: usize) -> Measurements {
        let warm = vec![Duration::from_micros(warm_us); count];
        let mut warm = cold_samples("warm", warm);
        warm.loop_time = Duration::from_micros(warm_us * count as u64);
        Measurements {
            cold_invoke: warm.clone(),
            cold_from_change: warm.clone(),
            warm,
        }
    }

    fn capacity() -> Capacity {
        let ms = Duration::from_millis;
        let mut scale = cold_samples("scale-up", (1..=100).map(ms).collect());
        scale.loop_time = ms(150);
        Capacity {
            label: "Rust echo",
            throughput: Throughputs {
                serial: Throughput {
                    clients: 1,
                    environments: 8,
                    requests: 15_000,
                    elapsed: Duration::from_secs(5),
                },
                concurrent: Throughput {
                    clients: 8,
                    environments: 8,
                    requests: 40_000,
                    elapsed: Duration::from_secs(5),
                },
            },
            scale_up: ScaleUp {
                latencies: scale,
                new_environments: 100,
            },
            breakdown: ColdBreakdown::of(&[(ms(10), ms(4)), (ms(12), ms(5)), (ms(30), ms(6))]),
            density: KappaDensity {
                environments: 50,
                groups: GroupsMemory {
                    groups: 50,
                    usage_bytes: 500 * MIB,
                    rss_bytes: 400 * MIB,
                },
                server_rss_growth: 100 * MIB as i64,
                available_bytes: 24_000 * MIB,
            },
            emulator_memory: EmulatorMemory {
                emulator_bytes: 8 * MIB,
                runtime_bytes: 4 * MIB,
            },
        }
    }

    #[test]
    fn every_capacity_figure_has_a_row() {
        let table = capacity_table(
            &[Comparison {
                function: "Rust echo".into(),
                kappa: measurements(250, 1000),
                emulator: measurements(500, 1000),
            }],
            &[capacity()],
        );
        for row in [
            "| Rust echo | warm invokes/s, 1 client (15000 requests; RIE: 1 client) | 3000 | 2000 | 1.50× |",
            "| Rust echo | warm invokes/s, 8 clients (40000 requests; RIE: 1 client) | 8000 | 2000 | 4.00× |",
            "| Rust echo | scale-up: 100 concurrent first invokes, p50 (ms) | 50.000 | – | – |",
            "| Rust echo | scale-up: 100 concurrent first invokes, max (ms) | 100.000 | – | – |",
            "| Rust echo | scale-up: 100 concurrent first invokes, all answered (ms) | 150.000 | – | – |",
            "| Rust echo | scale-up: answers from a new environment | 100 of 100 | – | – |",
            "| Rust echo | cold start p50, 3 samples: first invoke (ms) | 12.000 | – | – |",
            "| Rust echo | cold start p50, 3 samples: `Init Duration` (sandbox handover, runtime init) (ms) | 5.000 | – | – |",
            "| Rust echo | cold start p50, 3 samples: remainder (request, event, first response) (ms) | 7.000 | – | – |",
            "| Rust echo | idle environment (50 started): cgroup memory (MiB) | 10.0 | – | – |",
            "| Rust echo | idle environment: its processes' RSS (MiB; RIE: the runtime's) | 8.0 | 4.0 | 2.00× |",
            "| Rust echo | idle environment: server RSS growth, zygotes included (MiB; RIE: the emulator's RSS) | 2.0 | 8.0 | – |",
            "| Rust echo | idle environment: host memory (MiB; Kappa: cgroup + server share, RIE: runtime + emulator RSS) | 12.0 | 12.0 | 1.00× |",
            "| Rust echo | idle environments that fit in 23.4 GiB available | 2000 | 2000 | 1.00× |",
        ] {
            assert!(table.contains(row), "{row} missing from\n{table}");
        }
        assert_eq!(table.lines().count(), 2 + 14);
    }
}
