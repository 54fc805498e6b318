//! The inference side: a bounded pool of Whisper instances shared by every session. Finals
//! wait for a worker; partials only run when one is free at once (when behind, partials are
//! skipped, finals never).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::error::SpeechError;
use crate::vad::Vad;
use crate::whisper::{ModelDir, Whisper};

pub struct Engine {
    dir: ModelDir,
    idle: Mutex<Vec<Whisper>>,
    permits: Arc<Semaphore>,
}

/// A transcript and how long inference took.
pub struct Heard {
    pub text: String,
    pub processing_ms: u64,
}

impl Engine {
    /// Loads `workers` Whisper instances (one inference thread each).
    pub fn load(dir: &ModelDir, workers: usize) -> Result<Engine, SpeechError> {
        let idle = (0..workers.max(1))
            .map(|_| Whisper::load(dir, 1))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Engine {
            dir: dir.clone(),
            permits: Arc::new(Semaphore::new(idle.len())),
            idle: Mutex::new(idle),
        })
    }

    /// Loads a voice activity detector for one session (on the blocking pool: it reads the
    /// model file and builds an inference session).
    pub async fn vad(&self) -> Result<Vad, SpeechError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || Vad::load(&dir)).await?
    }

    /// Transcribes on a worker, waiting for one if all are busy.
    pub async fn transcribe(&self, audio: Vec<f32>) -> Result<Heard, SpeechError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SpeechError::Closed)?;
        self.run(audio, permit).await
    }

    /// Transcribes only if a worker is free now.
    pub async fn try_transcribe(&self, audio: Vec<f32>) -> Option<Result<Heard, SpeechError>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.run(audio, permit).await)
    }

    async fn run(
        &self,
        audio: Vec<f32>,
        _permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Heard, SpeechError> {
        let mut whisper = self
            .idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .ok_or(SpeechError::Closed)?;
        let (whisper, result) = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            let text = whisper.transcribe(&audio);
            let ms = start.elapsed().as_millis() as u64;
            (
                whisper,
                text.map(|text| Heard {
                    text,
                    processing_ms: ms,
                }),
            )
        })
        .await?;
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(whisper);
        result
    }
}
