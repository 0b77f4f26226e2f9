//! One execution environment: a runtime process in its sandbox, its Runtime API, and its log.
//!
//! Lifecycle: start (spawn, wait for the runtime's first `/next` within the init limit) → idle ⇄
//! busy (one invocation at a time) → shut down. A timeout, crash or init failure ends it; the next
//! invocation gets a fresh one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kappa_core::function::FunctionVersion;
use kappa_sandbox::{
    Bind, EnvironmentCgroup, EnvironmentLimits, Isolation, RUNTIME_API_ADDRESS, SandboxSpec,
};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::json;
use tokio::sync::watch;

use crate::ephemeral_storage::{EnvironmentTmp, TmpStorage, error_chain};
use crate::launch::{self, Interpreters, Layout};
use crate::log_capture::{LogCapture, now_ms};
use crate::log_writer::LogWriter;
use crate::network_policy::NetworkPolicy;
use crate::runtime_api::{Invocation, RuntimeApiHandle, RuntimeOutcome};
use crate::sandbox_pool::SandboxLauncher;

/// Open files a runtime may hold, as on Lambda.
const OPEN_FILES_LIMIT: u64 = 1024;

/// Settings shared by every environment of a server.
#[derive(Debug)]
pub struct EnvironmentSettings {
    /// Starts sandboxes (`kappa __sandbox-init`), keeping a few prepared ahead of need.
    pub sandboxes: Arc<SandboxLauncher>,
    /// Which network each function's environments get.
    pub network: NetworkPolicy,
    /// Every environment's `/tmp`: volumes capped at `EphemeralStorage`, or directories.
    pub tmp_storage: TmpStorage,
    /// The managed runtimes' bootstrap files; each family's directory is shown at `/var/runtime`.
    pub runtime_dir: PathBuf,
    /// An empty directory shown at `/opt` for functions without layers.
    pub empty_opt_dir: PathBuf,
    pub region: String,
    pub init_timeout: Duration,
    pub interpreters: Interpreters,
}

/// The result of one invocation in an environment.
#[derive(Debug)]
pub struct InvocationResult {
    pub payload: Vec<u8>,
    pub failed: bool,
    /// False when the environment must not serve again (timeout, crash).
    pub reusable: bool,
    /// The invocation's log text (init included on a cold start).
    pub log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Running,
    Exited(Option<i32>, Option<i32>),
}

#[derive(Debug)]
pub struct ExecutionEnvironment {
    pub id: String,
    api: RuntimeApiHandle,
    logs: LogCapture,
    pid: Pid,
    exit: watch::Receiver<Exit>,
    /// `None` once handed over for the environment that replaces this one after a reset.
    tmp: Option<EnvironmentTmp>,
    /// The environment's cgroup: memory and pids limits, peak memory, OOM kills.
    cgroup: Option<Arc<EnvironmentCgroup>>,
    /// Highest peak memory seen, so a runtime that died still has a figure.
    peak_memory_mb: u64,
    /// Init duration, reported on the first invocation only.
    pending_init: Option<Duration>,
    memory_size: u32,
    version: String,
    pub last_used: Instant,
    /// Started ahead of invocations for a provisioned concurrency config: kept warm, and its
    /// invocations report no init.
    pub provisioned: bool,
}

/// Why an environment is started: `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initialization {
    OnDemand,
    ProvisionedConcurrency,
}

impl Initialization {
    fn env_value(self) -> &'static str {
        match self {
            Self::OnDemand => "on-demand",
            Self::ProvisionedConcurrency => "provisioned-concurrency",
        }
    }
}

/// Serve the Runtime API on the listener `__sandbox-init` made in the environment's network
/// namespace.
fn serve_runtime_api(listener: std::net::TcpListener) -> std::io::Result<RuntimeApiHandle> {
    listener.set_nonblocking(true)?;
    RuntimeApiHandle::serve(tokio::net::TcpListener::from_std(listener)?)
}

