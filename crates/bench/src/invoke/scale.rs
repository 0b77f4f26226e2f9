//! Scale-up on Kappa: many first invocations of a function that has no environment yet, sent at
//! the same moment over separate connections; every answer is checked.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;

use super::BenchFunction;
use super::concurrent::{self, ONE_VCPU_MEMORY_MB, TAIL};
use super::measure::{self, EVENT};
use super::report_line;
use crate::api_connection::ApiConnection;
use crate::latency::Samples;

const SIDE: &str = "Kappa";

/// The answers to one burst of first invocations.
#[derive(Debug, Clone)]
pub struct ScaleUp {
    /// Each request's latency; the loop time is the burst's wall time.
    pub latencies: Samples,
    /// Answers whose `REPORT` line carried an `Init Duration`: environments started.
    pub new_environments: usize,
}

impl ScaleUp {
    pub fn wall_time(&self) -> Duration {
        self.latencies.loop_time
    }
}

/// Create `function` again as `<name>-scale` (1 vCPU) and send it `count` invocations at once.
pub async fn measure(
    address: SocketAddr,
    connection: &mut ApiConnection,
    function: &BenchFunction,
    count: usize,
) -> Result<ScaleUp> {
    let name = format!("{}-scale", function.name);
    let path = concurrent::create_function(connection, function, &name, ONE_VCPU_MEMORY_MB).await?;
    let connections = concurrent::connect(address, count).await?;
    let (answers, _) =
        concurrent::burst(connections, &path, TAIL, Bytes::from_static(EVENT)).await?;
    let mut new_environments = 0;
    for answer in &answers {
        measure::check_echo(&answer.response, SIDE)?;
        if report_line::init_duration_of(&answer.response)?.is_some() {
            new_environments += 1;
        }
    }
    Ok(ScaleUp {
        latencies: Samples {
            operation: "scale-up".to_owned(),
            latencies: answers.iter().map(concurrent::Answer::latency).collect(),
            loop_time: concurrent::wall_time(&answers),
        },
        new_environments,
    })
}
