//! Opening a connection: protocol header, start/start-ok (authentication), tune/tune-ok and
//! connection.open, with RabbitMQ's limits and error codes.

use super::reader::{FrameReader, ReadError};
use crate::core::{Outbound, Outlet};
use crate::error::AmqpError;
use crate::net::auth::credentials;
use crate::net::Shared;
use crate::wire::method_ids::CONNECTION_OPEN;
use crate::wire::Frame;
use amq_protocol::protocol::{connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::AsyncRead;

/// The smallest frame_max AMQP 0.9.1 allows.
const MIN_FRAME_MAX: u32 = 4096;

/// What the handshake settled.
#[derive(Debug, Clone)]
pub(crate) struct Negotiated {
    pub vhost: String,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub cancel_notify: bool,
    /// The client understands `connection.blocked` / `unblocked`.
    pub blocked_notify: bool,
    pub user: String,
    /// What the user may do in the vhost.
    pub access: crate::core::access::Access,
    pub frame_max: u32,
    /// What the client said about itself in `connection.start-ok`.
    pub client_properties: FieldTable,
    /// How the client logged in.
    pub mechanism: String,
}

/// Why a handshake did not finish.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The peer went away or broke the socket.
    Gone,
    /// Close the connection with this error (if the client can take a close at this point).
    Refused(AmqpError, bool),
}

impl From<ReadError> for HandshakeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Io => HandshakeError::Gone,
            ReadError::Protocol(err) => HandshakeError::Refused(err, true),
        }
    }
}

pub(crate) fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let s = |v: &str| AMQPValue::LongString(LongString::from(v));
    props.insert("product".into(), s("Bloodbank"));
    props.insert("version".into(), s(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), s("Rust"));
    props.insert("information".into(), s("The 33GOD event bus"));
    props.insert("cluster_name".into(), s("bloodbank"));
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

fn send(tx: &Outlet, method: connection::AMQPMethod) {
    let _ = tx.send(Outbound::Method(0, AMQPClass::Connection(method)));
}

async fn expect<R: AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
) -> Result<connection::AMQPMethod, HandshakeError> {
    loop {
        match reader.next_frame().await? {
            None => return Err(HandshakeError::Gone),
            Some(Frame::Heartbeat(0)) => continue,
            Some(Frame::Method(0, AMQPClass::Connection(m))) => return Ok(m),
            Some(_) => {
                return Err(HandshakeError::Refused(
                    AmqpError::command_invalid("expected a connection method during the handshake"),
                    true,
                ))
            }
        }
    }
}

