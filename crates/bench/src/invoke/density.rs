//! Memory per idle environment. Kappa: a burst of invocations that sleep, so that each starts an
//! environment, then, once they are idle, the growth of the environments' cgroup memory and of
//! the server's resident set. The emulator: the resident set of its one runtime and its own.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;

use super::concurrent::{self, ONE_VCPU_MEMORY_MB, TAIL};
use super::emulator::{self, Emulator};
use super::memory::{self, GroupsMemory, ServerCgroups};
use super::{BenchFunction, Launch};
use super::{measure, package, report_line};
use crate::api_connection::ApiConnection;
use crate::server_process::KappaServer;

const SIDE: &str = "Kappa";
/// How long environments are left idle before their memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// How long to wait for the prepared-sandbox pool to be full again.
const GROUPS_SETTLE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

/// What `environments` idle environments of one function added on a Kappa server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KappaDensity {
    pub environments: usize,
    /// Growth of the environment groups' memory and of their processes' resident sets.
    pub groups: GroupsMemory,
    /// Growth of the server process's resident set (negative if it shrank).
    pub server_rss_growth: i64,
    /// The machine's available memory before the environments were started.
    pub available_bytes: u64,
}

impl KappaDensity {
    fn per_environment(&self, bytes: f64) -> f64 {
        bytes / self.environments.max(1) as f64
    }

    /// Cgroup memory per environment.
    pub fn group_bytes(&self) -> f64 {
        self.per_environment(self.groups.usage_bytes as f64)
    }

    /// Resident set of the environment's processes, per environment.
    pub fn process_rss_bytes(&self) -> f64 {
        self.per_environment(self.groups.rss_bytes as f64)
    }

    pub fn server_bytes(&self) -> f64 {
        self.per_environment(self.server_rss_growth as f64)
    }

    /// Host memory per idle environment: its groups plus the server's share.
    pub fn host_bytes(&self) -> f64 {
        self.group_bytes() + self.server_bytes().max(0.0)
    }

    /// Idle environments that would fit in the memory that was available.
    pub fn fit(&self) -> u64 {
        let per_environment = self.host_bytes();
        if per_environment > 0.0 {
            (self.available_bytes as f64 / per_environment) as u64
        } else {
            0
        }
    }
}

