//! Real Whisper on real speech: espeak-ng speaks known sentences, `bloodbank speech transcribe`
//! writes down what it hears, and the word error rate stays at most 25%.
//!
//! Needs the models installed (`bloodbank speech install-model [--size base] --data-dir
//! target/speech-data`, which `scripts/test` runs; `BLOODBANK_SPEECH_DATA` points elsewhere),
//! espeak-ng and sox.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const SENTENCES: &[&str] = &[
    "Hello Tonny, what is the weather like today?",
    "Please schedule a meeting with the design team for tomorrow morning.",
    "Turn off the lights in the living room.",
    "Send the meeting notes to everyone on the team.",
];

fn data_dir() -> PathBuf {
    std::env::var("BLOODBANK_SPEECH_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/speech-data"))
}

/// 16 kHz mono s16le WAV of `text`, spoken by espeak-ng.
fn speak(text: &str, path: &std::path::Path) {
    speak_as(text, path, "16000", "1", "16")
}

/// A WAV of `text` at `rate` Hz with `channels` channels of `bits`-bit PCM.
fn speak_as(text: &str, path: &std::path::Path, rate: &str, channels: &str, bits: &str) {
    let mut espeak = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "--stdout", text])
        .stdout(Stdio::piped())
        .spawn()
        .expect("espeak-ng (scripts/test installs it)");
    let status = Command::new("sox")
        .args(["-t", "wav", "-", "-r", rate, "-c", channels, "-b", bits])
        .arg(path)
        .stdin(espeak.stdout.take().unwrap())
        .status()
        .expect("sox (scripts/test installs it)");
    assert!(status.success() && espeak.wait().unwrap().success());
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric())
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word error rate: word-level edit distance over the reference length.
fn wer(reference: &str, heard: &str) -> f64 {
    let (r, h) = (words(reference), words(heard));
    let mut row: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut previous = row[0];
        row[0] = i;
        for j in 1..=h.len() {
            let substitution = previous + usize::from(r[i - 1] != h[j - 1]);
            previous = row[j];
            row[j] = substitution.min(row[j] + 1).min(row[j - 1] + 1);
        }
    }
    row[h.len()] as f64 / r.len() as f64
}

#[test]
fn word_error_rate() {
    assert!((wer("a b c d", "a x c d") - 0.25).abs() < 1e-9);
    assert_eq!(wer("Hello, world!", "hello world"), 0.0);
    assert_eq!(wer("a b", ""), 1.0);
}

/// Every sentence must come out recognisably (WER at most 0.5) and all of them together
/// nearly right (mean WER at most 0.25). One sentence alone may lose a word or two more: the
/// multilingual base model once heard "Send the meeting notes" as "and a meeting note" in CI.
fn transcribed_by(size: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut rates = Vec::new();
    for (i, sentence) in SENTENCES.iter().enumerate() {
        let wav = dir.path().join(format!("{i}.wav"));
        speak(sentence, &wav);
        let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
            .args(["speech", "transcribe", "--size", size])
            .arg(&wav)
            .arg("--data-dir")
            .arg(data_dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let heard = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let rate = wer(sentence, &heard);
        assert!(
            rate <= 0.5,
            "{size}: said {sentence:?}, heard {heard:?} (WER {rate:.2})"
        );
        eprintln!("{size}: said {sentence:?}, heard {heard:?} (WER {rate:.2})");
        rates.push(rate);
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    assert!(mean <= 0.25, "{size}: mean WER {mean:.2} over {rates:?}");
}

/// A 44.1 kHz stereo 24-bit file is mixed down and resampled as `/asr` resamples a stream.
#[test]
fn a_wav_at_another_rate_is_resampled() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("cd.wav");
    speak_as(SENTENCES[0], &wav, "44100", "2", "24");
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["speech", "transcribe"])
        .arg(&wav)
        .arg("--data-dir")
        .arg(data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let heard = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let rate = wer(SENTENCES[0], &heard);
    assert!(rate <= 0.25, "said {:?}, heard {heard:?}", SENTENCES[0]);
}

#[test]
fn spoken_sentences_are_transcribed_by_tiny_en() {
    transcribed_by("tiny.en");
}

/// The multilingual base model, prompted for English transcription.
#[test]
fn spoken_sentences_are_transcribed_by_base() {
    transcribed_by("base");
}

#[test]
fn without_a_model_transcribe_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("a.wav");
    speak("hello", &wav);
    let out = Command::new(env!("CARGO_BIN_EXE_bloodbank"))
        .args(["speech", "transcribe"])
        .arg(&wav)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bloodbank speech install-model"));
}
