//! Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s): retries, maximum event age and
//! destinations of asynchronous invocation, per function and qualifier.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::FunctionService;
use crate::async_queue::{
    Destination, DestinationConfig, EventInvokeConfig, EventInvokeConfigStore,
};
use crate::error::ServiceError;
use crate::function::LATEST;
use crate::names::{AccountContext, FunctionRef, RefUse};
use crate::store::StoreError;

pub const MAX_RETRY_ATTEMPTS: i64 = 2;
pub const MIN_EVENT_AGE_SECONDS: i64 = 60;
pub const MAX_EVENT_AGE_SECONDS: i64 = 21_600;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfigInput {
    pub maximum_retry_attempts: Option<i64>,
    pub maximum_event_age_in_seconds: Option<i64>,
    pub destination_config: Option<DestinationConfig>,
}

/// The `FunctionEventInvokeConfig` shape.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionEventInvokeConfig {
    /// Seconds since the epoch, as rest-json timestamps are.
    pub last_modified: f64,
    pub function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_event_age_in_seconds: Option<u32>,
    pub destination_config: DestinationConfigShape,
}

/// `DestinationConfig` as AWS answers it: both members present, empty when unset.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfigShape {
    pub on_success: Destination,
    pub on_failure: Destination,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfigList {
    pub function_event_invoke_configs: Vec<FunctionEventInvokeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Where an asynchronous invocation's outcome is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationTarget {
    /// Another function, invoked asynchronously with the invocation record.
    Function {
        name: String,
        qualifier: Option<String>,
        arn: String,
    },
}

impl DestinationTarget {
    /// Parse a destination ARN; only function destinations exist today (queues and topics come
    /// with the queue service).
    pub fn parse(arn: &str, account: &AccountContext) -> Result<Self, ServiceError> {
        if arn.starts_with("arn:aws:lambda:") && arn.contains(":function:") {
            let reference = FunctionRef::parse(arn, account, RefUse::Read)?;
            return Ok(Self::Function {
                name: reference.name,
                qualifier: reference.qualifier,
                arn: arn.to_owned(),
            });
        }
        Err(ServiceError::InvalidParameterValue(format!(
            "The destination ARN {arn} is not supported: Kappa delivers to Lambda functions (arn:aws:lambda:…:function:…) for now."
        )))
    }
}

#[derive(Clone)]
pub struct EventInvokeConfigService {
    functions: FunctionService,
    store: Arc<dyn EventInvokeConfigStore>,
}

impl std::fmt::Debug for EventInvokeConfigService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventInvokeConfigService")
    }
}

impl EventInvokeConfigService {
    pub fn new(functions: FunctionService, store: Arc<dyn EventInvokeConfigStore>) -> Self {
        Self { functions, store }
    }

    /// The config an asynchronous invocation of `function:qualifier` runs under (defaults when
    /// none is set).
    pub async fn effective(
        &self,
        function: &str,
        qualifier: Option<&str>,
    ) -> Result<EventInvokeConfig, ServiceError> {
        let qualifier = qualifier.unwrap_or(LATEST);
        Ok(self
            .store
            .get_config(function, qualifier)
            .await
            .map_err(ServiceError::internal)?
            .unwrap_or(EventInvokeConfig {
                maximum_retry_attempts: None,
                maximum_event_age_in_seconds: None,
                destinations: DestinationConfig::default(),
                last_modified: 0,
            }))
    }

    pub async fn put(
        &self,
        name: &str,
        qualifier: Option<&str>,
        input: EventInvokeConfigInput,
    ) -> Result<FunctionEventInvokeConfig, ServiceError> {
        let (function, qualifier) = self.target(name, qualifier).await?;
        if input.maximum_retry_attempts.is_none()
            && input.maximum_event_age_in_seconds.is_none()
            && input.destination_config.is_none()
        {
            return Err(ServiceError::InvalidParameterValue(
                "You must specify at least one of error handling or destination setting."
                    .to_owned(),
            ));
        }
        let config = self.validated(&function, input, None).await?;
        self.save(&function, &qualifier, &config).await
    }

