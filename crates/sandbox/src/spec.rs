//! What a sandbox looks like: serialized by the server, read by `kappa __sandbox-init`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How much isolation an environment gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A private mount namespace with Lambda's file layout (needs root or CAP_SYS_ADMIN).
    MountNamespace,
    /// No isolation at all: the runtime sees the host as the server does. Only for hosts that
    /// cannot provide namespaces; code is then at its real path, not `/var/task`.
    UnsafeNone,
}

/// Lambda's runtime user, `sbx_user1051`: the uid and gid every function runs as in isolated modes.
pub const SANDBOX_UID: u32 = 993;
pub const SANDBOX_GID: u32 = 990;

/// What network an isolated environment has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxNetwork {
    /// Its own network namespace with only a loopback interface: the Runtime API at
    /// `127.0.0.1:9001`, nothing of the host's or other environments' networks.
    #[default]
    Isolated,
    /// The host's network namespace (outbound access and the host's loopback services).
    Host,
}

/// A directory of the host shown at `target` inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub writable: bool,
}

/// Everything `__sandbox-init` needs to build the environment and start its runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub isolation: Isolation,
    /// The network the environment sees (isolated modes only).
    #[serde(default)]
    pub network: SandboxNetwork,
    pub binds: Vec<Bind>,
    pub cwd: PathBuf,
    /// `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// The complete environment of the runtime process.
    pub env: Vec<(String, String)>,
    /// Host name inside the environment's UTS namespace (isolated modes only).
    pub hostname: String,
    /// `RLIMIT_NOFILE` of the runtime (Lambda: 1024).
    pub open_files_limit: u64,
    /// The server's pid: `__sandbox-init` stops if its parent is already someone else.
    #[serde(default)]
    pub parent_pid: Option<i32>,
    /// The environment's `cgroup.procs` files, joined first so nothing escapes the limits.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
}

impl SandboxSpec {
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}
