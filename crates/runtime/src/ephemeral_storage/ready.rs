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
/// A size other than the default stops being kept ready when not taken for this long, and a
/// burst's extra ready volumes are given up after this long without another miss.
const OTHER_SIZE_TTL: Duration = Duration::from_secs(600);
/// Each take that finds no ready volume of its size keeps one more ready, up to this many more.
const MAX_BURST: usize = 6;
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
    /// Per size: takes that found nothing ready lately, and when the last one did.
    misses: HashMap<u32, (usize, Instant)>,
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
        if volume.is_none() {
            let miss = state.misses.entry(size_mib).or_insert((0, Instant::now()));
            *miss = ((miss.0 + 1).min(MAX_BURST), Instant::now());
        }
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
            let expired = surplus(&mut state);
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

/// How many volumes of `size` to keep ready: two of the default size, one of another size
/// taken lately, plus one per recent take that found none.
fn target(state: &State, size: u32) -> usize {
    let base = if size == DEFAULT_SIZE_MIB {
        READY_DEFAULT
    } else if state.other_sizes.contains_key(&size) {
        READY_OTHER
    } else {
        0
    };
    base + state.misses.get(&size).map_or(0, |(misses, _)| *misses)
}

/// The size that has fewer ready volumes than its target, the default first.
fn wanted_size(state: &State) -> Option<u32> {
    let count = |size: u32| state.ready.get(&size).map_or(0, Vec::len);
    let mut sizes: Vec<u32> = state.other_sizes.keys().copied().collect();
    sizes.sort_unstable();
    std::iter::once(DEFAULT_SIZE_MIB)
        .chain(sizes)
        .find(|&size| count(size) < target(state, size))
}

/// Forget sizes not taken, and bursts not repeated, for [`OTHER_SIZE_TTL`]; returns the ready
/// volumes beyond the targets that remain.
fn surplus(state: &mut State) -> Vec<Volume> {
    let now = Instant::now();
    state
        .other_sizes
        .retain(|_, last| now.duration_since(*last) < OTHER_SIZE_TTL);
    state
        .misses
        .retain(|_, (_, last)| now.duration_since(*last) < OTHER_SIZE_TTL);
    let mut sizes: Vec<u32> = state.ready.keys().copied().collect();
    sizes.sort_unstable();
    let mut volumes = Vec::new();
    for size in sizes {
        let keep = target(state, size);
        if let Some(list) = state.ready.get_mut(&size)
            && list.len() > keep
        {
            volumes.extend(list.drain(keep..));
        }
    }
    state.ready.retain(|_, list| !list.is_empty());
    volumes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_the_sizes_taken_and_the_bursts() {
        let mut state = State::default();
        assert_eq!(target(&state, DEFAULT_SIZE_MIB), READY_DEFAULT);
        assert_eq!(target(&state, 1024), 0);
        assert_eq!(wanted_size(&state), Some(DEFAULT_SIZE_MIB));
        state.other_sizes.insert(1024, Instant::now());
        state.misses.insert(1024, (3, Instant::now()));
        assert_eq!(target(&state, 1024), READY_OTHER + 3);
        let long_ago = Instant::now().checked_sub(OTHER_SIZE_TTL + Duration::from_secs(1));
        if let Some(long_ago) = long_ago {
            state.other_sizes.insert(1024, long_ago);
            state.misses.insert(1024, (3, long_ago));
            assert!(surplus(&mut state).is_empty());
            assert_eq!(target(&state, 1024), 0);
        }
    }
}
