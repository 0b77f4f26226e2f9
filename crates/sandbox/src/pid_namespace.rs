//! The environment's PID namespace: the runtime sees only its own processes.
//!
//! After `unshare(CLONE_NEWPID)` the next child of `__sandbox-init` is pid 1 of the new
//! namespace. Three processes result:
//!
//! - the **relay** (the original `__sandbox-init`, the pid the server watches) waits for the
//!   namespace init and exits as the runtime did — with its exit code, or killed by its signal —
//!   so the server reports `exit status 1` or `signal: killed` as before;
//! - the **namespace init** (pid 1 inside) mounts a fresh `/proc` and forks the runtime's process
//!   while the sandbox waits in the pool, then reaps every orphan (as an init must) and reports
//!   how the runtime ended through a pipe;
//! - the **runtime** (pid 2 inside) waits for the function's spec, attaches its binds, sets the
//!   host name, and is exec'd as without a PID namespace. A prestarted runtime (see
//!   `prestart.rs`) is exec'd at once instead, and the init receives and attaches the function.
//!
//! All three share the server-side process group and the environment's cgroup, so killing
//! either ends them all.

use std::convert::Infallible;
use std::fs::File;
use std::io::{PipeReader, PipeWriter, Read, Write};

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{SigHandler, Signal, kill, signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

use crate::enter::{
    RuntimeCommand, SandboxError, exec_runtime, receive_function_on, stdin_from_null,
};
use crate::spec::PrestartedRuntime;
use crate::{SyscallFilter, error_chain};

/// Parts of `/proc` that change the whole host (sysctls, SysRq, IRQ affinity, bus and
/// filesystem settings): made read-only as container runtimes do.
const PROC_READ_ONLY: [&str; 5] = [
    "/proc/sys",
    "/proc/sysrq-trigger",
    "/proc/irq",
    "/proc/bus",
    "/proc/fs",
];

/// Start the namespace's init, which waits on `channel` for the function (with `prestart`, after
/// starting that runtime), and relay its outcome; returns only on failure to start it.
pub(crate) fn run(
    channel: File,
    filter: SyscallFilter,
    prestart: Option<&PrestartedRuntime>,
) -> Result<Infallible, SandboxError> {
    let (report_read, report_write) = std::io::pipe().map_err(|e| {
        SandboxError::PidNamespace(nix::Error::try_from(e).unwrap_or(nix::Error::EIO))
    })?;
    // SAFETY: `__sandbox-init` is single-threaded (it runs before any runtime or thread is
    // started), so the child may run any code after `fork`.
    match unsafe { fork() }.map_err(SandboxError::PidNamespace)? {
        ForkResult::Parent { child } => {
            drop(report_write);
            drop(channel);
            // Standard input was the channel too: only the runtime's process keeps it.
            stdin_from_null()?;
            relay(child, report_read)
        }
        ForkResult::Child => {
            drop(report_read);
            namespace_init(channel, &filter, prestart, report_write)
        }
    }
}

/// Outer process: wait for the namespace init, then end the way the runtime ended.
fn relay(init: Pid, mut report: std::io::PipeReader) -> ! {
    // The server's SIGTERM is for the runtime (it shares our process group); the relay must
    // outlive it to report how the runtime ended.
    for stop in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        // SAFETY: installing SIG_IGN runs no handler code; this process is single-threaded.
        let _ = unsafe { signal(stop, SigHandler::SigIgn) };
    }
    let init_status = loop {
        match waitpid(init, None) {
            Ok(status) => break status,
            Err(nix::Error::EINTR) => {}
            Err(_) => std::process::exit(125),
        }
    };
    let mut outcome = [0u8; 2];
    let reported = report.read_exact(&mut outcome).is_ok();
    match (reported, outcome[0], init_status) {
        (true, b'x', _) => std::process::exit(i32::from(outcome[1])),
        (true, b's', _) => die_by(i32::from(outcome[1])),
        (_, _, WaitStatus::Exited(_, code)) => std::process::exit(code),
        (_, _, WaitStatus::Signaled(_, killer, _)) => die_by(killer as i32),
        _ => std::process::exit(125),
    }
}

/// Pid 2 of the namespace: receive the function (its binds attached), become the runtime; or,
/// for a runtime forked in by a zygote, hand over and tell the init (on `handoff`) the pid of
/// the runtime it now has as its child, and end.
fn start_runtime(channel: File, filter: &SyscallFilter, handoff: PipeWriter) -> ! {
    let mut channel = channel;
    let spec = receive_function_on(&mut channel).unwrap_or_else(|err| preparation_failed(&err));
    if spec.from_zygote {
        crate::zygote::hand_over_or_clear(&mut channel, handoff);
    }
    drop(channel);
    if let Err(err) = stdin_from_null() {
        preparation_failed(&err);
    }
    become_runtime(&spec.command(), filter)
}

