//! Bloodbank's management side, compatible with RabbitMQ's management plugin: the HTTP API
//! (`/api/...`, HTTP basic auth against the broker's users and tags), Prometheus metrics
//! (`/metrics`, no credentials, rabbitmq_prometheus's names) and the dashboard (`/`).
//!
//! - `routes/`: the API's handlers, one file per group of resources
//! - `render`: the broker's objects in RabbitMQ's JSON shapes
//! - `listing`: columns, filtering, sorting and pagination of lists
//! - `body`: lenient request bodies (booleans and numbers as strings)
//! - `rates`: sampling counters into rates
//! - `auth`, `error`, `metrics`, `dashboard`, `system`

#![deny(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod body;
mod dashboard;
mod error;
mod listing;
mod metrics;
mod rates;
mod render;
mod routes;
mod system;

use axum::extract::Request;
use bloodbank_broker::tls::{self, Tls};
use bloodbank_broker::{Admin, BindError, Listen};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tower::util::MapRequestLayer;
use tower::Layer;

pub use error::ApiError;
/// A URL path segment as the API wants it (`/` is `%2F`), for clients of the API.
pub use render::encode as path_segment;

/// What every handler shares.
pub struct App {
    admin: Admin,
    rates: rates::Rates,
    started: Instant,
    /// The broker's listeners, as `/api/overview` reports them: (protocol, address).
    listeners: Vec<(String, SocketAddr)>,
    management_port: u16,
    /// The TLS certificate of the node's listeners, for the expiry health check.
    tls: Option<Tls>,
}

impl App {
    /// 404 unless the vhost exists.
    fn known_vhost(&self, vhost: &str) -> Result<(), ApiError> {
        match self.admin.vhosts().iter().any(|v| v == vhost) {
            true => Ok(()),
            false => Err(ApiError::NotFound),
        }
    }
}

/// A running management listener.
pub struct Management {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    sampler: tokio::task::JoinHandle<()>,
    served: tls::Served,
}

impl Management {
    /// Binds `listen` (port 0 picks one), and `https` with `tls`'s certificate, and serves the
    /// API, metrics and dashboard for `admin`'s broker. `listeners` are the broker's other
    /// listeners, for `/api/overview`.
    pub async fn start(
        listen: &Listen,
        https: Option<&Listen>,
        tls: Option<Tls>,
        admin: Admin,
        mut listeners: Vec<(String, SocketAddr)>,
    ) -> Result<Management, BindError> {
        let bound = listen.bind().await?;
        let addrs = listen.local_addrs(&bound)?;
        let (tls_bound, tls_addrs) = tls::bind(https, tls.as_ref()).await?;
        listeners.extend(addrs.iter().map(|a| ("http".to_string(), *a)));
        listeners.extend(tls_addrs.iter().map(|a| ("https".to_string(), *a)));
        let (rates, sampler) = rates::Rates::start(admin.clone());
        let app = Arc::new(App {
            admin,
            rates,
            started: Instant::now(),
            listeners,
            management_port: addrs.first().map_or(0, |a| a.port()),
            tls: tls.clone(),
        });
        // Clients write `/api/connections/` as often as `/api/connections`; RabbitMQ serves both.
        let app = MapRequestLayer::new(without_trailing_slash).layer(routes::router(app));
        let served = tls::spawn_app(bound, tls_bound, tls, app, "management listener");
        Ok(Management {
            addrs,
            tls_addrs,
            sampler,
            served,
        })
    }

    /// Every HTTPS address listened on (none without TLS).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub async fn stop(self) {
        self.sampler.abort();
        self.served.stop().await;
    }
}

/// The request with its path's trailing slash removed (`/api/queues/` is `/api/queues`).
fn without_trailing_slash(mut request: Request) -> Request {
    let uri = request.uri();
    let path = uri.path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let rebuilt = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(new) = rebuilt.parse() {
            *request.uri_mut() = new;
        }
    }
    request
}
