//! Speech to text (the WhisperLiveKit replacement). Built so far: the model converter
//! (`convert/whisper_to_onnx.py`) and its installer, the log-mel front end, the tokenizer and
//! Whisper inference on ONNX Runtime. Not built yet (issue 7): the `/asr` WebSocket, voice
//! activity detection, partial transcripts, events, the page.

pub mod agreement;
pub mod error;
pub mod install;
pub mod mel;
pub mod protocol;
pub mod segmenter;
pub mod tokenizer;
pub mod vad;
pub mod whisper;

pub use error::SpeechError;
pub use whisper::{ModelDir, Whisper};
