//! Entering the sandbox: runs in `kappa __sandbox-init`, a single-threaded process, and ends in
//! `execve`.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, chdir, execve, setgroups, setresgid, setresuid};
use thiserror::Error;

use crate::SyscallFilter;
use crate::spec::{
    Isolation, SANDBOX_GID, SANDBOX_UID, SandboxBase, SandboxNetwork, SandboxSpec, read_spec,
};

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("entering new mount, UTS, IPC, PID and network namespaces")]
    Unshare(#[source] nix::Error),
    #[error("setting the host name")]
    Hostname(#[source] nix::Error),
    #[error("setting resource limits")]
    Rlimit(#[source] nix::Error),
    #[error("making the mount tree private")]
    PrivateMounts(#[source] nix::Error),
    #[error("attaching {target} (a detached mount from the server)")]
    Attach {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the spec has {binds} binds but {trees} detached mounts came with it")]
    BindCount { binds: usize, trees: usize },
    #[error("building the root file system: {step}")]
    Root {
        step: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("setting up the network namespace")]
    Network(#[source] std::io::Error),
    #[error("receiving the function's sandbox spec")]
    Spec(#[source] std::io::Error),
    #[error("replacing standard input")]
    Stdin(#[source] nix::Error),
    #[error("asking for SIGKILL when the server ends")]
    ParentDeathSignal(#[source] nix::Error),
    #[error("the server ended before the environment started")]
    ParentGone,
    #[error("switching to the sandbox user")]
    User(#[source] nix::Error),
    #[error("creating mount point {path}")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding {path}")]
    Bind {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("entering working directory {path}")]
    Chdir {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("argument or environment holds a NUL byte")]
    Nul(#[from] std::ffi::NulError),
    #[error("the spec has no program to run")]
    NoProgram,
    #[error("joining the environment's cgroup")]
    Cgroup(#[source] crate::CgroupError),
    #[error("dropping capabilities")]
    Capabilities(#[source] crate::CapabilityError),
    #[error("installing the seccomp filter")]
    Seccomp(#[source] crate::SeccompError),
    #[error("starting the PID namespace's init")]
    PidNamespace(#[source] nix::Error),
    #[error("executing {program}")]
    Exec {
        program: String,
        #[source]
        source: nix::Error,
    },
}

/// Enter the isolation `base` describes, build everything of the environment that does not
/// depend on its function, then wait on `channel` (the server's end of it is this process's
/// standard input) for the function's [`SandboxSpec`] and start its runtime. Everything before
/// the wait is what a pooled sandbox has done ahead of its cold start.
pub fn enter(base: &SandboxBase, channel: OwnedFd) -> Result<Infallible, SandboxError> {
    // The environment ends with the server, even one killed with SIGKILL: this process gets
    // SIGKILL when its parent goes, and its PID namespace (everything the runtime started)
    // ends with it. A parent that died before this line is caught by the pid check.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(SandboxError::ParentDeathSignal)?;
    if base
        .parent_pid
        .is_some_and(|parent| nix::unistd::getppid().as_raw() != parent)
    {
        return Err(SandboxError::ParentGone);
    }
    close_inherited_on_exec();
    // First, before anything can fork: every process of the environment is in its cgroup.
    if !base.cgroup_procs.is_empty() {
        crate::join_cgroup(&base.cgroup_procs).map_err(SandboxError::Cgroup)?;
    }
    // Compiled now, installed just before the runtime's exec.
    let filter = SyscallFilter::for_host().map_err(SandboxError::Seccomp)?;
    let channel = std::fs::File::from(channel);
    if base.isolation != Isolation::MountNamespace {
        let mut channel = channel;
        let (spec, _trees) = read_spec(&mut channel).map_err(SandboxError::Spec)?;
        drop(channel);
        stdin_from_null()?;
        return exec_runtime(&spec.command(), &filter, false);
    }
    let mut namespaces = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if base.network == SandboxNetwork::Isolated {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    unshare(namespaces).map_err(SandboxError::Unshare)?;
    if base.network == SandboxNetwork::Isolated {
        crate::network::loopback_up().map_err(SandboxError::Network)?;
        crate::network::send_runtime_api_listener(channel.as_raw_fd())
            .map_err(SandboxError::Network)?;
    }
    make_mounts_private()?;
    let prestart = base.prestart.as_ref();
    crate::root_fs::build_and_enter(prestart.map(|p| p.binds.as_slice()).unwrap_or_default())?;
    // The namespace's init mounts /proc and forks the runtime's process, which waits for the
    // spec (or, prestarted, is started at once and waits for its function).
    crate::pid_namespace::run(channel, filter, prestart)
}

/// Nothing mounted in this (new) mount namespace from now on propagates to the host's.
pub(crate) fn make_mounts_private() -> Result<(), SandboxError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(SandboxError::PrivateMounts)
}

/// Descriptors this process inherited beyond the standard three (left open by whoever started
/// the server: a shell, a CI runner) are not the runtime's: all are closed at its `exec`. The
/// ones the sandbox hands the runtime on purpose are made inheritable when they are made.
pub(crate) fn close_inherited_on_exec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets descriptor flags; it reads and
    // writes no memory of this process.
    let set = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if set == 0 {
        return;
    }
    // Kernels before 5.11: one by one.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number only sets its flags (a number that is no
        // longer open, such as the listing's own, fails with EBADF, which is ignored).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// The function's part, once its spec and the detached mounts of its binds have arrived (in the
/// runtime's process, pid 2, still uid 0, in the finished root): attach the binds, name the host.
pub(crate) fn receive_function(channel: std::fs::File) -> Result<SandboxSpec, SandboxError> {
    let mut channel = channel;
    let spec = receive_function_on(&mut channel)?;
    drop(channel);
    stdin_from_null()?;
    Ok(spec)
}

/// [`receive_function`], keeping the channel open (and standard input as it is).
pub(crate) fn receive_function_on(
    channel: &mut std::fs::File,
) -> Result<SandboxSpec, SandboxError> {
    let (spec, trees) = read_spec(channel).map_err(SandboxError::Spec)?;
    nix::unistd::sethostname(&spec.hostname).map_err(SandboxError::Hostname)?;
    crate::root_fs::attach_binds(&spec.binds, trees)?;
    Ok(spec)
}

/// Standard input was the channel; the runtime gets /dev/null.
pub(crate) fn stdin_from_null() -> Result<(), SandboxError> {
    let null = open("/dev/null", OFlag::O_RDONLY, Mode::empty()).map_err(SandboxError::Stdin)?;
    nix::unistd::dup2_stdin(&null).map_err(SandboxError::Stdin)?;
    Ok(())
}

/// What the runtime's `execve` runs, and the limit and directory it runs with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuntimeCommand<'a> {
    pub cwd: &'a Path,
    /// `argv[0]` is an absolute path.
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub open_files_limit: u64,
}

impl SandboxSpec {
    pub(crate) fn command(&self) -> RuntimeCommand<'_> {
        RuntimeCommand {
            cwd: &self.cwd,
            argv: &self.argv,
            env: &self.env,
            open_files_limit: self.open_files_limit,
        }
    }
}

/// Apply the last per-process settings and replace this process with the runtime.
pub(crate) fn exec_runtime(
    command: &RuntimeCommand<'_>,
    filter: &SyscallFilter,
    isolated: bool,
) -> Result<Infallible, SandboxError> {
    setrlimit(
        Resource::RLIMIT_NOFILE,
        command.open_files_limit,
        command.open_files_limit,
    )
    .map_err(SandboxError::Rlimit)?;
    chdir(command.cwd).map_err(|source| SandboxError::Chdir {
        path: command.cwd.to_owned(),
        source,
    })?;
    let program = command.argv.first().ok_or(SandboxError::NoProgram)?;
    let ExecStrings { path, argv, env } = ExecStrings::of(command.argv, command.env)?;
    if isolated {
        // The bounding set first (that needs CAP_SETPCAP), then the uid: leaving uid 0 clears
        // the permitted and effective sets.
        crate::drop_all_capabilities().map_err(SandboxError::Capabilities)?;
        become_sandbox_user().map_err(SandboxError::User)?;
    }
    // Last: the filter refuses the calls the setup above needed.
    filter.install().map_err(SandboxError::Seccomp)?;
    match execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(source) => Err(SandboxError::Exec {
            program: program.clone(),
            source,
        }),
    }
}

/// A program, its arguments and its environment as `execve` takes them.
pub(crate) struct ExecStrings {
    pub path: CString,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
}

impl ExecStrings {
    /// `argv[0]` is the program's path; `env` as `NAME=value` strings.
    pub(crate) fn of(argv: &[String], env: &[(String, String)]) -> Result<Self, SandboxError> {
        let program = argv.first().ok_or(SandboxError::NoProgram)?;
        Ok(Self {
            path: CString::new(program.as_bytes())?,
            argv: argv
                .iter()
                .map(|a| CString::new(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            env: env
                .iter()
                .map(|(k, v)| CString::new(format!("{k}={v}")))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Switch to Lambda's runtime user for good: no supplementary groups, real, effective and saved
/// ids all unprivileged.
fn become_sandbox_user() -> nix::Result<()> {
    let gid = Gid::from_raw(SANDBOX_GID);
    let uid = Uid::from_raw(SANDBOX_UID);
    setgroups(&[])?;
    setresgid(gid, gid, gid)?;
    setresuid(uid, uid, uid)
}

/// Bind `path` onto itself and make that bind read-only.
pub(crate) fn bind_read_only(path: &Path) -> nix::Result<()> {
    bind_to(path, path)
}

/// Bind `source` at `target`, read-only.
pub(crate) fn bind_to(source: &Path, target: &Path) -> nix::Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    remount_read_only(target, MsFlags::MS_BIND)
}

pub(crate) fn remount_read_only(target: &Path, extra: MsFlags) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        extra | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
}
