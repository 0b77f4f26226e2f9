//! The CloudWatch Logs subset (JSON 1.1 protocol: `POST /` with `X-Amz-Target`) on the same
//! endpoint, so `aws logs …` and boto3's `logs` client read function logs.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kappa_core::logs_service::LogsError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

const TARGET_PREFIX: &str = "Logs_20140328.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `POST /`: dispatch on `X-Amz-Target`.
pub async fn dispatch(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("Unknown target {target:?}"),
        );
    };
    let bytes = match request::read_body(body, MAX_CONTROL_REQUEST_BYTES, "Logs").await {
        Ok(bytes) => bytes,
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "InvalidParameterException",
                "request too large",
            );
        }
    };
    let logs = &state.logs;
    match operation {
        "DescribeLogGroups" => run(&bytes, |i| logs.describe_log_groups(i)).await,
        "DescribeLogStreams" => run(&bytes, |i| logs.describe_log_streams(i)).await,
        "GetLogEvents" => run(&bytes, |i| logs.get_log_events(i)).await,
        "FilterLogEvents" => run(&bytes, |i| logs.filter_log_events(i)).await,
        "CreateLogGroup" => run_empty(&bytes, |i| logs.create_log_group(i)).await,
        "DeleteLogGroup" => run_empty(&bytes, |i| logs.delete_log_group(i)).await,
        "PutRetentionPolicy" => run_empty(&bytes, |i| logs.put_retention_policy(i)).await,
        "DeleteRetentionPolicy" => run_empty(&bytes, |i| logs.delete_retention_policy(i)).await,
        other => json_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("Kappa does not serve the CloudWatch Logs operation {other}"),
        ),
    }
}

async fn run<I, O, F, Fut>(bytes: &[u8], operation: F) -> Response
where
    I: DeserializeOwned + Default,
    O: Serialize,
    F: FnOnce(I) -> Fut,
    Fut: std::future::Future<Output = Result<O, LogsError>>,
{
    let input = match request::parse_json::<I>(bytes) {
        Ok(input) => input,
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                "Could not parse the request body as JSON.",
            );
        }
    };
    match operation(input).await {
        Ok(output) => json_ok(&output),
        Err(err) => logs_error(err),
    }
}

async fn run_empty<I, F, Fut>(bytes: &[u8], operation: F) -> Response
where
    I: DeserializeOwned + Default,
    F: FnOnce(I) -> Fut,
    Fut: std::future::Future<Output = Result<(), LogsError>>,
{
    run(bytes, |input| async move {
        operation(input).await.map(|()| serde_json::json!({}))
    })
    .await
}

fn json_ok(body: &impl Serialize) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn logs_error(err: LogsError) -> Response {
    let message = err.to_string();
    match err {
        LogsError::ResourceNotFound(_) => json_error(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            &message,
        ),
        LogsError::ResourceAlreadyExists(_) => json_error(
            StatusCode::BAD_REQUEST,
            "ResourceAlreadyExistsException",
            &message,
        ),
        LogsError::InvalidParameter(_) => json_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            &message,
        ),
        LogsError::Internal(cause) => {
            tracing::error!(error = %cause, "logs operation failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceUnavailableException",
                "internal error",
            )
        }
    }
}

fn json_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "__type": error_type, "message": message });
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    response
}
