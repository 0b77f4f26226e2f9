//! `kappa server`: open the data directory, wire the store, core and API, serve until a signal.

use std::sync::Arc;

use anyhow::{Context, Result};
use kappa_api::AppState;
use kappa_api::auth::AcceptAnyCredentials;
use kappa_core::control::{AccountLimits, FunctionService};
use kappa_core::names::AccountContext;
use kappa_store::{FsCodeBlobs, SqliteStore};

use crate::config::ServerConfig;
use crate::data_dir::DataDir;

pub async fn run(config: ServerConfig) -> Result<()> {
    let data_dir = DataDir::lock(&config.data_dir)?;
    let store = SqliteStore::open(&data_dir.database())
        .with_context(|| format!("opening the store in {}", data_dir.root().display()))?;
    let blobs = FsCodeBlobs::open(&data_dir.blobs())
        .with_context(|| format!("opening code blobs in {}", data_dir.blobs().display()))?;
    let functions = FunctionService::new(
        AccountContext::new(&config.region, &config.account_id),
        AccountLimits {
            concurrent_executions: config.concurrency_limit,
        },
        Arc::new(store),
        Arc::new(blobs),
    );
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

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let app = kappa_api::router(AppState {
        functions,
        authenticator: Arc::new(AcceptAnyCredentials),
        public_address: address.to_string(),
    });
    tracing::info!(
        %address,
        data_dir = %data_dir.root().display(),
        region = %config.region,
        account_id = %config.account_id,
        "kappa is serving the Lambda API"
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the API")?;
    tracing::info!("kappa stopped");
    Ok(())
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
