//! Runtimes forked from a zygote instead of started.
//!
//! Starting an interpreter and importing a runtime costs tens of milliseconds of CPU, most of it
//! the same for every environment: in a burst of cold starts that is what the machine spends its
//! time on. A zygote (as in SOCK) pays it once: `kappa __sandbox-zygote` makes a private mount
//! namespace in which the runtime's bootstrap and interpreter are at the paths a sandbox shows
//! (`/var/runtime`, `/var/lang`, on a fresh tmpfs at `/var`) and `exec`s the interpreter as the
//! server's user, with the variables every function of the runtime gets and
//! [`ZYGOTE_FD_VARIABLE`] naming its channel to the server. The interpreter imports everything
//! that does not depend on the function and then serves requests, one at a time:
//!
//! 1. The server sends a pooled (or newly prepared) sandbox the function's spec with
//!    [`SandboxSpec::from_zygote`](crate::SandboxSpec) set. The sandbox's waiting process
//!    (pid 2 of its PID namespace, still uid 0) attaches the function as usual, then hands the
//!    server (over the channel, with `SCM_RIGHTS`) a pidfd of itself, the write end of a pipe
//!    for the runtime's pid and its standard output (the function's log).
//! 2. The server sends the zygote a [`ZygoteFork`] with those three descriptors. The zygote
//!    forks a process that opens the environment's `cgroup.procs` files, joins the sandbox's
//!    namespaces through the pidfd (`setns`) and the environment's process group, and forks
//!    again: that child is pid 3 of the namespace. It forks the runtime's process (pid 4),
//!    writes its pid to the pipe and ends, so that the runtime, orphaned inside the namespace,
//!    becomes the namespace init's child as a runtime started there would be (a process that
//!    joins a PID namespace with `setns` is no child of its init; its children are). The
//!    runtime's process joins the cgroup, takes the log as its standard output and error,
//!    closes everything else, sets the open-files limit, drops every capability and becomes
//!    the sandbox user, installs the seccomp filter the server sent at the zygote's start
//!    ([`ZygoteSettings`]), and adopts the function's [`RuntimeRelease`] as a prestarted
//!    runtime does. The zygote answers the server once the runtime exists.
//! 3. The server answers pid 2 [`ZYGOTE_STARTED`]: pid 2 reads the runtime's pid, writes it to
//!    the namespace init on a pipe of theirs and ends; the init then waits for that runtime as
//!    for its own. Or the server answers [`START_IT_YOURSELF`] (the zygote failed): pid 2 kills
//!    whatever the zygote may have left in the namespace and starts the runtime the ordinary way.
//!
//! What differs from a runtime started for its function: its pid is 4, not 2; its memory is
//! first shared with the zygote, copy on write, and what it never writes stays charged to the
//! zygote's cgroup rather than the environment's; `/proc/self/environ` shows the zygote's start;
//! CPython's hash seed is the zygote's (the `random` module reseeds itself in a fork).

use std::convert::Infallible;
use std::ffi::CString;
use std::fs::File;
use std::io::{PipeWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::SyscallFilter;
use crate::enter::{ExecStrings, SandboxError};
use crate::fd_passing::{receive_with_fds, send_with_fds};
use crate::spec::{PrestartedRuntime, RuntimeRelease};

/// Names, in a zygote's environment, the descriptor of its channel to the server.
pub const ZYGOTE_FD_VARIABLE: &str = "_KAPPA_ZYGOTE_FD";

/// Pid 2's message to the server once the function is attached: the descriptors follow.
const HANDOVER: u8 = b'h';
/// The server's answer: the zygote forked the runtime into the namespace.
pub const ZYGOTE_STARTED: u8 = b'z';
/// The server's answer: start the runtime yourself.
pub const START_IT_YOURSELF: u8 = b'o';

/// The zygote's first message from the server: what every runtime it forks is confined with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZygoteSettings {
    /// The seccomp programs, hex-encoded `struct sock_filter` arrays, attached in this order.
    pub seccomp_programs: Vec<String>,
    pub uid: u32,
    pub gid: u32,
}

impl ZygoteSettings {
    /// Settings that confine forked runtimes as `filter` and Lambda's user confine one started
    /// in a sandbox.
    pub fn for_sandbox(filter: &SyscallFilter) -> Self {
        Self {
            seccomp_programs: filter
                .to_kernel_bytes()
                .iter()
                .map(|program| program.iter().map(|byte| format!("{byte:02x}")).collect())
                .collect(),
            uid: crate::SANDBOX_UID,
            gid: crate::SANDBOX_GID,
        }
    }
}

