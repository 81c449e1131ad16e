//! Watches and streamed writes of sandbox-init over its socket, run as an ordinary
//! child process with the root account: every event type of a recursive watch, the
//! files API's own writes seen as the target's create and write, entries with their
//! metadata, the bound of the event queue, and watches ending with their connection.

mod common;
use common::Init;

use std::collections::BTreeMap;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use sandbox_init::protocol::{
    read_frame, write_frame, ErrorKind, Frame, Reply, Request, StreamFileSpec, WatchEvent, WatchOp,
    WatchRequest,
};

impl Init {
    fn watch(&self, path: &str, recursive: bool, include_entry: bool) -> (UnixStream, Reply) {
        let mut s = self.connect();
        let request = Request::Watch(WatchRequest {
            path: path.to_owned(),
            recursive,
            include_entry,
            allow_network_mounts: false,
            as_user: "root".into(),
        });
        write_frame(&mut s, &Frame::Message(request)).expect("send");
        let reply = recv(&mut s);
        (s, reply)
    }
}

fn recv(s: &mut UnixStream) -> Reply {
    match read_frame::<Reply>(s).expect("a reply in time") {
        Some(Frame::Message(reply)) => reply,
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Reads events until `done` holds for them (or the deadline passes).
fn until(s: &mut UnixStream, done: impl Fn(&[WatchEvent]) -> bool) -> Vec<WatchEvent> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while !done(&got) {
        assert!(Instant::now() < deadline, "events so far: {got:?}");
        match recv(s) {
            Reply::WatchEvents { events } => got.extend(events),
            other => panic!("unexpected {other:?} after {got:?}"),
        }
    }
    got
}

fn has(events: &[WatchEvent], name: &str, op: WatchOp) -> bool {
    events.iter().any(|e| e.name == name && e.op == op)
}

/// Writes one file through a streamed write with metadata; the reply.
fn stream_write(init: &Init, path: &str, chunks: &[&[u8]], metadata: &[(&str, &str)]) -> Reply {
    let mut s = init.connect();
    let send = |s: &mut UnixStream, f: Frame<Request>| write_frame(s, &f).expect("send");
    send(
        &mut s,
        Frame::Message(Request::WriteStream {
            as_user: "root".into(),
        }),
    );
    send(
        &mut s,
        Frame::Message(Request::StreamFile(StreamFileSpec {
            path: path.to_owned(),
            mode: None,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })),
    );
    for chunk in chunks {
        send(&mut s, Frame::Data(chunk.to_vec()));
    }
    send(&mut s, Frame::Message(Request::Commit));
    recv(&mut s)
}

#[test]
fn a_recursive_watch_reports_every_event_type() {
    let init = Init::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_str().expect("utf8").to_owned();
    std::fs::create_dir(tmp.path().join("old")).expect("old dir");
    let (mut s, reply) = init.watch(&root, true, false);
    assert_eq!(reply, Reply::Watching);
    std::fs::write(tmp.path().join("a.txt"), "a").expect("create");
    std::fs::write(tmp.path().join("a.txt"), "aa").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        tmp.path().join("a.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::rename(tmp.path().join("a.txt"), tmp.path().join("b.txt")).expect("rename");
    std::fs::remove_file(tmp.path().join("b.txt")).expect("remove");
    std::fs::write(tmp.path().join("old/in-old.txt"), "x").expect("in an old dir");
    // A new directory with content at once: what it held before its watch is reported.
    std::fs::create_dir_all(tmp.path().join("new/deeper")).expect("new dirs");
    std::fs::write(tmp.path().join("new/deeper/f.txt"), "f").expect("in a new dir");
    let events = until(&mut s, |e| {
        has(e, "new/deeper/f.txt", WatchOp::Create)
            && has(e, "old/in-old.txt", WatchOp::Create)
            && has(e, "b.txt", WatchOp::Remove)
    });
    for (name, op) in [
        ("a.txt", WatchOp::Create),
        ("a.txt", WatchOp::Write),
        ("a.txt", WatchOp::Chmod),
        ("a.txt", WatchOp::Rename),
        ("b.txt", WatchOp::Create),
        ("b.txt", WatchOp::Remove),
        ("new", WatchOp::Create),
        ("new/deeper", WatchOp::Create),
    ] {
        assert!(has(&events, name, op), "{name} {op:?} in {events:?}");
    }

    // The files API's write (a temporary file renamed over the target) is the
    // target's create and write, with the entry and its metadata; the temporary file
    // is never reported.
    let (mut s, reply) = init.watch(&root, false, true);
    assert_eq!(reply, Reply::Watching);
    let path = format!("{root}/meta.txt");
    let reply = stream_write(&init, &path, &[b"hello ", b"world"], &[("owner", "infra")]);
    let Reply::Entries { entries } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(entries[0].size, 11);
    assert_eq!(
        entries[0].metadata,
        BTreeMap::from([("owner".into(), "infra".into())])
    );
    let events = until(&mut s, |e| has(e, "meta.txt", WatchOp::Write));
    assert!(has(&events, "meta.txt", WatchOp::Create), "{events:?}");
    assert!(
        events.iter().all(|e| !e.name.contains(".sandboxd-write-")),
        "{events:?}"
    );
    let entry = events
        .iter()
        .find_map(|e| e.entry.as_ref())
        .expect("an entry");
    assert_eq!(entry.path, path);
    assert_eq!(
        entry.metadata.get("owner").map(String::as_str),
        Some("infra")
    );
    let stat = init_call(
        &init,
        Request::Stat {
            path: path.clone(),
            as_user: "root".into(),
        },
    );
    let Reply::Entry(stat) = stat else {
        panic!("{stat:?}")
    };
    assert_eq!(
        stat.metadata.get("owner").map(String::as_str),
        Some("infra")
    );
    assert_eq!(std::fs::read(&path).expect("read"), b"hello world");
    // Rewritten without metadata: none is left.
    let reply = stream_write(&init, &path, &[b"x"], &[]);
    let Reply::Entries { entries } = reply else {
        panic!("{reply:?}")
    };
    assert!(entries[0].metadata.is_empty());
    // Metadata envd would refuse is refused, and nothing is written.
    let reply = stream_write(
        &init,
        &format!("{root}/bad.txt"),
        &[b"x"],
        &[("k", "caf\u{e9}")],
    );
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::InvalidInput,
                ..
            }
        ),
        "{reply:?}"
    );
    assert!(!tmp.path().join("bad.txt").exists());
}

