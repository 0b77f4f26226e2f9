//! Put/Get/DeleteFunctionConcurrency.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_core::control::concurrency::PutFunctionConcurrencyInput;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: PutFunctionConcurrencyInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "PutFunctionConcurrency").await?;
    Ok(Json(state.concurrency.put(&name, input).await?).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(state.concurrency.get(&name).await?).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    state.concurrency.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
