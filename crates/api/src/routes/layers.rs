//! PublishLayerVersion, GetLayerVersion, GetLayerVersionByArn, ListLayers, ListLayerVersions,
//! DeleteLayerVersion, and the layer version permissions.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kappa_core::ServiceError;
use kappa_core::control::layer_requests::{
    AddLayerVersionPermissionInput, LayerListQuery, PublishLayerVersionInput,
};
use kappa_core::layer::LayerVersionRecord;
use serde_json::json;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CODE_REQUEST_BYTES, MAX_CONTROL_REQUEST_BYTES};
use crate::routes::code::code_location;

fn version_number(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>().map_err(|_| {
        ApiError::Service(ServiceError::constraint(
            text,
            "versionNumber",
            "Member must be a number",
        ))
    })
}

fn list_query(query: Option<&str>) -> Result<LayerListQuery, ApiError> {
    Ok(LayerListQuery {
        compatible_runtime: request::query_value(query, "CompatibleRuntime"),
        compatible_architecture: request::query_value(query, "CompatibleArchitecture"),
        marker: request::query_value(query, "Marker"),
        max_items: request::query_integer(query, "MaxItems", "maxItems")?,
    })
}

fn version_body(
    state: &AppState,
    headers: &HeaderMap,
    record: &LayerVersionRecord,
) -> Json<serde_json::Value> {
    let location = code_location(state, headers, &record.code.sha256_hex);
    Json(json!(record.shape(state.functions.account(), location)))
}

pub async fn publish_layer_version(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let input: PublishLayerVersionInput =
        request::json_body(body, MAX_CODE_REQUEST_BYTES, "PublishLayerVersion").await?;
    let record = state.functions.publish_layer_version(&name, input).await?;
    Ok((StatusCode::CREATED, version_body(&state, &headers, &record)).into_response())
}

pub async fn get_layer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let record = state
        .functions
        .get_layer_version(&name, version_number(&version)?)
        .await?;
    Ok(version_body(&state, &headers, &record).into_response())
}

pub async fn delete_layer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .functions
        .delete_layer_version(&name, version_number(&version)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /2018-10-31/layers`: ListLayers, or GetLayerVersionByArn with `find=LayerVersion`.
pub async fn list_layers(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    if request::query_value(query, "find").as_deref() == Some("LayerVersion") {
        let arn = request::query_value(query, "Arn");
        let record = state
            .functions
            .get_layer_version_by_arn(arn.as_deref())
            .await?;
        return Ok(version_body(&state, &headers, &record).into_response());
    }
    let page = state.functions.list_layers(list_query(query)?).await?;
    let mut body = json!({ "Layers": page.layers });
    if let Some(next) = page.next_marker {
        body["NextMarker"] = json!(next);
    }
    Ok(Json(body).into_response())
}

pub async fn list_layer_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = state
        .functions
        .list_layer_versions(&name, list_query(query.as_deref())?)
        .await?;
    let mut body = json!({ "LayerVersions": page.versions });
    if let Some(next) = page.next_marker {
        body["NextMarker"] = json!(next);
    }
    Ok(Json(body).into_response())
}

pub async fn add_layer_version_permission(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let input: AddLayerVersionPermissionInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "AddLayerVersionPermission").await?;
    let revision = request::query_value(query.as_deref(), "RevisionId");
    let added = state
        .functions
        .add_layer_version_permission(&name, version_number(&version)?, revision.as_deref(), input)
        .await?;
    let body = json!({ "Statement": added.statement, "RevisionId": added.revision_id });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn get_layer_version_policy(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let policy = state
        .functions
        .get_layer_version_policy(&name, version_number(&version)?)
        .await?;
    Ok(Json(json!({ "Policy": policy.policy, "RevisionId": policy.revision_id })).into_response())
}

pub async fn remove_layer_version_permission(
    State(state): State<AppState>,
    Path((name, version, statement_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let revision = request::query_value(query.as_deref(), "RevisionId");
    state
        .functions
        .remove_layer_version_permission(
            &name,
            version_number(&version)?,
            &statement_id,
            revision.as_deref(),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
