//! An exec that is timed out or whose client hangs up takes everything it started
//! with it: `setsid` children and double-forked daemons that left its process group
//! included. A command that ends by itself may leave background processes running.

use std::time::{Duration, Instant};

use sandboxd_e2e::{Daemon, StatusCode};
use serde_json::json;

/// What a later exec sees of `sleep` processes whose argument starts with `prefix`
/// (`ps` rather than `pgrep -f`, whose own command line would match).
async fn sleeps(d: &Daemon, id: &str, prefix: &str) -> Vec<String> {
    let out = d
        .exec(
            id,
            &format!("ps -eo pid,stat,args | grep -E ' sleep {prefix}' || true"),
        )
        .await;
    out["stdout"]
        .as_str()
        .unwrap_or_default()
        .lines()
        // Not grep itself, nor an exec's shim (whose arguments hold the command).
        .filter(|l| !l.contains("grep") && !l.contains("--shim"))
        .map(str::to_owned)
        .collect()
}

/// Polls until exactly `count` such sleeps are alive, or panics with what is.
async fn expect_sleeps(d: &Daemon, id: &str, prefix: &str, count: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = sleeps(d, id, prefix).await;
        if found.len() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: expected {count} `sleep {prefix}…`, found {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until no zombie is left in the sandbox: sandbox-init reaps what it inherits.
async fn expect_no_zombies(d: &Daemon, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = d
            .exec(id, "ps -eo stat=,pid=,args= | grep '^Z' || true")
            .await;
        let zombies = out["stdout"].as_str().unwrap_or_default().to_owned();
        if zombies.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "zombies left: {zombies}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A command that starts, besides `sleep {p}0` in its own group: a `setsid` child that
/// keeps the output pipe (`{p}1`), a double-forked `setsid` daemon with its output
/// redirected (`{p}2`), and a double fork that stays in the group (`{p}3`).
fn escapers(p: &str) -> String {
    format!(
        "setsid sleep {p}1 & (setsid sleep {p}2 </dev/null >/dev/null 2>&1 &); \
         (sleep {p}3 </dev/null >/dev/null 2>&1 &); sleep {p}0"
    )
}

#[tokio::test]
async fn a_timeout_kills_setsid_and_double_forked_children() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({ "command": escapers("100"), "timeoutMs": 1500 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["timedOut"], true, "{out}");
    expect_sleeps(&d, &id, "100", 0, "after the timeout").await;
    expect_no_zombies(&d, &id).await;

    // A command that ends by itself keeps its background server.
    let out = d
        .exec(
            &id,
            "setsid sleep 1099 </dev/null >/dev/null 2>&1 & echo started",
        )
        .await;
    assert_eq!(out["stdout"], "started\n", "{out}");
    expect_sleeps(&d, &id, "1099", 1, "after a normal end").await;

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_client_hang_up_kills_setsid_and_double_forked_children() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let request = d
        .request("POST", &format!("/v1/sandboxes/{id}/exec"))
        .json(&json!({ "command": escapers("200") }))
        .send();
    let pending = tokio::spawn(request);
    expect_sleeps(&d, &id, "200", 4, "while the exec runs").await;
    pending.abort();
    let _ = pending.await;
    expect_sleeps(&d, &id, "200", 0, "after the client hung up").await;
    expect_no_zombies(&d, &id).await;

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_command_that_clears_the_subreaper_flag_still_loses_its_orphans_at_the_timeout() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    // The command clears the child-subreaper flag on itself, then double-forks a
    // `setsid` daemon with its output redirected: the daemon's parent dies, and were the
    // flag the command's own, the daemon would go to PID 1, out of the exec's reach.
    let command = format!("python3 -c '{ESCAPE_AS_ORPHAN}'");
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({ "command": command, "timeoutMs": 2000 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["timedOut"], true, "{out}");
    expect_sleeps(&d, &id, "4040", 0, "after the timeout").await;
    expect_no_zombies(&d, &id).await;
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// Clears the child-subreaper flag of its own process, then double-forks a `setsid`
/// `sleep 4040` with its output on `/dev/null`, and waits.
const ESCAPE_AS_ORPHAN: &str = r#"
import ctypes, os, time
ctypes.CDLL(None).prctl(36, 0, 0, 0, 0)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        fd = os.open("/dev/null", os.O_RDWR)
        for n in (0, 1, 2):
            os.dup2(fd, n)
        os.execvp("sleep", ["sleep", "4040"])
    os._exit(0)
time.sleep(100)
"#;
