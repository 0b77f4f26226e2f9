//! The narrow storage interface the control plane needs.
//!
//! Backends: SQLite in WAL mode (embedded default, `kappa-store`); PostgreSQL later. Code packages
//! are blobs keyed by their SHA-256 and kept apart from the records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use async_trait::async_trait;
use thiserror::Error;

use crate::function::FunctionRecord;
use crate::version_store::VersionStore;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the record already exists")]
    AlreadyExists,
    #[error("the record does not exist")]
    NotFound,
    #[error("the record changed since it was read")]
    RevisionMismatch,
    #[error("storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    pub fn backend(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend(Box::new(err))
    }
}

/// What the account holds, for GetAccountSettings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredUsage {
    pub function_count: u64,
    pub total_code_size: u64,
}

/// Durable records of functions (and, through `VersionStore`, their versions and aliases).
/// Every method is atomic: it either happens whole or not at all.
#[async_trait]
pub trait FunctionStore: VersionStore + Send + Sync + 'static {
    /// Insert a new function; `AlreadyExists` if the name is taken.
    async fn create_function(&self, record: &FunctionRecord) -> Result<(), StoreError>;
    async fn get_function(&self, name: &str) -> Result<Option<FunctionRecord>, StoreError>;
    /// Functions ordered by name, starting after `after`, at most `limit` of them.
    async fn list_functions(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Replace a function's `$LATEST` if its revision is still `expected_revision`.
    async fn replace_function(
        &self,
        record: &FunctionRecord,
        expected_revision: &str,
    ) -> Result<(), StoreError>;
    /// Remove a function; returns what was removed, `None` if it did not exist.
    async fn delete_function(&self, name: &str) -> Result<Option<FunctionRecord>, StoreError>;
    /// Add and remove tags in one step; `NotFound` if the function does not exist.
    async fn update_tags(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError>;
    async fn usage(&self) -> Result<StoredUsage, StoreError>;
    /// SHA-256 (hex) of every code package some record refers to.
    async fn referenced_code(&self) -> Result<BTreeSet<String>, StoreError>;
}

/// Content-addressed code packages.
#[async_trait]
pub trait CodeBlobs: Send + Sync + 'static {
    /// Store `bytes` under `sha256_hex` durably; storing the same digest twice is a no-op.
    async fn put(&self, sha256_hex: &str, bytes: &[u8]) -> Result<(), StoreError>;
    async fn read(&self, sha256_hex: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn remove(&self, sha256_hex: &str) -> Result<(), StoreError>;
    async fn list(&self) -> Result<Vec<String>, StoreError>;
    /// Where the blob lives on disk, for extraction by the runtime layer.
    fn path(&self, sha256_hex: &str) -> PathBuf;
}
