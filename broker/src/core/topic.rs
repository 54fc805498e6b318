//! Topic routing as RabbitMQ does it: keys split on '.', `*` matches exactly one word, `#` zero
//! or more. Words may be empty ("a..b" has three words) and the empty key has no words.
//!
//! Bindings live in a trie, so matching a key walks only the branches its words select: the
//! cost does not grow with bindings that cannot match.

use super::Map;
use std::hash::Hash;

/// Splits a routing or binding key into words exactly as RabbitMQ does.
pub fn split_key(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

#[derive(Debug)]
struct Node<D> {
    words: Map<String, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    destinations: Vec<D>,
}

impl<D> Default for Node<D> {
    fn default() -> Self {
        Node {
            words: Map::default(),
            star: None,
            hash: None,
            destinations: Vec::new(),
        }
    }
}

/// A set of (binding key, destination) pairs indexed for matching.
#[derive(Debug)]
pub struct TopicTrie<D> {
    nodes: Vec<Node<D>>,
}

impl<D> Default for TopicTrie<D> {
    fn default() -> Self {
        TopicTrie {
            nodes: vec![Node::default()],
        }
    }
}

impl<D: Clone + Eq + Hash> TopicTrie<D> {
    /// Adds a binding; adding the same pair twice keeps one.
    pub fn insert(&mut self, binding_key: &str, destination: D) {
        let mut node = 0;
        for word in split_key(binding_key) {
            let existing = match word {
                "*" => self.nodes[node].star,
                "#" => self.nodes[node].hash,
                w => self.nodes[node].words.get(w).copied(),
            };
            node = match existing {
                Some(next) => next,
                None => {
                    let next = self.nodes.len();
                    self.nodes.push(Node::default());
                    match word {
                        "*" => self.nodes[node].star = Some(next),
                        "#" => self.nodes[node].hash = Some(next),
                        w => {
                            self.nodes[node].words.insert(w.to_string(), next);
                        }
                    }
                    next
                }
            };
        }
        let dests = &mut self.nodes[node].destinations;
        if !dests.contains(&destination) {
            dests.push(destination);
        }
    }

    /// Removes a binding. Emptied nodes stay until `rebuild`; they cost nothing when matching
    /// keys that do not reach them.
    pub fn remove(&mut self, binding_key: &str, destination: &D) {
        let mut node = 0;
        for word in split_key(binding_key) {
            let next = match word {
                "*" => self.nodes[node].star,
                "#" => self.nodes[node].hash,
                w => self.nodes[node].words.get(w).copied(),
            };
            match next {
                Some(next) => node = next,
                None => return,
            }
        }
        self.nodes[node].destinations.retain(|d| d != destination);
    }

    /// All destinations whose binding key matches `routing_key`, each once, in no set order.
    pub fn matches(&self, routing_key: &str) -> Vec<D> {
        let words = split_key(routing_key);
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        self.walk(0, &words, 0, &mut out, &mut seen);
        let mut unique = std::collections::HashSet::new();
        out.retain(|d| unique.insert(d.clone()));
        out
    }

    fn walk(
        &self,
        node: usize,
        words: &[&str],
        at: usize,
        out: &mut Vec<D>,
        seen: &mut std::collections::HashSet<(usize, usize)>,
    ) {
        // A node reached twice at the same position adds nothing new (`#.#` patterns).
        if !seen.insert((node, at)) {
            return;
        }
        let n = &self.nodes[node];
        if let Some(hash) = n.hash {
            for next_at in at..=words.len() {
                self.walk(hash, words, next_at, out, seen);
            }
        }
        if at == words.len() {
            out.extend(n.destinations.iter().cloned());
            return;
        }
        if let Some(&next) = n.words.get(words[at]) {
            self.walk(next, words, at + 1, out, seen);
        }
        if let Some(star) = n.star {
            self.walk(star, words, at + 1, out, seen);
        }
    }
}

/// The plain definition of topic matching, used to check the trie.
pub fn reference_match(binding_key: &str, routing_key: &str) -> bool {
    fn go(pattern: &[&str], words: &[&str]) -> bool {
        match pattern.split_first() {
            None => words.is_empty(),
            Some((&"#", rest)) => (0..=words.len()).any(|skip| go(rest, &words[skip..])),
            Some((&"*", rest)) => !words.is_empty() && go(rest, &words[1..]),
            Some((w, rest)) => words.first() == Some(w) && go(rest, &words[1..]),
        }
    }
    go(&split_key(binding_key), &split_key(routing_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn trie_match(binding: &str, key: &str) -> bool {
        let mut t = TopicTrie::default();
        t.insert(binding, 1u32);
        !t.matches(key).is_empty()
    }

    #[test]
    fn rabbitmq_examples() {
        let cases = [
            ("theboard.meeting.*", "theboard.meeting.created", true),
            ("theboard.meeting.*", "theboard.meeting", false),
            ("theboard.#", "theboard", true),
            ("theboard.#", "theboard.a.b.c", true),
            ("#", "", true),
            ("*", "", false),
            ("", "", true),
            ("", "a", false),
            ("a.*", "a.", true),
            ("*.*", ".", true),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("#.#", "a", true),
            ("*.#.*", "a", false),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
        ];
        for (binding, key, expected) in cases {
            assert_eq!(reference_match(binding, key), expected, "{binding} ~ {key}");
            assert_eq!(trie_match(binding, key), expected, "{binding} ~ {key}");
        }
    }

    #[test]
    fn remove_unbinds_only_that_destination() {
        let mut t = TopicTrie::default();
        t.insert("a.*", 1);
        t.insert("a.*", 2);
        t.insert("a.#", 3);
        t.remove("a.*", &1);
        let mut got = t.matches("a.b");
        got.sort();
        assert_eq!(got, vec![2, 3]);
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("".to_string()),
            Just("*".to_string()),
            Just("#".to_string()),
        ]
    }

    fn key(words: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop::collection::vec(words, 0..6).prop_map(|w| w.join("."))
    }

    proptest! {
        #[test]
        fn trie_agrees_with_reference(
            bindings in prop::collection::vec(key(word()), 1..8),
            routing in key(prop_oneof![Just("a".to_string()), Just("b".to_string()), Just("".to_string())]),
        ) {
            let mut t = TopicTrie::default();
            for (i, b) in bindings.iter().enumerate() {
                t.insert(b, i);
            }
            let mut got = t.matches(&routing);
            got.sort();
            let expected: Vec<usize> = bindings
                .iter()
                .enumerate()
                .filter(|(_, b)| reference_match(b, &routing))
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(got, expected);
        }
    }
}
