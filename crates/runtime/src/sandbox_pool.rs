//! Sandboxes started ahead of need.
//!
//! A prepared sandbox is a `kappa __sandbox-init` process that has already done everything that
//! does not depend on the function: it was spawned (an `exec` of the `kappa` binary), joined a
//! fresh cgroup (on cgroup v1 a move between groups waits for an RCU grace period: milliseconds),
//! entered its namespaces and, with an isolated network, brought up loopback and handed back its
//! Runtime API listener; built its root file system and `pivot_root`ed into it; compiled its
//! seccomp filter; and started its PID namespace's init, which mounted `/proc` and forked the
//! runtime's process. That process waits on the channel for the function's `SandboxSpec`. A cold
//! start takes one from the pool and pays only for the function's part: its binds (sent as
//! detached mounts), the switch to the sandbox user and the runtime itself. The pool refills in
//! the background.

use std::collections::VecDeque;
use std::io::PipeReader;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kappa_sandbox::{
    CgroupManager, EnvironmentCgroup, EnvironmentLimits, Isolation, SandboxBase, SandboxNetwork,
    SandboxSpec,
};
use nix::unistd::Pid;

/// Memory a pooled sandbox's group starts with, before a function sets its own.
const POOLED_MEMORY_MB: u64 = 128;

/// One sandbox, entered and waiting for its function.
#[derive(Debug)]
pub struct PreparedSandbox {
    /// The environment id: its cgroup's name, and part of its log stream's.
    pub id: String,
    pub child: tokio::process::Child,
    pub pid: Pid,
    channel: UnixStream,
    /// The read end of the pipe that is the sandbox's stdout and stderr.
    pub log_reader: PipeReader,
    /// The Runtime API listener made inside the sandbox's network namespace, if it has one.
    pub api_listener: Option<std::net::TcpListener>,
    pub cgroup: Option<Arc<EnvironmentCgroup>>,
}

impl PreparedSandbox {
    /// Size the sandbox's cgroup for a function of `memory_mb`, with the CPU quota lifted for
    /// its init.
    pub fn size_for(&self, memory_mb: u32) -> Result<(), String> {
        if let Some(cgroup) = &self.cgroup {
            let limits = EnvironmentLimits::for_memory_size(u64::from(memory_mb));
            cgroup
                .apply_limits(&limits)
                .and_then(|()| cgroup.set_cpu_quota(None))
                .map_err(|e| format!("configuring the cgroup: {e}"))?;
        }
        Ok(())
    }

