//! Idle environments per function version. (Concurrency is admitted before an environment is
//! taken: `kappa_core::concurrency`.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    /// Live provisioned environments per version, idle or busy.
    provisioned: Mutex<HashMap<VersionKey, usize>>,
}

impl EnvironmentPool {
    pub fn new() -> Self {
        Self {
            idle: Mutex::default(),
            reset_tmp: Mutex::default(),
            provisioned: Mutex::default(),
        }
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
            // Provisioned environments are kept warm, whatever their idle time.
            let (keep, drop): (Vec<_>, Vec<_>) = list.drain(..).partition(|env| {
                current
                    && env.is_alive()
                    && (env.provisioned || now.duration_since(env.last_used) < keep_alive)
            });
            for _ in drop.iter().filter(|env| env.provisioned) {
                self.provisioned_gone(key);
            }
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

impl EnvironmentPool {
    /// A provisioned environment of `key` was started.
    pub fn provisioned_started(&self, key: &VersionKey) {
        if let Ok(mut counts) = self.provisioned.lock() {
            *counts.entry(key.clone()).or_default() += 1;
        }
    }

    /// A provisioned environment of `key` is gone (crashed, reset, retired or evicted).
    pub fn provisioned_gone(&self, key: &VersionKey) {
        if let Ok(mut counts) = self.provisioned.lock()
            && let Some(count) = counts.get_mut(key)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(key);
            }
        }
    }

    /// Live provisioned environments per version.
    pub fn provisioned_counts(&self) -> HashMap<VersionKey, usize> {
        self.provisioned
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }

    /// Take up to `count` idle provisioned environments of `key` out of the pool, to retire them.
    pub fn take_idle_provisioned(
        &self,
        key: &VersionKey,
        count: usize,
    ) -> Vec<ExecutionEnvironment> {
        let mut taken = Vec::new();
        let Ok(mut idle) = self.idle.lock() else {
            return taken;
        };
        if let Some(list) = idle.get_mut(key) {
            let mut index = 0;
            while index < list.len() && taken.len() < count {
                if list[index].provisioned {
                    taken.push(list.remove(index));
                } else {
                    index += 1;
                }
            }
        }
        drop(idle);
        for _ in &taken {
            self.provisioned_gone(key);
        }
        taken
    }
}
