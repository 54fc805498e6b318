use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;
use bloodbank_broker::core::clock::{now_ms, rfc3339};

/// `healthy` when events can be published and tracked; `degraded` when a resource alarm blocks
/// publishing or the correlation store (Redis) is unreachable; `unhealthy` when the (external)
/// broker cannot be reached. The spec's `rabbitmq` and `redis` fields are kept for its clients.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let (broker, detail) = state.sink.state().await;
    let redis = state.correlation.redis_state().await;
    let status = match (broker, redis) {
        ("accepting", "disconnected") | ("blocked", _) => "degraded",
        ("accepting", _) => "healthy",
        _ => "unhealthy",
    };
    Json(json!({
        "status": status,
        "broker": broker,
        "broker_detail": detail,
        "rabbitmq": if broker == "disconnected" { "disconnected" } else { "connected" },
        "correlation": state.correlation.name(),
        "redis": redis,
        "schemas": state.contracts.last_error().map_or("ok".to_string(), |e| format!("last edit refused: {e}")),
        "timestamp": rfc3339(now_ms()),
    }))
}
