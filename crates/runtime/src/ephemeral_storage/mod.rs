//! Each environment's `/tmp`: a volume of exactly the function's `EphemeralStorage` on disk, as
//! on Lambda, so filling it counts against neither the host's disk beyond that size nor the
//! function's memory, and writing past it fails with ENOSPC.
//!
//! A volume is a sparse image file formatted ext4, attached to a loop device and mounted (nosuid,
//! nodev) at `<environments dir>/<volume id>`, which the sandbox binds at `/tmp` (`volume.rs`).
//! A background thread keeps a few volumes of the common sizes formatted and mounted, so a cold
//! start only takes one (`ready.rs`); it also tears down the volumes of ended environments. Where
//! volumes are impossible (no root, no loop devices, no `mke2fs`, `--isolation unsafe-none`),
//! `/tmp` is a plain directory, uncapped, with one warning at start. Leftovers of a killed server
//! are released at the next start (`stale.rs`).

mod ready;
mod stale;
pub mod volume;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use thiserror::Error;

use ready::{Doomed, Shared};
use volume::{Formatter, Volume, VolumeError};
pub use volume::{MAX_SLACK_MIB, TMP_MODE};

/// The user and group that own a sandbox's `/tmp`: the runtime's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmpOwner {
    pub uid: u32,
    pub gid: u32,
}

impl TmpOwner {
    /// The user the sandbox runs runtimes as: Lambda's `sbx_user1051`.
    pub const RUNTIME_USER: Self = Self {
        uid: kappa_sandbox::SANDBOX_UID,
        gid: kappa_sandbox::SANDBOX_GID,
    };
}

/// What `/tmp`s are made of on this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmpKind {
    /// Loop-mounted ext4 volumes capped at `EphemeralStorage`.
    Volumes,
    /// Plain directories of the data dir's file system, uncapped.
    Directories,
}

