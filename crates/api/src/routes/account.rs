//! GetAccountSettings.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::aws_error::ApiError;

pub async fn get_account_settings(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.functions.account_settings().await?).into_response())
}
