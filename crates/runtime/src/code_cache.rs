//! Code packages extracted once per digest and shared, read-only, by every environment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;
use tokio::sync::OnceCell;

#[derive(Debug, Error)]
pub enum CodeCacheError {
    #[error("extracting code package {digest}")]
    Extract {
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the extraction task failed")]
    Join(#[source] tokio::task::JoinError),
}

#[derive(Debug)]
pub struct CodeCache {
    root: PathBuf,
    cells: Mutex<HashMap<String, Arc<OnceCell<PathBuf>>>>,
}

impl CodeCache {
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            cells: Mutex::default(),
        }
    }

    /// The directory holding the extracted package `digest` (hex), extracting it on first use.
    pub async fn extracted(
        &self,
        digest: &str,
        zip_path: &Path,
    ) -> Result<PathBuf, CodeCacheError> {
        let cell = {
            let mut cells = self.cells.lock().map_err(|_| CodeCacheError::Extract {
                digest: digest.to_owned(),
                source: std::io::Error::other("code cache lock poisoned"),
            })?;
            Arc::clone(cells.entry(digest.to_owned()).or_default())
        };
        let dir = self.root.join(digest);
        let zip_path = zip_path.to_path_buf();
        let digest_owned = digest.to_owned();
        cell.get_or_try_init(|| async move {
            if dir.is_dir() {
                return Ok(dir);
            }
            let target = dir.clone();
            tokio::task::spawn_blocking(move || extract(&zip_path, &target))
                .await
                .map_err(CodeCacheError::Join)?
                .map_err(|source| CodeCacheError::Extract {
                    digest: digest_owned,
                    source,
                })?;
            Ok(dir)
        })
        .await
        .cloned()
    }
}

/// Extract into a temporary sibling and rename, so a crash never leaves a half-extracted package.
fn extract(zip_path: &Path, target: &Path) -> std::io::Result<()> {
    extract_all(&[zip_path.to_path_buf()], target)
}

/// Extract `zips` in order into one directory (later files replace earlier ones, as layers do
/// at `/opt`), through a temporary sibling renamed into place.
fn extract_all(zips: &[PathBuf], target: &Path) -> std::io::Result<()> {
    let parent = target
        .parent()
        .ok_or_else(|| std::io::Error::other("code cache has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = std::fs::create_dir_all(&staging)
        .and_then(|()| {
            for zip_path in zips {
                let file = std::fs::File::open(zip_path)?;
                let mut archive = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
                archive.extract(&staging).map_err(std::io::Error::other)?;
            }
            Ok(())
        })
        .and_then(|()| {
            // Code is read by an unprivileged runtime later: directories traversable, files readable.
            make_readable(&staging)?;
            std::fs::rename(&staging, target)
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// The cache key of an ordered list of layer digests.
fn layer_set_key(digests: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for digest in digests {
        hasher.update(digest.as_bytes());
        hasher.update(b"\n");
    }
    format!("layers-{}", hex::encode(hasher.finalize()))
}

fn make_readable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            continue;
        }
        let path = entry.path();
        let mode = entry.metadata()?.permissions().mode();
        let wanted = if file_type.is_dir() {
            mode | 0o555
        } else {
            mode | 0o444
        };
        if wanted != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted))?;
        }
        if file_type.is_dir() {
            make_readable(&path)?;
        }
    }
    Ok(())
}

impl CodeCache {
    /// The directory shown at `/opt` for these layers (digest and zip, in the function's order),
    /// extracted once per ordered list of digests and shared by every environment using it.
    pub async fn extracted_layers(
        &self,
        layers: &[(String, PathBuf)],
    ) -> Result<PathBuf, CodeCacheError> {
        let digests: Vec<&str> = layers.iter().map(|(d, _)| d.as_str()).collect();
        let key = layer_set_key(&digests);
        let cell = {
            let mut cells = self.cells.lock().map_err(|_| CodeCacheError::Extract {
                digest: key.clone(),
                source: std::io::Error::other("code cache lock poisoned"),
            })?;
            Arc::clone(cells.entry(key.clone()).or_default())
        };
        let dir = self.root.join(&key);
        let zips: Vec<PathBuf> = layers.iter().map(|(_, p)| p.clone()).collect();
        cell.get_or_try_init(|| async move {
            if dir.is_dir() {
                return Ok(dir);
            }
            let target = dir.clone();
            tokio::task::spawn_blocking(move || extract_all(&zips, &target))
                .await
                .map_err(CodeCacheError::Join)?
                .map_err(|source| CodeCacheError::Extract {
                    digest: key,
                    source,
                })?;
            Ok(dir)
        })
        .await
        .cloned()
    }
}

/// Remove half-extracted leftovers of an earlier run.
pub fn clean_partial_extractions(root: &Path) -> std::io::Result<()> {
    if !root.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn zip_with(path: &Path, files: &[(&str, &str)]) {
        let mut writer = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, text) in files {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(text.as_bytes()).unwrap();
        }
        writer.finish().unwrap();
    }

    #[tokio::test]
    async fn later_layers_override_earlier_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.zip"), dir.path().join("b.zip"));
        zip_with(&a, &[("python/m.py", "first"), ("only_a", "a")]);
        zip_with(&b, &[("python/m.py", "second")]);
        let cache = CodeCache::new(dir.path().join("code"));
        let layers = [("aa".to_owned(), a.clone()), ("bb".to_owned(), b.clone())];
        let opt = cache.extracted_layers(&layers).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(opt.join("python/m.py")).unwrap(),
            "second"
        );
        assert_eq!(std::fs::read_to_string(opt.join("only_a")).unwrap(), "a");
        let reversed = [("bb".to_owned(), b), ("aa".to_owned(), a)];
        let other = cache.extracted_layers(&reversed).await.unwrap();
        assert_ne!(opt, other);
        assert_eq!(
            std::fs::read_to_string(other.join("python/m.py")).unwrap(),
            "first"
        );
        assert_eq!(cache.extracted_layers(&layers).await.unwrap(), opt);
    }
}
