//! The client half of the sandbox-init protocol (see `sandbox_init::protocol`): one unix
//! socket connection per operation, typed frames both ways.
//!
//! Dropping a future of this module drops its connection, and sandbox-init answers a
//! dropped connection by killing what the process started: a cancelled HTTP request
//! leaves nothing behind.
//!
//! The other end is hostile until proven otherwise: [`connect`] reaches only the
//! socket sandbox-init itself serves (never a path the container planted), and every
//! reply is bounded here, whatever sandbox-init promised: one frame by
//! [`MAX_FRAME_LEN`], an exec's output by the request's `output_limit` (a collected
//! exec's by [`COLLECT_LIMIT`] when it has none) and its time by its timeout plus
//! [`EXEC_GRACE`], a file by the read's `max_size`. A peer that sends more is cut off.

mod conn;
mod connect;
mod dial;
mod transfer;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use sandbox_init::protocol::MAX_FRAME_LEN;
use sandbox_init::protocol::{
    ErrorKind, ExecRequest, ExitInfo, FileEntry, Frame, FrameError, PtySize, Reply, Request,
    WriteFileSpec, CHUNK_LEN, MAX_LISTING_BYTES, PROTOCOL_VERSION,
};

use conn::frame_name;
pub use conn::{Conn, FrameReader, FrameWriter};
pub use dial::DialStream;
pub use transfer::{FileReader, FileWriter};
pub use watch::Watch;

/// The most entries a listing may hold; sandbox-init refuses a bigger one (`too_large`,
/// a 413 with a message naming the bound) instead of the daemon building it up.
pub const MAX_LIST_ENTRIES: usize = 50_000;

/// A failure of an operation inside a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The socket could not be reached (the container is gone or not started).
    #[error("the sandbox is unreachable: {0}")]
    Unreachable(std::io::Error),
    /// The conversation broke, did not follow the protocol, or sent more than its bound.
    #[error("the sandbox broke the protocol: {0}")]
    Protocol(String),
    /// The socket is not the one the container's sandbox-init serves (a symlink, a
    /// file, or another process's socket put in its place): nothing was sent to it.
    #[error("the sandbox's socket is not trusted: {0}")]
    Untrusted(String),
    /// The sandbox went away in the middle of the operation (deleted, expired, or
    /// its container stopped).
    #[error("the sandbox stopped during the operation ({0})")]
    Closed(String),
    /// Too many connections of a kind are open at once (see [`MAX_DIALS`]).
    #[error("{0}")]
    Busy(String),
    /// sandbox-init reported a failure of the operation itself.
    #[error("{message}")]
    Remote {
        /// Its class.
        kind: ErrorKind,
        /// Its message, naming the path or program.
        message: String,
    },
}

impl From<FrameError> for InitError {
    fn from(e: FrameError) -> Self {
        Self::Protocol(e.to_string())
    }
}

impl From<std::io::Error> for InitError {
    fn from(e: std::io::Error) -> Self {
        Self::Protocol(e.to_string())
    }
}

/// What an exec produced, collected.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Stdout bytes (at most the requested limit).
    pub stdout: Vec<u8>,
    /// Stderr bytes (at most the requested limit).
    pub stderr: Vec<u8>,
    /// How it ended.
    pub exit: ExitInfo,
}

/// What [`InitClient::exec`] collects per stream when the request sets no
/// `output_limit`.
pub const COLLECT_LIMIT: u64 = 8 * 1024 * 1024;

/// How long past its `timeout_ms` a collected exec may take to end (sandbox-init kills
/// at the timeout; this covers the kill, the drain and a slow machine).
pub const EXEC_GRACE: Duration = Duration::from_secs(30);

/// How long a single-reply operation (stat, list, mkdir, rename, remove, chown) may
/// take: generous for a huge tree, but a peer that never answers does not hold a task
/// and a connection forever.
pub const CALL_DEADLINE: Duration = Duration::from_secs(600);

/// How long [`InitClient::dial`] may take to connect (sandbox-init gives up after 10 s).
pub const DIAL_DEADLINE: Duration = Duration::from_secs(15);

/// The most dialed connections open at once in one sandbox: each costs sandbox-init
/// two threads, which count against the sandbox's pids limit.
pub const MAX_DIALS: usize = 128;

