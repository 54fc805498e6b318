//! The event a final utterance becomes on the bus: `talkytonny.transcription.completed` v1
//! (its contract is `schemas/talkytonny/transcription.completed.v1.json`).

use serde_json::{json, Value};

use crate::server::Utterance;

/// The payload for one final utterance transcribed by `model`.
pub fn transcription_completed(u: &Utterance, model: &str) -> Value {
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
