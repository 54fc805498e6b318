//! Exchanges and their bindings, indexed per exchange type for routing.

use super::headers::headers_match;
use super::topic::TopicTrie;
use super::Map;
use amq_protocol::types::FieldTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding sends messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub key: String,
    pub arguments: FieldTable,
}

#[derive(Debug)]
pub struct Exchange {
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// The policy that applies to it, if one does.
    pub policy: Option<String>,
    /// The alternate exchange its policy names (an argument wins over it).
    pub policy_alternate: Option<String>,
    bindings: Vec<Binding>,
    direct: Map<String, Vec<Destination>>,
    topic: TopicTrie<Destination>,
}

impl Exchange {
    pub fn new(
        name: impl Into<String>,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Exchange {
        Exchange {
            name: name.into(),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            policy: None,
            policy_alternate: None,
            bindings: Vec::new(),
            direct: Map::default(),
            topic: TopicTrie::default(),
        }
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The alternate exchange named in the arguments, if any.
    pub fn alternate_exchange(&self) -> Option<String> {
        super::args::string_arg(&self.arguments, "alternate-exchange")
            .or_else(|| self.policy_alternate.clone())
    }

    /// Adds a binding; an identical binding is already there and is kept once.
    pub fn bind(&mut self, binding: Binding) {
        if self.bindings.contains(&binding) {
            return;
        }
        match self.kind {
            ExchangeKind::Direct => {
                let dests = self.direct.entry(binding.key.clone()).or_default();
                if !dests.contains(&binding.destination) {
                    dests.push(binding.destination.clone());
                }
            }
            ExchangeKind::Topic => self.topic.insert(&binding.key, binding.destination.clone()),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        self.bindings.push(binding);
    }

    /// Removes a binding; returns whether it existed.
    pub fn unbind(&mut self, binding: &Binding) -> bool {
        let Some(pos) = self.bindings.iter().position(|b| b == binding) else {
            return false;
        };
        self.bindings.remove(pos);
        let still_bound = self
            .bindings
            .iter()
            .any(|b| b.key == binding.key && b.destination == binding.destination);
        if !still_bound {
            match self.kind {
                ExchangeKind::Direct => {
                    if let Some(dests) = self.direct.get_mut(&binding.key) {
                        dests.retain(|d| d != &binding.destination);
                        if dests.is_empty() {
                            self.direct.remove(&binding.key);
                        }
                    }
                }
                ExchangeKind::Topic => self.topic.remove(&binding.key, &binding.destination),
                ExchangeKind::Fanout | ExchangeKind::Headers => {}
            }
        }
        true
    }

    /// Removes every binding to `destination`; returns how many there were.
    pub fn unbind_destination(&mut self, destination: &Destination) -> usize {
        let doomed: Vec<Binding> = self
            .bindings
            .iter()
            .filter(|b| &b.destination == destination)
            .cloned()
            .collect();
        for b in &doomed {
            self.unbind(b);
        }
        doomed.len()
    }

    /// The destinations bound to this exchange that a message with this key and headers reaches.
    pub fn route(&self, routing_key: &str, headers: Option<&FieldTable>) -> Vec<Destination> {
        match self.kind {
            ExchangeKind::Direct => self.direct.get(routing_key).cloned().unwrap_or_default(),
            ExchangeKind::Topic => self.topic.matches(routing_key),
            ExchangeKind::Fanout => unique(self.bindings.iter().map(|b| &b.destination)),
            ExchangeKind::Headers => unique(
                self.bindings
                    .iter()
                    .filter(|b| headers_match(&b.arguments, headers))
                    .map(|b| &b.destination),
            ),
        }
    }
}

fn unique<'a>(dests: impl Iterator<Item = &'a Destination>) -> Vec<Destination> {
    let mut out: Vec<Destination> = Vec::new();
    for d in dests {
        if !out.contains(d) {
            out.push(d.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> Destination {
        Destination::Queue(name.into())
    }

    fn binding(dest: Destination, key: &str) -> Binding {
        Binding {
            destination: dest,
            key: key.into(),
            arguments: FieldTable::default(),
        }
    }

    #[test]
    fn direct_routes_by_exact_key() {
        let mut e = Exchange::new(
            "d",
            ExchangeKind::Direct,
            false,
            false,
            false,
            FieldTable::default(),
        );
        e.bind(binding(q("a"), "k"));
        e.bind(binding(q("b"), "k"));
        e.bind(binding(q("c"), "other"));
        assert_eq!(e.route("k", None), vec![q("a"), q("b")]);
        assert!(e.unbind(&binding(q("a"), "k")));
        assert_eq!(e.route("k", None), vec![q("b")]);
        assert!(!e.unbind(&binding(q("a"), "k")));
    }

    #[test]
    fn fanout_ignores_keys_and_dedups() {
        let mut e = Exchange::new(
            "f",
            ExchangeKind::Fanout,
            false,
            false,
            false,
            FieldTable::default(),
        );
        e.bind(binding(q("a"), "x"));
        e.bind(binding(q("a"), "y"));
        e.bind(binding(q("b"), ""));
        assert_eq!(e.route("whatever", None), vec![q("a"), q("b")]);
        assert_eq!(e.unbind_destination(&q("a")), 2);
        assert_eq!(e.route("", None), vec![q("b")]);
    }
}