/// The client for one sandbox's socket.
#[derive(Debug, Clone)]
pub struct InitClient {
    run_dir: PathBuf,
    /// The host pid of the container's init (0 while unknown); shared by clones.
    init_pid: Arc<AtomicU32>,
    /// Permits for open dials ([`MAX_DIALS`]); shared by clones.
    dials: Arc<tokio::sync::Semaphore>,
}

impl InitClient {
    /// A client for the socket sandbox-init serves in `run_dir` (the host side of
    /// `/.sandboxd/run`). It connects only once [`InitClient::set_init_pid`] was called.
    pub fn new(run_dir: PathBuf) -> Self {
        Self {
            run_dir,
            init_pid: Arc::new(AtomicU32::new(0)),
            dials: Arc::new(tokio::sync::Semaphore::new(MAX_DIALS)),
        }
    }

    /// The run directory.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Records the host pid of the container's init (Docker's `State.Pid`): the only
    /// process whose socket this client talks to.
    pub fn set_init_pid(&self, pid: u32) {
        self.init_pid.store(pid, Ordering::SeqCst);
    }

    /// Opens a connection to the container's sandbox-init (see [`connect`]).
    pub async fn connect(&self) -> Result<Conn, InitError> {
        let pid = Some(self.init_pid.load(Ordering::SeqCst)).filter(|p| *p != 0);
        Ok(Conn::new(connect::connect(&self.run_dir, pid).await?))
    }

    /// Sends a request that has a single reply, and returns it within [`CALL_DEADLINE`].
    async fn call(&self, request: Request) -> Result<Reply, InitError> {
        let exchange = async {
            let mut conn = self.connect().await?;
            conn.send(&Frame::Message(request)).await?;
            conn.recv_reply().await
        };
        tokio::time::timeout(CALL_DEADLINE, exchange)
            .await
            .map_err(|_| {
                InitError::Protocol(format!("no reply within {} s", CALL_DEADLINE.as_secs()))
            })?
    }

