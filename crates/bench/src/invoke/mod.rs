//! `kappa-bench invoke`: the same functions invoked on Kappa and on the AWS Lambda Runtime
//! Interface Emulator (RIE), warm and cold, one sequential client, side by side.

mod breakdown;
mod capacity;
mod capacity_table;
mod concurrent;
mod density;
mod emulator;
mod kappa;
pub mod measure;
mod memory;
mod package;
mod report_line;
mod scale;
mod table;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Args;
use clap::builder::RangedU64ValueParser;

use self::measure::Workload;
use self::table::Comparison;
use crate::api_connection::ApiConnection;
use crate::machine::{self, Machine};
use crate::provenance;
use crate::report;
use crate::server_process::KappaServer;

/// The heading of this benchmark's section in the benchmarks file.
pub const SECTION_HEADING: &str = "## Invoke: Kappa vs the runtime interface emulator";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The emulator's file name in the aws-sam-cli wheel, and where `scripts/bench-invoke` caches it.
const RIE_FILE_NAME: &str = "aws-lambda-rie-x86_64";

/// How Kappa runs a measured function, and what the emulator runs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// A `provided.al2023` function: its directory's `bootstrap`, on both sides.
    Bootstrap,
    /// Kappa's own managed runtime (`python3.12`) runs the directory's `app.handler`; the
    /// emulator has no managed runtimes, so its row shows the emulator's figures of `twin`,
    /// the same handler run by `awslambdaric`.
    Managed {
        runtime: &'static str,
        twin: &'static str,
    },
}

/// The functions measured: a directory under `--functions-dir`, the name given to Kappa, the
/// name in the table, and how each side runs it. Capacity is measured for
/// [`CAPACITY_FUNCTIONS`].
const FUNCTIONS: [(&str, &str, &str, Launch); 5] = [
    (
        "rust-echo",
        "kappa-bench-rust-echo",
        "Rust echo (`lambda_runtime`)",
        Launch::Bootstrap,
    ),
    (
        "python-echo",
        "kappa-bench-python-echo",
        "Python echo (`awslambdaric`)",
        Launch::Bootstrap,
    ),
    (
        "node-echo",
        "kappa-bench-node-echo",
        "Node.js echo (Kappa's Node.js runtime client from a `bootstrap`)",
        Launch::Bootstrap,
    ),
    (
        "python-managed",
        "kappa-bench-python-managed",
        "Python echo (Kappa: its `python3.12` runtime; RIE: `awslambdaric`)",
        Launch::Managed {
            runtime: "python3.12",
            twin: "kappa-bench-python-echo",
        },
    ),
    (
        "node-managed",
        "kappa-bench-node-managed",
        "Node.js echo (Kappa: its `nodejs20.x` runtime; RIE: the same client from a `bootstrap`)",
        Launch::Managed {
            runtime: "nodejs20.x",
            twin: "kappa-bench-node-echo",
        },
    ),
];

/// Functions whose throughput, scale-up and density are measured too: the two, and
/// the Python handler run by Kappa's own `python3.12` runtime (its emulator figures are its
/// twin's).
const CAPACITY_FUNCTIONS: [&str; 3] = [
    "kappa-bench-rust-echo",
    "kappa-bench-python-echo",
    "kappa-bench-python-managed",
];

/// The interpreters Kappa's managed runtimes are given: the ones the `bootstrap` functions run,
/// so that the rows compared start the same programs.
const PYTHON: &str = "/usr/bin/python3";
const NODE: &str = "/usr/bin/node";

