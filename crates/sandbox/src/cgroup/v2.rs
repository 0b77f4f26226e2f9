//! cgroup v2 (the unified hierarchy): one directory per group, controllers enabled from the top
//! through `cgroup.subtree_control`.

use std::path::Path;

use super::fs;
use super::{CPU_PERIOD_US, CgroupError, EnvironmentLimits};

/// The controllers an environment needs, in the order the kernel lists them.
pub(super) const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// Whether `root` is the top of a cgroup v2 hierarchy.
pub(super) fn is_hierarchy(root: &Path) -> bool {
    root.join("cgroup.controllers").is_file()
}

/// The needed controllers that `dir` cannot give its children.
pub(super) fn missing_controllers(dir: &Path) -> Result<Vec<&'static str>, CgroupError> {
    let available = fs::read(&dir.join("cgroup.controllers"))?;
    let available: Vec<&str> = available.split_whitespace().collect();
    Ok(CONTROLLERS
        .into_iter()
        .filter(|c| !available.contains(c))
        .collect())
}

/// Enable the needed controllers for the children of `dir` (those not enabled yet).
pub(super) fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let enabled = fs::read(&path)?;
    let enabled: Vec<&str> = enabled
        .split_whitespace()
        .map(|c| c.trim_start_matches('+'))
        .collect();
    let wanted: Vec<String> = CONTROLLERS
        .into_iter()
        .filter(|c| !enabled.contains(c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    fs::write(&path, &wanted.join(" "))
}

/// Write the environment's limits into its (new, empty) group.
pub(super) fn apply_limits(dir: &Path, limits: &EnvironmentLimits) -> Result<(), CgroupError> {
    fs::write(&dir.join("memory.max"), &limits.memory_bytes.to_string())?;
    // Present only when the kernel accounts swap; without it there is nothing to disable.
    let swap = dir.join("memory.swap.max");
    if swap.exists() {
        fs::write(&swap, "0")?;
    }
    fs::write(
        &dir.join("cpu.max"),
        &format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us()),
    )?;
    fs::write(&dir.join("cpu.weight"), &limits.cpu_weight().to_string())?;
    fs::write(&dir.join("pids.max"), &limits.pids_max.to_string())
}

/// Set or lift (`None`) the hard CPU quota, in microseconds per period.
pub(super) fn set_cpu_quota(dir: &Path, quota_us: Option<u64>) -> Result<(), CgroupError> {
    let quota = quota_us.map_or_else(|| "max".to_owned(), |q| q.to_string());
    fs::write(&dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))
}

/// The group's highest memory use, if the kernel keeps it (`memory.peak`, Linux 5.19+).
pub(super) fn peak_memory(dir: &Path) -> Result<Option<u64>, CgroupError> {
    let path = peak_memory_path(dir);
    if path.exists() {
        fs::read_u64(&path).map(Some)
    } else {
        Ok(None)
    }
}

pub(super) fn peak_memory_path(dir: &Path) -> std::path::PathBuf {
    dir.join("memory.peak")
}

pub(super) fn current_memory(dir: &Path) -> Result<u64, CgroupError> {
    fs::read_u64(&current_memory_path(dir))
}

pub(super) fn current_memory_path(dir: &Path) -> std::path::PathBuf {
    dir.join("memory.current")
}

/// How many processes of the group the OOM killer has killed.
pub(super) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    Ok(fs::read_keyed(&dir.join("memory.events"), "oom_kill")?.unwrap_or(0))
}

/// Kill every process in the group and below at once (`cgroup.kill`, Linux 5.14+); false when
/// the kernel lacks it.
pub(super) fn kill(dir: &Path) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.kill");
    if !path.exists() {
        return Ok(false);
    }
    fs::write(&path, "1")?;
    Ok(true)
}
