//! Whisper's input features: an 80-band log-mel spectrogram of 30 s of 16 kHz audio
//! (400-sample Hann window, hop 160, Slaney mel scale and normalisation), clamped to 8 decades
//! below its peak and scaled to about [-1, 1]. Pure computation.

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
pub const N_MELS: usize = 80;
/// Samples in one 30 s window, and the frames the encoder takes.
pub const WINDOW_SAMPLES: usize = 30 * SAMPLE_RATE;
pub const FRAMES: usize = WINDOW_SAMPLES / HOP;

pub struct MelFrontEnd {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// [N_MELS][N_FFT / 2 + 1]
    filters: Vec<Vec<f32>>,
}

impl Default for MelFrontEnd {
    fn default() -> Self {
        MelFrontEnd::new()
    }
}

impl MelFrontEnd {
    pub fn new() -> MelFrontEnd {
        let window = (0..N_FFT)
            .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / N_FFT as f64).cos()) as f32)
            .collect();
        MelFrontEnd {
            fft: FftPlanner::new().plan_fft_forward(N_FFT),
            window,
            filters: slaney_filters(),
        }
    }

    /// Features of up to 30 s of audio (zero-padded), frame-major per band: `[N_MELS * FRAMES]`
    /// laid out as `[band][frame]`, as the encoder's `mel [1, 80, 3000]` input.
    pub fn log_mel(&self, samples: &[f32]) -> Vec<f32> {
        let mut audio = samples[..samples.len().min(WINDOW_SAMPLES)].to_vec();
        audio.resize(WINDOW_SAMPLES, 0.0);
        // Centre the frames: reflect-pad by half a window on each side.
        let pad = N_FFT / 2;
        let mut padded = Vec::with_capacity(WINDOW_SAMPLES + 2 * pad);
        padded.extend((1..=pad).rev().map(|i| audio[i]));
        padded.extend_from_slice(&audio);
        padded.extend((0..pad).map(|i| audio[WINDOW_SAMPLES - 2 - i]));
        let bins = N_FFT / 2 + 1;
        let mut mel = vec![0f32; N_MELS * FRAMES];
        let mut buffer = vec![Complex::new(0f32, 0f32); N_FFT];
        let mut power = vec![0f32; bins];
        for frame in 0..FRAMES {
            let start = frame * HOP;
            for (i, slot) in buffer.iter_mut().enumerate() {
                *slot = Complex::new(padded[start + i] * self.window[i], 0.0);
            }
            self.fft.process(&mut buffer);
            for (p, c) in power.iter_mut().zip(&buffer) {
                *p = c.norm_sqr();
            }
            for (band, filter) in self.filters.iter().enumerate() {
                mel[band * FRAMES + frame] = filter.iter().zip(&power).map(|(f, p)| f * p).sum();
            }
        }
        let mut peak = f32::MIN;
        for v in mel.iter_mut() {
            *v = v.max(1e-10).log10();
            peak = peak.max(*v);
        }
        for v in mel.iter_mut() {
            *v = ((*v).max(peak - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

/// Triangular mel filters on the Slaney scale with Slaney (area) normalisation, as librosa's
/// defaults compute them for Whisper.
fn slaney_filters() -> Vec<Vec<f32>> {
    fn hz_to_mel(f: f64) -> f64 {
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        match f >= min_log_hz {
            true => min_log_mel + (f / min_log_hz).ln() / (6.4f64.ln() / 27.0),
            false => f / f_sp,
        }
    }
    fn mel_to_hz(m: f64) -> f64 {
        let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
        let min_log_mel = min_log_hz / f_sp;
        match m >= min_log_mel {
            true => min_log_hz * ((6.4f64.ln() / 27.0) * (m - min_log_mel)).exp(),
            false => f_sp * m,
        }
    }
    let bins = N_FFT / 2 + 1;
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|i| i as f64 * nyquist / (bins - 1) as f64)
        .collect();
    let top = hz_to_mel(nyquist);
    let points: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(top * i as f64 / (N_MELS + 1) as f64))
        .collect();
    (0..N_MELS)
        .map(|m| {
            let (lo, mid, hi) = (points[m], points[m + 1], points[m + 2]);
            let norm = 2.0 / (hi - lo);
            fft_freqs
                .iter()
                .map(|&f| {
                    let rising = (f - lo) / (mid - lo);
                    let falling = (hi - f) / (hi - mid);
                    (rising.min(falling).max(0.0) * norm) as f32
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_flat_and_a_tone_lights_its_band() {
        let mel = MelFrontEnd::new();
        let silent = mel.log_mel(&[]);
        assert_eq!(silent.len(), N_MELS * FRAMES);
        assert!(silent.iter().all(|v| (*v - silent[0]).abs() < 1e-6));
        // A 1 kHz tone for one second: the loudest band at frame 50 is the one around 1 kHz.
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| (2.0 * PI * 1000.0 * i as f64 / SAMPLE_RATE as f64).sin() as f32 * 0.5)
            .collect();
        let features = mel.log_mel(&tone);
        let loudest = (0..N_MELS)
            .max_by(|a, b| features[a * FRAMES + 50].total_cmp(&features[b * FRAMES + 50]))
            .unwrap();
        // On the Slaney scale 1 kHz is mel 15 and 8 kHz mel 45.25; band b is centred on
        // mel (b + 1) * 45.25 / 81, so 1 kHz falls between bands 25 and 26.
        assert!((25..=26).contains(&loudest), "band {loudest}");
        assert!(features
            .iter()
            .all(|v| v.is_finite() && *v <= 1.5 && *v >= -1.5));
    }
}
