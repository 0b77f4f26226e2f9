//! Server settings: command-line flags and `KAPPA_*` environment variables over an optional TOML
//! file over built-in defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9070";
pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";
pub const DEFAULT_CONCURRENCY: u32 = 1000;
pub const DEFAULT_SANDBOX_POOL_SIZE: usize = 2;
pub const DEFAULT_KEEP_ALIVE_SECS: u64 = 300;
pub const DEFAULT_ASYNC_RETRY_DELAY_SECS: u64 = 60;

/// Flags of `kappa server`.
#[derive(Debug, Args, Default)]
pub struct ServerArgs {
    /// Address to serve the API on [default: 127.0.0.1:9070]
    #[arg(long, env = "KAPPA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory holding the store and code packages [default: <user data dir>/kappa]
    #[arg(long, env = "KAPPA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Region in ARNs [default: us-east-1]
    #[arg(long, env = "KAPPA_REGION")]
    pub region: Option<String>,
    /// Account id in ARNs [default: 000000000000]
    #[arg(long, env = "KAPPA_ACCOUNT_ID")]
    pub account_id: Option<String>,
    /// Account concurrency limit [default: 1000]
    #[arg(long, env = "KAPPA_CONCURRENCY_LIMIT")]
    pub concurrency_limit: Option<u32>,
    /// How environments are isolated: `namespace` (needs root) or `unsafe-none` [default: namespace]
    #[arg(long, env = "KAPPA_ISOLATION")]
    pub isolation: Option<IsolationMode>,
    /// Network of functions: `isolated` (own namespace, loopback only: no outbound access, the
    /// host unreachable), `host` (the host's network, its loopback services included) or
    /// `per-function` (isolated unless a function sets the variable KAPPA_NETWORK=host)
    /// [default: isolated]
    #[arg(long, env = "KAPPA_FUNCTION_NETWORK")]
    pub function_network: Option<FunctionNetwork>,
    /// Sandboxes kept started ahead of cold starts (cgroup joined, namespaces entered), for any
    /// function and again for each recently used python3.x or nodejs runtime, with its
    /// interpreter started [default: 2]
    #[arg(long, env = "KAPPA_SANDBOX_POOL_SIZE")]
    pub sandbox_pool_size: Option<usize>,
    /// Fork python3.x runtimes from a zygote per function (an interpreter with the runtime
    /// imported, run as root outside any environment) when no prestarted interpreter waits:
    /// `true` or `false` [default: true]
    #[arg(long, env = "KAPPA_PYTHON_ZYGOTES")]
    pub python_zygotes: Option<bool>,
    /// Seconds an idle environment stays warm [default: 300]
    #[arg(long, env = "KAPPA_KEEP_ALIVE_SECS")]
    pub keep_alive_secs: Option<u64>,
    /// Python interpreter for python3.x functions [default: pythonX.Y, else python3, from PATH]
    #[arg(long, env = "KAPPA_PYTHON")]
    pub python: Option<PathBuf>,
    /// Node.js for nodejs functions [default: node from PATH]
    #[arg(long, env = "KAPPA_NODE")]
    pub node: Option<PathBuf>,
    /// Seconds before the first retry of a failed asynchronous invocation; later retries wait
    /// twice as long each [default: 60, as Lambda]
    #[arg(long, env = "KAPPA_ASYNC_RETRY_DELAY_SECS")]
    pub async_retry_delay_secs: Option<u64>,
    /// File holding the 256-bit key that seals environment variables at rest (64 hex
    /// characters), kept outside the data directory [default: <data dir>/keys/data.key, created
    /// at the first start]
    #[arg(long, env = "KAPPA_DATA_KEY_FILE")]
    pub data_key_file: Option<PathBuf>,
    /// TOML file with any of: listen, data_dir, region, account_id, concurrency_limit,
    /// isolation, function_network, sandbox_pool_size, python_zygotes, keep_alive_secs, python,
    /// node,
    /// async_retry_delay_secs, data_key_file
    #[arg(long, env = "KAPPA_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Isolation of execution environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// A mount namespace per environment with Lambda's file layout (requires root).
    Namespace,
    /// No isolation: functions run as the server's user and see its files. For hosts that cannot
    /// create namespaces; never for untrusted code.
    UnsafeNone,
}

/// The network functions see (with `--isolation namespace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FunctionNetwork {
    /// A network namespace per environment with only its loopback: the Runtime API at
    /// 127.0.0.1:9001, no route to the host or anywhere else.
    Isolated,
    /// The host's network: outbound access and the host's loopback services, as the server.
    Host,
    /// Isolated, except functions whose configuration sets the variable `KAPPA_NETWORK=host`.
    PerFunction,
}

/// The settings file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    region: Option<String>,
    account_id: Option<String>,
    concurrency_limit: Option<u32>,
    isolation: Option<IsolationMode>,
    function_network: Option<FunctionNetwork>,
    sandbox_pool_size: Option<usize>,
    python_zygotes: Option<bool>,
    keep_alive_secs: Option<u64>,
    python: Option<PathBuf>,
    node: Option<PathBuf>,
    async_retry_delay_secs: Option<u64>,
    data_key_file: Option<PathBuf>,
}

