//! One connection to sandbox-init: typed frames both ways, and the receiving half's
//! bound on an exec's output.

use sandbox_init::protocol::{decode_header, Frame, Reply, Request, CHUNK_LEN, HEADER_LEN};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::InitError;

/// One open connection.
#[derive(Debug)]
pub struct Conn {
    pub(super) reader: FrameReader,
    pub(super) writer: FrameWriter,
}

impl Conn {
    /// Wraps a connected (and checked) stream.
    pub(super) fn new(stream: UnixStream) -> Self {
        let (r, w) = stream.into_split();
        Self {
            reader: FrameReader {
                inner: BufReader::with_capacity(CHUNK_LEN + HEADER_LEN, r),
                partial: Vec::new(),
                payload: Vec::new(),
                output_left: None,
            },
            writer: FrameWriter(BufWriter::new(w)),
        }
    }

    /// Cuts the peer off once it sends more than `limit` bytes of stdout or of stderr.
    pub(super) fn limit_output(&mut self, limit: u64) {
        self.reader.output_left = Some([limit, limit]);
    }

    /// Sends one frame and flushes it.
    pub async fn send(&mut self, frame: &Frame<Request>) -> Result<(), InitError> {
        self.writer.send(frame).await
    }

    /// Receives one frame; `None` when the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame<Reply>>, InitError> {
        self.reader.recv().await
    }

    /// Receives the next frame, which must be a message.
    pub async fn recv_reply(&mut self) -> Result<Reply, InitError> {
        match self.recv().await? {
            Some(Frame::Message(Reply::Error { kind, message })) => {
                Err(InitError::Remote { kind, message })
            }
            Some(Frame::Message(reply)) => Ok(reply),
            Some(other) => Err(InitError::Protocol(format!(
                "expected a message, got {}",
                frame_name(&other)
            ))),
            None => Err(InitError::Closed("the connection closed early".into())),
        }
    }

    /// Splits into halves for full-duplex use (a streaming exec).
    pub fn split(self) -> (FrameReader, FrameWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct FrameReader {
    inner: BufReader<OwnedReadHalf>,
    /// The header of the frame being read and its payload so far, kept across
    /// calls: a `recv` abandoned in a `select!` loses nothing it had read.
    partial: Vec<u8>,
    payload: Vec<u8>,
    /// For an exec with an `output_limit`: the stdout and stderr bytes still allowed.
    output_left: Option<[u64; 2]>,
}

impl FrameReader {
    /// Receives one frame; `None` when the server closed the connection. An exec's
    /// output past its `output_limit` (which sandbox-init enforces, so only an impostor
    /// or a broken peer sends it) is a protocol error: the peer is cut off.
    ///
    /// Cancel-safe: dropped before it returns, it keeps what it read for the next call.
    pub async fn recv(&mut self) -> Result<Option<Frame<Reply>>, InitError> {
        let frame = self.read_frame().await?;
        if let Some(left) = self.output_left.as_mut() {
            let (index, len, stream) = match &frame {
                Some(Frame::Stdout(b)) => (0, b.len(), "stdout"),
                Some(Frame::Stderr(b)) => (1, b.len(), "stderr"),
                _ => return Ok(frame),
            };
            left[index] = left[index].checked_sub(len as u64).ok_or_else(|| {
                tracing::warn!("cutting off a sandbox that sent {stream} past its output limit");
                InitError::Protocol(format!("it sent {stream} past the output limit"))
            })?;
        }
        Ok(frame)
    }
}

impl FrameReader {
    /// Reads one whole frame, keeping what it read in `partial` (the header) and
    /// `payload`; each step after the one await is synchronous, so nothing read is
    /// lost when the call is dropped at that await.
    async fn read_frame(&mut self) -> Result<Option<Frame<Reply>>, InitError> {
        loop {
            let wanted = if self.partial.len() < HEADER_LEN {
                HEADER_LEN - self.partial.len()
            } else {
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&self.partial);
                let (kind, len) = decode_header(header)?;
                if self.payload.len() == len {
                    self.partial.clear();
                    let payload = std::mem::take(&mut self.payload);
                    return Ok(Some(Frame::from_parts(kind, payload)?));
                }
                self.payload.reserve_exact(len - self.payload.len());
                len - self.payload.len()
            };
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if self.partial.is_empty() {
                    return Ok(None);
                }
                return Err(InitError::Closed(
                    "the connection closed in the middle of a frame".into(),
                ));
            }
            let take = wanted.min(available.len());
            if self.partial.len() < HEADER_LEN {
                self.partial.extend_from_slice(&available[..take]);
            } else {
                self.payload.extend_from_slice(&available[..take]);
            }
            self.inner.consume(take);
        }
    }
}

/// The sending half of a connection.
#[derive(Debug)]
pub struct FrameWriter(BufWriter<OwnedWriteHalf>);

impl FrameWriter {
    /// Sends one frame and flushes it.
    pub async fn send(&mut self, frame: &Frame<Request>) -> Result<(), InitError> {
        self.write(frame).await?;
        self.0.flush().await?;
        Ok(())
    }

    /// Buffers one frame without flushing (for a burst of frames).
    pub async fn write(&mut self, frame: &Frame<Request>) -> Result<(), InitError> {
        self.0.write_all(&frame.encode()?).await?;
        Ok(())
    }

    /// Flushes buffered frames.
    pub async fn flush(&mut self) -> Result<(), InitError> {
        self.0.flush().await?;
        Ok(())
    }
}

pub(super) fn frame_name(frame: &Frame<Reply>) -> &'static str {
    match frame {
        Frame::Message(_) => "a message",
        Frame::Stdout(_) => "stdout",
        Frame::Stderr(_) => "stderr",
        Frame::Stdin(_) => "stdin",
        Frame::Data(_) => "data",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame that arrives in pieces, read by a `recv` that a `select!` keeps
    /// abandoning (as the runner's loop does when a timer fires first), comes out
    /// whole, and so does the next one: nothing read is lost with the abandoned call.
    #[tokio::test]
    async fn a_frame_read_across_abandoned_receives_arrives_whole() {
        let (ours, theirs) = UnixStream::pair().expect("pair");
        let mut conn = Conn::new(ours);
        let first = Frame::<Reply>::Stdout(b"very long line ".repeat(2000))
            .encode()
            .expect("encode");
        let second = Frame::<Reply>::Stdout(b"next".to_vec())
            .encode()
            .expect("encode");
        let sender = tokio::spawn(async move {
            let mut theirs = theirs;
            let bytes = [first, second].concat();
            for piece in bytes.chunks(7) {
                theirs.write_all(piece).await.expect("send");
                tokio::time::sleep(std::time::Duration::from_micros(200)).await;
            }
            theirs
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            tokio::select! {
                frame = conn.recv() => got.push(frame.expect("a frame").expect("not closed")),
                () = tokio::time::sleep(std::time::Duration::from_micros(300)) => {}
            }
        }
        let _theirs = sender.await.expect("sender");
        match (&got[0], &got[1]) {
            (Frame::Stdout(a), Frame::Stdout(b)) => {
                assert_eq!(a, &b"very long line ".repeat(2000));
                assert_eq!(b, b"next");
            }
            other => panic!("{other:?}"),
        }
    }
}
