//! The routes, built from the table of operations the OpenAPI document is made of; every
//! path is also served under `/v1`.

mod correlation;
mod health;
mod publish;
mod schemas;
mod stream;
mod subscriptions;

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use serde_json::Value;

use crate::openapi::{self, Method, Op, RequestBody};
use crate::AppState;

const PUBLISH_ERRORS: &[u16] = &[400, 401, 403, 404, 413, 415, 503];

pub(crate) const API: &[Op] = &[
    Op {
        method: Method::Post,
        path: "/events/{event_type}",
        id: "publishEvent",
        tag: "Events",
        summary: "Publish an event (plain JSON payload, or a binary-mode CloudEvent)",
        body: RequestBody::Json("object"),
        ok: "EventEnvelope",
        errors: PUBLISH_ERRORS,
    },
    Op {
        method: Method::Post,
        path: "/events/calendar",
        id: "publishCalendarEvent",
        tag: "Events",
        summary: "Publish a calendar event as calendar.event.created",
        body: RequestBody::Json("CalendarEvent"),
        ok: "EventEnvelope",
        errors: PUBLISH_ERRORS,
    },
    Op {
        method: Method::Post,
        path: "/events",
        id: "publishCloudEvent",
        tag: "Events",
        summary: "Publish a CloudEvent (structured or binary mode)",
        body: RequestBody::CloudEvent,
        ok: "EventEnvelope",
        errors: PUBLISH_ERRORS,
    },
    Op {
        method: Method::Post,
        path: "/publish",
        id: "publishV02Envelope",
        tag: "Events",
        summary: "Publish the original service's v0.2 envelope unchanged",
        body: RequestBody::Json("V02Envelope"),
        ok: "V02Envelope",
        errors: PUBLISH_ERRORS,
    },
    Op {
        method: Method::Get,
        path: "/health",
        id: "getHealth",
        tag: "Health",
        summary: "Service health and dependency states",
        body: RequestBody::None,
        ok: "Health",
        errors: &[],
    },
    Op {
        method: Method::Get,
        path: "/correlation/{message_id}",
        id: "getCorrelationChain",
        tag: "Correlation",
        summary: "The correlation chain of an event (?depth=all: the whole tree)",
        body: RequestBody::None,
        ok: "CorrelationChain",
        errors: &[400, 401, 404, 503],
    },
    Op {
        method: Method::Get,
        path: "/schemas",
        id: "getSchemaCatalog",
        tag: "Schemas",
        summary: "The event catalog",
        body: RequestBody::None,
        ok: "Catalog",
        errors: &[401],
    },
    Op {
        method: Method::Get,
        path: "/schemas/{event_type}",
        id: "getSchemaVersions",
        tag: "Schemas",
        summary: "Every version of one event type's contract",
        body: RequestBody::None,
        ok: "SchemaVersions",
        errors: &[401, 404],
    },
    Op {
        method: Method::Get,
        path: "/ws/events",
        id: "streamEvents",
        tag: "Events",
        summary:
            "WebSocket stream of published events matching ?pattern= (a topic pattern, default #)",
        body: RequestBody::None,
        ok: "websocket",
        errors: &[400, 401, 503],
    },
    Op {
        method: Method::Post,
        path: "/subscriptions",
        id: "createSubscription",
        tag: "Webhooks",
        summary: "Subscribe a URL to the events matching a pattern: each is POSTed to it, signed, at least once, with retries and then a dead-letter queue",
        body: RequestBody::Json("SubscriptionRequest"),
        ok: "Subscription",
        errors: &[400, 401, 403, 413, 415, 503],
    },
    Op {
        method: Method::Get,
        path: "/subscriptions",
        id: "listSubscriptions",
        tag: "Webhooks",
        summary: "The caller's webhook subscriptions with their delivery counts",
        body: RequestBody::None,
        ok: "Subscriptions",
        errors: &[401],
    },
    Op {
        method: Method::Delete,
        path: "/subscriptions/{id}",
        id: "deleteSubscription",
        tag: "Webhooks",
        summary: "Stop a webhook subscription and delete its queues",
        body: RequestBody::None,
        ok: "none",
        errors: &[401, 404, 503],
    },
    Op {
        method: Method::Get,
        path: "/metrics",
        id: "getMetrics",
        tag: "Health",
        summary: "Prometheus metrics",
        body: RequestBody::None,
        ok: "text",
        errors: &[],
    },
    Op {
        method: Method::Get,
        path: "/openapi.json",
        id: "getOpenApi",
        tag: "Health",
        summary: "This document",
        body: RequestBody::None,
        ok: "OpenApi",
        errors: &[],
    },
];

fn handler(id: &str) -> MethodRouter<Arc<AppState>> {
    match id {
        "publishEvent" => post(publish::event),
        "publishCalendarEvent" => post(publish::calendar),
        "publishCloudEvent" => post(publish::cloud),
        "publishV02Envelope" => post(publish::legacy),
        "getHealth" => get(health::health),
        "getCorrelationChain" => get(correlation::chain),
        "getSchemaCatalog" => get(schemas::catalog),
        "getSchemaVersions" => get(schemas::versions),
        "getMetrics" => get(crate::metrics::render),
        "streamEvents" => get(stream::events),
        "getOpenApi" => get(openapi_json),
        "createSubscription" => post(subscriptions::create),
        "listSubscriptions" => get(subscriptions::list),
        "deleteSubscription" => delete(subscriptions::delete),
        other => unreachable!("operation {other} has no handler"),
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let mut v1 = Router::new();
    for op in API {
        v1 = v1.route(op.path, handler(op.id));
    }
    Router::new()
        .merge(v1.clone())
        .nest("/v1", v1)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

async fn openapi_json(State(_): State<Arc<AppState>>) -> Json<Value> {
    Json(openapi::document(API))
}

async fn not_found(uri: axum::http::Uri) -> crate::ApiError {
    crate::ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// A known path with the wrong method: 405 with the JSON error body and `Allow`.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> crate::ApiError {
    let path = uri.path();
    let mut allowed: Vec<&'static str> = API
        .iter()
        .filter(|op| matches(op.path, path.strip_prefix("/v1").unwrap_or(path)))
        .map(|op| op.method.name())
        .collect();
    allowed.sort();
    allowed.dedup();
    crate::ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_string(),
        allowed,
    }
}

/// Whether a route template (`/events/{event_type}`) matches a path.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}
