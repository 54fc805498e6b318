//! Bloodbank's AMQP 0.9.1 broker.
//!
//! - `wire`: frame splitting and encoding (no I/O)
//! - `core`: exchanges, routing, queues, consumers and acks as plain state (no I/O)
//! - `store`: where messages are kept
//! - `net`: tokio tasks per connection, the listener, shutdown
//!
//! Embedding: `Broker::start(BrokerConfig { amqp_listen: "127.0.0.1:0".parse()?, .. })`
//! starts a broker in-process; `addr()` tells its port, `shutdown()` stops it.

pub mod core;
pub mod error;
pub mod net;
pub mod store;
pub mod wire;

mod config;
mod listen;
mod pidlock;

pub use config::{BrokerConfig, ExchangeDecl, User};
pub use error::{AmqpError, BrokerError};
pub use listen::{BindError, Listen, ListenParseError};
pub use net::Broker;
pub use pidlock::{PidLock, PidLockError};
