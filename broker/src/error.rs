//! Errors in AMQP's own terms: every failure the broker reports carries its reply code.

use std::fmt;

/// An AMQP error as it goes on the wire in `channel.close` or `connection.close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl std::error::Error for AmqpError {}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// The reply codes of AMQP 0.9.1 that the broker uses, with RabbitMQ's names.
pub mod code {
    pub const REPLY_SUCCESS: u16 = 200;
    pub const CONTENT_TOO_LARGE: u16 = 311;
    pub const NO_ROUTE: u16 = 312;
    pub const CONNECTION_FORCED: u16 = 320;
    pub const ACCESS_REFUSED: u16 = 403;
    pub const NOT_FOUND: u16 = 404;
    pub const RESOURCE_LOCKED: u16 = 405;
    pub const PRECONDITION_FAILED: u16 = 406;
    pub const FRAME_ERROR: u16 = 501;
    pub const SYNTAX_ERROR: u16 = 502;
    pub const COMMAND_INVALID: u16 = 503;
    pub const CHANNEL_ERROR: u16 = 504;
    pub const UNEXPECTED_FRAME: u16 = 505;
    pub const RESOURCE_ERROR: u16 = 506;
    pub const NOT_ALLOWED: u16 = 530;
    pub const NOT_IMPLEMENTED: u16 = 540;
    pub const INTERNAL_ERROR: u16 = 541;

    /// The symbolic name RabbitMQ puts in front of the reply text.
    pub fn name(code: u16) -> &'static str {
        match code {
            REPLY_SUCCESS => "OK",
            CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
            NO_ROUTE => "NO_ROUTE",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            _ => "INTERNAL_ERROR",
        }
    }
}

/// The longest AMQP short string, in bytes.
pub const SHORT_STRING_MAX: usize = 255;

/// `text` cut to fit a short string: at most 255 bytes, ending in "..." when cut (as RabbitMQ
/// cuts reply texts), never inside a UTF-8 character.
pub fn bounded_short(text: &str) -> String {
    if text.len() <= SHORT_STRING_MAX {
        return text.to_string();
    }
    let mut end = SHORT_STRING_MAX - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl AmqpError {
    /// An error with `code`; the text gets RabbitMQ's `NAME - ` prefix and is bounded to a
    /// short string (a queue name of 250 bytes makes a longer one).
    pub fn new(code: u16, text: impl fmt::Display) -> Self {
        AmqpError {
            code,
            text: bounded_short(&format!("{} - {}", code::name(code), text)),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method that failed (class id, method id) as `channel.close` reports it.
    pub fn on(mut self, (class_id, method_id): (u16, u16)) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    /// The `channel.close` that reports this error.
    pub fn channel_close(&self) -> amq_protocol::protocol::AMQPClass {
        use amq_protocol::protocol::{channel, AMQPClass};
        AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: self.code,
            reply_text: self.text.as_str().into(),
            class_id: self.class_id,
            method_id: self.method_id,
        }))
    }

    /// The `connection.close` that reports this error.
    pub fn connection_close(&self) -> amq_protocol::protocol::AMQPClass {
        use amq_protocol::protocol::{connection, AMQPClass};
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: self.code,
            reply_text: self.text.as_str().into(),
            class_id: self.class_id,
            method_id: self.method_id,
        }))
    }

    /// Hard errors close the whole connection; soft ones only the channel.
    pub fn closes_connection(&self) -> bool {
        !matches!(
            self.code,
            code::ACCESS_REFUSED
                | code::NOT_FOUND
                | code::RESOURCE_LOCKED
                | code::PRECONDITION_FAILED
                | code::CONTENT_TOO_LARGE
                | code::NO_ROUTE
        )
    }

    pub fn access_refused(text: impl fmt::Display) -> Self {
        Self::new(code::ACCESS_REFUSED, text)
    }
    pub fn not_found(text: impl fmt::Display) -> Self {
        Self::new(code::NOT_FOUND, text)
    }
    pub fn resource_locked(text: impl fmt::Display) -> Self {
        Self::new(code::RESOURCE_LOCKED, text)
    }
    pub fn precondition(text: impl fmt::Display) -> Self {
        Self::new(code::PRECONDITION_FAILED, text)
    }
    pub fn frame_error(text: impl fmt::Display) -> Self {
        Self::new(code::FRAME_ERROR, text)
    }
    pub fn syntax(text: impl fmt::Display) -> Self {
        Self::new(code::SYNTAX_ERROR, text)
    }
    pub fn command_invalid(text: impl fmt::Display) -> Self {
        Self::new(code::COMMAND_INVALID, text)
    }
    pub fn channel_error(text: impl fmt::Display) -> Self {
        Self::new(code::CHANNEL_ERROR, text)
    }
    pub fn unexpected_frame(text: impl fmt::Display) -> Self {
        Self::new(code::UNEXPECTED_FRAME, text)
    }
    pub fn not_allowed(text: impl fmt::Display) -> Self {
        Self::new(code::NOT_ALLOWED, text)
    }
    pub fn not_implemented(text: impl fmt::Display) -> Self {
        Self::new(code::NOT_IMPLEMENTED, text)
    }
}

/// An error and its sources, as one line (for logs and for texts sent to clients).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Describes a queue or exchange the way RabbitMQ's error texts do.
pub fn queue_ref(name: &str, vhost: &str) -> String {
    format!("queue '{name}' in vhost '{vhost}'")
}

pub fn exchange_ref(name: &str, vhost: &str) -> String {
    format!("exchange '{name}' in vhost '{vhost}'")
}

/// Errors of the broker as a process (not of one AMQP operation).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("AMQP listener")]
    Listen(#[from] crate::listen::BindError),
    /// A listener other than plain AMQP's, by the protocol name RabbitMQ gives it
    /// (`stomp`, `amqp/ssl`, `https/web-stomp`...).
    #[error("{protocol} listener")]
    OtherListen {
        protocol: &'static str,
        #[source]
        source: crate::listen::BindError,
    },
    #[error("exchange '{name}' of the configuration")]
    Exchange {
        name: String,
        #[source]
        source: AmqpError,
    },
    #[error("cannot start the {0} thread")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("data directory {}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("message log in {}", path.display())]
    Log {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Definitions(#[from] crate::store::definitions::DefinitionsError),
    #[error("stored users")]
    Users(#[from] crate::users::UserError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_texts_fit_a_short_string() {
        let name = "q".repeat(250);
        let err = AmqpError::not_found(queue_ref(&name, "/"));
        assert_eq!(err.text.len(), SHORT_STRING_MAX);
        assert!(
            err.text.starts_with("NOT_FOUND - no queue")
                || err.text.starts_with("NOT_FOUND - queue")
        );
        assert!(err.text.ends_with("..."));
        let wide = "é".repeat(200);
        let cut = bounded_short(&wide);
        assert!(cut.len() <= SHORT_STRING_MAX && cut.ends_with("..."));
        assert_eq!(bounded_short("short"), "short");
    }
}
