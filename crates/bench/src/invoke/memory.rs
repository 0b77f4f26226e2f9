//! Reading memory use from cgroup files and `/proc` (roots are parameters, so the parsing runs
//! against fake trees in tests).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Production roots.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
pub const PROC_ROOT: &str = "/proc";
/// The group holding every Kappa server's groups.
const KAPPA_PARENT: &str = "kappa";

/// Where a server's environment groups are and which file holds their memory use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCgroups {
    pub dir: PathBuf,
    /// `memory.current` (v2) or `memory.usage_in_bytes` (v1).
    pub usage_file: &'static str,
}

impl ServerCgroups {
    /// The groups of the `kappa server` using `data_dir`: `kappa server` names them
    /// `server-<FNV-1a of the canonical data directory>`, under the memory controller on v1.
    pub fn of_server(cgroup_root: &Path, data_dir: &Path) -> Self {
        let canonical = data_dir
            .canonicalize()
            .unwrap_or_else(|_| data_dir.to_path_buf());
        let instance = instance_name(&canonical);
        if cgroup_root.join("cgroup.controllers").is_file() {
            Self {
                dir: cgroup_root.join(KAPPA_PARENT).join(instance),
                usage_file: "memory.current",
            }
        } else {
            Self {
                dir: cgroup_root.join("memory").join(KAPPA_PARENT).join(instance),
                usage_file: "memory.usage_in_bytes",
            }
        }
    }

    /// Every environment group (prepared sandboxes included): how many, their summed memory
    /// use, and the summed resident set of their processes.
    pub fn environments(&self, proc_root: &Path) -> Result<GroupsMemory> {
        let entries = std::fs::read_dir(&self.dir)
            .with_context(|| format!("listing {}", self.dir.display()))?;
        let mut memory = GroupsMemory::default();
        for entry in entries {
            let entry = entry.with_context(|| format!("listing {}", self.dir.display()))?;
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            // A group removed while we read it is simply not counted.
            let Ok(usage) = std::fs::read_to_string(path.join(self.usage_file)) else {
                continue;
            };
            let usage = parse_bytes(&usage)
                .with_context(|| format!("parsing {}/{}", path.display(), self.usage_file))?;
            memory.groups += 1;
            memory.usage_bytes += usage;
            let procs = std::fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .lines()
                .filter_map(|line| line.trim().parse::<i32>().ok())
            {
                memory.rss_bytes += process_rss(proc_root, pid).unwrap_or(0);
            }
        }
        Ok(memory)
    }
}

/// What a set of groups uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupsMemory {
    pub groups: usize,
    /// The kernel's count for the groups: resident memory, page cache and kernel memory
    /// charged to them.
    pub usage_bytes: u64,
    /// The resident set of their processes (shared pages counted in each).
    pub rss_bytes: u64,
}

/// `server-<hash>`, as `kappa server` names its cgroups.
fn instance_name(canonical_data_dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical_data_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("server-{hash:016x}")
}

/// A cgroup memory file: one number of bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes.
pub fn vm_rss_bytes(status: &str) -> Option<u64> {
    kib_field(status, "VmRSS:")
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn mem_available_bytes(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let kib: u64 = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(kib * 1024)
}

/// The resident set of process `pid`, in bytes.
pub fn process_rss(proc_root: &Path, pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    vm_rss_bytes(&status)
}

/// The server's own resident memory and that of its zygotes (its children executed with
/// `_KAPPA_ZYGOTE_FD`: the interpreters Python runtimes are forked from, kept outside every
/// environment's cgroup), in bytes. Only children: the runtimes forked from a zygote show the
/// zygote's start environment too, and are counted with their environments.
pub fn server_side_rss(proc_root: &Path, server: i32) -> Option<u64> {
    let own = process_rss(proc_root, server)?;
    let zygotes: u64 = descendants(proc_root, server)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))
                .ok()
                .and_then(|stat| parent_pid(&stat))
                == Some(server)
        })
        .filter(|pid| {
            std::fs::read(proc_root.join(pid.to_string()).join("environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|item| item.starts_with(b"_KAPPA_ZYGOTE_FD="))
            })
        })
        .filter_map(|pid| process_rss(proc_root, pid))
        .sum();
    Some(own + zygotes)
}

/// The machine's available memory, in bytes.
pub fn available(proc_root: &Path) -> Option<u64> {
    mem_available_bytes(&std::fs::read_to_string(proc_root.join("meminfo")).ok()?)
}

