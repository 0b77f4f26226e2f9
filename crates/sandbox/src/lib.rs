//! The sandbox an execution environment's runtime process starts in.
//!
//! The server does not set up isolation inside its own (multi-threaded) process. It spawns
//! `kappa __sandbox-init` with a [`SandboxSpec`]; that small single-threaded process enters the
//! namespaces, arranges the mounts, and `execve`s the runtime's bootstrap, which keeps its pid.
//! This keeps the privileged path short and outside the server, as youki's and runc's `init` do.
//!
//! Today's isolation is private mount, UTS and IPC namespaces; in the mount namespace `/var` is replaced by an empty,
//! read-only tmpfs holding `/var/task` (code, read-only) and `/var/runtime` (bootstrap,
//! read-only), `/opt` shows the layers (read-only) and `/tmp` is the environment's own directory.
//! PID, network, user namespaces, cgroups and seccomp come with the sandbox issue.

mod capabilities;
mod enter;
mod pid_namespace;
mod spec;

pub use capabilities::{CapabilityError, drop_all_capabilities};
pub use enter::{SandboxError, enter};
pub use spec::{Bind, Isolation, SandboxSpec};
mod cgroup;
pub use cgroup::{
    CgroupConfig, CgroupError, CgroupManager, CgroupVersion, DEFAULT_CGROUP_PARENT,
    DEFAULT_CGROUP_ROOT, DEFAULT_PIDS_MAX, EnvironmentCgroup, EnvironmentLimits,
    MEMORY_MB_PER_VCPU, MIN_CPU_MILLIS, StaleCleanup, StaleScope, cleanup_stale, join_cgroup,
};

pub mod loop_device;
mod seccomp;
pub use seccomp::{SeccompError, SyscallFilter, install_seccomp};
