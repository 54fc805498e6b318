//! What a session hears, apart from its socket: audio in at any rate, resampled to 16 kHz,
//! voice activity detection per 32 ms chunk, utterances out. Inference makes this blocking
//! work: the server runs [`Listening::push`] on the blocking pool, never on an async worker.

use crate::error::SpeechError;
use crate::resample::{To16k, TARGET};
use crate::segmenter::{Event, Segmenter, CHUNK};
use crate::vad::Vad;

pub struct Listening {
    /// For audio sent at another rate than 16 kHz.
    resampler: Option<To16k>,
    vad: Vad,
    segmenter: Segmenter,
    /// 16 kHz samples that do not fill a chunk yet.
    pending: Vec<f32>,
    /// 16 kHz samples heard so far.
    heard: usize,
}

impl Listening {
    pub fn new(vad: Vad) -> Listening {
        Listening {
            resampler: None,
            vad,
            segmenter: Segmenter::default(),
            pending: Vec::new(),
            heard: 0,
        }
    }

    /// Audio will arrive at `rate` Hz (before any audio).
    pub fn set_rate(&mut self, rate: u32) -> Result<(), String> {
        self.resampler = match rate {
            TARGET => None,
            rate => Some(To16k::new(rate)?),
        };
        Ok(())
    }

    /// 16 kHz samples heard so far.
    pub fn heard(&self) -> usize {
        self.heard
    }

    /// Takes samples at the announced rate; returns where utterances started and ended.
    pub fn push(&mut self, samples: &[f32]) -> Vec<Event> {
        match self.resampler.as_mut() {
            Some(resampler) => {
                let resampled = resampler.push(samples);
                self.pending.extend(resampled);
            }
            None => self.pending.extend_from_slice(samples),
        }
        let mut events = Vec::new();
        let mut offset = 0;
        while self.pending.len() - offset >= CHUNK {
            let chunk = &self.pending[offset..offset + CHUNK];
            offset += CHUNK;
            self.heard += CHUNK;
            let probability = self
                .vad
                .probability(chunk)
                .unwrap_or_else(|e: SpeechError| {
                    tracing::warn!(error = %e, "voice activity detection failed");
                    0.0
                });
            events.extend(self.segmenter.push(chunk, probability));
        }
        self.pending.drain(..offset);
        events
    }

    /// The utterance in progress so far, if someone is speaking.
    pub fn current(&self) -> Option<&[f32]> {
        self.segmenter.current()
    }

    /// The end of the stream: the utterance in progress, if any, as finished.
    pub fn end(&mut self) -> Option<(Vec<f32>, usize)> {
        match self.segmenter.finish() {
            Some(Event::Finished { audio, start }) => Some((audio, start)),
            _ => None,
        }
    }
}