/// `certified`: the user a verified client certificate names, if any; only then is EXTERNAL
/// offered (as `rabbitmq_auth_mechanism_ssl` does).
pub(crate) async fn handshake<R: AsyncRead + Unpin>(
    shared: &Shared,
    reader: &mut FrameReader<R>,
    tx: &Outlet,
    peer: IpAddr,
    certified: Option<&str>,
) -> Result<Negotiated, HandshakeError> {
    let config = &shared.config;
    let mechanisms = match certified {
        Some(_) => "PLAIN AMQPLAIN EXTERNAL",
        None => "PLAIN AMQPLAIN",
    };
    send(
        tx,
        connection::AMQPMethod::Start(connection::Start {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: mechanisms.into(),
            locales: "en_US".into(),
        }),
    );
    let connection::AMQPMethod::StartOk(start_ok) = expect(reader).await? else {
        return Err(HandshakeError::Refused(
            AmqpError::command_invalid("expected connection.start-ok"),
            false,
        ));
    };
    let client_caps = match start_ok.client_properties.inner().get("capabilities") {
        Some(AMQPValue::FieldTable(t)) => t.clone(),
        _ => FieldTable::default(),
    };
    let has_cap = |name: &str| {
        matches!(
            client_caps.inner().get(name),
            Some(AMQPValue::Boolean(true))
        )
    };
    let mechanism = start_ok.mechanism.as_str();
    let pause = shared.logins.pause(peer, Instant::now());
    if !pause.is_zero() {
        tokio::time::sleep(pause).await;
    }
    let login = match (mechanism, certified) {
        // The certificate was verified in the TLS handshake: the name is the proof.
        ("EXTERNAL", Some(name)) => users(shared)
            .may_log_in(name, peer)
            .then(|| name.to_string()),
        ("EXTERNAL", None) => None,
        _ => credentials(mechanism, start_ok.response.as_bytes())
            .filter(|(user, pass)| users(shared).authenticate(user, pass, peer))
            .map(|(user, _)| user),
    };
    let user = match login {
        Some(user) => {
            shared.logins.succeeded(peer);
            user
        }
        _ => {
            shared.logins.failed(peer, Instant::now());
            let err = AmqpError::access_refused(format!(
                "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
            ));
            return Err(HandshakeError::Refused(
                err,
                has_cap("authentication_failure_close"),
            ));
        }
    };
    send(
        tx,
        connection::AMQPMethod::Tune(connection::Tune {
            channel_max: config.channel_max,
            frame_max: config.frame_max,
            heartbeat: config.heartbeat,
        }),
    );
    let connection::AMQPMethod::TuneOk(tune_ok) = expect(reader).await? else {
        return Err(HandshakeError::Refused(
            AmqpError::command_invalid("expected connection.tune-ok"),
            true,
        ));
    };
    let frame_max = match tune_ok.frame_max {
        0 => config.frame_max,
        n => n.min(config.frame_max),
    };
    if frame_max < MIN_FRAME_MAX {
        return Err(HandshakeError::Refused(
            AmqpError::not_allowed(format!("frame_max={frame_max} < {MIN_FRAME_MAX} min size")),
            true,
        ));
    }
    let channel_max = match tune_ok.channel_max {
        0 => config.channel_max,
        n => n.min(config.channel_max),
    };
    reader.frame_max = frame_max;
    let _ = tx.send(Outbound::Tune {
        frame_max,
        heartbeat: tune_ok.heartbeat,
    });
    let connection::AMQPMethod::Open(open) = expect(reader).await? else {
        return Err(HandshakeError::Refused(
            AmqpError::command_invalid("expected connection.open"),
            true,
        ));
    };
    let vhost = open.virtual_host.as_str().to_string();
    let known = shared.lock().has_vhost(&vhost);
    let connections = shared.amqp_connections.load(Ordering::Relaxed);
    if let Some(max) = shared
        .config
        .connection_max
        .filter(|max| connections >= *max)
    {
        tracing::warn!(limit = max, "connection refused: connection_max reached");
        return Err(HandshakeError::Refused(
            AmqpError::not_allowed(format!(
                "connection refused: node connection limit ({max}) is reached"
            ))
            .on(CONNECTION_OPEN),
            true,
        ));
    }
    if !known {
        return Err(HandshakeError::Refused(
            AmqpError::not_allowed(format!("vhost '{vhost}' not found")).on(CONNECTION_OPEN),
            true,
        ));
    }
    let Some(access) = users(shared).access(&user, &vhost) else {
        return Err(HandshakeError::Refused(
            AmqpError::not_allowed(format!(
                "access to vhost '{vhost}' refused for user '{user}'"
            ))
            .on(CONNECTION_OPEN),
            true,
        ));
    };
    send(tx, connection::AMQPMethod::OpenOk(connection::OpenOk {}));
    Ok(Negotiated {
        vhost,
        channel_max,
        heartbeat: tune_ok.heartbeat,
        cancel_notify: has_cap("consumer_cancel_notify"),
        blocked_notify: has_cap("connection.blocked"),
        user,
        access,
        frame_max,
        client_properties: start_ok.client_properties,
        mechanism: start_ok.mechanism.to_string(),
    })
}

fn users(shared: &Shared) -> std::sync::RwLockReadGuard<'_, crate::users::Users> {
    shared.users.read().unwrap_or_else(|p| p.into_inner())
}
