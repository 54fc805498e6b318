//! The HTTP gateway: producers that do not speak AMQP publish here. Each event is checked
//! against its contract (the registry), wrapped in an envelope, published to the broker in
//! the same process and answered once the broker has it on disk.
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

mod auth;
pub mod client;
mod cloudevents;
mod correlation;
mod envelope;
mod error;
mod idempotency;
mod metrics;
mod openapi;
mod publishing;
pub mod retry;
mod routes;
mod shared_keys;
mod sink;
mod store;
mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bloodbank_broker::tls::{self, Tls};
use bloodbank_broker::{BindError, Listen};
use bloodbank_registry::live::Live;

use idempotency::{IdempotencyKey, Same};

pub use auth::{ApiKey, Auth};
pub use envelope::{deterministic_id, Envelope};
pub use error::ApiError;
pub use sink::{amqp_subscription, connect, redact, External, Sink};

/// What `fuzz/` reaches of the request parsing. Not an API: it changes with it.
#[doc(hidden)]
pub mod fuzzing {
    /// A structured CloudEvent body (`application/cloudevents+json`), as `POST /events` reads it.
    pub fn cloud_event(body: &serde_json::Value) -> bool {
        crate::cloudevents::structured(body).is_ok()
    }
}

const DAY_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: Listen,
    /// HTTPS, with `tls`'s certificate; None: no HTTPS listener.
    pub tls_listen: Option<Listen>,
    pub tls: Option<Tls>,
    /// The exchange events are published to (routing key = event type).
    pub exchange: String,
    /// Largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// How long a request body may take to arrive (408 beyond).
    pub body_timeout: Duration,
    /// Publish event types that have no contract (with a warning header) instead of 404.
    pub allow_unregistered: bool,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// How long correlation links are kept.
    pub correlation_ttl: Duration,
    /// Where `gateway.redb` lives; `None` keeps it in memory.
    pub data_dir: Option<PathBuf>,
    pub auth: Auth,
    /// Keep correlation links in Redis (the original's keys) instead of the embedded store, and
    /// share idempotency keys there with the other gateway instances using it.
    pub redis_url: Option<String>,
    /// Webhook targets allowed (`host` or `host:port`); empty: any.
    pub webhook_allow: Vec<String>,
}

impl GatewayConfig {
    /// What a request body may be: (most bytes, most time).
    pub(crate) fn body_bounds(&self) -> (usize, Duration) {
        (self.body_limit, self.body_timeout)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: Listen::any(8000),
            tls_listen: None,
            tls: None,
            exchange: "events".into(),
            body_limit: 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            allow_unregistered: false,
            idempotency_window: Duration::from_millis(DAY_MS),
            correlation_ttl: Duration::from_millis(DAY_MS),
            data_dir: None,
            auth: Auth::default(),
            redis_url: None,
            webhook_allow: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("HTTP gateway listener")]
    Listen(#[from] BindError),
    #[error("HTTPS gateway listener")]
    TlsListen(#[source] BindError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// What every request handler shares.
pub(crate) struct AppState {
    config: GatewayConfig,
    auth: Auth,
    sink: Sink,
    contracts: Arc<Live>,
    store: store::Store,
    correlation: correlation::Correlation,
    /// Idempotency keys in Redis, shared with other instances (with `--redis-url`).
    shared_keys: Option<shared_keys::SharedKeys>,
    metrics: metrics::Metrics,
    webhooks: webhooks::Webhooks,
    /// Requests with the same idempotency key run one at a time.
    in_flight: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A running gateway.
pub struct Gateway {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    /// Taken by `stop` (the gateway is shared with speech, which publishes through it).
    served: std::sync::Mutex<Option<tls::Served>>,
    state: Arc<AppState>,
}

impl Gateway {
    /// Binds `config.listen` (port 0 picks one) and serves until dropped or stopped.
    pub async fn start(
        config: GatewayConfig,
        sink: Sink,
        contracts: Arc<Live>,
    ) -> Result<Gateway, GatewayError> {
        let correlation = match &config.redis_url {
            Some(url) => correlation::Correlation::redis(url)?,
            None => correlation::Correlation::Embedded,
        };
        let store = store::Store::open(
            config
                .data_dir
                .as_ref()
                .map(|d| d.join("gateway.redb"))
                .as_deref(),
        )?;
        let listeners = config.listen.bind().await?;
        let addrs = config.listen.local_addrs(&listeners)?;
        let (tls_listeners, tls_addrs) = tls::bind(config.tls_listen.as_ref(), config.tls.as_ref())
            .await
            .map_err(GatewayError::TlsListen)?;
        let tls = config.tls.clone();
        let auth = config.auth.clone();
        let broker = match &sink {
            Sink::Embedded(publisher) => retry::Broker::Embedded(publisher.clone()),
            Sink::External(external) => retry::Broker::External(external.url().to_string()),
        };
        let webhooks = webhooks::Webhooks::start(
            broker,
            config.exchange.clone(),
            store.clone(),
            config.webhook_allow.clone(),
        )
        .await?;
        let state = Arc::new(AppState {
            config,
            auth,
            sink,
            contracts,
            store,
            shared_keys: correlation
                .redis_connection()
                .map(shared_keys::SharedKeys::new),
            correlation,
            webhooks,
            metrics: Default::default(),
            in_flight: Default::default(),
        });
        tokio::spawn(prune(state.clone()));
        let app: Router = routes::router(state.clone());
        let served = tls::spawn_app(listeners, tls_listeners, tls, app, "gateway");
        Ok(Gateway {
            addrs,
            tls_addrs,
            served: std::sync::Mutex::new(Some(served)),
            state,
        })
    }

    /// Publishes an event from inside the process (speech's final transcripts) through the
    /// same validation, envelope, idempotency and correlation as an HTTP request. The same
    /// `idempotency_key` publishes once, however often it is retried.
    pub async fn publish(
        &self,
        event_type: &str,
        data: serde_json::Value,
        correlation_id: Option<uuid::Uuid>,
        idempotency_key: &str,
        source: &str,
    ) -> Result<Envelope, ApiError> {
        let state = &self.state;
        let out = publishing::envelope(
            state,
            publishing::Event {
                event_type: event_type.to_string(),
                data,
                correlation_id,
                source: source.to_string(),
                key: IdempotencyKey::new(source, Same::Given(idempotency_key.to_string())),
                cloud_event: None,
                extra_headers: Vec::new(),
            },
        )?;
        let published = publishing::publish(state, out).await?;
        serde_json::from_value(published.body).map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address listened on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every HTTPS address listened on (none without TLS).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// Stops listening and waits for the requests in progress: a publish the broker took is
    /// answered (and its idempotency key remembered) before the process goes.
    pub async fn stop(&self) {
        let served = self.served.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(served) = served {
            served.stop().await;
        }
    }
}

/// Drops expired idempotency records and correlation links once a minute.
async fn prune(state: Arc<AppState>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        if Arc::strong_count(&state) == 1 {
            return;
        }
        let window = state.config.idempotency_window.as_millis() as u64;
        let ttl = state.config.correlation_ttl.as_millis() as u64;
        let now = bloodbank_broker::clock::now_ms();
        if let Err(e) = state.store.run(move |s| s.prune(now, window, ttl)).await {
            tracing::warn!(error = %error::chain(&e), "pruning the gateway store failed");
        }
    }
}
