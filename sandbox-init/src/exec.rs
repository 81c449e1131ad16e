//! Exec: spawn a process as an account in its own process group, then one `poll(2)`
//! loop moves bytes between its pipes and the client's socket, enforces the output
//! limit and the timeout, and reports how it ended. A PTY exec is the same loop with
//! the terminal's master in place of the pipes (see [`crate::pty`]).
//!
//! A timeout, or a client that goes away, kills everything the process started, its
//! `setsid` and double-forked descendants included (see [`crate::kill`]).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use sandbox_init::protocol::{
    decode_header, reply, reply_error, ErrorKind, ExecRequest, ExitInfo, Frame, PtySize, Reply,
    Request, CHUNK_LEN, HEADER_LEN,
};

use crate::accounts;
use crate::kill;
use crate::reaper::{signal_group, Registry};

/// How long output pipes are drained after the process exits (a background child
/// may hold them open forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs one exec on `stream`, on a new terminal of `pty`'s size when given.
pub fn run(
    mut stream: UnixStream,
    request: ExecRequest,
    pty: Option<PtySize>,
    registry: &Registry,
) {
    let (mut command, master) = match prepare(&request, pty) {
        Ok(prepared) => prepared,
        Err((kind, message)) => return reply_error(&mut stream, kind, message),
    };
    let spawned = registry.spawn(&mut command);
    // The parent's copies of the slave must go, or the master never sees the end.
    drop(command);
    let (mut child, watch) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            let program = &request.argv[0];
            return if e.kind() == std::io::ErrorKind::NotFound {
                reply_error(
                    &mut stream,
                    ErrorKind::NotFound,
                    format!("command not found: {program}"),
                )
            } else {
                reply_error(
                    &mut stream,
                    ErrorKind::Io,
                    format!("cannot start {program}: {e}"),
                )
            };
        }
    };
    let pid = child.id() as i32;
    // Whoever holds one of these pipes later is the exec's, whatever its session.
    let pipes: Vec<u64> = [
        child.stdout.as_ref().map(|f| f.as_fd()),
        child.stderr.as_ref().map(|f| f.as_fd()),
        child.stdin.as_ref().map(|f| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    .filter_map(kill::pipe_inode)
    .collect();
    if reply(&mut stream, Reply::Started { pid: pid as u32 }).is_err() {
        kill::everything(pid, &pipes);
        return;
    }
    let (stdout, stdin, resizer) = match master {
        Some(master) => match terminal_ends(master) {
            Ok(ends) => ends,
            Err(e) => {
                kill::everything(pid, &pipes);
                return reply_error(&mut stream, ErrorKind::Io, format!("pty: {e}"));
            }
        },
        None => (child.stdout.take(), child.stdin.take(), None),
    };
    let mut pump = Pump {
        stream,
        stdout,
        stderr: child.stderr.take(),
        stdin,
        resizer,
        pending_stdin: Vec::new(),
        close_stdin_when_flushed: false,
        inbox: Vec::new(),
        limit: request.output_limit,
        sent: [0, 0],
        dropped: [0, 0],
        client_gone: false,
    };
    for fd in [
        pump.stdout.as_ref().map(|f| f.as_raw_fd()),
        pump.stderr.as_ref().map(|f| f.as_raw_fd()),
        pump.stdin.as_ref().map(|f| f.as_raw_fd()),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd);
    }

    let deadline = request
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let mut timed_out = false;
    let mut status: Option<i32> = None;
    let mut drain_until: Option<Instant> = None;
    let mut killed_for_hang_up = false;
    loop {
        let now = Instant::now();
        if status.is_none() && !timed_out && deadline.is_some_and(|d| now >= d) {
            timed_out = true;
            kill::everything(pid, &pipes);
        }
        if status.is_some() {
            let drained = pump.stdout.is_none() && pump.stderr.is_none();
            if drained || drain_until.is_some_and(|d| now >= d) {
                break;
            }
        }
        let wake = [
            deadline.filter(|_| status.is_none() && !timed_out),
            drain_until,
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout_ms = wake.map_or(-1, |w| {
            w.saturating_duration_since(now).as_millis().min(60_000) as i32 + 1
        });
        let exited_fd = watch.readable.as_fd();
        let ready = pump.poll(status.is_none().then_some(exited_fd), timeout_ms);
        if ready.exited {
            status = watch.slot.status();
            drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
        }
        if let Some(signal) = ready.signal {
            signal_group(pid, signal);
        }
        if pump.client_gone && status.is_none() && !killed_for_hang_up {
            // Nobody is listening: end all it started and wait for the reaper. (A
            // command that already ended by itself keeps what it left running.)
            killed_for_hang_up = true;
            kill::everything(pid, &pipes);
        }
    }
    if timed_out || killed_for_hang_up {
        // What started while the first kill ran must not outlive a timeout or a cancel.
        kill::everything(pid, &pipes);
    }
    if pump.client_gone {
        return;
    }
    let raw = status.unwrap_or(0);
    let exit = ExitInfo {
        code: libc::WIFEXITED(raw).then(|| libc::WEXITSTATUS(raw)),
        signal: libc::WIFSIGNALED(raw).then(|| libc::WTERMSIG(raw)),
        timed_out,
        stdout_dropped: pump.dropped[0],
        stderr_dropped: pump.dropped[1],
    };
    let _ = reply(&mut pump.stream, Reply::Exited(exit));
}

/// The master's read and write ends and its resize handle (three descriptors of it).
type TerminalEnds = (
    Option<std::process::ChildStdout>,
    Option<ChildStdin>,
    Option<OwnedFd>,
);

fn terminal_ends(master: OwnedFd) -> std::io::Result<TerminalEnds> {
    let input = master.try_clone()?;
    let resizer = master.try_clone()?;
    Ok((
        Some(std::process::ChildStdout::from(master)),
        Some(ChildStdin::from(input)),
        Some(resizer),
    ))
}

/// Builds the command: account, environment, cwd, process group, pipes; or with `pty`
/// a session on a new terminal, whose master is returned.
fn prepare(
    request: &ExecRequest,
    pty: Option<PtySize>,
) -> Result<(Command, Option<OwnedFd>), (ErrorKind, String)> {
    let program = request
        .argv
        .first()
        .filter(|p| !p.is_empty())
        .ok_or((ErrorKind::InvalidInput, "argv is empty".to_owned()))?;
    let account = accounts::lookup(&request.user)
        .map_err(|e| (ErrorKind::Io, format!("reading /etc/passwd: {e}")))?
        .ok_or_else(|| {
            (
                ErrorKind::NotFound,
                format!("no such user: {}", request.user),
            )
        })?;
    let cwd = request.cwd.clone().unwrap_or_else(|| account.home.clone());
    match std::fs::metadata(&cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err((ErrorKind::NotADirectory, format!("{cwd}: not a directory"))),
        Err(e) => return Err(crate::failure::classify(&cwd, &e)),
    }
    // The shim (sandbox-init itself) starts the command and is the exec's subreaper.
    let shim = std::env::current_exe().map_err(|e| {
        (
            ErrorKind::Io,
            format!("cannot find sandbox-init itself: {e}"),
        )
    })?;
    let mut command = Command::new(shim);
    // The sandbox's envs stand where the container's environment does: under the
    // account's variables and the request's own.
    let sandbox_env = crate::env::current();
    command
        .args(["--shim", "--"])
        .args(&request.argv)
        .envs(sandbox_env.iter().cloned());
    command
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .env("SHELL", &account.shell);
    if std::env::var_os("PATH").is_none() && !sandbox_env.iter().any(|(k, _)| k == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    for (key, value) in &request.env {
        if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
            return Err((
                ErrorKind::InvalidInput,
                format!("bad environment variable {key:?}"),
            ));
        }
        command.env(key, value);
    }
    if !runnable(program, &cwd, &request.env, &sandbox_env) {
        return Err((ErrorKind::NotFound, format!("command not found: {program}")));
    }
    command.current_dir(&cwd).uid(account.uid).gid(account.gid);
    let master = match pty {
        Some(size) => {
            let pair = crate::pty::open(size, account.uid, account.gid)
                .map_err(|e| (ErrorKind::Io, format!("cannot open a terminal: {e}")))?;
            crate::pty::attach(&mut command, &pair.slave)
                .map_err(|e| (ErrorKind::Io, format!("cannot open a terminal: {e}")))?;
            Some(pair.master)
        }
        None => {
            command
                .process_group(0)
                .stdin(if request.stdin {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            None
        }
    };
    // The shim makes itself a child subreaper between fork and exec, so that orphans
    // of what the command starts stay in its tree for `kill::everything`; it gives the
    // command a clean signal mask and default dispositions (see `crate::shim`).
    // SAFETY: the closure runs between fork and exec and calls only prctl, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(kill::become_subreaper);
    }
    Ok((command, master))
}

/// Whether `program` names an executable file: itself (from `cwd`) when it has a
/// slash, else in the `PATH` the command gets (the request's, the sandbox's, or the default).
fn runnable(
    program: &str,
    cwd: &str,
    request_env: &[(String, String)],
    sandbox_env: &[(String, String)],
) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return executable(&std::path::Path::new(cwd).join(program));
    }
    let path = request_env
        .iter()
        .chain(sandbox_env)
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_else(|| DEFAULT_PATH.to_owned());
    path.split(':')
        .filter(|dir| !dir.is_empty())
        .any(|dir| executable(&std::path::Path::new(dir).join(program)))
}

