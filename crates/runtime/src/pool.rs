//! Idle environments per function version, and the account's concurrency limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::environment::ExecutionEnvironment;
use crate::ephemeral_storage::EnvironmentTmp;

/// Identifies one runnable configuration: a function version at one revision. When `$LATEST`
/// changes, its revision changes and old environments stop being used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VersionKey {
    pub function: String,
    pub version: String,
    pub revision_id: String,
}

#[derive(Debug)]
pub struct EnvironmentPool {
    idle: Mutex<HashMap<VersionKey, Vec<ExecutionEnvironment>>>,
    /// `/tmp`s of environments that were reset, waiting for their replacement.
    reset_tmp: Mutex<HashMap<VersionKey, Vec<(EnvironmentTmp, Instant)>>>,
    concurrency: Arc<Semaphore>,
}

impl EnvironmentPool {
    pub fn new(concurrency_limit: u32) -> Self {
        Self {
            idle: Mutex::default(),
            reset_tmp: Mutex::default(),
            concurrency: Arc::new(Semaphore::new(concurrency_limit as usize)),
        }
    }

    /// A slot of the account's concurrency, or `None` when all are in use.
    pub fn try_reserve(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.concurrency).try_acquire_owned().ok()
    }

    /// The most recently used idle environment of `key`, if one is alive.
    pub fn take_idle(&self, key: &VersionKey) -> Option<ExecutionEnvironment> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some(environment) = list.pop() {
            if environment.is_alive() {
                return Some(environment);
            }
        }
        None
    }

    pub fn put_idle(&self, key: VersionKey, environment: ExecutionEnvironment) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.entry(key).or_default().push(environment);
        }
    }

    /// Remove environments idle for longer than `keep_alive`, dead ones, and those of versions
    /// for which `is_current` says false. Returns them so the caller can shut them down.
    pub fn evict(
        &self,
        keep_alive: Duration,
        is_current: impl Fn(&VersionKey) -> bool,
    ) -> Vec<ExecutionEnvironment> {
        let now = Instant::now();
        let mut evicted = Vec::new();
        let Ok(mut idle) = self.idle.lock() else {
            return evicted;
        };
        for (key, list) in idle.iter_mut() {
            let current = is_current(key);
            let (keep, drop): (Vec<_>, Vec<_>) = list.drain(..).partition(|env| {
                current && env.is_alive() && now.duration_since(env.last_used) < keep_alive
            });
            *list = keep;
            evicted.extend(drop);
        }
        idle.retain(|_, list| !list.is_empty());
        evicted
    }

    /// Every idle environment, for shutdown.
    pub fn drain_all(&self) -> Vec<ExecutionEnvironment> {
        self.idle
            .lock()
            .map(|mut idle| idle.drain().flat_map(|(_, list)| list).collect())
            .unwrap_or_default()
    }

    pub fn idle_count(&self) -> usize {
        self.idle
            .lock()
            .map(|idle| idle.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

impl EnvironmentPool {
    /// The versions that have idle environments.
    pub fn keys(&self) -> Vec<VersionKey> {
        self.idle
            .lock()
            .map(|idle| idle.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl EnvironmentPool {
    /// Keep the `/tmp` of a reset environment for the next environment of `key`.
    pub fn put_reset_tmp(&self, key: VersionKey, dir: EnvironmentTmp) {
        if let Ok(mut reset) = self.reset_tmp.lock() {
            reset.entry(key).or_default().push((dir, Instant::now()));
        }
    }

    pub fn take_reset_tmp(&self, key: &VersionKey) -> Option<EnvironmentTmp> {
        let mut reset = self.reset_tmp.lock().ok()?;
        let list = reset.get_mut(key)?;
        let (dir, _) = list.pop()?;
        if list.is_empty() {
            reset.remove(key);
        }
        Some(dir)
    }

    /// Delete kept `/tmp`s older than `keep_alive` or of versions no longer current.
    pub fn evict_reset_tmp(&self, keep_alive: Duration, is_current: impl Fn(&VersionKey) -> bool) {
        let now = Instant::now();
        let Ok(mut reset) = self.reset_tmp.lock() else {
            return;
        };
        for (key, list) in reset.iter_mut() {
            let current = is_current(key);
            // A dropped `/tmp` is deleted.
            list.retain(|(_, since)| current && now.duration_since(*since) < keep_alive);
        }
        reset.retain(|_, list| !list.is_empty());
    }

    /// Versions with kept `/tmp`s.
    pub fn reset_keys(&self) -> Vec<VersionKey> {
        self.reset_tmp
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }
}
