//! The one place errors become AWS-shaped responses.
//!
//! rest-json services report the exception name in `X-Amzn-ErrorType` and a JSON body with the
//! shape's members: `Type` (`User` or `Service`) and the message under the casing the shape's model
//! uses (`Message` for ResourceNotFoundException and ServiceException, `message` for the rest).
//! botocore and aws-sdk-rust read the header to pick the exception class.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kappa_core::ServiceError;

/// An error answered to an API caller.
#[derive(Debug)]
pub enum ApiError {
    /// An error of the control plane.
    Service(ServiceError),
    /// No operation matches the method and path.
    UnknownOperation { method: String, path: String },
    /// The request body is larger than the operation accepts.
    BodyTooLarge {
        limit: usize,
        operation: &'static str,
    },
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        Self::Service(err)
    }
}

/// How a message member is spelled in an exception shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageCase {
    Upper,
    Lower,
}

struct WireError {
    status: StatusCode,
    error_type: &'static str,
    fault: &'static str,
    case: MessageCase,
    message: String,
    /// `Reason` member and `Retry-After` header of throttles.
    reason: Option<&'static str>,
}

impl ApiError {
    fn wire(&self) -> WireError {
        use MessageCase::{Lower, Upper};
        let user = |status, error_type, case, message: String| WireError {
            status,
            error_type,
            fault: "User",
            case,
            message,
            reason: None,
        };
        match self {
            Self::UnknownOperation { method, path } => user(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                Lower,
                format!("No Lambda API operation matches {method} {path}"),
            ),
            Self::BodyTooLarge { limit, operation } => user(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLargeException",
                Lower,
                format!("Request must be smaller than {limit} bytes for the {operation} operation"),
            ),
            Self::Service(err) => {
                let message = err.to_string();
                match err {
                    ServiceError::Validation(_) => user(
                        StatusCode::BAD_REQUEST,
                        "ValidationException",
                        Lower,
                        message,
                    ),
                    ServiceError::InvalidParameterValue(_) => user(
                        StatusCode::BAD_REQUEST,
                        "InvalidParameterValueException",
                        Lower,
                        message,
                    ),
                    ServiceError::InvalidRequestContent(_) => user(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestContentException",
                        Lower,
                        message,
                    ),
                    ServiceError::CodeStorageExceeded(_) => user(
                        StatusCode::BAD_REQUEST,
                        "CodeStorageExceededException",
                        Lower,
                        message,
                    ),
                    ServiceError::ResourceNotFound(_) => user(
                        StatusCode::NOT_FOUND,
                        "ResourceNotFoundException",
                        Upper,
                        message,
                    ),
                    ServiceError::ProvisionedConcurrencyConfigNotFound(_) => user(
                        StatusCode::NOT_FOUND,
                        "ProvisionedConcurrencyConfigNotFoundException",
                        Lower,
                        message,
                    ),
                    ServiceError::ResourceConflict(_) => user(
                        StatusCode::CONFLICT,
                        "ResourceConflictException",
                        Lower,
                        message,
                    ),
                    ServiceError::PreconditionFailed(_) => user(
                        StatusCode::PRECONDITION_FAILED,
                        "PreconditionFailedException",
                        Lower,
                        message,
                    ),
                    ServiceError::RequestEntityTooLarge(_) => user(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "RequestEntityTooLargeException",
                        Lower,
                        message,
                    ),
                    ServiceError::TooManyRequests { reason, .. } => WireError {
                        reason: Some(*reason),
                        ..user(
                            StatusCode::TOO_MANY_REQUESTS,
                            "TooManyRequestsException",
                            Lower,
                            message,
                        )
                    },
                    ServiceError::Internal(_) => WireError {
                        status: StatusCode::INTERNAL_SERVER_ERROR,
                        error_type: "ServiceException",
                        fault: "Service",
                        case: Upper,
                        message: "The Lambda service encountered an internal error.".to_owned(),
                        reason: None,
                    },
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Service(ServiceError::Internal(cause)) = &self {
            tracing::error!(error = %error_chain(cause.as_ref()), "internal error");
        }
        let wire = self.wire();
        let message_key = match wire.case {
            MessageCase::Upper => "Message",
            MessageCase::Lower => "message",
        };
        let mut body = serde_json::json!({ "Type": wire.fault, message_key: wire.message });
        if let Some(reason) = wire.reason {
            body["Reason"] = serde_json::Value::from(reason);
        }
        let mut response = (wire.status, axum::Json(body)).into_response();
        if wire.reason.is_some() {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from_static("1"),
            );
        }
        response.headers_mut().insert(
            HeaderName::from_static("x-amzn-errortype"),
            HeaderValue::from_static(wire.error_type),
        );
        response
    }
}

/// An error and its sources, joined for the log.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn not_found_uses_upper_case_message() {
        let response = ApiError::from(ServiceError::ResourceNotFound(
            "Function not found: x".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ResourceNotFoundException"
        );
        let body = body_of(response).await;
        assert_eq!(
            body,
            serde_json::json!({"Type": "User", "Message": "Function not found: x"})
        );
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let cause = std::io::Error::other("disk on fire");
        let response = ApiError::from(ServiceError::internal(cause)).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(response).await;
        assert_eq!(body["Type"], "Service");
        assert!(!body["Message"].as_str().unwrap().contains("fire"));
    }

    #[tokio::test]
    async fn conflicts_use_lower_case_message() {
        let response = ApiError::from(ServiceError::ResourceConflict(
            "Function already exist: f".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            body_of(response).await["message"],
            "Function already exist: f"
        );
    }
}
