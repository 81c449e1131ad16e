//! The daemon <-> sandbox-init socket under attack by root in the container. The run
//! directory `/.sandboxd/run` is a writable bind of a host directory, so root (here a
//! process a `setup` step leaves behind) can put anything at `init.sock`:
//! - a symlink to a socket on the host, served by this test, which floods a reply to
//!   whoever connects: the daemon must never connect to it;
//! - a socket of its own that floods a reply: the daemon must refuse it (it is not the
//!   container's init) without sending it a request, with bounded memory.
//!
//! Either way the sandbox's calls fail with a clear 502 and every other sandbox keeps
//! working. The daemon's peak RSS is printed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sandboxd_e2e::{Daemon, StatusCode};
use serde_json::{json, Value};

/// How much a fake peer sends after `started` (the release build's daemon held all of it).
const FLOOD_MIB: usize = 256;

/// The peak resident set size of a process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One frame of the sandbox-init protocol: length (u32 BE), kind, payload.
fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// A socket on the host that records connections and floods a reply to each.
struct HostPeer {
    dir: tempfile::TempDir,
    connections: Arc<AtomicUsize>,
    request_bytes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostPeer {
    fn start() -> HostPeer {
        let dir = tempfile::Builder::new()
            .prefix("sbx-hostpeer-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let listener = UnixListener::bind(dir.path().join("host.sock")).expect("bind");
        let connections = Arc::new(AtomicUsize::new(0));
        let request_bytes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, request_bytes, stop) =
                (connections.clone(), request_bytes.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = vec![0u8; 64 * 1024];
                    if let Ok(n) = stream.read(&mut buf) {
                        request_bytes.fetch_add(n, Ordering::SeqCst);
                    }
                    flood(&mut stream);
                }
            })
        };
        HostPeer {
            dir,
            connections,
            request_bytes,
            stop,
            thread: Some(thread),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("host.sock")
    }
}

