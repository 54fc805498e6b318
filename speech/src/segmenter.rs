//! Cutting a stream into utterances from per-chunk speech probabilities (one per 32 ms chunk
//! of 512 samples): speech starts at a probability of 0.5, ends after 500 ms under 0.35, and an
//! utterance is cut at 30 s (Whisper's window). Pure state machine.

pub const CHUNK: usize = 512;
const START: f32 = 0.5;
const STOP: f32 = 0.35;
/// Chunks of quiet that end an utterance (16 x 32 ms = 512 ms).
const QUIET_CHUNKS: usize = 16;
/// Chunks of audio kept before the start is detected (~200 ms), so first syllables survive.
const LEAD_CHUNKS: usize = 6;
/// Whisper hears at most 30 s at a time.
const MAX_CHUNKS: usize = 30 * 16_000 / CHUNK;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Someone started speaking at this sample.
    Started { at: usize },
    /// An utterance is complete: its audio, and where it started in the stream (samples).
    Finished { audio: Vec<f32>, start: usize },
}

#[derive(Default)]
pub struct Segmenter {
    /// Samples seen so far.
    position: usize,
    lead: std::collections::VecDeque<Vec<f32>>,
    speech: Option<Speech>,
}

struct Speech {
    audio: Vec<f32>,
    start: usize,
    quiet: usize,
}

impl Segmenter {
    /// Feeds one chunk with its speech probability.
    pub fn push(&mut self, chunk: &[f32], probability: f32) -> Option<Event> {
        let at = self.position;
        self.position += chunk.len();
        match self.speech.as_mut() {
            None if probability >= START => {
                let lead: Vec<f32> = self.lead.drain(..).flatten().collect();
                let start = at - lead.len();
                let mut audio = lead;
                audio.extend_from_slice(chunk);
                self.speech = Some(Speech {
                    audio,
                    start,
                    quiet: 0,
                });
                Some(Event::Started { at: start })
            }
            None => {
                self.lead.push_back(chunk.to_vec());
                if self.lead.len() > LEAD_CHUNKS {
                    self.lead.pop_front();
                }
                None
            }
            Some(speech) => {
                speech.audio.extend_from_slice(chunk);
                speech.quiet = if probability < STOP {
                    speech.quiet + 1
                } else {
                    0
                };
                let full = speech.audio.len() >= MAX_CHUNKS * CHUNK;
                (speech.quiet >= QUIET_CHUNKS || full)
                    .then(|| self.finish())
                    .flatten()
            }
        }
    }

    /// Ends the current utterance, if any (the stream stopped).
    pub fn finish(&mut self) -> Option<Event> {
        self.speech.take().map(|s| Event::Finished {
            audio: s.audio,
            start: s.start,
        })
    }

    /// The audio of the utterance in progress (for partial transcripts).
    pub fn current(&self) -> Option<&[f32]> {
        self.speech.as_ref().map(|s| s.audio.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(s: &mut Segmenter, probabilities: &[f32]) -> Vec<Event> {
        probabilities
            .iter()
            .filter_map(|&p| s.push(&[p; CHUNK], p))
            .collect()
    }

    #[test]
    fn speech_between_silences_is_one_utterance_with_its_lead_in() {
        let mut s = Segmenter::default();
        let mut p = vec![0.0; 10];
        p.extend([0.9; 20]);
        p.extend([0.1; QUIET_CHUNKS]);
        let events = feed(&mut s, &p);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0],
            Event::Started {
                at: (10 - LEAD_CHUNKS) * CHUNK
            }
        );
        let Event::Finished { audio, start } = &events[1] else {
            panic!()
        };
        assert_eq!(*start, (10 - LEAD_CHUNKS) * CHUNK);
        assert_eq!(audio.len(), (LEAD_CHUNKS + 20 + QUIET_CHUNKS) * CHUNK);
    }

    #[test]
    fn short_pauses_do_not_cut_and_long_speech_is_cut_at_30_s() {
        let mut s = Segmenter::default();
        let mut p = vec![0.9; 10];
        p.extend([0.1; QUIET_CHUNKS - 1]);
        p.extend([0.9; 10]);
        assert_eq!(feed(&mut s, &p).len(), 1, "only the start");
        assert!(s.current().is_some());
        let so_far = 10 + QUIET_CHUNKS - 1 + 10;
        let events = feed(&mut s, &vec![0.9; MAX_CHUNKS - so_far]);
        assert!(
            matches!(events.last(), Some(Event::Finished { audio, .. }) if audio.len() == MAX_CHUNKS * CHUNK)
        );
        assert!(s.current().is_none());
    }

    #[test]
    fn stopping_mid_utterance_finishes_it() {
        let mut s = Segmenter::default();
        feed(&mut s, &[0.9; 5]);
        assert!(matches!(s.finish(), Some(Event::Finished { .. })));
        assert!(s.finish().is_none());
    }
}
