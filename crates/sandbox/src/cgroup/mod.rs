//! Per-environment cgroups: memory (no swap), CPU in proportion to memory as on Lambda, and a
//! process count limit, on cgroup v1 or v2.
//!
//! A server's groups live under `<root>/<parent>/<instance>` (v2) or
//! `<root>/<controller>/<parent>/<instance>` for each controller (v1), by default
//! `/sys/fs/cgroup/kappa/<instance>`. Each environment gets a leaf group below that. The root is
//! a parameter, so the logic runs against a fake tree in tests.
//!
//! Every call here is blocking (file writes, and for killing and removal short polls with a
//! deadline); async callers use `spawn_blocking`.

mod fs;
mod group;
#[cfg(test)]
mod tests;
mod v1;
mod v2;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::unistd::Pid;
use thiserror::Error;

use group::{Group, Hierarchy};

/// Where cgroup hierarchies are mounted on Linux.
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The group holding every Kappa server's groups.
pub const DEFAULT_CGROUP_PARENT: &str = "kappa";
/// Lambda gives a function one vCPU at 1,769 MB of memory, and CPU in proportion to memory.
pub const MEMORY_MB_PER_VCPU: u64 = 1769;
/// The least CPU an environment gets, in thousandths of a CPU, whatever its memory (Lambda's
/// smallest size, 128 MB, is above it at 72).
pub const MIN_CPU_MILLIS: u64 = 50;
/// Processes and threads an environment may have, as on Lambda.
pub const DEFAULT_PIDS_MAX: u64 = 1024;
/// The CFS period that CPU quotas are expressed in. Shorter than the kernel's default 100 ms so
/// that a small function that used its share waits at most ~19 ms, not ~93 ms, for the next
/// slice (tail latency); long enough that the smallest quota (7.2% at 128 MB: 1.44 ms) stays
/// above the kernel's 1 ms minimum.
const CPU_PERIOD_US: u64 = 20_000;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error(
        "no cgroup hierarchy at {root}: neither cgroup v2 (cgroup.controllers) nor v1 controller mounts"
    )]
    NoHierarchy { root: PathBuf },
    #[error("cgroup {version} at {root} lacks the {} controller(s)", missing.join(", "))]
    MissingControllers {
        version: CgroupVersion,
        root: PathBuf,
        missing: Vec<&'static str>,
    },
    #[error(
        "invalid cgroup name {name:?}: use 1 to 64 letters, digits, '.', '-' or '_', not starting with '.'"
    )]
    InvalidName { name: String },
    #[error("cgroup {path} already exists")]
    Exists { path: PathBuf },
    #[error("creating cgroup {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {value:?} to {path}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected contents of {path}: {text:?}")]
    Parse { path: PathBuf, text: String },
    #[error("listing the groups under {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("killing process {pid} of cgroup {path}")]
    Kill {
        pid: i32,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cgroup {path} still has processes {pids:?} after they were killed")]
    StillPopulated { path: PathBuf, pids: Vec<i32> },
    #[error("removing cgroup {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        })
    }
}

/// Where a server keeps its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupConfig {
    /// Where the hierarchies are mounted: the v2 mount, or the directory holding one mount per v1
    /// controller.
    pub root: PathBuf,
    /// The group shared by every server on the host.
    pub parent: String,
    /// This server's group: a name stable across restarts (so a restart finds what a killed
    /// predecessor left) and unique among servers sharing the host.
    pub instance: String,
}

impl CgroupConfig {
    /// `/sys/fs/cgroup/kappa/<instance>`.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            parent: DEFAULT_CGROUP_PARENT.to_owned(),
            instance: instance.into(),
        }
    }
}

/// The resources of one environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvironmentLimits {
    /// Memory the environment's processes may use together, page cache included; no swap.
    pub memory_bytes: u64,
    /// CPU time, in thousandths of one CPU (1000 = one full CPU); sets both the hard quota and
    /// the share under contention.
    pub cpu_millis: u64,
    /// Processes and threads, together.
    pub pids_max: u64,
}

impl EnvironmentLimits {
    /// Lambda's limits for a function of `memory_mb` MB: that much memory, CPU in proportion
    /// (one CPU at 1,769 MB, at least [`MIN_CPU_MILLIS`]), 1,024 processes and threads.
    pub fn for_memory_size(memory_mb: u64) -> Self {
        Self {
            memory_bytes: memory_mb.saturating_mul(1024 * 1024),
            cpu_millis: (memory_mb.saturating_mul(1000) / MEMORY_MB_PER_VCPU).max(MIN_CPU_MILLIS),
            pids_max: DEFAULT_PIDS_MAX,
        }
    }

