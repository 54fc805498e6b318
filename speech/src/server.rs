//! The `/asr` WebSocket listener (`--speech-listen`): one task per session, inference on the
//! shared [`Engine`], each final utterance handed to `on_final` (the gateway publishes it).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use bloodbank_broker::clock::rfc3339;
use bloodbank_broker::tls::{self, Tls};
use bloodbank_broker::websocket;
use bloodbank_broker::Listen;
use serde_json::Value;
use uuid::Uuid;

use crate::agreement::Agreement;
use crate::engine::Engine;
use crate::error::SpeechError;
use crate::listening::Listening;
use crate::protocol::{self, ClientText, Config};
use crate::segmenter::Event;
use crate::webhook::WebhookStats;

const SAMPLE_RATE: f64 = 16_000.0;
/// New audio between two partial transcripts of the same utterance.
const PARTIAL_EVERY: usize = 16_000;

/// One final utterance, for publishing.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub session_id: Uuid,
    pub segment_id: u64,
    pub text: String,
    pub timestamp: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub processing_ms: u64,
}

pub type OnFinal = Arc<
    dyn Fn(Utterance) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync,
>;

#[derive(Clone)]
pub struct SpeechConfig {
    pub listen: Listen,
    /// `wss://` (and the page over HTTPS) with `tls`'s certificate; None: none.
    pub tls_listen: Option<Listen>,
    pub tls: Option<Tls>,
    /// Longest session; it is ended (with a message) past this.
    pub max_session: Duration,
    /// Most `/asr` sessions at once; one more is told to try again later (close 1013).
    pub max_sessions: usize,
}

/// The largest WebSocket message on `/asr`: a second of 48 kHz float audio, with room to spare.
pub const MAX_MESSAGE: usize = 256 * 1024;

/// What `/metrics` on the speech listener reports.
#[derive(Default)]
struct Counters {
    sessions: AtomicU64,
    finals: AtomicU64,
    partials: AtomicU64,
    partials_skipped: AtomicU64,
}

struct Shared {
    counters: Counters,
    /// `/asr` sessions running now.
    active: std::sync::atomic::AtomicUsize,
    /// The session limit was reached and logged (logged once until a session gets in again).
    told_full: std::sync::atomic::AtomicBool,
    webhook: Option<Arc<WebhookStats>>,
    engine: Option<Engine>,
    /// Why there is no engine (shown to clients).
    missing: String,
    on_final: OnFinal,
    config: SpeechConfig,
}

pub struct SpeechServer {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    served: tls::Served,
}

impl SpeechServer {
    /// Serves `/asr`; with `engine` None (no model), sessions get `missing` and a close code.
    pub async fn start(
        config: SpeechConfig,
        engine: Option<Engine>,
        missing: String,
        on_final: OnFinal,
        webhook: Option<Arc<WebhookStats>>,
    ) -> Result<SpeechServer, SpeechError> {
        let listeners = config.listen.bind().await?;
        let addrs = config.listen.local_addrs(&listeners)?;
        let (tls_listeners, tls_addrs) =
            tls::bind(config.tls_listen.as_ref(), config.tls.as_ref()).await?;
        let tls = config.tls.clone();
        let shared = Arc::new(Shared {
            counters: Counters::default(),
            active: Default::default(),
            told_full: Default::default(),
            webhook,
            engine,
            missing,
            on_final,
            config,
        });
        let app = Router::new()
            .route("/", get(page))
            .route("/asr", get(asr))
            .route("/metrics", get(metrics))
            .with_state(shared);
        let served = tls::spawn_app(listeners, tls_listeners, tls, app, "speech listener");
        Ok(SpeechServer {
            addrs,
            tls_addrs,
            served,
        })
    }

    /// The address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address listened on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Every `wss://` address listened on (none without TLS).
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    pub async fn stop(self) {
        self.served.stop().await;
    }
}

/// The page that records the microphone and shows the transcript live.
const PAGE: &str = include_str!("../page/index.html");