    pub async fn update(
        &self,
        name: &str,
        qualifier: Option<&str>,
        input: EventInvokeConfigInput,
    ) -> Result<FunctionEventInvokeConfig, ServiceError> {
        let (function, qualifier) = self.target(name, qualifier).await?;
        let Some(current) = self
            .store
            .get_config(&function, &qualifier)
            .await
            .map_err(ServiceError::internal)?
        else {
            // Bad input is reported before the missing config, as AWS does.
            self.validated(&function, input, None).await?;
            return Err(self.missing(&function, &qualifier));
        };
        let config = self.validated(&function, input, Some(&current)).await?;
        self.save(&function, &qualifier, &config).await
    }

    async fn save(
        &self,
        function: &str,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> Result<FunctionEventInvokeConfig, ServiceError> {
        self.store
            .put_config(function, qualifier, config)
            .await
            .map_err(ServiceError::internal)?;
        Ok(self.shape(function, qualifier, config))
    }

    pub async fn get(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<FunctionEventInvokeConfig, ServiceError> {
        let (function, qualifier) = self.target(name, qualifier).await?;
        match self
            .store
            .get_config(&function, &qualifier)
            .await
            .map_err(ServiceError::internal)?
        {
            Some(config) => Ok(self.shape(&function, &qualifier, &config)),
            None => Err(self.missing(&function, &qualifier)),
        }
    }

    pub async fn delete(&self, name: &str, qualifier: Option<&str>) -> Result<(), ServiceError> {
        let (function, qualifier) = self.target(name, qualifier).await?;
        match self.store.delete_config(&function, &qualifier).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound) => Err(self.missing(&function, &qualifier)),
            Err(err) => Err(ServiceError::internal(err)),
        }
    }

