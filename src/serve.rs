//! `bloodbank serve`: start the listeners, announce them, run until SIGINT/SIGTERM.

use crate::config::Settings;
use anyhow::Context;
use bloodbank_broker::Broker;
use bloodbank_gateway::{External, Gateway, Sink};
use bloodbank_registry::live::Live;
use std::sync::Arc;
use std::time::Duration;

pub fn run(settings: Settings) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(settings))
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    let contracts = Live::start(&settings.schemas, Duration::from_secs(1)).with_context(|| {
        format!(
            "loading the event contracts in {}",
            settings.schemas.display()
        )
    })?;
    // With an external broker, the embedded one does not run: the gateway publishes there.
    let (broker, sink) = match &settings.broker_url {
        Some(url) => {
            let exchange = settings.gateway.exchange.clone();
            (
                None,
                Sink::External(Arc::new(External::new(url.clone(), exchange))),
            )
        }
        None => {
            let broker = Broker::start(settings.broker).await?;
            println!("listening amqp {}", broker.addr());
            let sink = Sink::Embedded(broker.publisher());
            (Some(broker), sink)
        }
    };
    let gateway = Arc::new(Gateway::start(settings.gateway, sink, Arc::new(contracts)).await?);
    println!("listening http {}", gateway.addr());
    let speech = crate::speech::start(
        &settings.models,
        settings.speech_listen,
        settings.speech_workers,
        settings.webhook_url.as_deref(),
        &settings.speech_model,
        gateway.clone(),
    )
    .await?;
    println!("listening speech {}", speech.addr());
    if let Some(path) = &settings.ready_file {
        let amqp = broker.as_ref().map(|b| b.addr().to_string());
        let ready = serde_json::json!({
            "amqp": amqp,
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
    if let Some(broker) = broker {
        broker.shutdown().await;
    }
    Ok(())
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