/// One request to a zygote: fork a runtime into the sandbox whose pidfd (of its pid 2), pid
/// pipe and log come with it (in that order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZygoteFork {
    /// `CLONE_NEW*` flags of the namespaces to join through the pidfd.
    pub namespaces: i32,
    /// The environment's process group (the sandbox relay's pid), which the runtime joins.
    pub process_group: i32,
    /// The environment's `cgroup.procs` files.
    pub cgroup_procs: Vec<PathBuf>,
    pub open_files_limit: u64,
    pub release: RuntimeRelease,
}

impl ZygoteFork {
    /// The namespaces a sandbox has: all of them, the network one only if it is isolated.
    pub fn namespaces(isolated_network: bool) -> i32 {
        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWPID;
        if isolated_network {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        flags.bits()
    }
}

/// `kappa __sandbox-zygote`: make the zygote's mount namespace, then `exec` `runtime`'s
/// interpreter as the zygote, its channel to the server on standard input. Returns only on
/// failure.
pub fn serve_as_zygote(runtime: &PrestartedRuntime) -> Result<Infallible, SandboxError> {
    // A zygote outlives no server.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(SandboxError::ParentDeathSignal)?;
    crate::enter::close_inherited_on_exec();
    unshare(CloneFlags::CLONE_NEWNS).map_err(SandboxError::Unshare)?;
    crate::enter::make_mounts_private()?;
    let var = Path::new("/var");
    mount(
        Some("tmpfs"),
        var,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=64k"),
    )
    .map_err(|source| SandboxError::Root {
        step: "mounting the zygote's /var",
        source,
    })?;
    for bind in &runtime.binds {
        if !bind.target.starts_with(var) {
            return Err(SandboxError::Root {
                step: "a zygote's binds must be under /var",
                source: nix::Error::EINVAL,
            });
        }
        std::fs::create_dir_all(&bind.target).map_err(|source| SandboxError::MountPoint {
            path: bind.target.clone(),
            source,
        })?;
        crate::enter::bind_to(&bind.source, &bind.target).map_err(|source| SandboxError::Bind {
            path: bind.target.clone(),
            source,
        })?;
    }
    nix::unistd::chdir("/").map_err(|source| SandboxError::Chdir {
        path: PathBuf::from("/"),
        source,
    })?;
    let program = runtime.argv.first().ok_or(SandboxError::NoProgram)?;
    let ExecStrings {
        path,
        argv,
        mut env,
    } = ExecStrings::of(&runtime.argv, &runtime.env)?;
    env.push(CString::new(format!("{ZYGOTE_FD_VARIABLE}=0"))?);
    match nix::unistd::execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(source) => Err(SandboxError::Exec {
            program: program.clone(),
            source,
        }),
    }
}

/// In the sandbox's waiting process (pid 2), once it has attached a function whose runtime
/// comes from a zygote: hand over and, once the zygote has started the runtime (by then the
/// namespace init's child), tell the init its pid on `handoff` and end. If the zygote did not
/// start it, clear the namespace of whatever it may have left and return: the caller starts the
/// runtime itself.
pub(crate) fn hand_over_or_clear(channel: &mut File, mut handoff: PipeWriter) {
    if let Ok(Some(runtime)) = hand_over(channel) {
        if handoff.write_all(&runtime.as_raw().to_le_bytes()).is_ok() {
            std::process::exit(0);
        }
        // The init could not be told: the forked runtime must not run unaccounted for.
        let _ = kill(runtime, Signal::SIGKILL);
        std::process::exit(125);
    }
    // Every process of the namespace but this one and its init.
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
}

/// Send the server this process's pidfd, the write end of a pipe for the runtime's pid and the
/// log, then wait for its answer: the runtime's pid if the zygote started it.
fn hand_over(channel: &mut File) -> std::io::Result<Option<Pid>> {
    let (mut pid_read, pid_write) = std::io::pipe()?;
    let own = pidfd_of_self()?;
    let log = std::io::stdout().as_fd().try_clone_to_owned()?;
    send_with_fds(
        channel.as_raw_fd(),
        &[HANDOVER],
        &[own.as_raw_fd(), pid_write.as_raw_fd(), log.as_raw_fd()],
    )?;
    drop((own, pid_write, log));
    let mut answer = [0u8; 1];
    channel.read_exact(&mut answer)?;
    if answer[0] != ZYGOTE_STARTED {
        return Ok(None);
    }
    // Written before the server was answered: the process that forked the runtime has ended,
    // so the runtime is the namespace init's child already.
    let mut pid = [0u8; 4];
    pid_read.read_exact(&mut pid)?;
    Ok(Some(Pid::from_raw(i32::from_le_bytes(pid))))
}