/// The parent of a `/proc/<pid>/stat` line (the field after the state, which follows the
/// parenthesised command name that may itself hold spaces and parentheses).
pub fn parent_pid(stat: &str) -> Option<i32> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// Every process below `ancestor` (children, their children, …).
pub fn descendants(proc_root: &Path, ancestor: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let parents: Vec<(i32, i32)> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat =
                std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
            Some((pid, parent_pid(&stat)?))
        })
        .collect();
    let mut found = vec![ancestor];
    let mut next = 0;
    while let Some(&parent) = found.get(next) {
        found.extend(
            parents
                .iter()
                .filter(|(_, of)| *of == parent)
                .map(|(pid, _)| *pid),
        );
        next += 1;
    }
    found.split_off(1)
}

/// Bytes as MiB.
pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn cgroup_and_proc_numbers_parse() {
        assert_eq!(parse_bytes("52428800\n"), Some(52_428_800));
        assert_eq!(parse_bytes("max\n"), None);
        let status = "Name:\tkappa\nVmHWM:\t   9000 kB\nVmRSS:\t   8192 kB\nThreads:\t4\n";
        assert_eq!(vm_rss_bytes(status), Some(8 * 1024 * 1024));
        assert_eq!(vm_rss_bytes("Name:\tkthreadd\n"), None);
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   1048576 kB\n";
        assert_eq!(mem_available_bytes(meminfo), Some(1024 * 1024 * 1024));
    }

    #[test]
    fn the_parent_follows_the_command_name() {
        let stat = "4242 (python3 (x) y) S 4200 4100 4100 0 -1 4194560 300";
        assert_eq!(parent_pid(stat), Some(4200));
        assert_eq!(parent_pid("4242 (sh) S"), None);
    }

    #[test]
    fn descendants_are_found_through_their_parents() {
        let proc_root = tempfile::tempdir().unwrap();
        for (pid, parent) in [(10, 1), (11, 10), (12, 11), (13, 1), (14, 10)] {
            put(
                &proc_root.path().join(format!("{pid}/stat")),
                &format!("{pid} (x) S {parent} {pid} {pid} 0"),
            );
        }
        let mut below = descendants(proc_root.path(), 10);
        below.sort_unstable();
        assert_eq!(below, [11, 12, 14]);
        assert!(descendants(proc_root.path(), 12).is_empty());
    }

    #[test]
    fn the_server_group_is_named_after_its_data_directory() {
        // FNV-1a of "/": 0xcbf29ce484222325 ^ 0x2f, times the FNV prime.
        assert_eq!(instance_name(Path::new("/")), "server-af63a24c860189fe");
        let v1 = tempfile::tempdir().unwrap();
        let groups = ServerCgroups::of_server(v1.path(), Path::new("/"));
        assert_eq!(
            groups.dir,
            v1.path().join("memory/kappa/server-af63a24c860189fe")
        );
        assert_eq!(groups.usage_file, "memory.usage_in_bytes");
        let v2 = tempfile::tempdir().unwrap();
        put(&v2.path().join("cgroup.controllers"), "cpu memory pids\n");
        let groups = ServerCgroups::of_server(v2.path(), Path::new("/"));
        assert_eq!(groups.dir, v2.path().join("kappa/server-af63a24c860189fe"));
        assert_eq!(groups.usage_file, "memory.current");
    }

    #[test]
    fn environments_sum_their_groups_and_processes() {
        let cgroups = tempfile::tempdir().unwrap();
        let proc_root = tempfile::tempdir().unwrap();
        let groups = ServerCgroups {
            dir: cgroups.path().join("server-1"),
            usage_file: "memory.current",
        };
        put(&groups.dir.join("env-a/memory.current"), "1048576\n");
        put(&groups.dir.join("env-a/cgroup.procs"), "10\n11\n");
        put(&groups.dir.join("env-b/memory.current"), "2097152\n");
        put(&groups.dir.join("env-b/cgroup.procs"), "");
        put(&groups.dir.join("memory.current"), "999\n");
        put(&proc_root.path().join("10/status"), "VmRSS:\t 100 kB\n");
        put(&proc_root.path().join("11/status"), "VmRSS:\t 28 kB\n");
        let memory = groups.environments(proc_root.path()).unwrap();
        assert_eq!(
            memory,
            GroupsMemory {
                groups: 2,
                usage_bytes: 3 * 1024 * 1024,
                rss_bytes: 128 * 1024,
            }
        );
    }
}
