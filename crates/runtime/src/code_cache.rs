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
    let parent = target
        .parent()
        .ok_or_else(|| std::io::Error::other("code cache has no parent"))?;
    std::fs::create_dir_all(parent)?;
    let staging = parent.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::File::open(zip_path)?;
    let mut archive = zip::ZipArchive::new(file).map_err(std::io::Error::other)?;
    let result = archive
        .extract(&staging)
        .map_err(std::io::Error::other)
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
