//! A group as a set of directories (one on v2, one per controller on v1), and the operations that
//! differ between the versions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{CgroupError, CgroupVersion, EnvironmentLimits, fs, v1, v2};

/// How long killed processes may take to disappear from a group.
const KILL_DEADLINE: Duration = Duration::from_secs(5);
/// How long a group may stay busy (processes still exiting) before removal gives up.
const REMOVE_DEADLINE: Duration = Duration::from_secs(5);

/// The mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hierarchy {
    V1(v1::Mounts),
    V2(PathBuf),
}

impl Hierarchy {
    /// Recognise the hierarchy at `root` and check it has the controllers environments need.
    pub(super) fn detect(root: &Path) -> Result<Self, CgroupError> {
        if v2::is_hierarchy(root) {
            let missing = v2::missing_controllers(root)?;
            if !missing.is_empty() {
                return Err(CgroupError::MissingControllers {
                    version: CgroupVersion::V2,
                    root: root.to_owned(),
                    missing,
                });
            }
            return Ok(Self::V2(root.to_owned()));
        }
        match v1::Mounts::find(root) {
            Ok(mounts) => Ok(Self::V1(mounts)),
            Err(missing) if v1::Mounts::any(root) => Err(CgroupError::MissingControllers {
                version: CgroupVersion::V1,
                root: root.to_owned(),
                missing,
            }),
            Err(_) => Err(CgroupError::NoHierarchy {
                root: root.to_owned(),
            }),
        }
    }

    pub(super) fn version(&self) -> CgroupVersion {
        match self {
            Self::V1(_) => CgroupVersion::V1,
            Self::V2(_) => CgroupVersion::V2,
        }
    }

    /// Let the root's children use the controllers (v2; v1 controllers need nothing).
    pub(super) fn prepare_root(&self) -> Result<(), CgroupError> {
        match self {
            Self::V1(_) => Ok(()),
            Self::V2(root) => v2::enable_controllers(root),
        }
    }

    /// The group at `relative` below the root.
    pub(super) fn group(&self, relative: &Path) -> Group {
        match self {
            Self::V1(mounts) => Group::V1 {
                memory: mounts.memory.join(relative),
                cpu: mounts.cpu.join(relative),
                pids: mounts.pids.join(relative),
                freezer: mounts.freezer.as_ref().map(|f| f.join(relative)),
            },
            Self::V2(root) => Group::V2 {
                dir: root.join(relative),
            },
        }
    }
}

/// One group: its directory in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Group {
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
        freezer: Option<PathBuf>,
    },
    V2 {
        dir: PathBuf,
    },
}

/// A group's open memory counters: the kernel's peak if it keeps one (v1, v2 from Linux 5.19),
/// and on v2 the use now (v1's peak stands for both, as in [`Group::memory_usage`]).
#[derive(Debug)]
pub(super) struct MemoryCounters {
    peak: Option<fs::CounterFile>,
    current: Option<fs::CounterFile>,
}

impl MemoryCounters {
    /// As [`Group::memory_usage`]: the peak if kept, and the use now.
    pub(super) fn read(&self) -> Result<(Option<u64>, u64), CgroupError> {
        let peak = self.peak.as_ref().map(fs::CounterFile::read).transpose()?;
        let current = match &self.current {
            Some(file) => file.read()?,
            None => peak.unwrap_or(0),
        };
        Ok((peak, current))
    }
}

impl Group {
    pub(super) fn version(&self) -> CgroupVersion {
        match self {
            Self::V1 { .. } => CgroupVersion::V1,
            Self::V2 { .. } => CgroupVersion::V2,
        }
    }

    pub(super) fn dirs(&self) -> Vec<&Path> {
        match self {
            Self::V1 {
                memory,
                cpu,
                pids,
                freezer,
            } => {
                let mut dirs = vec![memory.as_path(), cpu.as_path(), pids.as_path()];
                dirs.extend(freezer.as_deref());
                dirs
            }
            Self::V2 { dir } => vec![dir.as_path()],
        }
    }

    /// The directory named in errors about the group as a whole.
    fn main_dir(&self) -> &Path {
        match self {
            Self::V1 { memory, .. } => memory,
            Self::V2 { dir } => dir,
        }
    }

    fn pids_dir(&self) -> &Path {
        match self {
            Self::V1 { pids, .. } => pids,
            Self::V2 { dir } => dir,
        }
    }

    pub(super) fn child(&self, name: &str) -> Self {
        match self {
            Self::V1 {
                memory,
                cpu,
                pids,
                freezer,
            } => Self::V1 {
                memory: memory.join(name),
                cpu: cpu.join(name),
                pids: pids.join(name),
                freezer: freezer.as_ref().map(|f| f.join(name)),
            },
            Self::V2 { dir } => Self::V2 {
                dir: dir.join(name),
            },
        }
    }

