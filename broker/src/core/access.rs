//! What a connection's user may do in its vhost: RabbitMQ's `configure`, `write` and `read`
//! permissions, regular expressions over resource names (unanchored, as RabbitMQ matches
//! them; an empty pattern allows nothing), checked on every operation as RabbitMQ's
//! access-control table says. A connection gets its user's permissions when it opens.

use crate::error::{exchange_ref, queue_ref, AmqpError};
use regex::Regex;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Perm {
    Configure,
    Write,
    Read,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    Exchange,
    Queue,
}

#[derive(Debug, Clone)]
enum Pattern {
    All,
    Nothing,
    Regex(Regex),
}

impl Pattern {
    fn new(text: &str) -> Result<Pattern, regex::Error> {
        Ok(match text {
            "" => Pattern::Nothing,
            ".*" => Pattern::All,
            _ => Pattern::Regex(Regex::new(text)?),
        })
    }

    fn allows(&self, name: &str) -> bool {
        match self {
            Pattern::All => true,
            Pattern::Nothing => false,
            Pattern::Regex(re) => re.is_match(name),
        }
    }
}

/// One user's permissions in one vhost.
#[derive(Debug, Clone)]
pub struct Access {
    user: String,
    vhost: String,
    configure: Pattern,
    write: Pattern,
    read: Pattern,
    /// Topic permissions by topic exchange: (write, read) patterns over routing keys. An
    /// exchange without an entry is not restricted, as in RabbitMQ.
    topics: HashMap<String, (Pattern, Pattern)>,
}

impl Access {
    pub(crate) fn new(
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<Access, regex::Error> {
        Ok(Access {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
            topics: HashMap::new(),
        })
    }

    /// Adds the topic permission of one topic exchange. `{username}` and `{vhost}` in the
    /// patterns stand for the user's name and the vhost, as in RabbitMQ.
    pub(crate) fn with_topic(
        mut self,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> Result<Access, regex::Error> {
        let expand = |p: &str| {
            p.replace("{username}", &regex::escape(&self.user))
                .replace("{vhost}", &regex::escape(&self.vhost))
        };
        let rule = (Pattern::new(&expand(write))?, Pattern::new(&expand(read))?);
        self.topics.insert(exchange.to_string(), rule);
        Ok(self)
    }

    /// Whether any topic exchange has a topic permission for this user.
    pub(crate) fn has_topics(&self) -> bool {
        !self.topics.is_empty()
    }

    /// 403 unless the topic permission of topic exchange `exchange` (if it has one) lets the
    /// user write (publish with) or read (bind with) `key`.
    pub(crate) fn check_topic(
        &self,
        perm: Perm,
        exchange: &str,
        key: &str,
    ) -> Result<(), AmqpError> {
        let Some((write, read)) = self.topics.get(exchange) else {
            return Ok(());
        };
        let pattern = match perm {
            Perm::Read => read,
            _ => write,
        };
        if pattern.allows(key) {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to topic '{key}' in {} refused for user '{}'",
            exchange_ref(exchange, &self.vhost),
            self.user
        )))
    }

    /// Nothing (a user whose permissions in the vhost were taken away while connected).
    pub(crate) fn none(user: &str, vhost: &str) -> Access {
        Access {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: Pattern::Nothing,
            write: Pattern::Nothing,
            read: Pattern::Nothing,
            topics: HashMap::new(),
        }
    }

    /// Everything (the broker's own in-process connections).
    pub(crate) fn all(user: &str, vhost: &str) -> Access {
        Access {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: Pattern::All,
            write: Pattern::All,
            read: Pattern::All,
            topics: HashMap::new(),
        }
    }

    /// 403 ACCESS_REFUSED with RabbitMQ's text unless the permission allows the resource.
    /// The default exchange is `amq.default` here, as in RabbitMQ.
    pub(crate) fn check(&self, perm: Perm, kind: Resource, name: &str) -> Result<(), AmqpError> {
        let name = match (kind, name) {
            (Resource::Exchange, "") => "amq.default",
            _ => name,
        };
        let pattern = match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        };
        if pattern.allows(name) {
            return Ok(());
        }
        let what = match kind {
            Resource::Exchange => exchange_ref(name, &self.vhost),
            Resource::Queue => queue_ref(name, &self.vhost),
        };
        Err(AmqpError::access_refused(format!(
            "access to {what} refused for user '{}'",
            self.user
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_anywhere_unless_anchored_and_empty_allows_nothing() {
        let a = Access::new("u", "/", "^app\\.", "", "orders").unwrap();
        assert!(a.check(Perm::Configure, Resource::Queue, "app.q").is_ok());
        assert!(a
            .check(Perm::Configure, Resource::Queue, "x.app.q")
            .is_err());
        assert!(a
            .check(Perm::Write, Resource::Exchange, "anything")
            .is_err());
        assert!(a
            .check(Perm::Read, Resource::Queue, "my-orders-queue")
            .is_ok());
        let err = a.check(Perm::Write, Resource::Exchange, "").unwrap_err();
        assert_eq!(
            err.text,
            "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'u'"
        );
        assert!(Access::new("u", "/", "(", "", "").is_err());
    }
}
