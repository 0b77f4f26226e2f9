//! Code packages on disk, content-addressed: `<root>/sha256/<first two hex>/<hex>.zip`.
//!
//! A blob is written to a temporary file, fsynced, renamed into place and its directory fsynced,
//! so after a crash a blob is either whole or absent.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use kappa_core::store::{CodeBlobs, StoreError};

const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct FsCodeBlobs {
    root: PathBuf,
}

impl FsCodeBlobs {
    /// Use `root` (created if missing) for blobs, and drop temporary files a crash left behind.
    pub fn open(root: &Path) -> io::Result<Self> {
        let blobs = Self {
            root: root.join("sha256"),
        };
        fs::create_dir_all(&blobs.root)?;
        blobs.remove_partial_writes()?;
        Ok(blobs)
    }

    fn remove_partial_writes(&self) -> io::Result<()> {
        for shard in fs::read_dir(&self.root)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&shard)? {
                let path = entry?.path();
                let is_tmp = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(TMP_PREFIX));
                if is_tmp {
                    fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("blob path has no parent"))?;
        fs::create_dir_all(dir)?;
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other("blob path has no file name"))?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}-{file_name}", std::process::id()));
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    }
}

fn io_error(err: io::Error) -> StoreError {
    StoreError::backend(err)
}

#[async_trait]
impl CodeBlobs for FsCodeBlobs {
    async fn put(&self, sha256_hex: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.path(sha256_hex);
        if path.exists() {
            return Ok(());
        }
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || Self::write_durably(&path, &bytes))
            .await
            .map_err(StoreError::backend)?
            .map_err(io_error)
    }

    async fn read(&self, sha256_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match tokio::fs::read(self.path(sha256_hex)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error(err)),
        }
    }

    async fn remove(&self, sha256_hex: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(sha256_hex)).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_error(err)),
        }
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> io::Result<Vec<String>> {
            let mut digests = Vec::new();
            for shard in fs::read_dir(&root)? {
                let shard = shard?.path();
                if !shard.is_dir() {
                    continue;
                }
                for entry in fs::read_dir(&shard)? {
                    let name = entry?.file_name();
                    if let Some(digest) = name.to_str().and_then(|n| n.strip_suffix(".zip")) {
                        digests.push(digest.to_owned());
                    }
                }
            }
            Ok(digests)
        })
        .await
        .map_err(StoreError::backend)?
        .map_err(io_error)
    }

    fn path(&self, sha256_hex: &str) -> PathBuf {
        let shard = sha256_hex.get(..2).unwrap_or("00");
        self.root.join(shard).join(format!("{sha256_hex}.zip"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_read_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsCodeBlobs::open(dir.path()).unwrap();
        let digest = "ab".repeat(32);
        blobs.put(&digest, b"zip bytes").await.unwrap();
        blobs.put(&digest, b"zip bytes").await.unwrap();
        assert_eq!(blobs.read(&digest).await.unwrap().unwrap(), b"zip bytes");
        assert_eq!(blobs.list().await.unwrap(), vec![digest.clone()]);
        blobs.remove(&digest).await.unwrap();
        assert!(blobs.read(&digest).await.unwrap().is_none());
        assert!(blobs.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn partial_writes_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let shard = dir.path().join("sha256").join("cd");
        fs::create_dir_all(&shard).unwrap();
        fs::write(shard.join(".tmp-1-x.zip"), b"half").unwrap();
        let blobs = FsCodeBlobs::open(dir.path()).unwrap();
        assert!(blobs.list().await.unwrap().is_empty());
        assert!(!shard.join(".tmp-1-x.zip").exists());
    }
}
