//! A consumer: its own connection, prefetch, manual ack of every message, recording the
//! publish-to-consume latency carried in the body.

use super::{Meter, Scenario};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub struct Running {
    conn: Connection,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.conn.close(200, "done".into()).await;
    }
}

pub async fn start(
    url: &str,
    queue: &str,
    s: &Scenario,
    meter: Arc<Meter>,
    _stop: Arc<AtomicBool>,
) -> Result<Running, lapin::Error> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(s.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let task = tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            if d.data.len() >= 8 {
                let sent_at = u64::from_be_bytes(d.data[..8].try_into().unwrap_or_default());
                meter.record(&meter.end_to_end, meter.now_us().saturating_sub(sent_at));
            }
            meter.count(&meter.consumed);
            if d.ack(BasicAckOptions::default()).await.is_err() {
                return;
            }
        }
    });
    Ok(Running { conn, task })
}
