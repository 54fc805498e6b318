//! WAV files as `speech transcribe` reads them: PCM 8/16/24/32-bit or IEEE float, any rate
//! and channel count, mixed down to mono floats. Pure parsing, no I/O.

/// Mono samples in [-1, 1] at `rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavError {
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    #[error("no fmt or data chunk")]
    Incomplete,
    #[error("unsupported format: tag {tag}, {bits} bits (PCM 8/16/24/32 or float 32/64 only)")]
    Unsupported { tag: u16, bits: u16 },
    #[error("{0} channels and {1} Hz are not a playable stream")]
    Shape(u16, u32),
}

const PCM: u16 = 1;
const FLOAT: u16 = 3;
const EXTENSIBLE: u16 = 0xFFFE;

pub fn parse(bytes: &[u8]) -> Result<Audio, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWav);
    }
    let (mut pos, mut format, mut data) = (12, None, None);
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]) as usize;
        let body = &bytes[pos + 8..pos.saturating_add(8).saturating_add(size).min(bytes.len())];
        match id {
            b"fmt " if body.len() >= 16 => {
                let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                let mut tag = u16_at(0);
                // WAVE_FORMAT_EXTENSIBLE keeps the real tag in the sub-format GUID's first bytes.
                if tag == EXTENSIBLE && body.len() >= 26 {
                    tag = u16_at(24);
                }
                let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                format = Some((tag, u16_at(2), rate, u16_at(14)));
            }
            b"data" => data = Some(body),
            _ => {}
        }
        pos = pos.saturating_add(8).saturating_add(size + (size & 1));
    }
    let (Some((tag, channels, rate, bits)), Some(data)) = (format, data) else {
        return Err(WavError::Incomplete);
    };
    if channels == 0 || rate == 0 {
        return Err(WavError::Shape(channels, rate));
    }
    let width = (bits as usize).div_ceil(8);
    let sample: fn(&[u8]) -> f32 = match (tag, bits) {
        (PCM, 8) => |b| (b[0] as f32 - 128.0) / 128.0,
        (PCM, 16) => |b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0,
        (PCM, 24) => |b| i32::from_le_bytes([0, b[0], b[1], b[2]]) as f32 / 2_147_483_648.0,
        (PCM, 32) => |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2_147_483_648.0,
        (FLOAT, 32) => |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        (FLOAT, 64) => {
            |b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }
        (tag, bits) => return Err(WavError::Unsupported { tag, bits }),
    };
    let frame = width * channels as usize;
    let samples = data
        .chunks_exact(frame)
        .map(|f| f.chunks_exact(width).map(sample).sum::<f32>() / channels as f32)
        .collect();
    Ok(Audio { rate, samples })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend(16u32.to_le_bytes());
        out.extend(tag.to_le_bytes());
        out.extend(channels.to_le_bytes());
        out.extend(rate.to_le_bytes());
        out.extend((rate * channels as u32 * bits as u32 / 8).to_le_bytes());
        out.extend((channels * bits / 8).to_le_bytes());
        out.extend(bits.to_le_bytes());
        out.extend(b"data");
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn pcm16_stereo_is_mixed_to_mono() {
        let data: Vec<u8> = [16384i16, 0, -16384, -16384]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let audio = parse(&wav(PCM, 2, 48_000, 16, &data)).unwrap();
        assert_eq!(audio.rate, 48_000);
        assert_eq!(audio.samples, vec![0.25, -0.5]);
    }

    #[test]
    fn float_and_bad_files() {
        let data: Vec<u8> = [0.5f32, -1.0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let audio = parse(&wav(FLOAT, 1, 8_000, 32, &data)).unwrap();
        assert_eq!(audio.samples, vec![0.5, -1.0]);
        assert_eq!(parse(b"nope"), Err(WavError::NotWav));
        assert_eq!(
            parse(&wav(7, 1, 8_000, 8, &[0])),
            Err(WavError::Unsupported { tag: 7, bits: 8 })
        );
        assert_eq!(
            parse(&wav(PCM, 0, 8_000, 16, &[])),
            Err(WavError::Shape(0, 8_000))
        );
        let mut cut = wav(PCM, 1, 16_000, 16, &[1, 2, 3, 4]);
        cut.truncate(30);
        assert_eq!(parse(&cut), Err(WavError::Incomplete));
    }
}
