//! PublishVersion, ListVersionsByFunction and the alias operations.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_core::control::{CreateAliasInput, PublishVersionInput, UpdateAliasInput};

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

pub async fn publish_version(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: PublishVersionInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "PublishVersion").await?;
    let configuration = state.functions.publish_version(&name, input).await?;
    Ok((StatusCode::CREATED, Json(configuration)).into_response())
}

pub async fn list_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let marker = request::query_value(query.as_deref(), "Marker");
    let max_items = request::query_integer(query.as_deref(), "MaxItems", "maxItems")?;
    let page = state
        .functions
        .list_versions(&name, marker.as_deref(), max_items)
        .await?;
    Ok(Json(page).into_response())
}

pub async fn create_alias(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: CreateAliasInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "CreateAlias").await?;
    let alias = state.functions.create_alias(&name, input).await?;
    Ok((StatusCode::CREATED, Json(alias)).into_response())
}

pub async fn list_aliases(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let version = request::query_value(query.as_deref(), "FunctionVersion");
    let marker = request::query_value(query.as_deref(), "Marker");
    let max_items = request::query_integer(query.as_deref(), "MaxItems", "maxItems")?;
    let page = state
        .functions
        .list_aliases(&name, version.as_deref(), marker.as_deref(), max_items)
        .await?;
    Ok(Json(page).into_response())
}

pub async fn get_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let alias = state.functions.get_alias(&name, &alias).await?;
    Ok(Json(alias).into_response())
}

pub async fn update_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: UpdateAliasInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "UpdateAlias").await?;
    let alias = state.functions.update_alias(&name, &alias, input).await?;
    Ok(Json(alias).into_response())
}

pub async fn delete_alias(
    State(state): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.functions.delete_alias(&name, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
