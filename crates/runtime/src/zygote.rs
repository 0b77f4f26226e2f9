//! Zygotes of the managed runtimes that can be forked (Python): an interpreter started once with
//! its runtime imported, forked into each new sandbox (see `kappa_sandbox`'s `zygote.rs` for the
//! protocol and what a forked runtime is given).
//!
//! A burst of cold starts is then mostly sandboxes: each new environment costs a fork instead of
//! an interpreter's start and imports (tens of milliseconds of CPU, most of it the same work
//! every time). Forks share what the zygote had when it forked: its address-space layout and
//! CPython's hash seed. So that no function learns another's, each function has zygotes of its
//! own (one per runtime it uses), made at its first cold start that finds no prestarted
//! interpreter; at most a few are kept, the least recently used and the long idle are stopped. A
//! zygote that fails is dropped and started again at the next cold start; the environment it
//! failed for starts its runtime the ordinary way.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_sandbox::{PrestartedRuntime, SyscallFilter, ZygoteFork, ZygoteSettings};

/// How long a zygote may take to answer one fork (the first one waits for its imports).
const FORK_LIMIT: Duration = Duration::from_secs(5);

/// One runtime's zygote process and its channel.
#[derive(Debug)]
pub struct Zygote {
    process: Mutex<Child>,
    channel: Mutex<UnixStream>,
    failed: AtomicBool,
}

impl Zygote {
    /// Spawn `kappa __sandbox-zygote` for `runtime` and send it `settings`.
    fn start(
        init_program: &Path,
        runtime: &PrestartedRuntime,
        settings: &ZygoteSettings,
    ) -> std::io::Result<Self> {
        let (ours, theirs) = UnixStream::pair()?;
        let described = runtime.to_json().map_err(std::io::Error::other)?;
        let process = Command::new(init_program)
            .arg("__sandbox-zygote")
            .env_clear()
            .env("KAPPA_ZYGOTE_RUNTIME", described)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Out of the server's group: a terminal's Ctrl-C is the server's to handle.
            .process_group(0)
            .spawn()?;
        let zygote = Self {
            process: Mutex::new(process),
            channel: Mutex::new(ours),
            failed: AtomicBool::new(false),
        };
        let sent = zygote
            .channel
            .lock()
            .map_err(|_| std::io::Error::other("zygote channel poisoned"))
            .and_then(|channel| {
                channel.set_read_timeout(Some(FORK_LIMIT))?;
                kappa_sandbox::send_zygote_settings(&channel, settings)
            });
        sent.map(|()| zygote)
    }

    /// Whether it can still be asked (it has not failed and is still running).
    fn is_usable(&self) -> bool {
        !self.failed.load(Ordering::Acquire)
            && self
                .process
                .lock()
                .is_ok_and(|mut process| matches!(process.try_wait(), Ok(None)))
    }

    /// Fork a runtime into the sandbox whose handover `fds` came with `request` (blocking:
    /// forks are made one at a time). A zygote that cannot be talked to is marked failed.
    pub fn fork(&self, request: &ZygoteFork, fds: &[OwnedFd]) -> Result<(), String> {
        if self.failed.load(Ordering::Acquire) {
            return Err("the zygote failed earlier".to_owned());
        }
        let channel = self
            .channel
            .lock()
            .map_err(|_| "the zygote's channel is poisoned".to_owned())?;
        match kappa_sandbox::fork_in_zygote(&channel, request, fds) {
            Ok(answer) => answer,
            Err(err) => {
                self.failed.store(true, Ordering::Release);
                Err(format!("talking to the zygote: {err}"))
            }
        }
    }
}

impl Drop for Zygote {
    fn drop(&mut self) {
        if let Ok(process) = self.process.get_mut() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// The zygotes of the functions started recently, at most `limit`; the least recently used makes
/// way for a new one, and one not asked for in `idle_limit` is stopped.
#[derive(Debug)]
pub struct Zygotes {
    init_program: PathBuf,
    settings: Option<ZygoteSettings>,
    limit: usize,
    idle_limit: Duration,
    running: Mutex<HashMap<ZygoteKey, Running>>,
}

/// Whose zygote: a runtime's start for one function (by name).
type ZygoteKey = (Arc<PrestartedRuntime>, String);

/// A zygote and when it was last asked for.
type Running = (Arc<Zygote>, Instant);

impl Zygotes {
    /// `enabled`: whether the operator allows zygotes at all.
    pub fn new(init_program: PathBuf, limit: usize, idle_limit: Duration, enabled: bool) -> Self {
        // Without a filter for this host there are no zygotes: a forked runtime must be
        // confined exactly as a started one.
        let filter = if enabled {
            SyscallFilter::for_host()
                .inspect_err(|err| tracing::warn!(error = %err, "no zygotes: seccomp filter"))
                .ok()
        } else {
            None
        };
        let settings = filter.map(|filter| ZygoteSettings::for_sandbox(&filter));
        Self {
            init_program,
            settings,
            limit,
            idle_limit,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// `function`'s zygote of `runtime`, started now if it has none (or its last one failed).
    pub fn for_function(
        &self,
        runtime: &Arc<PrestartedRuntime>,
        function: &str,
    ) -> Option<Arc<Zygote>> {
        let settings = self.settings.as_ref()?;
        if !runtime.forkable {
            return None;
        }
        let key = (Arc::clone(runtime), function.to_owned());
        let mut evicted = Vec::new();
        let zygote = {
            let mut running = self.running.lock().ok()?;
            let now = Instant::now();
            let idle: Vec<ZygoteKey> = running
                .iter()
                .filter(|(_, (_, used))| now.duration_since(*used) > self.idle_limit)
                .map(|(key, _)| key.clone())
                .collect();
            evicted.extend(idle.iter().filter_map(|key| running.remove(key)));
            if let Some((zygote, used)) = running.get_mut(&key)
                && zygote.is_usable()
            {
                *used = now;
                return Some(Arc::clone(zygote));
            }
            if let Some(failed) = running.remove(&key) {
                evicted.push(failed);
            }
            while running.len() >= self.limit {
                let oldest = running
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(key, _)| key.clone());
                match oldest.and_then(|key| running.remove(&key)) {
                    Some(oldest) => evicted.push(oldest),
                    None => break,
                }
            }
            let zygote = Zygote::start(&self.init_program, runtime, settings)
                .inspect_err(|err| tracing::warn!(error = %err, "could not start a zygote"))
                .ok()
                .map(Arc::new)?;
            running.insert(key, (Arc::clone(&zygote), now));
            zygote
        };
        drop(evicted); // stopped outside the lock
        Some(zygote)
    }

    /// At shutdown: stop every zygote.
    pub fn close(&self) {
        let running = self
            .running
            .lock()
            .map(|mut running| std::mem::take(&mut *running))
            .unwrap_or_default();
        drop(running);
    }
}
