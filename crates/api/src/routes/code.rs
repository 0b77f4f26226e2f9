//! Code downloads: the `Code.Location` URL GetFunction returns points here.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kappa_core::ServiceError;

use crate::AppState;
use crate::aws_error::ApiError;

/// Path prefix of code downloads; outside the AWS API's dated paths so it never collides.
pub const CODE_PATH: &str = "/kappa/code";

/// The download URL of a code package, on the host the caller used to reach us.
pub fn code_location(state: &AppState, headers: &HeaderMap, sha256_hex: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map_or_else(|| state.public_address.clone(), str::to_owned);
    format!("http://{host}{CODE_PATH}/{sha256_hex}")
}

pub async fn download_code(
    State(state): State<AppState>,
    Path(sha256_hex): Path<String>,
) -> Result<Response, ApiError> {
    let Some(bytes) = state.functions.read_code(&sha256_hex).await? else {
        return Err(ApiError::Service(ServiceError::ResourceNotFound(format!(
            "Code package not found: {sha256_hex}"
        ))));
    };
    let mut response = (StatusCode::OK, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    Ok(response)
}
