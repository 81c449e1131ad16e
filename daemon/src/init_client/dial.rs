//! A TCP connection to a port on a sandbox's own loopback, relayed by sandbox-init
//! (`Request::Dial`), as an ordinary async byte stream.
//!
//! A task moves bytes between the socket's frames and one end of an in-memory pipe
//! (64 KiB each way, so memory is bounded and a side that does not read stalls the
//! other); [`DialStream`] is the other end. Shutting down its writing half half-closes
//! the TCP connection; the TCP peer's end of stream is the stream's end; dropping it,
//! or the sandbox going away, ends the relay and closes the TCP connection.

use std::pin::Pin;
use std::task::{Context, Poll};

use sandbox_init::protocol::{Frame, Reply, Request, CHUNK_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::{frame_name, Conn, InitError};

/// The in-memory pipe's capacity each way.
const PIPE_LEN: usize = 64 * 1024;

/// A dialed connection (see the module).
#[derive(Debug)]
pub struct DialStream {
    pipe: DuplexStream,
    /// Dropped with the stream: the relay task ends.
    _cancel: oneshot::Sender<()>,
}

impl DialStream {
    /// Starts the relay over `conn`, positioned after the dial's `Ok`.
    /// `permit` is held until the relay ends (the socket connection is closed).
    pub(super) fn start(conn: Conn, permit: OwnedSemaphorePermit) -> Self {
        let (pipe, ours) = tokio::io::duplex(PIPE_LEN);
        let (cancel, cancelled) = oneshot::channel();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = cancelled => {}
                result = relay(conn, ours) => {
                    if let Err(e) = result {
                        tracing::debug!("a dialed connection ended: {e}");
                    }
                }
            }
        });
        Self {
            pipe,
            _cancel: cancel,
        }
    }
}

async fn relay(conn: Conn, ours: DuplexStream) -> Result<(), InitError> {
    let (mut reader, mut writer) = conn.split();
    let (mut from_user, mut to_user) = tokio::io::split(ours);
    let up = async {
        let mut buf = vec![0u8; CHUNK_LEN];
        loop {
            let n = from_user.read(&mut buf).await?;
            if n == 0 {
                return writer.send(&Frame::Message(Request::CloseStdin)).await;
            }
            writer.send(&Frame::Data(buf[..n].to_vec())).await?;
        }
    };
    let down = async {
        loop {
            match reader.recv().await? {
                Some(Frame::Data(bytes)) => to_user.write_all(&bytes).await?,
                Some(Frame::Message(Reply::End)) => {
                    to_user.shutdown().await?;
                    return Ok(());
                }
                Some(Frame::Message(Reply::Error { kind, message })) => {
                    return Err(InitError::Remote { kind, message })
                }
                Some(other) => {
                    return Err(InitError::Protocol(format!(
                        "expected data during a dial, got {}",
                        frame_name(&other)
                    )))
                }
                None => return Err(InitError::Closed("the sandbox closed the dial".into())),
            }
        }
    };
    tokio::try_join!(up, down).map(|_| ())
}

impl AsyncRead for DialStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for DialStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}
