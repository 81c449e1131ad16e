//! The wire protocol between `sandboxd` (the client) and `sandbox-init` (the server).
//!
//! One unix-socket connection carries one operation. Both directions are a sequence of
//! frames:
//!
//! ```text
//! +----------------+-----------+-----------------------+
//! | len: u32 (BE)  | kind: u8  | payload: len bytes    |
//! +----------------+-----------+-----------------------+
//! ```
//!
//! `kind` says what the payload is: a JSON [`Request`] (client to server) or [`Reply`]
//! (server to client), or raw bytes of a process's stdin/stdout/stderr or of a file.
//! Raw bytes never pass through JSON, so binary output and files cost nothing extra.
//!
//! A conversation always opens with the client's [`Request`]; the server answers with
//! [`Reply`] frames as documented on each request. A client that drops the connection
//! cancels the operation (a running process group is killed).
//!
//! The protocol is versioned: the client may send [`Request::Hello`] and compare the
//! server's [`PROTOCOL_VERSION`]. A change that an old peer cannot parse bumps it.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change of the frames or messages below (2: a listing
/// is answered in pages ending with [`Reply::End`]; 3: [`Request::PtyExec`],
/// [`Request::Resize`], watches, streamed writes and file metadata; 4: [`Request::Dial`]).
pub const PROTOCOL_VERSION: u32 = 4;

/// The largest payload one frame may carry. Bigger data is split over several frames.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// The size of a raw-data chunk a sender should use (well under [`MAX_FRAME_LEN`]).
pub const CHUNK_LEN: usize = 64 * 1024;

/// The file name of the listening socket inside the socket directory.
pub const SOCKET_NAME: &str = "init.sock";

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A JSON [`Request`] or [`Reply`].
    Message = 0,
    /// Bytes a process wrote to stdout (server to client).
    Stdout = 1,
    /// Bytes a process wrote to stderr (server to client).
    Stderr = 2,
    /// Bytes for a process's stdin (client to server).
    Stdin = 3,
    /// Bytes of a file being written or read.
    Data = 4,
}

impl FrameKind {
    /// Parses the kind byte of a frame header.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            0 => Self::Message,
            1 => Self::Stdout,
            2 => Self::Stderr,
            3 => Self::Stdin,
            4 => Self::Data,
            _ => return None,
        })
    }
}

/// One decoded frame, generic over the message type of its direction.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<M> {
    /// A typed message.
    Message(M),
    /// Process stdout bytes.
    Stdout(Vec<u8>),
    /// Process stderr bytes.
    Stderr(Vec<u8>),
    /// Process stdin bytes.
    Stdin(Vec<u8>),
    /// File bytes.
    Data(Vec<u8>),
}

/// Errors of encoding or decoding frames.
#[derive(Debug)]
pub enum FrameError {
    /// The underlying stream failed or ended in the middle of a frame.
    Io(io::Error),
    /// The header announced more than [`MAX_FRAME_LEN`] bytes.
    TooLarge(usize),
    /// The kind byte is not one of [`FrameKind`].
    UnknownKind(u8),
    /// A message payload is not valid JSON of the expected type.
    Json(serde_json::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::TooLarge(n) => write!(f, "frame of {n} bytes exceeds {MAX_FRAME_LEN}"),
            Self::UnknownKind(k) => write!(f, "unknown frame kind {k}"),
            Self::Json(e) => write!(f, "malformed message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The five header bytes of a frame.
pub const HEADER_LEN: usize = 5;

/// Encodes a frame header.
pub fn encode_header(kind: FrameKind, len: usize) -> [u8; HEADER_LEN] {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [len[0], len[1], len[2], len[3], kind as u8]
}

/// Decodes a frame header into the kind and the payload length, checking the bound.
pub fn decode_header(header: [u8; HEADER_LEN]) -> Result<(FrameKind, usize), FrameError> {
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let kind = FrameKind::from_byte(header[4]).ok_or(FrameError::UnknownKind(header[4]))?;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok((kind, len))
}

impl<M: Serialize> Frame<M> {
    /// Serializes the frame (header and payload) into one buffer.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let (kind, payload): (FrameKind, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Message(m) => (
                FrameKind::Message,
                serde_json::to_vec(m).map_err(FrameError::Json)?.into(),
            ),
            Frame::Stdout(b) => (FrameKind::Stdout, b.as_slice().into()),
            Frame::Stderr(b) => (FrameKind::Stderr, b.as_slice().into()),
            Frame::Stdin(b) => (FrameKind::Stdin, b.as_slice().into()),
            Frame::Data(b) => (FrameKind::Data, b.as_slice().into()),
        };
        if payload.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(payload.len()));
        }
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&encode_header(kind, payload.len()));
        out.extend_from_slice(&payload);
        Ok(out)
    }
}

