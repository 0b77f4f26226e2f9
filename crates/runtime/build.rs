//! Embeds the managed runtimes' bootstrap files (`runtimes/<family>/…` at the workspace root)
//! into the binary, so `kappa` ships as one file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../../runtimes");
    let mut files = Vec::new();
    for family in ["python", "nodejs"] {
        let dir = root.join(family);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &dir, family, &mut files);
    }
    files.sort();
    let mut code = String::from(
        "/// Bootstrap files: (path under the runtime directory, contents).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (relative, absolute) in &files {
        let _ = writeln!(
            code,
            "    ({relative:?}, include_bytes!({:?})),",
            absolute.display().to_string()
        );
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("bootstrap_files.rs");
    std::fs::write(out, code).expect("OUT_DIR is writable");
}

fn collect(base: &Path, dir: &Path, family: &str, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "__pycache__" || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(base, &path, family, files);
        } else if let Ok(relative) = path.strip_prefix(base) {
            let absolute = path.canonicalize().unwrap_or(path.clone());
            files.push((format!("{family}/{}", relative.display()), absolute));
        }
    }
}
