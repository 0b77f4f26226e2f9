//! The layer operations of the Lambda API: publish, get, list and delete layer versions, and the
//! `Layers` of functions. Layer zips are content-addressed blobs beside function code, stored and
//! collected under the same code-lifecycle lock.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;

use super::layer_requests::{
    self, LayerId, LayerListQuery, PublishLayerVersionInput, check_list_query, check_publish,
};
use super::service::{FunctionService, check_package, now_timestamp};
use crate::code_package::MAX_UNZIPPED_SIZE;
use crate::error::ServiceError;
use crate::function::FunctionVersion;
use crate::layer::{FunctionLayer, LayerVersionRecord, LayerVersionsListItem, LayersListItem};
use crate::layer_store::LayerStore;

/// One page of ListLayers.
#[derive(Debug, Clone)]
pub struct LayerListPage {
    pub layers: Vec<LayersListItem>,
    pub next_marker: Option<String>,
}

/// One page of ListLayerVersions.
#[derive(Debug, Clone)]
pub struct LayerVersionListPage {
    pub versions: Vec<LayerVersionsListItem>,
    pub next_marker: Option<String>,
}

impl FunctionService {
    pub(super) fn layers(&self) -> Result<&Arc<dyn LayerStore>, ServiceError> {
        self.layer_store.as_ref().ok_or_else(|| {
            ServiceError::internal(std::io::Error::other("no layer store is configured"))
        })
    }

