//! `GET /v1/schemas` (the catalog) and `GET /v1/schemas/{event_type}` (every version).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

pub(crate) async fn catalog(
    State(state): State<Arc<AppState>>,
    _: Caller,
) -> Result<Json<Value>, ApiError> {
    let contracts = state.contracts.current();
    bloodbank_registry::catalog::json(&contracts.set)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub(crate) async fn versions(
    State(state): State<Arc<AppState>>,
    _: Caller,
    Path(event_type): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let contracts = state.contracts.current();
    let versions = contracts.versions(&event_type);
    if versions.is_empty() {
        return Err(ApiError::UnknownEventType(event_type));
    }
    let list: Vec<Value> = versions
        .iter()
        .map(|c| json!({"version": c.name.version, "file": c.rel, "schema": c.schema}))
        .collect();
    Ok(Json(json!({"event_type": event_type, "versions": list})))
}
