//! The managed runtimes' bootstraps, embedded in the binary and written under the data directory
//! at startup. Each family's directory is shown to its environments at `/var/runtime`.

use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bootstrap_files.rs"));

/// Write the embedded files under `root/<content hash>/` and return that directory. Files are
/// written once per build; directories of other builds are left for the caller to prune.
pub fn install(root: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(content_hash());
    if !dir.join(".complete").exists() {
        for family in ["python", "nodejs", "provided"] {
            std::fs::create_dir_all(dir.join(family))?;
        }
        for (relative, contents) in FILES {
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, contents)?;
        }
        std::fs::write(dir.join(".complete"), b"")?;
    }
    Ok(dir)
}

/// The runtime family directory a runtime's environments see at `/var/runtime`.
pub fn family(runtime: &str) -> &'static str {
    if runtime.starts_with("python") {
        "python"
    } else if runtime.starts_with("nodejs") {
        "nodejs"
    } else {
        "provided"
    }
}

fn content_hash() -> String {
    // FNV-1a over names and contents: stable across runs of one build, cheap, no dependency.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, contents) in FILES {
        for byte in name.as_bytes().iter().chain(contents.iter()) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