    pub async fn list(
        &self,
        name: &str,
        marker: Option<&str>,
        max_items: Option<i64>,
    ) -> Result<EventInvokeConfigList, ServiceError> {
        let (function, _) = self.target(name, None).await?;
        let limit = match max_items {
            None => 50,
            Some(n) if (1..=50).contains(&n) => usize::try_from(n).unwrap_or(50),
            Some(n) => {
                return Err(ServiceError::constraint(
                    n,
                    "maxItems",
                    "Member must have value between 1 and 50",
                ));
            }
        };
        let all = self
            .store
            .list_configs(&function)
            .await
            .map_err(ServiceError::internal)?;
        let mut page: Vec<_> = all
            .into_iter()
            .filter(|(q, _)| marker.is_none_or(|m| q.as_str() > m))
            .take(limit + 1)
            .collect();
        let next_marker = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(q, _)| q.clone())
        } else {
            None
        };
        Ok(EventInvokeConfigList {
            function_event_invoke_configs: page
                .iter()
                .map(|(q, c)| self.shape(&function, q, c))
                .collect(),
            next_marker,
        })
    }

    /// The function and qualifier a request names; the function must exist.
    async fn target(
        &self,
        name: &str,
        qualifier: Option<&str>,
    ) -> Result<(String, String), ServiceError> {
        let (version, _) = self.functions.resolve_for_invoke(name, qualifier).await?;
        let reference = FunctionRef::parse(name, self.functions.account(), RefUse::Read)?
            .with_query_qualifier(qualifier)?;
        Ok((
            version.name.clone(),
            reference.qualifier.unwrap_or_else(|| LATEST.to_owned()),
        ))
    }

    async fn validated(
        &self,
        function: &str,
        input: EventInvokeConfigInput,
        current: Option<&EventInvokeConfig>,
    ) -> Result<EventInvokeConfig, ServiceError> {
        let mut violations = Vec::new();
        if let Some(retries) = input.maximum_retry_attempts
            && !(0..=MAX_RETRY_ATTEMPTS).contains(&retries)
        {
            let bound = if retries < 0 {
                "greater than or equal to 0"
            } else {
                "less than or equal to 2"
            };
            violations.push(crate::error::constraint_violation(
                retries,
                "maximumRetryAttempts",
                &format!("Member must have value {bound}"),
            ));
        }
        if let Some(age) = input.maximum_event_age_in_seconds
            && !(MIN_EVENT_AGE_SECONDS..=MAX_EVENT_AGE_SECONDS).contains(&age)
        {
            let bound = if age < MIN_EVENT_AGE_SECONDS {
                format!("greater than or equal to {MIN_EVENT_AGE_SECONDS}")
            } else {
                format!("less than or equal to {MAX_EVENT_AGE_SECONDS}")
            };
            violations.push(crate::error::constraint_violation(
                age,
                "maximumEventAgeInSeconds",
                &format!("Member must have value {bound}"),
            ));
        }
        if !violations.is_empty() {
            return Err(ServiceError::Validation(violations));
        }
        let destinations = match input.destination_config {
            Some(config) => {
                let arns = [&config.on_success, &config.on_failure]
                    .into_iter()
                    .flatten()
                    .filter_map(|d| d.destination.clone())
                    .filter(|arn| !arn.is_empty());
                for arn in arns {
                    self.check_destination(function, &arn).await?;
                }
                let keep = |new: Option<Destination>, old: Option<&Destination>| match new {
                    Some(d) if d.destination.as_deref().is_some_and(|a| !a.is_empty()) => Some(d),
                    Some(_) => None,
                    None => old.cloned(),
                };
                let old = current.map(|c| &c.destinations);
                DestinationConfig {
                    on_success: keep(config.on_success, old.and_then(|o| o.on_success.as_ref())),
                    on_failure: keep(config.on_failure, old.and_then(|o| o.on_failure.as_ref())),
                }
            }
            None => current.map(|c| c.destinations.clone()).unwrap_or_default(),
        };
        let to_u32 = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
        Ok(EventInvokeConfig {
            maximum_retry_attempts: to_u32(input.maximum_retry_attempts)
                .or_else(|| current.and_then(|c| c.maximum_retry_attempts)),
            maximum_event_age_in_seconds: to_u32(input.maximum_event_age_in_seconds)
                .or_else(|| current.and_then(|c| c.maximum_event_age_in_seconds)),
            destinations,
            last_modified: chrono::Utc::now().timestamp_millis(),
        })
    }

    /// A destination must be another function that exists.
    async fn check_destination(&self, function: &str, arn: &str) -> Result<(), ServiceError> {
        let DestinationTarget::Function {
            name, qualifier, ..
        } = DestinationTarget::parse(arn, self.functions.account())?;
        if name == function {
            return Err(ServiceError::InvalidParameterValue(
                "You can't specify the function as a destination for itself.".to_owned(),
            ));
        }
        match self
            .functions
            .resolve_for_invoke(&name, qualifier.as_deref())
            .await
        {
            Ok(_) => Ok(()),
            Err(ServiceError::ResourceNotFound(_)) => Err(ServiceError::InvalidParameterValue(
                format!("The destination ARN {arn} is invalid."),
            )),
            Err(err) => Err(err),
        }
    }

    fn shape(
        &self,
        function: &str,
        qualifier: &str,
        config: &EventInvokeConfig,
    ) -> FunctionEventInvokeConfig {
        FunctionEventInvokeConfig {
            last_modified: config.last_modified as f64 / 1000.0,
            function_arn: self
                .functions
                .account()
                .qualified_function_arn(function, qualifier),
            maximum_retry_attempts: config.maximum_retry_attempts,
            maximum_event_age_in_seconds: config.maximum_event_age_in_seconds,
            destination_config: DestinationConfigShape {
                on_success: config.destinations.on_success.clone().unwrap_or_default(),
                on_failure: config.destinations.on_failure.clone().unwrap_or_default(),
            },
        }
    }

    fn missing(&self, function: &str, qualifier: &str) -> ServiceError {
        ServiceError::ResourceNotFound(format!(
            "The function {} doesn't have an EventInvokeConfig",
            self.functions
                .account()
                .qualified_function_arn(function, qualifier)
        ))
    }
}
