//! A publisher: its own connection and channel, paced to its share of the rate (or flat
//! out), with a window of unconfirmed publishes when confirms are on. The publish time
//! travels in the first 8 bytes of the body.

use super::topology::{EXCHANGE, ROUTING_KEY};
use super::{Meter, Scenario};
use lapin::options::*;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use lapin::{Confirmation, PublisherConfirm};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

type Pending = (u64, PublisherConfirm, Option<OwnedSemaphorePermit>);

pub async fn run(
    url: String,
    _index: usize,
    s: Scenario,
    meter: Arc<Meter>,
    stop: Arc<AtomicBool>,
) -> Result<(), lapin::Error> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let window = s.confirm_window;
    let (tx, rx) = mpsc::unbounded_channel::<Pending>();
    let collector = if window > 0 {
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Some(tokio::spawn(collect_confirms(rx, meter.clone())))
    } else {
        None
    };
    let permits = Arc::new(Semaphore::new(window.max(1)));
    let props = if s.persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default()
    };
    let my_rate = s.rate as f64 / s.publishers.max(1) as f64;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut body = vec![b'x'; s.size.max(8)];
    while !stop.load(Ordering::Relaxed) {
        if my_rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / my_rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        let permit = if window > 0 {
            match permits.clone().acquire_owned().await {
                Ok(p) => Some(p),
                Err(_) => break,
            }
        } else {
            None
        };
        let sent_at = meter.now_us();
        body[..8].copy_from_slice(&sent_at.to_be_bytes());
        let confirm = ch
            .basic_publish(
                EXCHANGE.into(),
                ROUTING_KEY.into(),
                BasicPublishOptions::default(),
                &body,
                props.clone(),
            )
            .await?;
        meter.count(&meter.published);
        sent += 1;
        if window > 0 {
            let _ = tx.send((sent_at, confirm, permit));
        }
    }
    drop(tx);
    if let Some(c) = collector {
        let _ = tokio::time::timeout(Duration::from_secs(30), c).await;
    }
    conn.close(200, "done".into()).await
}

/// Awaits confirms in publish order, recording their latency and returning window permits.
async fn collect_confirms(mut rx: mpsc::UnboundedReceiver<Pending>, meter: Arc<Meter>) {
    while let Some((sent_at, confirm, permit)) = rx.recv().await {
        match confirm.await {
            Ok(Confirmation::Ack(_)) => {
                meter.record(&meter.confirm, meter.now_us().saturating_sub(sent_at));
                meter.count(&meter.confirmed);
            }
            Ok(_) => meter.count(&meter.nacked),
            Err(_) => return,
        }
        drop(permit);
    }
}
