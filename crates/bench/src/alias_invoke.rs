//! `kappa-bench alias`: warm invoke latency of one function addressed directly (`$LATEST` and a
//! version number) and through an alias, plain and weighted, interleaved round by round so that
//! drift of the machine affects every target alike.

use std::io::{Cursor, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use clap::builder::RangedU64ValueParser;
use hyper::{Method, StatusCode};
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use crate::api_connection::ApiConnection;
use crate::deployment_package::ROLE;
use crate::invoke::measure::{self, EVENT};
use crate::latency::{LatencySummary, Samples};
use crate::machine::{self, Machine};
use crate::provenance;
use crate::report::{self, Row};
use crate::server_process::KappaServer;

/// The heading of this benchmark's section in the benchmarks file.
pub const SECTION_HEADING: &str = "## Invoke through an alias vs direct";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const FUNCTION: &str = "kappa-bench-alias-echo";
const FUNCTIONS_PATH: &str = "/2015-03-31/functions";
const HANDLER: &str = "def handler(event, context):\n    return event\n";

/// Flags of `kappa-bench alias`.
#[derive(Debug, Args)]
pub struct AliasArgs {
    /// The kappa binary to benchmark [default: `kappa` next to this binary]
    #[arg(long)]
    pub kappa_bin: Option<PathBuf>,
    /// Measured warm invocations of each target
    #[arg(long, default_value_t = 2000, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub iterations: usize,
    /// Unmeasured warm invocations of each target first
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    /// Markdown file whose section is replaced (or appended) with the results
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// What is invoked: a label and the `Qualifier` (none: unqualified).
const TARGETS: [(&str, Option<&str>); 4] = [
    ("direct, unqualified ($LATEST)", None),
    ("direct, version `1`", Some("1")),
    ("alias `live` → 1", Some("live")),
    ("weighted alias `canary` → 1, 50% to 2", Some("canary")),
];

pub async fn run(args: AliasArgs) -> Result<()> {
    let (kappa_bin, _) = crate::server_process::kappa_and_target_dir(args.kappa_bin.clone())?;
    ensure!(
        kappa_bin.is_file(),
        "no kappa binary at {}; build it with `cargo build --release -p kappa` or pass --kappa-bin",
        kappa_bin.display()
    );
    let server = KappaServer::start(&kappa_bin, STARTUP_TIMEOUT).await?;
    let mut connection = ApiConnection::open(server.address()).await?;
    prepare(&mut connection).await?;
    let paths: Vec<String> = TARGETS
        .iter()
        .map(|(_, qualifier)| {
            let base = format!("{FUNCTIONS_PATH}/{FUNCTION}/invocations");
            qualifier.map_or(base.clone(), |q| format!("{base}?Qualifier={q}"))
        })
        .collect();
    // Warm-up: every target's environments exist (the weighted alias needs both versions').
    for _ in 0..args.warmup {
        for path in &paths {
            let response = measure::invoke(&mut connection, path, &[]).await?;
            measure::check_echo(&response, "Kappa")?;
        }
    }
    let mut latencies = vec![Vec::with_capacity(args.iterations); paths.len()];
    let mut loop_time = vec![Duration::ZERO; paths.len()];
    for _ in 0..args.iterations {
        for (index, path) in paths.iter().enumerate() {
            let sent = Instant::now();
            let response = measure::invoke(&mut connection, path, &[]).await?;
            let elapsed = sent.elapsed();
            latencies[index].push(elapsed);
            loop_time[index] += elapsed;
            measure::check_echo(&response, "Kappa")
                .map_err(|err| err.context(server.log_tail()))?;
        }
    }
    let rows = TARGETS
        .iter()
        .zip(latencies.into_iter().zip(loop_time))
        .filter_map(|((label, _), (latencies, loop_time))| {
            let samples = Samples {
                operation: (*label).to_owned(),
                latencies,
                loop_time,
            };
            LatencySummary::of(&samples).map(|summary| Row {
                operation: (*label).to_owned(),
                summary,
            })
        })
        .collect::<Vec<_>>();
    let section = section(&rows, &args);
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

/// The function, versions 1 and 2 (2 differs by its description), alias `live` → 1 and alias
/// `canary` → 1 with half of the invocations to 2.
async fn prepare(connection: &mut ApiConnection) -> Result<()> {
    let body = serde_json::json!({
        "FunctionName": FUNCTION,
        "Runtime": "python3.12",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": { "ZipFile": base64::engine::general_purpose::STANDARD.encode(handler_zip()?) },
    });
    let function = format!("{FUNCTIONS_PATH}/{FUNCTION}");
    let steps: [(Method, String, serde_json::Value, StatusCode); 6] = [
        (
            Method::POST,
            FUNCTIONS_PATH.to_owned(),
            body,
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("{function}/versions"),
            serde_json::json!({}),
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            format!("{function}/configuration"),
            serde_json::json!({ "Description": "second version" }),
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("{function}/versions"),
            serde_json::json!({}),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("{function}/aliases"),
            serde_json::json!({ "Name": "live", "FunctionVersion": "1" }),
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            format!("{function}/aliases"),
            serde_json::json!({
                "Name": "canary",
                "FunctionVersion": "1",
                "RoutingConfig": { "AdditionalVersionWeights": { "2": 0.5 } },
            }),
            StatusCode::CREATED,
        ),
    ];
    for (method, path, body, status) in steps {
        let body = Bytes::from(serde_json::to_vec(&body).context("encoding a request body")?);
        connection
            .expect(method.clone(), &path, Some(body), status)
            .await
            .with_context(|| format!("preparing the function: {method} {path}"))?;
    }
    Ok(())
}

fn handler_zip() -> Result<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    zip.start_file("app.py", SimpleFileOptions::default())
        .context("starting the zip entry")?;
    zip.write_all(HANDLER.as_bytes())
        .context("writing the handler")?;
    Ok(zip.finish().context("finishing the zip")?.into_inner())
}

fn section(rows: &[Row], args: &AliasArgs) -> String {
    let machine = Machine::probe(Path::new(machine::PROC_ROOT));
    let commit = provenance::git_commit().unwrap_or_else(|| "unknown (not a git checkout)".into());
    format!(
        "{SECTION_HEADING}\n\n\
         One `python3.12` echo function (Kappa's own Python bootstrap), invoked warm through four \
         addresses: unqualified, its version 1, an alias to version 1, and an alias sending half of \
         the invocations to version 2. One client sends the same {event_bytes}-byte event, one \
         request at a time over a keep-alive HTTP/1.1 connection on 127.0.0.1, the four targets in \
         turn in each round ({warmup} unmeasured rounds, then {iterations} measured), so any drift \
         of the machine affects all of them alike. Aliases are resolved in the invoke path's \
         in-memory cache, without a store read; the weighted alias also draws its version per \
         invocation.\n\n\
         - Date: {date}\n\
         - Machine: {machine}\n\
         - Commit: {commit}\n\
         - Command: `{command}` (run by `scripts/bench-alias`, which first builds `kappa` and \
         `kappa-bench` in release mode)\n\n\
         {table}",
        event_bytes = EVENT.len(),
        warmup = args.warmup,
        iterations = args.iterations,
        date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        machine = machine.describe(),
        command = provenance::command_line(),
        table = report::latency_table(rows),
    )
}
