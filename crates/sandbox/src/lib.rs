//! The sandbox an execution environment's runtime process starts in.
//!
//! The server does not set up isolation inside its own (multi-threaded) process. It spawns
//! `kappa __sandbox-init` with a [`SandboxSpec`]; that small single-threaded process enters the
//! namespaces, arranges the mounts, and `execve`s the runtime's bootstrap, which keeps its pid.
//! This keeps the privileged path short and outside the server, as youki's and runc's `init` do.
//!
//! What it builds (see `docs/sandbox.md` for the threat model): a cgroup joined first; private
//! mount, UTS, IPC, PID and (by default) network namespaces; a fresh tmpfs root entered with
//! `pivot_root` that shows the host's system directories and a short list of `/etc` files
//! read-only, `/var/task` (code), `/var/runtime` (bootstrap), `/var/lang` (a managed runtime's
//! interpreter), `/opt` (layers), all read-only, and the environment's own `/tmp`; a minimal
//! `/dev`; a fresh `/proc`; Lambda's unprivileged user (993/990) with no capabilities at all;
//! `no_new_privs` and a seccomp filter kept as reviewed data. In the network namespace only
//! loopback exists and the Runtime API listens at `127.0.0.1:9001`.

mod capabilities;
mod detached_mount;
mod enter;
mod fd_passing;
mod network;
mod pid_namespace;
mod prestart;
mod root_fs;
mod spec;
mod zygote;

pub use capabilities::{CapabilityError, drop_all_capabilities};
pub use detached_mount::clone_tree;
pub use enter::{SandboxError, enter};
pub use network::{RUNTIME_API_ADDRESS, receive_runtime_api_listener};
pub use spec::{
    Bind, Isolation, PRESTART_FD_VARIABLE, PrestartedRuntime, RuntimeRelease, SANDBOX_GID,
    SANDBOX_UID, SandboxBase, SandboxNetwork, SandboxSpec, write_spec,
};
pub use zygote::{
    ZYGOTE_FD_VARIABLE, ZygoteFork, ZygoteSettings, answer_handover, fork_in_zygote,
    receive_handover, send_zygote_settings, serve_as_zygote,
};
mod cgroup;
pub use cgroup::{
    CgroupConfig, CgroupError, CgroupManager, CgroupVersion, DEFAULT_CGROUP_PARENT,
    DEFAULT_CGROUP_ROOT, DEFAULT_PIDS_MAX, EnvironmentCgroup, EnvironmentLimits,
    MEMORY_MB_PER_VCPU, MIN_CPU_MILLIS, StaleCleanup, StaleScope, cleanup_stale, join_cgroup,
};

pub mod loop_device;
mod seccomp;
pub use seccomp::{SeccompError, SyscallFilter, install_seccomp};

/// `err` and its causes on one line, for a message that has no other place for them.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
