//! The invoke path's vocabulary: what a caller asks, what it gets back, and the trait the front
//! calls. Implemented by `kappa-runtime`.

use async_trait::async_trait;

use crate::error::ServiceError;

/// Largest asynchronous (`Event`) invoke payload (1 MB).
pub const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;
/// Largest synchronous invoke payload (6 MB).
pub const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
/// Largest response a function may return (6 MB + 100 bytes, as Lambda allows).
pub const MAX_RESPONSE_PAYLOAD: usize = 6 * 1024 * 1024 + 100;
/// Largest `X-Amz-Client-Context` header (base64 text).
pub const MAX_CLIENT_CONTEXT: usize = 3583;
/// Bytes of log returned in `X-Amz-Log-Result`.
pub const LOG_TAIL_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    pub fn parse(value: Option<&str>) -> Result<Self, ServiceError> {
        match value {
            None | Some("RequestResponse") => Ok(Self::RequestResponse),
            Some("Event") => Ok(Self::Event),
            Some("DryRun") => Ok(Self::DryRun),
            Some(other) => Err(ServiceError::constraint(
                other,
                "invocationType",
                "Member must satisfy enum value set: [Event, RequestResponse, DryRun]",
            )),
        }
    }
}

/// One Invoke call, parsed and checked by the front.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    /// `FunctionName` as the caller wrote it (name, partial or full ARN, optional qualifier).
    pub function_name: String,
    pub qualifier: Option<String>,
    pub invocation_type: InvocationType,
    pub tail_log: bool,
    /// The decoded client context JSON, passed to the function as is.
    pub client_context: Option<String>,
    pub payload: Vec<u8>,
    /// The request id to use; asynchronous retries reuse the first attempt's. `None`: a new one.
    pub request_id: Option<String>,
}

/// What a synchronous invoke answers.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    pub status: u16,
    pub payload: Vec<u8>,
    /// `Unhandled` when the function failed.
    pub function_error: Option<&'static str>,
    /// Base64 of the last 4 KB of the invocation's log, when asked for.
    pub log_result: Option<String>,
    pub executed_version: String,
    /// The invocation's request id (`x-amzn-RequestId`), as the function saw it.
    pub request_id: String,
}

/// Something that can report metrics in the Prometheus text format.
#[async_trait]
pub trait MetricsSource: Send + Sync + 'static {
    async fn render(&self) -> String;
}

/// Runs invocations. The front holds one behind an `Arc`.
#[async_trait]
pub trait Invoker: Send + Sync + 'static {
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeResponse, ServiceError>;
}

/// Check an invoke payload: empty means `{}`, anything else must be JSON.
pub fn check_payload(payload: Vec<u8>) -> Result<Vec<u8>, ServiceError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(b"{}".to_vec());
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        Ok(_) => Ok(payload),
        Err(err) => Err(ServiceError::InvalidRequestContent(format!(
            "Could not parse request body into json: Could not parse payload into json: {err}"
        ))),
    }
}

/// Decode `X-Amz-Client-Context`: base64 of a JSON object, at most 3,583 characters.
pub fn decode_client_context(header: &str) -> Result<String, ServiceError> {
    use base64::Engine as _;
    if header.len() > MAX_CLIENT_CONTEXT {
        return Err(ServiceError::InvalidParameterValue(format!(
            "Client context must be at most {MAX_CLIENT_CONTEXT} bytes of base64."
        )));
    }
    let invalid = || {
        ServiceError::InvalidRequestContent(
            "Client context must be a valid Base64-encoded JSON object.".to_owned(),
        )
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(header)
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(text),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_must_be_json_and_empty_means_empty_object() {
        assert_eq!(check_payload(Vec::new()).unwrap(), b"{}");
        assert_eq!(check_payload(b"[1,2]".to_vec()).unwrap(), b"[1,2]");
        assert!(matches!(
            check_payload(b"{nope".to_vec()),
            Err(ServiceError::InvalidRequestContent(_))
        ));
    }

    #[test]
    fn client_context_is_base64_json_within_its_limit() {
        assert_eq!(decode_client_context("eyJhIjoxfQ==").unwrap(), r#"{"a":1}"#);
        assert!(decode_client_context("!!!").is_err());
        assert!(decode_client_context("WzFd").is_err()); // [1] is not an object
        assert!(decode_client_context(&"A".repeat(MAX_CLIENT_CONTEXT + 1)).is_err());
    }
}
