//! Entering the sandbox: runs in `kappa __sandbox-init`, a single-threaded process, and ends in
//! `execve`.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::sys::resource::{Resource, setrlimit};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, execve};
use thiserror::Error;

use crate::spec::{Isolation, SandboxSpec};

#[derive(Debug, Error)]
pub enum SandboxError {
    #[error("entering new mount, UTS, IPC and PID namespaces")]
    Unshare(#[source] nix::Error),
    #[error("setting the host name")]
    Hostname(#[source] nix::Error),
    #[error("setting resource limits")]
    Rlimit(#[source] nix::Error),
    #[error("making the mount tree private")]
    PrivateMounts(#[source] nix::Error),
    #[error("opening bind source {path}")]
    OpenSource {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("covering {path} with an empty tmpfs")]
    Cover {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
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

/// Build the sandbox described by `spec` and replace this process with its runtime.
pub fn enter(spec: &SandboxSpec) -> Result<Infallible, SandboxError> {
    // First, before anything can fork: every process of the environment is in its cgroup.
    if !spec.cgroup_procs.is_empty() {
        crate::join_cgroup(&spec.cgroup_procs).map_err(SandboxError::Cgroup)?;
    }
    if spec.isolation == Isolation::MountNamespace {
        unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWPID,
        )
        .map_err(SandboxError::Unshare)?;
        nix::unistd::sethostname(&spec.hostname).map_err(SandboxError::Hostname)?;
        build_mounts(spec)?;
        // The runtime is started by the namespace's own init, which never returns here.
        return crate::pid_namespace::run(spec);
    }
    exec_runtime(spec)
}

/// Apply the last per-process settings and replace this process with the runtime.
pub(crate) fn exec_runtime(spec: &SandboxSpec) -> Result<Infallible, SandboxError> {
    setrlimit(
        Resource::RLIMIT_NOFILE,
        spec.open_files_limit,
        spec.open_files_limit,
    )
    .map_err(SandboxError::Rlimit)?;
    chdir(&spec.cwd).map_err(|source| SandboxError::Chdir {
        path: spec.cwd.clone(),
        source,
    })?;
    let program = spec.argv.first().ok_or(SandboxError::NoProgram)?;
    let argv = spec
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let path = CString::new(program.as_bytes())?;
    if spec.isolation == Isolation::MountNamespace {
        crate::drop_all_capabilities().map_err(SandboxError::Capabilities)?;
    }
    // Last: the filter refuses the calls the setup above needed.
    crate::install_seccomp().map_err(SandboxError::Seccomp)?;
    match execve(&path, &argv, &env) {
        Ok(never) => match never {},
        Err(source) => Err(SandboxError::Exec {
            program: program.clone(),
            source,
        }),
    }
}

fn build_mounts(spec: &SandboxSpec) -> Result<(), SandboxError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(SandboxError::PrivateMounts)?;
    // Open every source before covering anything: a source may live under a covered directory.
    let sources = spec
        .binds
        .iter()
        .map(|bind| {
            open(
                &bind.source,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|source| SandboxError::OpenSource {
                path: bind.source.clone(),
                source,
            })
        })
        .collect::<Result<Vec<OwnedFd>, _>>()?;
    for dir in &spec.cover {
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=755,size=64k"),
        )
        .map_err(|source| SandboxError::Cover {
            path: dir.clone(),
            source,
        })?;
    }
    for (bind, fd) in spec.binds.iter().zip(&sources) {
        fs::create_dir_all(&bind.target).map_err(|source| SandboxError::MountPoint {
            path: bind.target.clone(),
            source,
        })?;
        let from = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let bind_error = |source| SandboxError::Bind {
            path: bind.target.clone(),
            source,
        };
        mount(
            Some(from.as_str()),
            &bind.target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(bind_error)?;
        if !bind.writable {
            remount_read_only(&bind.target, MsFlags::MS_BIND).map_err(bind_error)?;
        }
    }
    // /sys read-only, every mount below it included (the host's cgroup hierarchies live there
    // and a uid-0 runtime could otherwise rewrite its own limits).
    read_only_tree(Path::new("/sys")).map_err(|source| SandboxError::Cover {
        path: PathBuf::from("/sys"),
        source,
    })?;
    for dir in &spec.cover {
        remount_read_only(dir, MsFlags::empty()).map_err(|source| SandboxError::Cover {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Bind the tree at `root` onto itself and make it and every mount below it read-only.
fn read_only_tree(root: &Path) -> nix::Result<()> {
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|_| nix::Error::EIO)?;
    let mut targets: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape_mount_point(point)))
        .filter(|point| point.starts_with(root))
        .collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        remount_read_only(&target, MsFlags::MS_BIND)?;
    }
    Ok(())
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_point(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Bind `path` onto itself and make that bind read-only.
pub(crate) fn bind_read_only(path: &Path) -> nix::Result<()> {
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    remount_read_only(path, MsFlags::MS_BIND)
}

fn remount_read_only(target: &Path, extra: MsFlags) -> nix::Result<()> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        extra | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
}
