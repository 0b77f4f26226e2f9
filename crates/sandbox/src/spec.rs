//! What a sandbox looks like: serialized by the server, read by `kappa __sandbox-init`.

use std::io::{self, Read, Write};
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

/// What `__sandbox-init` needs before the function is known: the isolation to enter and the
/// cgroup to join. Passed in its environment (`KAPPA_SANDBOX_BASE`); a process that has applied
/// it can wait, ready, in the server's pool until a [`SandboxSpec`] arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxBase {
    pub isolation: Isolation,
    /// The network the environment sees (isolated modes only).
    #[serde(default)]
    pub network: SandboxNetwork,
    /// The server's pid: `__sandbox-init` stops if its parent is already someone else.
    #[serde(default)]
    pub parent_pid: Option<i32>,
    /// The environment's `cgroup.procs` files, joined first so nothing escapes the limits.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
}

impl SandboxBase {
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
}

/// The function's part of the environment, sent over the channel once it is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
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
}

/// Largest spec the channel carries (argv, binds and up to 4 KB of function variables fit in a
/// small fraction of it).
const MAX_SPEC_BYTES: u32 = 1 << 20;

/// Send `spec` over the channel: a little-endian length, then the JSON.
pub fn write_spec(channel: &mut impl Write, spec: &SandboxSpec) -> io::Result<()> {
    let json = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let length = u32::try_from(json.len())
        .ok()
        .filter(|len| *len <= MAX_SPEC_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "sandbox spec too large"))?;
    let mut message = Vec::with_capacity(json.len() + 4);
    message.extend_from_slice(&length.to_le_bytes());
    message.extend_from_slice(&json);
    channel.write_all(&message)
}

/// Wait for the spec on the channel.
pub(crate) fn read_spec(channel: &mut impl Read) -> io::Result<SandboxSpec> {
    let mut length = [0u8; 4];
    channel.read_exact(&mut length)?;
    let length = u32::from_le_bytes(length);
    if length > MAX_SPEC_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sandbox spec too large",
        ));
    }
    let mut json = vec![0u8; length as usize];
    channel.read_exact(&mut json)?;
    serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_channel() {
        let spec = SandboxSpec {
            binds: vec![Bind {
                source: PathBuf::from("/a"),
                target: PathBuf::from("/var/task"),
                writable: false,
            }],
            cwd: PathBuf::from("/var/task"),
            argv: vec!["/var/task/bootstrap".into()],
            env: vec![("K".into(), "v".into())],
            hostname: "h".into(),
            open_files_limit: 1024,
        };
        let mut wire = Vec::new();
        write_spec(&mut wire, &spec).unwrap();
        assert_eq!(read_spec(&mut wire.as_slice()).unwrap(), spec);
    }

    #[test]
    fn oversized_or_cut_specs_are_refused() {
        let mut huge = (MAX_SPEC_BYTES + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(read_spec(&mut huge.as_slice()).is_err());
        let mut cut = 10u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"{}");
        assert!(read_spec(&mut cut.as_slice()).is_err());
    }
}
