//! The synchronous invoke path: resolve the function from memory, take a warm environment or
//! start one, run the invocation, put the environment back.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use kappa_core::ServiceError;
use kappa_core::control::FunctionService;
use kappa_core::invoke::{InvocationType, InvokeRequest, InvokeResponse, Invoker, LOG_TAIL_BYTES};
use kappa_core::logs::LogStore;
use kappa_sandbox::Isolation;

use crate::code_cache::{CodeCache, clean_partial_extractions};
use crate::environment::{
    EnvironmentSettings, ExecutionEnvironment, ExtractedFiles, Initialization,
};
use crate::ephemeral_storage::{TmpOwner, TmpSettings, TmpStorage};
use crate::launch::Interpreters;
use crate::log_writer::LogWriter;
use crate::network_policy::NetworkPolicy;
use crate::pool::{EnvironmentPool, VersionKey};
use crate::runtime_api::Invocation;
use crate::sandbox_pool::SandboxLauncher;

mod provisioned;

/// How long a runtime gets to exit after SIGTERM before SIGKILL.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// Settings of the environments a server runs.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// The server's data directory; code, runtime files and `/tmp`s live under it.
    pub data_dir: PathBuf,
    /// The `kappa` executable, for `__sandbox-init`.
    pub init_program: PathBuf,
    pub isolation: Isolation,
    /// Which network each function's environments get.
    pub network: NetworkPolicy,
    pub python: Option<PathBuf>,
    pub node: Option<PathBuf>,
    pub init_timeout: Duration,
    /// How long an idle environment stays warm.
    pub keep_alive: Duration,
    /// The account limit; invocations are admitted by `FunctionService::concurrency`, which
    /// was built with the same value.
    pub concurrency_limit: u32,
    pub region: String,
    /// Sandboxes kept prepared ahead of cold starts (0: none).
    pub sandbox_pool_size: usize,
    /// Whether Python runtimes may be forked from zygotes.
    pub python_zygotes: bool,
    /// Per-environment cgroups; `None` runs environments without resource limits.
    pub cgroups: Option<Arc<kappa_sandbox::CgroupManager>>,
}

/// Runs functions: the `Invoker` behind the Invoke API.
#[derive(Debug)]
pub struct FunctionRuntime {
    functions: FunctionService,
    pool: EnvironmentPool,
    code: CodeCache,
    environments: EnvironmentSettings,
    writer: LogWriter,
    keep_alive: Duration,
    /// Held while provisioned environments are started; `true` once shutting down, so none is
    /// started after the idle pool was drained.
    provisioning_closed: tokio::sync::Mutex<bool>,
}

