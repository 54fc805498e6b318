//! What a broker is started with.

use crate::core::Limits;
use crate::listen::Listen;
use crate::tls::Tls;
use std::path::PathBuf;

/// An exchange that exists from the start (durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeDecl {
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Plain AMQP; `Listen::none()`: off (AMQP only over TLS, or only in-process).
    pub amqp_listen: Listen,
    /// STOMP over TCP; None: off.
    pub stomp_listen: Option<Listen>,
    /// STOMP over WebSocket (`/ws`, Web-STOMP); None: off.
    pub stomp_ws_listen: Option<Listen>,
    /// The certificate of the TLS listeners below; None: no TLS listener starts.
    pub tls: Option<Tls>,
    /// AMQP over TLS (`amqps`); None: off.
    pub amqps_listen: Option<Listen>,
    /// STOMP over TLS; None: off.
    pub stomps_listen: Option<Listen>,
    /// Web-STOMP over TLS (`wss://…/ws`); None: off.
    pub stomp_wss_listen: Option<Listen>,
    /// Where users, durable definitions and persistent messages live. None: nothing survives
    /// a restart, and the one user is RabbitMQ's default `guest` (for tests that embed a
    /// broker).
    pub data_dir: Option<PathBuf>,
    /// Message log segment size in bytes.
    pub segment_bytes: u64,
    /// Resident memory above which publishers are blocked.
    pub memory_high_watermark: u64,
    /// Free disk space below which publishers are blocked.
    pub disk_free_limit: u64,
    pub exchanges: Vec<ExchangeDecl>,
    pub limits: Limits,
    /// Most AMQP connections open at once (RabbitMQ's `connection_max`); None: no limit.
    pub connection_max: Option<usize>,
    /// Offered in `connection.tune`: the most channels a connection may open.
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            amqp_listen: Listen::any(5672),
            stomp_listen: None,
            stomp_ws_listen: None,
            tls: None,
            amqps_listen: None,
            stomps_listen: None,
            stomp_wss_listen: None,
            data_dir: None,
            segment_bytes: 64 * 1024 * 1024,
            memory_high_watermark: crate::net::default_memory_high_watermark(),
            disk_free_limit: 50 * 1000 * 1000,
            exchanges: ["events", "bloodbank.events.v1"]
                .into_iter()
                .map(|name| ExchangeDecl {
                    name: name.into(),
                    kind: "topic".into(),
                })
                .collect(),
            limits: Limits::default(),
            connection_max: None,
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        }
    }
}