impl Drop for HostPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = UnixStream::connect(self.path());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `started`, then FLOOD_MIB MiB of stdout in 1 MiB frames, until the reader goes away.
fn flood(stream: &mut UnixStream) {
    let _ = stream.write_all(&frame(0, br#"{"type":"started","pid":1}"#));
    let chunk = frame(1, &vec![b'x'; 1 << 20]);
    for _ in 0..FLOOD_MIB {
        if stream.write_all(&chunk).is_err() {
            return;
        }
    }
}

/// A root script a setup step leaves running: waits (bounded) for the user to touch
/// /tmp/go, does `action`, then touches /tmp/planted.
fn planter(action: &str) -> String {
    format!(
        "for i in $(seq 1200); do [ -e /tmp/go ] && break; sleep 0.05; done\n{action}\ntouch /tmp/planted\n"
    )
}

/// A sandbox whose setup leaves `script` running as root in the background.
async fn planted_sandbox(d: &Daemon, files: Value) -> String {
    d.create_sandbox(json!({
        "agent": "test",
        "files": files,
        "setup": ["nohup bash /home/user/plant.sh >/dev/null 2>&1 &"]
    }))
    .await
}

/// Lets the planter act, and waits until it has (over the still-genuine socket).
async fn trigger(d: &Daemon, id: &str) {
    let out = d
        .exec(
            id,
            "touch /tmp/go; for i in $(seq 400); do [ -e /tmp/planted ] && exit 0; sleep 0.05; done; exit 1",
        )
        .await;
    assert_eq!(out["exitCode"], 0, "the planter did not act: {out}");
}

/// An exec with a secret in its environment, as the issue's victim sent.
async fn exec_with_secret(d: &Daemon, id: &str) -> (StatusCode, Value) {
    d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/exec"),
        Some(json!({ "command": "echo hi", "envs": { "SECRET_TOKEN": "hunter2" } })),
    )
    .await
}

/// The call on the tampered sandbox failed as untrusted, the daemon's peak RSS grew by
/// less than 64 MiB, and another sandbox still works; then everything is removed.
async fn refused_and_others_served(
    d: &Daemon,
    (status, body): (StatusCode, Value),
    (before, after): (u64, u64),
    id: &str,
    bystander: &str,
) {
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "sandbox_untrusted", "{body}");
    assert!(
        after < before + 64 * 1024,
        "daemon peak RSS grew from {before} KiB to {after} KiB"
    );

    let ok = d.exec(bystander, "echo still here").await;
    assert_eq!(ok["stdout"], "still here\n", "{ok}");
    d.delete_sandbox(id).await;
    d.delete_sandbox(bystander).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_symlink_to_a_host_socket_planted_by_root_is_never_followed() {
    let host = HostPeer::start();
    let d = Daemon::start().await;
    let bystander = d.create_sandbox(json!({ "agent": "test" })).await;
    let action = format!(
        "ln -s {} /.sandboxd/run/planted && mv -fT /.sandboxd/run/planted /.sandboxd/run/init.sock",
        host.path().display()
    );
    let id = planted_sandbox(&d, json!({ "plant.sh": planter(&action) })).await;
    trigger(&d, &id).await;

    let before = peak_rss_kib(d.pid());
    let (status, body) = exec_with_secret(&d, &id).await;
    let after = peak_rss_kib(d.pid());
    eprintln!(
        "symlink to a host socket: HTTP {status} {body}; host listener saw {} connection(s), \
         {} request bytes; daemon peak RSS {before} KiB -> {after} KiB",
        host.connections.load(Ordering::SeqCst),
        host.request_bytes.load(Ordering::SeqCst),
    );
    assert_eq!(
        host.connections.load(Ordering::SeqCst),
        0,
        "the daemon followed the container's symlink to a host socket"
    );
    refused_and_others_served(&d, (status, body), (before, after), &id, &bystander).await;
}

/// A root process's own socket at the path: logs the request bytes it got, then floods.
const FAKE_INIT: &str = r#"
use IO::Socket::UNIX;
$SIG{PIPE} = 'IGNORE';
my $path = "/.sandboxd/run/init.sock";
unlink $path;
my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $path, Listen => 8) or die "bind: $!";
open(my $f, ">", "/tmp/planted"); close $f;
open(my $log, ">>", "/tmp/fake.log") or die; $log->autoflush(1);
my $started = '{"type":"started","pid":1}';
my $head = pack("NC", length($started), 0) . $started;
my $chunk = pack("NC", 1 << 20, 1) . ("x" x (1 << 20));
for my $n (1 .. 4) {
    my $c = $l->accept or last;
    my $buf = "";
    my $got = sysread($c, $buf, 65536) // 0;
    print $log "request $got\n";
    syswrite($c, $head);
    for my $i (1 .. FLOOD) { defined(syswrite($c, $chunk)) or last; }
    close $c;
}
"#;

#[tokio::test]
async fn a_socket_root_binds_in_the_run_directory_is_refused() {
    let d = Daemon::start().await;
    let bystander = d.create_sandbox(json!({ "agent": "test" })).await;
    let fake = FAKE_INIT.replace("FLOOD", &FLOOD_MIB.to_string());
    let id = planted_sandbox(
        &d,
        json!({ "plant.sh": planter("perl /home/user/fake.pl"), "fake.pl": fake }),
    )
    .await;
    // The planter touches /tmp/planted only after perl ends; perl does it once bound.
    trigger(&d, &id).await;

    let before = peak_rss_kib(d.pid());
    let (status, body) = exec_with_secret(&d, &id).await;
    let after = peak_rss_kib(d.pid());
    let log = std::process::Command::new("docker")
        .args([
            "exec",
            &id.replacen("sb_", "sbx-", 1),
            "cat",
            "/tmp/fake.log",
        ])
        .output()
        .expect("docker exec");
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    eprintln!(
        "fake in-container socket: HTTP {status} {body}; fake peer log {log:?}; \
         daemon peak RSS {before} KiB -> {after} KiB"
    );
    assert!(
        log.lines().all(|l| l == "request 0"),
        "the daemon sent a request to a socket that is not the container's init: {log:?}"
    );
    refused_and_others_served(&d, (status, body), (before, after), &id, &bystander).await;
}
