//! The background side of `/tmp` storage: volumes kept formatted and mounted for the next cold
//! starts, and the teardown of the `/tmp`s of ended environments, off the invoke path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::volume::{Formatter, Volume};
use super::{TmpError, TmpOwner, new_id, stale};

/// Lambda's default `EphemeralStorage`, the size most functions use.
pub const DEFAULT_SIZE_MIB: u32 = 512;
/// Volumes of the default size kept ready.
const READY_DEFAULT: usize = 2;
/// Volumes kept ready of another size taken lately.
const READY_OTHER: usize = 1;
/// A size other than the default stops being kept ready when not taken for this long.
const OTHER_SIZE_TTL: Duration = Duration::from_secs(600);
/// After a volume could not be made in the background, wait this long before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The worker looks at expired sizes at least this often.
const TICK: Duration = Duration::from_secs(60);

/// A `/tmp` to delete.
#[derive(Debug)]
pub enum Doomed {
    Volume(Volume),
    Directory(PathBuf),
}

impl Doomed {
    fn destroy(self) {
        match self {
            Self::Volume(mut volume) => volume.destroy(),
            Self::Directory(path) => match std::fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "removing a /tmp directory failed");
                }
            },
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) ready: HashMap<u32, Vec<Volume>>,
    /// Sizes other than the default, and when one was last taken.
    other_sizes: HashMap<u32, Instant>,
    doomed: Vec<Doomed>,
    retry_at: Option<Instant>,
    /// No more volumes are made; what is buried is destroyed by whoever buries it.
    pub(super) stopping: bool,
}

/// State shared by the storage, its environments' `/tmp`s and the worker thread.
#[derive(Debug)]
pub struct Shared {
    pub dir: PathBuf,
    pub owner: Option<TmpOwner>,
    /// Present when volumes work on this host.
    pub formatter: Option<Formatter>,
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    pub fn new(dir: PathBuf, owner: Option<TmpOwner>, formatter: Option<Formatter>) -> Self {
        Self {
            dir,
            owner,
            formatter,
            state: Mutex::default(),
            wake: Condvar::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn put_ready(&self, volume: Volume) {
        let mut state = self.lock();
        if state.stopping {
            drop(state);
            Doomed::Volume(volume).destroy();
            return;
        }
        state.ready.entry(volume.size_mib).or_default().push(volume);
    }

    pub fn ready_count(&self, size_mib: u32) -> usize {
        self.lock().ready.get(&size_mib).map_or(0, Vec::len)
    }

    /// A ready volume of `size_mib`, if any; the worker is told to make up for it.
    pub fn take_ready(&self, size_mib: u32) -> Result<Option<Volume>, TmpError> {
        let mut state = self.lock();
        if state.stopping {
            return Err(TmpError::ShuttingDown);
        }
        if size_mib != DEFAULT_SIZE_MIB {
            state.other_sizes.insert(size_mib, Instant::now());
        }
        // The oldest first.
        let volume = state
            .ready
            .get_mut(&size_mib)
            .filter(|list| !list.is_empty())
            .map(|list| list.remove(0));
        drop(state);
        self.wake.notify_one();
        Ok(volume)
    }

    /// Make a volume now (blocking), for a cold start that found none ready.
    pub fn make_volume(&self, size_mib: u32) -> Result<Volume, TmpError> {
        let formatter = self.formatter.as_ref().ok_or(TmpError::ShuttingDown)?;
        let owner = self.owner.unwrap_or(TmpOwner::RUNTIME_USER);
        let volume = Volume::create(&self.dir, &new_id(), size_mib, owner, formatter)?;
        if self.lock().stopping {
            Doomed::Volume(volume).destroy();
            return Err(TmpError::ShuttingDown);
        }
        Ok(volume)
    }

    /// Hand a `/tmp` to the worker for deletion (or delete it here once stopping).
    pub fn bury(&self, doomed: Doomed) {
        let mut state = self.lock();
        if state.stopping {
            drop(state);
            doomed.destroy();
            return;
        }
        state.doomed.push(doomed);
        drop(state);
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.lock().stopping = true;
        self.wake.notify_all();
    }

    /// The worker: delete buried `/tmp`s first, then make ready volumes up to the targets;
    /// when stopped, tear down everything it holds.
    pub fn run(&self) {
        let mut state = self.lock();
        loop {
            if let Some(doomed) = state.doomed.pop() {
                drop(state);
                doomed.destroy();
                state = self.lock();
                continue;
            }
            if state.stopping {
                let ready: Vec<Volume> = state.ready.drain().flat_map(|(_, v)| v).collect();
                drop(state);
                ready.into_iter().for_each(|v| Doomed::Volume(v).destroy());
                return;
            }
            let expired = expire_other_sizes(&mut state);
            if !expired.is_empty() {
                drop(state);
                expired
                    .into_iter()
                    .for_each(|v| Doomed::Volume(v).destroy());
                state = self.lock();
                continue;
            }
            let now = Instant::now();
            let may_make = state.retry_at.is_none_or(|at| at <= now);
            if let (true, Some(size), Some(formatter)) =
                (may_make, wanted_size(&state), self.formatter.as_ref())
            {
                drop(state);
                let owner = self.owner.unwrap_or(TmpOwner::RUNTIME_USER);
                let made = Volume::create(&self.dir, &new_id(), size, owner, formatter);
                state = self.lock();
                match made {
                    Ok(volume) => {
                        state.retry_at = None;
                        state.ready.entry(size).or_default().push(volume);
                    }
                    Err(err) => {
                        tracing::warn!(size_mib = size, error = %super::error_chain(&err), "making a ready /tmp volume failed; retrying later");
                        state.retry_at = Some(now + RETRY_AFTER);
                    }
                }
                continue;
            }
            let wait = state
                .retry_at
                .map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
            state = self
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// After the worker has stopped: release every mount and device left under the directory
    /// (`/tmp`s kept for resets, those of environments still running) and empty it.
    pub fn sweep(&self) {
        stale::release(
            &self.dir,
            Path::new(stale::MOUNTINFO),
            Path::new(stale::SYS_BLOCK),
        );
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(err) = removed {
                tracing::warn!(path = %path.display(), %err, "removing a leftover /tmp failed");
            }
        }
    }
}

/// The size that has fewer ready volumes than its target, the default first.
fn wanted_size(state: &State) -> Option<u32> {
    let count = |size: u32| state.ready.get(&size).map_or(0, Vec::len);
    if count(DEFAULT_SIZE_MIB) < READY_DEFAULT {
        return Some(DEFAULT_SIZE_MIB);
    }
    let mut sizes: Vec<u32> = state.other_sizes.keys().copied().collect();
    sizes.sort_unstable();
    sizes.into_iter().find(|&size| count(size) < READY_OTHER)
}

/// Forget sizes not taken for [`OTHER_SIZE_TTL`]; returns their ready volumes.
fn expire_other_sizes(state: &mut State) -> Vec<Volume> {
    let now = Instant::now();
    let expired: Vec<u32> = state
        .other_sizes
        .iter()
        .filter(|(_, last)| now.duration_since(**last) >= OTHER_SIZE_TTL)
        .map(|(size, _)| *size)
        .collect();
    let mut volumes = Vec::new();
    for size in expired {
        state.other_sizes.remove(&size);
        volumes.extend(state.ready.remove(&size).unwrap_or_default());
    }
    volumes
}
