//! Invoke: `POST /2015-03-31/functions/{name}/invocations`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kappa_core::ServiceError;
use kappa_core::invoke::{
    self, InvocationType, InvokeRequest, MAX_ASYNC_PAYLOAD, MAX_SYNC_PAYLOAD,
};

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request;

pub async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The body is read before any header is judged, so an early error never leaves unread bytes
    // on a keep-alive connection.
    let payload = request::read_body(body, MAX_SYNC_PAYLOAD, "InvokeFunction").await?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let invocation_type = InvocationType::parse(header("x-amz-invocation-type"))?;
    let tail_log = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(ServiceError::constraint(
                other,
                "logType",
                "Member must satisfy enum value set: [None, Tail]",
            )
            .into());
        }
    };
    let client_context = header("x-amz-client-context")
        .map(invoke::decode_client_context)
        .transpose()?;
    if invocation_type == InvocationType::Event && payload.len() > MAX_ASYNC_PAYLOAD {
        return Err(ServiceError::RequestEntityTooLarge(format!(
            "{} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD} bytes)",
            payload.len()
        ))
        .into());
    }
    let payload = invoke::check_payload(payload.to_vec())?;
    let response = state
        .invoker
        .invoke(InvokeRequest {
            function_name: name,
            qualifier: request::query_value(query.as_deref(), "Qualifier"),
            invocation_type,
            tail_log,
            client_context,
            payload,
            request_id: None,
        })
        .await?;
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut http = (status, response.payload).into_response();
    let headers = http.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(request_id) = HeaderValue::from_str(&response.request_id) {
        headers.insert(HeaderName::from_static("x-amzn-requestid"), request_id);
    }
    if let Ok(version) = HeaderValue::from_str(&response.executed_version) {
        headers.insert(HeaderName::from_static("x-amz-executed-version"), version);
    }
    if let Some(error) = response.function_error {
        headers.insert(
            HeaderName::from_static("x-amz-function-error"),
            HeaderValue::from_static(error),
        );
    }
    if let Some(log) = response
        .log_result
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        headers.insert(HeaderName::from_static("x-amz-log-result"), log);
    }
    Ok(http)
}

/// The deprecated `InvokeAsync`: `POST /2014-11-13/functions/{name}/invoke-async/` → 202
/// `{"Status": 202}`.
pub async fn invoke_async(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let payload = request::read_body(body, MAX_SYNC_PAYLOAD, "InvokeAsync").await?;
    if payload.len() > MAX_ASYNC_PAYLOAD {
        return Err(ServiceError::RequestEntityTooLarge(format!(
            "{} byte payload is too large for the Event invocation type (limit {MAX_ASYNC_PAYLOAD} bytes)",
            payload.len()
        ))
        .into());
    }
    let payload = invoke::check_payload(payload.to_vec())?;
    state
        .invoker
        .invoke(InvokeRequest {
            function_name: name,
            qualifier: None,
            invocation_type: InvocationType::Event,
            tail_log: false,
            client_context: None,
            payload,
            request_id: None,
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "Status": 202 })),
    )
        .into_response())
}
