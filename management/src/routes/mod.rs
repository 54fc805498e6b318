//! The management API's routes, with RabbitMQ 3.x's paths and methods.

pub mod access;
pub mod clients;
pub mod definitions;
pub mod objects;
pub mod overview;
pub mod policies;
pub mod tail;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::App;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use objects::Side;
use serde_json::Value;
use std::sync::Arc;

type Named = Path<(String, String)>;

/// 201 when a PUT created the object, 204 when it existed, as RabbitMQ answers.
pub fn created_or_updated(created: bool) -> axum::response::Response {
    use axum::response::IntoResponse;
    match created {
        true => axum::http::StatusCode::CREATED.into_response(),
        false => axum::http::StatusCode::NO_CONTENT.into_response(),
    }
}

/// A list of objects over every vhost the caller may see, or over the one vhost in the path
/// (404 if it does not exist, 401 if the caller may not see it), paged and narrowed.
pub fn per_vhost<T>(
    app: &App,
    caller: &Caller,
    vhost: Option<Path<String>>,
    items: &[T],
    vhost_of: impl Fn(&T) -> &str,
    render: impl Fn(&T) -> Value,
    q: &crate::listing::ListQuery,
) -> Result<Json<Value>, ApiError> {
    let only = vhost.map(|Path(v)| v);
    if let Some(v) = &only {
        app.known_vhost(v)?;
        caller.require_vhost(app, v)?;
    }
    let shown = items
        .iter()
        .filter(|x| {
            let v = vhost_of(x);
            only.as_deref().is_none_or(|o| o == v) && caller.sees(app, v)
        })
        .map(render)
        .collect();
    Ok(Json(crate::listing::list(shown, q)?))
}

async fn queue_bindings(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((vhost, name)): Named,
) -> Result<Json<Value>, ApiError> {
    objects::bindings_of(app, caller, vhost, name, Side::Queue).await
}

async fn source_bindings(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((vhost, name)): Named,
) -> Result<Json<Value>, ApiError> {
    objects::bindings_of(app, caller, vhost, name, Side::Source).await
}

