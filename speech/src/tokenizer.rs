//! Turning Whisper's output tokens into text: the byte-level BPE vocabulary of
//! `tokenizer.json` read backwards (token -> bytes), special tokens skipped. Pure.

use std::collections::HashMap;

use crate::error::SpeechError;

/// The token ids the decoder loop needs. Multilingual models also have a token per language
/// and a task token; English-only ones have neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Specials {
    pub end_of_text: u32,
    pub start_of_transcript: u32,
    pub no_timestamps: u32,
    /// `<|en|>` and `<|transcribe|>`, on multilingual models.
    pub english_transcribe: Option<(u32, u32)>,
}

impl Specials {
    /// The decoder's prompt: start, (language, task,) no timestamps.
    pub fn prompt(&self) -> Vec<u32> {
        let mut prompt = vec![self.start_of_transcript];
        if let Some((language, task)) = self.english_transcribe {
            prompt.extend([language, task]);
        }
        prompt.push(self.no_timestamps);
        prompt
    }
}

pub struct Tokenizer {
    /// id -> the token's bytes (empty for special tokens).
    pieces: Vec<Vec<u8>>,
    pub specials: Specials,
}

impl Tokenizer {
    pub fn from_json(text: &str) -> Result<Tokenizer, SpeechError> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|source| SpeechError::ModelJson {
                file: "tokenizer.json",
                source,
            })?;
        let vocab = json["model"]["vocab"]
            .as_object()
            .ok_or_else(|| lacks("model.vocab".into()))?;
        let decode = byte_decoder();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| lacks(format!("a numeric id of {token:?}")))?
                as usize;
            if pieces.len() <= id {
                pieces.resize(id + 1, Vec::new());
            }
            pieces[id] = token
                .chars()
                .filter_map(|c| decode.get(&c).copied())
                .collect();
        }
        let mut added: HashMap<String, u32> = HashMap::new();
        for token in json["added_tokens"].as_array().into_iter().flatten() {
            if let (Some(content), Some(id)) = (token["content"].as_str(), token["id"].as_u64()) {
                added.insert(content.to_string(), id as u32);
            }
        }
        let special = |name: &str| {
            added
                .get(name)
                .copied()
                .ok_or_else(|| lacks(name.to_string()))
        };
        let specials = Specials {
            end_of_text: special("<|endoftext|>")?,
            start_of_transcript: special("<|startoftranscript|>")?,
            no_timestamps: special("<|notimestamps|>")?,
            english_transcribe: added
                .get("<|en|>")
                .copied()
                .zip(added.get("<|transcribe|>").copied()),
        };
        Ok(Tokenizer { pieces, specials })
    }

    /// The text of ordinary tokens; special tokens (ids from end-of-text up) say nothing.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&id| id < self.specials.end_of_text)
            .filter_map(|&id| self.pieces.get(id as usize))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// GPT-2's reversible map from bytes to printable characters, inverted.
fn byte_decoder() -> HashMap<char, u8> {
    let printable = |b: u8| {
        (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b)
    };
    let mut map = HashMap::new();
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            shifted += 1;
            // 256..=323: always a valid char.
            char::from_u32(255 + shifted).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        map.insert(c, b);
    }
    map
}

fn lacks(what: String) -> SpeechError {
    SpeechError::ModelLacks {
        file: "tokenizer.json",
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"model": {"type": "BPE", "vocab": {"Hello": 0, "Ġworld": 1, "Ã©": 2, "!": 3}},
        "added_tokens": [{"id": 4, "content": "<|endoftext|>"}, {"id": 5, "content": "<|startoftranscript|>"},
                         {"id": 6, "content": "<|notimestamps|>"}]}"#;

    #[test]
    fn multilingual_prompts_name_the_language_and_task() {
        let multi = MINI.replace(r#"{"id": 6, "content": "<|notimestamps|>"}]"#, r#"{"id": 6, "content": "<|notimestamps|>"}, {"id": 7, "content": "<|en|>"}, {"id": 8, "content": "<|transcribe|>"}]"#);
        assert_eq!(
            Tokenizer::from_json(&multi).unwrap().specials.prompt(),
            vec![5, 7, 8, 6]
        );
    }

    #[test]
    fn decodes_byte_level_tokens_and_skips_specials() {
        let t = Tokenizer::from_json(MINI).unwrap();
        assert_eq!(
            t.specials,
            Specials {
                end_of_text: 4,
                start_of_transcript: 5,
                no_timestamps: 6,
                english_transcribe: None,
            }
        );
        assert_eq!(t.specials.prompt(), vec![5, 6]);
        assert_eq!(t.decode(&[5, 6, 0, 1, 3, 4]), "Hello world!");
        assert_eq!(t.decode(&[2]), "é");
    }
}
