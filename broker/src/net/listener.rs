//! Accepting TCP connections (plain or TLS) for a protocol until shutdown, then waiting for
//! the connections to finish (each closes itself when it sees the shutdown).

use super::Shared;
use crate::tls::{Tls, HANDSHAKE_TIMEOUT};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

/// Runs `serve` for every connection `listener` accepts.
pub(super) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<Shared>, watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(serve(stream, peer, shared.clone(), shutdown.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// Runs `serve` for every connection `listener` accepts whose TLS handshake succeeds within
/// the handshake timeout (a failed or slow one holds up only itself).
pub(super) async fn accept_tls_loop<F, Fut>(
    listener: TcpListener,
    tls: Tls,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(TlsStream<TcpStream>, SocketAddr, Arc<Shared>, watch::Receiver<bool>) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop(
        listener,
        shared,
        shutdown,
        move |stream, peer, shared, shutdown| {
            let (acceptor, serve) = (tls.acceptor(), serve.clone());
            async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve(stream, peer, shared, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        },
    )
    .await
}
