//! PTY execs over sandbox-init's socket (run as an ordinary root child process, as in
//! socket.rs): the process gets a controlling terminal of the asked size, typed input
//! echoes, a resize is seen by `stty`, signals reach it, and a hang-up kills it.

mod common;
use common::Init;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use sandbox_init::protocol::{
    read_frame, write_frame, ExecRequest, Frame, PtySize, Reply, Request,
};

impl Init {
    /// Starts `sh` on a terminal of `cols` x `rows`; returns the stream and the pid.
    fn shell(&self, cols: u16, rows: u16) -> (UnixStream, i32) {
        let mut s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let request = Request::PtyExec {
            exec: ExecRequest {
                argv: vec!["sh".into()],
                env: vec![("PS1".into(), "$ ".into())],
                cwd: Some("/".into()),
                user: "root".into(),
                timeout_ms: Some(60_000),
                stdin: false,
                output_limit: None,
            },
            size: PtySize { cols, rows },
        };
        write_frame(&mut s, &Frame::Message(request)).expect("send");
        match read_frame::<Reply>(&mut s).expect("reply") {
            Some(Frame::Message(Reply::Started { pid })) => (s, pid as i32),
            other => panic!("expected started, got {other:?}"),
        }
    }
}

fn send(s: &mut UnixStream, frame: Frame<Request>) {
    write_frame(s, &frame).expect("send");
}

/// Reads terminal output until it contains `needle`; returns all of it.
fn read_until(s: &mut UnixStream, needle: &str) -> String {
    let mut seen = Vec::new();
    loop {
        match read_frame::<Reply>(s).expect("frame") {
            Some(Frame::Stdout(b)) => seen.extend(b),
            other => panic!(
                "expected output with {needle:?}, got {other:?} after {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
        let text = String::from_utf8_lossy(&seen);
        if text.contains(needle) {
            return text.into_owned();
        }
    }
}

#[test]
fn a_terminal_echoes_resizes_and_reports_the_exit() {
    let init = Init::start();
    let (mut s, _pid) = init.shell(80, 24);
    send(&mut s, Frame::Stdin(b"stty size; tty\n".to_vec()));
    let out = read_until(&mut s, "/dev/pts/");
    assert!(out.contains("24 80"), "{out:?}");
    send(
        &mut s,
        Frame::Message(Request::Resize {
            size: PtySize {
                cols: 100,
                rows: 30,
            },
        }),
    );
    send(&mut s, Frame::Stdin(b"stty size\n".to_vec()));
    read_until(&mut s, "30 100");
    send(&mut s, Frame::Stdin(b"echo $((6*7))\n".to_vec()));
    read_until(&mut s, "42");
    send(&mut s, Frame::Stdin(b"exit 3\n".to_vec()));
    loop {
        match read_frame::<Reply>(&mut s).expect("frame") {
            Some(Frame::Stdout(_)) => {}
            Some(Frame::Message(Reply::Exited(exit))) => {
                assert_eq!(exit.code, Some(3), "{exit:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn signals_reach_the_terminal_session_and_a_hang_up_kills_it() {
    let init = Init::start();
    let (mut s, pid) = init.shell(80, 24);
    // The echoed command line does not contain `bg=`: only the output does.
    send(
        &mut s,
        Frame::Stdin(b"sleep 1000 & echo \"b\"\"g=$!.\"\n".to_vec()),
    );
    let out = read_until(&mut s, ".\r\n");
    let bg: i32 = out
        .split("bg=")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {out:?}"));
    assert!(alive(bg));
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) || alive(bg) {
        assert!(Instant::now() < deadline, "the session outlived its client");
        std::thread::sleep(Duration::from_millis(20));
    }

    let (mut s, _pid) = init.shell(80, 24);
    send(&mut s, Frame::Message(Request::Signal { signal: 9 }));
    loop {
        match read_frame::<Reply>(&mut s).expect("frame") {
            Some(Frame::Stdout(_)) => {}
            Some(Frame::Message(Reply::Exited(exit))) => {
                assert_eq!(exit.signal, Some(9), "{exit:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z')
        })
        .unwrap_or(false)
}
