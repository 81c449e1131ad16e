//! The unmodified `e2b` JS SDK (npm `e2b@2.45.0`, pinned in tests/e2b-js) against a
//! real daemon's E2B API and real containers: Node's test runner on tests/e2b-js
//! (installed by scripts/test), with `E2B_API_URL`/`E2B_SANDBOX_URL` pointing at
//! `--e2b-listen` and `E2B_API_KEY` the daemon's key (of the `e2b_<hex>` form the
//! SDK checks).

use sandboxd_e2e::suites::{e2b_daemon, E2bDaemon, Suite};
use sandboxd_e2e::{free_port, Daemon, Options};
use serde_json::json;

/// Runs one test file of tests/e2b-js against a fresh daemon.
async fn run_suite(file: &str, expected_pass: usize) {
    let d = E2bDaemon::start(&[]).await;
    Suite {
        dir: "tests/e2b-js",
        file,
        installed: "node_modules/e2b",
        env: d.sdk_env(),
    }
    .node(expected_pass)
    .await;
    d.daemon.assert_no_leaks();
}

#[tokio::test]
async fn the_e2b_sdk_manages_sandboxes() {
    run_suite("lifecycle.test.mjs", 3).await;
}

#[tokio::test]
async fn the_e2b_sdk_runs_commands() {
    run_suite("commands.test.mjs", 9).await;
}

#[tokio::test]
async fn the_e2b_sdk_reads_and_writes_files() {
    run_suite("files.test.mjs", 7).await;
}

#[tokio::test]
async fn the_e2b_sdk_watches_directories() {
    run_suite("watch.test.mjs", 6).await;
}

#[tokio::test]
async fn the_e2b_sdk_drives_ptys() {
    run_suite("pty.test.mjs", 3).await;
}

#[tokio::test]
async fn the_e2b_sdk_reaches_servers_and_websockets_through_get_host() {
    run_suite("host.test.mjs", 5).await;
}

