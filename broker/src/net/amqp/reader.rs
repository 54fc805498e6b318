//! The reading half of a connection: a buffer that is filled from the socket and cut into frames.

use crate::error::AmqpError;
use crate::wire::{decode_frame, Frame};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) struct FrameReader<R> {
    sock: R,
    buf: BytesMut,
    /// Negotiated maximum frame size (header and end octet included).
    pub frame_max: u32,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(sock: R, frame_max: u32) -> Self {
        FrameReader {
            sock,
            buf: BytesMut::with_capacity(64 * 1024),
            frame_max,
        }
    }

    /// The next frame already buffered, if a whole one is.
    pub(crate) fn try_frame(&mut self) -> Result<Option<Frame>, AmqpError> {
        decode_frame(&mut self.buf, self.frame_max)
    }

    /// Reads more bytes; Ok(0) is the end of the stream.
    pub(crate) async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(64 * 1024);
        }
        self.sock.read_buf(&mut self.buf).await
    }

    /// After `connection.close-ok`: reads and drops whatever the peer still sends until it
    /// closes its side, for at most `limit`. Closing a socket with unread bytes would reset
    /// the connection, and a client still writing (publishes queued behind its close) would
    /// see an error instead of its close completing.
    pub(crate) async fn drain(&mut self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                self.buf.clear();
                match self.fill().await {
                    Ok(n) if n > 0 => {}
                    _ => return,
                }
            }
        })
        .await;
    }

    /// Waits for the next whole frame; None at the end of the stream.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.try_frame().map_err(ReadError::Protocol)? {
                return Ok(Some(frame));
            }
            if self.fill().await.map_err(|_| ReadError::Io)? == 0 {
                return Ok(None);
            }
        }
    }
}

#[derive(Debug)]
pub(crate) enum ReadError {
    Io,
    Protocol(AmqpError),
}
