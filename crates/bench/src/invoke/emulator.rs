//! The AWS Lambda Runtime Interface Emulator side: the same package extracted into a directory,
//! one emulator process for the warm invocations, and a new process for every cold start.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::measure::{self, Measurements, Workload};
use super::{BenchFunction, package};
use crate::api_connection::ApiConnection;
use crate::server_process::free_loopback_address;

/// The emulator's single function, whatever the name in its environment.
pub(super) const INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";
const SIDE: &str = "the emulator";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to try connecting while the emulator starts. Polled with a blocking sleep: nothing
/// else runs on the benchmark's thread then, and a timer tick (1 ms) would blur the figure.
const CONNECT_POLL_INTERVAL: Duration = Duration::from_micros(250);
const LOG_TAIL_LINES: usize = 20;
/// The same search path Kappa gives a runtime.
const RUNTIME_PATH: &str = "/usr/local/bin:/usr/bin/:/bin:/opt/bin";

/// Extract `function`'s package next to `log` and measure its invocations under `binary`.
pub async fn measure(
    binary: &Path,
    scratch: &Path,
    function: &BenchFunction,
    workload: Workload,
) -> Result<Measurements> {
    let task_root = scratch.join(function.name);
    std::fs::create_dir_all(&task_root)
        .with_context(|| format!("creating {}", task_root.display()))?;
    package::extract(&function.package, &task_root)?;
    let emulator = Emulator {
        binary: binary.to_owned(),
        task_root,
        function_name: function.name.to_owned(),
        log_path: scratch.join(format!("{}.log", function.name)),
    };

    let warm = {
        let mut process = emulator.spawn()?;
        let mut connection = process.connect(&emulator).await?;
        measure::warm_invokes(&mut connection, INVOKE_PATH, workload, SIDE)
            .await
            .map_err(|err| err.context(emulator.log_tail()))?
    };

    let mut cold_invoke = Vec::with_capacity(workload.cold);
    let mut cold_from_change = Vec::with_capacity(workload.cold);
    for _ in 0..workload.cold {
        tokio::time::sleep(workload.cold_pause).await;
        let mut process = emulator.spawn()?;
        let mut connection = process.connect(&emulator).await?;
        let sent = Instant::now();
        let response = measure::invoke(&mut connection, INVOKE_PATH, &[])
            .await
            .map_err(|err| err.context(emulator.log_tail()))?;
        cold_invoke.push(sent.elapsed());
        cold_from_change.push(process.spawned.elapsed());
        measure::check_echo(&response, SIDE).map_err(|err| err.context(emulator.log_tail()))?;
    }
    Ok(Measurements {
        warm,
        cold_invoke: measure::cold_samples("cold invoke", cold_invoke),
        cold_from_change: measure::cold_samples("cold from change", cold_from_change),
    })
}

/// How to start the emulator for one function.
pub(super) struct Emulator {
    pub(super) binary: PathBuf,
    pub(super) task_root: PathBuf,
    pub(super) function_name: String,
    /// Every process of this function appends its output here.
    pub(super) log_path: PathBuf,
}

impl Emulator {
    /// `<emulator> <task root>/bootstrap` in its own process group, on free loopback ports, with
    /// the working directory and the Lambda variables a runtime expects.
    pub(super) fn spawn(&self) -> Result<EmulatorProcess> {
        let address = free_loopback_address()?;
        let runtime_api = free_loopback_address()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let task_root = self.task_root.display().to_string();
        let mut command = Command::new(&self.binary);
        command
            .arg("--runtime-interface-emulator-address")
            .arg(address.to_string())
            .arg("--runtime-api-address")
            .arg(runtime_api.to_string())
            .arg(self.task_root.join("bootstrap"))
            .current_dir(&self.task_root)
            .env_clear()
            .env("PATH", RUNTIME_PATH)
            .env("LANG", "en_US.UTF-8")
            .env("TZ", ":UTC")
            // As AWS's base images set it (their Dockerfiles' ENV), with the task root, which
            // is /var/task there, where this emulator's task root is.
            .env(
                "LD_LIBRARY_PATH",
                format!(
                    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:\
                     {task_root}:{task_root}/lib:/opt/lib"
                ),
            )
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.function_name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_TIMEOUT", "30")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("_HANDLER", "app.handler")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("sharing the emulator log file")?)
            .stderr(log)
            // Its own group, so the runtime it starts is killed with it.
            .process_group(0);
        let spawned = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        Ok(EmulatorProcess {
            child,
            address,
            runtime_api,
            spawned,
        })
    }

    /// The last lines the emulators of this function logged, for error messages.
    pub(super) fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "the emulator's last log lines:\n{}",
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        )
    }
}

/// A running emulator; it and its runtime are killed when this is dropped.
pub(super) struct EmulatorProcess {
    child: Child,
    address: SocketAddr,
    /// Where it serves the Runtime API to the runtime it starts.
    runtime_api: SocketAddr,
    /// Just before the process was spawned.
    spawned: Instant,
}

impl EmulatorProcess {
    /// Connect as soon as the emulator accepts connections on both of its ports. It opens its
    /// Runtime API port last: a runtime started by an invocation that arrives in between finds
    /// nothing listening (a fast one, the Rust echo, does) and fails its init.
    pub(super) async fn connect(&mut self, emulator: &Emulator) -> Result<ApiConnection> {
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("checking the emulator process")?
            {
                bail!("the emulator exited ({status}); {}", emulator.log_tail());
            }
            if std::net::TcpStream::connect(self.runtime_api).is_ok()
                && let Ok(connection) = ApiConnection::open(self.address).await
            {
                return Ok(connection);
            }
            if self.spawned.elapsed() > STARTUP_TIMEOUT {
                bail!(
                    "the emulator did not listen on {} within {STARTUP_TIMEOUT:?}; {}",
                    self.address,
                    emulator.log_tail()
                );
            }
            std::thread::sleep(CONNECT_POLL_INTERVAL);
        }
    }

    /// The emulator's process id, which is also its process group's.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        // The group may already be gone; there is nothing more to do about a failure here.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