/// Flags of `kappa-bench invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The kappa binary to benchmark [default: `kappa` next to this binary]
    #[arg(long)]
    pub kappa_bin: Option<PathBuf>,
    /// The runtime interface emulator [default: target/rie/aws-lambda-rie-x86_64]
    #[arg(long, env = "KAPPA_RIE_BIN")]
    pub rie_bin: Option<PathBuf>,
    /// Directory with one directory per function: rust-echo, python-echo and node-echo
    /// (`provided.al2023`, holding `bootstrap`), python-managed (holding `app.py`) and
    /// node-managed (holding `app.js`), as `scripts/bench-invoke` prepares them
    /// [default: target/bench-functions]
    #[arg(long)]
    pub functions_dir: Option<PathBuf>,
    /// Measured warm invocations of each function on each side
    #[arg(long, default_value_t = 2000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub iterations: usize,
    /// Unmeasured warm invocations before the measured ones
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Measured cold starts of each function on each side, each in a new environment
    #[arg(long, default_value_t = 20, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub cold: usize,
    /// Milliseconds both sides wait before each measured cold start, so that each starts on a
    /// quiet machine, as a cold start after a lull does (Kappa's pools have refilled, the
    /// previous emulator process has ended)
    #[arg(long, default_value_t = 200)]
    pub cold_pause_ms: u64,
    /// A line for the report's notes, e.g. where the emulator or the interpreter came from
    #[arg(long = "note", env = "KAPPA_BENCH_NOTE")]
    pub notes: Vec<String>,
    /// Markdown file whose invoke section is replaced (or appended) with the results
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub capacity: capacity::CapacityArgs,
}

/// One function's code, packaged once and given to both sides.
#[derive(Debug, Clone)]
pub struct BenchFunction {
    pub name: &'static str,
    pub label: &'static str,
    pub package: Vec<u8>,
    pub launch: Launch,
}

impl BenchFunction {
    /// The `Runtime` Kappa is given.
    pub fn runtime(&self) -> &'static str {
        match self.launch {
            Launch::Bootstrap => "provided.al2023",
            Launch::Managed { runtime, .. } => runtime,
        }
    }
}

