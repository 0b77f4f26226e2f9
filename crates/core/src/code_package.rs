//! Checking an uploaded deployment package before anything is stored.
//!
//! A zip is accepted only if it is within Lambda's size limits, every entry decompresses with a
//! correct checksum, and no entry (file, directory or symlink) can land outside the code root when
//! extracted. The check decompresses into a counting sink, so a zip bomb is stopped at the limit
//! instead of being trusted on its declared sizes.

use std::io::{self, Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::function::CodeRef;

/// Largest zip accepted in a direct upload (52,428,800 bytes).
pub const MAX_ZIPPED_SIZE: u64 = 50 * 1024 * 1024;
/// Largest total of uncompressed entries, function and layers together (262,144,000 bytes).
pub const MAX_UNZIPPED_SIZE: u64 = 250 * 1024 * 1024;
/// Longest symlink target read from an archive.
const MAX_SYMLINK_TARGET: u64 = 4096;
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

#[derive(Debug, Error)]
pub enum CodePackageError {
    #[error("zipped size {0} exceeds the limit")]
    ZippedTooLarge(u64),
    #[error("unzipped size exceeds the limit")]
    UnzippedTooLarge,
    #[error("the package is not a readable zip")]
    Corrupt(#[source] io::Error),
    #[error("entry {0:?} would be extracted outside the code root")]
    EscapingEntry(String),
}

impl From<zip::result::ZipError> for CodePackageError {
    fn from(err: zip::result::ZipError) -> Self {
        Self::Corrupt(io::Error::other(err))
    }
}

/// A package that passed the checks, with the figures Lambda reports for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPackage {
    pub code: CodeRef,
    pub entries: usize,
}

/// Check a zip uploaded as `ZipFile`, within `max_unzipped` bytes of uncompressed content.
pub fn check_zip(bytes: &[u8], max_unzipped: u64) -> Result<CheckedPackage, CodePackageError> {
    let size = bytes.len() as u64;
    if size > MAX_ZIPPED_SIZE {
        return Err(CodePackageError::ZippedTooLarge(size));
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))?;
    let mut budget = CountingSink {
        remaining: max_unzipped,
        written: 0,
    };
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let raw_name = entry.name().to_owned();
        let Some(path) = entry.enclosed_name() else {
            return Err(CodePackageError::EscapingEntry(raw_name));
        };
        if is_symlink(entry.unix_mode()) {
            let mut target = String::new();
            (&mut entry)
                .take(MAX_SYMLINK_TARGET)
                .read_to_string(&mut target)
                .map_err(CodePackageError::Corrupt)?;
            if !symlink_stays_inside(&path, &target) {
                return Err(CodePackageError::EscapingEntry(raw_name));
            }
            continue;
        }
        match io::copy(&mut entry, &mut budget) {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::FileTooLarge => {
                return Err(CodePackageError::UnzippedTooLarge);
            }
            Err(err) => return Err(CodePackageError::Corrupt(err)),
        }
    }
    let digest = Sha256::digest(bytes);
    Ok(CheckedPackage {
        code: CodeRef {
            sha256_hex: hex::encode(digest),
            sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest),
            size,
            unzipped_size: budget.written,
        },
        entries: archive.len(),
    })
}

fn is_symlink(mode: Option<u32>) -> bool {
    mode.is_some_and(|m| m & S_IFMT == S_IFLNK)
}

/// Whether a symlink at `link` (relative to the root) pointing at `target` resolves inside the root.
fn symlink_stays_inside(link: &Path, target: &str) -> bool {
    let target = Path::new(target);
    if target.has_root() || target.as_os_str().is_empty() {
        return false;
    }
    let mut resolved = PathBuf::new();
    let parent = link.parent().unwrap_or(Path::new(""));
    for component in parent.components().chain(target.components()) {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// A sink that counts bytes and fails with `FileTooLarge` once the budget is spent.
struct CountingSink {
    remaining: u64,
    written: u64,
}

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = buf.len() as u64;
        if len > self.remaining {
            return Err(io::Error::from(io::ErrorKind::FileTooLarge));
        }
        self.remaining -= len;
        self.written += len;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn build(entries: &[(&str, &[u8])], symlinks: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
        }
        for (name, target) in symlinks {
            writer
                .add_symlink(*name, *target, SimpleFileOptions::default())
                .unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn reports_lambda_style_digest_and_sizes() {
        let zip = build(&[("app.py", b"def handler(e, c):\n    return e\n")], &[]);
        let checked = check_zip(&zip, MAX_UNZIPPED_SIZE).unwrap();
        assert_eq!(checked.code.size, zip.len() as u64);
        assert_eq!(checked.code.unzipped_size, 32);
        assert_eq!(checked.code.sha256_hex, hex::encode(Sha256::digest(&zip)));
        assert_eq!(checked.code.sha256_base64.len(), 44);
    }

    #[test]
    fn unzipped_limit_is_inclusive() {
        let zip = build(&[("a", &[0u8; 1000]), ("b", &[0u8; 24])], &[]);
        assert!(check_zip(&zip, 1024).is_ok());
        assert!(matches!(
            check_zip(&zip, 1023),
            Err(CodePackageError::UnzippedTooLarge)
        ));
    }

    #[test]
    fn rejects_garbage_and_truncated_archives() {
        assert!(matches!(
            check_zip(b"not a zip at all", 1 << 20),
            Err(CodePackageError::Corrupt(_))
        ));
        let zip = build(&[("app.py", &[7u8; 4096])], &[]);
        let truncated = &zip[..zip.len() / 2];
        assert!(matches!(
            check_zip(truncated, 1 << 20),
            Err(CodePackageError::Corrupt(_))
        ));
    }

    #[test]
    fn rejects_entries_that_escape_the_root() {
        for name in ["../evil.py", "/etc/evil", "a/../../evil"] {
            let zip = build(&[(name, b"x")], &[]);
            assert!(
                matches!(
                    check_zip(&zip, 1 << 20),
                    Err(CodePackageError::EscapingEntry(_))
                ),
                "{name}"
            );
        }
    }

    #[test]
    fn symlinks_may_point_inside_only() {
        let inside = build(
            &[("lib/x.py", b"x")],
            &[("link.py", "lib/x.py"), ("lib/up", "../lib/x.py")],
        );
        assert!(check_zip(&inside, 1 << 20).is_ok());
        for target in ["../../etc/passwd", "/etc/passwd", "lib/../../x"] {
            let zip = build(&[], &[("link", target)]);
            assert!(
                matches!(
                    check_zip(&zip, 1 << 20),
                    Err(CodePackageError::EscapingEntry(_))
                ),
                "{target}"
            );
        }
    }

    #[test]
    fn zipped_limit_is_checked_before_parsing() {
        let big = vec![0u8; MAX_ZIPPED_SIZE as usize + 1];
        assert!(matches!(
            check_zip(&big, MAX_UNZIPPED_SIZE),
            Err(CodePackageError::ZippedTooLarge(_))
        ));
    }
}
