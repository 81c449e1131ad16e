//! The API listeners under a flood from a local account with no credential: thousands
//! of idle and half-sent connections to the relay API and the E2B API. The daemon's
//! descriptors stay bounded, and everyone else is still served: health, the API, the
//! E2B API, and the sandboxes' own work.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use sandboxd_e2e::{eventually, free_port, Daemon, Options, StatusCode};
use serde_json::json;

/// Opens `argv[3]` connections to each of the ports `argv[1]` and `argv[2]` (giving up
/// after 60 s); every second one sends half a request's headers and stops. Prints how
/// many it opened, then holds them until its stdin closes.
const FLOOD: &str = r#"
import socket, sys, time
held = []
deadline = time.monotonic() + 60
for port in (int(sys.argv[1]), int(sys.argv[2])):
    for i in range(int(sys.argv[3])):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            if i % 2:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
        except OSError:
            pass
print(len(held), flush=True)
sys.stdin.read()
"#;

/// Descriptors in use by a process.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_connection_flood_from_a_local_account_leaves_everyone_else_served() {
    let e2b_port = free_port();
    let d = Daemon::start_with(Options {
        wrapper: ["prlimit", "--nofile=512:512", "--"]
            .map(String::from)
            .to_vec(),
        args: vec!["--e2b-listen".into(), format!("127.0.0.1:{e2b_port}")],
        ..Options::default()
    })
    .await;
    let api_port = d.url.rsplit(':').next().expect("port").to_owned();
    let sandbox = d.create_sandbox(json!({ "agent": "test" })).await;

    // User nobody, with descriptors enough for the flood.
    let mut flood = Command::new("prlimit")
        .args(["--nofile=8192:8192", "--", "setpriv", "--reuid=65534"])
        .args([
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            FLOOD,
        ])
        .args([api_port.as_str(), &e2b_port.to_string(), "1100"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the flood");
    let mut line = String::new();
    BufReader::new(flood.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the flood's count");
    let held: usize = line.trim().parse().expect("a count");
    assert!(
        held >= 2000,
        "the flood opened only {held} connections: the daemon stopped accepting"
    );

    // Fresh connections for every check: an idle pooled one is fair game.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for _ in 0..3 {
        let health = client
            .get(format!("{}/healthz", d.url))
            .send()
            .await
            .expect("health answers during the flood");
        assert_eq!(health.status(), StatusCode::OK);
        let listed = client
            .get(format!("http://127.0.0.1:{e2b_port}/sandboxes"))
            .header("X-API-Key", &d.key)
            .send()
            .await
            .expect("the E2B API answers during the flood");
        assert_eq!(listed.status(), StatusCode::OK);
        let exec = client
            .post(format!("{}/v1/sandboxes/{sandbox}/exec", d.url))
            .bearer_auth(&d.key)
            .json(&json!({ "command": "echo still here" }))
            .send()
            .await
            .expect("exec answers during the flood");
        assert_eq!(exec.status(), StatusCode::OK);
        let out: serde_json::Value = exec.json().await.expect("exec's reply");
        assert_eq!(out["stdout"], "still here\n", "{out}");
    }
    let used = open_descriptors(d.pid());
    assert!(
        used < 400,
        "the daemon holds {used} of its 512 descriptors under the flood"
    );
    assert!(
        !d.log_text().contains("Too many open files"),
        "the daemon ran out of descriptors:\n{}",
        d.log_text()
    );

    drop(flood.stdin.take());
    let _ = flood.wait();
    eventually(
        Duration::from_secs(60),
        "the flood's sockets closed",
        || async { open_descriptors(d.pid()) < used },
    )
    .await;
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}
