//! File operations, performed with the filesystem identity of the requesting account:
//! the connection's thread switches its fsuid/fsgid/groups (per-thread on Linux), so
//! permission checks are that account's and what it creates is owned by it.

use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use sandbox_init::protocol::{
    read_frame, EntryKind, ErrorKind, FileEntry, Frame, Reply, Request, WriteFileSpec, CHUNK_LEN,
};

use crate::accounts::{self, Account, Names};
use crate::server::{reply, reply_error};

/// A failure with its class and a message naming the path.
pub type Failure = (ErrorKind, String);

/// The largest listing returned.
const MAX_ENTRIES: usize = 100_000;

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

/// Checks that a path is absolute, non-empty and NUL-free.
pub fn check_path(path: &str) -> Result<(), Failure> {
    if path.is_empty() {
        return Err((ErrorKind::InvalidInput, "the path is empty".into()));
    }
    if path.contains('\0') {
        return Err((
            ErrorKind::InvalidInput,
            format!("{path:?} contains a NUL byte"),
        ));
    }
    if !path.starts_with('/') {
        return Err((ErrorKind::InvalidInput, format!("{path} is not absolute")));
    }
    Ok(())
}

/// The filesystem identity of an account on this thread, restored on drop.
struct Identity {
    switched: bool,
}

impl Identity {
    fn become_(account: &Account) -> Identity {
        if account.uid == 0 {
            return Identity { switched: false };
        }
        // SAFETY: raw syscalls change only this thread's credentials (glibc's wrappers
        // would broadcast setgroups to every thread, so the raw syscall is used).
        unsafe {
            let groups = [account.gid];
            libc::syscall(libc::SYS_setgroups, 1usize, groups.as_ptr());
            libc::setfsgid(account.gid);
            libc::setfsuid(account.uid);
        }
        Identity { switched: true }
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        if self.switched {
            // SAFETY: as above; back to root for this thread.
            unsafe {
                libc::setfsuid(0);
                libc::setfsgid(0);
                libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>());
            }
        }
    }
}

fn account(name: &str) -> Result<Account, Failure> {
    accounts::lookup(name)
        .map_err(|e| (ErrorKind::Io, format!("reading /etc/passwd: {e}")))?
        .ok_or_else(|| (ErrorKind::NotFound, format!("no such user: {name}")))
}

/// Describes `path` without following a final symlink.
pub fn entry(path: &str, names: &Names) -> Result<FileEntry, Failure> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| classify(path, &e))?;
    let kind = if meta.file_type().is_symlink() {
        EntryKind::Symlink
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    };
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned());
    Ok(FileEntry {
        name,
        path: path.to_owned(),
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        owner: names.user(meta.uid()),
        group: names.group(meta.gid()),
        modified_ms: meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000,
        symlink_target: (kind == EntryKind::Symlink)
            .then(|| std::fs::read_link(path).ok())
            .flatten()
            .map(|t| t.to_string_lossy().into_owned()),
    })
}

