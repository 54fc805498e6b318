//! Speech to text (the WhisperLiveKit replacement): the model installer and converter
//! (`convert/whisper_to_onnx.py`), the log-mel front end, the tokenizer, Whisper and Silero VAD
//! on ONNX Runtime, utterance segmentation, stable partials, resampling, the webhook, and the
//! `/asr` WebSocket server with its page.
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod agreement;
pub mod engine;
pub mod error;
pub mod event;
pub mod install;
pub mod listening;
pub mod mel;
pub mod protocol;
pub mod resample;
pub mod segmenter;
pub mod server;
pub mod tokenizer;
pub mod vad;
pub mod wav;
pub mod webhook;
pub mod whisper;

pub use engine::Engine;
pub use error::SpeechError;
pub use server::{OnFinal, SpeechConfig, SpeechServer, Utterance};
pub use whisper::{ModelDir, Whisper};
