//! Markdown for results, and keeping one section of `docs/benchmarks.md` up to date.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::latency::LatencySummary;

/// What a new `docs/benchmarks.md` starts with.
pub const FILE_HEADER: &str = "# Benchmarks\n\n\
Every figure in this file comes from a documented command. Each section names that command, the \
commit, the machine and the date it was measured on; re-running the command replaces its section \
and leaves the others as they are.\n";

/// One row of a latency table.
#[derive(Debug, Clone)]
pub struct Row {
    pub operation: String,
    pub summary: LatencySummary,
}

/// A markdown table of latencies in milliseconds and sequential throughput.
pub fn latency_table(rows: &[Row]) -> String {
    let mut table = String::from(
        "| Operation | Requests | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | mean (ms) | ops/s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for Row { operation, summary } in rows {
        let _ = writeln!(
            table,
            "| {operation} | {} | {} | {} | {} | {} | {} | {:.0} |",
            summary.requests,
            millis(summary.p50),
            millis(summary.p90),
            millis(summary.p99),
            millis(summary.max),
            millis(summary.mean),
            summary.ops_per_sec,
        );
    }
    table
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1000.0)
}

/// `existing` (the file's text, if it exists) with the section starting at `heading` replaced by
/// `section`, or `section` appended when there is none. A section runs until the next heading of
/// level one or two.
pub fn upsert_section(existing: Option<&str>, heading: &str, section: &str) -> String {
    let existing = existing.filter(|text| !text.trim().is_empty());
    let Some(text) = existing else {
        return format!("{FILE_HEADER}\n{section}");
    };
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let Some(start) = lines.iter().position(|line| line.trim_end() == heading) else {
        return format!("{}\n\n{section}", text.trim_end());
    };
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.starts_with("# ") || line.starts_with("## "))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let before = lines[..start].concat();
    let after = lines[end..].concat();
    if after.is_empty() {
        format!("{before}{section}")
    } else {
        format!("{before}{section}\n{after}")
    }
}

/// Replace or append the section in the file at `path`, creating the file (and its directory)
/// when missing.
pub fn write_section(path: &Path, heading: &str, section: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let updated = upsert_section(existing.as_deref(), heading, section);
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADING: &str = "## Control plane (issue: foundation)";

    fn section(body: &str) -> String {
        format!("{HEADING}\n\n{body}\n")
    }

    #[test]
    fn a_missing_file_gets_the_header_and_the_section() {
        let text = upsert_section(None, HEADING, &section("new"));
        assert!(text.starts_with("# Benchmarks\n\nEvery figure"));
        assert!(text.ends_with(&format!("\n\n{HEADING}\n\nnew\n")));
    }

    #[test]
    fn the_section_is_replaced_and_its_neighbours_kept() {
        let old = format!(
            "# Benchmarks\n\nintro\n\n## Before\n\nb\n\n{HEADING}\n\nold\n\n### detail\n\nd\n\n## After\n\na\n"
        );
        let text = upsert_section(Some(&old), HEADING, &section("new"));
        assert_eq!(
            text,
            format!(
                "# Benchmarks\n\nintro\n\n## Before\n\nb\n\n{HEADING}\n\nnew\n\n## After\n\na\n"
            )
        );
    }

    #[test]
    fn a_last_section_is_replaced_to_the_end() {
        let old = format!("# Benchmarks\n\n{HEADING}\n\nold\n\nmore old\n");
        let text = upsert_section(Some(&old), HEADING, &section("new"));
        assert_eq!(text, format!("# Benchmarks\n\n{HEADING}\n\nnew\n"));
    }

    #[test]
    fn a_file_without_the_section_gets_it_appended() {
        let text = upsert_section(
            Some("# Benchmarks\n\n## Other\n\nx\n"),
            HEADING,
            &section("new"),
        );
        assert_eq!(
            text,
            format!("# Benchmarks\n\n## Other\n\nx\n\n{HEADING}\n\nnew\n")
        );
    }

    #[test]
    fn the_table_shows_milliseconds_and_throughput() {
        let summary = LatencySummary {
            requests: 2,
            p50: Duration::from_micros(150),
            p90: Duration::from_micros(900),
            p99: Duration::from_millis(2),
            max: Duration::from_millis(3),
            mean: Duration::from_micros(1500),
            ops_per_sec: 666.6,
        };
        let table = latency_table(&[Row {
            operation: "GetFunctionConfiguration".into(),
            summary,
        }]);
        assert!(table.contains(
            "| GetFunctionConfiguration | 2 | 0.150 | 0.900 | 2.000 | 3.000 | 1.500 | 667 |"
        ));
    }
}
