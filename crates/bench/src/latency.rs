//! Latency samples of one operation and the figures reported for them.

use std::time::Duration;

/// Samples of one operation, measured at the client, and the wall time of the loop that took them.
#[derive(Debug, Clone)]
pub struct Samples {
    pub operation: String,
    pub latencies: Vec<Duration>,
    /// Time spent in the request loop, without any preparation done between requests.
    pub loop_time: Duration,
}

/// What the report shows for one operation.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySummary {
    pub requests: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
    /// Requests per second of the sequential loop.
    pub ops_per_sec: f64,
}

impl LatencySummary {
    /// `None` when there are no samples.
    pub fn of(samples: &Samples) -> Option<Self> {
        let mut sorted = samples.latencies.clone();
        sorted.sort_unstable();
        let max = *sorted.last()?;
        let total: Duration = sorted.iter().sum();
        let mean = total.div_f64(sorted.len() as f64);
        let loop_secs = samples.loop_time.as_secs_f64();
        let ops_per_sec = if loop_secs > 0.0 {
            sorted.len() as f64 / loop_secs
        } else {
            f64::INFINITY
        };
        Some(Self {
            requests: sorted.len(),
            p50: percentile(&sorted, 50),
            p90: percentile(&sorted, 90),
            p99: percentile(&sorted, 99),
            max,
            mean,
            ops_per_sec,
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples: the smallest sample that at least
/// `percent`% of the samples are less than or equal to.
fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (sorted.len() * percent)
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(millis: impl IntoIterator<Item = u64>, loop_ms: u64) -> Samples {
        Samples {
            operation: "Op".into(),
            latencies: millis.into_iter().map(Duration::from_millis).collect(),
            loop_time: Duration::from_millis(loop_ms),
        }
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        // 1..=100 ms in reverse order: the p-th percentile is p ms.
        let summary = LatencySummary::of(&samples((1..=100).rev(), 5050)).unwrap();
        assert_eq!(summary.requests, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p90, Duration::from_millis(90));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
        assert_eq!(summary.mean, Duration::from_micros(50_500));
        assert!((summary.ops_per_sec - 100.0 / 5.05).abs() < 1e-9);
    }

    #[test]
    fn a_single_sample_is_every_percentile() {
        let summary = LatencySummary::of(&samples([3], 3)).unwrap();
        assert_eq!(summary.p50, Duration::from_millis(3));
        assert_eq!(summary.p99, Duration::from_millis(3));
        assert_eq!(summary.max, Duration::from_millis(3));
    }

    #[test]
    fn no_samples_give_no_summary() {
        assert_eq!(LatencySummary::of(&samples([], 0)), None);
    }
}