/// Settings after merging flags, environment, file and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub region: String,
    pub account_id: String,
    pub concurrency_limit: u32,
    pub isolation: IsolationMode,
    pub function_network: FunctionNetwork,
    pub sandbox_pool_size: usize,
    pub python_zygotes: bool,
    pub keep_alive_secs: u64,
    pub python: Option<PathBuf>,
    pub node: Option<PathBuf>,
    pub async_retry_delay_secs: u64,
    /// The data key's file when it is kept outside the data directory.
    pub data_key_file: Option<PathBuf>,
}

impl ServerConfig {
    pub fn resolve(args: ServerArgs) -> Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = match args.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .context("parsing the default listen address")?,
        };
        let data_dir = match args.data_dir.or(file.data_dir) {
            Some(dir) => dir,
            None => default_data_dir()?,
        };
        let region = args
            .region
            .or(file.region)
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let account_id = args
            .account_id
            .or(file.account_id)
            .unwrap_or_else(|| DEFAULT_ACCOUNT_ID.to_owned());
        check_region(&region)?;
        check_account_id(&account_id)?;
        Ok(Self {
            listen,
            data_dir,
            region,
            account_id,
            concurrency_limit: args
                .concurrency_limit
                .or(file.concurrency_limit)
                .unwrap_or(DEFAULT_CONCURRENCY),
            isolation: args
                .isolation
                .or(file.isolation)
                .unwrap_or(IsolationMode::Namespace),
            function_network: args
                .function_network
                .or(file.function_network)
                .unwrap_or(FunctionNetwork::Isolated),
            sandbox_pool_size: args
                .sandbox_pool_size
                .or(file.sandbox_pool_size)
                .unwrap_or(DEFAULT_SANDBOX_POOL_SIZE),
            python_zygotes: args.python_zygotes.or(file.python_zygotes).unwrap_or(true),
            keep_alive_secs: args
                .keep_alive_secs
                .or(file.keep_alive_secs)
                .unwrap_or(DEFAULT_KEEP_ALIVE_SECS),
            python: args.python.or(file.python),
            node: args.node.or(file.node),
            async_retry_delay_secs: args
                .async_retry_delay_secs
                .or(file.async_retry_delay_secs)
                .unwrap_or(DEFAULT_ASYNC_RETRY_DELAY_SECS),
            data_key_file: args.data_key_file.or(file.data_key_file),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn default_data_dir() -> Result<PathBuf> {
    dirs::data_dir()
        .map(|dir| dir.join("kappa"))
        .context("no user data directory is known here; pass --data-dir or set KAPPA_DATA_DIR")
}

fn check_region(region: &str) -> Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let valid = parts.len() >= 3
        && parts[0].len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.len() == 1 && p.bytes().all(|b| b.is_ascii_digit()));
    anyhow::ensure!(
        valid,
        "region {region:?} is not a region name like us-east-1"
    );
    Ok(())
}

fn check_account_id(account_id: &str) -> Result<()> {
    anyhow::ensure!(
        account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()),
        "account id {account_id:?} must be 12 digits"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kappa.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\nregion = \"eu-west-1\"\ndata_dir = \"/srv/kappa\"\n",
        )
        .unwrap();
        let config = ServerConfig::resolve(ServerArgs {
            region: Some("ap-south-1".into()),
            config: Some(file),
            ..ServerArgs::default()
        })
        .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(config.region, "ap-south-1");
        assert_eq!(config.data_dir, PathBuf::from("/srv/kappa"));
        assert_eq!(config.account_id, DEFAULT_ACCOUNT_ID);
        assert!(config.python_zygotes, "zygotes are on unless turned off");
    }

    #[test]
    fn python_zygotes_are_turned_off_by_the_file_or_a_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kappa.toml");
        std::fs::write(&file, "data_dir = \"/x\"\npython_zygotes = false\n").unwrap();
        let from_file = ServerConfig::resolve(ServerArgs {
            config: Some(file.clone()),
            ..ServerArgs::default()
        })
        .unwrap();
        assert!(!from_file.python_zygotes);
        let flag_wins = ServerConfig::resolve(ServerArgs {
            config: Some(file),
            python_zygotes: Some(true),
            ..ServerArgs::default()
        })
        .unwrap();
        assert!(flag_wins.python_zygotes);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kappa.toml");
        std::fs::write(&file, "listn = \"127.0.0.1:1\"\n").unwrap();
        let args = ServerArgs {
            config: Some(file),
            ..ServerArgs::default()
        };
        assert!(ServerConfig::resolve(args).is_err());
        let args = ServerArgs {
            account_id: Some("12".into()),
            data_dir: Some("/x".into()),
            ..ServerArgs::default()
        };
        assert!(ServerConfig::resolve(args).is_err());
        let args = ServerArgs {
            region: Some("mars".into()),
            data_dir: Some("/x".into()),
            ..ServerArgs::default()
        };
        assert!(ServerConfig::resolve(args).is_err());
    }
}
