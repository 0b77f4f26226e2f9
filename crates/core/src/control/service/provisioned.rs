//! PutProvisionedConcurrencyConfig, GetProvisionedConcurrencyConfig,
//! ListProvisionedConcurrencyConfigs, DeleteProvisionedConcurrencyConfig.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{FunctionService, InvokeTarget};
use crate::error::ServiceError;
use crate::function::{FunctionVersion, LATEST};
use crate::names::{FunctionRef, RefUse};
use crate::provisioned::config_generation;
use crate::store::StoreError;
use crate::version_store::ProvisionedConcurrencyRecord;

/// Concurrency the account always keeps unreserved.
pub const MIN_UNRESERVED: u32 = 100;
/// Configs per ListProvisionedConcurrencyConfigs page at most.
const MAX_PROVISIONED_PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutProvisionedConcurrencyInput {
    pub provisioned_concurrent_executions: Option<i64>,
}

/// The config shape of Put and Get; List adds `FunctionArn`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedConcurrencyConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    pub requested_provisioned_concurrent_executions: u32,
    pub available_provisioned_concurrent_executions: u32,
    pub allocated_provisioned_concurrent_executions: u32,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub last_modified: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedConcurrencyList {
    pub provisioned_concurrency_configs: Vec<ProvisionedConcurrencyConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

impl FunctionService {
    pub async fn put_provisioned_concurrency(
        &self,
        function: &str,
        qualifier: Option<&str>,
        input: PutProvisionedConcurrencyInput,
    ) -> Result<ProvisionedConcurrencyConfig, ServiceError> {
        let (name, qualifier) = self.provisioned_target(function, qualifier)?;
        let requested = match input.provisioned_concurrent_executions {
            None => {
                return Err(ServiceError::constraint(
                    "null",
                    "provisionedConcurrentExecutions",
                    "Member must not be null",
                ));
            }
            Some(n) if n < 1 => {
                return Err(ServiceError::constraint(
                    n,
                    "provisionedConcurrentExecutions",
                    "Member must have value greater than or equal to 1",
                ));
            }
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
        };
        if qualifier == LATEST {
            return Err(unpublished());
        }
        self.require_record(&name).await?;
        let version = self.provisioned_version(&name, &qualifier).await?;
        if version.version == LATEST {
            return Err(unpublished());
        }
        let stored = self.list_stored_provisioned(None).await?;
        self.check_provisioned_limits(&stored, &name, &qualifier, requested)?;
        self.check_provisioned_overlap(&stored, &name, &qualifier, &version)
            .await?;
        let record = ProvisionedConcurrencyRecord {
            function_name: name.clone(),
            qualifier: qualifier.clone(),
            requested,
            last_modified: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%z").to_string(),
        };
        match self.store.put_provisioned_concurrency(&record).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(self.not_found(&name, None)),
            Err(err) => return Err(ServiceError::internal(err)),
        }
        self.provisioned_changed().await?;
        tracing::info!(function = %name, %qualifier, requested, "provisioned concurrency set");
        // As on Lambda, a Put answers before any environment is allocated.
        let mut shape = self.provisioned_shape(&record, false);
        shape.available_provisioned_concurrent_executions = 0;
        shape.allocated_provisioned_concurrent_executions = 0;
        shape.status = "IN_PROGRESS";
        shape.status_reason = None;
        Ok(shape)
    }

    pub async fn get_provisioned_concurrency(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<ProvisionedConcurrencyConfig, ServiceError> {
        let (name, qualifier) = self.provisioned_target(function, qualifier)?;
        if qualifier == LATEST {
            return Err(not_alias_or_version());
        }
        self.require_record(&name).await?;
        let config = self
            .list_stored_provisioned(Some(&name))
            .await?
            .into_iter()
            .find(|c| c.qualifier == qualifier)
            .ok_or_else(config_not_found)?;
        Ok(self.provisioned_shape(&config, false))
    }

    pub async fn list_provisioned_concurrency(
        &self,
        function: &str,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<ProvisionedConcurrencyList, ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?;
        let limit = match max_items {
            None => MAX_PROVISIONED_PAGE,
            Some(n) if !(1..=50).contains(&n) => {
                let bound = if n < 1 {
                    "Member must have value greater than or equal to 1"
                } else {
                    "Member must have value less than or equal to 50"
                };
                return Err(ServiceError::constraint(n, "maxItems", bound));
            }
            Some(n) => usize::try_from(n).unwrap_or(MAX_PROVISIONED_PAGE),
        };
        self.require_record(&reference.name).await?;
        let after = marker.filter(|m| !m.is_empty());
        let mut configs: Vec<_> = self
            .list_stored_provisioned(Some(&reference.name))
            .await?
            .into_iter()
            .filter(|c| after.is_none_or(|m| c.qualifier.as_str() > m))
            .collect();
        let next_marker = if configs.len() > limit {
            configs.truncate(limit);
            configs.last().map(|c| c.qualifier.clone())
        } else {
            None
        };
        Ok(ProvisionedConcurrencyList {
            provisioned_concurrency_configs: configs
                .iter()
                .map(|c| self.provisioned_shape(c, true))
                .collect(),
            next_marker,
        })
    }

    pub async fn delete_provisioned_concurrency(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(), ServiceError> {
        let (name, qualifier) = self.provisioned_target(function, qualifier)?;
        if qualifier == LATEST {
            return Err(not_alias_or_version());
        }
        self.require_record(&name).await?;
        let deleted = self
            .store
            .delete_provisioned_concurrency(&name, &qualifier)
            .await
            .map_err(ServiceError::internal)?;
        self.provisioned_changed().await?;
        if !deleted {
            return Err(config_not_found());
        }
        Ok(())
    }

    /// Reload the configs in force from the store (at start and after every change).
    pub async fn refresh_provisioned(&self) -> Result<(), ServiceError> {
        let configs = self.list_stored_provisioned(None).await?;
        self.provisioned.replace_configs(configs);
        Ok(())
    }

    /// After a config was put or deleted: reload, and wake the runtime to allocate at once.
    async fn provisioned_changed(&self) -> Result<(), ServiceError> {
        self.refresh_provisioned().await?;
        self.provisioned.notify_changed();
        Ok(())
    }

    /// The version a provisioned config keeps environments for: the version itself, or the
    /// version an alias points to (its primary version when it is weighted).
    pub async fn provisioned_version(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Arc<FunctionVersion>, ServiceError> {
        match self.load_target(function, qualifier).await? {
            InvokeTarget::Version(version)
            | InvokeTarget::Weighted {
                primary: version, ..
            } => Ok(version),
        }
    }

    /// The account keeps at least [`MIN_UNRESERVED`] unreserved; provisioned concurrency comes
    /// out of it.
    fn check_provisioned_limits(
        &self,
        stored: &[ProvisionedConcurrencyRecord],
        name: &str,
        qualifier: &str,
        requested: u32,
    ) -> Result<(), ServiceError> {
        let limit = self.limits.concurrent_executions;
        if requested > limit {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Specified ConcurrentExecutions for function is greater than account's unreserved concurrency [{limit}]."
            )));
        }
        let others: u32 = stored
            .iter()
            .filter(|c| (c.function_name.as_str(), c.qualifier.as_str()) != (name, qualifier))
            .map(|c| c.requested)
            .sum();
        let unreserved = i64::from(limit) - i64::from(others) - i64::from(requested);
        if unreserved < i64::from(MIN_UNRESERVED) {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Specified ConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{MIN_UNRESERVED}]."
            )));
        }
        Ok(())
    }

    /// A version is provisioned either directly or through aliases pointing to it, not both.
    async fn check_provisioned_overlap(
        &self,
        stored: &[ProvisionedConcurrencyRecord],
        name: &str,
        qualifier: &str,
        version: &FunctionVersion,
    ) -> Result<(), ServiceError> {
        let mine = stored
            .iter()
            .filter(|c| c.function_name == name && c.qualifier != qualifier);
        let is_alias = version.version != qualifier;
        for other in mine {
            let other_is_alias = !other.qualifier.bytes().all(|b| b.is_ascii_digit());
            if is_alias && !other_is_alias && other.qualifier == version.version {
                return Err(ServiceError::ResourceConflict(
                    "Alias can't be used for Provisioned Concurrency configuration on an already Provisioned version"
                        .to_owned(),
                ));
            }
            if !is_alias
                && other_is_alias
                && let Ok(target) = self.provisioned_version(name, &other.qualifier).await
                && target.version == qualifier
            {
                return Err(ServiceError::ResourceConflict(
                    "Version is pointed by a Provisioned Concurrency alias".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Provisioned concurrency requested across the account.
    pub async fn provisioned_total(&self) -> Result<u32, ServiceError> {
        Ok(self
            .list_stored_provisioned(None)
            .await?
            .iter()
            .map(|c| c.requested)
            .sum())
    }

    async fn list_stored_provisioned(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<ProvisionedConcurrencyRecord>, ServiceError> {
        self.store
            .list_provisioned_concurrency(function)
            .await
            .map_err(ServiceError::internal)
    }

    fn provisioned_target(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String), ServiceError> {
        let reference = FunctionRef::parse(function, &self.account, RefUse::Read)?
            .with_query_qualifier(qualifier)?;
        let Some(qualifier) = reference.qualifier else {
            return Err(ServiceError::constraint(
                "null",
                "qualifier",
                "Member must not be null",
            ));
        };
        Ok((reference.name, qualifier))
    }

    fn provisioned_shape(
        &self,
        config: &ProvisionedConcurrencyRecord,
        with_arn: bool,
    ) -> ProvisionedConcurrencyConfig {
        let key = (config.function_name.clone(), config.qualifier.clone());
        let allocation = self.provisioned.allocation(&key);
        let current = allocation.for_config == config_generation(config);
        let allocated = if current {
            allocation.allocated.min(config.requested)
        } else {
            0
        };
        let failure = allocation.failure.filter(|_| current);
        let status = if failure.is_some() {
            "FAILED"
        } else if allocated >= config.requested {
            "READY"
        } else {
            "IN_PROGRESS"
        };
        ProvisionedConcurrencyConfig {
            function_arn: with_arn.then(|| {
                self.account
                    .qualified_function_arn(&config.function_name, &config.qualifier)
            }),
            requested_provisioned_concurrent_executions: config.requested,
            available_provisioned_concurrent_executions: allocated,
            allocated_provisioned_concurrent_executions: allocated,
            status,
            status_reason: failure,
            last_modified: config.last_modified.clone(),
        }
    }
}

fn unpublished() -> ServiceError {
    ServiceError::InvalidParameterValue(
        "Provisioned Concurrency Configs cannot be applied to unpublished function versions."
            .to_owned(),
    )
}

fn not_alias_or_version() -> ServiceError {
    ServiceError::InvalidParameterValue(
        "The function resource provided must be an alias or a published version.".to_owned(),
    )
}

fn config_not_found() -> ServiceError {
    ServiceError::ProvisionedConcurrencyConfigNotFound(
        "No Provisioned Concurrency Config found for this function".to_owned(),
    )
}