/// Why an environment could not be started; the invocation fails with `body`.
#[derive(Debug)]
pub struct StartFailure {
    pub body: Vec<u8>,
    pub log: String,
}

/// Where a version's files are extracted on the host.
#[derive(Debug, Clone)]
pub struct ExtractedFiles {
    /// The code, shown at `/var/task`.
    pub code_dir: PathBuf,
    /// The layers in order, shown at `/opt`.
    pub opt_dir: PathBuf,
}

impl ExecutionEnvironment {
    /// Start an environment for `version` from its extracted `files`, on behalf of the
    /// invocation `request_id` (named in error messages).
    pub async fn start(
        version: &FunctionVersion,
        files: ExtractedFiles,
        settings: &EnvironmentSettings,
        writer: &LogWriter,
        request_id: &str,
        reused_tmp: Option<EnvironmentTmp>,
        initialization: Initialization,
    ) -> Result<Self, StartFailure> {
        let ExtractedFiles { code_dir, opt_dir } = files;
        let started = Instant::now();
        let runtime = version.settings.runtime.as_deref().unwrap_or("provided");
        let runtime_dir = settings
            .runtime_dir
            .join(crate::bootstraps::family(runtime));
        let (layout, binds) = match settings.sandboxes.isolation() {
            Isolation::MountNamespace => (Layout::lambda(), true),
            Isolation::UnsafeNone => (
                Layout {
                    task_root: code_dir.clone(),
                    runtime_dir: runtime_dir.clone(),
                    opt_dir: opt_dir.clone(),
                    lang_dir: None,
                },
                false,
            ),
        };
        let mut command = launch::command_line(
            version,
            &layout,
            &code_dir,
            &opt_dir,
            &runtime_dir,
            &settings.interpreters,
        );
        let lang_source = command
            .as_mut()
            .ok()
            .and_then(|argv| launch::relocate_interpreter(argv, &layout));
        let prestart = command.as_ref().ok().and_then(|argv| {
            launch::prestart(
                version,
                argv,
                &layout,
                &runtime_dir,
                lang_source.as_deref(),
                OPEN_FILES_LIMIT,
            )
        });
        // Spawned, in its cgroup and namespaces already if it came from the pool (with the
        // runtime started in it if it came from the runtime's pool).
        let mut sandbox = settings
            .sandboxes
            .take(
                settings.network.for_function(version),
                prestart,
                &version.name,
            )
            .await
            .map_err(|message| platform_failure(request_id, &std::io::Error::other(message)))?;
        let id = sandbox.id.clone();
        let stream = format!(
            "{}/[{}]{id}",
            chrono::Utc::now().format("%Y/%m/%d"),
            version.version
        );
        let log_reader = sandbox
            .log_reader
            .try_clone()
            .map_err(|e| platform_failure(request_id, &e))?;
        let logs = LogCapture::start(log_reader, &version.log_group(), &stream, writer.clone())
            .map_err(|e| platform_failure(request_id, &e))?;
        logs.platform_line(&format!(
            "INIT_START Runtime Version: kappa:{runtime}\tRuntime Version ARN: arn:aws:lambda:{}::runtime:kappa-{runtime}\n",
            settings.region
        ));
        let init_failure = InitFailure {
            request_id,
            version: &version.version,
            memory_size: version.settings.memory_size,
            started,
        };
        let fail = |error_type: &str, message: String, logs: &LogCapture| {
            let body = json!({ "errorType": error_type, "errorMessage": format!("RequestId: {request_id} Error: {message}") });
            init_failure.report(logs, error_type, body.to_string().into_bytes())
        };
        let argv = match command {
            Ok(argv) => argv,
            Err(err @ launch::LaunchError::NoBootstrap { .. }) => {
                return Err(fail("Runtime.InvalidEntrypoint", err.to_string(), &logs));
            }
            Err(err) => return Err(fail("Runtime.Unknown", err.to_string(), &logs)),
        };
        // In its own network namespace the sandbox made the Runtime API listener inside;
        // otherwise the API listens on the host's loopback.
        let api_inside = sandbox.api_listener.is_some();
        let api = match sandbox.api_listener.take() {
            Some(listener) => serve_runtime_api(listener),
            None => RuntimeApiHandle::start().await,
        };
        let api = match api {
            Ok(api) => api,
            Err(err) => {
                return Err(fail(
                    "Runtime.Unknown",
                    format!("runtime API: {err}"),
                    &logs,
                ));
            }
        };
        let api_address = if api_inside {
            RUNTIME_API_ADDRESS.to_string()
        } else {
            api.address.to_string()
        };
        // A reset keeps /tmp: a replacement environment takes over its predecessor's. Deleted
        // when dropped, so a start that fails leaves nothing behind.
        let tmp = match reused_tmp {
            Some(tmp) => tmp,
            None => match settings
                .tmp_storage
                .take(version.settings.ephemeral_storage)
                .await
            {
                Ok(tmp) => tmp,
                Err(err) => {
                    let message = format!("creating /tmp: {}", error_chain(&err));
                    return Err(fail("Runtime.Unknown", message, &logs));
                }
            },
        };
        let tmp_dir = tmp.path().to_path_buf();
        let interpreter_dir = argv
            .first()
            .and_then(|p| std::path::Path::new(p).parent())
            .map(PathBuf::from);
        let env = launch::environment(
            version,
            &layout,
            &api_address,
            &settings.region,
            &stream,
            if argv.len() > 1 {
                interpreter_dir.as_deref()
            } else {
                None
            },
        );
        let mut env = env;
        if initialization != Initialization::OnDemand {
            env.retain(|(k, _)| k != "AWS_LAMBDA_INITIALIZATION_TYPE");
            env.push((
                "AWS_LAMBDA_INITIALIZATION_TYPE".into(),
                initialization.env_value().into(),
            ));
        }
        if !binds {
            env.retain(|(k, _)| k != "TMPDIR");
            env.push(("TMPDIR".into(), tmp_dir.display().to_string()));
            // Without a mount namespace the layers are not at /opt: the embedded bootstraps read
            // their directory from here (see runtimes/*/README.md).
            env.push((
                launch::OPT_DIR_VARIABLE.into(),
                opt_dir.display().to_string(),
            ));
        }
        if let Err(message) = sandbox.size_for(version.settings.memory_size) {
            return Err(fail("Runtime.Unknown", message, &logs));
        }
        let spec = SandboxSpec {
            binds: if binds {
                let mut binds = vec![
                    Bind {
                        source: code_dir.clone(),
                        target: layout.task_root.clone(),
                        writable: false,
                    },
                    Bind {
                        source: opt_dir.clone(),
                        target: layout.opt_dir.clone(),
                        writable: false,
                    },
                    Bind {
                        source: tmp_dir.clone(),
                        target: PathBuf::from("/tmp"),
                        writable: true,
                    },
                ];
                binds.extend(launch::runtime_binds(
                    &layout,
                    &runtime_dir,
                    lang_source.as_deref(),
                ));
                binds
            } else {
                Vec::new()
            },
            cwd: layout.task_root.clone(),
            argv,
            env,
            hostname: format!("kappa-{}", &id[..12]),
            open_files_limit: OPEN_FILES_LIMIT,
            from_zygote: false,
        };
        if let Err(err) = sandbox.start(&spec).await {
            return Err(fail(
                "Runtime.Unknown",
                format!("starting the sandbox: {err}"),
                &logs,
            ));
        }
        let pid = sandbox.pid;
        let cgroup = sandbox.cgroup.take();
        let mut child = sandbox.child;
        let (exit_tx, exit) = watch::channel(Exit::Running);
        tokio::spawn(async move {
            let status = child.wait().await;
            let (code, signal) = match status {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    (status.code(), status.signal())
                }
                Err(_) => (None, None),
            };
            exit_tx.send_replace(Exit::Exited(code, signal));
        });

