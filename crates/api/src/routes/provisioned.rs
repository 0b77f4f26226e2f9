//! The provisioned concurrency operations: `/2019-09-30/functions/{name}/provisioned-concurrency`
//! (`?List=ALL` lists).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kappa_core::control::PutProvisionedConcurrencyInput;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CONTROL_REQUEST_BYTES};

pub async fn put(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let input: PutProvisionedConcurrencyInput = request::json_body(
        body,
        MAX_CONTROL_REQUEST_BYTES,
        "PutProvisionedConcurrencyConfig",
    )
    .await?;
    let qualifier = request::query_value(query.as_deref(), "Qualifier");
    let config = state
        .functions
        .put_provisioned_concurrency(&name, qualifier.as_deref(), input)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(config)).into_response())
}

pub async fn get_or_list(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let query = query.as_deref();
    if request::query_value(query, "List").as_deref() == Some("ALL") {
        let marker = request::query_value(query, "Marker");
        let max_items = request::query_integer(query, "MaxItems", "maxItems")?;
        let list = state
            .functions
            .list_provisioned_concurrency(&name, marker.as_deref(), max_items)
            .await?;
        return Ok(Json(list).into_response());
    }
    let qualifier = request::query_value(query, "Qualifier");
    let config = state
        .functions
        .get_provisioned_concurrency(&name, qualifier.as_deref())
        .await?;
    Ok(Json(config).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let qualifier = request::query_value(query.as_deref(), "Qualifier");
    state
        .functions
        .delete_provisioned_concurrency(&name, qualifier.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