/// What one poll round found.
#[derive(Debug, Default)]
struct Ready {
    exited: bool,
    signal: Option<i32>,
}

/// The byte mover between the child's pipes and the client.
struct Pump {
    stream: UnixStream,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    stdin: Option<ChildStdin>,
    /// The terminal's master, for resizes (a PTY exec only).
    resizer: Option<OwnedFd>,
    pending_stdin: Vec<u8>,
    close_stdin_when_flushed: bool,
    inbox: Vec<u8>,
    limit: Option<u64>,
    sent: [u64; 2],
    dropped: [u64; 2],
    client_gone: bool,
}

impl Pump {
    fn poll(&mut self, exited: Option<BorrowedFd<'_>>, timeout_ms: i32) -> Ready {
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let mut push = |fd: Option<i32>, events: libc::c_short| {
            fds.push(libc::pollfd {
                fd: fd.unwrap_or(-1),
                events,
                revents: 0,
            })
        };
        push(self.stdout.as_ref().map(|f| f.as_raw_fd()), libc::POLLIN);
        push(self.stderr.as_ref().map(|f| f.as_raw_fd()), libc::POLLIN);
        push(exited.map(|f| f.as_raw_fd()), libc::POLLIN);
        push(
            (!self.client_gone).then(|| self.stream.as_raw_fd()),
            libc::POLLIN,
        );
        push(
            self.stdin
                .as_ref()
                .filter(|_| !self.pending_stdin.is_empty())
                .map(|f| f.as_raw_fd()),
            libc::POLLOUT,
        );
        // SAFETY: `fds` is a valid array of pollfd; negative fds are ignored by poll.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        let mut ready = Ready::default();
        if n <= 0 {
            return ready;
        }
        let hit = |i: usize| fds[i].revents != 0;
        if hit(0) {
            self.pipe_readable(0);
        }
        if hit(1) {
            self.pipe_readable(1);
        }
        ready.exited = hit(2);
        if hit(3) {
            ready.signal = self.client_readable();
        }
        if hit(4) {
            self.flush_stdin();
        }
        ready
    }

