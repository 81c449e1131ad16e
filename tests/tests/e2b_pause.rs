//! E2B pause and resume over raw HTTP, where the SDKs cannot reach: a sandbox a
//! client paused stays paused (frozen, its deadline stopped) across a daemon
//! restart, refuses relay-API uses with a clear error, and is resumed by connect with
//! its processes where they were; snapshots and network updates say plainly that
//! they are not supported.

use sandboxd_e2e::suites::e2b_daemon;
use sandboxd_e2e::{docker_inspect, eventually, free_port};
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn a_paused_sandbox_stays_paused_across_a_restart_until_connect() {
    let port = free_port();
    let mut first = e2b_daemon(None, port).await;
    let key = first.key.clone();
    let e2b = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = http
            .request(method, format!("{e2b}{path}"))
            .header("X-API-Key", &key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send()
    };

    let res = call(
        reqwest::Method::POST,
        "/sandboxes",
        Some(json!({"templateID": "base", "timeout": 3})),
    )
    .await
    .expect("create");
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let (id, token) = sandboxd_e2e::suites::envd_credentials(&created);
    // A background counter, started through the relay API's exec (detached).
    let out = first
        .exec(
            &id,
            "nohup sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.1; done' >/dev/null 2>&1 &",
        )
        .await;
    assert_eq!(out["exitCode"], 0, "{out}");

    let res = call(
        reqwest::Method::POST,
        &format!("/sandboxes/{id}/pause"),
        Some(json!({"memory": true})),
    )
    .await
    .expect("pause");
    assert_eq!(res.status(), 204);
    assert_eq!(
        docker_inspect(&id, "{{.State.Paused}}").as_deref(),
        Some("true")
    );
    let res = call(
        reqwest::Method::POST,
        &format!("/sandboxes/{id}/pause"),
        None,
    )
    .await
    .expect("pause again");
    assert_eq!(res.status(), 409);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["code"], 409, "{body}");

    // The relay API says why it cannot use it, and does not resume it.
    let (status, body) = first
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({"command": "true"})),
        )
        .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "{status} {body}"
    );
    assert!(body.to_string().contains("paused"), "{body}");
    assert_eq!(
        docker_inspect(&id, "{{.State.Paused}}").as_deref(),
        Some("true")
    );

    // Past its deadline and across a restart, still paused.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(first.terminate().success());
    let second = e2b_daemon(Some(&first), port).await;
    let info: Value = call(reqwest::Method::GET, &format!("/sandboxes/{id}"), None)
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["state"], "paused", "{info}");
    let health = http
        .get(format!("{e2b}/health"))
        .header("E2b-Sandbox-Id", &id)
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 502);
    let paused: Value = call(reqwest::Method::GET, "/v2/sandboxes?state=paused", None)
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(paused.as_array().map(Vec::len), Some(1), "{paused}");

    // Unsupported things say so in E2B's shape.
    for (method, path) in [
        (reqwest::Method::POST, format!("/sandboxes/{id}/snapshots")),
        (reqwest::Method::POST, format!("/sandboxes/{id}/fork")),
        (reqwest::Method::PUT, format!("/sandboxes/{id}/network")),
    ] {
        let res = call(method, &path, Some(json!({}))).await.expect("call");
        assert_eq!(res.status(), 501, "{path}");
        let body: Value = res.json().await.expect("json");
        assert_eq!(body["code"], 501);
        assert!(
            body["message"]
                .as_str()
                .unwrap_or("")
                .contains("not supported"),
            "{body}"
        );
    }

    // The deprecated resume, then connect: running again with a fresh deadline,
    // its counter counting on.
    let res = call(
        reqwest::Method::POST,
        &format!("/sandboxes/{id}/resume"),
        Some(json!({"timeout": 60})),
    )
    .await
    .expect("resume");
    assert_eq!(res.status(), 201);
    let res = call(
        reqwest::Method::POST,
        &format!("/sandboxes/{id}/resume"),
        Some(json!({"timeout": 60})),
    )
    .await
    .expect("resume again");
    assert_eq!(res.status(), 409);
    let res = call(
        reqwest::Method::POST,
        &format!("/sandboxes/{id}/connect"),
        Some(json!({"timeout": 60})),
    )
    .await
    .expect("connect");
    assert_eq!(res.status(), 200);
    let again: Value = res.json().await.expect("json");
    assert_eq!(again["envdAccessToken"].as_str(), Some(token.as_str()));
    assert_eq!(
        docker_inspect(&id, "{{.State.Paused}}").as_deref(),
        Some("false")
    );
    let read = || async {
        let out = second.exec(&id, "cat /tmp/n").await;
        out["stdout"]
            .as_str()
            .unwrap_or("")
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let seen = read().await;
    eventually(Duration::from_secs(15), "the counter counts on", || async {
        read().await > seen + 2
    })
    .await;
    let res = call(reqwest::Method::DELETE, &format!("/sandboxes/{id}"), None)
        .await
        .expect("kill");
    assert_eq!(res.status(), 204);
    second.assert_no_leaks();
}
