//! sandbox-init over its socket, run as an ordinary child process (not PID 1) with the
//! root account, so the host's /etc is left alone: exec with exit codes, stdin
//! streaming, signals, timeouts that kill the whole group, output limits, and files.

mod common;
use common::Init;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use sandbox_init::protocol::{
    read_frame, write_frame, ErrorKind, ExecRequest, ExitInfo, Frame, Reply, Request, WriteFileSpec,
};

impl Init {
    fn call(&self, request: Request) -> Reply {
        let mut s = self.connect();
        write_frame(&mut s, &Frame::Message(request)).expect("send");
        match read_frame::<Reply>(&mut s).expect("reply") {
            Some(Frame::Message(reply)) => reply,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Runs a shell command; returns (stdout, stderr, exit).
    fn sh(
        &self,
        script: &str,
        timeout_ms: Option<u64>,
        limit: Option<u64>,
    ) -> (Vec<u8>, Vec<u8>, ExitInfo) {
        let mut s = self.connect();
        write_frame(
            &mut s,
            &Frame::Message(exec(script, timeout_ms, limit, false)),
        )
        .expect("send");
        collect(&mut s)
    }
}

fn exec(script: &str, timeout_ms: Option<u64>, output_limit: Option<u64>, stdin: bool) -> Request {
    Request::Exec(ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("GREETING".into(), "hi".into())],
        cwd: Some("/".into()),
        user: "root".into(),
        timeout_ms,
        stdin,
        output_limit,
    })
}

