//! The capacity figures of `kappa-bench invoke`: warm throughput with concurrent clients,
//! scale-up from no environment, the cold start's parts, and memory per idle environment.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use clap::builder::RangedU64ValueParser;

use super::BenchFunction;
use super::breakdown::{self, ColdBreakdown};
use super::density::{self, EmulatorMemory, KappaDensity};
use super::scale::{self, ScaleUp};
use super::throughput::{self, Throughputs};
use crate::api_connection::ApiConnection;
use crate::server_process::KappaServer;

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of the capacity figures.
#[derive(Debug, Clone, Copy, Args)]
pub struct CapacityArgs {
    /// Concurrent clients (and warm environments) of the throughput figure
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub throughput_clients: usize,
    /// Seconds of measured throughput (after 1 s unmeasured)
    #[arg(long, default_value_t = 5, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub throughput_secs: u64,
    /// Concurrent first invocations of the scale-up figure
    #[arg(long, default_value_t = 100, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub scale_count: usize,
    /// Idle environments started for the density figure
    #[arg(long, default_value_t = 50, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub density_count: usize,
    /// How long each invocation starting a density environment sleeps, in milliseconds
    #[arg(long, default_value_t = 1000)]
    pub density_sleep_ms: u64,
}

/// One function's capacity figures.
#[derive(Debug, Clone)]
pub struct Capacity {
    /// The function's label in the tables.
    pub label: &'static str,
    pub throughput: Throughputs,
    pub scale_up: ScaleUp,
    pub breakdown: ColdBreakdown,
    pub density: KappaDensity,
    pub emulator_memory: EmulatorMemory,
}

/// Every function's capacity figures: throughput, scale-up and the cold-start parts on one new
/// server, density on another (so that nothing else runs in it), the emulator's memory last
/// (each pair's second function is what the emulator runs for the first).
pub async fn measure(
    kappa_bin: &Path,
    rie_bin: &Path,
    scratch: &Path,
    pairs: &[(BenchFunction, BenchFunction)],
    args: CapacityArgs,
    cold_rounds: usize,
) -> Result<Vec<Capacity>> {
    let mut partial = Vec::new();
    {
        eprintln!("kappa-bench: starting a server for throughput and scale-up");
        let server = KappaServer::start(kappa_bin, STARTUP_TIMEOUT).await?;
        let mut connection = ApiConnection::open(server.address()).await?;
        for (function, _) in pairs {
            let figures = kappa_figures(&server, &mut connection, function, args, cold_rounds)
                .await
                .map_err(|err| {
                    err.context(format!(
                        "measuring {}'s capacity on Kappa; the server's last log lines:\n{}",
                        function.name,
                        server.log_tail()
                    ))
                })?;
            partial.push(figures);
        }
    }
    let mut densities = Vec::new();
    {
        eprintln!("kappa-bench: starting a server for density");
        let server = KappaServer::start(kappa_bin, STARTUP_TIMEOUT).await?;
        let mut connection = ApiConnection::open(server.address()).await?;
        for (function, _) in pairs {
            eprintln!(
                "kappa-bench: {} idle environments of {} on Kappa",
                args.density_count, function.name
            );
            let sleep = Duration::from_millis(args.density_sleep_ms);
            let measured = density::kappa(
                &server,
                &mut connection,
                function,
                args.density_count,
                sleep,
            )
            .await
            .map_err(|err| {
                err.context(format!(
                    "measuring {}'s density on Kappa; the server's last log lines:\n{}",
                    function.name,
                    server.log_tail()
                ))
            })?;
            densities.push(measured);
        }
    }
    let mut all = Vec::new();
    for (((function, twin), (throughput, scale_up, breakdown)), density) in
        pairs.iter().zip(partial).zip(densities)
    {
        eprintln!("kappa-bench: {}'s memory on the emulator", twin.name);
        let emulator_memory = density::emulator(rie_bin, scratch, twin)
            .await
            .with_context(|| format!("measuring {}'s memory on the emulator", twin.name))?;
        all.push(Capacity {
            label: function.label,
            throughput,
            scale_up,
            breakdown,
            density,
            emulator_memory,
        });
    }
    Ok(all)
}

