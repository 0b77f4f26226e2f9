//! `kappa-bench control-plane`: start a server, run the scenario, print and record the results.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use clap::builder::RangedU64ValueParser;

use crate::api_connection::ApiConnection;
use crate::latency::LatencySummary;
use crate::machine::{self, Machine};
use crate::provenance;
use crate::report::{self, Row};
use crate::scenario::{self, Workload};
use crate::server_process::KappaServer;

/// The heading of this benchmark's section in the benchmarks file.
pub const SECTION_HEADING: &str = "## Control plane (issue: foundation)";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `kappa-bench control-plane`.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// The kappa binary to benchmark [default: `kappa` next to this binary]
    #[arg(long)]
    pub kappa_bin: Option<PathBuf>,
    /// Measured requests of each read operation (GetFunctionConfiguration, ListFunctions)
    #[arg(long, default_value_t = 2000)]
    pub iterations: usize,
    /// Unmeasured requests of each read operation before the measured ones
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Functions created (each with a new 1 MiB zip), then updated and deleted once each
    #[arg(long, default_value_t = 100, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub functions: usize,
    /// Markdown file whose control-plane section is replaced (or appended) with the results
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub async fn run(args: ControlPlaneArgs) -> Result<()> {
    let binary = match args.kappa_bin {
        Some(path) => path,
        None => default_kappa_binary()?,
    };
    anyhow::ensure!(
        binary.is_file(),
        "no kappa binary at {}; build it with `cargo build --release -p kappa` or pass --kappa-bin",
        binary.display()
    );
    let workload = Workload {
        functions: args.functions,
        warmup: args.warmup,
        iterations: args.iterations,
    };

    eprintln!("kappa-bench: starting {}", binary.display());
    let server = KappaServer::start(&binary, STARTUP_TIMEOUT).await?;
    let data_filesystem = machine::filesystem_of(Path::new(machine::PROC_ROOT), server.data_dir());
    eprintln!(
        "kappa-bench: server healthy on {}; running {} creates, {} + {} reads of each kind",
        server.address(),
        workload.functions,
        workload.warmup,
        workload.iterations
    );
    let mut connection = ApiConnection::open(server.address()).await?;
    let samples = match scenario::run(&mut connection, workload).await {
        Ok(samples) => samples,
        Err(err) => {
            return Err(err.context(format!(
                "the control-plane benchmark failed; the server's last log lines:\n{}",
                server.log_tail()
            )));
        }
    };
    drop(connection);
    drop(server);

    let rows: Vec<Row> = samples
        .iter()
        .filter_map(|samples| {
            LatencySummary::of(samples).map(|summary| Row {
                operation: samples.operation.clone(),
                summary,
            })
        })
        .collect();
    let section = section(&rows, workload, data_filesystem);
    println!("{section}");
    if let Some(path) = args.output {
        report::write_section(&path, SECTION_HEADING, &section)?;
        eprintln!(
            "kappa-bench: wrote {SECTION_HEADING:?} in {}",
            path.display()
        );
    }
    Ok(())
}

/// `kappa` in the directory of this executable (target/release when built by the script).
fn default_kappa_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let dir = exe
        .parent()
        .context("this executable has no parent directory")?;
    Ok(dir.join("kappa"))
}

fn section(rows: &[Row], workload: Workload, data_filesystem: Option<(String, PathBuf)>) -> String {
    let machine = Machine::probe(Path::new(machine::PROC_ROOT));
    let commit = provenance::git_commit().unwrap_or_else(|| "unknown (not a git checkout)".into());
    let filesystem = data_filesystem.map_or_else(
        || "unknown".to_owned(),
        |(fs_type, mount)| format!("{fs_type} (mounted on {})", mount.display()),
    );
    format!(
        "{SECTION_HEADING}\n\n\
         One client sends requests one at a time over a single keep-alive HTTP/1.1 connection \
         (unsigned, the JSON boto3 sends) to a `kappa server` on 127.0.0.1 with a fresh data \
         directory. Latency runs from sending a request to reading the whole response. The store is \
         SQLite in WAL mode with `synchronous=FULL`, so every write waits for an fsync; \
         CreateFunction also decodes, checks, hashes and fsyncs the 1 MiB package before it \
         answers. ops/s is the rate of that sequential loop, not the server's capacity.\n\n\
         Workload: {functions} CreateFunction requests, each a new function with its own 1 MiB \
         zip of random bytes (stored, ~1.4 MB of base64 in the request); then {warmup} unmeasured \
         and {iterations} measured GetFunctionConfiguration requests cycling over those functions; \
         the same for ListFunctions; then one UpdateFunctionConfiguration (Description) and one \
         DeleteFunction per function.\n\n\
         - Date: {date}\n\
         - Machine: {machine}\n\
         - Data directory filesystem: {filesystem}\n\
         - Commit: {commit}\n\
         - Command: `{command}` (run by `scripts/bench-control-plane`, which first builds `kappa` \
         and `kappa-bench` in release mode)\n\n\
         {table}",
        functions = workload.functions,
        warmup = workload.warmup,
        iterations = workload.iterations,
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine = machine.describe(),
        command = provenance::command_line(),
        table = report::latency_table(rows),
    )
}
