//! File operations, performed with the filesystem identity of the requesting account:
//! the connection's thread switches its fsuid/fsgid/groups (per-thread on Linux), so
//! permission checks are that account's and what it creates is owned by it.

pub(crate) mod fsys;
mod list;
mod stream;
mod write;

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use sandbox_init::protocol::{
    reply, reply_error, EntryKind, ErrorKind, FileEntry, Frame, Reply, Request, CHUNK_LEN,
};

use crate::accounts::{self, Account, Names};
use crate::failure::{classify, Failure};

/// Checks that a path is absolute, non-empty, NUL-free and not under `/proc` or `/sys`.
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
    fsys::refuse_pseudo_path(path)
}

/// The filesystem identity of an account on this thread, restored on drop.
pub(crate) struct Identity {
    switched: bool,
}

impl Identity {
    pub(crate) fn become_(account: &Account) -> Identity {
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

pub(crate) fn account(name: &str) -> Result<Account, Failure> {
    accounts::lookup(name)
        .map_err(|e| (ErrorKind::Io, format!("reading /etc/passwd: {e}")))?
        .ok_or_else(|| (ErrorKind::NotFound, format!("no such user: {name}")))
}

/// Describes `path` without following a final symlink (refusing one on a pseudo
/// filesystem, reached however).
pub fn entry(path: &str, names: &Names) -> Result<FileEntry, Failure> {
    let flags = libc::O_PATH | libc::O_NOFOLLOW;
    let fd = fsys::open_checked(path, flags)?;
    let st = fsys::stat_at(fd.as_fd(), c"").map_err(|e| classify(path, &e))?;
    let link = (st.st_mode & libc::S_IFMT == libc::S_IFLNK)
        .then(|| fsys::read_link_at(fd.as_fd(), c""))
        .flatten();
    let mut entry = fsys::entry_from(path, &st, link, names);
    entry.metadata = fsys::read_metadata(fd.as_fd(), entry.kind);
    if entry.kind == EntryKind::Symlink {
        if let Ok(followed) = std::ffi::CString::new(path) {
            entry.target_kind = fsys::target_kind_at(None, &followed);
        }
    }
    Ok(entry)
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
            return write::write_files(stream, &files, &as_user);
        }
        Request::WriteStream { as_user } => return stream::write_stream(stream, &as_user),
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
            max_entries,
            as_user,
        } => {
            let listed = account(&as_user).and_then(|account| {
                let _identity = Identity::become_(&account);
                list::list(&path, depth, max_entries)
            });
            match listed {
                Ok(entries) => list::send(stream, entries),
                Err((kind, message)) => reply_error(stream, kind, message),
            }
            return;
        }
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
            chown_tree(&path, owner.uid, owner.gid)?;
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

/// The deepest tree [`Request::Chown`] walks (one descriptor and stack frame a level).
const MAX_TREE_DEPTH: u32 = 256;

/// Gives `path` and everything under it to `uid:gid`, as root: through opened
/// directory descriptors, never following a symlink (one swapped in mid-walk by a
/// sandbox process included), so nothing outside the tree changes owner.
fn chown_tree(path: &str, uid: u32, gid: u32) -> Result<(), Failure> {
    let fd = fsys::open_checked(path, libc::O_PATH | libc::O_NOFOLLOW)?;
    fsys::chown_at(fd.as_fd(), c"", uid, gid).map_err(|e| classify(path, &e))?;
    let st = fsys::stat_at(fd.as_fd(), c"").map_err(|e| classify(path, &e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Ok(());
    }
    let dir = fsys::open_checked(path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)?;
    let stream = fsys::DirStream::new(dir).map_err(|e| classify(path, &e))?;
    chown_dir(stream, path.trim_end_matches('/'), uid, gid, 1)
}

fn chown_dir(
    mut stream: fsys::DirStream,
    shown: &str,
    uid: u32,
    gid: u32,
    level: u32,
) -> Result<(), Failure> {
    if level > MAX_TREE_DEPTH {
        return Err((
            ErrorKind::InvalidInput,
            format!("{shown}: deeper than {MAX_TREE_DEPTH} levels"),
        ));
    }
    let names = stream
        .names(usize::MAX)
        .map_err(|e| classify(shown, &e))?
        .unwrap_or_default();
    for name in names {
        let child = format!("{shown}/{}", name.to_string_lossy());
        let dir = stream.fd();
        match fsys::chown_at(dir, &name, uid, gid) {
            Ok(()) => {}
            // Removed during the walk: nothing to give.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(classify(&child, &e)),
        }
        let is_dir =
            fsys::stat_at(dir, &name).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if is_dir {
            if let Some(sub) = list::open_subdir(dir, &name, &child)? {
                chown_dir(sub, &child, uid, gid, level + 1)?;
            }
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
        let flags = libc::O_RDONLY | libc::O_NONBLOCK;
        let fd = fsys::open_checked(path, flags)?;
        let file = std::fs::File::from(fd);
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
    // A file that grows while read (a log, a counter rewritten in a loop) is cut at the
    // size announced: the reader holds us to it.
    let mut left = size;
    while left > 0 {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let n = (n as u64).min(left) as usize;
                left -= n as u64;
                let frame: Frame<Reply> = Frame::Data(buf[..n].to_vec());
                if sandbox_init::protocol::write_frame(stream, &frame).is_err() {
                    return;
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
    fn chown_walks_the_tree_without_following_symlinks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("secret"), "x").expect("secret");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).expect("tree");
        std::fs::write(tree.join("a/b/f"), "y").expect("f");
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).expect("link");
        chown_tree(tree.to_str().expect("utf8"), 4321, 4321).expect("chown");
        use std::os::unix::fs::MetadataExt;
        let owner = |p: &Path| std::fs::symlink_metadata(p).expect("meta").uid();
        for p in ["", "a", "a/b", "a/b/f", "a/link"] {
            assert_eq!(owner(&tree.join(p)), 4321, "{p}");
        }
        assert_ne!(owner(&outside), 4321);
        assert_ne!(owner(&outside.join("secret")), 4321);
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
