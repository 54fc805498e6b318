//! The byte streams protocols run over: plain TCP, or TCP under TLS. A stream splits into
//! halves the reader and writer tasks own, and says what TLS learnt of the client.

use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: AsyncWrite + Unpin + Send + 'static;

    fn local_addr(&self) -> Option<SocketAddr>;
    fn is_tls(&self) -> bool;
    /// The client's certificate, verified against the configured CA (TLS only, and only
    /// when the client sent one).
    fn peer_certificate(&self) -> Option<CertificateDer<'static>>;
    fn split(self) -> (Self::Read, Self::Write);
}

impl Stream for TcpStream {
    type Read = OwnedReadHalf;
    type Write = OwnedWriteHalf;

    fn local_addr(&self) -> Option<SocketAddr> {
        TcpStream::local_addr(self).ok()
    }

    fn is_tls(&self) -> bool {
        false
    }

    fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        None
    }

    fn split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }
}

impl Stream for TlsStream<TcpStream> {
    type Read = ReadHalf<Self>;
    type Write = WriteHalf<Self>;

    fn local_addr(&self) -> Option<SocketAddr> {
        self.get_ref().0.local_addr().ok()
    }

    fn is_tls(&self) -> bool {
        true
    }

    fn peer_certificate(&self) -> Option<CertificateDer<'static>> {
        let certs = self.get_ref().1.peer_certificates()?;
        certs.first().map(|c| c.clone().into_owned())
    }

    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}
