//! `kappa server`: open the data directory, wire the store, core, runtime and API, serve until a
//! signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use kappa_api::Services;
use kappa_api::auth::AcceptAnyCredentials;
use kappa_core::control::concurrency::ConcurrencyService;
use kappa_core::control::event_invoke_config::EventInvokeConfigService;
use kappa_core::control::{AccountLimits, FunctionService};
use kappa_core::logs_service::LogsService;
use kappa_core::names::AccountContext;
use kappa_runtime::{
    AsyncSettings, FunctionRuntime, Invocations, Isolation, NetworkPolicy, RuntimeSettings,
};
use kappa_store::{
    DataKey, FsCodeBlobs, Sealer, SqliteAsyncStore, SqliteLogStore, SqliteStore, SqliteStoreError,
};

use crate::config::{FunctionNetwork, IsolationMode, ServerConfig};
use crate::data_dir::DataDir;

/// The init phase limit of Lambda's on-demand environments.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for asynchronous invocations in flight.
const ASYNC_DRAIN_GRACE: Duration = Duration::from_secs(5);
/// How often log retention is applied.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

pub async fn run(config: ServerConfig) -> Result<()> {
    let isolation = check_isolation(config.isolation)?;
    let data_dir = DataDir::lock(&config.data_dir)?;
    let store = Arc::new(open_store(&data_dir, config.data_key_file.as_deref())?);
    let log_store = Arc::new(
        SqliteLogStore::open(&data_dir.database())
            .with_context(|| format!("opening the log store in {}", data_dir.root().display()))?,
    );
    let blobs = FsCodeBlobs::open(&data_dir.blobs())
        .with_context(|| format!("opening code blobs in {}", data_dir.blobs().display()))?;
    let account = AccountContext::new(&config.region, &config.account_id);
    let functions = FunctionService::new(
        account.clone(),
        AccountLimits {
            concurrent_executions: config.concurrency_limit,
        },
        store.clone(),
        Arc::new(blobs),
    )
    .with_layer_store(store.clone());
    let concurrency = ConcurrencyService::new(functions.clone(), store);
    concurrency
        .load()
        .await
        .context("loading reserved concurrency")?;
    let collected = functions
        .collect_unreferenced_code()
        .await
        .context("collecting unreferenced code packages")?;
    if collected > 0 {
        tracing::info!(
            collected,
            "removed code packages left by an interrupted write"
        );
    }
    let cgroups = match isolation {
        Isolation::MountNamespace => Some(Arc::new(open_cgroups(data_dir.root())?)),
        Isolation::UnsafeNone => None,
    };
    let runtime = FunctionRuntime::start(
        functions.clone(),
        log_store.clone(),
        RuntimeSettings {
            data_dir: data_dir.root().to_path_buf(),
            init_program: std::env::current_exe().context("locating the kappa executable")?,
            isolation,
            network: match config.function_network {
                FunctionNetwork::Isolated => NetworkPolicy::Isolated,
                FunctionNetwork::Host => NetworkPolicy::Host,
                FunctionNetwork::PerFunction => NetworkPolicy::PerFunction,
            },
            sandbox_pool_size: config.sandbox_pool_size,
            python_zygotes: config.python_zygotes,
            python: config.python.clone(),
            node: config.node.clone(),
            init_timeout: INIT_TIMEOUT,
            keep_alive: Duration::from_secs(config.keep_alive_secs),
            concurrency_limit: config.concurrency_limit,
            region: config.region.clone(),
            cgroups,
        },
    )
    .context("preparing execution environments")?;
    let async_store = Arc::new(
        SqliteAsyncStore::open(&data_dir.database())
            .with_context(|| format!("opening the async queue in {}", data_dir.root().display()))?,
    );
    let event_invoke_configs =
        EventInvokeConfigService::new(functions.clone(), async_store.clone());
    let invocations = Invocations::start(
        runtime.clone(),
        functions.clone(),
        async_store,
        event_invoke_configs.clone(),
        AsyncSettings {
            first_retry_delay: Duration::from_secs(config.async_retry_delay_secs),
            max_in_flight: usize::try_from(config.concurrency_limit).unwrap_or(1000),
        },
    );
    let logs = LogsService::new(log_store, account);
    spawn_retention(logs.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let app = kappa_api::router(kappa_api::AppState::from(Services {
        functions,
        invoker: invocations.clone(),
        event_invoke_configs,
        concurrency,
        metrics: invocations.clone(),
        logs,
        authenticator: Arc::new(AcceptAnyCredentials),
        public_address: address.to_string(),
    }));
    tracing::info!(
        %address,
        data_dir = %data_dir.root().display(),
        region = %config.region,
        account_id = %config.account_id,
        isolation = ?config.isolation,
        "kappa is serving the Lambda API"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the API")?;
    invocations.shut_down(ASYNC_DRAIN_GRACE).await;
    runtime.shut_down().await;
    tracing::info!("kappa stopped");
    Ok(())
}

/// The function store, sealing with the data key: the one in the data directory (created at the
/// first start) or the operator's `--data-key-file`.
fn open_store(data_dir: &DataDir, key_file: Option<&std::path::Path>) -> Result<SqliteStore> {
    let (key, created_at) = match key_file {
        Some(path) => (DataKey::load(path)?, None),
        None => {
            let path = data_dir.data_key();
            let (key, created) = DataKey::load_or_create(&path)?;
            (key, created.then_some(path))
        }
    };
    match SqliteStore::open(&data_dir.database(), Sealer::new(&key)) {
        Ok(store) => Ok(store),
        Err(err @ SqliteStoreError::WrongDataKey { .. }) => {
            if let Some(path) = created_at {
                // The key file was missing: leave it missing rather than keep a useless key.
                let _ = std::fs::remove_file(&path);
                return Err(err).with_context(|| {
                    format!(
                        "the data key file {} is missing, but this data directory holds environment variables sealed with a key; restore the file (or pass --data-key-file)",
                        path.display()
                    )
                });
            }
            Err(err).context("opening the store")
        }
        Err(err) => {
            Err(err).with_context(|| format!("opening the store in {}", data_dir.root().display()))
        }
    }
}

fn check_isolation(mode: IsolationMode) -> Result<Isolation> {
    match mode {
        IsolationMode::Namespace => {
            if !nix::unistd::geteuid().is_root() {
                bail!(
                    "isolating functions needs root (mount namespaces); run kappa as root, or pass --isolation unsafe-none to run functions WITHOUT isolation on this host"
                );
            }
            Ok(Isolation::MountNamespace)
        }
        IsolationMode::UnsafeNone => {
            tracing::warn!(
                "--isolation unsafe-none: functions run WITHOUT isolation, as this user, seeing this host"
            );
            Ok(Isolation::UnsafeNone)
        }
    }
}

/// This server's cgroups, named after its data directory so that a restart after a crash takes
/// over (kills and removes) what the previous run left.
fn open_cgroups(data_dir: &std::path::Path) -> Result<kappa_sandbox::CgroupManager> {
    let canonical = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    // FNV-1a: a stable, short name; not a security boundary.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in canonical.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let instance = format!("server-{hash:016x}");
    kappa_sandbox::CgroupManager::new(&kappa_sandbox::CgroupConfig::new(instance)).context(
        "isolating functions needs the memory, cpu and pids cgroup controllers (v1 or v2); pass --isolation unsafe-none to run functions WITHOUT isolation on this host",
    )
}

fn spawn_retention(logs: LogsService) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        loop {
            tick.tick().await;
            let now = chrono_now_ms();
            match logs.expire(now).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "expired log events past their retention"),
                Err(err) => tracing::warn!(error = %err, "applying log retention failed"),
            }
        }
    });
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
