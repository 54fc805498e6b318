//! Silero VAD (v6, ONNX, from the faster-whisper wheel): the probability that a 32 ms chunk
//! of 16 kHz audio is speech, carrying the model's recurrent state from chunk to chunk.

use ort::session::Session;
use ort::value::Tensor;

use crate::error::SpeechError;
use crate::segmenter::CHUNK;
use crate::whisper::ModelDir;

/// Samples of the previous chunk the model sees before each new one.
const CONTEXT: usize = 64;

pub struct Vad {
    session: Session,
    h: Vec<f32>,
    c: Vec<f32>,
    context: [f32; CONTEXT],
}

impl Vad {
    pub fn load(dir: &ModelDir) -> Result<Vad, SpeechError> {
        let session = crate::whisper::session(dir, "silero_vad_v6.onnx", 1)?;
        Ok(Vad {
            session,
            h: vec![0.0; 128],
            c: vec![0.0; 128],
            context: [0.0; CONTEXT],
        })
    }

    pub fn probability(&mut self, chunk: &[f32]) -> Result<f32, SpeechError> {
        debug_assert_eq!(chunk.len(), CHUNK);
        let mut input = Vec::with_capacity(CONTEXT + CHUNK);
        input.extend_from_slice(&self.context);
        input.extend_from_slice(chunk);
        self.context.copy_from_slice(&chunk[CHUNK - CONTEXT..]);
        let state = |v: &Vec<f32>| Tensor::from_array((vec![1i64, 1, 128], v.clone()));
        let outputs = self.session.run(ort::inputs![
            "input" => Tensor::from_array((vec![1i64, (CONTEXT + CHUNK) as i64], input))?,
            "h" => state(&self.h)?,
            "c" => state(&self.c)?,
        ])?;
        self.h = outputs["hn"].try_extract_tensor::<f32>()?.1.to_vec();
        self.c = outputs["cn"].try_extract_tensor::<f32>()?.1.to_vec();
        Ok(outputs["speech_probs"]
            .try_extract_tensor::<f32>()?
            .1
            .first()
            .copied()
            .unwrap_or(0.0))
    }
}