async fn kappa_figures(
    server: &KappaServer,
    connection: &mut ApiConnection,
    function: &BenchFunction,
    args: CapacityArgs,
    cold_rounds: usize,
) -> Result<(Throughputs, ScaleUp, ColdBreakdown)> {
    eprintln!(
        "kappa-bench: {} cold starts of {} in parts",
        cold_rounds, function.name
    );
    let breakdown = breakdown::measure(connection, function, cold_rounds).await?;
    eprintln!(
        "kappa-bench: 1 then {} clients of {} for {} s each",
        args.throughput_clients, function.name, args.throughput_secs
    );
    let throughput = throughput::measure(
        server.address(),
        connection,
        function,
        args.throughput_clients,
        Duration::from_secs(args.throughput_secs),
    )
    .await?;
    eprintln!(
        "kappa-bench: {} concurrent first invocations of {}",
        args.scale_count, function.name
    );
    let scale_up = scale::measure(server.address(), connection, function, args.scale_count).await?;
    Ok((throughput, scale_up, breakdown))
}

/// The text explaining the capacity figures.
pub fn description(args: CapacityArgs, cold_rounds: usize) -> String {
    format!(
        "The second table measures capacity. Each figure creates the same code again as a new \
         function on a new `kappa server` (default settings: 2 prepared sandboxes, 300 s \
         keep-alive); the throughput, scale-up and density functions have MemorySize 1769 (one \
         vCPU on Lambda, so Kappa's CPU quota in proportion to memory is one full CPU and does \
         not limit them). The benchmark's client runs on one thread of the same 2-core machine, \
         so it competes with the server and the functions for CPU.\n\n\
         - Warm invokes/s: bursts of {clients} concurrent invokes until {clients} environments \
         have started (counted by `Init Duration` in the log tails), 1 s unmeasured from \
         {clients} clients, then {secs} s of one client, then {secs} s of {clients} clients, each \
         sending invocations back to back over its own keep-alive connection, every answer \
         checked. RIE serves one invocation at a time: its rate is that of its warm-invoke loop \
         above (one client, as a rate), and both Kappa rows are compared with it.\n\
         - Scale-up: {scale} invocations of a new function sent at the same moment over \
         {scale} connections opened beforehand; latency of each, and the wall time from the \
         first sent to the last answered. Every answer is checked, and the ones whose log tail \
         has `Init Duration` are counted as new environments. RIE cannot run more than one \
         environment.\n\
         - Cold start in parts: {cold} more cold starts made as above (a new function of 128 MB, \
         its description changed before each first invoke, one at a time), split by the `Init Duration` of the `REPORT` line Kappa returns in the log tail. Kappa \
         counts it from the start of the environment (taking a prepared sandbox from the pool, \
         handing it the function's directories and spec, the switch to the sandbox user, the \
         runtime's exec) to the runtime's first `/next`: that handover and the runtime's init. The remainder, first-invoke \
         latency minus init, is everything else: the request's way in and out, sending the \
         event to the runtime, its handling of it and the response. Preparing the pooled \
         sandbox (its cgroup, namespaces, root file system and PID namespace's processes) \
         happened ahead of time and is in neither part. \
         p50 of each part, taken separately.\n\
         - Idle environment memory: {density} concurrent invocations that each sleep \
         {sleep_ms} ms start {density} environments on a fresh server; 2 s after the last \
         answer, the growth of the environments' cgroup memory (`memory.usage_in_bytes` on \
         cgroup v1, `memory.current` on v2: resident memory, page cache and kernel memory \
         charged to the environment), of their processes' resident sets (VmRSS, shared pages \
         counted in each), and of the server's resident set with its zygotes' (for Kappa's \
         `python3.12` runtime, whose first cold start, made before the count, also makes the \
         function's zygote and the runtime's prestarted sandboxes; the latter are not counted, \
         as the pool for any function is not), each divided by {density}. The \
         cgroup charges each page once, to the group that first touched it, so pages already \
         resident (the shared libraries, the `kappa` binary that `__sandbox-init` runs) are not \
         counted again; VmRSS counts them in every process, so it overstates. Host memory per \
         environment is cgroup memory plus the server's share; the number that fit \
         is the memory available before (MemAvailable) divided by it. RIE: VmRSS of its runtime \
         process(es) and of the emulator itself, 2 s after one invocation; one emulator runs \
         one environment, so its host memory per environment is both.\n",
        clients = args.throughput_clients,
        secs = args.throughput_secs,
        scale = args.scale_count,
        cold = cold_rounds,
        density = args.density_count,
        sleep_ms = args.density_sleep_ms,
    )
}