        let mut environment = Self {
            id,
            api,
            logs,
            pid,
            exit,
            tmp: Some(tmp),
            cgroup,
            peak_memory_mb: 0,
            pending_init: None,
            memory_size: version.settings.memory_size,
            version: version.version.clone(),
            last_used: Instant::now(),
            provisioned: initialization == Initialization::ProvisionedConcurrency,
        };
        let mut exit_watch = environment.exit.clone();
        tokio::select! {
            biased;
            () = environment.api.wait_ready() => {}
            () = wait_exit(&mut exit_watch) => {
                environment.logs.drain().await;
                let exit = *environment.exit.borrow();
                let failure = match environment.api.init_error() {
                    Some(body) => {
                        let error_type = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v.get("errorType").and_then(|t| t.as_str()).map(str::to_owned))
                            .unwrap_or_else(|| "Runtime.Unknown".to_owned());
                        init_failure.report(&environment.logs, &error_type, body.to_vec())
                    }
                    None => fail("Runtime.ExitError", exit_reason(exit), &environment.logs),
                };
                return Err(failure);
            }
            () = tokio::time::sleep(settings.init_timeout) => {
                environment.kill();
                environment.logs.drain().await;
                return Err(fail(
                    "Sandbox.Timedout",
                    format!("Init phase timed out after {:.2} seconds", settings.init_timeout.as_secs_f64()),
                    &environment.logs,
                ));
            }
        }
        // Provisioned environments initialize ahead of invocations, which report no init.
        if !environment.provisioned {
            environment.pending_init = Some(started.elapsed());
        }
        // Init ran with the whole CPU (as Lambda boosts init); invocations get the share their
        // memory buys: one vCPU per 1,769 MB.
        if let Some(cgroup) = &environment.cgroup {
            let limits = EnvironmentLimits::for_memory_size(u64::from(environment.memory_size));
            if let Err(err) = cgroup.set_cpu_quota(Some(&limits)) {
                tracing::warn!(environment = %environment.id, error = %err, "could not apply the CPU quota");
            }
        }
        Ok(environment)
    }

    /// Run one invocation, answering by `timeout` at the latest.
    pub async fn invoke(
        &mut self,
        mut invocation: Invocation,
        timeout: Duration,
    ) -> InvocationResult {
        let request_id = invocation.request_id.clone();
        self.logs.begin_record();
        self.logs.platform_line(&format!(
            "START RequestId: {request_id} Version: {}\n",
            self.version
        ));
        let started = Instant::now();
        let deadline = started + timeout;
        invocation.deadline_ms = u64::try_from(now_ms()).unwrap_or(0)
            + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let mut exit_watch = self.exit.clone();
        let mut reusable = true;
        let mut status_suffix = String::new();
        let dispatched = self.api.dispatch(invocation).await;
        self.max_memory_used_mb();
        let (payload, failed) = match dispatched {
            None => {
                reusable = false;
                (
                    error_body(
                        "Runtime.ExitError",
                        &request_id,
                        "Runtime exited without providing a reason",
                    ),
                    true,
                )
            }
            Some(outcome) => tokio::select! {
                biased;
                outcome = outcome => match outcome {
                    Ok(RuntimeOutcome::Response(body)) => (body.to_vec(), false),
                    Ok(RuntimeOutcome::Error { body }) => (body.to_vec(), true),
                    Ok(RuntimeOutcome::ResponseTooLarge) => (
                        json!({
                            "errorMessage": format!("Response payload size exceeded maximum allowed payload size ({} bytes).", kappa_core::invoke::MAX_RESPONSE_PAYLOAD),
                            "errorType": "Function.ResponseSizeTooLarge",
                        }).to_string().into_bytes(),
                        true,
                    ),
                    Err(_) => {
                        reusable = false;
                        (error_body("Runtime.Unknown", &request_id, "Unknown application error occurred"), true)
                    }
                },
                () = wait_exit(&mut exit_watch) => {
                    reusable = false;
                    let reason = exit_reason(*self.exit.borrow());
                    let error_type = if self.oom_killed() { "Runtime.OutOfMemory" } else { "Runtime.ExitError" };
                    self.logs.drain().await;
                    self.logs.platform_line(&format!("RequestId: {request_id} Error: {reason}\n"));
                    self.logs.platform_line(&format!("{error_type}\n"));
                    status_suffix = format!("\tStatus: error\tError Type: {error_type}");
                    (error_body(error_type, &request_id, &reason), true)
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    reusable = false;
                    self.kill();
                    let seconds = timeout.as_secs_f64();
                    self.logs.drain().await;
                    self.logs.platform_line(&format!(
                        "{} {request_id} Task timed out after {seconds:.2} seconds\n",
                        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
                    ));
                    status_suffix = "\tStatus: timeout".to_owned();
                    (error_body("Sandbox.Timedout", &request_id, &format!("Task timed out after {seconds:.2} seconds")), true)
                }
            },
        };
        let duration = started.elapsed();
        self.logs.drain().await;
        self.logs
            .platform_line(&format!("END RequestId: {request_id}\n"));
        let report = self.report_line(&request_id, duration, &status_suffix);
        self.logs.platform_line(&report);
        self.last_used = Instant::now();
        InvocationResult {
            payload,
            failed,
            reusable,
            log: self.logs.take_record(),
        }
    }

    fn report_line(&mut self, request_id: &str, duration: Duration, status: &str) -> String {
        let millis = duration.as_secs_f64() * 1000.0;
        let init = self.pending_init.take();
        let billed = (millis + init.map_or(0.0, |i| i.as_secs_f64() * 1000.0))
            .ceil()
            .max(1.0);
        let memory_used = self.max_memory_used_mb();
        let mut line = format!(
            "REPORT RequestId: {request_id}\tDuration: {millis:.2} ms\tBilled Duration: {billed:.0} ms\tMemory Size: {} MB\tMax Memory Used: {memory_used} MB\t",
            self.memory_size,
        );
        if let Some(init) = init {
            line.push_str(&format!(
                "Init Duration: {:.2} ms\t",
                init.as_secs_f64() * 1000.0
            ));
        }
        line.push_str(status.trim_start_matches('\t'));
        if !status.is_empty() {
            line.push('\t');
        }
        line.push('\n');
        line
    }

    /// Peak resident memory of the runtime process in MB (rounded up), or the last figure seen
    /// if it has exited.
    fn max_memory_used_mb(&mut self) -> u64 {
        self.peak_memory_mb = self.peak_memory_mb.max(self.read_peak_memory_mb());
        self.peak_memory_mb
    }

    /// The cgroup's peak (every process of the environment, page cache included) when there is
    /// one, else the runtime process's own peak resident set.
    fn read_peak_memory_mb(&self) -> u64 {
        if let Some(peak) = self
            .cgroup
            .as_ref()
            .and_then(|c| c.peak_memory_bytes().ok())
        {
            return peak.div_ceil(1024 * 1024);
        }
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let kb = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .unwrap_or(0);
        kb.div_ceil(1024)
    }

    /// End this environment but keep its `/tmp` for the one that replaces it.
    pub fn into_preserved_tmp(mut self) -> Option<EnvironmentTmp> {
        self.tmp.take()
    }

    pub fn is_alive(&self) -> bool {
        *self.exit.borrow() == Exit::Running
    }

    fn kill(&self) {
        self.lift_cpu_quota();
        let _ = killpg(self.pid, Signal::SIGKILL);
    }

    /// Ending processes takes CPU too: an environment being stopped is not held to its share,
    /// or hundreds of throttled processes (a fork bomb at 128 MB) take seconds to die.
    fn lift_cpu_quota(&self) {
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.set_cpu_quota(None);
        }
    }

    /// Whether the kernel's OOM killer ended a process of this environment.
    fn oom_killed(&self) -> bool {
        self.cgroup
            .as_ref()
            .is_some_and(|c| c.oom_killed().unwrap_or(false))
    }

    /// SIGTERM, then SIGKILL if the runtime has not exited within `grace`.
    pub async fn shut_down(mut self, grace: Duration) {
        if self.is_alive() {
            self.lift_cpu_quota();
            let _ = killpg(self.pid, Signal::SIGTERM);
            let mut exit = self.exit.clone();
            if tokio::time::timeout(grace, wait_exit(&mut exit))
                .await
                .is_err()
            {
                self.kill();
            }
        }
        self.pending_init = None;
    }
}

