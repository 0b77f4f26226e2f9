//! Warm throughput on Kappa: as many environments as clients are started first, then every client
//! sends invocations back to back over its own keep-alive connection for a fixed time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::BenchFunction;
use super::concurrent::{self, ONE_VCPU_MEMORY_MB, TAIL};
use super::measure::{self, EVENT};
use super::report_line;
use crate::api_connection::ApiConnection;

const SIDE: &str = "Kappa";
/// Unmeasured invocations from every client once the environments exist.
const WARMUP: Duration = Duration::from_secs(1);
/// Bursts of one request per client tried until each client has had its own environment.
const MAX_WARMING_BURSTS: usize = 50;

/// Warm invocations answered by several clients in a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    pub clients: usize,
    /// Environments the function had when the measurement started.
    pub environments: usize,
    pub requests: u64,
    pub elapsed: Duration,
}

impl Throughput {
    pub fn per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// The same function's environments driven by one client, then by several.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughputs {
    pub serial: Throughput,
    pub concurrent: Throughput,
}

/// Create `function` again as `<name>-throughput` (1 vCPU), start `clients` environments, then
/// measure one client, then `clients` clients, for `duration` each.
pub async fn measure(
    address: SocketAddr,
    connection: &mut ApiConnection,
    function: &BenchFunction,
    clients: usize,
    duration: Duration,
) -> Result<Throughputs> {
    let name = format!("{}-throughput", function.name);
    let path = concurrent::create_function(connection, function, &name, ONE_VCPU_MEMORY_MB).await?;
    let mut connections = concurrent::connect(address, clients).await?;
    let mut environments = 0;
    for _ in 0..MAX_WARMING_BURSTS {
        let (answers, back) =
            concurrent::burst(connections, &path, TAIL, Bytes::from_static(EVENT)).await?;
        connections = back;
        for answer in &answers {
            measure::check_echo(&answer.response, SIDE)?;
            if report_line::init_duration_of(&answer.response)?.is_some() {
                environments += 1;
            }
        }
        if environments >= clients {
            break;
        }
    }
    if environments < clients {
        bail!(
            "{clients} concurrent clients started only {environments} environments in \
             {MAX_WARMING_BURSTS} bursts"
        );
    }
    let (mut connections, _) = run_clients(connections, &path, WARMUP).await?;
    let single = connections.split_off(1);
    let (mut connections, serial) = run_clients(connections, &path, duration).await?;
    connections.extend(single);
    let (_, concurrent) = run_clients(connections, &path, duration).await?;
    Ok(Throughputs {
        serial: Throughput {
            clients: 1,
            environments,
            requests: serial.requests,
            elapsed: serial.elapsed,
        },
        concurrent: Throughput {
            clients,
            environments,
            requests: concurrent.requests,
            elapsed: concurrent.elapsed,
        },
    })
}

struct Counted {
    requests: u64,
    elapsed: Duration,
}

/// Every connection invokes back to back until `duration` has passed; how many were answered
/// and when the last one was.
async fn run_clients(
    connections: Vec<ApiConnection>,
    path: &str,
    duration: Duration,
) -> Result<(Vec<ApiConnection>, Counted)> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for mut connection in connections {
        let path = path.to_owned();
        tasks.spawn(async move {
            let mut requests = 0_u64;
            while Instant::now() < deadline {
                let response = measure::invoke(&mut connection, &path, &[]).await?;
                measure::check_echo(&response, SIDE)?;
                requests += 1;
            }
            anyhow::Ok((connection, requests, Instant::now()))
        });
    }
    let mut connections = Vec::new();
    let mut requests = 0;
    let mut finished = started;
    while let Some(joined) = tasks.join_next().await {
        let (connection, count, done) = joined.context("a client task failed")??;
        connections.push(connection);
        requests += count;
        finished = finished.max(done);
    }
    Ok((
        connections,
        Counted {
            requests,
            elapsed: finished.duration_since(started),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_requests_over_elapsed_time() {
        let throughput = Throughput {
            clients: 8,
            environments: 8,
            requests: 25_000,
            elapsed: Duration::from_secs(5),
        };
        assert!((throughput.per_second() - 5000.0).abs() < 1e-9);
        let empty = Throughput {
            elapsed: Duration::ZERO,
            ..throughput
        };
        assert_eq!(empty.per_second(), 0.0);
    }
}