impl FunctionRuntime {
    /// Prepare the directories, install the bootstraps, and start the idle-environment reaper.
    pub fn start(
        functions: FunctionService,
        logs: Arc<dyn LogStore>,
        settings: RuntimeSettings,
    ) -> std::io::Result<Arc<Self>> {
        let code_root = settings.data_dir.join("code");
        clean_partial_extractions(&code_root)?;
        // `/tmp`s of environments of an earlier run: nothing survives a restart.
        let tmp_storage = TmpStorage::open(
            &settings.data_dir.join("environments"),
            tmp_settings(settings.isolation),
        )?;
        let runtime_dir = crate::bootstraps::install(&settings.data_dir.join("runtime"))?;
        let empty_opt_dir = settings.data_dir.join("empty-opt");
        std::fs::create_dir_all(&empty_opt_dir)?;
        let runtime = Arc::new(Self {
            functions,
            pool: EnvironmentPool::new(),
            code: CodeCache::new(code_root),
            environments: EnvironmentSettings {
                sandboxes: SandboxLauncher::new(
                    settings.init_program,
                    settings.isolation,
                    settings.network.default_network(),
                    settings.cgroups,
                    settings.init_timeout,
                    settings.sandbox_pool_size,
                    settings.python_zygotes,
                ),
                tmp_storage,
                network: settings.network,
                runtime_dir,
                empty_opt_dir,
                region: settings.region,
                init_timeout: settings.init_timeout,
                interpreters: Interpreters::new(settings.python, settings.node),
            },
            writer: LogWriter::start(logs),
            keep_alive: settings.keep_alive,
            provisioning_closed: tokio::sync::Mutex::new(false),
        });
        runtime.environments.sandboxes.fill();
        provisioned::spawn_keeper(Arc::downgrade(&runtime));
        let weak = Arc::downgrade(&runtime);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(runtime) = weak.upgrade() else {
                    return;
                };
                runtime.evict_idle().await;
            }
        });
        Ok(runtime)
    }

    /// Shut every idle environment down and store the logs written so far.
    pub async fn shut_down(&self) {
        self.environments.sandboxes.close();
        *self.provisioning_closed.lock().await = true;
        let environments = self.pool.drain_all();
        let shutdowns = environments
            .into_iter()
            .map(|env| env.shut_down(SHUTDOWN_GRACE));
        for shutdown in shutdowns {
            shutdown.await;
        }
        // `/tmp`s kept for resets go too.
        self.pool.evict_reset_tmp(Duration::ZERO, |_| false);
        self.environments.tmp_storage.shut_down().await;
        self.environments.sandboxes.remove_cgroups().await;
        self.writer.flush().await;
    }

    /// Wait until every log line written so far is stored.
    pub async fn flush_logs(&self) {
        self.writer.flush().await;
    }

    pub fn idle_environments(&self) -> usize {
        self.pool.idle_count()
    }

    async fn evict_idle(&self) {
        let mut current = HashSet::new();
        for key in self.pool_keys() {
            if let Ok((version, _)) = self
                .functions
                .resolve_for_invoke(&key.function, Some(&key.version))
                .await
                && version.revision_id == key.revision_id
            {
                current.insert(key);
            }
        }
        self.pool
            .evict_reset_tmp(self.keep_alive, |key| current.contains(key));
        let evicted = self
            .pool
            .evict(self.keep_alive, |key| current.contains(key));
        for environment in evicted {
            tracing::debug!(environment = %environment.id, "shutting down an idle environment");
            environment.shut_down(SHUTDOWN_GRACE).await;
        }
    }

    fn pool_keys(&self) -> Vec<VersionKey> {
        let mut keys = self.pool.keys();
        keys.extend(self.pool.reset_keys());
        keys
    }

    /// What the environment shows at `/opt`: the function's layers, extracted in order.
    async fn opt_dir(
        &self,
        version: &kappa_core::function::FunctionVersion,
    ) -> Result<std::path::PathBuf, ServiceError> {
        let layers = &version.settings.layers;
        if layers.is_empty() {
            return Ok(self.environments.empty_opt_dir.clone());
        }
        let zips: Vec<(String, std::path::PathBuf)> = layers
            .iter()
            .map(|l| {
                let digest = l.code.sha256_hex.clone();
                let path = self.functions.code_path(&digest);
                (digest, path)
            })
            .collect();
        self.code
            .extracted_layers(&zips)
            .await
            .map_err(ServiceError::internal)
    }

    async fn run(
        &self,
        request: InvokeRequest,
        version: Arc<kappa_core::function::FunctionVersion>,
        invoked_function_arn: String,
    ) -> Result<InvokeResponse, ServiceError> {
        // The function's reservation, or the pool shared by functions without one.
        let slot = self.functions.concurrency().try_admit(&version.name)?;
        let request_id = request
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let key = VersionKey {
            function: version.name.clone(),
            version: version.version.clone(),
            revision_id: version.revision_id.clone(),
        };
        let respond = |payload: Vec<u8>, failed: bool, log: &str| InvokeResponse {
            status: 200,
            payload,
            function_error: failed.then_some("Unhandled"),
            log_result: request.tail_log.then(|| log_tail(log)),
            executed_version: version.version.clone(),
            request_id: request_id.clone(),
        };
        let mut environment = match self.pool.take_idle(&key) {
            Some(environment) => environment,
            None => {
                let digest = &version.code.sha256_hex;
                let reused_tmp = self.pool.take_reset_tmp(&key);
                let code_dir = self
                    .code
                    .extracted(digest, &self.functions.code_path(digest))
                    .await
                    .map_err(ServiceError::internal)?;
                let opt_dir = self.opt_dir(&version).await?;
                match ExecutionEnvironment::start(
                    &version,
                    ExtractedFiles { code_dir, opt_dir },
                    &self.environments,
                    &self.writer,
                    &request_id,
                    reused_tmp,
                    Initialization::OnDemand,
                )
                .await
                {
                    Ok(environment) => environment,
                    Err(failure) => return Ok(respond(failure.body, true, &failure.log)),
                }
            }
        };
        let invocation = Invocation {
            request_id: request_id.clone(),
            payload: request.payload,
            deadline_ms: 0,
            invoked_function_arn,
            trace_id: new_trace_id(),
            client_context: request.client_context,
        };
        let timeout = Duration::from_secs(u64::from(version.settings.timeout));
        let result = environment.invoke(invocation, timeout).await;
        if result.reusable && environment.is_alive() {
            self.pool.put_idle(key, environment);
        } else {
            if environment.provisioned {
                self.pool.provisioned_gone(&key);
            }
            // A reset: the environment goes, its /tmp stays for the replacement (as on Lambda).
            if let Some(tmp) = environment.into_preserved_tmp() {
                self.pool.put_reset_tmp(key, tmp);
            }
        }
        drop(slot);
        Ok(respond(result.payload, result.failed, &result.log))
    }
}

