//! Atomic writes: each file's bytes go to a fresh temporary file beside it, created
//! with `O_CREAT|O_EXCL|O_NOFOLLOW` under a random name relative to the opened parent
//! directory, written and fsynced, then renamed over the target. Concurrent writes of
//! one path each land whole (the last rename wins); a symlink planted by a sandbox
//! process at any name cannot redirect the bytes, and a failure leaves no temp behind.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use sandbox_init::protocol::{
    read_frame, reply, reply_error, ErrorKind, FileEntry, Frame, Reply, Request, WriteFileSpec,
};

use super::fsys::{self, c_path};
use super::{account, check_path, make_dirs, Identity};
use crate::accounts::Names;
use crate::failure::{classify, Failure};

/// How many random names are tried before giving up (each collision is 1 in 2^64,
/// unless something inside the sandbox is creating the same names).
const TEMP_ATTEMPTS: usize = 16;

/// One file being received into its temporary file.
struct Incoming {
    spec: WriteFileSpec,
    target: Option<Target>,
}

/// Where one file goes: its opened parent directory, its name, and the temp file.
pub(super) struct Target {
    pub(super) dir: OwnedFd,
    pub(super) name: CString,
    pub(super) temp: CString,
    pub(super) file: Option<std::fs::File>,
}

/// Handles [`Request::WriteFiles`]; `stream` is positioned after the request frame.
pub fn write_files(stream: &mut UnixStream, files: &[WriteFileSpec], as_user: &str) {
    let account = match account(as_user) {
        Ok(a) => a,
        Err((kind, message)) => return reply_error(stream, kind, message),
    };
    let identity = Identity::become_(&account);
    let mut failure: Option<Failure> = None;
    let mut incoming: Vec<Incoming> = Vec::with_capacity(files.len());
    for spec in files {
        let mut item = Incoming {
            spec: spec.clone(),
            target: None,
        };
        if failure.is_none() {
            match open_temp(spec) {
                Ok(target) => item.target = Some(target),
                Err(f) => failure = Some(f),
            }
        }
        // Always consume this file's bytes so the stream stays in step.
        if let Err(f) = receive(stream, &mut item) {
            if matches!(f.0, ErrorKind::Protocol) {
                incoming.push(item);
                cleanup(&incoming);
                return reply_error(stream, f.0, f.1);
            }
            failure.get_or_insert(f);
        }
        incoming.push(item);
    }
    if failure.is_none() {
        failure = incoming.iter_mut().find_map(|item| sync(item).err());
    }
    if let Some((kind, message)) = failure {
        cleanup(&incoming);
        return reply_error(stream, kind, message);
    }
    let written: Vec<_> = incoming
        .iter()
        .filter_map(|i| i.target.as_ref().map(|t| (i.spec.path.as_str(), t)))
        .collect();
    let committed = commit(&written);
    if committed.is_err() {
        cleanup(&incoming);
    }
    drop(identity);
    match committed {
        Ok(entries) => {
            let _ = reply(stream, Reply::Entries { entries });
        }
        Err((kind, message)) => reply_error(stream, kind, message),
    }
}

/// Puts written temporary files in place, in order, then reads back what was written
/// (metadata included): the entries a write answers. It stops at the first rename
/// that fails; the caller then removes the temporary files left.
pub(super) fn commit(written: &[(&str, &Target)]) -> Result<Vec<FileEntry>, Failure> {
    for (path, t) in written {
        fsys::rename_at(t.dir.as_fd(), &t.temp, &t.name).map_err(|e| classify(path, &e))?;
    }
    // The renames are on disk before the client hears of them: a crash, or a disk
    // whose journal aborts, loses no file a write acknowledged.
    for (path, t) in written {
        let flags = libc::O_RDONLY | libc::O_DIRECTORY;
        fsys::open_at(Some(t.dir.as_fd()), c".", flags, 0)
            .map(std::fs::File::from)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| classify(path, &e))?;
    }
    let names = Names::load();
    written
        .iter()
        .map(|(path, t)| {
            let st = fsys::stat_at(t.dir.as_fd(), &t.name).map_err(|e| classify(path, &e))?;
            let link = fsys::read_link_at(t.dir.as_fd(), &t.name);
            let mut entry = fsys::entry_from(path, &st, link, &names);
            let flags = libc::O_PATH | libc::O_NOFOLLOW;
            if let Ok(fd) = fsys::open_at(Some(t.dir.as_fd()), &t.name, flags, 0) {
                entry.metadata = fsys::read_metadata(fd.as_fd(), entry.kind);
            }
            Ok(entry)
        })
        .collect()
}

