//! The machine a benchmark ran on, read from `/proc` (a parameter, so the parsing is testable).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Production root of the proc filesystem.
pub const PROC_ROOT: &str = "/proc";

/// What the report says about the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpu_model: String,
    pub logical_cpus: usize,
    /// CPUs this process may run on (affinity and cgroup quota), when known.
    pub available_cpus: Option<usize>,
    pub memory_kib: Option<u64>,
    pub kernel: String,
}

impl Machine {
    /// Read the machine description; anything unreadable is reported as unknown.
    pub fn probe(proc_root: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string(proc_root.join("cpuinfo")).unwrap_or_default();
        let meminfo = std::fs::read_to_string(proc_root.join("meminfo")).unwrap_or_default();
        Self {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".to_owned()),
            logical_cpus: logical_cpus(&cpuinfo),
            available_cpus: std::thread::available_parallelism().ok().map(usize::from),
            memory_kib: memory_total_kib(&meminfo),
            kernel: kernel_release(proc_root).unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// One line: CPU, cores, memory, kernel.
    pub fn describe(&self) -> String {
        let mut cpus = format!("{} logical CPUs", self.logical_cpus);
        if let Some(available) = self.available_cpus.filter(|n| *n != self.logical_cpus) {
            cpus.push_str(&format!(" ({available} available to the benchmark)"));
        }
        let memory = self.memory_kib.map_or_else(
            || "unknown memory".to_owned(),
            |kib| format!("{:.1} GiB memory", kib as f64 / (1024.0 * 1024.0)),
        );
        format!(
            "{}, {cpus}, {memory}, Linux {}",
            self.cpu_model, self.kernel
        )
    }
}

/// The filesystem type and mount point holding `path`, from `/proc/self/mounts`.
pub fn filesystem_of(proc_root: &Path, path: &Path) -> Option<(String, PathBuf)> {
    let mounts = std::fs::read_to_string(proc_root.join("self/mounts")).ok()?;
    let path = path.canonicalize().ok()?;
    longest_mount(&mounts, &path)
}

fn longest_mount(mounts: &str, path: &Path) -> Option<(String, PathBuf)> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = PathBuf::from(unescape_mount(fields.next()?));
            let fs_type = fields.next()?.to_owned();
            path.starts_with(&mount_point)
                .then_some((fs_type, mount_point))
        })
        // The last of equally long mount points is the one mounted on top.
        .max_by_key(|(_, mount_point)| mount_point.as_os_str().len())
}

/// `/proc/self/mounts` escapes space, tab, newline and backslash as octal.
fn unescape_mount(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find_map(|line| field_value(line, "model name"))
        .map(|model| model.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn logical_cpus(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|line| field_value(line, "processor").is_some())
        .count()
}

fn memory_total_kib(meminfo: &str) -> Option<u64> {
    let value = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?;
    value.trim().strip_suffix("kB")?.trim().parse().ok()
}

/// `name : value` lines of `/proc/cpuinfo`.
fn field_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (key, value) = line.split_once(':')?;
    (key.trim() == name).then(|| value.trim())
}

/// `uname -r`, or the kernel's own file when `uname` is missing.
fn kernel_release(proc_root: &Path) -> Option<String> {
    let from_uname = Command::new("uname")
        .arg("-r")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok());
    from_uname
        .or_else(|| std::fs::read_to_string(proc_root.join("sys/kernel/osrelease")).ok())
        .map(|release| release.trim().to_owned())
        .filter(|release| !release.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n\n\
                           processor\t: 1\nmodel name\t: AMD EPYC   7B13 64-Core Processor\n";

    #[test]
    fn reads_the_cpu_model_and_count() {
        assert_eq!(
            cpu_model(CPUINFO).as_deref(),
            Some("AMD EPYC 7B13 64-Core Processor")
        );
        assert_eq!(logical_cpus(CPUINFO), 2);
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn reads_total_memory() {
        let meminfo = "MemTotal:       16303428 kB\nMemFree:         1000 kB\n";
        assert_eq!(memory_total_kib(meminfo), Some(16_303_428));
        assert_eq!(memory_total_kib("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn probes_a_fake_proc_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cpuinfo"), CPUINFO).unwrap();
        std::fs::write(root.path().join("meminfo"), "MemTotal: 2097152 kB\n").unwrap();
        let machine = Machine::probe(root.path());
        assert_eq!(machine.logical_cpus, 2);
        assert_eq!(machine.memory_kib, Some(2_097_152));
        assert!(machine.describe().contains("2.0 GiB memory"));
    }

    #[test]
    fn finds_the_innermost_mount() {
        let mounts = "overlay / overlay rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n\
                      /dev/sda1 /tmp/my\\040disk ext4 rw 0 0\n";
        let found = |path: &str| longest_mount(mounts, Path::new(path)).map(|(fs, _)| fs);
        assert_eq!(found("/tmp/x/data").as_deref(), Some("tmpfs"));
        assert_eq!(found("/tmp/my disk/data").as_deref(), Some("ext4"));
        assert_eq!(found("/tmpfoo").as_deref(), Some("overlay"));
    }
}
