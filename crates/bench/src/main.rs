//! The `kappa-bench` binary: argument parsing, wiring and error printing only.

mod alias_invoke;
mod api_connection;
mod async_invoke;
mod control_plane;
mod deployment_package;
mod invoke;
mod latency;
mod machine;
mod provenance;
mod report;
mod scenario;
mod server_process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::alias_invoke::AliasArgs;
use crate::async_invoke::AsyncArgs;
use crate::control_plane::ControlPlaneArgs;
use crate::invoke::InvokeArgs;

/// Benchmarks that drive a real `kappa server` and report what they measured.
#[derive(Debug, Parser)]
#[command(name = "kappa-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Latency of the Lambda control-plane API, one sequential client over keep-alive HTTP/1.1.
    ControlPlane(ControlPlaneArgs),
    /// Invoke latency, warm and cold, of the same functions on Kappa and on the AWS Lambda
    /// Runtime Interface Emulator, side by side.
    Invoke(InvokeArgs),
    /// Asynchronous (Event) invocation: durable accept throughput from concurrent clients and
    /// from one, how long a burst takes to run, and each event's latency from send to run.
    Async(AsyncArgs),
    /// Warm invoke latency of one function directly and through an alias (plain and weighted).
    Alias(AliasArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::ControlPlane(args) => run_async(control_plane::run(args)),
        Command::Invoke(args) => run_async(invoke::run(args)),
        Command::Async(args) => run_async(async_invoke::run(args)),
        Command::Alias(args) => run_async(alias_invoke::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kappa-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// A single-threaded runtime: each client connection is sequential (`async` drives a few of them
/// concurrently), and one thread keeps the benchmark's own noise low.
fn run_async(task: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("starting the async runtime: {err}"))?;
    runtime.block_on(task)
}
