//! Files streamed through a connection, never held whole: a read hands out its chunks
//! as the caller asks for them, a write sends each chunk as it comes (see
//! `Request::WriteStream`).

use sandbox_init::protocol::{FileEntry, Frame, Reply, Request, StreamFileSpec, CHUNK_LEN};

use super::conn::frame_name;
use super::{unexpected, Conn, InitClient, InitError, CALL_DEADLINE};

/// A file being read: its chunks, in order.
#[derive(Debug)]
pub struct FileReader {
    conn: Conn,
    /// The bytes still allowed (the size the file had when opened).
    left: u64,
    done: bool,
}

impl FileReader {
    /// The next chunk; `None` at the end of the file.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, InitError> {
        if self.done {
            return Ok(None);
        }
        match self.conn.recv().await? {
            Some(Frame::Data(bytes)) => {
                self.left = self
                    .left
                    .checked_sub(bytes.len() as u64)
                    .ok_or_else(|| InitError::Protocol("a file grew past its size".into()))?;
                Ok(Some(bytes))
            }
            Some(Frame::Message(Reply::End)) => {
                self.done = true;
                Ok(None)
            }
            Some(Frame::Message(Reply::Error { kind, message })) => {
                Err(InitError::Remote { kind, message })
            }
            Some(other) => Err(InitError::Protocol(format!(
                "unexpected {} while reading a file",
                frame_name(&other)
            ))),
            None => Err(InitError::Closed("file ended early".into())),
        }
    }
}

/// A streamed write in progress: files, their bytes, then [`FileWriter::commit`].
/// Dropped before the commit, it changes nothing.
#[derive(Debug)]
pub struct FileWriter {
    conn: Conn,
}

impl FileWriter {
    /// Starts the next file.
    pub async fn start_file(&mut self, spec: StreamFileSpec) -> Result<(), InitError> {
        self.conn
            .writer
            .write(&Frame::Message(Request::StreamFile(spec)))
            .await
    }

    /// Sends bytes of the current file.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), InitError> {
        for chunk in bytes.chunks(CHUNK_LEN) {
            self.conn.writer.write(&Frame::Data(chunk.to_vec())).await?;
        }
        Ok(())
    }

    /// Puts every file in place; their entries.
    pub async fn commit(mut self) -> Result<Vec<FileEntry>, InitError> {
        self.conn.send(&Frame::Message(Request::Commit)).await?;
        let reply = tokio::time::timeout(CALL_DEADLINE, self.conn.recv_reply())
            .await
            .map_err(|_| InitError::Protocol("no reply to a commit".into()))??;
        match reply {
            Reply::Entries { entries } => Ok(entries),
            other => Err(unexpected(&other)),
        }
    }
}

impl InitClient {
    /// Opens a file for a streamed read as `as_user`: its size and its reader. What
    /// the file gains while it is read is cut off at the size it had.
    pub async fn open_read(
        &self,
        path: &str,
        as_user: &str,
    ) -> Result<(u64, FileReader), InitError> {
        let opened = async {
            let mut conn = self.connect().await?;
            conn.send(&Frame::Message(Request::ReadFile {
                path: path.to_owned(),
                max_size: None,
                as_user: as_user.to_owned(),
            }))
            .await?;
            match conn.recv_reply().await? {
                Reply::FileStart { size } => Ok((size, conn)),
                other => Err(unexpected(&other)),
            }
        };
        let (size, conn) = tokio::time::timeout(CALL_DEADLINE, opened)
            .await
            .map_err(|_| InitError::Protocol("no reply to a read".into()))??;
        Ok((
            size,
            FileReader {
                conn,
                left: size,
                done: false,
            },
        ))
    }

    /// Starts a streamed write as `as_user`.
    pub async fn write_stream(&self, as_user: &str) -> Result<FileWriter, InitError> {
        let mut conn = self.connect().await?;
        conn.writer
            .write(&Frame::Message(Request::WriteStream {
                as_user: as_user.to_owned(),
            }))
            .await?;
        Ok(FileWriter { conn })
    }
}
