use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::AppState;
use bloodbank_broker::clock::{now_ms, rfc3339};

/// `healthy` when events can be published and tracked; `degraded` when a resource alarm blocks
/// publishing, the correlation store (Redis) is unreachable, or a configured contracts
/// directory is missing, empty or holds an edit that did not load; `unhealthy` when the (external)
/// broker cannot be reached. The spec's `rabbitmq` and `redis` fields are kept for its clients.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let (broker, detail) = state.sink.state().await;
    let redis = state.correlation.redis_state().await;
    let schemas = state.contracts.status();
    let status = match (broker, redis, &schemas.problem) {
        ("accepting", "disconnected", _) | ("blocked", _, _) | ("accepting", _, Some(_)) => {
            "degraded"
        }
        ("accepting", _, None) => "healthy",
        _ => "unhealthy",
    };
    Json(json!({
        "status": status,
        "broker": broker,
        "broker_detail": detail,
        "rabbitmq": if broker == "disconnected" { "disconnected" } else { "connected" },
        "correlation": state.correlation.name(),
        "redis": redis,
        "schemas": {
            "status": if schemas.problem.is_some() { "degraded" } else { "ok" },
            "source": schemas.source.to_string(),
            "event_types": schemas.event_types,
            "problem": schemas.problem,
        },
        "timestamp": rfc3339(now_ms()),
    }))
}