    /// Checks the server speaks our protocol version.
    pub async fn hello(&self) -> Result<(), InitError> {
        match self
            .call(Request::Hello {
                version: PROTOCOL_VERSION,
            })
            .await?
        {
            Reply::Hello { version, .. } if version == PROTOCOL_VERSION => Ok(()),
            Reply::Hello { version, .. } => Err(InitError::Protocol(format!(
                "sandbox-init speaks protocol {version}, this daemon {PROTOCOL_VERSION}"
            ))),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until the server answers, polling every few milliseconds up to `deadline`.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<(), InitError> {
        let started = tokio::time::Instant::now();
        loop {
            match self.hello().await {
                Ok(()) => return Ok(()),
                Err(InitError::Unreachable(e)) if started.elapsed() >= deadline => {
                    return Err(InitError::Unreachable(e))
                }
                Err(InitError::Unreachable(_)) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// Starts a process and returns the connection positioned after `Started`.
    /// Output past the request's `output_limit` is cut off (see [`FrameReader::recv`]).
    pub async fn spawn(&self, request: ExecRequest) -> Result<(Conn, u32), InitError> {
        let limit = request.output_limit;
        self.start(Request::Exec(request), limit).await
    }

    /// Starts a process on a new terminal of `size` (see `Request::PtyExec`): its
    /// output comes as `Stdout` frames, `Stdin` frames are typed into it, and
    /// `Request::Resize` resizes it. Returns the connection positioned after `Started`.
    pub async fn spawn_pty(
        &self,
        request: ExecRequest,
        size: PtySize,
    ) -> Result<(Conn, u32), InitError> {
        let limit = request.output_limit;
        self.start(
            Request::PtyExec {
                exec: request,
                size,
            },
            limit,
        )
        .await
    }

    /// Connects to TCP `port` on the sandbox's own loopback through sandbox-init (a
    /// server bound to localhost only is reached too) and returns the byte stream
    /// (see [`DialStream`]). Nothing listening there is [`InitError::Remote`] with
    /// `not_found`; connecting takes at most [`DIAL_DEADLINE`]; past [`MAX_DIALS`]
    /// open ones it is [`InitError::Busy`].
    pub async fn dial(&self, port: u16) -> Result<DialStream, InitError> {
        let permit = self.dials.clone().try_acquire_owned().map_err(|_| {
            InitError::Busy(format!(
                "the sandbox already has {MAX_DIALS} open connections to its ports"
            ))
        })?;
        let exchange = async {
            let mut conn = self.connect().await?;
            conn.send(&Frame::Message(Request::Dial { port })).await?;
            match conn.recv_reply().await? {
                Reply::Ok => Ok(DialStream::start(conn, permit)),
                other => Err(unexpected(&other)),
            }
        };
        tokio::time::timeout(DIAL_DEADLINE, exchange)
            .await
            .map_err(|_| {
                InitError::Protocol(format!(
                    "port {port} did not accept within {} s",
                    DIAL_DEADLINE.as_secs()
                ))
            })?
    }

    async fn start(&self, request: Request, limit: Option<u64>) -> Result<(Conn, u32), InitError> {
        let mut conn = self.connect().await?;
        if let Some(limit) = limit {
            conn.limit_output(limit);
        }
        conn.send(&Frame::Message(request)).await?;
        match conn.recv_reply().await? {
            Reply::Started { pid } => Ok((conn, pid)),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a process to completion and collects its output, at most the request's
    /// `output_limit` (set to [`COLLECT_LIMIT`] when absent) per stream: sandbox-init
    /// drops the rest, and a peer that sends more anyway is cut off. A peer that has not
    /// ended the exec [`EXEC_GRACE`] after its `timeout_ms` is cut off too.
    pub async fn exec(&self, mut request: ExecRequest) -> Result<Collected, InitError> {
        request.output_limit.get_or_insert(COLLECT_LIMIT);
        match request.timeout_ms {
            Some(ms) => {
                let within = Duration::from_millis(ms).saturating_add(EXEC_GRACE);
                tokio::time::timeout(within, self.collect(request))
                    .await
                    .map_err(|_| {
                        InitError::Protocol(format!(
                            "the exec did not end within {} ms of its timeout",
                            EXEC_GRACE.as_millis()
                        ))
                    })?
            }
            None => self.collect(request).await,
        }
    }

    async fn collect(&self, request: ExecRequest) -> Result<Collected, InitError> {
        let (mut conn, _pid) = self.spawn(request).await?;
        let mut out = Collected::default();
        loop {
            match conn.recv().await? {
                Some(Frame::Stdout(b)) => out.stdout.extend_from_slice(&b),
                Some(Frame::Stderr(b)) => out.stderr.extend_from_slice(&b),
                Some(Frame::Message(Reply::Exited(exit))) => {
                    out.exit = exit;
                    return Ok(out);
                }
                Some(Frame::Message(Reply::Error { kind, message })) => {
                    return Err(InitError::Remote { kind, message })
                }
                Some(other) => {
                    return Err(InitError::Protocol(format!(
                        "unexpected {} during exec",
                        frame_name(&other)
                    )))
                }
                None => return Err(InitError::Closed("exec ended without an exit".into())),
            }
        }
    }

    /// Writes files atomically (all or none) as `as_user`.
    pub async fn write_files(
        &self,
        files: &[(String, Vec<u8>, Option<u32>)],
        as_user: &str,
    ) -> Result<Vec<FileEntry>, InitError> {
        let mut conn = self.connect().await?;
        let specs = files
            .iter()
            .map(|(path, content, mode)| WriteFileSpec {
                path: path.clone(),
                size: content.len() as u64,
                mode: *mode,
            })
            .collect();
        conn.send(&Frame::Message(Request::WriteFiles {
            files: specs,
            as_user: as_user.to_owned(),
        }))
        .await?;
        for (_, content, _) in files {
            for chunk in content.chunks(CHUNK_LEN) {
                let frame: Frame<Request> = Frame::Data(chunk.to_vec());
                conn.writer.write(&frame).await?;
            }
        }
        conn.writer.flush().await?;
        match conn.recv_reply().await? {
            Reply::Entries { entries } => Ok(entries),
            other => Err(unexpected(&other)),
        }
    }

    /// Reads a whole file, refusing one bigger than `max_size`.
    pub async fn read_file(
        &self,
        path: &str,
        max_size: u64,
        as_user: &str,
    ) -> Result<Vec<u8>, InitError> {
        let mut conn = self.connect().await?;
        conn.send(&Frame::Message(Request::ReadFile {
            path: path.to_owned(),
            max_size: Some(max_size),
            as_user: as_user.to_owned(),
        }))
        .await?;
        let size = match conn.recv_reply().await? {
            Reply::FileStart { size } => size,
            other => return Err(unexpected(&other)),
        };
        let mut content = Vec::with_capacity(size.min(max_size) as usize);
        loop {
            match conn.recv().await? {
                Some(Frame::Data(b)) => {
                    if content.len() + b.len() > max_size as usize {
                        return Err(InitError::Protocol("file grew past its limit".into()));
                    }
                    content.extend_from_slice(&b);
                }
                Some(Frame::Message(Reply::End)) => return Ok(content),
                Some(Frame::Message(Reply::Error { kind, message })) => {
                    return Err(InitError::Remote { kind, message })
                }
                Some(other) => {
                    return Err(InitError::Protocol(format!(
                        "unexpected {} while reading a file",
                        frame_name(&other)
                    )))
                }
                None => return Err(InitError::Closed("file ended early".into())),
            }
        }
    }

    /// Describes a path.
    pub async fn stat(&self, path: &str, as_user: &str) -> Result<FileEntry, InitError> {
        match self
            .call(Request::Stat {
                path: path.to_owned(),
                as_user: as_user.to_owned(),
            })
            .await?
        {
            Reply::Entry(entry) => Ok(entry),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists a directory `depth` levels deep: pages of entries up to
    /// [`MAX_LIST_ENTRIES`] and [`MAX_LISTING_BYTES`] (sandbox-init refuses more with
    /// `too_large`; a server sending more anyway, or empty pages, breaks the protocol).
    pub async fn list(
        &self,
        path: &str,
        depth: u32,
        as_user: &str,
    ) -> Result<Vec<FileEntry>, InitError> {
        let max_entries = MAX_LIST_ENTRIES;
        let mut conn = self.connect().await?;
        conn.send(&Frame::Message(Request::List {
            path: path.to_owned(),
            depth,
            max_entries: Some(max_entries as u64),
            as_user: as_user.to_owned(),
        }))
        .await?;
        let mut entries = Vec::new();
        let mut weight = 0;
        loop {
            match conn.recv_reply().await? {
                Reply::Entries { entries: page } => {
                    weight += page.iter().map(FileEntry::weight).sum::<usize>();
                    if page.is_empty()
                        || entries.len() + page.len() > max_entries
                        || weight > MAX_LISTING_BYTES
                    {
                        return Err(InitError::Protocol(format!(
                            "a listing page of {} entries after {} (at most {max_entries} \
                             entries, {MAX_LISTING_BYTES} bytes)",
                            page.len(),
                            entries.len()
                        )));
                    }
                    entries.extend(page);
                }
                Reply::End => return Ok(entries),
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Creates a directory with its parents; false when it existed.
    pub async fn mkdir(&self, path: &str, as_user: &str) -> Result<bool, InitError> {
        match self
            .call(Request::Mkdir {
                path: path.to_owned(),
                as_user: as_user.to_owned(),
            })
            .await?
        {
            Reply::Created { created } => Ok(created),
            other => Err(unexpected(&other)),
        }
    }

    /// Renames a path; returns the entry at its new place.
    pub async fn rename(
        &self,
        from: &str,
        to: &str,
        as_user: &str,
    ) -> Result<FileEntry, InitError> {
        match self
            .call(Request::Rename {
                from: from.to_owned(),
                to: to.to_owned(),
                as_user: as_user.to_owned(),
            })
            .await?
        {
            Reply::Entry(entry) => Ok(entry),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes a file or a directory tree.
    pub async fn remove(&self, path: &str, as_user: &str) -> Result<(), InitError> {
        match self
            .call(Request::Remove {
                path: path.to_owned(),
                as_user: as_user.to_owned(),
            })
            .await?
        {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Sets the sandbox's environment for every process started afterwards (see
    /// `Request::SetEnv`).
    pub async fn set_env(&self, env: Vec<(String, String)>) -> Result<(), InitError> {
        match self.call(Request::SetEnv { env }).await? {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// Gives a whole tree to `owner` (as root), symlinks not followed.
    pub async fn chown(&self, path: &str, owner: &str) -> Result<(), InitError> {
        match self
            .call(Request::Chown {
                path: path.to_owned(),
                owner: owner.to_owned(),
            })
            .await?
        {
            Reply::Ok => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> InitError {
    InitError::Protocol(format!("unexpected reply {reply:?}"))
}

#[cfg(test)]
mod tests;
