//! TagResource, UntagResource, ListTags.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_core::control::requests::TagResourceInput;
use serde_json::json;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

pub async fn list_tags(
    State(state): State<AppState>,
    Path(resource): Path<String>,
) -> Result<Response, ApiError> {
    let tags = state.functions.list_tags(&resource).await?;
    Ok(Json(json!({ "Tags": tags })).into_response())
}

pub async fn tag_resource(
    State(state): State<AppState>,
    Path(resource): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: TagResourceInput =
        request::json_body(body, MAX_CONTROL_REQUEST_BYTES, "TagResource").await?;
    state.functions.tag_resource(&resource, input.tags).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn untag_resource(
    State(state): State<AppState>,
    Path(resource): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let keys = request::query_values(query.as_deref(), "tagKeys");
    state.functions.untag_resource(&resource, &keys).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
