//! Put/Get/DeleteFunctionConcurrency: reserved concurrency per function. Reservations are kept
//! in the store and mirrored in `ConcurrencyLimits`, which the invoke path reads.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::FunctionService;
use crate::concurrency::ReservedConcurrencyStore;
use crate::error::ServiceError;
use crate::names::{FunctionRef, RefUse};
use crate::store::StoreError;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PutFunctionConcurrencyInput {
    pub reserved_concurrent_executions: Option<i64>,
}

/// The `Concurrency` shape (also GetFunctionConcurrency's answer, empty without a reservation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Concurrency {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
}

#[derive(Clone)]
pub struct ConcurrencyService {
    functions: FunctionService,
    store: Arc<dyn ReservedConcurrencyStore>,
}

impl std::fmt::Debug for ConcurrencyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConcurrencyService")
    }
}

impl ConcurrencyService {
    pub fn new(functions: FunctionService, store: Arc<dyn ReservedConcurrencyStore>) -> Self {
        Self { functions, store }
    }

    /// Load the stored reservations into memory; run at start, before serving.
    pub async fn load(&self) -> Result<usize, ServiceError> {
        let reservations = self
            .store
            .list_reserved()
            .await
            .map_err(ServiceError::internal)?;
        let limits = self.functions.concurrency();
        for (function, reserved) in &reservations {
            limits.set(function, Some(*reserved));
        }
        Ok(reservations.len())
    }

    pub async fn put(
        &self,
        name: &str,
        input: PutFunctionConcurrencyInput,
    ) -> Result<Concurrency, ServiceError> {
        let member = "reservedConcurrentExecutions";
        let requested = match input.reserved_concurrent_executions {
            None => {
                return Err(ServiceError::constraint(
                    "null",
                    member,
                    "Member must not be null",
                ));
            }
            Some(n) if n < 0 => {
                return Err(ServiceError::constraint(
                    n,
                    member,
                    "Member must have value greater than or equal to 0",
                ));
            }
            Some(n) => n,
        };
        let function = self.existing_function(name).await?;
        let limits = self.functions.concurrency();
        let _changes = limits.lock_changes().await;
        let minimum = limits.min_unreserved();
        let reserved = u32::try_from(requested)
            .ok()
            .filter(|&n| limits.unreserved_if(&function, n) >= i64::from(minimum))
            .ok_or_else(|| {
                ServiceError::InvalidParameterValue(format!(
                    "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [{minimum}]."
                ))
            })?;
        match self.store.put_reserved(&function, reserved).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(self.not_found(&function)),
            Err(err) => return Err(ServiceError::internal(err)),
        }
        limits.set(&function, Some(reserved));
        tracing::info!(%function, reserved, "reserved concurrency set");
        Ok(Concurrency {
            reserved_concurrent_executions: Some(reserved),
        })
    }

    pub async fn get(&self, name: &str) -> Result<Concurrency, ServiceError> {
        let function = self.existing_function(name).await?;
        Ok(Concurrency {
            reserved_concurrent_executions: self.functions.concurrency().reserved(&function),
        })
    }

    pub async fn delete(&self, name: &str) -> Result<(), ServiceError> {
        let function = self.existing_function(name).await?;
        let limits = self.functions.concurrency();
        let _changes = limits.lock_changes().await;
        self.store
            .delete_reserved(&function)
            .await
            .map_err(ServiceError::internal)?;
        limits.set(&function, None);
        Ok(())
    }

    /// The name of the function a request names; it must exist. Reservations apply to the
    /// function as a whole, so a qualifier is refused.
    async fn existing_function(&self, name: &str) -> Result<String, ServiceError> {
        let reference = FunctionRef::parse(name, self.functions.account(), RefUse::Read)?;
        if reference.qualifier.is_some() {
            return Err(ServiceError::InvalidParameterValue(
                "Reserved concurrency applies to the whole function: use the unqualified function name or ARN."
                    .to_owned(),
            ));
        }
        let configuration = self
            .functions
            .get_function_configuration(&reference.name, None)
            .await?;
        Ok(configuration.function_name)
    }

    fn not_found(&self, function: &str) -> ServiceError {
        ServiceError::ResourceNotFound(format!(
            "Function not found: {}",
            self.functions.account().function_arn(function)
        ))
    }
}
