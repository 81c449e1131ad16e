//! The client against fake peers served by this test process: a planted symlink is not
//! followed, a socket another process serves gets nothing, and a flood is cut off.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

use sandbox_init::protocol::{read_frame, write_frame, Frame, Reply, Request, SOCKET_NAME};

use super::*;

fn exec_request(output_limit: Option<u64>) -> ExecRequest {
    ExecRequest {
        argv: vec!["true".into()],
        env: vec![("SECRET".into(), "hunter2".into())],
        cwd: None,
        user: "user".into(),
        timeout_ms: None,
        stdin: false,
        output_limit,
    }
}

fn run_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).expect("run dir");
    (dir, run)
}

#[tokio::test]
async fn a_symlink_at_the_socket_path_is_not_followed() {
    let (dir, run) = run_dir();
    let host = dir.path().join("host.sock");
    let listener = UnixListener::bind(&host).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    std::os::unix::fs::symlink(&host, run.join(SOCKET_NAME)).expect("symlink");
    let client = InitClient::new(run);
    client.set_init_pid(std::process::id());
    let err = client.hello().await.expect_err("a symlink is refused");
    assert!(matches!(err, InitError::Untrusted(_)), "{err}");
    assert!(err.to_string().contains("symlink"), "{err}");
    let accepted = listener.accept();
    assert!(
        matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the symlink's target was connected to: {accepted:?}"
    );
}

#[tokio::test]
async fn a_socket_another_process_serves_gets_no_request() {
    let (_dir, run) = run_dir();
    let listener = UnixListener::bind(run.join(SOCKET_NAME)).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        got.len()
    });
    let client = InitClient::new(run);
    // Any pid but ours: the listener (this process) is not the container's init.
    client.set_init_pid(std::process::id() + 1);
    let err = client
        .exec(exec_request(None))
        .await
        .expect_err("another process's socket is refused");
    assert!(matches!(err, InitError::Untrusted(_)), "{err}");
    assert_eq!(server.join().expect("server thread"), 0, "bytes were sent");
}

#[tokio::test]
async fn an_unknown_init_is_not_connected_to() {
    let (_dir, run) = run_dir();
    let err = InitClient::new(run).hello().await.expect_err("refused");
    assert!(matches!(err, InitError::Untrusted(_)), "{err}");
}

#[tokio::test]
async fn exec_output_past_the_limit_is_cut_off() {
    const LIMIT: u64 = 1 << 20;
    const FLOOD: usize = 256 << 20;
    let (_dir, run) = run_dir();
    let listener = UnixListener::bind(run.join(SOCKET_NAME)).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let request = read_frame::<Request>(&mut stream).expect("a request");
        assert!(matches!(request, Some(Frame::Message(Request::Exec(_)))));
        write_frame(&mut stream, &Frame::Message(Reply::Started { pid: 7 })).expect("started");
        let chunk = Frame::<Reply>::Stdout(vec![b'x'; CHUNK_LEN])
            .encode()
            .expect("encodes");
        let mut sent = 0;
        while sent < FLOOD && stream.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
        sent
    });
    let client = InitClient::new(run);
    client.set_init_pid(std::process::id());
    let err = client
        .exec(exec_request(Some(LIMIT)))
        .await
        .expect_err("a flood is cut off");
    assert!(matches!(err, InitError::Protocol(_)), "{err}");
    assert!(err.to_string().contains("output limit"), "{err}");
    drop(client);
    let sent = server.join().expect("server thread");
    eprintln!("the fake peer got {sent} bytes out before it was cut off");
    assert!(sent < FLOOD, "the client read the whole flood");
}

#[tokio::test]
async fn a_dial_is_a_byte_stream_with_half_close_and_drop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, run) = run_dir();
    let listener = UnixListener::bind(run.join(SOCKET_NAME)).expect("bind");
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let first = read_frame::<Request>(&mut s).expect("request");
        assert_eq!(first, Some(Frame::Message(Request::Dial { port: 8000 })));
        write_frame(&mut s, &Frame::Message(Reply::Ok)).expect("ok");
        let data = read_frame::<Request>(&mut s).expect("data");
        assert_eq!(data, Some(Frame::Data(b"ping".to_vec())));
        write_frame(&mut s, &Frame::<Reply>::Data(b"pong".to_vec())).expect("data");
        write_frame(&mut s, &Frame::Message(Reply::End)).expect("end");
        let close = read_frame::<Request>(&mut s).expect("close");
        assert_eq!(close, Some(Frame::Message(Request::CloseStdin)));
        // Dropping the stream ends the relay: the connection closes.
        read_frame::<Request>(&mut s).expect("end of stream")
    });
    let client = InitClient::new(run);
    client.set_init_pid(std::process::id());
    let mut stream = client.dial(8000).await.expect("dial");
    stream.write_all(b"ping").await.expect("write");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut got))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(got, b"pong");
    stream.shutdown().await.expect("shutdown");
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    let rest = tokio::task::spawn_blocking(move || peer.join().expect("peer"))
        .await
        .expect("join");
    assert_eq!(rest, None);
}

#[tokio::test]
async fn a_refused_dial_is_a_remote_error() {
    let (_dir, run) = run_dir();
    let listener = UnixListener::bind(run.join(SOCKET_NAME)).expect("bind");
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let _ = read_frame::<Request>(&mut s);
        let refused = Reply::Error {
            kind: ErrorKind::NotFound,
            message: "nothing accepts connections on port 9".into(),
        };
        let _ = write_frame(&mut s, &Frame::Message(refused));
    });
    let client = InitClient::new(run);
    client.set_init_pid(std::process::id());
    let err = client.dial(9).await.expect_err("refused");
    assert!(
        matches!(
            err,
            InitError::Remote {
                kind: ErrorKind::NotFound,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn dials_past_the_bound_are_refused_until_one_ends() {
    let (_dir, run) = run_dir();
    let listener = UnixListener::bind(run.join(SOCKET_NAME)).expect("bind");
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            let _ = read_frame::<Request>(&mut s);
            let _ = write_frame(&mut s, &Frame::Message(Reply::Ok));
            open.push(s);
        }
    });
    let client = InitClient::new(run);
    client.set_init_pid(std::process::id());
    let mut dials = Vec::new();
    for _ in 0..MAX_DIALS {
        dials.push(client.dial(80).await.expect("dial"));
    }
    let err = client.dial(80).await.expect_err("one too many");
    assert!(matches!(err, InitError::Busy(_)), "{err}");
    drop(dials.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match client.dial(80).await {
            Ok(_) => break,
            Err(InitError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("a freed dial is not given back: {e}"),
        }
    }
}
