//! The `kappa` binary: argument parsing, wiring and error printing only.

mod config;
mod data_dir;
mod server;

/// Hidden subcommand run by the server to start an execution environment.
const SANDBOX_INIT: &str = "__sandbox-init";
/// Hidden subcommand run by the server to start a runtime's zygote.
const SANDBOX_ZYGOTE: &str = "__sandbox-zygote";

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{ServerArgs, ServerConfig};

/// Kappa: run AWS Lambda functions on your own machine.
#[derive(Debug, Parser)]
#[command(name = "kappa", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Lambda API with the embedded store.
    Server(ServerArgs),
}

fn main() -> ExitCode {
    // The sandbox entry point comes first and stays small: it runs once per environment start.
    match std::env::args_os().nth(1) {
        Some(arg) if arg == SANDBOX_INIT => return sandbox_init(),
        Some(arg) if arg == SANDBOX_ZYGOTE => return sandbox_zygote(),
        _ => {}
    }
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Server(args) => ServerConfig::resolve(args).and_then(run_server),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kappa: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("starting the async runtime: {err}"))?;
    runtime.block_on(server::run(config))
}

/// Enter the isolation described by `KAPPA_SANDBOX_BASE`, wait for the function's spec on
/// standard input and exec its runtime; returns only on failure, whose reason goes to stderr
/// (the function's log).
fn sandbox_init() -> ExitCode {
    let Ok(text) = std::env::var("KAPPA_SANDBOX_BASE") else {
        eprintln!(
            "kappa {SANDBOX_INIT}: KAPPA_SANDBOX_BASE is not set (this command is run by kappa server)"
        );
        return ExitCode::from(2);
    };
    let base = match kappa_sandbox::SandboxBase::from_json(&text) {
        Ok(base) => base,
        Err(err) => {
            eprintln!("kappa {SANDBOX_INIT}: invalid sandbox base: {err}");
            return ExitCode::from(2);
        }
    };
    let channel = match std::os::fd::AsFd::as_fd(&std::io::stdin()).try_clone_to_owned() {
        Ok(fd) => fd,
        Err(err) => {
            eprintln!("kappa {SANDBOX_INIT}: no channel on standard input: {err}");
            return ExitCode::from(2);
        }
    };
    match kappa_sandbox::enter(&base, channel) {
        Ok(never) => match never {},
        Err(err) => {
            let text = kappa_sandbox::error_chain(&err);
            eprintln!("kappa: starting the execution environment failed: {text}");
            ExitCode::from(127)
        }
    }
}

/// Make the zygote's mount namespace and `exec` the runtime described by
/// `KAPPA_ZYGOTE_RUNTIME` as a zygote (its channel is standard input); returns only on failure.
fn sandbox_zygote() -> ExitCode {
    let runtime = std::env::var("KAPPA_ZYGOTE_RUNTIME")
        .map_err(|err| err.to_string())
        .and_then(|text| {
            kappa_sandbox::PrestartedRuntime::from_json(&text).map_err(|err| err.to_string())
        });
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!(
                "kappa {SANDBOX_ZYGOTE}: KAPPA_ZYGOTE_RUNTIME: {err} (this command is run by kappa server)"
            );
            return ExitCode::from(2);
        }
    };
    match kappa_sandbox::serve_as_zygote(&runtime) {
        Ok(never) => match never {},
        Err(err) => {
            let text = kappa_sandbox::error_chain(&err);
            eprintln!("kappa: starting a zygote failed: {text}");
            ExitCode::from(127)
        }
    }
}

/// Log to stderr; `KAPPA_LOG` (or `RUST_LOG`) sets the filter, `info` by default.
fn init_logging() {
    let filter = std::env::var("KAPPA_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
