//! Dial: connect to a TCP port on the sandbox's own loopback (`127.0.0.1`, else
//! `[::1]`) and relay raw bytes both ways as `Data` frames, so the daemon reaches a
//! server bound to localhost only (what `getHost(port)` needs).
//!
//! Two threads, one per direction, each holding one chunk at a time: a side that does
//! not read stalls the other (blocking writes are the backpressure), and memory stays
//! bounded. The client's [`Request::CloseStdin`] half-closes the TCP connection; the
//! server's end of stream is [`Reply::End`]; the client's connection closing closes the
//! TCP connection.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use sandbox_init::protocol::{
    read_frame, reply, reply_error, write_frame, ErrorKind, Frame, Reply, Request, CHUNK_LEN,
};

/// How long a connect may take (a listener whose backlog is full never answers).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a blocked write to the TCP peer checks that the client is still there.
const WRITE_CHECK: Duration = Duration::from_secs(1);

/// Stack size of the TCP-to-client thread: it holds one chunk, on the heap.
const THREAD_STACK: usize = 128 * 1024;

/// Serves one dial on `stream`.
pub fn run(mut stream: UnixStream, port: u16) {
    let tcp = match connect(port) {
        Ok(tcp) => tcp,
        Err(e) => {
            let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorKind::NotFound
            } else {
                ErrorKind::Io
            };
            return reply_error(
                &mut stream,
                kind,
                format!("nothing accepts connections on port {port} in the sandbox: {e}"),
            );
        }
    };
    let _ = tcp.set_nodelay(true);
    let (Ok(tcp_out), Ok(client_out)) = (tcp.try_clone(), stream.try_clone()) else {
        return reply_error(&mut stream, ErrorKind::Io, "cannot duplicate the sockets");
    };
    if reply(&mut stream, Reply::Ok).is_err() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .stack_size(THREAD_STACK)
        .spawn(move || tcp_to_client(tcp_out, client_out));
    if spawned.is_err() {
        return reply_error(&mut stream, ErrorKind::Io, "cannot start a relay thread");
    }
    client_to_tcp(&mut stream, &tcp);
    // The client is gone or broke the protocol: the other thread's read ends too.
    let _ = tcp.shutdown(Shutdown::Both);
}

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(tcp) => Ok(tcp),
        Err(first) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| first)
        }
    }
}

/// Client frames to the TCP peer, until the client closes or breaks the protocol.
fn client_to_tcp(stream: &mut UnixStream, tcp: &TcpStream) {
    let _ = tcp.set_write_timeout(Some(WRITE_CHECK));
    loop {
        match read_frame::<Request>(stream) {
            Ok(Some(Frame::Data(bytes))) => {
                if !write_watching(tcp, &bytes, stream) {
                    return;
                }
            }
            Ok(Some(Frame::Message(Request::CloseStdin))) => {
                let _ = tcp.shutdown(Shutdown::Write);
            }
            Ok(Some(_)) => {
                // Only this thread's peer writes replies after `Ok`: end the relay.
                return;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Writes all of `bytes` to `tcp`; false when it failed or the client hung up while
/// the TCP peer was not reading.
fn write_watching(mut tcp: &TcpStream, mut bytes: &[u8], client: &UnixStream) -> bool {
    while !bytes.is_empty() {
        match tcp.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if hung_up(client) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Whether the client closed its connection (checked without reading from it).
fn hung_up(client: &UnixStream) -> bool {
    let mut fd = libc::pollfd {
        fd: client.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0
}

/// TCP bytes to the client as `Data` frames; the peer's end of stream is `End`, a
/// failure an `Error` (then the client's connection is shut for writing).
fn tcp_to_client(mut tcp: TcpStream, mut client: UnixStream) {
    let mut buf = vec![0u8; CHUNK_LEN];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => {
                let _ = reply(&mut client, Reply::End);
                return;
            }
            Ok(n) => {
                if write_frame(&mut client, &Frame::<Reply>::Data(buf[..n].to_vec())).is_err() {
                    let _ = tcp.shutdown(Shutdown::Both);
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                reply_error(
                    &mut client,
                    ErrorKind::Io,
                    format!("the connection failed: {e}"),
                );
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}