/// Opens the parent directory and creates a fresh temp file in it.
pub(super) fn open_temp(spec: &WriteFileSpec) -> Result<Target, Failure> {
    check_path(&spec.path)?;
    let path = Path::new(&spec.path);
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err((
            ErrorKind::InvalidInput,
            format!("{} names no file", spec.path),
        ));
    };
    make_dirs(parent)?;
    let shown = parent.display().to_string();
    let dir = fsys::open_checked(&shown, libc::O_PATH | libc::O_DIRECTORY)?;
    let name = c_path(name)?;
    // An existing file keeps its mode; the target itself is never followed (a symlink
    // there is replaced by the new file, as `rename` does).
    let mode = match fsys::stat_at(dir.as_fd(), &name) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            return Err((
                ErrorKind::IsADirectory,
                format!("{}: is a directory", spec.path),
            ))
        }
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => st.st_mode & 0o7777,
        _ => spec.mode.unwrap_or(0o644) & 0o7777,
    };
    for _ in 0..TEMP_ATTEMPTS {
        let temp = c_path(format!(".sandboxd-write-{:016x}", fsys::random_u64()))?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        match fsys::open_at(Some(dir.as_fd()), &temp, flags, mode) {
            Ok(fd) => {
                let file = std::fs::File::from(fd);
                let target = Target {
                    dir,
                    name,
                    temp,
                    file: None,
                };
                // The umask narrowed the mode at creation; set it exactly.
                use std::os::unix::fs::PermissionsExt;
                if let Err(e) = file.set_permissions(std::fs::Permissions::from_mode(mode)) {
                    fsys::unlink_at(target.dir.as_fd(), &target.temp);
                    return Err(classify(&spec.path, &e));
                }
                return Ok(Target {
                    file: Some(file),
                    ..target
                });
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(classify(&spec.path, &e)),
        }
    }
    Err((
        ErrorKind::Io,
        format!("{}: no free temporary name beside it", spec.path),
    ))
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
        if let Some(file) = item.target.as_mut().and_then(|t| t.file.as_mut()) {
            if let Err(e) = file.write_all(&bytes) {
                failure.get_or_insert(classify(&item.spec.path, &e));
                if let Some(t) = item.target.as_mut() {
                    t.file = None;
                }
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Flushes a received file to disk and closes it.
fn sync(item: &mut Incoming) -> Result<(), Failure> {
    if let Some(t) = item.target.as_mut() {
        match t.file.take() {
            Some(file) => file.sync_all().map_err(|e| classify(&item.spec.path, &e))?,
            None => {
                return Err((
                    ErrorKind::Io,
                    format!("{}: the temporary file was lost", item.spec.path),
                ))
            }
        }
    }
    Ok(())
}

/// Removes the temp files still in place (a renamed one is gone already).
fn cleanup(items: &[Incoming]) {
    for t in items.iter().filter_map(|i| i.target.as_ref()) {
        fsys::unlink_at(t.dir.as_fd(), &t.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_init::protocol::write_frame;

    /// Writes `content` to `path` as root through a socket pair; the reply.
    fn write_one(path: &str, content: &[u8]) -> Reply {
        let (mut client, mut server) = UnixStream::pair().expect("pair");
        let specs = vec![WriteFileSpec {
            path: path.to_owned(),
            size: content.len() as u64,
            mode: None,
        }];
        let init = std::thread::spawn(move || write_files(&mut server, &specs, "root"));
        for chunk in content.chunks(64 * 1024) {
            write_frame::<Request>(&mut client, &Frame::Data(chunk.to_vec())).expect("data");
        }
        let reply = match read_frame::<Reply>(&mut client).expect("reply") {
            Some(Frame::Message(reply)) => reply,
            other => panic!("unexpected {other:?}"),
        };
        init.join().expect("server");
        reply
    }

    #[test]
    fn a_symlink_at_the_target_is_replaced_not_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "untouched").expect("outside");
        let target = tmp.path().join("d/target");
        std::fs::create_dir(tmp.path().join("d")).expect("d");
        std::os::unix::fs::symlink(&outside, &target).expect("link");
        let reply = write_one(target.to_str().expect("utf8"), b"new");
        assert!(matches!(reply, Reply::Entries { .. }), "{reply:?}");
        assert_eq!(std::fs::read(&outside).expect("read"), b"untouched");
        assert!(!std::fs::symlink_metadata(&target)
            .expect("meta")
            .is_symlink());
        assert_eq!(std::fs::read(&target).expect("read"), b"new");
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("d"))
            .expect("ls")
            .collect();
        assert_eq!(left.len(), 1, "no temp file left behind");
    }

    #[test]
    fn concurrent_writes_of_one_path_each_land_whole() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("one");
        let path = target.to_str().expect("utf8").to_owned();
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 300_000]).collect();
        let writers: Vec<_> = contents
            .iter()
            .cloned()
            .map(|c| {
                let path = path.clone();
                std::thread::spawn(move || write_one(&path, &c))
            })
            .collect();
        for w in writers {
            let reply = w.join().expect("writer");
            assert!(matches!(reply, Reply::Entries { .. }), "{reply:?}");
        }
        let got = std::fs::read(&target).expect("read");
        assert!(contents.contains(&got), "a mix of writes");
        assert_eq!(std::fs::read_dir(tmp.path()).expect("ls").count(), 1);
    }
}
