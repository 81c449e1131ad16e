//! One connection to sandbox-init: typed frames both ways, and the receiving half's
//! bound on an exec's output.

use sandbox_init::protocol::{decode_header, Frame, Reply, Request, CHUNK_LEN, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
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
    /// For an exec with an `output_limit`: the stdout and stderr bytes still allowed.
    output_left: Option<[u64; 2]>,
}

impl FrameReader {
    /// Receives one frame; `None` when the server closed the connection. An exec's
    /// output past its `output_limit` (which sandbox-init enforces, so only an impostor
    /// or a broken peer sends it) is a protocol error: the peer is cut off.
    pub async fn recv(&mut self) -> Result<Option<Frame<Reply>>, InitError> {
        let frame = read_reply_frame(&mut self.inner).await?;
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

async fn read_reply_frame(
    reader: &mut BufReader<OwnedReadHalf>,
) -> Result<Option<Frame<Reply>>, InitError> {
    let mut header = [0u8; HEADER_LEN];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (kind, len) = decode_header(header)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some(Frame::from_parts(kind, payload)?))
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
