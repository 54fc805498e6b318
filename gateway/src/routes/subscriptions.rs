//! `/subscriptions`: webhook subscriptions of the calling API key (or anonymous caller).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::publish::read_json;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

pub(crate) async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let request = read_json(&headers, body, state.config.body_bounds(), false).await?;
    let created = state.webhooks.create(&caller.source, &request).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn list(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    Json(state.webhooks.list(&caller.source)).into_response()
}

pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    state.webhooks.delete(&caller.source, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
