//! Events sent one at a time at a modest rate to a warm function: for each, how long until it
//! was acknowledged, until the handler ran, and until the server had finished with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hyper::{Method, StatusCode};

use super::function;
use super::observe::{self, EVENT_MARKER};
use crate::api_connection::ApiConnection;
use crate::latency::Samples;

/// How long the client pauses between two readings of the queue depth after an acknowledgement.
/// A blocking sleep: tokio's timer rounds up to whole milliseconds, which would blur a figure of
/// a few milliseconds, and nothing else runs on the client's thread while it waits.
pub const FINISH_POLL: Duration = Duration::from_micros(250);
/// How long one event may take to leave the queue.
const FINISH_DEADLINE: Duration = Duration::from_secs(30);

/// Per-event latencies of the paced run.
#[derive(Debug, Clone)]
pub struct Paced {
    /// Send → 202.
    pub accept: Samples,
    /// Send → the handler started (the function's clock against the sender's).
    pub ran: Samples,
    /// Send → the queue depth was seen at 0 again.
    pub finished: Samples,
}

/// Warm the function with one synchronous invoke, then send `events` Event invokes, one every
/// `interval`, each waited for until the queue is empty again.
pub async fn run(address: SocketAddr, events: usize, interval: Duration) -> Result<Paced> {
    let mut connection = ApiConnection::open(address).await?;
    let mut gauges = ApiConnection::open(address).await?;
    let path = function::invoke_path();
    // Sequence number 0 starts the environment; the measured events are 1..=events.
    connection
        .send_with_headers(Method::POST, &path, &[], Some(function::event(0)))
        .await
        .and_then(|response| {
            ensure!(
                response.status == StatusCode::OK,
                "the warm-up invoke answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
            Ok(())
        })?;

    let mut accept = Vec::with_capacity(events);
    let mut finished = Vec::with_capacity(events);
    let started = Instant::now();
    for seq in 1..=events as u64 {
        let slot = started + interval * u32::try_from(seq - 1).unwrap_or(u32::MAX);
        tokio::time::sleep_until(slot.into()).await;
        let sent = Instant::now();
        let response = connection
            .send_with_headers(
                Method::POST,
                &path,
                &[("x-amz-invocation-type", "Event")],
                Some(function::event(seq)),
            )
            .await?;
        accept.push(sent.elapsed());
        ensure!(
            response.status == StatusCode::ACCEPTED,
            "the Event invoke of event {seq} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        loop {
            if observe::queue_gauges(&mut gauges).await?.depth == 0 {
                finished.push(sent.elapsed());
                break;
            }
            if sent.elapsed() > FINISH_DEADLINE {
                bail!("event {seq} was still queued after {FINISH_DEADLINE:?}");
            }
            std::thread::sleep(FINISH_POLL);
        }
    }
    let loop_time = started.elapsed();

    let ran = handler_latencies(&mut connection, events).await?;
    let samples = |operation: &str, latencies| Samples {
        operation: operation.to_owned(),
        latencies,
        loop_time,
    };
    Ok(Paced {
        accept: samples("accept", accept),
        ran: samples("ran", ran),
        finished: samples("finished", finished),
    })
}

/// For events 1..=events, the time from sending to the handler's start, from the lines the
/// function printed (the first run of each, should one run twice).
async fn handler_latencies(connection: &mut ApiConnection, events: usize) -> Result<Vec<Duration>> {
    let group = function::log_group();
    let mut first_runs: HashMap<u64, u64> = HashMap::new();
    for line in observe::filter_log_messages(connection, &group, EVENT_MARKER).await? {
        let run = observe::parse_event_line(&line)
            .with_context(|| format!("the function printed an unexpected line: {line:?}"))?;
        let ran_after = run.ran_us.checked_sub(run.sent_us).with_context(|| {
            format!(
                "event {} ran before it was sent; did the clock step?",
                run.seq
            )
        })?;
        first_runs
            .entry(run.seq)
            .and_modify(|us| *us = (*us).min(ran_after))
            .or_insert(ran_after);
    }
    (1..=events as u64)
        .map(|seq| {
            first_runs
                .get(&seq)
                .map(|us| Duration::from_micros(*us))
                .with_context(|| format!("event {seq} was acknowledged but never ran"))
        })
        .collect()
}