    /// Hand the function's part over, its binds as detached mounts of their sources; the
    /// sandbox attaches them in its root and starts the runtime.
    pub fn send(&mut self, spec: &SandboxSpec) -> std::io::Result<()> {
        let trees = spec
            .binds
            .iter()
            .map(|bind| {
                kappa_sandbox::clone_tree(&bind.source).map_err(|err| {
                    std::io::Error::new(
                        err.kind(),
                        format!("cloning the mount of {}: {err}", bind.source.display()),
                    )
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        kappa_sandbox::write_spec(&self.channel, spec, &trees)
    }

    fn is_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Starts sandboxes, keeping up to `pool_size` prepared ones waiting.
#[derive(Debug)]
pub struct SandboxLauncher {
    init_program: std::path::PathBuf,
    isolation: Isolation,
    network: SandboxNetwork,
    cgroups: Option<Arc<CgroupManager>>,
    /// How long `__sandbox-init` may take to hand over its Runtime API listener.
    handover_limit: Duration,
    pool_size: usize,
    ready: Mutex<VecDeque<PreparedSandbox>>,
    preparing: AtomicUsize,
    /// Set at shutdown: nothing more is prepared, and what is still being prepared is dropped.
    closed: AtomicBool,
}

impl SandboxLauncher {
    pub fn new(
        init_program: std::path::PathBuf,
        isolation: Isolation,
        network: SandboxNetwork,
        cgroups: Option<Arc<CgroupManager>>,
        handover_limit: Duration,
        pool_size: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            init_program,
            isolation,
            network,
            cgroups,
            handover_limit,
            pool_size,
            ready: Mutex::new(VecDeque::new()),
            preparing: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// Whether a sandbox with `network` makes the runtime's API listener inside (at Lambda's
    /// address).
    fn api_inside(&self, network: SandboxNetwork) -> bool {
        self.isolation == Isolation::MountNamespace && network == SandboxNetwork::Isolated
    }

    /// A sandbox with `network` for a new environment: a pooled one if one is waiting (the pool
    /// holds sandboxes of the server's default network), else one prepared now. Either way the
    /// pool is topped up in the background.
    pub async fn take(
        self: &Arc<Self>,
        network: SandboxNetwork,
    ) -> Result<PreparedSandbox, String> {
        if network != self.network {
            return self.prepare(network).await;
        }
        let pooled = loop {
            let next = self
                .ready
                .lock()
                .ok()
                .and_then(|mut ready| ready.pop_front());
            match next {
                Some(mut sandbox) => {
                    if sandbox.is_waiting() {
                        break Some(sandbox);
                    } // else it died while waiting: take the next one
                }
                None => break None,
            }
        };
        self.refill();
        match pooled {
            Some(sandbox) => Ok(sandbox),
            None => self.prepare(network).await,
        }
    }

    /// Start preparing sandboxes until the pool (counting those under way) is full.
    pub fn refill(self: &Arc<Self>) {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            let waiting = self.ready.lock().map(|ready| ready.len()).unwrap_or(0);
            let preparing = self.preparing.load(Ordering::Acquire);
            if waiting + preparing >= self.pool_size {
                return;
            }
            if self
                .preparing
                .compare_exchange(
                    preparing,
                    preparing + 1,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let launcher = Arc::clone(self);
            tokio::spawn(async move {
                let prepared = launcher.prepare(launcher.network).await;
                match prepared {
                    Ok(sandbox) => {
                        if let Ok(mut ready) = launcher.ready.lock()
                            && !launcher.closed.load(Ordering::Acquire)
                        {
                            ready.push_back(sandbox);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "could not prepare a sandbox for the pool")
                    }
                }
                launcher.preparing.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// At shutdown: stop preparing, and stop and remove every waiting sandbox.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waiting = self
            .ready
            .lock()
            .map(|mut ready| std::mem::take(&mut *ready))
            .unwrap_or_default();
        drop(waiting);
    }

    /// At shutdown, once every environment is stopped: kill what is left in this server's
    /// cgroups (sandboxes still being prepared, processes still dying) and remove them.
    pub async fn remove_cgroups(&self) {
        if let Some(manager) = self.cgroups.clone() {
            let removed = tokio::task::spawn_blocking(move || manager.remove_all()).await;
            if let Ok(Err(err)) = removed {
                tracing::warn!(error = %err, "could not remove the server's cgroups");
            }
        }
    }

    /// Spawn `__sandbox-init` into a fresh cgroup and wait until it is entered and waiting.
    async fn prepare(&self, network: SandboxNetwork) -> Result<PreparedSandbox, String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let cgroup = match &self.cgroups {
            Some(manager) => Some(create_cgroup(manager, &id).await?),
            None => None,
        };
        let base = SandboxBase {
            isolation: self.isolation,
            network,
            parent_pid: i32::try_from(std::process::id()).ok(),
            cgroup_procs: cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default(),
        };
        let base_json = base.to_json().map_err(|e| format!("sandbox base: {e}"))?;
        let (log_reader, log_writer) = std::io::pipe().map_err(|e| format!("log pipe: {e}"))?;
        let stdout = log_writer
            .try_clone()
            .map_err(|e| format!("log pipe: {e}"))?;
        let (channel, theirs) = UnixStream::pair().map_err(|e| format!("sandbox channel: {e}"))?;
        let mut command = tokio::process::Command::new(&self.init_program);
        command
            .arg("__sandbox-init")
            .env_clear()
            .env("KAPPA_SANDBOX_BASE", base_json)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log_writer))
            .process_group(0)
            .kill_on_drop(true);
        let child = command.spawn();
        drop(command);
        let child = child.map_err(|e| format!("spawning the sandbox: {e}"))?;
        let pid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw)
            .ok_or_else(|| "the sandbox has no pid".to_owned())?;
        let mut sandbox = PreparedSandbox {
            id,
            child,
            pid,
            channel,
            log_reader,
            api_listener: None,
            cgroup,
        };
        if self.api_inside(network) {
            let channel = sandbox
                .channel
                .try_clone()
                .map_err(|e| format!("sandbox channel: {e}"))?;
            let limit = self.handover_limit;
            let listener = tokio::task::spawn_blocking(move || {
                channel.set_read_timeout(Some(limit))?;
                kappa_sandbox::receive_runtime_api_listener(&channel)
            })
            .await
            .map_err(|e| format!("receiving the Runtime API listener: {e}"))?
            .map_err(|e| format!("the sandbox did not start: {e}"))?;
            sandbox.api_listener = Some(listener);
        }
        Ok(sandbox)
    }
}

async fn create_cgroup(
    manager: &Arc<CgroupManager>,
    id: &str,
) -> Result<Arc<EnvironmentCgroup>, String> {
    let manager = Arc::clone(manager);
    let id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let cgroup = manager
            .create(&id, &EnvironmentLimits::for_memory_size(POOLED_MEMORY_MB))
            .map_err(|e| format!("creating the cgroup: {e}"))?;
        cgroup
            .set_cpu_quota(None)
            .map_err(|e| format!("configuring the cgroup: {e}"))?;
        Ok(Arc::new(cgroup))
    })
    .await
    .map_err(|e| format!("creating the cgroup: {e}"))?
}