/// Create `function` again as `<name>-density` (1 vCPU) on `server` and start `count`
/// environments with invocations that each sleep `sleep`.
pub async fn kappa(
    server: &KappaServer,
    connection: &mut ApiConnection,
    function: &BenchFunction,
    count: usize,
    sleep: Duration,
) -> Result<KappaDensity> {
    let proc_root = Path::new(memory::PROC_ROOT);
    let cgroups = ServerCgroups::of_server(Path::new(memory::CGROUP_ROOT), server.data_dir());
    let server_pid = i32::try_from(server.pid()).context("the server's process id")?;
    let name = format!("{}-density", function.name);
    let path = concurrent::create_function(connection, function, &name, ONE_VCPU_MEMORY_MB).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    let server_before =
        memory::server_side_rss(proc_root, server_pid).context("the server's RSS")?;
    if let Launch::Managed { .. } = function.launch {
        // A managed runtime's first cold start makes its pool of prestarted sandboxes (and, for
        // Python, the function's zygote): made before the groups are counted, their memory is
        // the server's share (the zygote's RSS) or not counted (the pool, as the pool for any
        // function is not).
        let response = measure::invoke(connection, &path, &[]).await?;
        measure::check_echo(&response, SIDE)?;
        tokio::time::sleep(IDLE_SETTLE).await;
    }

    let available_bytes = memory::available(proc_root).context("reading MemAvailable")?;
    let before = cgroups.environments(proc_root)?;

    let event = Bytes::from(format!(
        r#"{{"benchmark":"kappa-bench density","sleep_ms":{}}}"#,
        sleep.as_millis()
    ));
    let connections = concurrent::connect(server.address(), count).await?;
    let (answers, connections) = concurrent::burst(connections, &path, TAIL, event.clone()).await?;
    drop(connections);
    let mut environments = 0;
    for answer in &answers {
        concurrent::check_echo_of(&answer.response, &event, SIDE)?;
        if report_line::init_duration_of(&answer.response)?.is_some() {
            environments += 1;
        }
    }
    tokio::time::sleep(IDLE_SETTLE).await;

    // The prepared sandboxes taken by the burst are replaced in the background: wait until the
    // groups are the ones before plus one per environment started.
    let deadline = Instant::now() + GROUPS_SETTLE;
    let after = loop {
        let after = cgroups.environments(proc_root)?;
        if after.groups == before.groups + environments {
            break after;
        }
        if Instant::now() >= deadline {
            bail!(
                "{} had {} cgroups before and {} after {environments} environments started",
                cgroups.dir.display(),
                before.groups,
                after.groups
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let server_after =
        memory::server_side_rss(proc_root, server_pid).context("the server's RSS")?;
    Ok(KappaDensity {
        environments,
        groups: GroupsMemory {
            groups: environments,
            usage_bytes: after.usage_bytes.saturating_sub(before.usage_bytes),
            rss_bytes: after.rss_bytes.saturating_sub(before.rss_bytes),
        },
        server_rss_growth: rss_growth(server_before, server_after),
        available_bytes,
    })
}

fn rss_growth(before: u64, after: u64) -> i64 {
    i64::try_from(after)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(before).unwrap_or(i64::MAX))
}

/// The emulator's memory with its one runtime idle after an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatorMemory {
    /// The emulator process's resident set.
    pub emulator_bytes: u64,
    /// The resident set of the runtime's processes.
    pub runtime_bytes: u64,
}

/// Start the emulator for `function` (extracted under `scratch`), invoke it once and read the
/// resident sets of it and the processes below it once the runtime is idle.
pub async fn emulator(
    binary: &Path,
    scratch: &Path,
    function: &BenchFunction,
) -> Result<EmulatorMemory> {
    let task_root = scratch.join(format!("{}-memory", function.name));
    std::fs::create_dir_all(&task_root)
        .with_context(|| format!("creating {}", task_root.display()))?;
    package::extract(&function.package, &task_root)?;
    let emulator = Emulator {
        binary: binary.to_owned(),
        task_root,
        function_name: function.name.to_owned(),
        log_path: scratch.join(format!("{}-memory.log", function.name)),
    };
    let mut process = emulator.spawn()?;
    let mut connection = process.connect(&emulator).await?;
    let response = measure::invoke(&mut connection, emulator::INVOKE_PATH, &[]).await?;
    measure::check_echo(&response, "the emulator")
        .map_err(|err| err.context(emulator.log_tail()))?;
    tokio::time::sleep(IDLE_SETTLE).await;

    let proc_root = Path::new(memory::PROC_ROOT);
    let pid = i32::try_from(process.pid()).context("the emulator's process id")?;
    let emulator_bytes = memory::process_rss(proc_root, pid).context("the emulator's RSS")?;
    let runtime_bytes = memory::descendants(proc_root, pid)
        .into_iter()
        .filter_map(|member| memory::process_rss(proc_root, member))
        .sum();
    if runtime_bytes == 0 {
        bail!("found no runtime process below the emulator");
    }
    Ok(EmulatorMemory {
        emulator_bytes,
        runtime_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn figures_are_per_environment_and_fit_the_available_memory() {
        let density = KappaDensity {
            environments: 50,
            groups: GroupsMemory {
                groups: 50,
                usage_bytes: 500 * MIB,
                rss_bytes: 400 * MIB,
            },
            server_rss_growth: 100 * MIB as i64,
            available_bytes: 24_000 * MIB,
        };
        assert_eq!(density.group_bytes(), (10 * MIB) as f64);
        assert_eq!(density.process_rss_bytes(), (8 * MIB) as f64);
        assert_eq!(density.server_bytes(), (2 * MIB) as f64);
        assert_eq!(density.host_bytes(), (12 * MIB) as f64);
        assert_eq!(density.fit(), 2000);
    }

    #[test]
    fn a_shrinking_server_adds_nothing() {
        assert_eq!(rss_growth(10, 4), -6);
        let density = KappaDensity {
            environments: 2,
            groups: GroupsMemory {
                groups: 2,
                usage_bytes: 4 * MIB,
                rss_bytes: 0,
            },
            server_rss_growth: -(MIB as i64),
            available_bytes: 20 * MIB,
        };
        assert_eq!(density.host_bytes(), (2 * MIB) as f64);
        assert_eq!(density.fit(), 10);
    }
}