    /// Microseconds of CPU per [`CPU_PERIOD_US`]; the kernel's least quota is 1 ms.
    fn cpu_quota_us(&self) -> u64 {
        (self.cpu_millis.saturating_mul(CPU_PERIOD_US) / 1000).max(1000)
    }

    /// v2 `cpu.weight`: 100 (the default) for one CPU.
    fn cpu_weight(&self) -> u64 {
        (self.cpu_millis / 10).clamp(1, 10_000)
    }

    /// v1 `cpu.shares`: 1024 (the default) for one CPU.
    fn cpu_shares(&self) -> u64 {
        (self.cpu_millis.saturating_mul(1024) / 1000).clamp(2, 262_144)
    }
}

/// A server's cgroups: checks the hierarchy once, and makes one group per environment.
#[derive(Debug)]
pub struct CgroupManager {
    hierarchy: Hierarchy,
    instance: Group,
}

impl CgroupManager {
    /// Find the hierarchy at `config.root`, check that it has the memory, cpu and pids
    /// controllers, and make `<parent>/<instance>` — after killing and removing what an earlier
    /// run of the same instance left there.
    pub fn new(config: &CgroupConfig) -> Result<Self, CgroupError> {
        check_name(&config.parent)?;
        check_name(&config.instance)?;
        let hierarchy = Hierarchy::detect(&config.root)?;
        let parent = hierarchy.group(Path::new(&config.parent));
        let instance = hierarchy.group(&Path::new(&config.parent).join(&config.instance));
        hierarchy.prepare_root()?;
        parent.make(false)?;
        parent.enable_controllers()?;
        if instance.exists() {
            instance.kill_all()?;
            instance.remove()?;
        }
        instance.make(true)?;
        instance.enable_controllers()?;
        Ok(Self {
            hierarchy,
            instance,
        })
    }

    pub fn version(&self) -> CgroupVersion {
        self.hierarchy.version()
    }

    /// Make the group of environment `name` with `limits`. Processes join it with
    /// [`EnvironmentCgroup::add_process`] or [`join_cgroup`].
    pub fn create(
        &self,
        name: &str,
        limits: &EnvironmentLimits,
    ) -> Result<EnvironmentCgroup, CgroupError> {
        check_name(name)?;
        let group = self.instance.child(name);
        group.make(true)?;
        if let Err(err) = group.apply_limits(limits) {
            let _ = group.remove();
            return Err(err);
        }
        Ok(EnvironmentCgroup {
            name: name.to_owned(),
            group,
            peak_seen: AtomicU64::new(0),
            memory_counters: OnceLock::new(),
            removed: false,
        })
    }

    /// Kill every process left in this server's groups and remove them all, its own included.
    pub fn remove(self) -> Result<(), CgroupError> {
        self.remove_all()
    }

    /// As [`CgroupManager::remove`], for a shared manager at shutdown: whatever environment
    /// groups are still being torn down elsewhere go too.
    pub fn remove_all(&self) -> Result<(), CgroupError> {
        self.instance.kill_all()?;
        self.instance.remove()
    }
}

impl Drop for CgroupManager {
    /// Removes the server's group if no environment group is left in it.
    fn drop(&mut self) {
        self.instance.remove_if_empty();
    }
}

/// The cgroup of one execution environment. Dropping it kills its processes and removes it.
#[derive(Debug)]
pub struct EnvironmentCgroup {
    name: String,
    group: Group,
    /// Highest `memory.current` seen, where the kernel keeps no peak.
    peak_seen: AtomicU64,
    /// The memory counters, opened at the first read (`None` inside: they could not be, and
    /// every read opens the files by name).
    memory_counters: OnceLock<Option<group::MemoryCounters>>,
    removed: bool,
}