    /// Reads one chunk of stdout (0) or stderr (1) and forwards what the limit allows.
    fn pipe_readable(&mut self, which: usize) {
        let mut buf = vec![0u8; CHUNK_LEN];
        let read = match which {
            0 => self.stdout.as_mut().map(|p| p.read(&mut buf)),
            _ => self.stderr.as_mut().map(|p| p.read(&mut buf)),
        };
        let n = match read {
            Some(Ok(0)) | Some(Err(_)) | None => {
                if matches!(read, Some(Err(ref e)) if e.kind() == std::io::ErrorKind::WouldBlock) {
                    return;
                }
                if which == 0 {
                    self.stdout = None;
                } else {
                    self.stderr = None;
                }
                return;
            }
            Some(Ok(n)) => n,
        };
        let allowed = match self.limit {
            Some(limit) => (limit.saturating_sub(self.sent[which])).min(n as u64) as usize,
            None => n,
        };
        self.dropped[which] += (n - allowed) as u64;
        if allowed == 0 || self.client_gone {
            return;
        }
        self.sent[which] += allowed as u64;
        buf.truncate(allowed);
        let frame: Frame<Reply> = if which == 0 {
            Frame::Stdout(buf)
        } else {
            Frame::Stderr(buf)
        };
        if sandbox_init::protocol::write_frame(&mut self.stream, &frame).is_err() {
            self.client_gone = true;
        }
    }

    /// Takes what the client sent; returns a signal it asked for.
    fn client_readable(&mut self) -> Option<i32> {
        let mut buf = [0u8; CHUNK_LEN];
        // SAFETY: reading into a valid buffer without blocking; the socket stays
        // blocking for our writes.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            self.client_gone = true;
            return None;
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                self.client_gone = true;
            }
            return None;
        }
        self.inbox.extend_from_slice(&buf[..n as usize]);
        let mut signal = None;
        while let Some(frame) = self.next_frame() {
            match frame {
                Frame::Stdin(bytes) if self.stdin.is_some() => {
                    self.pending_stdin.extend_from_slice(&bytes);
                    self.flush_stdin();
                }
                Frame::Message(Request::CloseStdin) => {
                    self.close_stdin_when_flushed = true;
                    self.flush_stdin();
                }
                Frame::Message(Request::Signal { signal: s }) => signal = Some(s),
                Frame::Message(Request::Resize { size }) => {
                    if let Some(master) = &self.resizer {
                        let _ = crate::pty::resize(master, size);
                    }
                }
                _ => {}
            }
        }
        signal
    }

    /// Pops one complete frame from the inbox.
    fn next_frame(&mut self) -> Option<Frame<Request>> {
        if self.inbox.len() < HEADER_LEN {
            return None;
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.inbox[..HEADER_LEN]);
        let Ok((kind, len)) = decode_header(header) else {
            self.client_gone = true;
            self.inbox.clear();
            return None;
        };
        if self.inbox.len() < HEADER_LEN + len {
            return None;
        }
        let payload = self.inbox[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.inbox.drain(..HEADER_LEN + len);
        Frame::from_parts(kind, payload).ok()
    }

    /// Writes as much pending stdin as the pipe takes; closes it when asked and empty.
    fn flush_stdin(&mut self) {
        if let Some(stdin) = self.stdin.as_mut() {
            while !self.pending_stdin.is_empty() {
                match stdin.write(&self.pending_stdin) {
                    Ok(n) => {
                        self.pending_stdin.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        // The process closed its stdin: what it did not read is moot.
                        self.pending_stdin.clear();
                        self.stdin = None;
                        break;
                    }
                }
            }
        }
        if self.close_stdin_when_flushed && self.pending_stdin.is_empty() {
            self.stdin = None;
        }
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}
