//! The function operations of the Lambda API, independent of HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use serde::Serialize;
use tokio::sync::Mutex;

use super::layers::check_combined_size;
use super::requests::{
    CreateFunctionInput, FunctionCodeInput, UpdateFunctionCodeInput,
    UpdateFunctionConfigurationInput,
};
use super::settings::{self, check_tags};
use crate::code_package::{
    self, CheckedPackage, CodePackageError, MAX_UNZIPPED_SIZE, MAX_ZIPPED_SIZE,
};
use crate::concurrency::ConcurrencyLimits;
use crate::error::ServiceError;
use crate::function::{FunctionConfiguration, FunctionRecord, FunctionVersion, LATEST};
use crate::layer_store::LayerStore;
use crate::names::{AccountContext, FunctionRef, RefUse};
use crate::store::{CodeBlobs, FunctionStore, StoreError};

mod aliases;
mod provisioned;
mod resolve;
mod versions;

pub use aliases::{
    AliasConfiguration, AliasListPage, CreateAliasInput, RoutingConfigInput, UpdateAliasInput,
    is_alias_name,
};
pub use provisioned::{
    ProvisionedConcurrencyConfig, ProvisionedConcurrencyList, PutProvisionedConcurrencyInput,
};
pub use versions::{PublishVersionInput, VersionListPage};

use resolve::InvokeTarget;

/// Functions returned by one ListFunctions page at most, whatever `MaxItems` asks.
pub const MAX_LIST_PAGE: usize = 50;
/// Total code storage of the account (75 GB, Lambda's default quota).
pub const TOTAL_CODE_SIZE_LIMIT: u64 = 75 * 1024 * 1024 * 1024;

/// Account-wide limits reported by GetAccountSettings.
#[derive(Debug, Clone, Copy)]
pub struct AccountLimits {
    pub concurrent_executions: u32,
}

impl Default for AccountLimits {
    fn default() -> Self {
        Self {
            concurrent_executions: 1000,
        }
    }
}

