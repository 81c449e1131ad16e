//! The socket: bind it (root only), accept connections, one thread each, and dispatch
//! the first frame of each to exec or the file operations.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use sandbox_init::protocol::{
    read_frame, reply, reply_error, ErrorKind, Frame, FrameError, Reply, Request, PROTOCOL_VERSION,
    SOCKET_NAME,
};

use crate::reaper::Registry;

/// Stack size of connection threads: they hold small buffers only.
const THREAD_STACK: usize = 256 * 1024;

/// Binds `<dir>/init.sock`, replacing a stale one, readable by root only.
pub fn bind(dir: &Path) -> std::io::Result<UnixListener> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections forever, each on its own thread.
pub fn serve(listener: UnixListener, registry: Arc<Registry>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        let registry = registry.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(THREAD_STACK)
            .spawn(move || handle(stream, &registry));
        if let Err(e) = spawned {
            eprintln!("sandbox-init: cannot start a connection thread: {e}");
        }
    }
}

fn handle(mut stream: UnixStream, registry: &Registry) {
    let request = match read_frame::<Request>(&mut stream) {
        Ok(Some(Frame::Message(request))) => request,
        Ok(None) => return,
        Ok(Some(_)) => {
            return reply_error(&mut stream, ErrorKind::Protocol, "expected a request first")
        }
        Err(FrameError::Json(e)) => {
            return reply_error(
                &mut stream,
                ErrorKind::Protocol,
                format!("malformed request: {e}"),
            )
        }
        Err(e) => return reply_error(&mut stream, ErrorKind::Protocol, e.to_string()),
    };
    match request {
        Request::Hello { .. } => {
            let _ = reply(
                &mut stream,
                Reply::Hello {
                    version: PROTOCOL_VERSION,
                    pid: std::process::id(),
                },
            );
        }
        Request::Exec(exec) => crate::exec::run(stream, exec, None, registry),
        Request::PtyExec { exec, size } => crate::exec::run(stream, exec, Some(size), registry),
        Request::Watch(watch) => crate::watch::run(stream, watch),
        Request::Dial { port } => crate::dial::run(stream, port),
        Request::SetEnv { env } => match crate::env::set(env) {
            Ok(()) => {
                let _ = reply(&mut stream, Reply::Ok);
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                reply_error(&mut stream, ErrorKind::InvalidInput, e.to_string())
            }
            Err(e) => reply_error(&mut stream, ErrorKind::Io, format!("keeping the env: {e}")),
        },
        Request::CloseStdin | Request::Signal { .. } | Request::Resize { .. } => reply_error(
            &mut stream,
            ErrorKind::Protocol,
            "close_stdin, signal and resize are only valid during an exec",
        ),
        file_request => crate::files::handle(&mut stream, file_request),
    }
}
