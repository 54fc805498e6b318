//! Bloodbank's AMQP 0.9.1 broker.
//!
//! - `wire`: frame splitting and encoding (no I/O; public for tests, fuzzing and benchmarks)
//! - `core`: exchanges, routing, queues, consumers and acks as plain state (no I/O)
//! - `store`: where messages and definitions are kept
//! - `net`: tokio tasks per connection, the listener, shutdown
//!
//! Embedding: `Broker::start(BrokerConfig { amqp_listen: "127.0.0.1:0".parse()?, .. })`
//! starts a broker in-process; `addr()` tells its port, `shutdown()` stops it. The public API
//! is what this file exports; everything else is the crate's own (`unreachable_pub` keeps it
//! that way).
// Nothing read from a peer or a file may panic the process: no unwrap or expect outside
// tests (clippy.toml allows them in tests).
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(unreachable_pub)]

mod config;
mod core;
pub mod error;
mod import;
mod listen;
mod message;
mod net;
mod pidlock;
mod store;
pub mod tls;
mod users;
pub mod websocket;
pub mod wire;

/// The broker's maps, keyed by names and ids that clients choose and looked up several times
/// per message: foldhash (seeded at random per map) costs a fraction of SipHash here.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use crate::core::declare::{ExchangeSpec, QueueSpec};
pub use crate::core::inspect::{
    BindingView, ChannelView, ConnectionView, ConsumerView, ExchangeView, QueueView,
};
pub use crate::core::policy::PolicyError;
pub use crate::core::stats::{QueueStats, Totals};
pub use crate::core::{clock, topic, Details, Protocol};
pub use config::{BrokerConfig, ExchangeDecl};
pub use error::{AmqpError, BrokerError};
pub use import::{check_import, ImportError};
pub use listen::{BindError, Listen, ListenParseError, Switch};
pub use message::Message;
pub use net::{
    feed_frames, same_secret, AckMode, Admin, AdminError, Broker, Delivered, Got, PublishError,
    Publisher, Session, Subscription, Taken,
};
pub use pidlock::{PidLock, PidLockError};
pub use store::definitions;
pub use store::json_args::{
    json_to_table as arguments_from_json, table_to_json as arguments_to_json,
};
pub use store::SEGMENT_BYTES;
pub use users::UserError;

/// The parsers that read untrusted bytes, for `fuzz/` (its targets and its corpus replay).
/// Not an API: it changes with them.
#[doc(hidden)]
pub mod fuzzing {
    use bytes::{Bytes, BytesMut};

    /// STOMP frames (and heart-beats) off the front of the input until it ends or is refused,
    /// with 1.1+ escapes or without (the first byte picks).
    pub fn stomp_frames(data: &[u8]) {
        let Some((first, rest)) = data.split_first() else {
            return;
        };
        let mut buf = BytesMut::from(rest);
        while let Ok(Some(_)) = crate::net::stomp_parse(&mut buf, 64 * 1024, first & 1 == 1) {}
    }

    /// Message-log records, one after the other, as recovery reads a segment file.
    pub fn segment_records(data: &[u8]) {
        use crate::store::record::{Decoded, Record};
        let buf = Bytes::copy_from_slice(data);
        let mut at = 0;
        while let Decoded::Record(_, taken) = Record::decode_at(&buf, at) {
            at += taken;
        }
    }

    /// A definitions file, as `definitions import` reads and checks it.
    pub fn definitions(data: &[u8]) {
        if let Ok(file) = serde_json::from_slice::<crate::definitions::DefinitionsFile>(data) {
            let _ = crate::check_import(&file);
        }
    }
}

/// Internals the criterion benchmarks measure directly. Not an API: it changes with them.
#[doc(hidden)]
pub mod bench {
    pub use crate::core::args::QueueArgs;
    pub use crate::core::queue::{Entry, Queue};
    pub use crate::store::MessageLog;
}