async fn destination_bindings(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((vhost, name)): Named,
) -> Result<Json<Value>, ApiError> {
    objects::bindings_of(app, caller, vhost, name, Side::Destination).await
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

pub fn router(app: Arc<App>) -> Router {
    use access as a;
    use clients as c;
    use definitions as d;
    use objects as o;
    use overview as v;
    let api = Router::new()
        .route("/overview", get(v::overview))
        .route("/whoami", get(a::whoami))
        .route("/nodes", get(v::nodes))
        .route("/nodes/{name}", get(v::node))
        .route("/health/checks/alarms", get(v::alarms))
        .route("/health/checks/local-alarms", get(v::alarms))
        .route("/health/checks/virtual-hosts", get(v::ok))
        .route("/health/checks/node-is-quorum-critical", get(v::ok))
        .route("/health/checks/node-is-mirror-sync-critical", get(v::ok))
        .route("/health/checks/port-listener/{port}", get(v::port_listener))
        .route(
            "/health/checks/certificate-expiration/{within}/{unit}",
            get(v::certificate_expiration),
        )
        .route("/aliveness-test/{vhost}", get(v::aliveness))
        .route("/vhosts", get(a::vhosts))
        .route(
            "/vhosts/{vhost}",
            get(a::vhost).put(a::put_vhost).delete(a::delete_vhost),
        )
        .route("/vhosts/{vhost}/permissions", get(a::vhost_permissions))
        .route("/users", get(a::users))
        .route(
            "/users/{user}",
            get(a::user).put(a::put_user).delete(a::delete_user),
        )
        .route("/users/{user}/permissions", get(a::user_permissions))
        .route("/permissions", get(a::permissions))
        .route(
            "/permissions/{vhost}/{user}",
            get(a::permission)
                .put(a::put_permission)
                .delete(a::delete_permission),
        )
        .route("/exchanges", get(o::exchanges))
        .route("/exchanges/{vhost}", get(o::exchanges))
        .route(
            "/exchanges/{vhost}/{name}",
            get(o::exchange)
                .put(o::put_exchange)
                .delete(o::delete_exchange),
        )
        .route("/exchanges/{vhost}/{name}/publish", post(o::publish))
        .route(
            "/exchanges/{vhost}/{name}/bindings/source",
            get(source_bindings),
        )
        .route(
            "/exchanges/{vhost}/{name}/bindings/destination",
            get(destination_bindings),
        )
        .route("/queues", get(o::queues))
        .route("/queues/{vhost}", get(o::queues))
        .route(
            "/queues/{vhost}/{name}",
            get(o::queue).put(o::put_queue).delete(o::delete_queue),
        )
        .route(
            "/queues/{vhost}/{name}/contents",
            axum::routing::delete(o::purge_queue),
        )
        .route("/queues/{vhost}/{name}/get", post(o::get))
        .route("/queues/{vhost}/{name}/actions", post(o::queue_actions))
        .route("/queues/{vhost}/{name}/bindings", get(queue_bindings))
        .route("/bindings", get(o::bindings))
        .route("/bindings/{vhost}", get(o::bindings))
        .route(
            "/bindings/{vhost}/e/{source}/{kind}/{destination}",
            get(o::between).post(o::bind),
        )
        .route(
            "/bindings/{vhost}/e/{source}/{kind}/{destination}/{props}",
            get(o::binding).delete(o::unbind),
        )
        .route("/connections", get(c::connections))
        .route(
            "/connections/{name}",
            get(c::connection).delete(c::close_connection),
        )
        .route("/connections/{name}/channels", get(c::connection_channels))
        .route("/vhosts/{vhost}/connections", get(c::connections))
        .route("/channels", get(c::channels))
        .route("/vhosts/{vhost}/channels", get(c::channels))
        .route("/channels/{name}", get(c::channel))
        .route("/consumers", get(c::consumers))
        .route("/consumers/{vhost}", get(c::consumers))
        .route("/definitions", get(d::get_all).post(d::post_all))
        .route(
            "/definitions/{vhost}",
            get(d::get_vhost).post(d::post_vhost),
        )
        .route("/policies", get(policies::policies))
        .route("/policies/{vhost}", get(policies::policies))
        .route(
            "/policies/{vhost}/{name}",
            get(policies::policy)
                .put(policies::put_policy)
                .delete(policies::delete_policy),
        )
        .route("/operator-policies", get(policies::operator_policies))
        .route(
            "/operator-policies/{vhost}",
            get(policies::operator_policies),
        )
        .route(
            "/operator-policies/{vhost}/{name}",
            get(policies::operator_policy)
                .put(policies::put_operator_policy)
                .delete(policies::delete_operator_policy),
        )
        .route("/parameters", get(empty_list))
        .route("/extensions", get(empty_list_public))
        .route("/tail", get(tail::tail))
        .route(
            "/{*rest}",
            get(not_found)
                .put(not_found)
                .post(not_found)
                .delete(not_found),
        );
    Router::new()
        .nest("/api", api)
        .route("/metrics", get(crate::metrics::aggregated))
        .route("/metrics/per-object", get(crate::metrics::per_object))
        .route("/", get(crate::dashboard::index))
        .route("/dashboard/{asset}", get(crate::dashboard::asset))
        .layer(DefaultBodyLimit::max(crate::body::MAX_BODY))
        .layer(axum::middleware::from_fn(crate::body::in_time))
        .with_state(app)
}

/// Runtime parameters (federation, shovels) do not exist here: their list is empty.
async fn empty_list(_caller: Caller) -> Json<Value> {
    Json(Value::Array(Vec::new()))
}

/// `/api/extensions` (the management UI's plugins) needs no credentials.
async fn empty_list_public() -> Json<Value> {
    Json(Value::Array(Vec::new()))
}
