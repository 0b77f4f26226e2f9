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
//!
//! Besides that pool for any function, one pool per managed runtime that can be prestarted (at
//! most [`MAX_PRESTARTED_RUNTIMES`], made when a cold start first asks for it) holds sandboxes in
//! which that runtime's interpreter is already started and waiting for its function (see
//! `kappa_sandbox`'s `prestart.rs`); a cold start of that runtime takes one of those first.

use std::collections::{HashMap, VecDeque};
use std::io::PipeReader;
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kappa_sandbox::{
    CgroupManager, EnvironmentCgroup, EnvironmentLimits, Isolation, PrestartedRuntime,
    RuntimeRelease, SandboxBase, SandboxNetwork, SandboxSpec, ZygoteFork,
};
use nix::unistd::Pid;

use crate::zygote::{Zygote, Zygotes};

/// Memory a pooled sandbox's group starts with, before a function sets its own.
const POOLED_MEMORY_MB: u64 = 128;

/// Managed runtimes kept prestarted at once; the one taken from least recently makes way.
const MAX_PRESTARTED_RUNTIMES: usize = 4;

/// Zygotes kept at once (one per function and runtime); the least recently used makes way.
const MAX_ZYGOTES: usize = 8;

/// A zygote not asked for this long is stopped (at the next cold start of a forkable runtime).
const ZYGOTE_IDLE_LIMIT: Duration = Duration::from_secs(600);

