//! Provisioned concurrency: keep the requested number of initialized environments of each
//! configured version in the idle pool, ahead of invocations; retire them when the config goes.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kappa_core::function::FunctionVersion;
use kappa_core::provisioned::{Allocation, ConfigKey, config_generation};
use kappa_core::version_store::ProvisionedConcurrencyRecord;

use super::{FunctionRuntime, SHUTDOWN_GRACE};
use crate::environment::{ExecutionEnvironment, ExtractedFiles, Initialization};
use crate::pool::VersionKey;

/// How often allocations are checked without a change (replaces crashed environments).
const RECHECK: Duration = Duration::from_secs(2);
/// `StatusReason` of a config whose environments could not initialize.
const INIT_FAILURE: &str = "FUNCTION_ERROR_INIT_FAILURE";

/// The environments one version needs and the configs asking for them.
struct Target {
    version: Arc<FunctionVersion>,
    configs: Vec<ProvisionedConcurrencyRecord>,
}

impl Target {
    fn wanted(&self) -> usize {
        self.configs.iter().map(|c| c.requested as usize).sum()
    }
}

/// Reconcile at start, on every change of configs, versions or aliases, and every few seconds.
pub(super) fn spawn_keeper(runtime: Weak<FunctionRuntime>) {
    tokio::spawn(async move {
        loop {
            let Some(strong) = runtime.upgrade() else {
                return;
            };
            let registry = Arc::clone(strong.functions.provisioned());
            strong.reconcile_provisioned().await;
            drop(strong);
            tokio::select! {
                () = registry.changed() => {}
                () = tokio::time::sleep(RECHECK) => {}
            }
        }
    });
}

impl FunctionRuntime {
    async fn reconcile_provisioned(&self) {
        let closed = self.provisioning_closed.lock().await;
        if *closed {
            return;
        }
        if let Err(err) = self.functions.refresh_provisioned().await {
            tracing::warn!(error = %err, "reading provisioned concurrency configs");
            return;
        }
        let registry = Arc::clone(self.functions.provisioned());
        let mut targets: HashMap<VersionKey, Target> = HashMap::new();
        for config in registry.configs().unwrap_or_default() {
            let key = config_key(&config);
            let allocation = registry.allocation(&key);
            if allocation.failure.is_some() && allocation.for_config == config_generation(&config) {
                continue;
            }
            let Ok(version) = self
                .functions
                .provisioned_version(&config.function_name, &config.qualifier)
                .await
            else {
                continue;
            };
            let target = targets
                .entry(version_key(&version))
                .or_insert_with(|| Target {
                    version,
                    configs: Vec::new(),
                });
            target.configs.push(config);
        }
        let counts = self.pool.provisioned_counts();
        for (key, live) in &counts {
            let wanted = targets.get(key).map_or(0, Target::wanted);
            if *live > wanted {
                for environment in self.pool.take_idle_provisioned(key, live - wanted) {
                    tracing::debug!(environment = %environment.id, "retiring a provisioned environment");
                    environment.shut_down(SHUTDOWN_GRACE).await;
                }
            }
        }
        for (key, target) in targets {
            let mut live = counts.get(&key).copied().unwrap_or(0);
            report(&registry, &target, live, None);
            while live < target.wanted() {
                match self.start_provisioned(&target.version).await {
                    Ok(environment) => {
                        self.pool.provisioned_started(&key);
                        self.pool.put_idle(key.clone(), environment);
                        live += 1;
                        report(&registry, &target, live, None);
                    }
                    Err(reason) => {
                        tracing::warn!(function = %key.function, version = %key.version, %reason, "provisioned environment failed to initialize");
                        report(&registry, &target, live, Some(INIT_FAILURE));
                        break;
                    }
                }
            }
        }
    }

    async fn start_provisioned(
        &self,
        version: &FunctionVersion,
    ) -> Result<ExecutionEnvironment, String> {
        let digest = &version.code.sha256_hex;
        let code_dir = self
            .code
            .extracted(digest, &self.functions.code_path(digest))
            .await
            .map_err(|err| err.to_string())?;
        let opt_dir = self.opt_dir(version).await.map_err(|err| err.to_string())?;
        let request_id = uuid::Uuid::new_v4().to_string();
        ExecutionEnvironment::start(
            version,
            ExtractedFiles { code_dir, opt_dir },
            &self.environments,
            &self.writer,
            &request_id,
            None,
            Initialization::ProvisionedConcurrency,
        )
        .await
        .map_err(|failure| String::from_utf8_lossy(&failure.body).into_owned())
    }
}

/// Share `live` environments among the configs of one version, in order, and record them.
fn report(
    registry: &kappa_core::provisioned::ProvisionedRegistry,
    target: &Target,
    live: usize,
    failure: Option<&str>,
) {
    let mut left = live;
    for config in &target.configs {
        let allocated = left.min(config.requested as usize);
        left -= allocated;
        let failed = failure.filter(|_| allocated < config.requested as usize);
        registry.set_allocation(
            config_key(config),
            Allocation {
                allocated: u32::try_from(allocated).unwrap_or(u32::MAX),
                failure: failed.map(str::to_owned),
                for_config: config_generation(config),
            },
        );
    }
}

fn config_key(config: &ProvisionedConcurrencyRecord) -> ConfigKey {
    (config.function_name.clone(), config.qualifier.clone())
}

fn version_key(version: &FunctionVersion) -> VersionKey {
    VersionKey {
        function: version.name.clone(),
        version: version.version.clone(),
        revision_id: version.revision_id.clone(),
    }
}