fn init_call(init: &Init, request: Request) -> Reply {
    let mut s = init.connect();
    write_frame(&mut s, &Frame::Message(request)).expect("send");
    recv(&mut s)
}

#[test]
fn watches_end_with_their_connection_and_are_bounded() {
    let init = Init::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_str().expect("utf8").to_owned();
    // A file is not a directory; a missing path is not found.
    std::fs::write(tmp.path().join("file"), "").expect("file");
    let (_, reply) = init.watch(&format!("{root}/file"), false, false);
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::InvalidInput,
                ..
            }
        ),
        "{reply:?}"
    );
    let (_, reply) = init.watch(&format!("{root}/missing"), false, false);
    assert!(
        matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::NotFound,
                ..
            }
        ),
        "{reply:?}"
    );

    // 16 at once, no more; closing them makes room again, many times over.
    for round in 0..3 {
        let mut open = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while open.len() < 16 {
            let (s, reply) = init.watch(&root, false, false);
            match reply {
                Reply::Watching => open.push(s),
                other => {
                    // The previous round's watches are still ending.
                    assert!(Instant::now() < deadline, "round {round}: {other:?}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let (_, reply) = init.watch(&root, false, false);
        assert!(
            matches!(
                reply,
                Reply::Error {
                    kind: ErrorKind::TooLarge,
                    ..
                }
            ),
            "{reply:?}"
        );
    }
}

#[test]
fn a_client_that_does_not_read_overflows_the_bounded_queue() {
    let init = Init::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_str().expect("utf8").to_owned();
    let (mut s, reply) = init.watch(&root, false, false);
    assert_eq!(reply, Reply::Watching);
    // Far more events than the kernel queues (16384 by default) plus what the socket
    // buffers, while nobody reads.
    let max_queued: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(16384);
    for i in 0..(max_queued * 2 + 40_000) / 2 {
        let p = tmp.path().join(format!("f{i}"));
        std::fs::write(&p, "").expect("create");
        std::fs::remove_file(&p).expect("remove");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no overflow reported");
        match recv(&mut s) {
            Reply::WatchEvents { events } => assert!(!events.is_empty() && events.len() <= 256),
            Reply::Error { kind, message } => {
                assert_eq!(kind, ErrorKind::TooLarge);
                assert!(message.contains("overflowed"), "{message}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