impl EnvironmentCgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> CgroupVersion {
        self.group.version()
    }

    /// The `cgroup.procs` files a process writes itself into to join this group (one per
    /// controller on v1), as [`join_cgroup`] does.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.group
            .dirs()
            .into_iter()
            .map(|dir| dir.join(fs::PROCS))
            .collect()
    }

    /// Move process `pid` (all its threads) into this group. Its children forked later are born
    /// in it; children it already has are not moved.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        for file in self.procs_files() {
            fs::write(&file, &pid.as_raw().to_string())?;
        }
        Ok(())
    }

    /// The processes in the group now.
    pub fn processes(&self) -> Result<Vec<Pid>, CgroupError> {
        Ok(self
            .group
            .processes()?
            .into_iter()
            .map(Pid::from_raw)
            .collect())
    }

    /// Lift the hard CPU quota (`None`), or set it back to `limits`' share. Lambda lets the
    /// init phase run at full speed and holds invocations to the share their memory buys.
    /// Set memory, CPU weight and quota, and processes to `limits` (a pooled group is sized when
    /// its function is known).
    pub fn apply_limits(&self, limits: &EnvironmentLimits) -> Result<(), CgroupError> {
        self.group.apply_limits(limits)
    }

    pub fn set_cpu_quota(&self, limits: Option<&EnvironmentLimits>) -> Result<(), CgroupError> {
        self.group
            .set_cpu_quota(limits.map(EnvironmentLimits::cpu_quota_us))
    }

    /// The most memory the group has used since it was made, in bytes (REPORT's Max Memory
    /// Used). Where the kernel keeps no peak (v2 before Linux 5.19) it is the highest use seen at
    /// any call, so call it at the end of each invocation.
    pub fn peak_memory_bytes(&self) -> Result<u64, CgroupError> {
        let counters = self
            .memory_counters
            .get_or_init(|| self.group.open_memory_counters().ok());
        let (peak, current) = match counters {
            Some(counters) => counters.read()?,
            None => self.group.memory_usage()?,
        };
        let seen = self
            .peak_seen
            .fetch_max(current, Ordering::Relaxed)
            .max(current);
        Ok(peak.unwrap_or(seen))
    }

    /// How many of the group's processes the kernel's OOM killer has killed.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        self.group.oom_kills()
    }

    /// Whether the OOM killer has killed one of the group's processes (the function ran out of
    /// memory).
    pub fn oom_killed(&self) -> Result<bool, CgroupError> {
        Ok(self.oom_kills()? > 0)
    }

    /// How many times a fork or clone failed because the group was at its process limit.
    pub fn pids_limit_hits(&self) -> Result<u64, CgroupError> {
        self.group.pids_limit_hits()
    }

    /// `SIGKILL` every process in the group and wait until they are gone (zombies not yet reaped
    /// by their parent do not count). Returns how many processes were found.
    pub fn kill_all(&self) -> Result<usize, CgroupError> {
        self.group.kill_all()
    }

    /// Kill what is left in the group and remove it from every hierarchy.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        self.group.kill_all()?;
        self.group.remove()
    }
}

impl Drop for EnvironmentCgroup {
    fn drop(&mut self) {
        if !self.removed {
            // Unthrottled, so that what is left dies quickly.
            let _ = self.group.set_cpu_quota(None);
            let _ = self.group.kill_all();
            let _ = self.group.remove();
        }
    }
}

/// Write the calling process into the groups whose `cgroup.procs` files are given (see
/// [`EnvironmentCgroup::procs_files`]). Used by `__sandbox-init` before it execs the runtime, so
/// the runtime and everything it starts is born inside the environment's group.
pub fn join_cgroup(procs_files: &[PathBuf]) -> Result<(), CgroupError> {
    // "0" is the writer itself, whatever pid namespace it is in.
    for file in procs_files {
        fs::write(file, "0")?;
    }
    Ok(())
}

/// Which leftovers [`cleanup_stale`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleScope<'a> {
    /// The groups of one server instance ([`CgroupManager::new`] does this for its own).
    Instance(&'a str),
    /// Every server's groups under the parent: only when no other server is running.
    All,
}

/// What [`cleanup_stale`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleCleanup {
    /// Groups removed (server groups and environment groups).
    pub groups: usize,
    /// Processes killed.
    pub processes: usize,
}

/// Kill the processes in, and remove, the groups under `<root>/<parent>` that servers left when
/// they died without cleaning up (a `SIGKILL`, a crash).
pub fn cleanup_stale(
    root: &Path,
    parent: &str,
    scope: StaleScope<'_>,
) -> Result<StaleCleanup, CgroupError> {
    check_name(parent)?;
    let hierarchy = Hierarchy::detect(root)?;
    let parent = hierarchy.group(Path::new(parent));
    let instances = match scope {
        StaleScope::Instance(name) => {
            check_name(name)?;
            vec![name.to_owned()]
        }
        StaleScope::All => parent.child_names()?,
    };
    let mut cleanup = StaleCleanup::default();
    for name in instances {
        let instance = parent.child(&name);
        if !instance.exists() {
            continue;
        }
        cleanup.groups += 1 + instance.child_names()?.len();
        cleanup.processes += instance.kill_all()?;
        instance.remove()?;
    }
    Ok(cleanup)
}

/// Group names become directory names: no separators, no `.` or `..`, nothing hidden.
fn check_name(name: &str) -> Result<(), CgroupError> {
    let valid = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(CgroupError::InvalidName {
            name: name.to_owned(),
        })
    }
}