/// GetFunction's answer: the configuration, where to download the code, and the tags.
#[derive(Debug, Clone)]
pub struct FunctionWithCode {
    pub configuration: FunctionConfiguration,
    /// SHA-256 (hex) of the package; the front turns it into a download URL.
    pub code_sha256_hex: String,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct FunctionListPage {
    pub functions: Vec<FunctionConfiguration>,
    pub next_marker: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountSettings {
    pub account_limit: AccountLimitShape,
    pub account_usage: AccountUsageShape,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountLimitShape {
    pub total_code_size: u64,
    pub code_size_unzipped: u64,
    pub code_size_zipped: u64,
    pub concurrent_executions: u32,
    pub unreserved_concurrent_executions: u32,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountUsageShape {
    pub total_code_size: u64,
    pub function_count: u64,
}

/// The function operations. Cheap to clone; share one per server.
#[derive(Clone)]
pub struct FunctionService {
    pub(super) account: AccountContext,
    limits: AccountLimits,
    pub(super) store: Arc<dyn FunctionStore>,
    pub(super) blobs: Arc<dyn CodeBlobs>,
    /// Layer versions; `None` until `with_layer_store`, and then every layer is unknown.
    pub(super) layer_store: Option<Arc<dyn LayerStore>>,
    /// Held while a blob is written and its record committed, and while a record is removed
    /// and its blob collected, so a blob is never collected under a record about to refer to it.
    pub(super) code_lifecycle: Arc<Mutex<()>>,
    /// What recently invoked qualifiers of each function run (by function, then qualifier), so
    /// the invoke path does not read the store.
    invoke_cache: Arc<std::sync::RwLock<HashMap<String, HashMap<String, InvokeTarget>>>>,
    /// Bumped on every change; a read started before a change is not cached.
    cache_generation: Arc<AtomicU64>,
    /// Reserved concurrency and running invocations, checked on every invoke.
    concurrency: Arc<ConcurrencyLimits>,
    /// Provisioned concurrency configs in force and what the runtime allocated for them.
    provisioned: Arc<crate::provisioned::ProvisionedRegistry>,
}

impl std::fmt::Debug for FunctionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionService")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl FunctionService {
    pub fn new(
        account: AccountContext,
        limits: AccountLimits,
        store: Arc<dyn FunctionStore>,
        blobs: Arc<dyn CodeBlobs>,
    ) -> Self {
        Self {
            account,
            limits,
            store,
            blobs,
            layer_store: None,
            code_lifecycle: Arc::new(Mutex::new(())),
            invoke_cache: Arc::default(),
            cache_generation: Arc::default(),
            concurrency: Arc::new(ConcurrencyLimits::new(limits.concurrent_executions)),
            provisioned: Arc::default(),
        }
    }

    /// Use `layers` for the layer operations and the `Layers` of functions.
    #[must_use]
    pub fn with_layer_store(mut self, layers: Arc<dyn LayerStore>) -> Self {
        self.layer_store = Some(layers);
        self
    }

    /// The account's concurrency: reservations and running invocations.
    pub fn concurrency(&self) -> &Arc<ConcurrencyLimits> {
        &self.concurrency
    }

    pub fn account(&self) -> &AccountContext {
        &self.account
    }

    /// Remove code blobs no record refers to: leftovers of a crash between writing a package and
    /// committing its record. Run at startup, before serving.
    pub async fn collect_unreferenced_code(&self) -> Result<usize, ServiceError> {
        let _guard = self.code_lifecycle.lock().await;
        let referenced = self
            .store
            .referenced_code()
            .await
            .map_err(ServiceError::internal)?;
        let mut removed = 0;
        for digest in self.blobs.list().await.map_err(ServiceError::internal)? {
            if !referenced.contains(&digest) {
                self.blobs
                    .remove(&digest)
                    .await
                    .map_err(ServiceError::internal)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub async fn create_function(
        &self,
        input: CreateFunctionInput,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let Some(raw_name) = input.function_name.as_deref() else {
            return Err(ServiceError::constraint(
                "null",
                "functionName",
                "Member must not be null",
            ));
        };
        let reference = FunctionRef::parse(raw_name, &self.account, RefUse::Write)?;
        let settings = settings::settings_for_create(&input)?;
        if reference.qualifier.is_some() {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Unqualified function name expected for CreateFunction: {raw_name}"
            )));
        }
        let publish = input.publish == Some(true);
        let zip = zip_bytes(input.code.as_ref())?;
        let package = check_package(&zip)?;
        let layer_arns = input.layers.clone().unwrap_or_default();
        let mut record = FunctionRecord {
            latest: FunctionVersion {
                name: reference.name.clone(),
                version: LATEST.to_owned(),
                settings,
                code: package.code.clone(),
                revision_id: new_revision_id(),
                last_modified: now_timestamp(),
            },
            tags: input.tags.unwrap_or_default(),
        };
        if self.get_record(&reference.name).await?.is_some() {
            return Err(already_exists(&reference.name));
        }
        let _guard = self.code_lifecycle.lock().await;
        record.latest.settings.layers = self.resolve_function_layers(&layer_arns).await?;
        check_combined_size(package.code.unzipped_size, &record.latest.settings.layers)?;
        self.check_storage_quota(package.code.size).await?;
        self.put_blob(&package, &zip).await?;
        match self.store.create_function(&record).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                self.drop_blob_if_unreferenced(&package.code.sha256_hex)
                    .await?;
                return Err(already_exists(&reference.name));
            }
            Err(err) => {
                self.drop_blob_if_unreferenced(&package.code.sha256_hex)
                    .await?;
                return Err(ServiceError::internal(err));
            }
        }
        tracing::info!(function = %reference.name, code_sha256 = %package.code.sha256_base64, "function created");
        drop(_guard);
        if publish {
            return self.publish_from(&record.latest, None, false).await;
        }
        Ok(record.latest.configuration(&self.account))
    }

    pub async fn get_function(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionWithCode, ServiceError> {
        let resolved = self.resolve(name, qualifier).await?;
        Ok(FunctionWithCode {
            configuration: self.configuration_as_named(&resolved),
            code_sha256_hex: resolved.version.code.sha256_hex.clone(),
            tags: resolved.record.tags,
        })
    }

    pub async fn get_function_configuration(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let resolved = self.resolve(name, qualifier).await?;
        Ok(self.configuration_as_named(&resolved))
    }

    pub async fn list_functions(
        &self,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<FunctionListPage, ServiceError> {
        let limit = match max_items {
            None => MAX_LIST_PAGE,
            Some(n) if !(1..=10_000).contains(&n) => {
                let bound = if n < 1 {
                    "Member must have value greater than or equal to 1"
                } else {
                    "Member must have value less than or equal to 10000"
                };
                return Err(ServiceError::constraint(n, "maxItems", bound));
            }
            Some(n) => usize::try_from(n)
                .unwrap_or(MAX_LIST_PAGE)
                .min(MAX_LIST_PAGE),
        };
        let after = marker.filter(|m| !m.is_empty());
        let mut records = self
            .store
            .list_functions(after, limit + 1)
            .await
            .map_err(ServiceError::internal)?;
        let next_marker = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.name().to_owned())
        } else {
            None
        };
        Ok(FunctionListPage {
            functions: records
                .iter()
                .map(|r| r.latest.configuration(&self.account))
                .collect(),
            next_marker,
        })
    }

    pub async fn update_function_code(
        &self,
        name: &str,
        input: UpdateFunctionCodeInput,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let reference = self.parse_unqualified(name, RefUse::Write)?;
        if let Some(architectures) = &input.architectures {
            settings::check_architectures(architectures)?;
        }
        let publish = input.publish == Some(true);
        let zip = zip_bytes(Some(&input.code()))?;
        let package = check_package(&zip)?;
        let current = self.require_record(&reference.name).await?;
        check_revision(input.revision_id.as_deref(), current.revision_id())?;
        check_combined_size(package.code.unzipped_size, &current.latest.settings.layers)?;
        let mut next = current.clone();
        next.latest.code = package.code.clone();
        if let Some(architectures) = input.architectures {
            next.latest.settings.architectures = architectures;
        }
        next.latest.revision_id = new_revision_id();
        next.latest.last_modified = now_timestamp();
        if input.dry_run == Some(true) {
            return Ok(next.latest.configuration(&self.account));
        }
        let _guard = self.code_lifecycle.lock().await;
        self.check_storage_quota(package.code.size).await?;
        self.put_blob(&package, &zip).await?;
        let replaced = self
            .store
            .replace_function(&next, current.revision_id())
            .await;
        self.forget(&reference.name);
        let outcome = self.finish_replace(replaced, &next, input.revision_id.is_some());
        let old_digest = &current.latest.code.sha256_hex;
        self.drop_blob_if_unreferenced(&package.code.sha256_hex)
            .await?;
        if outcome.is_ok() && old_digest != &package.code.sha256_hex {
            self.drop_blob_if_unreferenced(old_digest).await?;
        }
        drop(_guard);
        if publish && outcome.is_ok() {
            return self.publish_from(&next.latest, None, false).await;
        }
        outcome
    }

    pub async fn update_function_configuration(
        &self,
        name: &str,
        input: UpdateFunctionConfigurationInput,
    ) -> Result<FunctionConfiguration, ServiceError> {
        let reference = self.parse_unqualified(name, RefUse::Write)?;
        let current = self.require_record(&reference.name).await?;
        let mut settings = settings::apply_update(&current.latest.settings, &input)?;
        check_revision(input.revision_id.as_deref(), current.revision_id())?;
        // Changing layers takes and drops blob references: under the code-lifecycle lock.
        let layers_guard = match &input.layers {
            Some(arns) => {
                let guard = self.code_lifecycle.lock().await;
                settings.layers = self.resolve_function_layers(arns).await?;
                check_combined_size(current.latest.code.unzipped_size, &settings.layers)?;
                Some(guard)
            }
            None => None,
        };
        let mut next = current.clone();
        next.latest.settings = settings;
        next.latest.revision_id = new_revision_id();
        next.latest.last_modified = now_timestamp();
        let replaced = self
            .store
            .replace_function(&next, current.revision_id())
            .await;
        self.forget(&reference.name);
        let outcome = self.finish_replace(replaced, &next, input.revision_id.is_some());
        if outcome.is_ok() && layers_guard.is_some() {
            self.drop_unused_layer_blobs(&current.latest, &next.latest)
                .await?;
        }
        outcome
    }

    pub async fn delete_function(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let reference = FunctionRef::parse(name, &self.account, RefUse::Read)?
            .with_query_qualifier(qualifier)?;
        match reference.qualifier.as_deref() {
            None => {}
            Some(LATEST) => {
                return Err(ServiceError::InvalidParameterValue(
                    "$LATEST version cannot be deleted without deleting the function.".to_owned(),
                ));
            }
            Some(other) => return self.delete_version(&reference.name, other).await,
        }
        let _guard = self.code_lifecycle.lock().await;
        // The reservation goes with the function (the store drops its row in the same commit).
        let _reservations = self.concurrency.lock_changes().await;
        let removed = self
            .store
            .delete_function(&reference.name)
            .await
            .map_err(ServiceError::internal)?
            .ok_or_else(|| self.not_found(&reference.name, None))?;
        self.forget(&reference.name);
        self.concurrency.set(&reference.name, None);
        self.drop_blob_if_unreferenced(&removed.latest.code.sha256_hex)
            .await?;
        for layer in &removed.latest.settings.layers {
            self.drop_blob_if_unreferenced(&layer.code.sha256_hex)
                .await?;
        }
        tracing::info!(function = %reference.name, "function deleted");
        Ok(())
    }

    pub async fn list_tags(
        &self,
        resource: &str,
    ) -> Result<BTreeMap<String, String>, ServiceError> {
        let name = self.taggable_function(resource)?;
        Ok(self.require_record(&name).await?.tags)
    }

    pub async fn tag_resource(
        &self,
        resource: &str,
        tags: Option<BTreeMap<String, String>>,
    ) -> Result<(), ServiceError> {
        let name = self.taggable_function(resource)?;
        let Some(tags) = tags else {
            return Err(ServiceError::constraint(
                "null",
                "tags",
                "Member must not be null",
            ));
        };
        check_tags(&tags)?;
        let current = self.require_record(&name).await?;
        let merged = current
            .tags
            .keys()
            .chain(tags.keys())
            .collect::<std::collections::BTreeSet<_>>();
        if merged.len() > settings::MAX_TAGS {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Number of tags exceeds resource tag limit of {}.",
                settings::MAX_TAGS
            )));
        }
        self.apply_tags(&name, &tags, &[]).await
    }

    pub async fn untag_resource(
        &self,
        resource: &str,
        keys: &[String],
    ) -> Result<(), ServiceError> {
        let name = self.taggable_function(resource)?;
        if keys.is_empty() {
            return Err(ServiceError::constraint(
                "null",
                "tagKeys",
                "Member must not be null",
            ));
        }
        self.apply_tags(&name, &BTreeMap::new(), keys).await
    }

    pub async fn account_settings(&self) -> Result<AccountSettings, ServiceError> {
        let usage = self.store.usage().await.map_err(ServiceError::internal)?;
        Ok(AccountSettings {
            account_limit: AccountLimitShape {
                total_code_size: TOTAL_CODE_SIZE_LIMIT,
                code_size_unzipped: MAX_UNZIPPED_SIZE,
                code_size_zipped: MAX_ZIPPED_SIZE,
                concurrent_executions: self.limits.concurrent_executions,
                unreserved_concurrent_executions: self
                    .concurrency
                    .unreserved()
                    .saturating_sub(self.provisioned_total().await?),
            },
            account_usage: AccountUsageShape {
                total_code_size: usage.total_code_size,
                function_count: usage.function_count,
            },
        })
    }

    /// Read a code package by digest, for the download URL GetFunction hands out.
    pub async fn read_code(&self, sha256_hex: &str) -> Result<Option<Vec<u8>>, ServiceError> {
        if sha256_hex.len() != 64 || !sha256_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        self.blobs
            .read(sha256_hex)
            .await
            .map_err(ServiceError::internal)
    }

    /// The version an invocation runs and the ARN the caller named, from memory when possible.
    pub async fn resolve_for_invoke(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(Arc<FunctionVersion>, String), ServiceError> {
        resolve::check_query_qualifier(qualifier)?;
        let reference = FunctionRef::parse(name, &self.account, RefUse::Read)?
            .with_query_qualifier(qualifier)?;
        let invoked_arn = match reference.qualifier.as_deref() {
            Some(q) => self.account.qualified_function_arn(&reference.name, q),
            None => self.account.function_arn(&reference.name),
        };
        let qualifier = reference.qualifier.as_deref().unwrap_or(LATEST);
        let cached = self.invoke_cache.read().ok().and_then(|cache| {
            cache
                .get(&reference.name)
                .and_then(|targets| targets.get(qualifier))
                .map(InvokeTarget::pick)
        });
        if let Some(version) = cached {
            return Ok((version, invoked_arn));
        }
        let generation = self.cache_generation.load(Ordering::Acquire);
        let target = match self.load_target(&reference.name, qualifier).await {
            // An unqualified name that does not exist is reported without a qualifier.
            Err(ServiceError::ResourceNotFound(_)) if reference.qualifier.is_none() => {
                return Err(self.not_found(&reference.name, None));
            }
            other => other?,
        };
        let version = target.pick();
        if let Ok(mut cache) = self.invoke_cache.write()
            && self.cache_generation.load(Ordering::Acquire) == generation
        {
            cache
                .entry(reference.name.clone())
                .or_default()
                .insert(qualifier.to_owned(), target);
        }
        Ok((version, invoked_arn))
    }

    /// Where the code package `sha256_hex` is on disk.
    pub fn code_path(&self, sha256_hex: &str) -> PathBuf {
        self.blobs.path(sha256_hex)
    }

    fn forget(&self, name: &str) {
        self.cache_generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut cache) = self.invoke_cache.write() {
            cache.remove(name);
        }
        self.provisioned.notify_changed();
    }

    /// Provisioned concurrency configs and allocations, shared with the runtime.
    pub fn provisioned(&self) -> &Arc<crate::provisioned::ProvisionedRegistry> {
        &self.provisioned
    }

    async fn apply_tags(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), ServiceError> {
        match self.store.update_tags(name, set, remove).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(self.not_found(name, None)),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    /// The function a tagging ARN names: only unqualified function ARNs carry tags.
    fn taggable_function(&self, resource: &str) -> Result<String, ServiceError> {
        if !resource.starts_with("arn:") {
            return Err(ServiceError::constraint(
                resource,
                "resource",
                "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*):lambda:[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\\d{1}:\\d{12}:(function:[a-zA-Z0-9-_]+(:(\\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
            ));
        }
        let reference = FunctionRef::parse(resource, &self.account, RefUse::Read)?;
        if reference.qualifier.is_some() {
            return Err(ServiceError::InvalidParameterValue(
                "Tags are not supported on function versions or aliases; tag the unqualified function ARN."
                    .to_owned(),
            ));
        }
        Ok(reference.name)
    }

    fn parse_unqualified(&self, name: &str, usage: RefUse) -> Result<FunctionRef, ServiceError> {
        let reference = FunctionRef::parse(name, &self.account, usage)?;
        match reference.qualifier.as_deref() {
            None | Some(LATEST) => Ok(reference),
            Some(_) => Err(ServiceError::InvalidParameterValue(
                "Only the $LATEST version of a function can be updated.".to_owned(),
            )),
        }
    }

    async fn resolve(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<resolve::Resolved, ServiceError> {
        resolve::check_query_qualifier(qualifier)?;
        let reference = FunctionRef::parse(name, &self.account, RefUse::Read)?
            .with_query_qualifier(qualifier)?;
        self.resolve_qualified(&reference.name, reference.qualifier.as_deref())
            .await
    }

    /// A configuration as the caller named it: through an alias, it carries the alias ARN.
    fn configuration_as_named(&self, resolved: &resolve::Resolved) -> FunctionConfiguration {
        let mut configuration = resolved.version.configuration(&self.account);
        if let Some(alias) = &resolved.alias {
            configuration.function_arn = self
                .account
                .qualified_function_arn(&resolved.version.name, alias);
        }
        configuration
    }

    async fn get_record(&self, name: &str) -> Result<Option<FunctionRecord>, ServiceError> {
        self.store
            .get_function(name)
            .await
            .map_err(ServiceError::internal)
    }

    async fn require_record(&self, name: &str) -> Result<FunctionRecord, ServiceError> {
        self.get_record(name)
            .await?
            .ok_or_else(|| self.not_found(name, None))
    }

    fn not_found(&self, name: &str, qualifier: Option<&str>) -> ServiceError {
        let arn = match qualifier {
            Some(q) => self.account.qualified_function_arn(name, q),
            None => self.account.function_arn(name),
        };
        ServiceError::ResourceNotFound(format!("Function not found: {arn}"))
    }

    fn finish_replace(
        &self,
        replaced: Result<(), StoreError>,
        next: &FunctionRecord,
        caller_gave_revision: bool,
    ) -> Result<FunctionConfiguration, ServiceError> {
        match replaced {
            Ok(()) => Ok(next.latest.configuration(&self.account)),
            Err(StoreError::RevisionMismatch) if caller_gave_revision => Err(stale_revision()),
            Err(StoreError::RevisionMismatch) => Err(ServiceError::ResourceConflict(format!(
                "The operation cannot be performed at this time. An update is in progress for resource: {}",
                self.account.function_arn(next.name())
            ))),
            Err(StoreError::NotFound) => Err(self.not_found(next.name(), None)),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    pub(super) async fn check_storage_quota(&self, adding: u64) -> Result<(), ServiceError> {
        let usage = self.store.usage().await.map_err(ServiceError::internal)?;
        if usage.total_code_size.saturating_add(adding) > TOTAL_CODE_SIZE_LIMIT {
            return Err(ServiceError::CodeStorageExceeded(
                "Code storage limit exceeded.".to_owned(),
            ));
        }
        Ok(())
    }

    async fn put_blob(&self, package: &CheckedPackage, zip: &[u8]) -> Result<(), ServiceError> {
        self.blobs
            .put(&package.code.sha256_hex, zip)
            .await
            .map_err(ServiceError::internal)
    }

    /// Remove a blob if no record refers to it. Callers hold `code_lifecycle`.
    pub(super) async fn drop_blob_if_unreferenced(
        &self,
        sha256_hex: &str,
    ) -> Result<(), ServiceError> {
        let referenced = self
            .store
            .referenced_code()
            .await
            .map_err(ServiceError::internal)?;
        if !referenced.contains(sha256_hex) {
            self.blobs
                .remove(sha256_hex)
                .await
                .map_err(ServiceError::internal)?;
        }
        Ok(())
    }
}

fn zip_bytes(code: Option<&FunctionCodeInput>) -> Result<Vec<u8>, ServiceError> {
    let Some(code) = code else {
        return Err(ServiceError::constraint(
            "null",
            "code",
            "Member must not be null",
        ));
    };
    if code.image_uri.is_some() {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa runs functions packaged as Zip; container images are not supported.".to_owned(),
        ));
    }
    if code.s3_bucket.is_some() || code.s3_key.is_some() || code.s3_object_version.is_some() {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa takes code uploaded as ZipFile; S3 code locations are not supported.".to_owned(),
        ));
    }
    let Some(encoded) = code.zip_file.as_deref() else {
        return Err(ServiceError::InvalidParameterValue(
            "Please provide a source for function code: ZipFile.".to_owned(),
        ));
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| ServiceError::InvalidRequestContent("ZipFile is not valid base64.".to_owned()))
}

