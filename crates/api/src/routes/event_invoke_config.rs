//! Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_core::control::event_invoke_config::EventInvokeConfigInput;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

fn qualifier(query: Option<&str>) -> Option<String> {
    request::query_value(query, "Qualifier")
}

pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    write(state, name, query, body, ConfigWrite::Replace).await
}

pub async fn update(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    write(state, name, query, body, ConfigWrite::Merge).await
}

/// Put replaces a config; Update merges into an existing one.
#[derive(Debug, Clone, Copy)]
enum ConfigWrite {
    Replace,
    Merge,
}

async fn write(
    state: AppState,
    name: String,
    query: Option<String>,
    body: Body,
    mode: ConfigWrite,
) -> Result<Response, ApiError> {
    let operation = match mode {
        ConfigWrite::Replace => "PutFunctionEventInvokeConfig",
        ConfigWrite::Merge => "UpdateFunctionEventInvokeConfig",
    };
    let input: EventInvokeConfigInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, operation).await?;
    let qualifier = qualifier(query.as_deref());
    let configs = &state.event_invoke_configs;
    let config = match mode {
        ConfigWrite::Replace => configs.put(&name, qualifier.as_deref(), input).await?,
        ConfigWrite::Merge => configs.update(&name, qualifier.as_deref(), input).await?,
    };
    Ok(Json(config).into_response())
}

pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let config = state
        .event_invoke_configs
        .get(&name, qualifier(query.as_deref()).as_deref())
        .await?;
    Ok(Json(config).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    state
        .event_invoke_configs
        .delete(&name, qualifier(query.as_deref()).as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let marker = request::query_value(query.as_deref(), "Marker");
    let max_items = request::query_integer(query.as_deref(), "MaxItems", "maxItems")?;
    let list = state
        .event_invoke_configs
        .list(&name, marker.as_deref(), max_items)
        .await?;
    Ok(Json(list).into_response())
}
