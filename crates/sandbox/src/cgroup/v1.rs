//! cgroup v1: one hierarchy per controller, mounted at `<root>/<controller>`, and a group is a
//! directory of the same name in each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::fs;
use super::{CPU_PERIOD_US, CgroupError, EnvironmentLimits};

/// The controllers an environment needs.
pub(super) const REQUIRED: [&str; 3] = ["memory", "cpu", "pids"];
/// Used when mounted: it stops a group's processes from forking while they are killed.
pub(super) const FREEZER: &str = "freezer";

/// How long a freeze may take before the processes are killed anyway (a task in uninterruptible
/// sleep can hold a group in `FREEZING`).
const FREEZE_WAIT: Duration = Duration::from_millis(500);

/// Where the controller hierarchies are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mounts {
    pub memory: PathBuf,
    pub cpu: PathBuf,
    pub pids: PathBuf,
    pub freezer: Option<PathBuf>,
}

impl Mounts {
    /// The hierarchies under `root`, or the names of the needed controllers that are missing.
    pub(super) fn find(root: &Path) -> Result<Self, Vec<&'static str>> {
        let mounted = |controller: &str| {
            let dir = root.join(controller);
            dir.join(fs::PROCS).is_file().then_some(dir)
        };
        match (mounted("memory"), mounted("cpu"), mounted("pids")) {
            (Some(memory), Some(cpu), Some(pids)) => Ok(Self {
                memory,
                cpu,
                pids,
                freezer: mounted(FREEZER),
            }),
            _ => Err(REQUIRED
                .into_iter()
                .filter(|c| mounted(c).is_none())
                .collect()),
        }
    }

    /// Whether any v1 controller is mounted under `root` (even one Kappa does not use).
    pub(super) fn any(root: &Path) -> bool {
        REQUIRED
            .iter()
            .chain(&[FREEZER])
            .any(|c| root.join(c).join(fs::PROCS).is_file())
    }
}

/// Write the environment's limits into its groups (new ones, or a pooled one being sized).
pub(super) fn apply_limits(
    memory: &Path,
    cpu: &Path,
    pids: &Path,
    limits: &EnvironmentLimits,
) -> Result<(), CgroupError> {
    let bytes = limits.memory_bytes.to_string();
    let limit = memory.join("memory.limit_in_bytes");
    // Memory plus swap, present only when the kernel accounts swap (`swapaccount=1`); set equal
    // to the memory limit it allows no swap at all. It may never be below the memory limit, so
    // it goes first when the limit grows and second when it shrinks.
    let memsw = memory.join("memory.memsw.limit_in_bytes");
    if memsw.exists() {
        let current = fs::read_u64(&limit)?;
        if limits.memory_bytes > current {
            fs::write(&memsw, &bytes)?;
            fs::write(&limit, &bytes)?;
        } else {
            fs::write(&limit, &bytes)?;
            fs::write(&memsw, &bytes)?;
        }
    } else {
        fs::write(&limit, &bytes)?;
    }
    let swappiness = memory.join("memory.swappiness");
    if swappiness.exists() {
        fs::write(&swappiness, "0")?;
    }
    fs::write(&cpu.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
    fs::write(
        &cpu.join("cpu.cfs_quota_us"),
        &limits.cpu_quota_us().to_string(),
    )?;
    fs::write(&cpu.join("cpu.shares"), &limits.cpu_shares().to_string())?;
    fs::write(&pids.join("pids.max"), &limits.pids_max.to_string())
}

/// Set or lift (`None`) the hard CPU quota, in microseconds per period.
pub(super) fn set_cpu_quota(cpu: &Path, quota_us: Option<u64>) -> Result<(), CgroupError> {
    let value = quota_us.map_or_else(|| "-1".to_owned(), |q| q.to_string());
    fs::write(&cpu.join("cpu.cfs_quota_us"), &value)
}

pub(super) fn peak_memory(memory: &Path) -> Result<u64, CgroupError> {
    fs::read_u64(&peak_memory_path(memory))
}

pub(super) fn peak_memory_path(memory: &Path) -> std::path::PathBuf {
    memory.join("memory.max_usage_in_bytes")
}

/// How many processes of the group the OOM killer has killed (`oom_kill`, Linux 4.13+); on older
/// kernels, 1 while the group is out of memory.
pub(super) fn oom_kills(memory: &Path) -> Result<u64, CgroupError> {
    let path = memory.join("memory.oom_control");
    if let Some(kills) = fs::read_keyed(&path, "oom_kill")? {
        return Ok(kills);
    }
    Ok(fs::read_keyed(&path, "under_oom")?.unwrap_or(0).min(1))
}

/// Freeze the group at `freezer` and everything below it; waits (briefly) until it is frozen.
/// False if the group does not exist.
pub(super) fn freeze(freezer: &Path) -> Result<bool, CgroupError> {
    let state = freezer.join("freezer.state");
    if !state.exists() {
        return Ok(false);
    }
    fs::write(&state, "FROZEN")?;
    fs::poll_until(Instant::now() + FREEZE_WAIT, || {
        Ok(fs::read(&state)?.trim() == "FROZEN")
    })?;
    Ok(true)
}

/// Thaw the group at `freezer` and every group below it: a group frozen by itself stays frozen
/// when only its parent is thawed (a server killed while an environment's group was frozen for
/// its teardown leaves it so).
pub(super) fn thaw(freezer: &Path) -> Result<(), CgroupError> {
    fs::write(&freezer.join("freezer.state"), "THAWED")?;
    for child in fs::child_groups(freezer)? {
        thaw(&child)?;
    }
    Ok(())
}
