//! Errors the control plane reports to callers, named after the AWS exception they become.
//!
//! The HTTP front turns each variant into the AWS wire format (status code, `X-Amzn-ErrorType`,
//! JSON body); nothing in the core knows about HTTP.

use thiserror::Error;

/// A failed control-plane operation, in the vocabulary of the Lambda API.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// 400 `ValidationException`: one or more members break their modelled constraints.
    #[error("{}", validation_message(.0))]
    Validation(Vec<String>),
    /// 400 `InvalidParameterValueException`.
    #[error("{0}")]
    InvalidParameterValue(String),
    /// 400 `InvalidRequestContentException`: the body is not the JSON the operation takes.
    #[error("{0}")]
    InvalidRequestContent(String),
    /// 400 `CodeStorageExceededException`: the account's code storage quota is full.
    #[error("{0}")]
    CodeStorageExceeded(String),
    /// 404 `ResourceNotFoundException`.
    #[error("{0}")]
    ResourceNotFound(String),
    /// 404 `ProvisionedConcurrencyConfigNotFoundException`.
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    /// 409 `ResourceConflictException`.
    #[error("{0}")]
    ResourceConflict(String),
    /// 412 `PreconditionFailedException`: the caller's `RevisionId` is stale.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413 `RequestEntityTooLargeException`.
    #[error("{0}")]
    RequestEntityTooLarge(String),
    /// 429 `TooManyRequestsException` with its `Reason`.
    #[error("{message}")]
    TooManyRequests {
        reason: &'static str,
        message: String,
    },
    /// 500 `ServiceException`: a fault of ours; the cause is logged, never shown.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl ServiceError {
    /// A single constraint violation, in AWS's `Value '…' at '…' failed to satisfy constraint` form.
    pub fn constraint(value: impl std::fmt::Display, member: &str, constraint: &str) -> Self {
        Self::Validation(vec![constraint_violation(value, member, constraint)])
    }

    pub fn internal(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(err))
    }
}

/// One line of a `ValidationException` message.
pub fn constraint_violation(
    value: impl std::fmt::Display,
    member: &str,
    constraint: &str,
) -> String {
    format!("Value '{value}' at '{member}' failed to satisfy constraint: {constraint}")
}

fn validation_message(violations: &[String]) -> String {
    let count = violations.len();
    let noun = if count == 1 { "error" } else { "errors" };
    format!(
        "{count} validation {noun} detected: {}",
        violations.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_count_their_violations() {
        let one = ServiceError::constraint(
            901,
            "timeout",
            "Member must have value less than or equal to 900",
        );
        assert_eq!(
            one.to_string(),
            "1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"
        );
        let two = ServiceError::Validation(vec!["a".into(), "b".into()]);
        assert_eq!(two.to_string(), "2 validation errors detected: a; b");
    }
}