/// How an init failure is logged: `INIT_REPORT`, then the invocation it failed (`START`, `END`,
/// `REPORT` with its status), as Lambda logs it.
struct InitFailure<'a> {
    request_id: &'a str,
    version: &'a str,
    memory_size: u32,
    started: Instant,
}

impl InitFailure<'_> {
    fn report(&self, logs: &LogCapture, error_type: &str, body: Vec<u8>) -> StartFailure {
        let millis = self.started.elapsed().as_secs_f64() * 1000.0;
        let request_id = self.request_id;
        logs.platform_line(&format!(
            "INIT_REPORT Init Duration: {millis:.2} ms\tPhase: init\tStatus: error\tError Type: {error_type}\n"
        ));
        logs.platform_line(&format!(
            "START RequestId: {request_id} Version: {}\n",
            self.version
        ));
        logs.platform_line(&format!("END RequestId: {request_id}\n"));
        logs.platform_line(&format!(
            "REPORT RequestId: {request_id}\tDuration: {millis:.2} ms\tBilled Duration: {:.0} ms\tMemory Size: {} MB\tMax Memory Used: 0 MB\tStatus: error\tError Type: {error_type}\t\n",
            millis.ceil().max(1.0),
            self.memory_size
        ));
        StartFailure {
            body,
            log: logs.take_record(),
        }
    }
}

