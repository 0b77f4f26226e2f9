//! The two markdown tables: bursts from concurrent clients, and per-event latencies of the paced
//! run.

use std::fmt::Write as _;
use std::time::Duration;

use super::load::{Burst, Scenario};
use super::paced::Paced;
use crate::latency::LatencySummary;

/// One row per burst.
pub fn burst_table(bursts: &[Burst]) -> String {
    let mut table = String::from(
        "| Burst | Clients | Events | Accepted events/s | Accept p50 (ms) | Accept p99 (ms) | \
         Accept max (ms) | CPU busy while accepting | Queue empty after (s) | Drained events/s | \
         Peak queue depth | Peak in flight | Environments started |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for burst in bursts {
        let Some(accept) = LatencySummary::of(&burst.accept) else {
            continue;
        };
        let drained_per_sec = accept.requests as f64 / burst.drain.as_secs_f64();
        let cpu = burst.cpu_busy_accepting.map_or_else(
            || "unknown".to_owned(),
            |busy| format!("{:.0}%", busy * 100.0),
        );
        let scenario = match burst.scenario {
            Scenario::WhileAccepting => "run while accepted",
            Scenario::AfterRestart => "workers paused, run after a restart",
        };
        let _ = writeln!(
            table,
            "| {scenario} | {} | {} | {:.0} | {} | {} | {} | {cpu} | {:.2} | {drained_per_sec:.0} \
             | {} | {} | {} |",
            burst.clients,
            accept.requests,
            accept.ops_per_sec,
            millis(accept.p50),
            millis(accept.p99),
            millis(accept.max),
            burst.drain.as_secs_f64(),
            burst.peak_depth,
            burst.peak_in_flight,
            burst.cold_starts,
        );
    }
    table
}

/// One row per figure of the paced run.
pub fn paced_table(paced: &Paced) -> String {
    let mut table = String::from(
        "| Per event (one at a time, warm) | Events | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | \
         mean (ms) |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let figures = [
        ("send → 202 (durably queued)", &paced.accept),
        ("send → handler started", &paced.ran),
        ("send → event finished (queue empty)", &paced.finished),
    ];
    for (figure, samples) in figures {
        let Some(summary) = LatencySummary::of(samples) else {
            continue;
        };
        let _ = writeln!(
            table,
            "| {figure} | {} | {} | {} | {} | {} | {} |",
            summary.requests,
            millis(summary.p50),
            millis(summary.p90),
            millis(summary.p99),
            millis(summary.max),
            millis(summary.mean),
        );
    }
    table
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::Samples;

    fn samples(millis: &[u64], loop_ms: u64) -> Samples {
        Samples {
            operation: "x".into(),
            latencies: millis.iter().map(|ms| Duration::from_millis(*ms)).collect(),
            loop_time: Duration::from_millis(loop_ms),
        }
    }

    #[test]
    fn a_burst_row_shows_rates_and_the_drain() {
        let burst = Burst {
            scenario: Scenario::WhileAccepting,
            clients: 8,
            accept: samples(&[1, 2, 3, 4], 2),
            drain: Duration::from_millis(4),
            peak_depth: 3,
            peak_in_flight: 2,
            cold_starts: 2,
            repeats: 0,
            cpu_busy_accepting: Some(0.5),
        };
        let table = burst_table(&[burst]);
        assert!(
            table.contains(
                "| run while accepted | 8 | 4 | 2000 | 2.000 | 4.000 | 4.000 | 50% | 0.00 | 1000 \
                 | 3 | 2 | 2 |"
            ),
            "{table}"
        );
    }

    #[test]
    fn the_paced_table_has_a_row_per_figure() {
        let paced = Paced {
            accept: samples(&[1], 20),
            ran: samples(&[2], 20),
            finished: samples(&[3], 20),
        };
        let table = paced_table(&paced);
        assert!(
            table.contains("| send → handler started | 1 | 2.000 |"),
            "{table}"
        );
        assert_eq!(table.lines().count(), 5);
    }
}
