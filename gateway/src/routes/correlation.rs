//! `GET /correlation/{message_id}[?depth=all]`.

use std::collections::HashMap;
use std::sync::Arc;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::ApiError;
use crate::store::Node;
use crate::time::now_ms;
use crate::AppState;

/// Ancestors and descendants are followed at most this far (a cycle cannot loop forever).
const MAX_DEPTH: usize = 64;

pub(crate) async fn chain(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(message_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    state.auth.identify(&headers, peer)?;
    let id = Uuid::parse_str(&message_id)
        .map_err(|_| ApiError::BadRequest(format!("message id {message_id:?} is not a UUID")))?;
    let (now, ttl) = (now_ms(), state.config.correlation_ttl.as_millis() as u64);
    let unavailable = |e: crate::store::StoreError| ApiError::Unavailable(e.to_string());
    let node = |id: Uuid| state.store.node(id, now, ttl).map_err(unavailable);
    let Some(me) = node(id)? else {
        return Err(ApiError::NotFound(format!(
            "no event {id} in the correlation store"
        )));
    };
    let mut depth = 0;
    let mut root = me.clone();
    while let Some(parent) = root.parent_id {
        match node(parent)? {
            Some(p) if depth < MAX_DEPTH => {
                root = p;
                depth += 1;
            }
            // The parent was never published here (or expired): count it, stop there.
            _ => {
                depth += 1;
                break;
            }
        }
    }
    let root_id = if root.message_id == me.message_id {
        me.parent_id.unwrap_or(me.message_id)
    } else {
        root.parent_id.unwrap_or(root.message_id)
    };
    let children = state.store.children(id).map_err(unavailable)?;
    let mut body = json!({
        "message_id": me.message_id,
        "event_type": me.event_type,
        "timestamp": me.timestamp,
        "source": me.source,
        "parent_id": me.parent_id,
        "children": children,
        "depth": depth,
        "root_id": root_id,
        "metadata": {},
    });
    if query.get("depth").map(String::as_str) == Some("all") {
        body["tree"] = tree(&state, &root, now, ttl, 0)?;
    }
    Ok(Json(body))
}

fn tree(
    state: &AppState,
    node: &Node,
    now: u64,
    ttl: u64,
    level: usize,
) -> Result<Value, ApiError> {
    let mut children = Vec::new();
    if level < MAX_DEPTH {
        for child in state
            .store
            .children(node.message_id)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?
        {
            if let Some(c) = state
                .store
                .node(child, now, ttl)
                .map_err(|e| ApiError::Unavailable(e.to_string()))?
            {
                children.push(tree(state, &c, now, ttl, level + 1)?);
            }
        }
    }
    Ok(
        json!({"message_id": node.message_id, "event_type": node.event_type, "timestamp": node.timestamp, "children": children}),
    )
}