    pub async fn publish_layer_version(
        &self,
        layer_name: &str,
        input: PublishLayerVersionInput,
    ) -> Result<LayerVersionRecord, ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        check_publish(&input)?;
        if layer.foreign {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Layers can only be published to this account and region ({}:{}); {} is another's.",
                self.account.region, self.account.account_id, layer.arn
            )));
        }
        let zip = layer_zip(input.content.as_ref())?;
        let package = check_package(&zip)?;
        let draft = LayerVersionRecord {
            layer_name: layer.name.clone(),
            version: 0,
            description: input.description.unwrap_or_default(),
            created_date: now_timestamp(),
            compatible_runtimes: input.compatible_runtimes.unwrap_or_default(),
            compatible_architectures: input.compatible_architectures.unwrap_or_default(),
            license_info: input.license_info,
            code: package.code.clone(),
        };
        let store = self.layers()?;
        let _guard = self.code_lifecycle.lock().await;
        self.check_storage_quota(package.code.size).await?;
        self.blobs
            .put(&package.code.sha256_hex, &zip)
            .await
            .map_err(ServiceError::internal)?;
        match store.publish_layer_version(&draft).await {
            Ok(record) => {
                tracing::info!(layer = %record.layer_name, version = record.version, "layer version published");
                Ok(record)
            }
            Err(err) => {
                self.drop_blob_if_unreferenced(&package.code.sha256_hex)
                    .await?;
                Err(ServiceError::internal(err))
            }
        }
    }

    pub async fn get_layer_version(
        &self,
        layer_name: &str,
        version: i64,
    ) -> Result<LayerVersionRecord, ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        self.require_layer_version(&layer, version).await
    }

    pub async fn get_layer_version_by_arn(
        &self,
        arn: Option<&str>,
    ) -> Result<LayerVersionRecord, ServiceError> {
        let Some(arn) = arn else {
            return Err(ServiceError::constraint(
                "null",
                "arn",
                "Member must not be null",
            ));
        };
        let (layer, version) = layer_requests::parse_layer_version_arn(arn, "arn", &self.account)?;
        self.require_layer_version(&layer, version).await
    }

    pub async fn list_layers(&self, query: LayerListQuery) -> Result<LayerListPage, ServiceError> {
        let limit = check_list_query(&query)?;
        let all = self
            .layers()?
            .list_layer_versions(None)
            .await
            .map_err(ServiceError::internal)?;
        let runtime = query.compatible_runtime.as_deref();
        let architecture = query.compatible_architecture.as_deref();
        // Versions come newest first within each layer: the first match is the latest.
        let mut latest: BTreeMap<String, LayerVersionRecord> = BTreeMap::new();
        for record in all {
            if record.matches(runtime, architecture) && !latest.contains_key(&record.layer_name) {
                latest.insert(record.layer_name.clone(), record);
            }
        }
        let after = query.marker.filter(|m| !m.is_empty());
        let mut page: Vec<LayersListItem> = latest
            .into_values()
            .filter(|r| {
                after
                    .as_ref()
                    .is_none_or(|m| r.layer_name.as_str() > m.as_str())
            })
            .take(limit + 1)
            .map(|r| LayersListItem {
                layer_name: r.layer_name.clone(),
                layer_arn: self.account.layer_arn(&r.layer_name),
                latest_matching_version: r.list_item(&self.account),
            })
            .collect();
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|item| item.layer_name.clone())
        } else {
            None
        };
        Ok(LayerListPage {
            layers: page,
            next_marker,
        })
    }

    pub async fn list_layer_versions(
        &self,
        layer_name: &str,
        query: LayerListQuery,
    ) -> Result<LayerVersionListPage, ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        let limit = check_list_query(&query)?;
        if layer.foreign {
            return Ok(LayerVersionListPage {
                versions: Vec::new(),
                next_marker: None,
            });
        }
        let versions = self
            .layers()?
            .list_layer_versions(Some(&layer.name))
            .await
            .map_err(ServiceError::internal)?;
        let before = query.marker.as_deref().and_then(|m| m.parse::<i64>().ok());
        let runtime = query.compatible_runtime.as_deref();
        let architecture = query.compatible_architecture.as_deref();
        let mut page: Vec<LayerVersionsListItem> = versions
            .iter()
            .filter(|r| r.matches(runtime, architecture))
            .filter(|r| before.is_none_or(|b| r.version < b))
            .take(limit + 1)
            .map(|r| r.list_item(&self.account))
            .collect();
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|item| item.version.to_string())
        } else {
            None
        };
        Ok(LayerVersionListPage {
            versions: page,
            next_marker,
        })
    }

    /// Delete a layer version. Deleting one that does not exist succeeds, as on Lambda. Functions
    /// that use it keep their copy, so its blob stays while any of them refers to it.
    pub async fn delete_layer_version(
        &self,
        layer_name: &str,
        version: i64,
    ) -> Result<(), ServiceError> {
        let layer = layer_requests::parse_layer_name(layer_name, &self.account)?;
        if layer.foreign {
            return Ok(());
        }
        let store = self.layers()?;
        let _guard = self.code_lifecycle.lock().await;
        let removed = store
            .delete_layer_version(&layer.name, version)
            .await
            .map_err(ServiceError::internal)?;
        if let Some(removed) = removed {
            self.drop_blob_if_unreferenced(&removed.code.sha256_hex)
                .await?;
            tracing::info!(layer = %layer.name, version, "layer version deleted");
        }
        Ok(())
    }

    /// The layer versions a function's `Layers` names, in order, checked as Lambda checks them.
    /// Callers hold `code_lifecycle`, so a version cannot be deleted before the record that
    /// refers to its blob is committed.
    pub(super) async fn resolve_function_layers(
        &self,
        arns: &[String],
    ) -> Result<Vec<FunctionLayer>, ServiceError> {
        let mut seen = HashSet::new();
        let mut resolved = Vec::with_capacity(arns.len());
        for arn in arns {
            let missing = || {
                ServiceError::InvalidParameterValue(format!("Layer version {arn} does not exist."))
            };
            let Some((layer, version)) = layer_requests::split_version_arn(arn, &self.account)
            else {
                return Err(missing());
            };
            if !seen.insert(layer.arn.clone()) {
                return Err(ServiceError::InvalidParameterValue(
                    "Two different versions of the same layer are not allowed to be referenced in the same function."
                        .to_owned(),
                ));
            }
            if layer.foreign {
                return Err(missing());
            }
            let record = self
                .layers()?
                .get_layer_version(&layer.name, version)
                .await
                .map_err(ServiceError::internal)?
                .ok_or_else(missing)?;
            resolved.push(FunctionLayer {
                arn: arn.clone(),
                code: record.code,
            });
        }
        Ok(resolved)
    }

    /// After a function's layers changed: remove the blobs of layers it no longer uses that
    /// nothing else refers to (a deleted layer version's copy). Callers hold `code_lifecycle`.
    pub(super) async fn drop_unused_layer_blobs(
        &self,
        before: &FunctionVersion,
        after: &FunctionVersion,
    ) -> Result<(), ServiceError> {
        for layer in &before.settings.layers {
            let kept = after
                .settings
                .layers
                .iter()
                .any(|l| l.code.sha256_hex == layer.code.sha256_hex);
            if !kept {
                self.drop_blob_if_unreferenced(&layer.code.sha256_hex)
                    .await?;
            }
        }
        Ok(())
    }

    async fn require_layer_version(
        &self,
        layer: &LayerId,
        version: i64,
    ) -> Result<LayerVersionRecord, ServiceError> {
        let found = if layer.foreign {
            None
        } else {
            self.layers()?
                .get_layer_version(&layer.name, version)
                .await
                .map_err(ServiceError::internal)?
        };
        found.ok_or_else(|| layer_version_not_found(layer, version))
    }
}

