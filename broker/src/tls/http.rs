//! Serving the HTTP apps (gateway, management, speech): `spawn_app` runs an app over plain
//! TCP or TLS, one task per connection, with a bound on how long a client may take to send a
//! request's headers (a slow-loris client is dropped; axum's own `serve` sets no such bound),
//! and stops gracefully: requests in progress are answered.
//! `TlsListener` hands on connections after their TLS handshake; handshakes run in tasks of
//! their own, each bounded by a timeout, so a slow or silent client holds up nobody else.

use super::{Tls, HANDSHAKE_TIMEOUT};
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use axum::serve::Listener;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::server::TlsStream;

/// Most handshakes finished but not yet taken by the server.
const READY: usize = 64;

/// Accepts TCP connections on a listener and hands on the ones whose TLS handshake worked.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: Tls) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY);
        let accepting = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (tls.acceptor(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended only when it was aborted, which happens on drop.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// An HTTP app `spawn_app` serves: an axum `Router`, or one wrapped in layers.
pub trait App:
    tower_service::Service<Request, Response = Response, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower_service::Service<Request, Response = Response, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// How long a client may take to send a request's headers, from the connection's start or
/// the previous response.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long requests in progress may take to finish once a server is told to stop.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener`, over TLS with `tls`, until `stop` says so (or its sender is
/// gone); handlers find the client's address as `ConnectInfo<SocketAddr>` either way.
async fn serve_app(
    listener: TcpListener,
    tls: Option<Tls>,
    app: impl App,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    match tls {
        None => serve(listener, app, stop).await,
        Some(tls) => serve(TlsListener::new(listener, tls)?, app, stop).await,
    }
    Ok(())
}

/// Accepts connections until told to stop; then closes the listener, lets every request in
/// progress finish and closes idle keep-alive connections (for up to [`DRAIN`]), so a client
/// whose publish was accepted gets its answer.
async fn serve<L>(mut listener: L, app: impl App, mut stop: watch::Receiver<bool>)
where
    L: Listener<Addr = SocketAddr>,
{
    let graceful = GracefulShutdown::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let mut request = request.map(axum::body::Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                tower_service::Service::call(&mut app.clone(), request)
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress after {DRAIN:?}: cut off");
    }
}

/// Binds the addresses of a TLS listener: none when it is off or there is no certificate.
pub async fn bind(
    listen: Option<&crate::Listen>,
    tls: Option<&Tls>,
) -> Result<(Vec<TcpListener>, Vec<SocketAddr>), crate::BindError> {
    match (listen, tls) {
        (Some(listen), Some(_)) => {
            let bound = listen.bind().await?;
            let addrs = listen.local_addrs(&bound)?;
            Ok((bound, addrs))
        }
        _ => Ok(Default::default()),
    }
}

/// The servers [`spawn_app`] started. `stop` closes their listeners and waits for the
/// requests in progress (up to [`DRAIN`]); dropping it stops them without waiting.
pub struct Served {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Serves `app` on every plain listener and, with `tls`, on every TLS one, each in a task of
/// its own; `what` names the server in the log if one stops.
pub fn spawn_app(
    plain: Vec<TcpListener>,
    secure: Vec<TcpListener>,
    tls: Option<Tls>,
    app: impl App,
    what: &'static str,
) -> Served {
    let (stop, stopped) = watch::channel(false);
    let plain = plain.into_iter().map(|l| (l, None));
    let secure = secure.into_iter().map(|l| (l, tls.clone()));
    let tasks = plain
        .chain(secure)
        .map(|(listener, tls)| {
            let (app, stopped) = (app.clone(), stopped.clone());
            tokio::spawn(async move {
                if let Err(e) = serve_app(listener, tls, app, stopped).await {
                    tracing::error!(error = %e, "{what} stopped");
                }
            })
        })
        .collect();
    Served { stop, tasks }
}
