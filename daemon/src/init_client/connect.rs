//! Reaching a sandbox's sandbox-init without trusting anything its container controls.
//!
//! `<sandbox dir>/run` is bound read-write into the container at `/.sandboxd/run`, so
//! that sandbox-init (root in the container) can create its socket there. Root in the
//! container is the same uid as sandbox-init and, without `CAP_SYS_ADMIN`, neither can
//! remount the directory read-only once the socket is bound: the directory cannot be
//! made unwritable to the one and not the other. So root in the container can put
//! anything at `init.sock`: a symlink to a socket on the host, a file, or a socket a
//! process of its own listens on. The daemon therefore:
//!
//! 1. opens the run directory itself (`O_PATH|O_DIRECTORY|O_NOFOLLOW`): it is the bind's
//!    source inside the daemon's own 0700 sandbox directory, which the container cannot
//!    rename or replace;
//! 2. opens `init.sock` relative to that descriptor with `O_PATH|O_NOFOLLOW` and checks
//!    with `fstat` that it is a socket: a symlink is refused without being followed;
//! 3. connects through `/proc/self/fd/N`, which names exactly that inode (no path is
//!    resolved a second time, so nothing can be swapped in between);
//! 4. checks the listener with `SO_PEERCRED`: it must be the container's init process
//!    (Docker's `State.Pid`, learnt when the container starts or is re-adopted), not
//!    another process in the container that bound a socket of its own.
//!
//! Only then is a request sent. What comes back is bounded by the caller (see the
//! parent module).

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use sandbox_init::protocol::SOCKET_NAME;
use tokio::net::UnixStream;

use super::InitError;

/// Connects to the socket in `run_dir` if it is a socket, and keeps the connection
/// only if the process that listens on it is `init_pid`.
pub(super) async fn connect(
    run_dir: &Path,
    init_pid: Option<u32>,
) -> Result<UnixStream, InitError> {
    let Some(expected) = init_pid else {
        return Err(InitError::Untrusted(
            "its init process is not known (its container is not running)".into(),
        ));
    };
    let socket = open_socket(run_dir)?;
    let via = format!("/proc/self/fd/{}", socket.as_raw_fd());
    let stream = UnixStream::connect(&via)
        .await
        .map_err(InitError::Unreachable)?;
    drop(socket);
    let peer = stream.peer_cred().map_err(InitError::Unreachable)?.pid();
    if peer != i32::try_from(expected).ok() {
        let peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
        tracing::warn!(
            socket = %run_dir.join(SOCKET_NAME).display(),
            peer_pid = %peer,
            init_pid = expected,
            "refusing a sandbox socket that its init does not serve"
        );
        return Err(InitError::Untrusted(format!(
            "the process serving its socket (pid {peer}) is not its sandbox-init \
             (pid {expected}): something in the container replaced the socket"
        )));
    }
    Ok(stream)
}

/// Opens `run_dir/init.sock` itself (not what it may point to) and checks it is a socket.
fn open_socket(run_dir: &Path) -> Result<OwnedFd, InitError> {
    let dir = CString::new(run_dir.as_os_str().as_bytes())
        .map_err(|_| InitError::Untrusted("its run directory has a NUL byte".into()))?;
    let dir = open_at(
        libc::AT_FDCWD,
        &dir,
        libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
    .map_err(InitError::Unreachable)?;
    let name = CString::new(SOCKET_NAME).expect("the socket name is a constant without NUL");
    let socket = open_at(
        dir.as_raw_fd(),
        &name,
        libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
    )
    .map_err(InitError::Unreachable)?;
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `socket` is an open descriptor and `st` a valid out-pointer.
    if unsafe { libc::fstat(socket.as_raw_fd(), &mut st) } != 0 {
        return Err(InitError::Unreachable(std::io::Error::last_os_error()));
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFSOCK {
        let what = match kind {
            libc::S_IFLNK => "a symlink",
            libc::S_IFREG => "a regular file",
            libc::S_IFDIR => "a directory",
            _ => "not a socket",
        };
        tracing::warn!(
            socket = %run_dir.join(SOCKET_NAME).display(),
            "refusing a sandbox socket path that is {what}"
        );
        return Err(InitError::Untrusted(format!(
            "its socket path is {what}, not sandbox-init's socket: something in the \
             container replaced it"
        )));
    }
    Ok(socket)
}

fn open_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; `dir` is AT_FDCWD or a descriptor we hold open.
    let fd = unsafe { libc::openat(dir, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat succeeded, so `fd` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
