//! `GET /correlation/{message_id}[?depth=all]`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::store::{Node, StoreError};
use crate::AppState;
use bloodbank_broker::clock::now_ms;

/// Ancestors are followed, and trees built, at most this deep (a cycle cannot loop forever).
const MAX_DEPTH: usize = 64;
/// A `depth=all` tree holds at most this many events.
const MAX_TREE: usize = 10_000;

fn unavailable(e: StoreError) -> ApiError {
    ApiError::Unavailable(format!(
        "correlation tracking is unavailable: {}",
        crate::error::chain(&e)
    ))
}

pub(crate) async fn chain(
    State(state): State<Arc<AppState>>,
    _: Caller,
    Path(message_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = Uuid::parse_str(&message_id)
        .map_err(|_| ApiError::BadRequest(format!("message id {message_id:?} is not a UUID")))?;
    let Some(me) = node(&state, id).await? else {
        return Err(ApiError::NotFound(format!(
            "no event {id} in the correlation store"
        )));
    };
    // Walk up: depth counts ancestors, including one that was never seen here (or expired).
    let (mut depth, mut root_id, mut cursor) = (0usize, me.message_id, me.parent_id);
    let mut root = me.clone();
    while let Some(parent) = cursor {
        depth += 1;
        root_id = parent;
        match node(&state, parent).await? {
            Some(p) if depth < MAX_DEPTH => {
                cursor = p.parent_id;
                root = p;
            }
            _ => break,
        }
    }
    let children = state
        .correlation
        .children(&state.store, id)
        .await
        .map_err(unavailable)?;
    let mut body = json!({
        "message_id": me.message_id,
        "event_type": me.event_type,
        "timestamp": me.timestamp,
        "source": me.source,
        "parent_id": me.parent_id,
        "children": children,
        "depth": depth,
        "root_id": root_id,
        "metadata": {"store": state.correlation.name()},
    });
    if query.get("depth").map(String::as_str) == Some("all") {
        body["tree"] = tree(&state, root).await?;
    }
    Ok(Json(body))
}

async fn node(state: &AppState, id: Uuid) -> Result<Option<Node>, ApiError> {
    state
        .correlation
        .node(&state.store, id, now_ms(), state.config.correlation_ttl)
        .await
        .map_err(unavailable)
}

/// The whole tree under `root`, built breadth first without recursion.
async fn tree(state: &AppState, root: Node) -> Result<Value, ApiError> {
    let mut order: Vec<(Node, Option<usize>, usize)> = vec![(root, None, 0)];
    let mut next = 0;
    while next < order.len() && order.len() < MAX_TREE {
        let (id, level) = (order[next].0.message_id, order[next].2);
        if level < MAX_DEPTH {
            for child in state
                .correlation
                .children(&state.store, id)
                .await
                .map_err(unavailable)?
            {
                if let Some(c) = node(state, child).await? {
                    order.push((c, Some(next), level + 1));
                }
            }
        }
        next += 1;
    }
    let mut built: Vec<Value> = order
        .iter()
        .map(|(n, _, _)| json!({"message_id": n.message_id, "event_type": n.event_type, "timestamp": n.timestamp, "children": []}))
        .collect();
    for i in (1..order.len()).rev() {
        if let Some(parent) = order[i].1 {
            let child = built[i].take();
            if let Some(list) = built[parent]["children"].as_array_mut() {
                list.insert(0, child);
            }
        }
    }
    Ok(built.swap_remove(0))
}