impl Drop for ExecutionEnvironment {
    fn drop(&mut self) {
        // Removing a cgroup kills what is left in it and may wait for the kernel: not on an
        // async worker thread.
        if let Some(cgroup) = self.cgroup.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || drop(cgroup));
                }
                Err(_) => drop(cgroup),
            }
        }
        if self.is_alive() {
            self.kill();
        }
        // Then `tmp`, unless handed over, is deleted in the background.
    }
}

/// Resolves once the runtime process has exited.
async fn wait_exit(exit: &mut watch::Receiver<Exit>) {
    let _ = exit.wait_for(|e| *e != Exit::Running).await;
}

fn exit_reason(exit: Exit) -> String {
    match exit {
        Exit::Exited(Some(0), _) => "Runtime exited without providing a reason".to_owned(),
        Exit::Exited(Some(code), _) => format!("Runtime exited with error: exit status {code}"),
        Exit::Exited(None, Some(signal)) => {
            let name = Signal::try_from(signal)
                .map_or_else(|_| signal.to_string(), |s| signal_name(s).to_owned());
            format!("Runtime exited with error: signal: {name}")
        }
        _ => "Runtime exited without providing a reason".to_owned(),
    }
}

fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::SIGKILL => "killed",
        Signal::SIGSEGV => "segmentation fault",
        Signal::SIGABRT => "aborted",
        Signal::SIGTERM => "terminated",
        Signal::SIGBUS => "bus error",
        _ => signal.as_str(),
    }
}

fn error_body(error_type: &str, request_id: &str, message: &str) -> Vec<u8> {
    json!({ "errorMessage": format!("RequestId: {request_id} Error: {message}"), "errorType": error_type })
        .to_string()
        .into_bytes()
}

fn platform_failure(request_id: &str, err: &std::io::Error) -> StartFailure {
    StartFailure {
        body: error_body("Runtime.Unknown", request_id, &err.to_string()),
        log: String::new(),
    }
}
