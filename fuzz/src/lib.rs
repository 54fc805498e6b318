//! What each fuzz target does with its input, as plain functions: the targets in
//! `fuzz_targets/` call them under libFuzzer, and `tests/corpus.rs` replays every file of
//! `corpus/<target>/` through them on stable (CI runs it). Any input must end in a value or an
//! error, never a panic, a hang or a runaway allocation.

use std::sync::OnceLock;

use bloodbank_registry::Contracts;
use bytes::BytesMut;

/// The targets by name, as `cargo fuzz run NAME` and the corpus folders know them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("frame_decoder", frame_decoder),
    ("session_frames", session_frames),
    ("stomp_frames", stomp_frames),
    ("segment_records", segment_records),
    ("definitions", definitions),
    ("http_events", http_events),
    ("schemas", schemas),
    ("asr_frames", asr_frames),
];

/// AMQP frame splitting, method and content-header parsing. The first byte picks a
/// negotiated frame_max, as tune-ok would.
pub fn frame_decoder(data: &[u8]) {
    let Some((b, rest)) = data.split_first() else {
        return;
    };
    let frame_max = 4096 + u32::from(*b) * 512;
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(_frame)) = bloodbank_broker::wire::decode_frame(&mut buf, frame_max) {}
}

/// Frames fed to a whole AMQP session of an in-memory broker, after the handshake.
pub fn session_frames(data: &[u8]) {
    bloodbank_broker::feed_frames(data);
}

/// STOMP frames and heart-beats.
pub fn stomp_frames(data: &[u8]) {
    bloodbank_broker::fuzzing::stomp_frames(data);
}

/// The message log's records, as recovery reads a segment file.
pub fn segment_records(data: &[u8]) {
    bloodbank_broker::fuzzing::segment_records(data);
}

/// A RabbitMQ definitions file, read and checked as `definitions import` does.
pub fn definitions(data: &[u8]) {
    bloodbank_broker::fuzzing::definitions(data);
}

/// The project's contracts (`schemas/`), loaded once.
fn contracts() -> &'static Contracts {
    static CONTRACTS: OnceLock<Contracts> = OnceLock::new();
    CONTRACTS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        Contracts::load(&dir).unwrap_or_else(|e| panic!("schemas/ does not load: {e}"))
    })
}

/// An HTTP publish body: JSON, a structured CloudEvent, and its data (or the body itself)
/// validated against the newest contract of the event type it names.
pub fn http_events(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    bloodbank_gateway::fuzzing::cloud_event(&body);
    let contracts = contracts();
    let named = ["type", "event_type"]
        .iter()
        .find_map(|k| body.get(k).and_then(|v| v.as_str()));
    let event_type = named.unwrap_or("theboard.meeting.created");
    if let Some(contract) = contracts.latest(event_type) {
        let payload = body.get("data").or(body.get("payload")).unwrap_or(&body);
        let _ = contract.validate(payload);
    }
}

/// A contract file (JSON Schema), loaded on its own; if it loads, an empty object is
/// validated against it.
pub fn schemas(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts = vec![(
        "theboard/meeting.created.v1.json".to_string(),
        text.to_string(),
    )];
    if let Ok(contracts) = Contracts::from_texts(texts) {
        for event_type in contracts.event_types() {
            for contract in contracts.versions(event_type) {
                let _ = contract.validate(&serde_json::json!({}));
            }
        }
    }
}

/// What an `/asr` client sends: a text frame (config, stop) or audio in either encoding.
pub fn asr_frames(data: &[u8]) {
    use bloodbank_speech::protocol::{parse_text, samples, Encoding};
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_text(text);
    }
    let _ = samples(data, Encoding::S16le);
    let _ = samples(data, Encoding::F32le);
}
