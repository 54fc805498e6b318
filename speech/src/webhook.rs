//! Posting each final transcript to an n8n-style webhook, off the transcription path: a
//! bounded queue feeds one thread that retries with backoff; when the queue is full the new
//! item is dropped and counted, so a slow or dead webhook never slows transcription.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

const QUEUE: usize = 1000;
const ATTEMPTS: u32 = 5;

#[derive(Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Webhook {
    queue: SyncSender<Value>,
    pub stats: Arc<WebhookStats>,
}

impl Webhook {
    /// `url`: `http://host:port/path`.
    pub fn start(url: &str) -> Result<Webhook, String> {
        let (addr, path) = bloodbank_gateway::client::split_url(url)?;
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        let (queue, items) = sync_channel::<Value>(QUEUE);
        let stats = Arc::new(WebhookStats::default());
        let counters = stats.clone();
        std::thread::Builder::new()
            .name("speech-webhook".into())
            .spawn(move || {
                for body in items {
                    let bytes = body.to_string();
                    let mut delay = Duration::from_millis(250);
                    let mut delivered = false;
                    for attempt in 1..=ATTEMPTS {
                        let headers = [("Content-Type", "application/json")];
                        match bloodbank_gateway::client::request(
                            &addr,
                            "POST",
                            &path,
                            &headers,
                            bytes.as_bytes(),
                        ) {
                            Ok(r) if (200..300).contains(&r.status) => {
                                delivered = true;
                                break;
                            }
                            Ok(r) => tracing::warn!(
                                attempt,
                                status = r.status,
                                "webhook refused a transcript"
                            ),
                            Err(e) => tracing::warn!(attempt, error = %e, "webhook unreachable"),
                        }
                        if attempt < ATTEMPTS {
                            std::thread::sleep(delay);
                            delay *= 2;
                        }
                    }
                    let counter = if delivered {
                        &counters.delivered
                    } else {
                        &counters.failed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Webhook { queue, stats })
    }

    /// Queues `{timestamp, text, source: "voice_transcription", session_id}`; never waits.
    pub fn send(&self, timestamp: &str, text: &str, session_id: &str) {
        let body = serde_json::json!({"timestamp": timestamp, "text": text, "source": "voice_transcription", "session_id": session_id});
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(body)
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