impl<M: for<'de> Deserialize<'de>> Frame<M> {
    /// Builds a frame from a decoded header kind and its payload.
    pub fn from_parts(kind: FrameKind, payload: Vec<u8>) -> Result<Self, FrameError> {
        Ok(match kind {
            FrameKind::Message => {
                Frame::Message(serde_json::from_slice(&payload).map_err(FrameError::Json)?)
            }
            FrameKind::Stdout => Frame::Stdout(payload),
            FrameKind::Stderr => Frame::Stderr(payload),
            FrameKind::Stdin => Frame::Stdin(payload),
            FrameKind::Data => Frame::Data(payload),
        })
    }
}

/// Writes one frame to a blocking writer.
pub fn write_frame<M: Serialize>(w: &mut impl Write, frame: &Frame<M>) -> Result<(), FrameError> {
    w.write_all(&frame.encode()?)?;
    Ok(())
}

/// Reads one frame from a blocking reader. `Ok(None)` is a clean end of stream between
/// frames; an end in the middle of a frame is an error.
pub fn read_frame<M: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
) -> Result<Option<Frame<M>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = decode_header(header)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Frame::from_parts(kind, payload).map(Some)
}

mod answer;
pub use answer::{reply, reply_error};

mod streams;
pub use streams::{StreamFileSpec, WatchEvent, WatchOp, WatchRequest};

/// A user account inside the sandbox, by name (`"user"` or `"root"`), resolved by the
/// server from the container's `/etc/passwd`.
pub type UserName = String;

