//! A real `kappa server` process on a free loopback port with a throw-away data directory.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::{Method, StatusCode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::api_connection::ApiConnection;

const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a restart waits for the old process to exit after SIGTERM before killing it.
const STOP_GRACE: Duration = Duration::from_secs(10);
const STOP_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Lines of the server's log shown when it fails.
const LOG_TAIL_LINES: usize = 20;

/// The server process; killed and its directory removed when dropped.
pub struct KappaServer {
    binary: PathBuf,
    child: Child,
    address: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    // Dropped after `Drop::drop` has stopped the process that uses it.
    _scratch: TempDir,
}

impl KappaServer {
    /// Start `binary server` and wait until `GET /health` answers 200, at most `startup_timeout`.
    pub async fn start(binary: &Path, startup_timeout: Duration) -> Result<Self> {
        Self::start_with_args(binary, &[], startup_timeout).await
    }

    /// [`Self::start`] with more arguments for `kappa server`.
    pub async fn start_with_args(
        binary: &Path,
        args: &[&str],
        startup_timeout: Duration,
    ) -> Result<Self> {
        let scratch = tempfile::Builder::new()
            .prefix("kappa-bench-")
            .tempdir()
            .context("creating a scratch directory")?;
        let data_dir = scratch.path().join("data");
        let log_path = scratch.path().join("server.log");
        let address = free_loopback_address()?;
        let child = spawn(binary, address, &data_dir, &log_path, args)?;
        let mut server = Self {
            binary: binary.to_owned(),
            child,
            address,
            data_dir,
            log_path,
            _scratch: scratch,
        };
        server.wait_until_healthy(startup_timeout).await?;
        Ok(server)
    }

    /// Stop the server (SIGTERM, as an operator would) and start it again on the same data
    /// directory, on a new port, with `args`; its log continues in the same file. Returns the
    /// moment the new process was started.
    pub async fn restart(&mut self, args: &[&str], startup_timeout: Duration) -> Result<Instant> {
        self.stop().await?;
        self.address = free_loopback_address()?;
        let started = Instant::now();
        self.child = spawn(
            &self.binary,
            self.address,
            &self.data_dir,
            &self.log_path,
            args,
        )?;
        self.wait_until_healthy(startup_timeout).await?;
        Ok(started)
    }

    async fn stop(&mut self) -> Result<()> {
        let pid = i32::try_from(self.child.id()).context("the server's process id")?;
        // The process may have exited already; waiting below tells.
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while self
            .child
            .try_wait()
            .context("checking the server process")?
            .is_none()
        {
            if Instant::now() >= deadline {
                self.child.kill().context("killing the server")?;
                self.child.wait().context("waiting for the server")?;
                break;
            }
            tokio::time::sleep(STOP_POLL_INTERVAL).await;
        }
        Ok(())
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines the server logged, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    async fn wait_until_healthy(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("checking the server process")?
            {
                bail!(
                    "kappa server exited ({status}) before it was healthy; its log:\n{}",
                    self.log_tail()
                );
            }
            if health_status(self.address).await == Some(StatusCode::OK) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "kappa server on {} was not healthy within {timeout:?}; its log:\n{}",
                    self.address,
                    self.log_tail()
                );
            }
            tokio::time::sleep(HEALTH_POLL_INTERVAL).await;
        }
    }
}

impl Drop for KappaServer {
    fn drop(&mut self) {
        // SIGTERM first, so that the server stops its environments and removes their cgroups
        // (after a SIGKILL the empty groups stay); SIGKILL if it is still running after
        // STOP_GRACE. The process may already be gone; there is nothing more to do about a
        // failure here.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            let deadline = Instant::now() + STOP_GRACE;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(STOP_POLL_INTERVAL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `binary server` on `address` and `data_dir`, its output appended to `log_path`.
fn spawn(
    binary: &Path,
    address: SocketAddr,
    data_dir: &Path,
    log_path: &Path,
    args: &[&str],
) -> Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    Command::new(binary)
        .arg("server")
        .arg("--listen")
        .arg(address.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("sharing the server log file")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Status of `GET /health`, or `None` while nothing answers.
async fn health_status(address: SocketAddr) -> Option<StatusCode> {
    let mut connection = ApiConnection::open(address).await.ok()?;
    let response = connection.send(Method::GET, "/health", None).await.ok()?;
    Some(response.status)
}

/// A loopback port nothing listens on right now, found by binding port 0 and letting it go.
/// The `kappa` binary to benchmark (`explicit`, or the one built beside this executable) and
/// the cargo target directory this executable lives in.
pub fn kappa_and_target_dir(explicit: Option<PathBuf>) -> Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let (Some(exe_dir), Some(target_dir)) = (exe.parent(), exe.parent().and_then(Path::parent))
    else {
        bail!("{} is not in a cargo target directory", exe.display());
    };
    let kappa_bin = explicit.unwrap_or_else(|| exe_dir.join("kappa"));
    Ok((kappa_bin, target_dir.to_path_buf()))
}

pub fn free_loopback_address() -> Result<SocketAddr> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free loopback port")?;
    listener
        .local_addr()
        .context("reading the free port's address")
}