#[derive(Debug, Error)]
pub enum TmpError {
    #[error("creating the /tmp volume")]
    Volume(#[from] VolumeError),
    #[error("creating the /tmp directory {path}")]
    Directory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the /tmp volume task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Every environment's `/tmp` on one server, under one directory it owns.
#[derive(Debug)]
pub struct TmpStorage {
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// How [`TmpStorage::open`] makes `/tmp`s.
#[derive(Debug, Clone, Copy)]
pub struct TmpSettings {
    /// Try volumes (false in `--isolation unsafe-none`, where `/tmp` is not bound).
    pub volumes: bool,
    /// Owner of each `/tmp`'s root; `None` leaves the server's user (unsafe-none).
    pub owner: Option<TmpOwner>,
}

impl TmpStorage {
    /// Release what an earlier run left in `dir`, empty it, find out whether volumes work here
    /// (one is made, warning once if not) and start keeping volumes ready.
    pub fn open(dir: &Path, settings: TmpSettings) -> std::io::Result<Self> {
        if dir.exists() {
            stale::release(
                &dir.canonicalize()?,
                Path::new(stale::MOUNTINFO),
                Path::new(stale::SYS_BLOCK),
            );
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        let owner = settings.owner.unwrap_or(TmpOwner::RUNTIME_USER);
        let (formatter, first) = if settings.volumes {
            match first_volume(&dir, owner) {
                Ok((formatter, volume)) => (Some(formatter), Some(volume)),
                Err(reason) => {
                    tracing::warn!(
                        "/tmp of functions is a plain directory NOT capped at EphemeralStorage: {reason}"
                    );
                    (None, None)
                }
            }
        } else {
            tracing::warn!(
                "/tmp of functions is a plain directory NOT capped at EphemeralStorage (isolation unsafe-none)"
            );
            (None, None)
        };
        let shared = Arc::new(Shared::new(dir, settings.owner, formatter));
        if let Some(volume) = first {
            shared.put_ready(volume);
        }
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("kappa-tmp-volumes".into())
                .spawn(move || shared.run())?
        };
        Ok(Self {
            shared,
            worker: Mutex::new(Some(worker)),
        })
    }

    pub fn kind(&self) -> TmpKind {
        if self.shared.formatter.is_some() {
            TmpKind::Volumes
        } else {
            TmpKind::Directories
        }
    }

    /// How many volumes of `size_mib` are ready to be taken.
    pub fn ready_count(&self, size_mib: u32) -> usize {
        self.shared.ready_count(size_mib)
    }

    /// A fresh, empty `/tmp` of `size_mib` (`EphemeralStorage`): a ready volume if there is
    /// one, else one made now.
    pub async fn take(&self, size_mib: u32) -> Result<EnvironmentTmp, TmpError> {
        let shared = Arc::clone(&self.shared);
        if shared.formatter.is_none() {
            let path = shared.dir.join(new_id());
            make_directory(&path, shared.owner).map_err(|source| TmpError::Directory {
                path: path.clone(),
                source,
            })?;
            return Ok(EnvironmentTmp {
                path,
                volume: None,
                shared,
            });
        }
        let volume = match shared.take_ready(size_mib)? {
            Some(volume) => volume,
            None => {
                let maker = Arc::clone(&shared);
                tokio::task::spawn_blocking(move || maker.make_volume(size_mib))
                    .await
                    .map_err(TmpError::Task)??
            }
        };
        Ok(EnvironmentTmp {
            path: volume.mount_point.clone(),
            volume: Some(volume),
            shared,
        })
    }

    /// Stop keeping volumes ready, tear down every volume (ready, ended, or kept for a reset)
    /// and empty the directory.
    pub async fn shut_down(&self) {
        let worker = self.worker.lock().ok().and_then(|mut w| w.take());
        let shared = Arc::clone(&self.shared);
        let _ = tokio::task::spawn_blocking(move || {
            shared.stop();
            if let Some(worker) = worker {
                let _ = worker.join();
            }
            shared.sweep();
        })
        .await;
    }
}

impl Drop for TmpStorage {
    fn drop(&mut self) {
        // The worker tears down what is left and exits; `shut_down` also waits for it.
        self.shared.stop();
    }
}

/// One environment's `/tmp`: its path on the host, and the volume behind it. Dropping it
/// deletes it (in the background); a reset hands it to the next environment instead.
#[derive(Debug)]
pub struct EnvironmentTmp {
    path: PathBuf,
    volume: Option<Volume>,
    shared: Arc<Shared>,
}

impl EnvironmentTmp {
    /// The directory the sandbox shows at `/tmp`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EnvironmentTmp {
    fn drop(&mut self) {
        let doomed = match self.volume.take() {
            Some(volume) => Doomed::Volume(volume),
            None => Doomed::Directory(std::mem::take(&mut self.path)),
        };
        self.shared.bury(doomed);
    }
}

/// Find mke2fs and make the first volume, or say why volumes cannot work here.
fn first_volume(dir: &Path, owner: TmpOwner) -> Result<(Formatter, Volume), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the server does not run as root".into());
    }
    if !kappa_sandbox::loop_device::available() {
        return Err("no loop devices (/dev/loop-control cannot be opened)".into());
    }
    let formatter = Formatter::find().ok_or("mke2fs (e2fsprogs) is not installed")?;
    match Volume::create(dir, &new_id(), ready::DEFAULT_SIZE_MIB, owner, &formatter) {
        Ok(volume) => Ok((formatter, volume)),
        Err(err) => Err(error_chain(&err)),
    }
}

fn make_directory(path: &Path, owner: Option<TmpOwner>) -> std::io::Result<()> {
    std::fs::create_dir(path)?;
    if let Some(owner) = owner {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(TMP_MODE))?;
    }
    Ok(())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub(crate) use kappa_sandbox::error_chain;

#[cfg(test)]
mod tests;