fn collect(s: &mut UnixStream) -> (Vec<u8>, Vec<u8>, ExitInfo) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match read_frame::<Reply>(s).expect("frame") {
            Some(Frame::Message(Reply::Started { .. })) => {}
            Some(Frame::Stdout(b)) => out.extend(b),
            Some(Frame::Stderr(b)) => err.extend(b),
            Some(Frame::Message(Reply::Exited(exit))) => return (out, err, exit),
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

#[test]
fn hello_and_exit_codes_and_env() {
    let init = Init::start();
    assert!(matches!(
        init.call(Request::Hello {
            version: sandbox_init::protocol::PROTOCOL_VERSION
        }),
        Reply::Hello {
            version: sandbox_init::protocol::PROTOCOL_VERSION,
            ..
        }
    ));
    let (out, err, exit) = init.sh("echo $GREETING $HOME; echo oops >&2; exit 3", None, None);
    assert_eq!(out, b"hi /root\n");
    assert_eq!(err, b"oops\n");
    assert_eq!(
        (exit.code, exit.signal, exit.timed_out),
        (Some(3), None, false)
    );
    // Signals are unblocked in the child even though sandbox-init blocks them all.
    let mut s = init.connect();
    let mut request = exec("", None, None, false);
    if let Request::Exec(e) = &mut request {
        e.argv = vec!["grep".into(), "SigBlk".into(), "/proc/self/status".into()];
    }
    write_frame(&mut s, &Frame::Message(request)).expect("send");
    let (out, _, _) = collect(&mut s);
    assert_eq!(out, b"SigBlk:\t0000000000000000\n");
    let (_, _, exit) = init.sh("exec /bin/kill -TERM $$", None, None);
    assert_eq!(exit.signal, Some(libc::SIGTERM));
}

#[test]
fn a_timeout_kills_the_whole_group() {
    let init = Init::start();
    let mut s = init.connect();
    write_frame(
        &mut s,
        &Frame::Message(exec("sleep 30 & sleep 31", Some(200), None, false)),
    )
    .expect("send");
    let pid = match read_frame::<Reply>(&mut s).expect("frame") {
        Some(Frame::Message(Reply::Started { pid })) => pid as i32,
        other => panic!("{other:?}"),
    };
    let started = Instant::now();
    let (_, _, exit) = collect(&mut s);
    assert!(exit.timed_out);
    assert_eq!(exit.signal, Some(libc::SIGKILL));
    assert!(started.elapsed() < Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(pid) {
        assert!(Instant::now() < deadline, "the background sleep survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_that_hangs_up_ends_its_process_group() {
    let init = Init::start();
    let mut s = init.connect();
    write_frame(
        &mut s,
        &Frame::Message(exec("sleep 40 & sleep 41", None, None, false)),
    )
    .expect("send");
    let pid = match read_frame::<Reply>(&mut s).expect("frame") {
        Some(Frame::Message(Reply::Started { pid })) => pid as i32,
        other => panic!("{other:?}"),
    };
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(5);
    while group_alive(pid) {
        assert!(Instant::now() < deadline, "the group outlived its client");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn output_beyond_the_limit_is_counted_not_sent() {
    let init = Init::start();
    let (out, _, exit) = init.sh("head -c 10000000 /dev/zero", None, Some(1000));
    assert_eq!(out.len(), 1000);
    assert_eq!(exit.stdout_dropped, 10_000_000 - 1000);
    assert_eq!(exit.code, Some(0));
}

#[test]
fn stdin_streams_and_signals_reach_the_process() {
    let init = Init::start();
    let mut s = init.connect();
    write_frame(&mut s, &Frame::Message(exec("cat", None, None, true))).expect("send");
    assert!(matches!(
        read_frame::<Reply>(&mut s).expect("f"),
        Some(Frame::Message(Reply::Started { .. }))
    ));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for chunk in big.chunks(60_000) {
        write_frame(&mut s, &Frame::<Request>::Stdin(chunk.to_vec())).expect("stdin");
    }
    write_frame(&mut s, &Frame::Message(Request::CloseStdin)).expect("close");
    let (out, _, exit) = collect(&mut s);
    assert_eq!(out, big);
    assert_eq!(exit.code, Some(0));

    let mut s = init.connect();
    write_frame(
        &mut s,
        &Frame::Message(exec(
            "trap 'echo got-int; exit 7' INT; while :; do sleep 0.05; done",
            None,
            None,
            false,
        )),
    )
    .expect("send");
    assert!(matches!(
        read_frame::<Reply>(&mut s).expect("f"),
        Some(Frame::Message(Reply::Started { .. }))
    ));
    std::thread::sleep(Duration::from_millis(200));
    write_frame(
        &mut s,
        &Frame::Message(Request::Signal {
            signal: libc::SIGINT,
        }),
    )
    .expect("signal");
    let (out, _, exit) = collect(&mut s);
    assert_eq!(out, b"got-int\n");
    assert_eq!(exit.code, Some(7));
}

#[test]
fn unknown_programs_users_and_cwds_are_clear_errors() {
    let init = Init::start();
    let mut request = exec("true", None, None, false);
    if let Request::Exec(e) = &mut request {
        e.argv = vec!["no-such-program-xyz".into()];
    }
    assert!(
        matches!(init.call(request), Reply::Error { kind: ErrorKind::NotFound, message } if message.contains("no-such-program-xyz"))
    );
    let mut request = exec("true", None, None, false);
    if let Request::Exec(e) = &mut request {
        e.cwd = Some("/nonexistent/dir".into());
    }
    assert!(
        matches!(init.call(request), Reply::Error { kind: ErrorKind::NotFound, message } if message.contains("/nonexistent/dir"))
    );
    let mut request = exec("true", None, None, false);
    if let Request::Exec(e) = &mut request {
        e.user = "nobody-here".into();
    }
    assert!(matches!(
        init.call(request),
        Reply::Error {
            kind: ErrorKind::NotFound,
            ..
        }
    ));
}

#[test]
fn files_write_read_list_and_all_or_nothing() {
    let init = Init::start();
    let root = init.dir.path().join("files");
    let a = root.join("a/b.txt").display().to_string();
    let blocked = root.join("a/b.txt/child").display().to_string();

    let mut s = init.connect();
    let specs = vec![WriteFileSpec {
        path: a.clone(),
        size: 5,
        mode: None,
    }];
    write_frame(
        &mut s,
        &Frame::Message(Request::WriteFiles {
            files: specs,
            as_user: "root".into(),
        }),
    )
    .expect("send");
    write_frame(&mut s, &Frame::<Request>::Data(b"hello".to_vec())).expect("data");
    assert!(
        matches!(read_frame::<Reply>(&mut s).expect("f"), Some(Frame::Message(Reply::Entries { entries })) if entries.len() == 1)
    );
    assert_eq!(std::fs::read(&a).expect("read"), b"hello");

    // Second file cannot be created: the first is not replaced either.
    let mut s = init.connect();
    let specs = vec![
        WriteFileSpec {
            path: a.clone(),
            size: 3,
            mode: None,
        },
        WriteFileSpec {
            path: blocked,
            size: 1,
            mode: None,
        },
    ];
    write_frame(
        &mut s,
        &Frame::Message(Request::WriteFiles {
            files: specs,
            as_user: "root".into(),
        }),
    )
    .expect("send");
    write_frame(&mut s, &Frame::<Request>::Data(b"new".to_vec())).expect("data");
    write_frame(&mut s, &Frame::<Request>::Data(b"x".to_vec())).expect("data");
    assert!(matches!(
        read_frame::<Reply>(&mut s).expect("f"),
        Some(Frame::Message(Reply::Error { .. }))
    ));
    assert_eq!(std::fs::read(&a).expect("read"), b"hello");
    let leftovers: Vec<_> = std::fs::read_dir(root.join("a"))
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    // Read back, read a directory, list, mkdir twice.
    let mut s = init.connect();
    write_frame(
        &mut s,
        &Frame::Message(Request::ReadFile {
            path: a.clone(),
            max_size: None,
            as_user: "root".into(),
        }),
    )
    .expect("send");
    assert!(matches!(
        read_frame::<Reply>(&mut s).expect("f"),
        Some(Frame::Message(Reply::FileStart { size: 5 }))
    ));
    assert!(
        matches!(read_frame::<Reply>(&mut s).expect("f"), Some(Frame::Data(d)) if d == b"hello")
    );
    assert!(matches!(
        read_frame::<Reply>(&mut s).expect("f"),
        Some(Frame::Message(Reply::End))
    ));
    let dir = root.join("a").display().to_string();
    assert!(matches!(
        init.call(Request::ReadFile {
            path: dir.clone(),
            max_size: None,
            as_user: "root".into()
        }),
        Reply::Error {
            kind: ErrorKind::IsADirectory,
            ..
        }
    ));
    assert!(matches!(
        init.call(Request::List { path: root.display().to_string(), depth: 2, max_entries: None, as_user: "root".into() }),
        Reply::Entries { entries } if entries.len() == 2
    ));
    let made = root.join("m/n").display().to_string();
    assert_eq!(
        init.call(Request::Mkdir {
            path: made.clone(),
            as_user: "root".into()
        }),
        Reply::Created { created: true }
    );
    assert_eq!(
        init.call(Request::Mkdir {
            path: made,
            as_user: "root".into()
        }),
        Reply::Created { created: false }
    );
    assert!(Path::new(&root.join("m/n")).is_dir());
}

/// Alive and not a zombie.
fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].trim_start().to_owned();
            Some(!rest.starts_with('Z') && !rest.starts_with('X'))
        })
        .unwrap_or(false)
}

/// Starts a command with escapers that print their pids: a `setsid` child keeping
/// stdout and a double-forked `setsid` daemon with its output redirected. Returns the
/// stream (after the two pids were read) and the pids.
fn start_escapers(init: &Init, timeout_ms: Option<u64>) -> (UnixStream, Vec<i32>) {
    let mut s = init.connect();
    let script = "setsid sleep 61 & echo $!; \
                  (setsid sleep 62 </dev/null >/dev/null 2>&1 & echo $!); sleep 60";
    write_frame(
        &mut s,
        &Frame::Message(exec(script, timeout_ms, None, false)),
    )
    .expect("send");
    let mut out = Vec::new();
    while out.iter().filter(|b| **b == b'\n').count() < 2 {
        match read_frame::<Reply>(&mut s).expect("frame") {
            Some(Frame::Message(Reply::Started { .. })) => {}
            Some(Frame::Stdout(b)) => out.extend_from_slice(&b),
            other => panic!("{other:?}"),
        }
    }
    let pids = String::from_utf8_lossy(&out)
        .lines()
        .map(|l| l.trim().parse().expect("a pid"))
        .collect();
    (s, pids)
}

fn wait_all_dead(pids: &[i32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| process_alive(*p)) {
        assert!(Instant::now() < deadline, "{what}: {pids:?} survived");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_timeout_kills_setsid_and_double_forked_children() {
    let init = Init::start();
    let (mut s, pids) = start_escapers(&init, Some(500));
    let (_, _, exit) = collect(&mut s);
    assert!(exit.timed_out, "{exit:?}");
    wait_all_dead(&pids, "after the timeout");
}

#[test]
fn a_hang_up_kills_setsid_and_double_forked_children() {
    let init = Init::start();
    let (s, pids) = start_escapers(&init, None);
    assert!(pids.iter().all(|p| process_alive(*p)), "{pids:?}");
    drop(s);
    wait_all_dead(&pids, "after the hang-up");
}

#[test]
fn a_command_that_ends_by_itself_keeps_its_background_processes() {
    let init = Init::start();
    let (out, _, exit) = init.sh(
        "setsid sleep 63 </dev/null >/dev/null 2>&1 & echo $!",
        None,
        None,
    );
    assert_eq!(exit.code, Some(0));
    let pid: i32 = String::from_utf8_lossy(&out).trim().parse().expect("a pid");
    assert!(process_alive(pid), "a background server was killed");
    // SAFETY: killing the sleep this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A file that grows while it is read (a log, a counter rewritten in a loop) is sent
/// at the size it had when opened: the reader is told that size and gets exactly it,
/// never more, so the daemon's stream does not break off.
#[test]
fn a_file_that_grows_while_read_is_cut_at_its_opened_size() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let init = Init::start();
    let path = init.dir.path().join("growing.log");
    let mut file = std::fs::File::create(&path).expect("create");
    file.write_all(&[b'x'; 64 * 1024]).expect("seed");
    let stop = Arc::new(AtomicBool::new(false));
    // About 4 MB a second, at most 8 MB: the file grows all through the reads.
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for _ in 0..2048 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                file.write_all(&[b'y'; 4096]).expect("append");
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    for _ in 0..20 {
        let mut s = init.connect();
        let request = Request::ReadFile {
            path: path.display().to_string(),
            max_size: None,
            as_user: "root".into(),
        };
        write_frame(&mut s, &Frame::Message(request)).expect("send");
        let size = match read_frame::<Reply>(&mut s).expect("frame") {
            Some(Frame::Message(Reply::FileStart { size })) => size,
            other => panic!("expected the file's start, got {other:?}"),
        };
        let mut got = 0u64;
        loop {
            match read_frame::<Reply>(&mut s).expect("frame") {
                Some(Frame::Data(bytes)) => got += bytes.len() as u64,
                Some(Frame::Message(Reply::End)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, size, "bytes sent against the size announced");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}