/// Creates `dir` and missing parents (0755); true when `dir` itself was created.
fn make_dirs(dir: &Path) -> Result<bool, Failure> {
    let shown = dir.display().to_string();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(m) if m.file_type().is_symlink() && dir.is_dir() => return Ok(false),
        Ok(_) => {
            return Err((
                ErrorKind::AlreadyExists,
                format!("{shown} exists and is not a directory"),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(classify(&shown, &e)),
    }
    if let Some(parent) = dir.parent() {
        make_dirs(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(classify(&shown, &e)),
    }
}

/// Handles every file request; `stream` is positioned after the request frame.
pub fn handle(stream: &mut UnixStream, request: Request) {
    let result = match request {
        Request::WriteFiles { files, as_user } => {
            return write_files(stream, &files, &as_user);
        }
        Request::ReadFile {
            path,
            max_size,
            as_user,
        } => return read_file(stream, &path, max_size, &as_user),
        Request::Stat { path, as_user } => as_account(&as_user, || {
            check_path(&path)?;
            entry(&path, &Names::load()).map(Reply::Entry)
        }),
        Request::List {
            path,
            depth,
            as_user,
        } => as_account(&as_user, || list(&path, depth)),
        Request::Mkdir { path, as_user } => as_account(&as_user, || {
            check_path(&path)?;
            make_dirs(Path::new(&path)).map(|created| Reply::Created { created })
        }),
        Request::Rename { from, to, as_user } => as_account(&as_user, || {
            check_path(&from)?;
            check_path(&to)?;
            std::fs::rename(&from, &to).map_err(|e| {
                let (kind, message) = classify(&from, &e);
                (kind, format!("{message} (renaming to {to})"))
            })?;
            entry(&to, &Names::load()).map(Reply::Entry)
        }),
        Request::Remove { path, as_user } => as_account(&as_user, || {
            check_path(&path)?;
            let meta = std::fs::symlink_metadata(&path).map_err(|e| classify(&path, &e))?;
            if meta.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            }
            .map_err(|e| classify(&path, &e))?;
            Ok(Reply::Ok)
        }),
        Request::Chown { path, owner } => (|| {
            check_path(&path)?;
            let owner = account(&owner)?;
            chown_tree(Path::new(&path), owner.uid, owner.gid)?;
            Ok(Reply::Ok)
        })(),
        other => Err((
            ErrorKind::Protocol,
            format!("not a file request: {other:?}"),
        )),
    };
    match result {
        Ok(r) => {
            let _ = reply(stream, r);
        }
        Err((kind, message)) => reply_error(stream, kind, message),
    }
}

fn as_account(name: &str, op: impl FnOnce() -> Result<Reply, Failure>) -> Result<Reply, Failure> {
    let account = account(name)?;
    let _identity = Identity::become_(&account);
    op()
}

fn list(path: &str, depth: u32) -> Result<Reply, Failure> {
    check_path(path)?;
    if depth == 0 {
        return Err((ErrorKind::InvalidInput, "depth must be at least 1".into()));
    }
    let meta = std::fs::metadata(path).map_err(|e| classify(path, &e))?;
    if !meta.is_dir() {
        return Err((ErrorKind::NotADirectory, format!("{path}: not a directory")));
    }
    let names = Names::load();
    let mut entries = Vec::new();
    let mut frontier = vec![(PathBuf::from(path), 1u32)];
    while let Some((dir, level)) = frontier.pop() {
        let shown = dir.display().to_string();
        let read = std::fs::read_dir(&dir).map_err(|e| classify(&shown, &e))?;
        for item in read {
            let item = item.map_err(|e| classify(&shown, &e))?;
            let child = item.path().display().to_string();
            let e = entry(&child, &names)?;
            if e.kind == EntryKind::Dir && level < depth {
                frontier.push((item.path(), level + 1));
            }
            entries.push(e);
            if entries.len() > MAX_ENTRIES {
                return Err((
                    ErrorKind::TooLarge,
                    format!("{path} has more than {MAX_ENTRIES} entries at depth {depth}"),
                ));
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Reply::Entries { entries })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<(), Failure> {
    let shown = path.display().to_string();
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| classify(&shown, &e))?;
    let meta = std::fs::symlink_metadata(path).map_err(|e| classify(&shown, &e))?;
    if meta.is_dir() {
        let read = std::fs::read_dir(path).map_err(|e| classify(&shown, &e))?;
        for item in read {
            let item = item.map_err(|e| classify(&shown, &e))?;
            chown_tree(&item.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn read_file(stream: &mut UnixStream, path: &str, max_size: Option<u64>, as_user: &str) {
    let opened = (|| {
        check_path(path)?;
        let account = account(as_user)?;
        let _identity = Identity::become_(&account);
        // O_NONBLOCK: opening a FIFO must not hang; only regular files are read.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| classify(path, &e))?;
        let meta = file.metadata().map_err(|e| classify(path, &e))?;
        if meta.is_dir() {
            return Err((ErrorKind::IsADirectory, format!("{path}: is a directory")));
        }
        if !meta.is_file() {
            return Err((
                ErrorKind::InvalidInput,
                format!("{path}: not a regular file"),
            ));
        }
        if let Some(max) = max_size.filter(|max| meta.len() > *max) {
            return Err((
                ErrorKind::TooLarge,
                format!("{path} is {} bytes, over the limit of {max}", meta.len()),
            ));
        }
        Ok((file, meta.len()))
    })();
    let (mut file, size) = match opened {
        Ok(opened) => opened,
        Err((kind, message)) => return reply_error(stream, kind, message),
    };
    if reply(stream, Reply::FileStart { size }).is_err() {
        return;
    }
    let mut buf = vec![0u8; CHUNK_LEN];
    let mut left = max_size.unwrap_or(u64::MAX);
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // A file that grows while read is cut at the limit.
                let n = (n as u64).min(left) as usize;
                left -= n as u64;
                let frame: Frame<Reply> = Frame::Data(buf[..n].to_vec());
                if sandbox_init::protocol::write_frame(stream, &frame).is_err() {
                    return;
                }
                if left == 0 {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let (kind, message) = classify(path, &e);
                return reply_error(stream, kind, message);
            }
        }
    }
    let _ = reply(stream, Reply::End);
}

/// One file being received into a temporary file beside its destination.
struct Incoming {
    spec: WriteFileSpec,
    temp: Option<PathBuf>,
    file: Option<std::fs::File>,
}

fn write_files(stream: &mut UnixStream, files: &[WriteFileSpec], as_user: &str) {
    let account = match account(as_user) {
        Ok(a) => a,
        Err((kind, message)) => return reply_error(stream, kind, message),
    };
    let identity = Identity::become_(&account);
    let mut failure: Option<Failure> = None;
    let mut incoming: Vec<Incoming> = Vec::with_capacity(files.len());
    for (index, spec) in files.iter().enumerate() {
        let mut item = Incoming {
            spec: spec.clone(),
            temp: None,
            file: None,
        };
        if failure.is_none() {
            match open_temp(spec, index) {
                Ok((temp, file)) => {
                    item.temp = Some(temp);
                    item.file = Some(file);
                }
                Err(f) => failure = Some(f),
            }
        }
        // Always consume this file's bytes so the stream stays in step.
        if let Err(f) = receive(stream, &mut item) {
            if matches!(f.0, ErrorKind::Protocol) {
                cleanup(&incoming);
                cleanup(std::slice::from_ref(&item));
                return reply_error(stream, f.0, f.1);
            }
            failure.get_or_insert(f);
        }
        incoming.push(item);
    }
    if let Some((kind, message)) = failure {
        cleanup(&incoming);
        return reply_error(stream, kind, message);
    }
    for item in &incoming {
        if let Some(temp) = &item.temp {
            if let Err(e) = std::fs::rename(temp, &item.spec.path) {
                cleanup(&incoming);
                let (kind, message) = classify(&item.spec.path, &e);
                return reply_error(stream, kind, message);
            }
        }
    }
    let names = Names::load();
    let entries: Result<Vec<_>, _> = incoming
        .iter()
        .map(|i| entry(&i.spec.path, &names))
        .collect();
    drop(identity);
    match entries {
        Ok(entries) => {
            let _ = reply(stream, Reply::Entries { entries });
        }
        Err((kind, message)) => reply_error(stream, kind, message),
    }
}

fn open_temp(spec: &WriteFileSpec, index: usize) -> Result<(PathBuf, std::fs::File), Failure> {
    check_path(&spec.path)?;
    let path = Path::new(&spec.path);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err((
            ErrorKind::InvalidInput,
            format!("{} names no file", spec.path),
        ));
    };
    make_dirs(parent)?;
    let mode = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err((
                ErrorKind::IsADirectory,
                format!("{}: is a directory", spec.path),
            ))
        }
        Ok(m) => m.mode() & 0o7777,
        Err(_) => spec.mode.unwrap_or(0o644) & 0o7777,
    };
    let temp = parent.join(format!(
        ".{}.sandboxd-{}-{index}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(|e| classify(&spec.path, &e))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| classify(&spec.path, &e))?;
    Ok((temp, file))
}

/// Reads `spec.size` bytes of Data frames into the temp file (or discards them).
fn receive(stream: &mut UnixStream, item: &mut Incoming) -> Result<(), Failure> {
    let mut left = item.spec.size;
    let mut failure = None;
    while left > 0 {
        let bytes = match read_frame::<Request>(stream) {
            Ok(Some(Frame::Data(bytes))) => bytes,
            Ok(_) => {
                return Err((
                    ErrorKind::Protocol,
                    format!("expected {left} more bytes for {}", item.spec.path),
                ))
            }
            Err(e) => return Err((ErrorKind::Protocol, e.to_string())),
        };
        if bytes.len() as u64 > left {
            return Err((
                ErrorKind::Protocol,
                format!("a data frame runs past the end of {}", item.spec.path),
            ));
        }
        left -= bytes.len() as u64;
        if let Some(file) = item.file.as_mut() {
            if let Err(e) = file.write_all(&bytes) {
                failure.get_or_insert(classify(&item.spec.path, &e));
                item.file = None;
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

fn cleanup(items: &[Incoming]) {
    for item in items {
        if let Some(temp) = &item.temp {
            let _ = std::fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_clean() {
        assert!(check_path("/a/b").is_ok());
        assert_eq!(check_path("").unwrap_err().0, ErrorKind::InvalidInput);
        assert_eq!(check_path("a/b").unwrap_err().0, ErrorKind::InvalidInput);
        assert_eq!(check_path("/a\0").unwrap_err().0, ErrorKind::InvalidInput);
    }

    #[test]
    fn errors_name_the_path_and_class() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(
            classify("/x", &e),
            (ErrorKind::NotFound, "/x: no such file or directory".into())
        );
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(classify("/y", &e).0, ErrorKind::PermissionDenied);
        let e = io::Error::from_raw_os_error(libc::ENOTDIR);
        assert_eq!(classify("/z", &e).0, ErrorKind::NotADirectory);
    }
}
