//! The data directory: its layout, and the lock that keeps a second server out of it.

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const LOCK_FILE: &str = "kappa.lock";
const DATABASE_FILE: &str = "kappa.db";
const BLOBS_DIR: &str = "blobs";
const DATA_KEY_FILE: &str = "keys/data.key";

/// A data directory held by this process for as long as the value lives.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Create the directory if needed and take its lock, or fail if another server holds it.
    pub fn lock(root: &Path) -> Result<Self> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating data directory {}", root.display()))?;
        let lock_path = root.join(LOCK_FILE);
        let mut lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .read(true)
            .open(&lock_path)
            .with_context(|| format!("opening lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path).unwrap_or_default();
                bail!(
                    "data directory {} is in use by another kappa server (pid {}); stop it or choose another --data-dir",
                    root.display(),
                    holder.trim()
                );
            }
            Err(TryLockError::Error(err)) => {
                return Err(err).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        lock.set_len(0).context("clearing the lock file")?;
        write!(lock, "{}", std::process::id()).context("writing the lock file")?;
        Ok(Self {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE_FILE)
    }

    pub fn blobs(&self) -> PathBuf {
        self.root.join(BLOBS_DIR)
    }

    /// The key that seals environment variables, unless `--data-key-file` names another.
    pub fn data_key(&self) -> PathBuf {
        self.root.join(DATA_KEY_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::lock(dir.path()).unwrap();
        let err = DataDir::lock(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        assert!(DataDir::lock(dir.path()).is_ok());
    }
}