fn pidfd_of_self() -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; it touches no
    // memory of this process.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: the kernel just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Server side, once the sandbox's spec is sent: pid 2's pidfd, the pid pipe and the log.
pub fn receive_handover(channel: &UnixStream) -> std::io::Result<Vec<OwnedFd>> {
    let mut message = [0u8; 1];
    let (count, fds) = receive_with_fds(channel.as_raw_fd(), &mut message)?;
    if count != 1 || message[0] != HANDOVER || fds.len() != 3 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "expected the sandbox's handover, got {count} bytes and {} descriptors",
                fds.len()
            ),
        ));
    }
    Ok(fds)
}

/// Server side: tell pid 2 whether the zygote started its runtime.
pub fn answer_handover(mut channel: &UnixStream, started: bool) -> std::io::Result<()> {
    channel.write_all(&[if started {
        ZYGOTE_STARTED
    } else {
        START_IT_YOURSELF
    }])
}

/// Server side: send `request` and its descriptors to a zygote over `channel`, and read its
/// answer: `Ok` once the runtime's process exists, else the zygote's reason.
pub fn fork_in_zygote(
    channel: &UnixStream,
    request: &ZygoteFork,
    fds: &[OwnedFd],
) -> std::io::Result<Result<(), String>> {
    let json = serde_json::to_vec(request).map_err(std::io::Error::other)?;
    let length = u32::try_from(json.len()).map_err(std::io::Error::other)?;
    let mut message = length.to_be_bytes().to_vec();
    message.extend_from_slice(&json);
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = send_with_fds(channel.as_raw_fd(), &message, &raw)?;
    (&*channel).write_all(&message[sent..])?;
    read_answer(channel)
}

/// Server side: the zygote's settings, its first message.
pub fn send_zygote_settings(
    channel: &UnixStream,
    settings: &ZygoteSettings,
) -> std::io::Result<()> {
    let json = serde_json::to_vec(settings).map_err(std::io::Error::other)?;
    let length = u32::try_from(json.len()).map_err(std::io::Error::other)?;
    let mut writer = channel;
    writer.write_all(&length.to_be_bytes())?;
    writer.write_all(&json)
}

/// A zygote's answer: a length-prefixed JSON object, `{"error": null}` or with the reason.
fn read_answer(channel: &UnixStream) -> std::io::Result<Result<(), String>> {
    #[derive(Deserialize)]
    struct Answer {
        error: Option<String>,
    }
    let mut reader = channel;
    let mut length = [0u8; 4];
    reader.read_exact(&mut length)?;
    let length = usize::try_from(u32::from_be_bytes(length)).map_err(std::io::Error::other)?;
    if length > 65_536 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the zygote's answer is too long",
        ));
    }
    let mut json = vec![0u8; length];
    reader.read_exact(&mut json)?;
    let answer: Answer = serde_json::from_slice(&json)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(match answer.error {
        None => Ok(()),
        Some(reason) => Err(reason),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sandbox_without_its_own_network_is_not_joined_in_one() {
        let isolated = CloneFlags::from_bits_retain(ZygoteFork::namespaces(true));
        let shared = CloneFlags::from_bits_retain(ZygoteFork::namespaces(false));
        assert!(isolated.contains(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID));
        assert!(!shared.contains(CloneFlags::CLONE_NEWNET));
        assert!(shared.contains(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWPID
        ));
    }

    #[test]
    fn settings_carry_every_seccomp_program_as_hex() {
        let filter = SyscallFilter::for_host().expect("the default policy compiles here");
        let settings = ZygoteSettings::for_sandbox(&filter);
        let programs = filter.to_kernel_bytes();
        assert_eq!(settings.seccomp_programs.len(), programs.len());
        for (hex, program) in settings.seccomp_programs.iter().zip(&programs) {
            assert_eq!(hex.len(), program.len() * 2);
            assert!(hex.starts_with(&format!("{:02x}", program[0])));
        }
        assert_eq!((settings.uid, settings.gid), (993, 990));
    }

    #[test]
    fn a_zygote_answer_is_read_as_success_or_its_reason() {
        for (json, expected) in [
            (&br#"{"error": null}"#[..], Ok(())),
            (
                &br#"{"error": "setns: EPERM"}"#[..],
                Err("setns: EPERM".to_owned()),
            ),
        ] {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            let mut writer = &theirs;
            let length = u32::try_from(json.len()).expect("short");
            writer.write_all(&length.to_be_bytes()).expect("write");
            writer.write_all(json).expect("write");
            assert_eq!(read_answer(&ours).expect("an answer"), expected);
        }
    }
}
