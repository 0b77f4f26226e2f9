//! `kappa-bench async`: asynchronous invocation (`InvocationType: Event`). How fast a server
//! acknowledges events durably from concurrent clients and from one, with its workers running
//! the events meanwhile or paused; how long it takes to run a burst of them; and each event's
//! latency from sending to running when sent one at a time.

mod cpu;
mod function;
mod load;
mod observe;
mod paced;
mod table;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use clap::Args;
use clap::builder::RangedU64ValueParser;

use self::load::{Burst, Scenario};
use self::paced::Paced;
use crate::api_connection::ApiConnection;
use crate::machine::{self, Machine};
use crate::provenance;
use crate::report;
use crate::server_process::KappaServer;

/// The heading of this benchmark's section in the benchmarks file.
pub const SECTION_HEADING: &str = "## Asynchronous invocation";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `kappa-bench async`.
#[derive(Debug, Args)]
pub struct AsyncArgs {
    /// The kappa binary to benchmark [default: `kappa` next to this binary]
    #[arg(long)]
    pub kappa_bin: Option<PathBuf>,
    /// The function's bootstrap, built from crates/bench/fixtures/rust_print_event
    /// [default: target/bench-fixtures/release/print-event]
    #[arg(long)]
    pub function_bin: Option<PathBuf>,
    /// Events in each burst
    #[arg(long, default_value_t = 5000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub events: usize,
    /// Concurrent keep-alive clients sending the burst; a second burst always uses one
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub clients: usize,
    /// Events sent one at a time for the per-event latencies
    #[arg(long, default_value_t = 200, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub paced_events: usize,
    /// Milliseconds between the starts of two paced events
    #[arg(long, default_value_t = 20, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub pace_ms: u64,
    /// Markdown file whose asynchronous-invocation section is replaced (or appended)
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn run(args: AsyncArgs) -> Result<()> {
    let (kappa_bin, target_dir) =
        crate::server_process::kappa_and_target_dir(args.kappa_bin.clone())?;
    let function_bin = args.function_bin.clone().unwrap_or_else(|| {
        target_dir
            .join("bench-fixtures")
            .join("release")
            .join("print-event")
    });
    ensure!(
        kappa_bin.is_file(),
        "no kappa binary at {}; build it with `cargo build --release -p kappa` or pass --kappa-bin",
        kappa_bin.display()
    );
    ensure!(
        function_bin.is_file(),
        "no function at {}; `scripts/bench-async` builds it, or pass --function-bin",
        function_bin.display()
    );
    let package = function::package(&function_bin)?;
    let interval = Duration::from_millis(args.pace_ms);

    let mut client_counts = vec![args.clients];
    if args.clients != 1 {
        client_counts.push(1);
    }
    let runs = [Scenario::WhileAccepting, Scenario::AfterRestart]
        .into_iter()
        .flat_map(|scenario| {
            client_counts
                .iter()
                .map(move |clients| (scenario, *clients))
        });
    let mut bursts = Vec::new();
    let mut data_filesystem = None;
    for (scenario, clients) in runs {
        let server_args: &[&str] = match scenario {
            Scenario::WhileAccepting => &[],
            Scenario::AfterRestart => &load::PAUSED_WORKERS,
        };
        eprintln!(
            "kappa-bench: {} events from {clients} client(s), {scenario:?}",
            args.events
        );
        let mut server = new_server(&kappa_bin, &package, server_args).await?;
        data_filesystem = data_filesystem
            .or_else(|| machine::filesystem_of(Path::new(machine::PROC_ROOT), server.data_dir()));
        let burst = load::run(&mut server, args.events, clients, scenario, STARTUP_TIMEOUT)
            .await
            .map_err(|err| server_failed(&server, err))?;
        bursts.push(burst);
    }
    eprintln!(
        "kappa-bench: {} events one every {interval:?}",
        args.paced_events
    );
    let server = new_server(&kappa_bin, &package, &[]).await?;
    let paced = paced::run(server.address(), args.paced_events, interval)
        .await
        .map_err(|err| server_failed(&server, err))?;
    drop(server);

    let section = section(&bursts, &paced, &args, package.len(), data_filesystem);
    println!("{section}");
    if let Some(path) = &args.output {
        report::write_section(path, SECTION_HEADING, &section)?;
        eprintln!(
            "kappa-bench: wrote {SECTION_HEADING:?} in {}",
            path.display()
        );
    }
    Ok(())
}

/// A server with an empty data directory, started with `server_args`, and the function on it.
async fn new_server(binary: &Path, package: &[u8], server_args: &[&str]) -> Result<KappaServer> {
    let server = KappaServer::start_with_args(binary, server_args, STARTUP_TIMEOUT).await?;
    let mut connection = ApiConnection::open(server.address()).await?;
    function::create(&mut connection, package)
        .await
        .map_err(|err| server_failed(&server, err))?;
    Ok(server)
}

fn server_failed(server: &KappaServer, err: anyhow::Error) -> anyhow::Error {
    err.context(format!(
        "the asynchronous-invocation benchmark failed; the server's last log lines:\n{}",
        server.log_tail()
    ))
}

fn section(
    bursts: &[Burst],
    paced: &Paced,
    args: &AsyncArgs,
    package_bytes: usize,
    data_filesystem: Option<(String, PathBuf)>,
) -> String {
    let machine = Machine::probe(Path::new(machine::PROC_ROOT));
    let commit = provenance::git_commit().unwrap_or_else(|| "unknown (not a git checkout)".into());
    let filesystem = data_filesystem.map_or_else(
        || "unknown".to_owned(),
        |(fs_type, mount)| format!("{fs_type} (mounted on {})", mount.display()),
    );
    let repeats: usize = bursts.iter().map(|burst| burst.repeats).sum();
    let repeats = if repeats == 0 {
        "every acknowledged event ran exactly once".to_owned()
    } else {
        format!("every acknowledged event ran; {repeats} ran more than once (at-least-once)")
    };
    format!(
        "{SECTION_HEADING}\n\n\
         Event invokes (`POST /2015-03-31/functions/NAME/invocations` with \
         `X-Amz-Invocation-Type: Event`) of a `provided.al2023` function built with the official \
         `lambda_runtime` crate (`crates/bench/fixtures/rust_print_event`, a {package_bytes}-byte \
         zip) that prints one line per event and returns. Each event is a small JSON object, \
         `{{\"seq\":N,\"sent_ms\":…,\"sent_us\":…}}`: a sequence number and the time it was \
         sent. A 202 means Kappa has committed the event to its SQLite queue with \
         `synchronous=FULL` (accepts that arrive while a commit runs share the next commit and \
         its fsync); workers then invoke the function, store its logs, and delete the event in \
         another fsynced commit. Every burst and the paced run start a new `kappa server` on \
         127.0.0.1 with an empty data directory; the clients are keep-alive HTTP/1.1 \
         connections driven from one thread.\n\n\
         - Bursts: {events} events from C connections, each sending its next event as soon as \
         the previous one is acknowledged. Accepted events/s is {events} over the time from the \
         first send to the last 202; CPU busy is the whole machine's non-idle CPU time \
         (`/proc/stat`) over that time.\n\
         - *Run while accepted*: default settings (account concurrency 1000, which is also how \
         many events the workers run at once). The queue drains while events arrive, so the \
         function, the workers and the accepts share the CPUs and the SQLite database. Another \
         connection reads `GET /kappa/metrics` every {gauge_poll} ms; *queue empty after* runs \
         from the first send to the first reading, after the last 202, with \
         `kappa_async_queue_depth` and `kappa_async_in_flight` both 0.\n\
         - *Workers paused, run after a restart*: the server is started with \
         `--concurrency-limit 0`, so its workers take nothing from the queue and the accepts \
         have the machine to themselves (the benchmark checks that the queue then holds every \
         event). The server is then stopped with SIGTERM and started again on the same data \
         directory with default settings; *queue empty after* runs from starting the new \
         process (its startup included) until the gauges read 0 as above.\n\
         - Drained events/s is {events} over *queue empty after*. Peak queue depth and peak in \
         flight are the highest gauge readings. Environments started counts `REPORT` lines with \
         an `Init Duration`. After each burst the function's log lines, read back through the \
         CloudWatch Logs API on the same endpoint (`FilterLogEvents`), show that {repeats}.\n\
         - Per event: after one synchronous invoke has started an environment, {paced} events \
         are sent one at a time, one every {pace} ms, over one connection. *Handler started* is \
         the function's clock when its handler began minus the send time in the event, both \
         microseconds of the host's real-time clock (the sandbox's mount namespace does not \
         change it), read back from its log lines with `FilterLogEvents`. After each 202 \
         another connection reads the queue depth every {finish_poll} µs until it is 0 again: \
         *event finished* (the function ran, its logs were stored and the event was deleted) \
         includes up to one such interval and one metrics request.\n\n\
         - Date: {date}\n\
         - Machine: {machine}\n\
         - Data directory filesystem: {filesystem}\n\
         - Commit: {commit}\n\
         - Command: `{command}` (run by `scripts/bench-async`, which first builds `kappa`, \
         `kappa-bench` and the function in release mode)\n\n\
         {bursts_table}\n\
         {paced_table}",
        events = args.events,
        gauge_poll = load::GAUGE_POLL.as_millis(),
        paced = args.paced_events,
        pace = args.pace_ms,
        finish_poll = paced::FINISH_POLL.as_micros(),
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine = machine.describe(),
        command = provenance::command_line(),
        bursts_table = table::burst_table(bursts),
        paced_table = table::paced_table(paced),
    )
}