/// What the client asks. Each variant documents the frames that follow it and the replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Version check. Reply: [`Reply::Hello`].
    Hello {
        /// The client's [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// Start a process. Reply: [`Reply::Started`] (or [`Reply::Error`]), then any number
    /// of `Stdout`/`Stderr` frames, then exactly one [`Reply::Exited`].
    /// While it runs, the client may send `Stdin` frames, [`Request::CloseStdin`] and
    /// [`Request::Signal`] on the same connection. Closing the connection kills the
    /// process group.
    Exec(ExecRequest),
    /// During an exec: close the process's stdin. During a [`Request::Dial`]: shut down
    /// the writing half of the TCP connection (the peer reads its end of stream).
    CloseStdin,
    /// During an exec: send a signal to the process group.
    Signal {
        /// A signal number (`libc::SIGINT`, ...).
        signal: i32,
    },
    /// Write files atomically: all or none. Followed by `Data` frames carrying each
    /// file's bytes in order (`size` bytes per file, split over frames at will).
    /// Reply: [`Reply::Entries`] of the written files, or [`Reply::Error`] naming the
    /// path that failed (then no file was changed).
    WriteFiles {
        /// The files, in the order their bytes follow.
        files: Vec<WriteFileSpec>,
        /// The account performing the write (permissions are checked as it).
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Read a regular file. Reply: [`Reply::FileStart`], `Data` frames, [`Reply::End`];
    /// or [`Reply::Error`] (`not_found`, `is_a_directory`, `too_large`, ...).
    /// Files of the kernel's pseudo filesystems (`/proc`, `/sys`, ...), however reached,
    /// are `permission_denied`, for this and every other file request.
    ReadFile {
        /// Absolute path.
        path: String,
        /// Refuse files bigger than this (`too_large`).
        max_size: Option<u64>,
        /// The account performing the read.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Describe one path (symlinks not followed). Reply: [`Reply::Entry`].
    Stat {
        /// Absolute path.
        path: String,
        /// The account performing the lookup.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// List a directory, `depth` levels deep (1 = its entries only), sorted by path.
    /// Reply: one or more [`Reply::Entries`] pages (each fits a frame, none is empty),
    /// then [`Reply::End`]; or [`Reply::Error`] first: `not_a_directory` for a file,
    /// `too_large` past `max_entries` or [`MAX_LISTING_BYTES`], `permission_denied` for
    /// a pseudo filesystem.
    List {
        /// Absolute path of a directory.
        path: String,
        /// At least 1.
        depth: u32,
        /// Refuse (`too_large`) a listing of more entries; the server has its own bound.
        #[serde(default)]
        max_entries: Option<u64>,
        /// The account performing the listing.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Create a directory and its missing parents, owned by `as_user`.
    /// Reply: [`Reply::Created`] (`created: false` when it already existed as a dir).
    Mkdir {
        /// Absolute path.
        path: String,
        /// The account performing it and owning what is created.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Rename (move) a path. Reply: [`Reply::Entry`] of the new path.
    Rename {
        /// Absolute source path.
        from: String,
        /// Absolute destination path; its parent must exist.
        to: String,
        /// The account performing it.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Remove a file, symlink or directory tree. Reply: [`Reply::Ok`].
    Remove {
        /// Absolute path.
        path: String,
        /// The account performing it.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// Set the sandbox's environment: every process started afterwards gets these
    /// variables as if they were the container's (under the account's and the exec
    /// request's own). Replaces what an earlier `SetEnv` set; kept across a restart of
    /// the container. Sent only to containers this daemon version started (warm-pool
    /// containers being claimed), so older servers never see it. Reply: [`Reply::Ok`].
    SetEnv {
        /// `(name, value)` pairs.
        env: Vec<(String, String)>,
    },
    /// Give a whole tree to a user (recursively, symlinks not followed), e.g. after
    /// setup commands ran as root. Performed as root. Reply: [`Reply::Ok`].
    Chown {
        /// Absolute path of the tree's root.
        path: String,
        /// The new owner (its primary group becomes the group).
        owner: UserName,
    },
    /// Start a process on a new pseudo-terminal of `size`, as a session leader whose
    /// controlling terminal it is. The conversation is an [`Request::Exec`]'s: the
    /// terminal's output comes in `Stdout` frames (there is no separate stderr), `Stdin`
    /// frames are typed into the terminal (the request's `stdin` flag is ignored: it is
    /// always open), [`Request::Signal`] and [`Request::Resize`] may follow, and
    /// closing the connection kills everything it started.
    PtyExec {
        /// The process (its `argv`, `env`, `cwd`, `user`, `timeout_ms`, `output_limit`).
        exec: ExecRequest,
        /// The terminal's initial size.
        size: PtySize,
    },
    /// During a [`Request::PtyExec`]: resize the terminal (its foreground process group
    /// gets `SIGWINCH`).
    Resize {
        /// The new size.
        size: PtySize,
    },
    /// Watch a directory (inotify). Reply: [`Reply::Watching`] (or [`Reply::Error`]),
    /// then [`Reply::WatchEvents`] batches for as long as the client keeps the
    /// connection; a watch that cannot go on (its queue overflowed, the directory went
    /// away) ends with [`Reply::Error`] or [`Reply::End`]. Closing the connection ends
    /// it. A client that does not read makes the kernel's bounded queue overflow.
    Watch(WatchRequest),
    /// Write files whose sizes are not known up front (a streamed upload), all or none.
    /// Then, for each file, a [`Request::StreamFile`] message followed by its bytes in
    /// `Data` frames; then [`Request::Commit`]. Reply (after the commit):
    /// [`Reply::Entries`] of the written files, or [`Reply::Error`] (no file changed).
    /// A connection closed before the commit changes nothing.
    WriteStream {
        /// The account performing the write.
        #[serde(rename = "as")]
        as_user: UserName,
    },
    /// During a [`Request::WriteStream`]: the next file; its bytes follow.
    StreamFile(StreamFileSpec),
    /// During a [`Request::WriteStream`]: every file was sent; put them in place.
    Commit,
    /// Connect to a TCP port on the sandbox's own loopback (`127.0.0.1`, else `[::1]`;
    /// a server bound to `0.0.0.0` or to localhost only is reached alike) and relay raw
    /// bytes both ways (protocol 4). Reply: [`Reply::Ok`] once connected (or
    /// [`Reply::Error`]: `not_found` when nothing listens there). Then the client's
    /// `Data` frames are written to the TCP connection and what it reads comes back as
    /// `Data` frames; its end of stream is [`Reply::End`], a failure [`Reply::Error`].
    /// [`Request::CloseStdin`] shuts down the writing half; closing the connection
    /// closes the TCP connection. Each direction holds one chunk at a time: a side that
    /// does not read stalls the other.
    Dial {
        /// The TCP port.
        port: u16,
    },
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PtySize {
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// A process to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Variables set on top of the server's own environment and the account's
    /// `HOME`/`USER`/`LOGNAME`/`SHELL`.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory (absolute); the account's home when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// The account to run as.
    pub user: UserName,
    /// Kill the process group with SIGKILL after this long.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Keep stdin open for `Stdin` frames; otherwise stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Forward at most this many bytes of each of stdout and stderr; the rest is read
    /// and counted in [`ExitInfo`] but not sent.
    #[serde(default)]
    pub output_limit: Option<u64>,
}

/// One file of a [`Request::WriteFiles`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSpec {
    /// Absolute path. Missing parent directories are created, owned by the writer.
    pub path: String,
    /// Exact byte count of the content that follows.
    pub size: u64,
    /// Permission bits for a new file (default 0o644); an existing file keeps its own.
    #[serde(default)]
    pub mode: Option<u32>,
}

/// How a process ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitInfo {
    /// Exit status when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// It was killed because `timeout_ms` passed.
    pub timed_out: bool,
    /// Stdout bytes read past `output_limit` and not forwarded.
    pub stdout_dropped: u64,
    /// Stderr bytes read past `output_limit` and not forwarded.
    pub stderr_dropped: u64,
}

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (socket, fifo, device).
    Other,
}

/// Metadata of one path, as `lstat` sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// The last path component.
    pub name: String,
    /// The absolute path.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner's user name (the numeric id when it has no name).
    pub owner: String,
    /// Group name (the numeric id when it has no name).
    pub group: String,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: i64,
    /// Where a symlink points.
    #[serde(default)]
    pub symlink_target: Option<String>,
    /// What a symlink's target is, followed to the end (none when it dangles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kind: Option<EntryKind>,
    /// Its `user.e2b.*` extended attributes, prefix stripped (protocol 3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The most a listing may weigh (the sum of [`FileEntry::weight`]): entries' paths and
/// link targets can be kilobytes each, so a count alone does not bound a listing.
pub const MAX_LISTING_BYTES: usize = 32 << 20;

impl FileEntry {
    /// Roughly the bytes this entry occupies, in memory or as JSON (the strings plus a
    /// fixed allowance for the rest); what [`MAX_LISTING_BYTES`] counts.
    pub fn weight(&self) -> usize {
        let link = self.symlink_target.as_ref().map_or(0, String::len);
        let metadata: usize = self
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        metadata
            + self.name.len()
            + self.path.len()
            + self.owner.len()
            + self.group.len()
            + link
            + 128
    }
}

/// Why an operation failed, for the client to map onto its own errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The path (or program, or user) does not exist.
    NotFound,
    /// The destination exists.
    AlreadyExists,
    /// A directory was expected.
    NotADirectory,
    /// A file was expected.
    IsADirectory,
    /// The account may not do this.
    PermissionDenied,
    /// The request itself is unusable (bad path, bad argument).
    InvalidInput,
    /// A file is larger than allowed.
    TooLarge,
    /// The filesystem is full (the sandbox's disk bound, or a quota).
    NoSpace,
    /// The frames did not follow the protocol.
    Protocol,
    /// Any other operating-system failure.
    Io,
}

/// What the server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Hello {
        /// The server's [`PROTOCOL_VERSION`].
        version: u32,
        /// The server's pid (1 inside a container).
        pid: u32,
    },
    /// The process started.
    Started {
        /// Its pid, which is also its process-group id.
        pid: u32,
    },
    /// The process ended (always the last frame of an exec).
    Exited(ExitInfo),
    /// Success with nothing to report.
    Ok,
    /// One entry.
    Entry(FileEntry),
    /// Several entries.
    Entries {
        /// The entries.
        entries: Vec<FileEntry>,
    },
    /// Answer to [`Request::Mkdir`].
    Created {
        /// False when the directory already existed.
        created: bool,
    },
    /// A file's bytes follow in `Data` frames, then [`Reply::End`].
    FileStart {
        /// Its size in bytes.
        size: u64,
    },
    /// The end of a file's data or of a listing's pages.
    End,
    /// The operation failed.
    Error {
        /// The class of failure.
        kind: ErrorKind,
        /// A message for a person, naming the path or program concerned.
        message: String,
    },
    /// A watch is in place; its events follow.
    Watching,
    /// Events of a watch, in the order they happened.
    WatchEvents {
        /// At least one.
        events: Vec<WatchEvent>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<M>(frame: Frame<M>) -> Frame<M>
    where
        M: Serialize + for<'de> Deserialize<'de>,
    {
        let bytes = frame.encode().expect("encodes");
        read_frame(&mut bytes.as_slice())
            .expect("decodes")
            .expect("one frame")
    }

    #[test]
    fn messages_and_bytes_roundtrip() {
        let req = Request::Exec(ExecRequest {
            argv: vec!["bash".into(), "-lc".into(), "true".into()],
            env: vec![("A".into(), "b".into())],
            cwd: Some("/home/user".into()),
            user: "user".into(),
            timeout_ms: Some(5),
            stdin: false,
            output_limit: Some(10),
        });
        assert_eq!(roundtrip(Frame::Message(req.clone())), Frame::Message(req));
        let data: Frame<Reply> = Frame::Stdout(vec![0, 159, 255]);
        assert_eq!(roundtrip(data.clone()), data);
    }

    #[test]
    fn wire_names_are_stable() {
        let json = serde_json::to_string(&Request::WriteFiles {
            files: vec![],
            as_user: "user".into(),
        })
        .expect("serializes");
        assert_eq!(json, r#"{"type":"write_files","files":[],"as":"user"}"#);
        let json = serde_json::to_string(&Reply::Exited(ExitInfo::default())).expect("ser");
        assert!(
            json.starts_with(r#"{"type":"exited","code":null"#),
            "{json}"
        );
    }

    #[test]
    fn pty_messages_have_stable_wire_names() {
        let size = PtySize { cols: 80, rows: 24 };
        let json = serde_json::to_string(&Request::Resize { size }).expect("serializes");
        assert_eq!(json, r#"{"type":"resize","size":{"cols":80,"rows":24}}"#);
        let exec = ExecRequest {
            argv: vec!["bash".into()],
            env: vec![],
            cwd: None,
            user: "user".into(),
            timeout_ms: None,
            stdin: false,
            output_limit: None,
        };
        let req = Request::PtyExec { exec, size };
        let json = serde_json::to_string(&req).expect("serializes");
        assert!(
            json.starts_with(r#"{"type":"pty_exec","exec":{"argv":["bash"]"#),
            "{json}"
        );
        assert_eq!(roundtrip(Frame::Message(req.clone())), Frame::Message(req));
    }

    #[test]
    fn dial_has_a_stable_wire_name() {
        let req = Request::Dial { port: 5173 };
        let json = serde_json::to_string(&req).expect("serializes");
        assert_eq!(json, r#"{"type":"dial","port":5173}"#);
        assert_eq!(roundtrip(Frame::Message(req.clone())), Frame::Message(req));
        let r: Result<Request, _> = serde_json::from_str(r#"{"type":"dial","port":70000}"#);
        assert!(r.is_err(), "a port past u16 is refused");
    }

    #[test]
    fn oversized_and_unknown_frames_are_rejected() {
        let mut bytes = encode_header(FrameKind::Data, MAX_FRAME_LEN + 1).to_vec();
        assert!(matches!(
            read_frame::<Reply>(&mut bytes.as_slice()),
            Err(FrameError::TooLarge(_))
        ));
        bytes = vec![0, 0, 0, 0, 9];
        assert!(matches!(
            read_frame::<Reply>(&mut bytes.as_slice()),
            Err(FrameError::UnknownKind(9))
        ));
    }

    #[test]
    fn clean_eof_between_frames_is_none_and_mid_frame_is_error() {
        assert!(read_frame::<Reply>(&mut [].as_slice())
            .expect("eof")
            .is_none());
        assert!(read_frame::<Reply>(&mut [0u8, 0].as_slice()).is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<Request, _> = serde_json::from_str(r#"{"type":"hello","version":1,"x":2}"#);
        assert!(r.is_err());
    }
}
