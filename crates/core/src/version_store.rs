//! Published versions, aliases and provisioned concurrency configs: what is stored, and the
//! storage interface for them. Every method is atomic.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::function::FunctionVersion;
use crate::store::StoreError;

/// An alias: a name pointing to a version, optionally sending a share of invocations to a
/// second version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub name: String,
    pub function_version: String,
    pub description: String,
    /// `AdditionalVersionWeights`: at most one version and the share (0.0–1.0) it receives.
    pub additional_version_weights: BTreeMap<String, f64>,
    pub revision_id: String,
}

impl AliasRecord {
    /// Whether the alias sends any invocation to `version`.
    pub fn references(&self, version: &str) -> bool {
        self.function_version == version || self.additional_version_weights.contains_key(version)
    }
}

/// A provisioned concurrency config of one version or alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConcurrencyRecord {
    pub function_name: String,
    /// A version number or an alias name, never `$LATEST`.
    pub qualifier: String,
    pub requested: u32,
    pub last_modified: String,
}

/// What publishing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new version was created.
    New(FunctionVersion),
    /// Nothing changed since the last published version, which is returned.
    Unchanged(FunctionVersion),
}

/// What deleting a version found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionDeletion {
    Deleted(Box<FunctionVersion>),
    NotFound,
    /// Aliases (by name) still route to the version; nothing was deleted.
    ReferencedBy(Vec<String>),
}

#[async_trait]
pub trait VersionStore: Send + Sync + 'static {
    /// Publish `candidate` (a copy of `$LATEST`; its `version` is replaced by the next number)
    /// if `$LATEST` is still at `expected_latest_revision`. Nothing is published, and the last
    /// version returned, when that version was published from this same revision or has the same
    /// code and settings. `NotFound` if the function is gone, `RevisionMismatch` if `$LATEST`
    /// changed.
    async fn publish_version(
        &self,
        candidate: &FunctionVersion,
        expected_latest_revision: &str,
    ) -> Result<Published, StoreError>;
    async fn get_version(
        &self,
        function: &str,
        version: u64,
    ) -> Result<Option<FunctionVersion>, StoreError>;
    /// Published versions of `function`, in ascending order.
    async fn list_versions(&self, function: &str) -> Result<Vec<FunctionVersion>, StoreError>;
    /// Delete one version unless an alias routes to it; its provisioned concurrency and event
    /// invoke configs go with it.
    async fn delete_version(
        &self,
        function: &str,
        version: u64,
    ) -> Result<VersionDeletion, StoreError>;

    /// Insert an alias. `AlreadyExists` if the name is taken; `NotFound` if the function or a
    /// version it names does not exist.
    async fn create_alias(&self, function: &str, alias: &AliasRecord) -> Result<(), StoreError>;
    async fn get_alias(
        &self,
        function: &str,
        name: &str,
    ) -> Result<Option<AliasRecord>, StoreError>;
    /// Aliases of `function` ordered by name.
    async fn list_aliases(&self, function: &str) -> Result<Vec<AliasRecord>, StoreError>;
    /// Replace an alias if its revision is still `expected_revision`. `NotFound` if the alias
    /// or a version it names does not exist, `RevisionMismatch` if it changed.
    async fn replace_alias(
        &self,
        function: &str,
        alias: &AliasRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError>;
    /// Delete an alias with its provisioned concurrency and event invoke configs; false if it
    /// did not exist.
    async fn delete_alias(&self, function: &str, name: &str) -> Result<bool, StoreError>;

    /// Insert or replace a config. `NotFound` if the function is gone.
    async fn put_provisioned_concurrency(
        &self,
        config: &ProvisionedConcurrencyRecord,
    ) -> Result<(), StoreError>;
    /// Configs of one function, or of every function when `function` is `None`.
    async fn list_provisioned_concurrency(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<ProvisionedConcurrencyRecord>, StoreError>;
    async fn delete_provisioned_concurrency(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<bool, StoreError>;
}