async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(PAGE)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> String {
    let c = &shared.counters;
    let mut counters: Vec<(&str, &str, &AtomicU64)> = vec![
        ("sessions_total", "Sessions opened on /asr.", &c.sessions),
        ("finals_total", "Final transcripts.", &c.finals),
        ("partials_total", "Partial transcripts sent.", &c.partials),
        (
            "partials_skipped_total",
            "Partials skipped because every worker was busy.",
            &c.partials_skipped,
        ),
    ];
    if let Some(w) = &shared.webhook {
        counters.extend([
            (
                "webhook_delivered_total",
                "Finals the webhook accepted.",
                &w.delivered,
            ),
            (
                "webhook_failed_total",
                "Finals the webhook refused after every retry.",
                &w.failed,
            ),
            (
                "webhook_dropped_total",
                "Finals not sent because the webhook queue was full.",
                &w.dropped,
            ),
        ]);
    }
    let mut out = String::new();
    for (name, help, value) in counters {
        let value = value.load(Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP bloodbank_speech_{name} {help}\n# TYPE bloodbank_speech_{name} counter\nbloodbank_speech_{name} {value}\n"
        ));
    }
    out
}

async fn asr(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .on_upgrade(move |socket| admitted(socket, shared))
}

/// Counts a session while it runs; past `max_sessions` the client is told to come back.
async fn admitted(mut socket: WebSocket, shared: Arc<Shared>) {
    let running = shared.active.fetch_add(1, Ordering::AcqRel);
    if running >= shared.config.max_sessions {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        let why = format!(
            "the server is at its limit of {} speech sessions; try again later",
            shared.config.max_sessions
        );
        if !shared.told_full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = shared.config.max_sessions,
                "speech session refused: at the limit"
            );
        }
        send(&mut socket, protocol::error(&why)).await;
        return close(socket, 1013, "too many sessions").await;
    }
    shared.told_full.store(false, Ordering::Relaxed);
    let _running = Running(shared.clone());
    session(socket, shared).await;
}

/// A session being counted; however it ends, it stops counting.
struct Running(Arc<Shared>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn send(socket: &mut WebSocket, message: Value) -> bool {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .is_ok()
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_string().into(),
        })))
        .await;
}

struct Session<'a> {
    shared: &'a Shared,
    engine: &'a Engine,
    id: Uuid,
    config: Config,
    /// Taken out while it works on the blocking pool.
    listening: Option<Listening>,
    agreement: Agreement,
    utterance_start: usize,
    partial_at: usize,
    segment_id: u64,
}

async fn session(mut socket: WebSocket, shared: Arc<Shared>) {
    let Some(engine) = shared.engine.as_ref() else {
        send(&mut socket, protocol::error(&shared.missing)).await;
        return close(socket, 1011, "speech model not installed").await;
    };
    let vad = match engine.vad().await {
        Ok(vad) => vad,
        Err(e) => {
            send(&mut socket, protocol::error(&e.to_string())).await;
            return close(socket, 1011, "voice activity detection unavailable").await;
        }
    };
    let id = Uuid::new_v4();
    shared.counters.sessions.fetch_add(1, Ordering::Relaxed);
    let mut s = Session {
        shared: &shared,
        engine,
        id,
        config: Config::default(),
        listening: Some(Listening::new(vad)),
        agreement: Agreement::default(),
        utterance_start: 0,
        partial_at: 0,
        segment_id: 0,
    };
    if !send(&mut socket, protocol::session_info(&id.to_string())).await {
        return;
    }
    let max_samples = (shared.config.max_session.as_secs_f64() * SAMPLE_RATE) as usize;
    loop {
        let message = match socket.recv().await {
            Some(Ok(message)) => message,
            // A frame the WebSocket layer refused (too big, malformed): the connection is
            // broken, so it ends here, without a "done" that would hide why.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "speech session ended by a WebSocket error");
                websocket::close_if_too_big(&mut socket, &e, MAX_MESSAGE).await;
                return;
            }
            None => break,
        };
        match message {
            Message::Binary(bytes) if bytes.is_empty() => break,
            Message::Binary(bytes) => match protocol::samples(&bytes, s.config.encoding) {
                Ok(samples) => {
                    if !s.audio(&mut socket, samples).await {
                        return;
                    }
                    if s.heard() > max_samples {
                        send(
                            &mut socket,
                            protocol::error("the session reached its maximum length"),
                        )
                        .await;
                        break;
                    }
                }
                Err(why) => {
                    if !send(&mut socket, protocol::error(&why)).await {
                        return;
                    }
                }
            },
            Message::Text(text) => match protocol::parse_text(&text) {
                Ok(ClientText::Stop) => break,
                Ok(ClientText::Config(_)) if s.heard() > 0 => {
                    send(
                        &mut socket,
                        protocol::error("config must come before any audio"),
                    )
                    .await;
                }
                Ok(ClientText::Config(config)) => match s.set_rate(config.sample_rate) {
                    Ok(()) => s.config = config,
                    Err(why) => {
                        send(&mut socket, protocol::error(&why)).await;
                    }
                },
                Err(why) => {
                    send(&mut socket, protocol::error(&why)).await;
                }
            },
            Message::Close(_) => return,
            _ => {}
        }
    }
    if let Some((audio, start)) = s.listening.as_mut().and_then(Listening::end) {
        s.finish(&mut socket, audio, start).await;
    }
    send(&mut socket, protocol::ready_to_stop()).await;
    close(socket, 1000, "done").await;
}