/// After the runtime's process ended: the runtime a zygote forked in its place, if it handed
/// over (the handoff pipe then holds its pid; otherwise it reads as ended).
fn handed_off(handoff: Option<&mut PipeReader>) -> Option<Pid> {
    let mut pid = [0u8; 4];
    handoff?.read_exact(&mut pid).ok()?;
    Some(Pid::from_raw(i32::from_le_bytes(pid)))
}

/// `exec` the runtime (in a child of the namespace's init), or end this process saying why not.
pub(crate) fn become_runtime(command: &RuntimeCommand<'_>, filter: &SyscallFilter) -> ! {
    match exec_runtime(command, filter, true) {
        Ok(never) => match never {},
        Err(err) => {
            eprintln!("kappa: starting the runtime failed: {err}");
            std::process::exit(127);
        }
    }
}

/// Receiving or attaching the function failed: end, saying why. In the namespace's init this
/// ends the whole environment.
pub(crate) fn preparation_failed(err: &SandboxError) -> ! {
    eprintln!(
        "kappa: preparing the environment failed: {}",
        error_chain(err)
    );
    std::process::exit(125);
}

/// End this process with `signal`, as the runtime ended.
fn die_by(signal_number: i32) -> ! {
    if let Ok(killer) = Signal::try_from(signal_number) {
        // SAFETY: restoring the default disposition runs no handler code.
        let _ = unsafe { signal(killer, SigHandler::SigDfl) };
        let _ = kill(getpid(), killer);
    }
    std::process::exit(128 + signal_number)
}

/// Pid 1 of the namespace: mount `/proc`, wait for the function, start its runtime, reap until
/// it ends, report.
fn namespace_init(
    channel: File,
    filter: &SyscallFilter,
    prestart: Option<&PrestartedRuntime>,
    mut report: std::io::PipeWriter,
) -> ! {
    // If the relay goes (the server died, and took the relay with it), so does this init, and
    // with it every process of the namespace.
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        std::process::exit(125);
    }
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(err) = mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        proc_flags,
        None::<&str>,
    ) {
        eprintln!("kappa: mounting /proc for the environment failed: {err}");
        std::process::exit(125);
    }
    // Host-wide kernel knobs under /proc stay read-only to everything in the environment (the
    // namespace init itself stays uid 0).
    for path in PROC_READ_ONLY {
        let path = std::path::Path::new(path);
        if path.exists()
            && let Err(err) = crate::enter::bind_read_only(path)
        {
            eprintln!("kappa: making {} read-only failed: {err}", path.display());
            std::process::exit(125);
        }
    }
    let mut handoff = None;
    let mut runtime = match prestart {
        // This init receives the function and attaches it, then releases the runtime.
        Some(prestart) => crate::prestart::start_then_release(channel, filter, prestart),
        None => {
            let Ok((handoff_read, handoff_write)) = std::io::pipe() else {
                std::process::exit(125);
            };
            // The runtime's process is forked now, ahead of its function: it waits for the
            // spec, so a cold start does not pay for the fork.
            // SAFETY: still single-threaded (this is the first child of a single-threaded
            // process).
            let runtime = match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    drop(report);
                    drop(handoff_read);
                    start_runtime(channel, filter, handoff_write)
                }
                Ok(ForkResult::Parent { child }) => child,
                Err(err) => {
                    eprintln!("kappa: starting the runtime failed: {err}");
                    std::process::exit(125);
                }
            };
            drop(channel);
            drop(handoff_write);
            handoff = Some(handoff_read);
            if stdin_from_null().is_err() {
                std::process::exit(125);
            }
            runtime
        }
    };
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(pid, 0)) if pid == runtime && handoff.is_some() => {
                // Pid 2 ended: it handed over to a runtime forked in, or its runtime exited 0.
                if let Some(forked) = handed_off(handoff.as_mut()) {
                    runtime = forked;
                    handoff = None;
                    continue;
                }
                let _ = report.write_all(&[b'x', 0]);
                std::process::exit(0);
            }
            Ok(WaitStatus::Exited(pid, code)) if pid == runtime => {
                let _ = report.write_all(&[b'x', u8::try_from(code).unwrap_or(u8::MAX)]);
                std::process::exit(0);
            }
            Ok(WaitStatus::Signaled(pid, killer, _)) if pid == runtime => {
                let _ = report.write_all(&[b's', u8::try_from(killer as i32).unwrap_or(9)]);
                std::process::exit(0);
            }
            // An orphan reaped, or an interrupted wait: keep waiting for the runtime.
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => std::process::exit(125),
        }
    }
}
