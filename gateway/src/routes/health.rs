use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::time::{now_ms, rfc3339};
use crate::AppState;

/// `healthy` when the broker takes publishes; `degraded` when a resource alarm blocks them.
/// The spec's `rabbitmq` and `redis` fields are kept for its clients.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let blocked = state.publisher.blocked();
    let status = if blocked.is_some() {
        "degraded"
    } else {
        "healthy"
    };
    Json(json!({
        "status": status,
        "broker": if blocked.is_some() { "blocked" } else { "accepting" },
        "broker_detail": blocked,
        "rabbitmq": "connected",
        "correlation": "embedded",
        "redis": "not_configured",
        "schemas": state.contracts.last_error().map_or("ok".to_string(), |e| format!("last edit refused: {e}")),
        "timestamp": rfc3339(now_ms()),
    }))
}
