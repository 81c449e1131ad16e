//! The E2B process API under a burst from a token holder: hundreds of concurrent
//! `process.Start` calls in one sandbox start no more than the per-sandbox cap.

use futures_util::StreamExt;
use sandboxd_e2e::suites::{envd_credentials, E2bDaemon};
use serde_json::{json, Value};

/// The per-sandbox cap on running E2B processes (`MAX_PROCESSES` in the daemon).
const CAP: usize = 256;

/// One Connect envelope: a flag byte, a big-endian length, the JSON.
fn envelope(message: &Value) -> Vec<u8> {
    let json = message.to_string().into_bytes();
    let mut out = vec![0u8];
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend(json);
    out
}

#[tokio::test]
async fn a_burst_of_starts_never_passes_the_process_cap() {
    let e2b = E2bDaemon::start(&[]).await;
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/sandboxes", e2b.url))
        .header("X-API-Key", &e2b.key)
        .json(&json!({ "templateID": "base", "timeout": 300 }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let (id, token) = envd_credentials(&created);
    let start = |n: usize| {
        let request = http
            .post(format!("{}/process.Process/Start", e2b.url))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .header("Content-Type", "application/connect+json")
            .body(envelope(&json!({
                "process": { "cmd": "/bin/sleep", "args": [format!("73{n:03}.5")] }
            })));
        async move {
            let response = request.send().await.expect("start");
            let mut body = response.bytes_stream();
            // The first message: the start event, or the end with an error.
            let first = body.next().await.and_then(Result::ok).unwrap_or_default();
            let first = String::from_utf8_lossy(&first).into_owned();
            (first.contains("\"start\""), first, body)
        }
    };
    let calls = futures_util::future::join_all((0..400).map(start)).await;
    let started = calls.iter().filter(|(started, ..)| *started).count();
    for (_, first, _) in calls.iter().filter(|(started, ..)| !*started) {
        assert!(first.contains("resource_exhausted"), "{first}");
    }
    // Counted from the host (ps sees into the container): the marked sleeps.
    let ps = std::process::Command::new("pgrep")
        .args(["-c", "-f", r"^/bin/sleep 73[0-9]{3}\.5$"])
        .output()
        .expect("pgrep");
    let running: usize = String::from_utf8_lossy(&ps.stdout)
        .trim()
        .parse()
        .expect("a count");
    assert!(
        started <= CAP && running <= CAP,
        "{started} starts answered, {running} processes running: the cap is {CAP}"
    );
    assert_eq!(started, CAP, "every place under the cap is taken");
    drop(calls);
    let killed = http
        .delete(format!("{}/sandboxes/{id}", e2b.url))
        .header("X-API-Key", &e2b.key)
        .send()
        .await
        .expect("kill");
    assert_eq!(killed.status(), 204);
    e2b.daemon.assert_no_leaks();
}
