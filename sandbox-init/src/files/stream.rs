//! Streamed writes ([`Request::WriteStream`]): files whose sizes are not known up front,
//! each received into a temporary file beside its target as in `write.rs`, all put in
//! place by renames once the client commits, none if anything failed or the client
//! went away first. Memory stays at one frame whatever the files weigh.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use sandbox_init::protocol::{
    read_frame, reply, reply_error, ErrorKind, Frame, Reply, Request, WriteFileSpec,
};

use super::fsys;
use super::write::{commit, open_temp, Target};
use super::{account, Identity};
use crate::failure::{classify, Failure};

/// The most files one streamed write may carry (each holds a directory descriptor).
pub const MAX_STREAM_FILES: usize = 1024;

/// One file received (or being received).
struct Received {
    path: String,
    target: Option<Target>,
}

/// Handles [`Request::WriteStream`]; `stream` is positioned after the request frame.
pub fn write_stream(stream: &mut UnixStream, as_user: &str) {
    let account = match account(as_user) {
        Ok(a) => a,
        Err((kind, message)) => return reply_error(stream, kind, message),
    };
    let identity = Identity::become_(&account);
    let mut files: Vec<Received> = Vec::new();
    let mut failure: Option<Failure> = None;
    loop {
        let frame = match read_frame::<Request>(stream) {
            Ok(Some(frame)) => frame,
            // The client went away before its commit: nothing changes.
            Ok(None) | Err(_) => return cleanup(&mut files),
        };
        match frame {
            Frame::Message(Request::StreamFile(spec)) => {
                if failure.is_none() {
                    failure = close_last(&mut files).err();
                }
                let mut item = Received {
                    path: spec.path.clone(),
                    target: None,
                };
                if failure.is_none() {
                    match start(&files, &spec) {
                        Ok(target) => item.target = Some(target),
                        Err(f) => failure = Some(f),
                    }
                }
                files.push(item);
            }
            Frame::Data(bytes) => {
                let Some(item) = files.last_mut() else {
                    cleanup(&mut files);
                    return reply_error(stream, ErrorKind::Protocol, "data before any file");
                };
                if let Some(file) = item.target.as_mut().and_then(|t| t.file.as_mut()) {
                    if let Err(e) = file.write_all(&bytes) {
                        failure.get_or_insert(classify(&item.path, &e));
                        item.target.as_mut().map(|t| t.file.take());
                    }
                }
            }
            Frame::Message(Request::Commit) => break,
            _ => {
                cleanup(&mut files);
                return reply_error(
                    stream,
                    ErrorKind::Protocol,
                    "expected stream_file, data or commit",
                );
            }
        }
    }
    if failure.is_none() {
        failure = close_last(&mut files).err();
    }
    if files.is_empty() {
        failure.get_or_insert((ErrorKind::InvalidInput, "no file to write".into()));
    }
    if let Some((kind, message)) = failure {
        cleanup(&mut files);
        return reply_error(stream, kind, message);
    }
    let written: Vec<_> = files
        .iter()
        .filter_map(|i| i.target.as_ref().map(|t| (i.path.as_str(), t)))
        .collect();
    let committed = commit(&written);
    if committed.is_err() {
        cleanup(&mut files);
    }
    drop(identity);
    match committed {
        Ok(entries) => {
            let _ = reply(stream, Reply::Entries { entries });
        }
        Err((kind, message)) => reply_error(stream, kind, message),
    }
}

/// Checks one more file and opens its temporary file, its metadata set.
fn start(
    files: &[Received],
    spec: &sandbox_init::protocol::StreamFileSpec,
) -> Result<Target, Failure> {
    if files.len() >= MAX_STREAM_FILES {
        return Err((
            ErrorKind::TooLarge,
            format!("more than {MAX_STREAM_FILES} files in one write"),
        ));
    }
    if files.iter().any(|f| f.path == spec.path) {
        return Err((
            ErrorKind::InvalidInput,
            format!("{} is given twice", spec.path),
        ));
    }
    fsys::check_metadata(&spec.metadata)?;
    let target = open_temp(&WriteFileSpec {
        path: spec.path.clone(),
        size: 0,
        mode: spec.mode,
    })?;
    if let Some(file) = &target.file {
        if let Err(e) = fsys::write_metadata(file, &spec.metadata) {
            fsys::unlink_at(target.dir.as_fd(), &target.temp);
            return Err(match e.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT | libc::E2BIG) => (
                    ErrorKind::NoSpace,
                    format!("{}: no space for its metadata", spec.path),
                ),
                _ => classify(&spec.path, &e),
            });
        }
    }
    Ok(target)
}

/// Flushes the last file to disk and closes it (its name stays for the rename).
fn close_last(files: &mut [Received]) -> Result<(), Failure> {
    let Some(item) = files.last_mut() else {
        return Ok(());
    };
    if let Some(t) = item.target.as_mut() {
        match t.file.take() {
            Some(file) => file.sync_all().map_err(|e| classify(&item.path, &e))?,
            None => {
                return Err((
                    ErrorKind::Io,
                    format!("{}: the temporary file was lost", item.path),
                ))
            }
        }
    }
    Ok(())
}

/// Removes the temporary files still in place.
fn cleanup(files: &mut [Received]) {
    for t in files.iter().filter_map(|i| i.target.as_ref()) {
        fsys::unlink_at(t.dir.as_fd(), &t.temp);
    }
}
