//! `bloodbank serve`: start the listeners, announce them, run until SIGINT/SIGTERM.

use crate::config::Settings;
use anyhow::Context;
use bloodbank_broker::{BindError, Broker, BrokerError, Listen, PidLock, PidLockError};
use bloodbank_gateway::{External, Gateway, GatewayError, Sink};
use bloodbank_management::Management;
use bloodbank_speech::SpeechError;
use std::sync::Arc;

/// The broker's listeners besides plain AMQP: protocol, and the name `serve` prints and the
/// ready file uses.
const BROKER_LISTENERS: [(&str, &str); 5] = [
    ("stomp", "stomp"),
    ("http/web-stomp", "stomp-ws"),
    ("amqp/ssl", "amqps"),
    ("stomp/ssl", "stomps"),
    ("https/web-stomp", "stomp-wss"),
];

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
        explain(self.what, self.flag, self.env, e)
    }
}

fn explain(what: &str, flag: &str, env: &str, e: BindError) -> anyhow::Error {
    let hint = match e.in_use() {
        true => "Another program is using it: stop that program, or choose another address",
        false => "Choose another address",
    };
    anyhow::anyhow!(
        "{what} cannot listen on {}: {}. {hint} with {flag} or {env}",
        e.addr,
        e.source,
    )
}

/// What a broker listener is, and the flag and variable that set its address, by the
/// protocol name the broker gives it.
fn broker_listener(protocol: &str) -> (&'static str, &'static str, &'static str) {
    match protocol {
        "stomp" => ("STOMP", "--stomp-listen", "BLOODBANK_STOMP_LISTEN"),
        "http/web-stomp" => (
            "Web-STOMP",
            "--stomp-ws-listen",
            "BLOODBANK_STOMP_WS_LISTEN",
        ),
        "amqp/ssl" => ("AMQP over TLS", "--amqps-listen", "BLOODBANK_AMQPS_LISTEN"),
        "stomp/ssl" => (
            "STOMP over TLS",
            "--stomps-listen",
            "BLOODBANK_STOMPS_LISTEN",
        ),
        "https/web-stomp" => (
            "Web-STOMP over TLS",
            "--stomp-wss-listen",
            "BLOODBANK_STOMP_WSS_LISTEN",
        ),
        _ => ("AMQP", "--amqp-listen", "BLOODBANK_AMQP_LISTEN"),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Before anything is announced: a SIGTERM right after the ready file must be a clean stop.
    let stop = StopSignals::install()?;
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
                    BrokerError::OtherListen { protocol, source } => {
                        let (what, flag, env) = broker_listener(protocol);
                        explain(what, flag, env, source)
                    }
                    e => anyhow::Error::new(e),
                })?;
            println!("listening amqp {}", join(broker.addrs()));
            for (protocol, name) in BROKER_LISTENERS {
                let addrs = broker.listening(protocol);
                if !addrs.is_empty() {
                    println!("listening {name} {}", join(&addrs));
                }
            }
            let listeners = (broker.listeners().iter())
                .map(|(p, a)| (p.to_string(), *a))
                .collect();
            let management = Management::start(
                &settings.management_listen,
                settings.management_tls_listen.as_ref(),
                settings.tls.clone(),
                broker.admin(),
                listeners,
            )
            .await
            .map_err(|e| management_listener.explain(e))?;
            println!("listening management {}", join(management.addrs()));
            if !management.tls_addrs().is_empty() {
                println!("listening management-tls {}", join(management.tls_addrs()));
            }
            managed = Some(management);
            let sink = Sink::Embedded(broker.publisher());
            (Some(broker), sink)
        }
    };
    let gateway = Gateway::start(settings.gateway.clone(), sink, Arc::new(contracts))
        .await
        .map_err(|e| match e {
            GatewayError::Listen(e) => http.explain(e),
            GatewayError::TlsListen(e) => explain(
                "the HTTPS gateway",
                "--gateway-tls-listen",
                "BLOODBANK_GATEWAY_TLS_LISTEN",
                e,
            ),
            e => anyhow::Error::new(e),
        })?;
    let gateway = Arc::new(gateway);
    println!("listening http {}", join(gateway.addrs()));
    if !gateway.tls_addrs().is_empty() {
        println!("listening https {}", join(gateway.tls_addrs()));
    }
    let speech = crate::speech::start(&settings, gateway.clone())
        .await
        .map_err(|e| match e.downcast::<SpeechError>() {
            Ok(SpeechError::Listen(e)) => speech_listener.explain(e),
            Ok(e) => anyhow::Error::new(e),
            Err(e) => e,
        })?;
    println!("listening speech {}", join(speech.addrs()));
    if !speech.tls_addrs().is_empty() {
        println!("listening speech-tls {}", join(speech.tls_addrs()));
    }
    let (stop_watching, stopped) = tokio::sync::watch::channel(false);
    let _reloads = settings.tls.as_ref().map(|tls| tls.watch(stopped));
    if let Some(path) = &settings.ready_file {
        let first = |addrs: &[std::net::SocketAddr]| addrs.first().map(|a| a.to_string());
        let mut ready = serde_json::json!({
            "amqp": broker.as_ref().and_then(|b| first(b.addrs())),
            "management": managed.as_ref().map(|m| m.addr().to_string()),
            "management_tls": managed.as_ref().and_then(|m| first(m.tls_addrs())),
            "http": gateway.addr().to_string(),
            "https": first(gateway.tls_addrs()),
            "speech": speech.addr().to_string(),
            "speech_tls": first(speech.tls_addrs()),
        });
        for (protocol, name) in BROKER_LISTENERS {
            let addr = broker.as_ref().and_then(|b| first(&b.listening(protocol)));
            ready[name.replace('-', "_")] = serde_json::json!(addr);
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|_| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    stop.wait().await;
    tracing::info!("shutting down");
    let _ = stop_watching.send(true);
    // Listeners close first; requests in progress finish (a bounded wait) before the broker
    // goes, so a publish it took is answered.
    let management = async {
        if let Some(management) = managed {
            management.stop().await;
        }
    };
    tokio::join!(speech.stop(), gateway.stop(), management);
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

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            term: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