/// How long a sandbox may take to attach its function and hand over what its zygote needs.
const HANDOVER_LIMIT: Duration = Duration::from_secs(10);

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
    /// The runtime already started in it, waiting for its function.
    pub prestarted: Option<Arc<PrestartedRuntime>>,
    /// The zygote that forks its runtime in, once the function is attached.
    zygote: Option<Arc<Zygote>>,
    /// Whether it has a network namespace of its own.
    isolated_network: bool,
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
    /// sandbox attaches them in its root and starts (or releases) the runtime. Binds a
    /// prestarted runtime already has are not sent again.
    pub fn send(&mut self, spec: &SandboxSpec) -> std::io::Result<()> {
        let early = self
            .prestarted
            .as_ref()
            .map(|runtime| runtime.binds.as_slice())
            .unwrap_or_default();
        let mut spec = spec.clone();
        spec.binds.retain(|bind| !early.contains(bind));
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
        kappa_sandbox::write_spec(&self.channel, &spec, &trees)
    }

    /// Hand the function's part over ([`PreparedSandbox::send`]) and have its runtime started:
    /// by the sandbox, or forked in by the zygote this sandbox was prepared for. A zygote that
    /// fails leaves the start to the sandbox (logged).
    pub async fn start(&mut self, spec: &SandboxSpec) -> std::io::Result<()> {
        let Some(zygote) = self.zygote.clone() else {
            return self.send(spec);
        };
        let mut forked = spec.clone();
        forked.from_zygote = true;
        self.send(&forked)?;
        let channel = self.channel.try_clone()?;
        let request = ZygoteFork {
            namespaces: ZygoteFork::namespaces(self.isolated_network),
            process_group: self.pid.as_raw(),
            cgroup_procs: self
                .cgroup
                .as_ref()
                .map(|cgroup| cgroup.procs_files())
                .unwrap_or_default(),
            open_files_limit: spec.open_files_limit,
            release: RuntimeRelease {
                argv: spec.argv.clone(),
                env: spec.env.clone(),
                cwd: spec.cwd.clone(),
            },
        };
        tokio::task::spawn_blocking(move || {
            channel.set_read_timeout(Some(HANDOVER_LIMIT))?;
            let handover = kappa_sandbox::receive_handover(&channel)?;
            let forked = zygote.fork(&request, &handover);
            drop(handover);
            if let Err(reason) = &forked {
                tracing::warn!(%reason, "the zygote did not start a runtime; the sandbox starts it");
            }
            kappa_sandbox::answer_handover(&channel, forked.is_ok())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    fn is_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What a pool holds sandboxes for: any function, or the functions of one managed runtime,
/// whose interpreter is started in them.
type PoolKey = Option<Arc<PrestartedRuntime>>;

/// The sandboxes waiting for one kind of start, and how many more are being prepared.
#[derive(Debug)]
struct Pool {
    ready: VecDeque<PreparedSandbox>,
    preparing: usize,
    last_taken: Instant,
}

impl Pool {
    fn new() -> Self {
        Self {
            ready: VecDeque::new(),
            preparing: 0,
            last_taken: Instant::now(),
        }
    }

    /// The first sandbox still waiting; those that died while waiting are dropped.
    fn pop_waiting(&mut self) -> Option<PreparedSandbox> {
        self.last_taken = Instant::now();
        while let Some(mut sandbox) = self.ready.pop_front() {
            if sandbox.is_waiting() {
                return Some(sandbox);
            }
        }
        None
    }
}

/// Starts sandboxes, keeping up to `pool_size` prepared ones waiting for any function and as
/// many for each managed runtime that can be prestarted and was asked for recently.
#[derive(Debug)]
pub struct SandboxLauncher {
    init_program: std::path::PathBuf,
    isolation: Isolation,
    network: SandboxNetwork,
    cgroups: Option<Arc<CgroupManager>>,
    /// How long `__sandbox-init` may take to hand over its Runtime API listener.
    handover_limit: Duration,
    pool_size: usize,
    pools: Mutex<HashMap<PoolKey, Pool>>,
    zygotes: Zygotes,
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
        python_zygotes: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            zygotes: Zygotes::new(
                init_program.clone(),
                MAX_ZYGOTES,
                ZYGOTE_IDLE_LIMIT,
                python_zygotes,
            ),
            init_program,
            isolation,
            network,
            cgroups,
            handover_limit,
            pool_size,
            pools: Mutex::new(HashMap::from([(None, Pool::new())])),
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

    /// A sandbox with `network` for a new environment of `function`: one with `prestart`'s
    /// runtime already started if one is waiting, else a pooled one for any function (the
    /// pools hold sandboxes of the server's default network), else one prepared now; for a
    /// runtime that can be forked, the function's zygote of it will fork the runtime in.
    /// Whatever pool was asked is topped up in the background; asking for a runtime's the first
    /// time creates its pool.
    pub async fn take(
        self: &Arc<Self>,
        network: SandboxNetwork,
        prestart: Option<PrestartedRuntime>,
        function: &str,
    ) -> Result<PreparedSandbox, String> {
        let runtime = prestart
            .filter(|_| self.isolation == Isolation::MountNamespace)
            .map(Arc::new);
        if let Some(runtime) = runtime.as_ref().filter(|_| network == self.network) {
            let key = Some(Arc::clone(runtime));
            let prestarted = self.pop(&key);
            self.refill(&key);
            if let Some(sandbox) = prestarted {
                return Ok(sandbox);
            }
        }
        let zygote = runtime.and_then(|runtime| self.zygotes.for_function(&runtime, function));
        let mut sandbox = if network != self.network {
            self.prepare(network, None).await?
        } else {
            let pooled = self.pop(&None);
            self.refill(&None);
            match pooled {
                Some(sandbox) => sandbox,
                None => self.prepare(network, None).await?,
            }
        };
        sandbox.zygote = zygote;
        Ok(sandbox)
    }

    /// A waiting sandbox from `key`'s pool, which is created (making way for it if there are
    /// too many) if it does not exist.
    fn pop(&self, key: &PoolKey) -> Option<PreparedSandbox> {
        let mut evicted = None;
        let taken = {
            let mut pools = self.pools.lock().ok()?;
            if !pools.contains_key(key) {
                let prestarted = pools.keys().filter(|k| k.is_some()).count();
                if prestarted >= MAX_PRESTARTED_RUNTIMES {
                    let oldest = pools
                        .iter()
                        .filter(|(k, _)| k.is_some())
                        .min_by_key(|(_, pool)| pool.last_taken)
                        .map(|(k, _)| k.clone());
                    evicted = oldest.and_then(|k| pools.remove(&k));
                }
                pools.insert(key.clone(), Pool::new());
            }
            pools.get_mut(key).and_then(Pool::pop_waiting)
        };
        drop(evicted); // its sandboxes are killed outside the lock
        taken
    }

    /// Start preparing sandboxes until `key`'s pool (counting those under way) is full.
    fn refill(self: &Arc<Self>, key: &PoolKey) {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            {
                let Ok(mut pools) = self.pools.lock() else {
                    return;
                };
                let Some(pool) = pools.get_mut(key) else {
                    return;
                };
                if pool.ready.len() + pool.preparing >= self.pool_size {
                    return;
                }
                pool.preparing += 1;
            }
            let launcher = Arc::clone(self);
            let key = key.clone();
            tokio::spawn(async move {
                let prepared = launcher
                    .prepare(launcher.network, key.clone())
                    .await
                    .inspect_err(|err| {
                        tracing::warn!(error = %err, "could not prepare a sandbox for the pool")
                    })
                    .ok();
                let mut unused = None;
                if let Ok(mut pools) = launcher.pools.lock() {
                    match pools.get_mut(&key) {
                        Some(pool) => {
                            pool.preparing = pool.preparing.saturating_sub(1);
                            match prepared {
                                Some(sandbox) if !launcher.closed.load(Ordering::Acquire) => {
                                    pool.ready.push_back(sandbox)
                                }
                                other => unused = other,
                            }
                        }
                        None => unused = prepared, // its pool was evicted meanwhile
                    }
                }
                drop(unused);
            });
        }
    }

    /// Start preparing sandboxes for any function until that pool is full.
    pub fn fill(self: &Arc<Self>) {
        self.refill(&None);
    }

    /// At shutdown: stop preparing, and stop and remove every waiting sandbox.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.zygotes.close();
        let waiting = self
            .pools
            .lock()
            .map(|mut pools| std::mem::take(&mut *pools))
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

    /// Spawn `__sandbox-init` into a fresh cgroup and wait until it is entered and waiting (with
    /// `prestart`, with that runtime started in it).
    async fn prepare(
        &self,
        network: SandboxNetwork,
        prestart: PoolKey,
    ) -> Result<PreparedSandbox, String> {
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
            prestart: prestart.as_deref().cloned(),
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
            prestarted: prestart,
            zygote: None,
            isolated_network: self.api_inside(network),
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