pub(super) fn check_package(zip: &[u8]) -> Result<CheckedPackage, ServiceError> {
    code_package::check_zip(zip, MAX_UNZIPPED_SIZE).map_err(|err| match err {
        CodePackageError::ZippedTooLarge(_) => ServiceError::RequestEntityTooLarge(format!(
            "Zipped size must be smaller than {MAX_ZIPPED_SIZE} bytes"
        )),
        CodePackageError::UnzippedTooLarge => ServiceError::InvalidParameterValue(format!(
            "Unzipped size must be smaller than {MAX_UNZIPPED_SIZE} bytes"
        )),
        CodePackageError::Corrupt(_) => ServiceError::InvalidParameterValue(
            "Could not unzip uploaded file. Please check your file, then try to upload again."
                .to_owned(),
        ),
        CodePackageError::EscapingEntry(entry) => ServiceError::InvalidParameterValue(format!(
            "Could not unzip uploaded file: entry {entry:?} would be extracted outside the function's directory."
        )),
    })
}

fn check_revision(given: Option<&str>, current: &str) -> Result<(), ServiceError> {
    match given {
        Some(given) if given != current => Err(stale_revision()),
        _ => Ok(()),
    }
}

fn stale_revision() -> ServiceError {
    ServiceError::PreconditionFailed(
        "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id"
            .to_owned(),
    )
}

fn already_exists(name: &str) -> ServiceError {
    ServiceError::ResourceConflict(format!("Function already exist: {name}"))
}

pub(super) fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `LastModified` as Lambda writes it: `2024-01-31T12:34:56.789+0000`.
pub(super) fn now_timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}
