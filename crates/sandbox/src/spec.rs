//! What a sandbox looks like: serialized by the server, read by `kappa __sandbox-init`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use crate::fd_passing::{receive_with_fds, send_with_fds};

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// A managed runtime to start now, before its function is known (isolated modes only).
    #[serde(default)]
    pub prestart: Option<PrestartedRuntime>,
}

/// A managed runtime's interpreter started while its sandbox waits in the pool: it loads
/// everything that does not depend on the function, then waits, as the sandbox user and under
/// the seccomp filter, on the file descriptor named by [`PRESTART_FD_VARIABLE`] for the
/// function's [`RuntimeRelease`]. Only runtimes that implement that wait may be started so.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PrestartedRuntime {
    /// Host directories the runtime needs before its function (its bootstrap at
    /// `/var/runtime`, its interpreter at `/var/lang`), bound read-only as the root is built.
    /// The function's spec later repeats them; they are not attached twice.
    pub binds: Vec<Bind>,
    /// `argv[0]` is an absolute path.
    pub argv: Vec<String>,
    /// The environment it starts with: the variables every function of the runtime gets.
    pub env: Vec<(String, String)>,
    /// `RLIMIT_NOFILE` of the runtime.
    pub open_files_limit: u64,
    /// Whether its interpreter may also serve as a zygote, forked for each new environment
    /// (Python; not Node.js, whose threads do not survive a fork).
    #[serde(default)]
    pub forkable: bool,
}

/// Names, in a prestarted runtime's environment, the file descriptor it reads its
/// [`RuntimeRelease`] from (JSON, up to end of file).
pub const PRESTART_FD_VARIABLE: &str = "_KAPPA_PRESTART_FD";

/// What a prestarted runtime is told once its function is known and attached: the complete
/// environment and working directory it must adopt, and the command line it must `execve`
/// instead if a variable read at interpreter start-up differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRelease {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl PrestartedRuntime {
    pub fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }

    pub fn from_json(text: &str) -> serde_json::Result<Self> {
        serde_json::from_str(text)
    }
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
    /// The runtime is forked into the sandbox by a zygote (see `zygote.rs`): the sandbox's
    /// waiting process attaches the function, hands the server what the zygote needs and ends,
    /// and starts the runtime itself only if the server says so (isolated modes only).
    #[serde(default)]
    pub from_zygote: bool,
    /// `RLIMIT_NOFILE` of the runtime (Lambda: 1024).
    pub open_files_limit: u64,
}

/// Largest spec the channel carries (argv, binds and up to 4 KB of function variables fit in a
/// small fraction of it).
const MAX_SPEC_BYTES: u32 = 1 << 20;

/// Send `spec` over the channel: a little-endian length, then the JSON; `trees`, the detached
/// mounts of its binds in order (see [`crate::clone_tree`]), ride on the first bytes.
pub fn write_spec(channel: &UnixStream, spec: &SandboxSpec, trees: &[OwnedFd]) -> io::Result<()> {
    let json = serde_json::to_vec(spec).map_err(io::Error::other)?;
    let length = u32::try_from(json.len())
        .ok()
        .filter(|len| *len <= MAX_SPEC_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "sandbox spec too large"))?;
    let mut message = Vec::with_capacity(json.len() + 4);
    message.extend_from_slice(&length.to_le_bytes());
    message.extend_from_slice(&json);
    let fds: Vec<RawFd> = trees.iter().map(AsRawFd::as_raw_fd).collect();
    let sent = send_with_fds(channel.as_raw_fd(), &message, &fds)?;
    let mut channel = channel;
    channel.write_all(message.get(sent..).unwrap_or_default())
}

/// Wait for the spec on the channel, with the detached mounts of its binds.
pub(crate) fn read_spec(channel: &mut File) -> io::Result<(SandboxSpec, Vec<OwnedFd>)> {
    let mut length = [0u8; 4];
    let (received, trees) = receive_with_fds(channel.as_raw_fd(), &mut length)?;
    if received == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the channel closed before a spec arrived",
        ));
    }
    channel.read_exact(&mut length[received..])?;
    let length = u32::from_le_bytes(length);
    if length > MAX_SPEC_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "sandbox spec too large",
        ));
    }
    let mut json = vec![0u8; length as usize];
    channel.read_exact(&mut json)?;
    let spec =
        serde_json::from_slice(&json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((spec, trees))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (UnixStream, File) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        (ours, File::from(OwnedFd::from(theirs)))
    }

    fn sample() -> SandboxSpec {
        SandboxSpec {
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
            from_zygote: true,
        }
    }

    #[test]
    fn a_spec_and_its_descriptors_survive_the_channel() {
        let (ours, mut theirs) = pair();
        let spec = sample();
        let tree = OwnedFd::from(File::open("/").unwrap());
        write_spec(&ours, &spec, &[tree]).unwrap();
        let (received, trees) = read_spec(&mut theirs).unwrap();
        assert_eq!(received, spec);
        assert_eq!(trees.len(), 1);
        // The descriptor is a real one in this process.
        assert!(nix::sys::stat::fstat(&trees[0]).is_ok());
    }

    #[test]
    fn a_spec_without_descriptors_survives_the_channel() {
        let (ours, mut theirs) = pair();
        write_spec(&ours, &sample(), &[]).unwrap();
        let (received, trees) = read_spec(&mut theirs).unwrap();
        assert_eq!(received, sample());
        assert!(trees.is_empty());
    }

    #[test]
    fn oversized_cut_or_missing_specs_are_refused() {
        let (mut ours, mut theirs) = pair();
        let mut huge = (MAX_SPEC_BYTES + 1).to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        ours.write_all(&huge).unwrap();
        assert!(read_spec(&mut theirs).is_err());

        let (mut ours, mut theirs) = pair();
        let mut cut = 10u32.to_le_bytes().to_vec();
        cut.extend_from_slice(b"{}");
        ours.write_all(&cut).unwrap();
        drop(ours);
        assert!(read_spec(&mut theirs).is_err());

        let (ours, mut theirs) = pair();
        drop(ours);
        assert!(read_spec(&mut theirs).is_err());
    }
}
