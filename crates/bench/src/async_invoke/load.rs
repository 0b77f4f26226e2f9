//! A burst of Event invokes from concurrent clients: how fast the server acknowledges them
//! durably, and how long it takes to run them all, either while they arrive or after a restart
//! that lets a queue filled with the workers paused run.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hyper::{Method, StatusCode};
use tokio::task::JoinSet;

use super::cpu::CpuTimes;
use super::function;
use super::observe::{self, COLD_START_MARKER, EVENT_MARKER, QueueGauges};
use crate::api_connection::ApiConnection;
use crate::latency::Samples;
use crate::machine::PROC_ROOT;
use crate::server_process::KappaServer;

/// How often the queue gauges are read while the events drain.
pub const GAUGE_POLL: Duration = Duration::from_millis(10);
/// How long the queue may take to empty before the run is abandoned.
const DRAIN_DEADLINE: Duration = Duration::from_secs(600);
/// `kappa server` arguments that keep every event queued: with an account concurrency of 0 the
/// workers take nothing from the queue.
pub const PAUSED_WORKERS: [&str; 2] = ["--concurrency-limit", "0"];

/// Whether the events run while they are being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// A server with default settings: the workers run events while more arrive.
    WhileAccepting,
    /// A server started with [`PAUSED_WORKERS`] accepts the burst; then it is restarted with
    /// default settings and runs the queue.
    AfterRestart,
}

/// What one burst measured.
#[derive(Debug, Clone)]
pub struct Burst {
    pub scenario: Scenario,
    pub clients: usize,
    /// Client-side accept latencies; the loop time runs from the first send to the last 202.
    pub accept: Samples,
    /// Until the queue was seen empty with nothing in flight: from the first send
    /// ([`Scenario::WhileAccepting`]), or from starting the new process after the old one
    /// stopped ([`Scenario::AfterRestart`]).
    pub drain: Duration,
    pub peak_depth: u64,
    pub peak_in_flight: u64,
    /// Environments started (REPORT lines with an init duration).
    pub cold_starts: usize,
    /// Times the function ran beyond once per event (at-least-once delivery).
    pub repeats: usize,
    /// Share of the machine's CPU time that was busy from the first send to the last 202.
    pub cpu_busy_accepting: Option<f64>,
}

/// Send `events` Event invokes from `clients` keep-alive connections, each sending its next event
/// when the previous one is acknowledged, and measure how long the queue takes to empty. The
/// server must have been started with [`PAUSED_WORKERS`] for [`Scenario::AfterRestart`].
pub async fn run(
    server: &mut KappaServer,
    events: usize,
    clients: usize,
    scenario: Scenario,
    startup_timeout: Duration,
) -> Result<Burst> {
    let mut connections = Vec::with_capacity(clients);
    for _ in 0..clients {
        connections.push(ApiConnection::open(server.address()).await?);
    }
    let all_acknowledged = Arc::new(AtomicBool::new(false));
    let (accepted, watch) = match scenario {
        Scenario::WhileAccepting => {
            let watch_connection = ApiConnection::open(server.address()).await?;
            let started = Instant::now();
            let watcher = tokio::spawn(watch_drain(
                watch_connection,
                started,
                Arc::clone(&all_acknowledged),
            ));
            let accepted = send_burst(connections, events).await?;
            all_acknowledged.store(true, Ordering::SeqCst);
            let watch = watcher.await.context("the queue watcher failed")??;
            (accepted, watch)
        }
        Scenario::AfterRestart => {
            let accepted = send_burst(connections, events).await?;
            let mut connection = ApiConnection::open(server.address()).await?;
            let gauges = observe::queue_gauges(&mut connection).await?;
            ensure!(
                gauges.depth == events as u64 && gauges.in_flight == 0,
                "with the workers paused the queue should hold all {events} events and run \
                 none, but it holds {} with {} in flight",
                gauges.depth,
                gauges.in_flight
            );
            drop(connection);
            let restarted = server.restart(&[], startup_timeout).await?;
            all_acknowledged.store(true, Ordering::SeqCst);
            let watch_connection = ApiConnection::open(server.address()).await?;
            let mut watch = watch_drain(watch_connection, restarted, all_acknowledged).await?;
            watch.peak.depth = watch.peak.depth.max(gauges.depth);
            (accepted, watch)
        }
    };

    let mut connection = ApiConnection::open(server.address()).await?;
    let (cold_starts, repeats) = check_every_event_ran(&mut connection, events).await?;
    Ok(Burst {
        scenario,
        clients,
        accept: accepted.samples,
        drain: watch.drained,
        peak_depth: watch.peak.depth,
        peak_in_flight: watch.peak.in_flight,
        cold_starts,
        repeats,
        cpu_busy_accepting: accepted.cpu_busy,
    })
}

