//! `bloodbank serve`: start the listeners, announce them, run until SIGINT/SIGTERM.

use crate::config::Settings;
use anyhow::Context;
use bloodbank_broker::{BindError, Broker, BrokerError, Listen, PidLock, PidLockError};
use bloodbank_gateway::{External, Gateway, GatewayError, Sink};
use bloodbank_management::Management;
use bloodbank_speech::SpeechError;
use std::sync::Arc;

/// Held in the data directory while a `serve` runs there.
const DATA_DIR_LOCK: &str = "bloodbank.pid";

pub fn run(settings: Settings) -> anyhow::Result<()> {
    ignore_file_size_signal();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

/// A listener of `serve`: what it is for and how a user changes its address.
struct Listener<'a> {
    what: &'static str,
    flag: &'static str,
    env: &'static str,
    listen: &'a Listen,
}

impl Listener<'_> {
    fn explain(&self, e: BindError) -> anyhow::Error {
        let hint = match e.in_use() {
            true => "Another program is using it: stop that program, or choose another address",
            false => "Choose another address",
        };
        anyhow::anyhow!(
            "{} cannot listen on {}: {}. {hint} with {} or {}",
            self.what,
            e.addr,
            e.source,
            self.flag,
            self.env
        )
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let data_dir = &settings.data_dir;
    let _lock = PidLock::try_acquire(data_dir, DATA_DIR_LOCK).map_err(|e| match e {
        PidLockError::Held { pid, .. } => anyhow::anyhow!(
            "another bloodbank is running with data dir {} (pid {pid}); stop it, or give this one \
             another --data-dir (BLOODBANK_DATA_DIR)",
            data_dir.display()
        ),
        e => anyhow::Error::new(e),
    })?;
    let amqp = Listener {
        what: "AMQP",
        flag: "--amqp-listen",
        env: "BLOODBANK_AMQP_LISTEN",
        listen: &settings.broker.amqp_listen,
    };
    let http = Listener {
        what: "the HTTP gateway",
        flag: "--gateway-listen",
        env: "BLOODBANK_GATEWAY_LISTEN",
        listen: &settings.gateway.listen,
    };
    let speech_listener = Listener {
        what: "speech",
        flag: "--speech-listen",
        env: "BLOODBANK_SPEECH_LISTEN",
        listen: &settings.speech_listen,
    };
    let stomp_listen = (settings.broker.stomp_listen.clone()).unwrap_or_else(|| Listen::any(61613));
    let stomp_listener = Listener {
        what: "STOMP",
        flag: "--stomp-listen",
        env: "BLOODBANK_STOMP_LISTEN",
        listen: &stomp_listen,
    };
    let stomp_ws_listen =
        (settings.broker.stomp_ws_listen.clone()).unwrap_or_else(|| Listen::any(15674));
    let stomp_ws_listener = Listener {
        what: "Web-STOMP",
        flag: "--stomp-ws-listen",
        env: "BLOODBANK_STOMP_WS_LISTEN",
        listen: &stomp_ws_listen,
    };
    let management_listener = Listener {
        what: "the management API",
        flag: "--management-listen",
        env: "BLOODBANK_MANAGEMENT_LISTEN",
        listen: &settings.management_listen,
    };
    // Say what is wrong with an address before the slow steps (the model install), not after.
    let embedded = settings.broker_url.is_none();
    for listener in [
        &amqp,
        &http,
        &speech_listener,
        &management_listener,
        &stomp_listener,
    ] {
        let broker_side = matches!(listener.what, "AMQP" | "the management API" | "STOMP");
        if !broker_side || embedded {
            listener.listen.check().map_err(|e| listener.explain(e))?;
        }
    }
    if settings.install_model {
        crate::speech::install_if_missing(&settings.models, &settings.speech_model).await?;
    }
    let contracts = crate::contracts::load(settings.schemas.as_deref())?;
    // With an external broker, the embedded one does not run (nor its management API): the
    // gateway publishes there.
    let mut managed = None;
    let (broker, sink) = match &settings.broker_url {
        Some(url) => {
            let exchange = settings.gateway.exchange.clone();
            (
                None,
                Sink::External(Arc::new(External::new(url.clone(), exchange))),
            )
        }
        None => {
            let broker = Broker::start(settings.broker.clone())
                .await
                .map_err(|e| match e {
                    BrokerError::Listen(e) => amqp.explain(e),
                    BrokerError::StompListen(e) => stomp_listener.explain(e),
                    BrokerError::StompWsListen(e) => stomp_ws_listener.explain(e),
                    e => anyhow::Error::new(e),
                })?;
            println!("listening amqp {}", join(broker.addrs()));
            println!("listening stomp {}", join(broker.stomp_addrs()));
            println!("listening web-stomp {}", join(broker.stomp_ws_addrs()));
            let amqp_listeners = broker.addrs().iter().map(|a| ("amqp", *a));
            let stomp_listeners = broker.stomp_addrs().iter().map(|a| ("stomp", *a));
            let ws_listeners = broker
                .stomp_ws_addrs()
                .iter()
                .map(|a| ("http/web-stomp", *a));
            let listeners = amqp_listeners
                .chain(stomp_listeners)
                .chain(ws_listeners)
                .map(|(p, a)| (p.to_string(), a))
                .collect();
            let management =
                Management::start(&settings.management_listen, broker.admin(), listeners)
                    .await
                    .map_err(|e| management_listener.explain(e))?;
            println!("listening management {}", join(management.addrs()));
            managed = Some(management);
            let sink = Sink::Embedded(broker.publisher());
            (Some(broker), sink)
        }
    };
    let gateway = Gateway::start(settings.gateway.clone(), sink, Arc::new(contracts))
        .await
        .map_err(|e| match e {
            GatewayError::Listen(e) => http.explain(e),
            e => anyhow::Error::new(e),
        })?;
    let gateway = Arc::new(gateway);
    println!("listening http {}", join(gateway.addrs()));
    let speech = crate::speech::start(
        &settings.models,
        settings.speech_listen.clone(),
        settings.speech_workers,
        settings.speech_max_sessions,
        settings.webhook_url.as_deref(),
        &settings.speech_model,
        gateway.clone(),
    )
    .await
    .map_err(|e| match e.downcast::<SpeechError>() {
        Ok(SpeechError::Listen(e)) => speech_listener.explain(e),
        Ok(e) => anyhow::Error::new(e),
        Err(e) => e,
    })?;
    println!("listening speech {}", join(speech.addrs()));
    if let Some(path) = &settings.ready_file {
        let amqp = broker.as_ref().map(|b| b.addr().to_string());
        let stomp = broker
            .as_ref()
            .and_then(|b| b.stomp_addrs().first())
            .map(|a| a.to_string());
        let management = managed.as_ref().map(|m| m.addr().to_string());
        let ready = serde_json::json!({
            "amqp": amqp,
            "management": management,
            "stomp": stomp,
            "stomp_ws": broker.as_ref().and_then(|b| b.stomp_ws_addrs().first()).map(|a| a.to_string()),
            "http": gateway.addr().to_string(),
            "speech": speech.addr().to_string(),
        });
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    wait_for_signal().await?;
    tracing::info!("shutting down");
    speech.stop();
    gateway.stop();
    if let Some(management) = &managed {
        management.stop();
    }
    if let Some(broker) = broker {
        broker.shutdown().await;
    }
    Ok(())
}

/// A write past the file size limit (`ulimit -f`) then fails with EFBIG, which the message log
/// handles like a full disk (nack, alarm, retry), instead of SIGXFSZ killing the process.
fn ignore_file_size_signal() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
}

fn join(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
