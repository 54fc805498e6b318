//! The `/asr` WebSocket protocol, as messages (pure). Client: binary frames of PCM (16 kHz mono
//! s16le unless a first `{"type":"config",...}` text frame says otherwise); an empty binary
//! frame or `{"type":"stop"}` ends the stream. Server: `session_info`, `transcript`s (partial
//! and final), `ready_to_stop`, or `error`.

use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    S16le,
    F32le,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sample_rate: u32,
    pub encoding: Encoding,
    pub language: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sample_rate: 16_000,
            encoding: Encoding::S16le,
            language: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientText {
    Config(Config),
    Stop,
}

#[derive(Deserialize)]
struct RawText {
    #[serde(rename = "type")]
    kind: String,
    sample_rate: Option<u32>,
    encoding: Option<String>,
    language: Option<String>,
}

/// Reads a text frame, or says what is wrong with it.
pub fn parse_text(text: &str) -> Result<ClientText, String> {
    let raw: RawText = serde_json::from_str(text).map_err(|e| format!("bad JSON: {e}"))?;
    match raw.kind.as_str() {
        "stop" => Ok(ClientText::Stop),
        "config" => {
            let sample_rate = raw.sample_rate.unwrap_or(16_000);
            if !(8_000..=192_000).contains(&sample_rate) {
                return Err(format!(
                    "sample_rate {sample_rate} is outside 8000..192000 Hz"
                ));
            }
            let encoding = match raw.encoding.as_deref().unwrap_or("s16le") {
                "s16le" => Encoding::S16le,
                "f32le" => Encoding::F32le,
                other => return Err(format!("encoding {other:?} is not s16le or f32le")),
            };
            if let Some(language) = raw.language.as_deref().filter(|l| *l != "en") {
                return Err(format!(
                    "language {language:?}: the installed model (tiny.en) is English-only"
                ));
            }
            Ok(ClientText::Config(Config {
                sample_rate,
                encoding,
                language: raw.language,
            }))
        }
        other => Err(format!("unknown message type {other:?} (config or stop)")),
    }
}

/// PCM bytes to samples in [-1, 1], or why not.
pub fn samples(bytes: &[u8], encoding: Encoding) -> Result<Vec<f32>, String> {
    match encoding {
        Encoding::S16le if bytes.len() % 2 == 0 => Ok(bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
            .collect()),
        Encoding::F32le if bytes.len() % 4 == 0 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .map(|s| {
                if s.is_finite() {
                    s.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            })
            .collect()),
        Encoding::S16le => Err(format!(
            "{} bytes is not a whole number of s16le samples",
            bytes.len()
        )),
        Encoding::F32le => Err(format!(
            "{} bytes is not a whole number of f32le samples",
            bytes.len()
        )),
    }
}

pub fn session_info(session_id: &str) -> Value {
    json!({"type": "session_info", "session_id": session_id})
}

/// `start`/`end` in seconds from the start of the session.
pub fn transcript(
    text: &str,
    is_final: bool,
    timestamp: &str,
    start: f64,
    end: f64,
    segment_id: u64,
) -> Value {
    json!({
        "type": "transcript", "text": text, "is_final": is_final, "timestamp": timestamp,
        "start": (start * 1000.0).round() / 1000.0, "end": (end * 1000.0).round() / 1000.0, "segment_id": segment_id,
    })
}

pub fn error(message: &str) -> Value {
    json!({"type": "error", "message": message})
}

pub fn ready_to_stop() -> Value {
    json!({"type": "ready_to_stop"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frames() {
        assert_eq!(parse_text(r#"{"type":"stop"}"#), Ok(ClientText::Stop));
        assert_eq!(
            parse_text(
                r#"{"type":"config","sample_rate":16000,"encoding":"f32le","language":"en"}"#
            ),
            Ok(ClientText::Config(Config {
                sample_rate: 16000,
                encoding: Encoding::F32le,
                language: Some("en".into())
            }))
        );
        assert!(parse_text("{nope").unwrap_err().contains("bad JSON"));
        assert!(parse_text(r#"{"type":"config","sample_rate":48000}"#).is_ok());
        assert!(parse_text(r#"{"type":"config","sample_rate":4000}"#)
            .unwrap_err()
            .contains("4000"));
        assert!(parse_text(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn pcm_frames() {
        assert_eq!(
            samples(&[0, 0x40, 0, 0xC0], Encoding::S16le).unwrap(),
            vec![0.5, -0.5]
        );
        assert!(samples(&[1, 2, 3], Encoding::S16le)
            .unwrap_err()
            .contains("3 bytes"));
        assert_eq!(
            samples(&1.0f32.to_le_bytes(), Encoding::F32le).unwrap(),
            vec![1.0]
        );
        assert_eq!(
            samples(&f32::NAN.to_le_bytes(), Encoding::F32le).unwrap(),
            vec![0.0]
        );
    }
}
