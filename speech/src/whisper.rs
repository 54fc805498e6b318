//! Whisper on ONNX Runtime: the encoder turns 30 s of features into per-layer cross-attention
//! keys/values once; the decoder then runs one token at a time with a key/value cache (greedy,
//! English-only prompt: start-of-transcript, no-timestamps).

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor};

use crate::error::SpeechError;
use crate::mel::{MelFrontEnd, FRAMES, N_MELS};
use crate::tokenizer::Tokenizer;

/// Vocabulary size of the multilingual Whisper models (English-only ones have one less).
const MULTILINGUAL_VOCAB: usize = 51_865;

/// Tokens a 30 s window yields at most (Whisper's own limit is half its 448-token context).
const MAX_TOKENS: usize = 224;

static RUNTIME: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The files of an installed model.
#[derive(Debug, Clone)]
pub struct ModelDir(pub PathBuf);

impl ModelDir {
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// ONNX Runtime's shared library, as installed beside the model.
    pub fn runtime_library(&self) -> Result<PathBuf, SpeechError> {
        std::fs::read_dir(&self.0)
            .map_err(|source| SpeechError::ModelFile {
                path: self.0.clone(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
            })
            .ok_or_else(|| SpeechError::ModelLacks {
                file: "the model directory",
                what: "libonnxruntime.so".into(),
            })
    }

    pub fn is_installed(&self) -> bool {
        [
            "encoder.int8.onnx",
            "decoder.int8.onnx",
            "silero_vad_v6.onnx",
            "tokenizer.json",
            "model.json",
        ]
        .iter()
        .all(|f| self.file(f).exists())
            && self.runtime_library().is_ok()
    }
}

pub struct Whisper {
    encoder: Session,
    decoder: Session,
    tokenizer: Tokenizer,
    mel: MelFrontEnd,
    layers: usize,
    d_model: usize,
}

fn runtime(library: &Path) -> Result<&'static Environment, SpeechError> {
    let result = RUNTIME.get_or_init(|| {
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .build()
            .map_err(|e| e.to_string())
    });
    result
        .as_ref()
        .map_err(|reason| SpeechError::RuntimeLibrary {
            library: library.to_path_buf(),
            reason: reason.clone(),
        })
}

impl Whisper {
    /// Loads the int8 encoder and decoder of an installed model (`threads` per session).
    pub fn load(dir: &ModelDir, threads: usize) -> Result<Whisper, SpeechError> {
        if !dir.is_installed() {
            return Err(SpeechError::NotInstalled(dir.0.clone()));
        }
        let env = runtime(&dir.runtime_library()?)?;
        let session = |name: &str| -> Result<Session, SpeechError> {
            let builder = Session::builder(env)?
                .with_intra_threads(threads)
                .map_err(|e| SpeechError::runtime("setting the thread count")(e.into()))?;
            let mut builder = builder;
            builder
                .commit_from_file(dir.file(name))
                .map_err(SpeechError::runtime(format!("loading {name}")))
        };
        let meta: serde_json::Value = serde_json::from_str(&read(&dir.file("model.json"))?)
            .map_err(|source| SpeechError::ModelJson {
                file: "model.json",
                source,
            })?;
        let number = |key: &str| {
            meta[key]
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| SpeechError::ModelLacks {
                    file: "model.json",
                    what: key.to_string(),
                })
        };
        let mut tokenizer = Tokenizer::from_json(&read(&dir.file("tokenizer.json"))?)?;
        // English-only models (a 51,864-token vocabulary) list language and task tokens too,
        // but are prompted without them.
        if number("n_vocab")? < MULTILINGUAL_VOCAB {
            tokenizer.specials.english_transcribe = None;
        }
        Ok(Whisper {
            encoder: session("encoder.int8.onnx")?,
            decoder: session("decoder.int8.onnx")?,
            tokenizer,
            mel: MelFrontEnd::new(),
            layers: number("decoder_layers")?,
            d_model: number("d_model")?,
        })
    }

    /// The text of up to 30 s of 16 kHz mono audio.
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<String, SpeechError> {
        let features = self.mel.log_mel(samples);
        let mel = Tensor::from_array((vec![1i64, N_MELS as i64, FRAMES as i64], features))?;
        let mut encoded = self.encoder.run(ort::inputs!["mel" => mel])?;
        // The cross-attention keys/values, owned, passed by reference at every step.
        let mut cross: Vec<(String, DynValue)> = Vec::new();
        for layer in 0..self.layers {
            for kind in ["k", "v"] {
                let name = format!("cross_{kind}_{layer}");
                let value = output(&mut encoded, &name)?;
                cross.push((name, value));
            }
        }
        drop(encoded);
        let specials = self.tokenizer.specials;
        let prompt = specials.prompt();
        // The self-attention cache: each step's outputs become the next step's inputs as they
        // are, without copying them out and back in.
        let mut past: Vec<DynValue> = Vec::with_capacity(2 * self.layers);
        for _ in 0..2 * self.layers {
            past.push(
                Tensor::from_array((vec![1i64, 0, self.d_model as i64], Vec::<f32>::new()))?
                    .into_dyn(),
            );
        }
        let mut text_tokens: Vec<u32> = Vec::new();
        for step in 0..MAX_TOKENS + prompt.len() {
            let token = prompt
                .get(step)
                .copied()
                .or(text_tokens.last().copied())
                .unwrap_or(specials.end_of_text);
            let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
                (
                    "token".into(),
                    Tensor::from_array((vec![1i64, 1], vec![token as i64]))?.into(),
                ),
                (
                    "position".into(),
                    Tensor::from_array((vec![1i64], vec![step as i64]))?.into(),
                ),
            ];
            let caches = std::mem::take(&mut past);
            for (i, cache) in caches.into_iter().enumerate() {
                let kind = if i % 2 == 0 { "k" } else { "v" };
                inputs.push((format!("past_{kind}_{}", i / 2).into(), cache.into()));
            }
            for (name, value) in &cross {
                inputs.push((name.as_str().into(), value.into()));
            }
            let mut outputs = self.decoder.run(inputs)?;
            for layer in 0..self.layers {
                for kind in ["k", "v"] {
                    past.push(output(&mut outputs, &format!("present_{kind}_{layer}"))?);
                }
            }
            if step + 1 < prompt.len() {
                continue;
            }
            let (_, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
            let next = logits
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i as u32)
                .unwrap_or(specials.end_of_text);
            if next == specials.end_of_text {
                break;
            }
            text_tokens.push(next);
        }
        Ok(self.tokenizer.decode(&text_tokens).trim().to_string())
    }
}

/// A session on one of the model's graphs.
pub(crate) fn session(dir: &ModelDir, name: &str, threads: usize) -> Result<Session, SpeechError> {
    let env = runtime(&dir.runtime_library()?)?;
    let mut builder = Session::builder(env)?
        .with_intra_threads(threads)
        .map_err(|e| SpeechError::runtime("setting the thread count")(e.into()))?;
    builder
        .commit_from_file(dir.file(name))
        .map_err(SpeechError::runtime(format!("loading {name}")))
}

/// Takes an output of a run, owned.
fn output(
    outputs: &mut ort::session::SessionOutputs<'_>,
    name: &str,
) -> Result<DynValue, SpeechError> {
    outputs
        .remove(name)
        .ok_or_else(|| SpeechError::MissingOutput(name.to_string()))
}

fn read(path: &Path) -> Result<String, SpeechError> {
    std::fs::read_to_string(path).map_err(|source| SpeechError::ModelFile {
        path: path.to_path_buf(),
        source,
    })
}
