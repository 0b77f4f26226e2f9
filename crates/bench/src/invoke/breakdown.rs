//! Kappa's cold start in parts: each first invocation's latency, and the `Init Duration` its
//! `REPORT` line gives (the runtime's init inside the sandbox, up to its first `/next`). What
//! remains is starting the sandbox, handing it the invocation and the first response.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use hyper::{Method, StatusCode};

use super::BenchFunction;
use super::concurrent::{self, TAIL};
use super::measure;
use super::report_line;
use crate::api_connection::ApiConnection;
use crate::latency::Samples;

const SIDE: &str = "Kappa";
/// The memory size of the cold-start figures above (CreateFunction's default).
const DEFAULT_MEMORY_MB: u32 = 128;

/// Per cold start: the whole first invocation, and the runtime's init within it.
#[derive(Debug, Clone)]
pub struct ColdBreakdown {
    pub first_invoke: Samples,
    pub init: Samples,
    /// First invoke minus init, sample by sample.
    pub remainder: Samples,
}

impl ColdBreakdown {
    /// Pair each first invocation with its init duration.
    pub fn of(parts: &[(Duration, Duration)]) -> Self {
        let samples = |operation: &str, pick: &dyn Fn(&(Duration, Duration)) -> Duration| {
            measure::cold_samples(operation, parts.iter().map(pick).collect())
        };
        Self {
            first_invoke: samples("first invoke", &|(total, _)| *total),
            init: samples("init", &|(_, init)| *init),
            remainder: samples("remainder", &|(total, init)| total.saturating_sub(*init)),
        }
    }
}

/// Create `function` again as `<name>-cold` (default memory size, as the cold-start figures
/// above) and start `rounds` new environments, one after the other, by changing its description.
pub async fn measure(
    connection: &mut ApiConnection,
    function: &BenchFunction,
    rounds: usize,
) -> Result<ColdBreakdown> {
    let name = format!("{}-cold", function.name);
    let path = concurrent::create_function(connection, function, &name, DEFAULT_MEMORY_MB).await?;
    let configuration_path = format!("/2015-03-31/functions/{name}/configuration");
    let mut parts = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let update = Bytes::from(format!(
            r#"{{"Description":"kappa-bench cold start breakdown {round}"}}"#
        ));
        connection
            .expect(
                Method::PUT,
                &configuration_path,
                Some(update),
                StatusCode::OK,
            )
            .await
            .context("changing the configuration to force a new environment")?;
        let sent = Instant::now();
        let response = measure::invoke(connection, &path, TAIL).await?;
        let latency = sent.elapsed();
        measure::check_echo(&response, SIDE)?;
        let init = report_line::init_duration_of(&response)?.with_context(|| {
            format!(
                "the invocation after UpdateFunctionConfiguration of {name} was not a cold start"
            )
        })?;
        parts.push((latency, init));
    }
    Ok(ColdBreakdown::of(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remainder_is_taken_sample_by_sample() {
        let ms = Duration::from_millis;
        let breakdown = ColdBreakdown::of(&[(ms(10), ms(4)), (ms(50), ms(45)), (ms(3), ms(5))]);
        assert_eq!(breakdown.first_invoke.latencies, [ms(10), ms(50), ms(3)]);
        assert_eq!(breakdown.init.latencies, [ms(4), ms(45), ms(5)]);
        // An init reported longer than the whole request (clock rounding) counts as zero.
        assert_eq!(breakdown.remainder.latencies, [ms(6), ms(5), ms(0)]);
    }
}
