//! The writing half of a connection: turns `Outbound` work into frames, batches whatever is
//! queued into one write, and sends heartbeats when the connection is otherwise quiet.

use crate::core::{Outbound, Window};
use crate::message::Message;
use crate::wire::{
    encode_content, encode_heartbeat, encode_message_method, encode_method, MessageMethod,
};
use amq_protocol::protocol::{basic, AMQPClass};
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::{interval_at, Instant, MissedTickBehavior};

/// Stop gathering queued work into one write past this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    mut sock: W,
    mut rx: UnboundedReceiver<Outbound>,
    window: Arc<Window>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut frame_max: u32 = 131_072;
    // Until tune, no heartbeats: a tick far away.
    let mut beat = interval_at(
        Instant::now() + Duration::from_secs(86_400),
        Duration::from_secs(86_400),
    );
    let mut wrote_since_tick = false;
    loop {
        let first = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = beat.tick() => {
                if !wrote_since_tick {
                    encode_heartbeat(&mut buf);
                    if sock.write_all(&buf).await.is_err() {
                        return;
                    }
                    buf.clear();
                }
                wrote_since_tick = false;
                continue;
            }
        };
        let mut next = Some(first);
        let mut done = false;
        let mut content = 0;
        while let Some(msg) = next.take() {
            content += msg.content_bytes();
            match msg {
                Outbound::Shutdown => {
                    done = true;
                    break;
                }
                Outbound::Tune {
                    frame_max: fm,
                    heartbeat,
                } => {
                    frame_max = fm;
                    if heartbeat > 0 {
                        let period = Duration::from_millis(heartbeat as u64 * 500);
                        beat = interval_at(Instant::now() + period, period);
                        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    }
                }
                other => encode(&mut buf, other, frame_max),
            }
            if buf.len() < BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !buf.is_empty() {
            if sock.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
            wrote_since_tick = true;
        }
        window.written(content);
        if done {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

fn encode(buf: &mut BytesMut, out: Outbound, frame_max: u32) {
    match out {
        Outbound::Method(channel, method) => encode_method(buf, channel, &method),
        Outbound::Tune { .. } | Outbound::Shutdown => {}
        Outbound::Consuming {
            channel,
            consumer_tag,
        } => {
            let method = basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                consumer_tag: consumer_tag.to_string().into(),
            });
            encode_method(buf, channel, &AMQPClass::Basic(method));
        }
        Outbound::Cancelled {
            channel,
            consumer_tag,
        } => {
            let method = basic::AMQPMethod::Cancel(basic::Cancel {
                consumer_tag: consumer_tag.to_string().into(),
                nowait: true,
            });
            encode_method(buf, channel, &AMQPClass::Basic(method));
        }
        Outbound::GetEmpty { channel } => {
            let method = basic::AMQPMethod::GetEmpty(basic::GetEmpty {});
            encode_method(buf, channel, &AMQPClass::Basic(method));
        }
        Outbound::Deliver {
            channel,
            consumer_tag,
            delivery_tag,
            redelivered,
            message,
        } => {
            let method = MessageMethod::Deliver {
                consumer_tag: &consumer_tag,
                delivery_tag,
                redelivered,
            };
            encode_message(buf, channel, method, &message, frame_max);
        }
        Outbound::GetOk {
            channel,
            delivery_tag,
            redelivered,
            message_count,
            message,
        } => {
            let method = MessageMethod::GetOk {
                delivery_tag,
                redelivered,
                message_count,
            };
            encode_message(buf, channel, method, &message, frame_max);
        }
        Outbound::Return {
            channel,
            reply_code,
            reply_text,
            message,
        } => {
            let method = MessageMethod::Return {
                reply_code,
                reply_text: &reply_text,
            };
            encode_message(buf, channel, method, &message, frame_max);
        }
    }
}

/// A message going out: its method frame, content header and body frames.
fn encode_message(
    buf: &mut BytesMut,
    channel: u16,
    method: MessageMethod,
    message: &Message,
    frame_max: u32,
) {
    encode_message_method(
        buf,
        channel,
        method,
        &message.exchange,
        &message.routing_key,
    );
    encode_content(
        buf,
        channel,
        &message.raw_properties,
        &message.body,
        frame_max,
    );
}
