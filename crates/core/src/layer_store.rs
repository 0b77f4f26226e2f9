//! The storage the layer operations need. Layer zips live in the same content-addressed
//! `CodeBlobs` as function code; every digest a layer version refers to is part of
//! `FunctionStore::referenced_code`, so the collection of unreferenced blobs never removes them.

use async_trait::async_trait;

use crate::layer::{LayerPolicy, LayerVersionRecord};
use crate::store::StoreError;

#[async_trait]
pub trait LayerStore: Send + Sync + 'static {
    /// Store a new version of `record.layer_name`, numbered one more than any version the layer
    /// ever had (numbers are never reused, even after deletes); returns the stored record.
    async fn publish_layer_version(
        &self,
        record: &LayerVersionRecord,
    ) -> Result<LayerVersionRecord, StoreError>;
    async fn get_layer_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerVersionRecord>, StoreError>;
    /// Every existing version of every layer, by layer name, newest version first.
    async fn list_layer_versions(
        &self,
        name: Option<&str>,
    ) -> Result<Vec<LayerVersionRecord>, StoreError>;
    /// Remove a version; returns what was removed.
    async fn delete_layer_version(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerVersionRecord>, StoreError>;
    /// The version's policy; `NotFound` if the version does not exist.
    async fn get_layer_policy(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<LayerPolicy>, StoreError>;
    /// Replace the policy if its revision is still `expected_revision` (`None`: no policy yet);
    /// `RevisionMismatch` otherwise, `NotFound` if the version does not exist.
    async fn replace_layer_policy(
        &self,
        name: &str,
        version: i64,
        expected_revision: Option<&str>,
        policy: Option<&LayerPolicy>,
    ) -> Result<(), StoreError>;
}