#[async_trait]
impl Invoker for FunctionRuntime {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, ServiceError> {
        let (version, invoked_arn) = self
            .functions
            .resolve_for_invoke(&request.function_name, request.qualifier.as_deref())
            .await?;
        match request.invocation_type {
            InvocationType::DryRun => Ok(InvokeResponse {
                status: 204,
                payload: Vec::new(),
                function_error: None,
                log_result: None,
                executed_version: version.version.clone(),
                request_id: uuid::Uuid::new_v4().to_string(),
            }),
            InvocationType::Event => Err(ServiceError::InvalidParameterValue(
                "Asynchronous invocation (InvocationType Event) is not available in Kappa yet."
                    .to_owned(),
            )),
            InvocationType::RequestResponse => self.run(request, version, invoked_arn).await,
        }
    }
}

/// Volumes need the sandbox's mount namespace (unsafe-none shows the directory itself).
fn tmp_settings(isolation: Isolation) -> TmpSettings {
    match isolation {
        Isolation::MountNamespace => TmpSettings {
            volumes: true,
            owner: Some(TmpOwner::RUNTIME_USER),
        },
        Isolation::UnsafeNone => TmpSettings {
            volumes: false,
            owner: None,
        },
    }
}

/// Base64 of the last 4 KB of an invocation's log, cut on a character boundary.
fn log_tail(log: &str) -> String {
    let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    base64::engine::general_purpose::STANDARD.encode(&log.as_bytes()[start..])
}

/// An X-Ray style trace header, as Lambda passes in `Lambda-Runtime-Trace-Id`.
fn new_trace_id() -> String {
    let epoch = chrono::Utc::now().timestamp();
    let random = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{epoch:08x}-{};Parent={};Sampled=0",
        &random[..24],
        &parent[..16]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_4096_bytes() {
        let log = format!("{}{}", "a".repeat(5000), "REPORT\n");
        let tail = base64::engine::general_purpose::STANDARD
            .decode(log_tail(&log))
            .unwrap();
        assert_eq!(tail.len(), LOG_TAIL_BYTES);
        assert!(tail.ends_with(b"REPORT\n"));
        let short = base64::engine::general_purpose::STANDARD
            .decode(log_tail("hi\n"))
            .unwrap();
        assert_eq!(short, b"hi\n");
    }

    #[test]
    fn trace_ids_have_the_x_ray_shape() {
        let trace = new_trace_id();
        assert!(trace.starts_with("Root=1-"));
        assert!(trace.ends_with(";Sampled=0"));
    }
}