    /// The names of the groups directly below this one, in any hierarchy.
    pub(super) fn child_names(&self) -> Result<Vec<String>, CgroupError> {
        let mut names = BTreeSet::new();
        for dir in self.dirs() {
            for child in fs::child_groups(dir)? {
                if let Some(name) = child.file_name().and_then(|n| n.to_str()) {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Whether the group exists in any hierarchy.
    pub(super) fn exists(&self) -> bool {
        self.dirs().iter().any(|dir| dir.is_dir())
    }

    /// Make the group in every hierarchy. With `exclusive`, a group that exists already is an
    /// error, and the directories made before it are removed again.
    pub(super) fn make(&self, exclusive: bool) -> Result<(), CgroupError> {
        let dirs = self.dirs();
        for (made, dir) in dirs.iter().enumerate() {
            if let Err(err) = fs::make_group(dir, exclusive) {
                if exclusive {
                    for dir in &dirs[..made] {
                        let _ = fs::remove_tree(dir, Instant::now());
                    }
                }
                return Err(err);
            }
        }
        Ok(())
    }

    /// Let the group's children use the controllers (v2).
    pub(super) fn enable_controllers(&self) -> Result<(), CgroupError> {
        match self {
            Self::V1 { .. } => Ok(()),
            Self::V2 { dir } => v2::enable_controllers(dir),
        }
    }

    pub(super) fn apply_limits(&self, limits: &EnvironmentLimits) -> Result<(), CgroupError> {
        match self {
            Self::V1 {
                memory, cpu, pids, ..
            } => v1::apply_limits(memory, cpu, pids, limits),
            Self::V2 { dir } => v2::apply_limits(dir, limits),
        }
    }

    pub(super) fn set_cpu_quota(&self, quota_us: Option<u64>) -> Result<(), CgroupError> {
        match self {
            Self::V1 { cpu, .. } => v1::set_cpu_quota(cpu, quota_us),
            Self::V2 { dir } => v2::set_cpu_quota(dir, quota_us),
        }
    }

    /// The files [`Group::memory_usage`] reads, opened once for reading again and again.
    pub(super) fn open_memory_counters(&self) -> Result<MemoryCounters, CgroupError> {
        match self {
            Self::V1 { memory, .. } => Ok(MemoryCounters {
                peak: Some(fs::CounterFile::open(v1::peak_memory_path(memory))?),
                current: None,
            }),
            Self::V2 { dir } => {
                let peak = v2::peak_memory_path(dir);
                Ok(MemoryCounters {
                    peak: if peak.exists() {
                        Some(fs::CounterFile::open(peak)?)
                    } else {
                        None
                    },
                    current: Some(fs::CounterFile::open(v2::current_memory_path(dir))?),
                })
            }
        }
    }

    /// The kernel's peak memory figure if it keeps one, and the memory in use now.
    pub(super) fn memory_usage(&self) -> Result<(Option<u64>, u64), CgroupError> {
        match self {
            Self::V1 { memory, .. } => {
                let peak = v1::peak_memory(memory)?;
                Ok((Some(peak), peak))
            }
            Self::V2 { dir } => Ok((v2::peak_memory(dir)?, v2::current_memory(dir)?)),
        }
    }

    pub(super) fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self {
            Self::V1 { memory, .. } => v1::oom_kills(memory),
            Self::V2 { dir } => v2::oom_kills(dir),
        }
    }

    pub(super) fn pids_limit_hits(&self) -> Result<u64, CgroupError> {
        Ok(fs::read_keyed(&self.pids_dir().join("pids.events"), "max")?.unwrap_or(0))
    }

    /// The processes in this group and the groups below it, in every hierarchy.
    pub(super) fn processes(&self) -> Result<BTreeSet<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs() {
            fs::processes(dir, &mut pids)?;
        }
        Ok(pids)
    }

    /// `SIGKILL` every process in the group and below, and wait until they are gone. v2 uses
    /// `cgroup.kill` where the kernel has it; v1 freezes the group first so nothing forks while
    /// the processes are killed one by one. Anything still listed afterwards (forked between
    /// reading the list and the kill) is killed again until the group is empty. Returns how many
    /// processes were found.
    pub(super) fn kill_all(&self) -> Result<usize, CgroupError> {
        let found = self.processes()?;
        if found.is_empty() {
            return Ok(0);
        }
        match self {
            Self::V2 { dir } => {
                if !v2::kill(dir)? {
                    fs::kill_each(&found, dir)?;
                }
            }
            Self::V1 {
                freezer: Some(freezer),
                ..
            } => {
                let frozen = v1::freeze(freezer);
                // Read again: what forked before the freeze took hold is frozen too.
                let killed = self
                    .processes()
                    .and_then(|pids| fs::kill_each(&pids, self.main_dir()));
                // Killed tasks die only once thawed.
                let thawed = match frozen {
                    Ok(false) => Ok(()),
                    _ => v1::thaw(freezer),
                };
                frozen?;
                killed?;
                thawed?;
            }
            Self::V1 { freezer: None, .. } => {
                fs::kill_each(&found, self.main_dir())?;
            }
        }
        let mut left = BTreeSet::new();
        let empty = fs::poll_until(Instant::now() + KILL_DEADLINE, || {
            left = self.processes()?;
            if left.is_empty() {
                return Ok(true);
            }
            fs::kill_each(&left, self.main_dir())?;
            Ok(false)
        })?;
        if empty {
            Ok(found.len())
        } else {
            Err(CgroupError::StillPopulated {
                path: self.main_dir().to_owned(),
                pids: left.into_iter().collect(),
            })
        }
    }

    /// Remove the group (and any group below it) from every hierarchy.
    pub(super) fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + REMOVE_DEADLINE;
        for dir in self.dirs() {
            fs::remove_tree(dir, deadline)?;
        }
        Ok(())
    }

    /// Remove the group if nothing is in it or below it; otherwise leave it.
    pub(super) fn remove_if_empty(&self) {
        if self.child_names().is_ok_and(|names| names.is_empty())
            && self.processes().is_ok_and(|pids| pids.is_empty())
        {
            for dir in self.dirs() {
                let _ = fs::remove_tree(dir, Instant::now());
            }
        }
    }
}