impl Session<'_> {
    fn heard(&self) -> usize {
        self.listening.as_ref().map_or(0, Listening::heard)
    }

    fn set_rate(&mut self, rate: u32) -> Result<(), String> {
        match self.listening.as_mut() {
            Some(listening) => listening.set_rate(rate),
            None => Err("the session is gone".into()),
        }
    }

    /// Feeds audio through voice activity detection (on the blocking pool); returns false
    /// when the socket is gone.
    async fn audio(&mut self, socket: &mut WebSocket, samples: Vec<f32>) -> bool {
        let Some(mut listening) = self.listening.take() else {
            return false;
        };
        let worked = blocking(move || {
            let events = listening.push(&samples);
            Ok((listening, events))
        })
        .await;
        let Ok((listening, events)) = worked else {
            return false;
        };
        self.listening = Some(listening);
        for event in events {
            match event {
                Event::Started { at } => {
                    self.agreement = Agreement::default();
                    self.utterance_start = at;
                    self.partial_at = 0;
                }
                Event::Finished { audio, start } => {
                    if !self.finish(socket, audio, start).await {
                        return false;
                    }
                }
            }
        }
        self.partial(socket).await
    }

    /// A partial transcript of the utterance in progress, when a worker is free.
    async fn partial(&mut self, socket: &mut WebSocket) -> bool {
        let Some(current) = self.listening.as_ref().and_then(Listening::current) else {
            return true;
        };
        if current.len() < self.partial_at + PARTIAL_EVERY {
            return true;
        }
        self.partial_at = current.len();
        let audio = current.to_vec();
        let end = self.utterance_start + audio.len();
        match self.engine.try_transcribe(audio).await {
            Some(Ok(heard)) => match self.agreement.update(&heard.text) {
                Some(text) => {
                    self.shared
                        .counters
                        .partials
                        .fetch_add(1, Ordering::Relaxed);
                    send(
                        socket,
                        protocol::transcript(
                            &text,
                            false,
                            &now(),
                            seconds(self.utterance_start),
                            seconds(end),
                            self.segment_id,
                        ),
                    )
                    .await
                }
                None => true,
            },
            Some(Err(e)) => {
                tracing::warn!(error = %e, "partial transcription failed");
                true
            }
            // Every worker is busy: this partial is skipped.
            None => {
                self.shared
                    .counters
                    .partials_skipped
                    .fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }

    /// The final transcript of an utterance: always transcribed, sent, and handed on.
    async fn finish(&mut self, socket: &mut WebSocket, audio: Vec<f32>, start: usize) -> bool {
        let end = start + audio.len();
        let heard = match self.engine.transcribe(audio).await {
            Ok(heard) => heard,
            Err(e) => {
                return send(
                    socket,
                    protocol::error(&format!("transcription failed: {e}")),
                )
                .await
            }
        };
        let segment_id = self.segment_id;
        self.segment_id += 1;
        if heard.text.is_empty() {
            return true;
        }
        self.shared.counters.finals.fetch_add(1, Ordering::Relaxed);
        let timestamp = now();
        let sent = send(
            socket,
            protocol::transcript(
                &heard.text,
                true,
                &timestamp,
                seconds(start),
                seconds(end),
                segment_id,
            ),
        )
        .await;
        let utterance = Utterance {
            session_id: self.id,
            segment_id,
            text: heard.text,
            timestamp,
            start_ms: (seconds(start) * 1000.0) as u64,
            end_ms: (seconds(end) * 1000.0) as u64,
            processing_ms: heard.processing_ms,
        };
        if let Err(e) = (self.shared.on_final)(utterance).await {
            tracing::warn!(session = %self.id, segment_id, error = %e, "publishing a transcript failed");
        }
        sent
    }
}

fn seconds(samples: usize) -> f64 {
    samples as f64 / SAMPLE_RATE
}

fn now() -> String {
    rfc3339(bloodbank_broker::clock::now_ms())
}

/// Runs blocking work (inference, model loading) on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SpeechError> + Send + 'static,
) -> Result<T, SpeechError> {
    tokio::task::spawn_blocking(work).await?
}
