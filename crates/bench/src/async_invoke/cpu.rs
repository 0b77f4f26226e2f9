//! How busy the whole machine's CPUs were between two moments, from `/proc/stat`.

use std::path::Path;

/// The cumulative CPU time counters of all CPUs, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    busy: u64,
    total: u64,
}

impl CpuTimes {
    /// Read `<proc_root>/stat`; `None` when it cannot be read.
    pub fn read(proc_root: &Path) -> Option<Self> {
        parse(&std::fs::read_to_string(proc_root.join("stat")).ok()?)
    }

    /// The share of CPU time that was not idle between `self` and `later`, 0 to 1.
    pub fn busy_since(self, later: Self) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let busy = later.busy.checked_sub(self.busy)?;
        (total > 0).then(|| busy as f64 / total as f64)
    }
}

/// The `cpu` line: user nice system idle iowait irq softirq steal (guest time is already in user).
fn parse(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = fields[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some(CpuTimes {
        busy,
        total: busy + idle + iowait,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_iowait_are_not_busy() {
        let before = parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        let after = parse("cpu  200 0 100 1000 100 0 0 0 0 0\n").unwrap();
        assert_eq!(before.busy_since(after), Some(150.0 / 400.0));
        assert_eq!(after.busy_since(after), None);
        assert_eq!(parse("intr 1 2 3\n"), None);
    }
}