struct Accepted {
    samples: Samples,
    cpu_busy: Option<f64>,
}

/// Events 0..`events` over `connections`, one at a time on each.
async fn send_burst(connections: Vec<ApiConnection>, events: usize) -> Result<Accepted> {
    let path: Arc<str> = Arc::from(function::invoke_path());
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = CpuTimes::read(Path::new(PROC_ROOT));
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for connection in connections {
        senders.spawn(send_events(
            connection,
            Arc::clone(&path),
            Arc::clone(&next),
            events,
        ));
    }
    let mut latencies = Vec::with_capacity(events);
    while let Some(joined) = senders.join_next().await {
        latencies.extend(joined.context("a client task failed")??);
    }
    let loop_time = started.elapsed();
    let cpu_after = CpuTimes::read(Path::new(PROC_ROOT));
    ensure!(
        latencies.len() == events,
        "{} of {events} events were acknowledged",
        latencies.len()
    );
    Ok(Accepted {
        samples: Samples {
            operation: "accept".to_owned(),
            latencies,
            loop_time,
        },
        cpu_busy: cpu_before
            .zip(cpu_after)
            .and_then(|(before, after)| before.busy_since(after)),
    })
}

/// One client: take the next sequence number, send it, wait for the 202, until all are taken.
async fn send_events(
    mut connection: ApiConnection,
    path: Arc<str>,
    next: Arc<AtomicUsize>,
    events: usize,
) -> Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    loop {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        if seq >= events {
            return Ok(latencies);
        }
        let sent = Instant::now();
        let response = connection
            .send_with_headers(
                Method::POST,
                &path,
                &[("x-amz-invocation-type", "Event")],
                Some(function::event(seq as u64)),
            )
            .await?;
        latencies.push(sent.elapsed());
        ensure!(
            response.status == StatusCode::ACCEPTED,
            "the Event invoke of event {seq} answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
}

struct DrainWatch {
    drained: Duration,
    peak: QueueGauges,
}

/// Read the gauges every [`GAUGE_POLL`] until, after every event was acknowledged, the queue is
/// empty and nothing is in flight; the time is measured from `started`.
async fn watch_drain(
    mut connection: ApiConnection,
    started: Instant,
    all_acknowledged: Arc<AtomicBool>,
) -> Result<DrainWatch> {
    let mut peak = QueueGauges::default();
    loop {
        // Read before asking: a depth of 0 counts only if it was read after the last 202.
        let acknowledged = all_acknowledged.load(Ordering::SeqCst);
        let gauges = observe::queue_gauges(&mut connection).await?;
        peak.depth = peak.depth.max(gauges.depth);
        peak.in_flight = peak.in_flight.max(gauges.in_flight);
        if acknowledged && gauges.depth == 0 && gauges.in_flight == 0 {
            return Ok(DrainWatch {
                drained: started.elapsed(),
                peak,
            });
        }
        if started.elapsed() > DRAIN_DEADLINE {
            bail!(
                "the queue still held {} events ({} in flight) after {DRAIN_DEADLINE:?}",
                gauges.depth,
                gauges.in_flight
            );
        }
        tokio::time::sleep(GAUGE_POLL).await;
    }
}

/// Every sequence number printed by the function at least once; returns the cold starts and the
/// repeated runs.
async fn check_every_event_ran(
    connection: &mut ApiConnection,
    events: usize,
) -> Result<(usize, usize)> {
    let group = function::log_group();
    let lines = observe::filter_log_messages(connection, &group, EVENT_MARKER).await?;
    let mut seen = HashSet::with_capacity(events);
    for line in &lines {
        let run = observe::parse_event_line(line)
            .with_context(|| format!("the function printed an unexpected line: {line:?}"))?;
        seen.insert(run.seq);
    }
    let missing = (0..events as u64).filter(|seq| !seen.contains(seq)).count();
    ensure!(
        missing == 0,
        "{missing} of {events} acknowledged events never ran (their lines are not in {group})"
    );
    let cold =
        observe::filter_log_messages(connection, &group, &format!("\"{COLD_START_MARKER}\""))
            .await?
            .len();
    Ok((cold, lines.len() - seen.len()))
}