pub(super) fn layer_version_not_found(layer: &LayerId, version: i64) -> ServiceError {
    ServiceError::ResourceNotFound(format!(
        "Layer version {} does not exist.",
        layer.version_arn(version)
    ))
}

/// The function's code and its layers together may unzip to at most 250 MB.
pub(super) fn check_combined_size(
    code_unzipped: u64,
    layers: &[FunctionLayer],
) -> Result<(), ServiceError> {
    if layers.is_empty() {
        return Ok(());
    }
    let total = layers.iter().fold(code_unzipped, |sum, l| {
        sum.saturating_add(l.code.unzipped_size)
    });
    if total > MAX_UNZIPPED_SIZE {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Function code combined with layers exceeds the maximum allowed size of {MAX_UNZIPPED_SIZE} bytes. The actual size is {total} bytes."
        )));
    }
    Ok(())
}

fn layer_zip(content: Option<&layer_requests::LayerContentInput>) -> Result<Vec<u8>, ServiceError> {
    let Some(content) = content else {
        return Err(ServiceError::constraint(
            "null",
            "content",
            "Member must not be null",
        ));
    };
    if content.s3_bucket.is_some()
        || content.s3_key.is_some()
        || content.s3_object_version.is_some()
    {
        return Err(ServiceError::InvalidParameterValue(
            "Kappa takes layer content uploaded as ZipFile; S3 locations (S3Bucket, S3Key, S3ObjectVersion) are not supported."
                .to_owned(),
        ));
    }
    let Some(encoded) = content.zip_file.as_deref() else {
        return Err(ServiceError::InvalidParameterValue(
            "Please provide a source for layer content: ZipFile.".to_owned(),
        ));
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| ServiceError::InvalidRequestContent("ZipFile is not valid base64.".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::function::CodeRef;

    fn layer(unzipped_size: u64) -> FunctionLayer {
        FunctionLayer {
            arn: "arn:aws:lambda:us-east-1:000000000000:layer:l:1".into(),
            code: CodeRef {
                sha256_hex: "aa".into(),
                sha256_base64: "b64".into(),
                size: 1,
                unzipped_size,
            },
        }
    }

    #[test]
    fn code_and_layers_may_unzip_to_exactly_the_limit() {
        let half = MAX_UNZIPPED_SIZE / 2;
        assert!(check_combined_size(half, &[layer(MAX_UNZIPPED_SIZE - half)]).is_ok());
        let err = check_combined_size(half + 1, &[layer(MAX_UNZIPPED_SIZE - half)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Function code combined with layers exceeds the maximum allowed size of 262144000 bytes. The actual size is 262144001 bytes."
        );
        // Without layers the package's own limit applies (checked with the zip).
        assert!(check_combined_size(MAX_UNZIPPED_SIZE + 1, &[]).is_ok());
    }
}
