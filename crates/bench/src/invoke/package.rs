//! A function directory as a deployment package, zipped the way `zip -r` would with Unix modes
//! kept (so `bootstrap` stays executable), and extracted again for the emulator the same way
//! Kappa extracts it.

use std::fs::File;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

/// The zip of everything under `dir`, entries in name order. Symbolic links are followed.
pub fn zip_directory(dir: &Path) -> Result<Vec<u8>> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    add_directory(&mut zip, dir, "")?;
    let archive = zip
        .finish()
        .with_context(|| format!("finishing the zip of {}", dir.display()))?;
    Ok(archive.into_inner())
}

fn add_directory(zip: &mut ZipWriter<Cursor<Vec<u8>>>, dir: &Path, prefix: &str) -> Result<()> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("listing {}", dir.display()))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        let metadata =
            std::fs::metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(metadata.permissions().mode() & 0o7777);
        let entry_name = format!("{prefix}{name}");
        if metadata.is_dir() {
            zip.add_directory(format!("{entry_name}/"), options)
                .with_context(|| format!("adding the directory {entry_name}"))?;
            add_directory(zip, &path, &format!("{entry_name}/"))?;
        } else {
            zip.start_file(entry_name.as_str(), options)
                .with_context(|| format!("adding {entry_name}"))?;
            let mut file =
                File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            std::io::copy(&mut file, zip).with_context(|| format!("zipping {}", path.display()))?;
        }
    }
    zip.flush().context("writing the zip")?;
    Ok(())
}

/// Extract `zip` into `target` (which must not hold any of its entries yet), keeping Unix modes.
pub fn extract(zip: &[u8], target: &Path) -> Result<()> {
    let mut archive = ZipArchive::new(Cursor::new(zip)).context("reading the package")?;
    archive
        .extract(target)
        .with_context(|| format!("extracting the package into {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_round_trips_with_its_modes() {
        let source = tempfile::tempdir().unwrap();
        std::fs::write(source.path().join("bootstrap"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            source.path().join("bootstrap"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::create_dir(source.path().join("pkgs")).unwrap();
        std::fs::write(source.path().join("pkgs/module.py"), "x = 1\n").unwrap();

        let zip = zip_directory(source.path()).unwrap();
        let names: Vec<String> = ZipArchive::new(Cursor::new(&zip))
            .unwrap()
            .file_names()
            .map(str::to_owned)
            .collect();
        assert_eq!(names, ["bootstrap", "pkgs/", "pkgs/module.py"]);

        let target = tempfile::tempdir().unwrap();
        extract(&zip, target.path()).unwrap();
        let mode = std::fs::metadata(target.path().join("bootstrap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(target.path().join("pkgs/module.py")).unwrap(),
            "x = 1\n"
        );
    }
}
