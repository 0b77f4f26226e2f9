//! CreateFunction, GetFunction, GetFunctionConfiguration, ListFunctions, UpdateFunctionCode,
//! UpdateFunctionConfiguration, DeleteFunction.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kappa_core::control::requests::{
    CreateFunctionInput, UpdateFunctionCodeInput, UpdateFunctionConfigurationInput,
};
use serde_json::json;

use crate::AppState;
use crate::aws_error::ApiError;
use crate::request::{self, MAX_CODE_REQUEST_BYTES, MAX_CONTROL_REQUEST_BYTES};
use crate::routes::code::code_location;

pub async fn create_function(
    State(state): State<AppState>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: CreateFunctionInput =
        request::json_body(body, MAX_CODE_REQUEST_BYTES, "CreateFunction").await?;
    let configuration = state.functions.create_function(input).await?;
    Ok((StatusCode::CREATED, Json(configuration)).into_response())
}

pub async fn get_function(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let qualifier = request::query_value(query.as_deref(), "Qualifier");
    let function = state
        .functions
        .get_function(&name, qualifier.as_deref())
        .await?;
    let mut body = json!({
        "Configuration": function.configuration,
        "Code": {
            "RepositoryType": "S3",
            "Location": code_location(&state, &headers, &function.code_sha256_hex),
        },
    });
    if !function.tags.is_empty() {
        body["Tags"] = json!(function.tags);
    }
    if let Some(reserved) = state
        .functions
        .concurrency()
        .reserved(&function.configuration.function_name)
    {
        body["Concurrency"] = json!({ "ReservedConcurrentExecutions": reserved });
    }
    Ok(Json(body).into_response())
}

pub async fn get_function_configuration(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let qualifier = request::query_value(query.as_deref(), "Qualifier");
    let configuration = state
        .functions
        .get_function_configuration(&name, qualifier.as_deref())
        .await?;
    Ok(Json(configuration).into_response())
}

pub async fn list_functions(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let marker = request::query_value(query.as_deref(), "Marker");
    let max_items = request::query_integer(query.as_deref(), "MaxItems", "maxItems")?;
    let page = state
        .functions
        .list_functions(marker.as_deref(), max_items)
        .await?;
    let mut body = json!({ "Functions": page.functions });
    if let Some(next) = page.next_marker {
        body["NextMarker"] = json!(next);
    }
    Ok(Json(body).into_response())
}

pub async fn update_function_code(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: UpdateFunctionCodeInput =
        request::json_body(body, MAX_CODE_REQUEST_BYTES, "UpdateFunctionCode").await?;
    let configuration = state.functions.update_function_code(&name, input).await?;
    Ok(Json(configuration).into_response())
}

pub async fn update_function_configuration(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let input: UpdateFunctionConfigurationInput = request::json_body(
        body,
        MAX_CONTROL_REQUEST_BYTES,
        "UpdateFunctionConfiguration",
    )
    .await?;
    let configuration = state
        .functions
        .update_function_configuration(&name, input)
        .await?;
    Ok(Json(configuration).into_response())
}

pub async fn delete_function(
    State(state): State<AppState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let qualifier = request::query_value(query.as_deref(), "Qualifier");
    state
        .functions
        .delete_function(&name, qualifier.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
