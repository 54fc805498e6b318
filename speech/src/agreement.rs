//! LocalAgreement-2 for partial transcripts: a word is shown once two consecutive hypotheses
//! of the growing utterance agree on it (and everything before it), so partial text only grows
//! and does not flicker. Pure.

#[derive(Default)]
pub struct Agreement {
    previous: Vec<String>,
    committed: usize,
}

impl Agreement {
    /// Takes the newest hypothesis of the utterance; returns the agreed text when it grew.
    pub fn update(&mut self, hypothesis: &str) -> Option<String> {
        let words: Vec<String> = hypothesis.split_whitespace().map(str::to_string).collect();
        let agreed = self
            .previous
            .iter()
            .zip(&words)
            .take_while(|(a, b)| a == b)
            .count();
        self.previous = words;
        if agreed > self.committed {
            self.committed = agreed;
            Some(self.previous[..agreed].join(" "))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_words_two_hypotheses_agree_on_are_shown() {
        let mut a = Agreement::default();
        assert_eq!(a.update("hello"), None);
        assert_eq!(a.update("hello tony"), Some("hello".into()));
        assert_eq!(a.update("hello tony what"), Some("hello tony".into()));
        assert_eq!(
            a.update("hello tony, what is"),
            None,
            "a changed word agrees with nothing new"
        );
        assert_eq!(
            a.update("hello tony, what is the"),
            Some("hello tony, what is".into())
        );
    }
}
