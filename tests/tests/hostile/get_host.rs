//! getHost under attack from a local account or a web page: a request names a sandbox
//! and a port in its Host header and carries no credential. Only the listener's own
//! domain is served, only sandboxes created through the E2B API are reachable (a relay
//! sandbox's dev server is not), a sandbox created with `allowPublicTraffic: false`
//! answers only with its traffic access token, and the state directory is closed to
//! other accounts (it names every sandbox).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use sandboxd_e2e::suites::e2b_daemon;
use sandboxd_e2e::{eventually, free_port, StatusCode};
use serde_json::{json, Value};

/// A server on port 8000 of a sandbox, answering `GET /` with its directory listing.
const SERVE: &str = "cd /tmp && nohup python3 -m http.server 8000 >/dev/null 2>&1 &";

#[tokio::test]
async fn get_host_serves_only_its_domain_its_own_sandboxes_and_their_tokens() {
    let port = free_port();
    let d = e2b_daemon(None, port).await;
    let e2b = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let request = http
            .post(format!("{e2b}/sandboxes"))
            .header("X-API-Key", &d.key)
            .json(&body);
        async move {
            let res = request.send().await.expect("create");
            assert_eq!(res.status(), StatusCode::CREATED);
            res.json::<Value>().await.expect("json")
        }
    };
    let open = create(json!({ "templateID": "base", "timeout": 300 })).await;
    let private = create(json!({
        "templateID": "base", "timeout": 300,
        "network": { "allowPublicTraffic": false }
    }))
    .await;
    let relay = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, relay_info) = d.call("GET", &format!("/v1/sandboxes/{relay}"), None).await;
    assert_eq!(status, StatusCode::OK);
    let id = |v: &Value| v["sandboxID"].as_str().expect("sandboxID").to_owned();
    let (open_id, private_id) = (id(&open), id(&private));
    for sandbox in [&open_id, &private_id, &relay] {
        let out = d.exec(sandbox, SERVE).await;
        assert_eq!(out["exitCode"], 0, "{out}");
    }
    let via = |host: String, token: Option<&str>| {
        let mut request = http
            .get(format!("{e2b}/"))
            .header("Host", host)
            .timeout(Duration::from_secs(30));
        if let Some(token) = token {
            request = request.header("e2b-traffic-access-token", token);
        }
        async move { request.send().await.map(|r| r.status()).ok() }
    };
    eventually(Duration::from_secs(30), "the open sandbox's server", || {
        let status = via(format!("8000-{open_id}.localhost:{port}"), None);
        async move { status.await == Some(StatusCode::OK) }
    })
    .await;
    // The relay sandbox's server runs too (seen from inside).
    eventually(
        Duration::from_secs(30),
        "the relay sandbox's server",
        || async {
            d.exec(
                &relay,
                "curl -s -o /dev/null -w '%{http_code}' localhost:8000",
            )
            .await["stdout"]
                == "200"
        },
    )
    .await;

    // Another domain suffix: not routed to any sandbox.
    for host in [
        format!("8000-{open_id}.evil.example"),
        format!("8000-{open_id}.localhost.evil.example:{port}"),
    ] {
        let status = via(host.clone(), None).await;
        assert_ne!(status, Some(StatusCode::OK), "{host} reached the sandbox");
    }
    // A sandbox of the relay API, by either of its ids: not reachable.
    let relay_ids = [
        relay.clone(),
        relay_info["sandboxId"]
            .as_str()
            .unwrap_or(&relay)
            .to_owned(),
    ];
    for relay_id in &relay_ids {
        let status = via(format!("8000-{relay_id}.localhost:{port}"), None).await;
        assert_eq!(status, Some(StatusCode::NOT_FOUND), "{relay_id}");
    }
    // Private traffic: the token, and only the token.
    let token = private["trafficAccessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("a traffic access token in {private}"));
    let private_host = format!("8000-{private_id}.localhost:{port}");
    assert_eq!(
        via(private_host.clone(), None).await,
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        via(private_host.clone(), Some("not-the-token")).await,
        Some(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        via(private_host.clone(), Some(token)).await,
        Some(StatusCode::OK)
    );
    let info: Value = http
        .get(format!("{e2b}/sandboxes/{private_id}"))
        .header("X-API-Key", &d.key)
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["trafficAccessToken"].as_str(), Some(token), "{info}");
    assert!(
        open.get("trafficAccessToken").is_none_or(Value::is_null),
        "{open}"
    );

    // The state directory names every sandbox: other accounts may not list it.
    let mode = std::fs::metadata(&d.state_dir)
        .expect("state dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "state directory mode {mode:o}");

    for sandbox in [&open_id, &private_id, &relay] {
        d.delete_sandbox(sandbox).await;
    }
    d.assert_no_leaks();
}
