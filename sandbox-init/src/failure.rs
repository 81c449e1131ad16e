//! What a failed operation tells the client: a protocol error class and a message
//! naming the path. A leaf: exec, the files and the watches all map OS errors here.

use std::io;

use sandbox_init::protocol::ErrorKind;

/// A failure with its class and a message naming the path.
pub type Failure = (ErrorKind, String);

/// Maps an OS error on `path` to a protocol error.
pub fn classify(path: &str, e: &io::Error) -> Failure {
    let kind = match e.raw_os_error() {
        Some(libc::ENOENT) => ErrorKind::NotFound,
        Some(libc::EEXIST) => ErrorKind::AlreadyExists,
        Some(libc::ENOTDIR) => ErrorKind::NotADirectory,
        Some(libc::EISDIR) => ErrorKind::IsADirectory,
        Some(libc::EACCES | libc::EPERM | libc::EROFS) => ErrorKind::PermissionDenied,
        Some(libc::ENAMETOOLONG | libc::EINVAL | libc::ELOOP) => ErrorKind::InvalidInput,
        Some(libc::ENOSPC | libc::EDQUOT) => ErrorKind::NoSpace,
        _ => ErrorKind::Io,
    };
    let text = e.to_string();
    let text = text
        .split(" (os error")
        .next()
        .unwrap_or(&text)
        .to_lowercase();
    (kind, format!("{path}: {text}"))
}
