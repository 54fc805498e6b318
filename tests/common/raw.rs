//! A hand-driven AMQP client over raw TCP: for what real clients never send, and for exact
//! sequences of frames.

use amq_protocol::protocol::{connection, AMQPClass};
use bloodbank_broker::wire::{decode_frame, encode_method, Frame, PROTOCOL_HEADER};
use bytes::BytesMut;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A hand-driven AMQP client for what real clients never send.
pub struct Raw {
    pub sock: TcpStream,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw {
            sock: TcpStream::connect(addr).await.unwrap(),
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    pub async fn method(&mut self, channel: u16, method: AMQPClass) {
        let mut out = BytesMut::new();
        encode_method(&mut out, channel, &method);
        self.send(&out).await;
    }

    /// The next frame, or None when the server closes the socket.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.sock.read_buf(&mut self.buf))
                .await
                .expect("server answers within 5 s")
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Protocol header, start, start-ok as guest; returns when tune has arrived.
    pub async fn until_tune(addr: std::net::SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(PROTOCOL_HEADER).await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Start(_))
            ))
        ));
        let start_ok = connection::StartOk {
            client_properties: Default::default(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0guest".into(),
            locale: "en_US".into(),
        };
        raw.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok)),
        )
        .await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Tune(_))
            ))
        ));
        raw
    }

    pub async fn tune_ok(&mut self, frame_max: u32, heartbeat: u16) {
        let tune_ok = connection::TuneOk {
            channel_max: 0,
            frame_max,
            heartbeat,
        };
        self.method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(tune_ok)),
        )
        .await;
    }

    /// Handshake as guest with the given frame_max and heartbeat.
    pub async fn open(addr: std::net::SocketAddr, frame_max: u32, heartbeat: u16) -> Raw {
        let mut raw = Raw::until_tune(addr).await;
        raw.tune_ok(frame_max, heartbeat).await;
        let open = connection::Open {
            virtual_host: "/".into(),
        };
        raw.method(0, AMQPClass::Connection(connection::AMQPMethod::Open(open)))
            .await;
        assert!(matches!(
            raw.frame().await,
            Some(Frame::Method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))
            ))
        ));
        raw
    }

    /// Reads until a connection.close arrives; returns its reply code.
    pub async fn expect_connection_close(&mut self) -> u16 {
        loop {
            match self.frame().await {
                Some(Frame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(c)))) => {
                    return c.reply_code
                }
                Some(_) => continue,
                None => panic!("socket closed without connection.close"),
            }
        }
    }
}
