//! A managed runtime started before its function is known.
//!
//! With a [`PrestartedRuntime`] in its base, the namespace's init forks the runtime's process
//! while the sandbox is prepared, and that process `exec`s the interpreter at once: as the
//! sandbox user, without capabilities, under the seccomp filter, in `/`, with the runtime's
//! bootstrap and interpreter already bound. The interpreter loads everything that does not
//! depend on the function and waits on a pipe. When the function's spec arrives, the init (still
//! privileged in the namespaces) attaches the function's binds and names the host, then writes a
//! [`RuntimeRelease`] to the pipe: the runtime adopts the function's environment and working
//! directory and goes on as if it had just been started with them, or `exec`s itself again with
//! them when a variable read at interpreter start differs. A cold start then skips the
//! interpreter's start and its imports. Should the waiting runtime have died, the init starts
//! the function's runtime the ordinary way.

use std::fs::File;
use std::io::{PipeWriter, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::SyscallFilter;
use crate::enter::{RuntimeCommand, receive_function, stdin_from_null};
use crate::pid_namespace::{become_runtime, preparation_failed};
use crate::spec::{PRESTART_FD_VARIABLE, PrestartedRuntime, RuntimeRelease};

/// In the namespace's init: start `prestart`'s runtime, wait on `channel` for the function,
/// attach it, and release the runtime into it. Returns the runtime's pid; ends the process
/// (and so the environment) if the function cannot be received or attached.
pub(crate) fn start_then_release(
    channel: File,
    filter: &SyscallFilter,
    prestart: &PrestartedRuntime,
) -> Pid {
    let Ok((release_read, release_write)) = std::io::pipe() else {
        eprintln!("kappa: making the prestarted runtime's pipe failed");
        std::process::exit(125);
    };
    let mut env = prestart.env.clone();
    env.push((
        PRESTART_FD_VARIABLE.to_owned(),
        release_read.as_raw_fd().to_string(),
    ));
    // SAFETY: the namespace's init is single-threaded, so the child may run any code.
    let waiting = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(release_write);
            drop(channel);
            // The pipe's read end is the one descriptor the runtime inherits.
            let inherited = fcntl(&release_read, FcntlArg::F_SETFD(FdFlag::empty()));
            if stdin_from_null().is_err() || inherited.is_err() {
                std::process::exit(125);
            }
            let command = RuntimeCommand {
                cwd: Path::new("/"),
                argv: &prestart.argv,
                env: &env,
                open_files_limit: prestart.open_files_limit,
            };
            become_runtime(&command, filter)
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => {
            eprintln!("kappa: starting the prestarted runtime failed: {err}");
            std::process::exit(125);
        }
    };
    drop(release_read);
    let spec = receive_function(channel).unwrap_or_else(|err| preparation_failed(&err));
    let release = RuntimeRelease {
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
    };
    if is_waiting(waiting) && send_release(release_write, &release).is_ok() {
        return waiting;
    }
    // The prestarted runtime is gone (or could not be told): start the function's runtime as
    // without a prestart.
    let _ = kill(waiting, Signal::SIGKILL);
    // SAFETY: still single-threaded.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => become_runtime(&spec.command(), filter),
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => {
            eprintln!("kappa: starting the runtime failed: {err}");
            std::process::exit(125);
        }
    }
}

/// Whether `runtime` is still alive (one that ended is reaped here).
fn is_waiting(runtime: Pid) -> bool {
    matches!(
        waitpid(runtime, Some(WaitPidFlag::WNOHANG)),
        Ok(WaitStatus::StillAlive)
    )
}

/// Write the release and close the pipe: the runtime reads up to end of file. A runtime that
/// died meanwhile makes this fail with `EPIPE` instead of killing the init with `SIGPIPE`.
fn send_release(mut pipe: PipeWriter, release: &RuntimeRelease) -> std::io::Result<()> {
    let message = serde_json::to_vec(release).map_err(std::io::Error::other)?;
    // SAFETY: setting a signal's disposition to ignored or default runs no handler code; this
    // process is single-threaded.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    let written = pipe.write_all(&message);
    // SAFETY: as above.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    written
}