#[tokio::test]
async fn e2b_sandboxes_are_relay_sandboxes_and_survive_a_restart() {
    let port = free_port();
    let mut first = e2b_daemon(None, port).await;
    // Raw HTTP does not check the key's form: the harness's key serves both APIs.
    let key = first.key.clone();
    let e2b = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();

    // Without the key, nothing; errors are E2B's {code, message}.
    let res = http
        .get(format!("{e2b}/v2/sandboxes"))
        .send()
        .await
        .expect("list");
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], 401, "{body}");

    let res = http
        .post(format!("{e2b}/v2/sandboxes"))
        .header("X-API-Key", &key)
        .json(&json!({"templateID": "base", "timeout": 600, "metadata": {"k": "v"}}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 201);
    let created: serde_json::Value = res.json().await.expect("json");
    for field in [
        "templateID",
        "sandboxID",
        "clientID",
        "envdVersion",
        "envdAccessToken",
        "domain",
    ] {
        assert!(created.get(field).is_some(), "{field} in {created}");
    }
    let (id, token) = sandboxd_e2e::suites::envd_credentials(&created);

    // envd: the token is required (but not by /health), and the id routes.
    let health = |token: Option<&str>, id: &str| {
        let mut req = http
            .get(format!("{e2b}/health"))
            .header("E2b-Sandbox-Id", id);
        if let Some(t) = token {
            req = req.header("X-Access-Token", t);
        }
        req.send()
    };
    assert_eq!(health(None, &id).await.expect("health").status(), 204);
    assert_eq!(
        health(None, "sbx-nope").await.expect("health").status(),
        502
    );
    let files = |token: &str| {
        http.get(format!("{e2b}/files?path=/etc/hostname"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", token)
            .send()
    };
    assert_eq!(files("wrong").await.expect("files").status(), 401);
    assert_eq!(files(&token).await.expect("files").status(), 200);
    // The binary Connect codec is refused by name, not misread.
    let res = http
        .post(format!("{e2b}/process.Process/List"))
        .header("E2b-Sandbox-Id", &id)
        .header("X-Access-Token", &token)
        .header("Content-Type", "application/proto")
        .body(Vec::new())
        .send()
        .await
        .expect("rpc");
    assert_eq!(res.status(), 501);

    // The relay API sees it, under its other id.
    let (status, relay) = first
        .call("GET", &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(status, 200, "{relay}");
    assert_eq!(relay["agent"]["slug"], "base");
    let relay_made = first.create_sandbox(json!({"agent": "test"})).await;
    let listed = |body: serde_json::Value| -> Vec<String> {
        body.as_array()
            .expect("an array")
            .iter()
            .map(|s| s["sandboxID"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let all = http
        .get(format!("{e2b}/v2/sandboxes"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("list")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(listed(all.clone()).len(), 2, "{all}");

    let info = |http: reqwest::Client, e2b: String, key: String, id: String| async move {
        http.get(format!("{e2b}/sandboxes/{id}"))
            .header("X-API-Key", key)
            .send()
            .await
            .expect("info")
    };
    let before: serde_json::Value = info(http.clone(), e2b.clone(), key.clone(), id.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(before["metadata"], json!({"k": "v"}));

    // A restart re-adopts it with its metadata, deadline and token.
    assert!(first.terminate().success());
    let second = e2b_daemon(Some(&first), port).await;
    let after: serde_json::Value = info(http.clone(), e2b.clone(), key.clone(), id.clone())
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["metadata"], json!({"k": "v"}), "{after}");
    assert_eq!(after["endAt"], before["endAt"]);
    assert_eq!(after["state"], "running");
    assert_eq!(files(&token).await.expect("files").status(), 200);

    // Deleted through the relay API: gone from E2B's view too.
    second.delete_sandbox(&relay_made).await;
    let res = info(http.clone(), e2b.clone(), key.clone(), id.clone()).await;
    assert_eq!(res.status(), 200);
    let (status, _) = second
        .call("DELETE", &format!("/v1/sandboxes/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let res = info(http.clone(), e2b.clone(), key.clone(), id.clone()).await;
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], 404, "{body}");
    let res = http
        .delete(format!("{e2b}/sandboxes/{id}"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("kill");
    assert_eq!(res.status(), 404);
    second.assert_no_leaks();
}

#[tokio::test]
async fn an_e2b_sandbox_paused_when_idle_still_runs_for_the_sdk() {
    let port = free_port();
    let d = Daemon::start_with(Options {
        args: vec![
            "--e2b-listen".into(),
            format!("127.0.0.1:{port}"),
            "--pause-after-secs".into(),
            "1".into(),
        ],
        ..Options::default()
    })
    .await;
    let e2b = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{e2b}/sandboxes"))
        .header("X-API-Key", &d.key)
        .json(&json!({"templateID": "base", "timeout": 600}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let (id, token) = sandboxd_e2e::suites::envd_credentials(&created);
    // The list, unlike a lookup, is not activity that keeps a sandbox awake.
    let status = || async {
        let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
        list.as_array()
            .and_then(|l| l.iter().find(|s| s["sandboxId"] == id.as_str()))
            .and_then(|s| s["status"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    sandboxd_e2e::eventually(
        std::time::Duration::from_secs(30),
        "the idle sandbox is paused",
        || async { status().await == "paused" },
    )
    .await;
    // Still running to the SDK: health, info and list, without resuming it.
    let health = http
        .get(format!("{e2b}/health"))
        .header("E2b-Sandbox-Id", &id)
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 204);
    let info: serde_json::Value = http
        .get(format!("{e2b}/sandboxes/{id}"))
        .header("X-API-Key", &d.key)
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(status().await, "paused");
    // An envd call resumes it.
    let listed = http
        .post(format!("{e2b}/process.Process/List"))
        .header("E2b-Sandbox-Id", &id)
        .header("X-Access-Token", &token)
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("rpc");
    assert_eq!(listed.status(), 200);
    let files = http
        .get(format!("{e2b}/files?path=/etc/hostname"))
        .header("E2b-Sandbox-Id", &id)
        .header("X-Access-Token", &token)
        .send()
        .await
        .expect("files");
    assert_eq!(files.status(), 200);
    let killed = http
        .delete(format!("{e2b}/sandboxes/{id}"))
        .header("X-API-Key", &d.key)
        .send()
        .await
        .expect("kill");
    assert_eq!(killed.status(), 204);
    d.assert_no_leaks();
}

/// The polling watcher RPCs the sync Python SDK uses (`filesystem.Filesystem/
/// CreateWatcher`, `GetWatcherEvents`, `RemoveWatcher`), as Connect JSON unary calls.
#[tokio::test]
async fn the_polling_watcher_rpcs_answer_as_envd() {
    let port = free_port();
    let d = e2b_daemon(None, port).await;
    let e2b = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{e2b}/sandboxes"))
        .header("X-API-Key", &d.key)
        .json(&json!({"templateID": "base", "timeout": 600}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    assert_eq!(created["envdVersion"], "0.6.4");
    let (id, token) = sandboxd_e2e::suites::envd_credentials(&created);
    let rpc = |method: &str, body: serde_json::Value| {
        http.post(format!("{e2b}/filesystem.Filesystem/{method}"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .json(&body)
            .send()
    };
    let upload = |path: &str, content: &'static str| {
        http.post(format!("{e2b}/files?path={path}"))
            .header("E2b-Sandbox-Id", &id)
            .header("X-Access-Token", &token)
            .header("Content-Type", "application/octet-stream")
            .header("X-Metadata-Kind", "polled")
            .body(content)
            .send()
    };
    let res = rpc("MakeDir", json!({"path": "polled/sub"}))
        .await
        .expect("mkdir");
    assert_eq!(res.status(), 200);

    let res = rpc(
        "CreateWatcher",
        json!({"path": "polled", "recursive": true, "includeEntry": true}),
    )
    .await
    .expect("create watcher");
    assert_eq!(res.status(), 200);
    let watcher: serde_json::Value = res.json().await.expect("json");
    let watcher_id = watcher["watcherId"].as_str().expect("watcherId").to_owned();
    assert!(watcher_id.starts_with('w'), "{watcher}");

    assert_eq!(
        upload("polled/sub/a.txt", "a")
            .await
            .expect("upload")
            .status(),
        200
    );
    let mut events: Vec<serde_json::Value> = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let wrote = |events: &[serde_json::Value]| {
        events
            .iter()
            .any(|e| e["name"] == "sub/a.txt" && e["type"] == "EVENT_TYPE_WRITE")
    };
    while !wrote(&events) {
        assert!(std::time::Instant::now() < deadline, "polled: {events:?}");
        let res = rpc("GetWatcherEvents", json!({"watcherId": watcher_id}))
            .await
            .expect("poll");
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.expect("json");
        events.extend(body["events"].as_array().cloned().unwrap_or_default());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let write = events
        .iter()
        .find(|e| e["name"] == "sub/a.txt" && e["type"] == "EVENT_TYPE_WRITE")
        .expect("the write");
    assert_eq!(write["entry"]["path"], "/home/user/polled/sub/a.txt");
    assert_eq!(write["entry"]["metadata"], json!({"kind": "polled"}));
    // Polled events are handed out once.
    let body: serde_json::Value = rpc("GetWatcherEvents", json!({"watcherId": watcher_id}))
        .await
        .expect("poll")
        .json()
        .await
        .expect("json");
    assert_eq!(body["events"], json!([]), "{body}");

    // Removed: gone, as envd answers an unknown watcher.
    let res = rpc("RemoveWatcher", json!({"watcherId": watcher_id}))
        .await
        .expect("remove");
    assert_eq!(res.status(), 200);
    let res = rpc("GetWatcherEvents", json!({"watcherId": watcher_id}))
        .await
        .expect("poll");
    assert_eq!(res.status(), 404);
    let body: serde_json::Value = res.json().await.expect("json");
    assert_eq!(body["code"], "not_found", "{body}");
    // Watching a file is refused; a missing directory is not found.
    let res = rpc("CreateWatcher", json!({"path": "polled/sub/a.txt"}))
        .await
        .expect("create");
    assert_eq!(res.status(), 400);
    let res = rpc("CreateWatcher", json!({"path": "nope"}))
        .await
        .expect("create");
    assert_eq!(res.status(), 404);

    // A polling watcher ends with its sandbox.
    let res = rpc("CreateWatcher", json!({"path": "polled"}))
        .await
        .expect("create");
    assert_eq!(res.status(), 200);
    let killed = http
        .delete(format!("{e2b}/sandboxes/{id}"))
        .header("X-API-Key", &d.key)
        .send()
        .await
        .expect("kill");
    assert_eq!(killed.status(), 204);
    d.assert_no_leaks();
}