pub async fn run(args: InvokeArgs) -> Result<()> {
    let (kappa_bin, target_dir) =
        crate::server_process::kappa_and_target_dir(args.kappa_bin.clone())?;
    let rie_bin = args
        .rie_bin
        .clone()
        .unwrap_or_else(|| target_dir.join("rie").join(RIE_FILE_NAME));
    let functions_dir = args
        .functions_dir
        .clone()
        .unwrap_or_else(|| target_dir.join("bench-functions"));
    ensure!(
        kappa_bin.is_file(),
        "no kappa binary at {}; build it with `cargo build --release -p kappa` or pass --kappa-bin",
        kappa_bin.display()
    );
    ensure!(
        rie_bin.is_file(),
        "no runtime interface emulator at {}; `scripts/bench-invoke` fetches it, or pass --rie-bin",
        rie_bin.display()
    );
    let workload = Workload {
        warmup: args.warmup,
        iterations: args.iterations,
        cold: args.cold,
        cold_pause: Duration::from_millis(args.cold_pause_ms),
    };
    let functions = FUNCTIONS
        .iter()
        .map(|(dir, name, label, launch)| {
            let dir = functions_dir.join(dir);
            let entry = match launch {
                Launch::Bootstrap => "bootstrap",
                Launch::Managed { runtime, .. } if runtime.starts_with("nodejs") => "app.js",
                Launch::Managed { .. } => "app.py",
            };
            ensure!(
                dir.join(entry).is_file(),
                "no {}/{entry}; `scripts/bench-invoke` prepares the functions, or pass \
                 --functions-dir",
                dir.display()
            );
            Ok(BenchFunction {
                name,
                label,
                package: package::zip_directory(&dir)?,
                launch: *launch,
            })
        })
        .collect::<Result<Vec<_>>>()?;

    let kappa = measure_kappa(&kappa_bin, &functions, workload).await?;
    let scratch = tempfile::Builder::new()
        .prefix("kappa-bench-rie-")
        .tempdir()
        .context("creating a scratch directory for the emulator")?;
    let mut comparisons = Vec::new();
    let mut on_emulator: Vec<(&str, measure::Measurements)> = Vec::new();
    for (function, kappa) in functions.iter().zip(kappa) {
        let emulator = match function.launch {
            Launch::Bootstrap => {
                eprintln!("kappa-bench: {} on the emulator", function.name);
                let measured = emulator::measure(&rie_bin, scratch.path(), function, workload)
                    .await
                    .with_context(|| format!("measuring {} on the emulator", function.name))?;
                on_emulator.push((function.name, measured.clone()));
                measured
            }
            Launch::Managed { twin, .. } => on_emulator
                .iter()
                .find(|(name, _)| *name == twin)
                .map(|(_, measured)| measured.clone())
                .with_context(|| format!("{twin} must be measured before {}", function.name))?,
        };
        comparisons.push(Comparison {
            function: function.label.to_owned(),
            kappa,
            emulator,
        });
    }

    // Throughput, scale-up and density, each function with what the emulator runs for it.
    let mut measured = Vec::new();
    for name in CAPACITY_FUNCTIONS {
        let on_kappa = functions
            .iter()
            .find(|function| function.name == name)
            .with_context(|| format!("{name} is not a measured function"))?;
        let emulator_name = match on_kappa.launch {
            Launch::Bootstrap => on_kappa.name,
            Launch::Managed { twin, .. } => twin,
        };
        let on_emulator = functions
            .iter()
            .find(|function| function.name == emulator_name)
            .with_context(|| format!("{emulator_name} is not a measured function"))?;
        measured.push((on_kappa.clone(), on_emulator.clone()));
    }
    let capacities = capacity::measure(
        &kappa_bin,
        &rie_bin,
        scratch.path(),
        &measured,
        args.capacity,
        workload.cold,
    )
    .await?;

    let section = format!(
        "{}\n{}\n{}",
        section(&comparisons, &functions, workload, &args.notes),
        capacity::description(args.capacity, workload.cold),
        capacity_table::capacity_table(&comparisons, &capacities),
    );
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

/// Every function on one `kappa server`, in order.
async fn measure_kappa(
    binary: &Path,
    functions: &[BenchFunction],
    workload: Workload,
) -> Result<Vec<measure::Measurements>> {
    eprintln!("kappa-bench: starting {}", binary.display());
    let server =
        KappaServer::start_with_args(binary, &["--python", PYTHON], STARTUP_TIMEOUT).await?;
    let mut connection = ApiConnection::open(server.address()).await?;
    let mut all = Vec::new();
    for function in functions {
        eprintln!("kappa-bench: {} on Kappa", function.name);
        let measured = kappa::measure(&mut connection, function, workload)
            .await
            .map_err(|err| {
                err.context(format!(
                    "measuring {} on Kappa; the server's last log lines:\n{}",
                    function.name,
                    server.log_tail()
                ))
            })?;
        all.push(measured);
    }
    Ok(all)
}

fn section(
    comparisons: &[Comparison],
    functions: &[BenchFunction],
    workload: Workload,
    notes: &[String],
) -> String {
    let machine = Machine::probe(Path::new(machine::PROC_ROOT));
    let commit = provenance::git_commit().unwrap_or_else(|| "unknown (not a git checkout)".into());
    let packages = functions
        .iter()
        .map(|f| format!("{} {} bytes", f.name, f.package.len()))
        .collect::<Vec<_>>()
        .join(", ");
    let extra_notes: String = notes.iter().map(|note| format!("- {note}\n")).collect();
    format!(
        "{SECTION_HEADING}\n\n\
         The same `provided.al2023` functions (and two managed-runtime rows, below), invoked on this machine through Kappa and \
         through the AWS Lambda Runtime Interface Emulator (RIE), the program AWS ships in its \
         base images and SAM CLI runs for local testing. A Rust echo built with the official \
         `lambda_runtime` crate (`crates/bench/fixtures/rust_echo`), and a Python handler \
         returning its event, run by `awslambdaric` from a `bootstrap` shell script. Each is one \
         zip ({packages}); Kappa gets it through CreateFunction, the emulator gets the same zip \
         extracted the way Kappa extracts it. On Kappa both have MemorySize {memory} MB, one vCPU \
         on Lambda (Kappa holds a function to the CPU share its memory buys, 7% of a CPU at 128 MB; \
         RIE holds it to nothing). One client sends the same {event_bytes}-byte JSON event, one \
         request at a time over a keep-alive HTTP/1.1 connection on 127.0.0.1, and checks that \
         every answer echoes it. Latency runs from sending a request to reading the whole \
         answer.\n\n\
         - Warm invoke: {warmup} unmeasured then {iterations} measured invocations of one \
         environment that has already served (Kappa: `POST /2015-03-31/functions/NAME/invocations`; \
         RIE: `POST /2015-03-31/functions/function/invocations`).\n\
         - Cold start, first invoke: the invoke request that has to start a new environment, \
         {cold} times, each after a pause of {pause} ms on both sides (a cold start after a \
         lull: Kappa's pools have refilled, the previous emulator process has ended). Kappa: the first invoke after an UpdateFunctionConfiguration (a new \
         Description) changed the function's revision; the log tail (`X-Amz-Log-Type: Tail`) is \
         checked for `Init Duration`. The superseded environment stays idle until Kappa's \
         once-a-second reaper stops it. RIE: the \
         first invoke sent to a new emulator process as soon as it accepts a connection; RIE \
         starts the runtime process only when that invoke arrives, so both figures cover starting \
         the runtime, its init, and the invocation.\n\
         - Cold start, new config/process → answer: Kappa from sending UpdateFunctionConfiguration \
         (an fsynced SQLite write) to the first invoke's answer; RIE from spawning the emulator \
         process to the first answer, including the emulator's own start and polling every \
         0.25 ms for its port.\n\
         - What each side does: Kappa runs each environment in its full sandbox (`docs/sandbox.md`): \
         a cgroup (memory, one vCPU of CPU quota at 1,769 MB, pids), mount, UTS, IPC, PID and \
         network namespaces, `pivot_root` into a minimal read-only root (code at `/var/task`, \
         runtime files at `/var/runtime`), a `/tmp` volume capped at EphemeralStorage, uid 993 \
         with no capabilities and a seccomp filter; cold starts take a sandbox prepared ahead \
         (`--sandbox-pool-size`, 2: namespaces entered, root built, runtime process forked; the \
         function's directories are attached when it is known); it serves each environment's Runtime API on a listener made \
         inside the environment's network namespace (`127.0.0.1:9001` there), stores the \
         function's logs in SQLite in the background, and looks the function up and checks \
         concurrency on every invoke. RIE isolates nothing: it execs the bootstrap as a plain \
         child process in the directory it was started in, as root, with one function and one \
         environment, and prints the logs to its output. It gets the variables AWS's base images set for it \
         (`LANG`, `TZ`, `PATH`, and `LD_LIBRARY_PATH` with its task root where the images have \
         `/var/task`), as Kappa gives its runtimes Lambda's.\n\
         - The Python bootstrap runs the host's system Python (`/usr/bin/python3`, which Kappa's \
         sandbox shows with the rest of `/usr`) with `awslambdaric` in `pkgs/`, byte-compiled as \
         unchecked-hash `.pyc` so neither side recompiles it after extraction; \
         `PYTHONDONTWRITEBYTECODE=1`.\n\
         - The Node.js echo (`app.js`, an async handler returning its event) is run by Kappa's \
         own Node.js runtime client (`runtimes/nodejs`, copied into the zip) from a `bootstrap` \
         that starts `{NODE}` with the flags Lambda passes for 1,769 MB.\n\
         - The last two rows are what a `python3.12` or `nodejs20.x` function gets on Kappa: \
         the same handler as a zip of its own, run by Kappa's managed runtime on the same \
         interpreter (`--python {PYTHON}`, `--node {NODE}`). After a runtime's first cold start \
         Kappa keeps sandboxes with that runtime's interpreter started and its bootstrap \
         loaded, waiting for a function (`--sandbox-pool-size` of them); a cold start hands one \
         the function. When none waits, a Python runtime is forked from that runtime's zygote \
         (one interpreter with the bootstrap imported, kept per runtime) into the new sandbox. \
         The emulator has no managed runtimes: its columns repeat the figures of the row named \
         (for Python, `awslambdaric`: how AWS's base image runs a Python handler under it). \
         Capacity figures below are for the first two rows and Kappa's `python3.12` runtime.\n\
         {extra_notes}\n\
         - Date: {date}\n\
         - Machine: {machine}\n\
         - Commit: {commit}\n\
         - Command: `{command}` (run by `scripts/bench-invoke`, which first builds `kappa`, \
         `kappa-bench` and the Rust function in release mode, fetches the emulator and \
         `awslambdaric` from PyPI, and prepares the function directories)\n\n\
         {table}",
        event_bytes = measure::EVENT.len(),
        memory = kappa::MEMORY_MB,
        warmup = workload.warmup,
        iterations = workload.iterations,
        cold = workload.cold,
        pause = workload.cold_pause.as_millis(),
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine = machine.describe(),
        command = provenance::command_line(),
        table = table::comparison_table(comparisons),
    )
}
