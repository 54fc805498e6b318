//! The routes; every path is also served under `/v1`.

mod correlation;
mod health;
mod publish;
mod schemas;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::AppState;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/events", post(publish::cloud))
        .route("/events/calendar", post(publish::calendar))
        .route("/publish", post(publish::legacy))
        .route("/events/{event_type}", post(publish::event))
        .route("/health", get(health::health))
        .route("/correlation/{message_id}", get(correlation::chain))
        .route("/schemas", get(schemas::catalog))
        .route("/schemas/{event_type}", get(schemas::versions));
    Router::new()
        .merge(v1.clone())
        .nest("/v1", v1)
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> crate::ApiError {
    crate::ApiError::NotFound(format!("no route for {}", uri.path()))
}
