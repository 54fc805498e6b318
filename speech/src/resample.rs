//! Audio at another rate, converted to Whisper's 16 kHz as it streams in (rubato's FFT
//! resampler, fixed input chunks; what does not fill a chunk waits for the next frame).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

const CHUNK: usize = 1024;
pub const TARGET: u32 = 16_000;

pub struct To16k {
    inner: Fft<f32>,
    pending: Vec<f32>,
    out: Vec<f32>,
}

impl To16k {
    pub fn new(rate: u32) -> Result<To16k, String> {
        let inner = Fft::<f32>::new(rate as usize, TARGET as usize, CHUNK, 1, FixedSync::Input)
            .map_err(|e| format!("cannot resample {rate} Hz: {e}"))?;
        let out = vec![0.0; inner.output_frames_max()];
        Ok(To16k {
            inner,
            pending: Vec::new(),
            out,
        })
    }

    /// Takes samples at the input rate; returns whatever 16 kHz samples are ready.
    pub fn push(&mut self, samples: &[f32]) -> Vec<f32> {
        self.pending.extend_from_slice(samples);
        let mut ready = Vec::new();
        let mut used = 0;
        loop {
            let need = self.inner.input_frames_next();
            if self.pending.len() - used < need {
                break;
            }
            let input = &self.pending[used..used + need];
            let capacity = self.out.len();
            let (Ok(input), Ok(mut output)) = (
                InterleavedSlice::new(input, 1, need),
                InterleavedSlice::new_mut(&mut self.out, 1, capacity),
            ) else {
                break;
            };
            match self.inner.process_into_buffer(&input, &mut output, None) {
                Ok((read, written)) => {
                    used += read;
                    ready.extend_from_slice(&self.out[..written]);
                }
                Err(_) => break,
            }
        }
        self.pending.drain(..used);
        ready
    }

    /// The end of the stream: what still waits for a full chunk comes out, followed by a
    /// little silence (the chunk is filled with zeros).
    pub fn finish(&mut self) -> Vec<f32> {
        let need = self.inner.input_frames_next();
        let pad = need.saturating_sub(self.pending.len() % need.max(1));
        self.push(&vec![0.0; pad])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_keeps_its_pitch_and_the_length_scales() {
        let rate = 48_000;
        let tone: Vec<f32> = (0..rate)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
            .collect();
        let mut r = To16k::new(rate as u32).unwrap();
        let mut out = Vec::new();
        for piece in tone.chunks(777) {
            out.extend(r.push(piece));
        }
        // About a third as many samples (less what is still in the resampler's delay line).
        assert!(out.len() > 15_000 && out.len() <= 16_000, "{}", out.len());
        // 440 Hz at 16 kHz: a zero crossing (upwards) every 36.4 samples.
        let steady = &out[4000..12000];
        let ups = steady
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        assert!(
            (218..=222).contains(&ups),
            "{ups} upward crossings in 0.5 s"
        );
    }
}
