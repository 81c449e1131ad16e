//! Dial over sandbox-init's socket, run as an ordinary child process: relaying bytes
//! both ways to a server bound to 127.0.0.1 only, half-closes, a refused port, and a
//! client that hangs up closing the TCP connection.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sandbox_init::protocol::{
    read_frame, write_frame, ErrorKind, Frame, Reply, Request, SOCKET_NAME,
};

struct Init {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Init {
    fn start() -> Init {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(env!("CARGO_BIN_EXE_sandbox-init"))
            .arg("--socket-dir")
            .arg(dir.path().join("run"))
            .args(["--user", "root", "--uid", "0", "--home", "/root"])
            .spawn()
            .expect("spawn sandbox-init");
        let init = Init { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(init.socket()).is_err() {
            assert!(Instant::now() < deadline, "sandbox-init did not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        init
    }

    fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("run").join(SOCKET_NAME)
    }

    /// Dials `port`; returns the connection and the first reply.
    fn dial(&self, port: u16) -> (UnixStream, Reply) {
        let mut s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write_frame(&mut s, &Frame::Message(Request::Dial { port })).expect("send");
        match read_frame::<Reply>(&mut s).expect("reply") {
            Some(Frame::Message(reply)) => (s, reply),
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    (l, port)
}

/// Reads `Data` frames until `End`; returns the bytes.
fn read_to_end(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        match read_frame::<Reply>(s).expect("frame") {
            Some(Frame::Data(b)) => out.extend_from_slice(&b),
            Some(Frame::Message(Reply::End)) => return out,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn relays_both_ways_to_a_localhost_only_server_with_half_close() {
    let init = Init::start();
    let (l, port) = listener();
    let server = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut got = Vec::new();
        c.read_to_end(&mut got).expect("read");
        // The client half-closed; answer after it, bigger than a chunk.
        let mut answer = b"got ".to_vec();
        answer.extend_from_slice(&got);
        answer.extend(std::iter::repeat_n(b'x', 300_000));
        c.write_all(&answer).expect("write");
    });
    let (mut s, reply) = init.dial(port);
    assert_eq!(reply, Reply::Ok);
    write_frame(&mut s, &Frame::<Request>::Data(b"hello ".to_vec())).expect("data");
    write_frame(&mut s, &Frame::<Request>::Data(b"world".to_vec())).expect("data");
    write_frame(&mut s, &Frame::Message(Request::CloseStdin)).expect("close");
    let got = read_to_end(&mut s);
    assert!(got.starts_with(b"got hello world"), "{:?}", &got[..20]);
    assert_eq!(got.len(), "got hello world".len() + 300_000);
    server.join().expect("server");
}

#[test]
fn a_refused_port_is_a_clear_error() {
    let init = Init::start();
    let (l, port) = listener();
    drop(l);
    let (_s, reply) = init.dial(port);
    match reply {
        Reply::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::NotFound);
            assert!(message.contains(&port.to_string()), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn a_client_that_hangs_up_closes_the_connection() {
    let init = Init::start();
    let (l, port) = listener();
    let (s, reply) = init.dial(port);
    assert_eq!(reply, Reply::Ok);
    let (mut c, _) = l.accept().expect("accept");
    c.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    drop(s);
    let mut buf = [0u8; 16];
    assert_eq!(c.read(&mut buf).expect("end of stream, not a timeout"), 0);
}

#[test]
fn a_client_that_hangs_up_while_the_server_does_not_read_ends_the_relay() {
    let init = Init::start();
    let (l, port) = listener();
    let (mut s, reply) = init.dial(port);
    assert_eq!(reply, Reply::Ok);
    let (mut c, _) = l.accept().expect("accept");
    c.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    // Fill the server's receive buffer and the relay's send buffer, then go.
    s.set_nonblocking(true).expect("nonblocking");
    let chunk = Frame::<Request>::Data(vec![b'y'; 64 * 1024])
        .encode()
        .expect("enc");
    let mut sent = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stalled = 0;
    // Until nothing moved for two seconds: every buffer on the way is full.
    while stalled < 200 && Instant::now() < deadline {
        match s.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => {
                sent += n;
                stalled = 0;
            }
            Err(_) => {
                stalled += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    drop(s);
    // Longer than the relay's check: it notices the hang-up while blocked writing to
    // the server, and drops what the client's connection still buffered.
    std::thread::sleep(Duration::from_secs(3));
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0usize;
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the connection stayed open: {e}"),
        }
    }
    assert!(
        received + 100_000 < sent,
        "the relay went on after the hang-up: {received} of {sent}"
    );
    let _ = c.shutdown(Shutdown::Both);
}

#[test]
fn the_servers_end_of_stream_is_end_and_its_reset_an_error() {
    let init = Init::start();
    let (l, port) = listener();
    let (mut s, reply) = init.dial(port);
    assert_eq!(reply, Reply::Ok);
    let (mut c, _) = l.accept().expect("accept");
    c.write_all(b"bye").expect("write");
    drop(c);
    assert_eq!(read_to_end(&mut s), b"bye");
    // The client may still send; then it closes.
    drop(s);
}
