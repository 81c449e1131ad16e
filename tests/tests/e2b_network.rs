//! Create's network options through the E2B API onto the egress firewall:
//! `allow_internet_access: false`, `network.denyOut` (all traffic, or some networks)
//! with `allowOut` winning as on E2B, and a clear 400 for what the firewall cannot
//! express or the daemon has no counterpart for. The "internet" is two peers in
//! network namespaces of their own, routed by the host (as in egress.rs).

use sandboxd_e2e::peer::{reach, Peer, PORT};
use sandboxd_e2e::{free_port, Daemon, Options};
use serde_json::{json, Value};

/// Creates a sandbox through the E2B API; returns its id, or the error status and body.
async fn create(d: &Daemon, port: u16, body: Value) -> Result<String, (u16, Value)> {
    let res = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/sandboxes"))
        .header("X-API-Key", &d.key)
        .json(&body)
        .send()
        .await
        .expect("create");
    let status = res.status().as_u16();
    let body: Value = res.json().await.expect("json");
    if status == 201 {
        Ok(body["sandboxID"].as_str().expect("id").to_owned())
    } else {
        Err((status, body))
    }
}

#[tokio::test]
async fn e2b_network_options_become_the_egress_policy() {
    let a = Peer::start("ea", "10.215.1");
    let b = Peer::start("eb", "10.215.2");
    let port = free_port();
    let options = Options {
        args: vec!["--e2b-listen".into(), format!("127.0.0.1:{port}")],
        ..Options::default()
    };
    let d = Daemon::start_with(options).await;
    let hello = |p: &Peer| Some(format!("hello {}", p.addr));
    let base = |extra: Value| {
        let mut body = json!({"templateID": "base", "timeout": 120});
        body.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        body
    };

    // No options: everything is reachable.
    let open = create(&d, port, base(json!({"allow_internet_access": true})))
        .await
        .expect("open");
    assert_eq!(reach(&d, &open, &a.addr, PORT).await, hello(&a));
    assert_eq!(reach(&d, &open, &b.addr, PORT).await, hello(&b));

    // No internet: nothing.
    let offline = create(&d, port, base(json!({"allow_internet_access": false})))
        .await
        .expect("offline");
    assert_eq!(reach(&d, &offline, &a.addr, PORT).await, None);
    assert_eq!(reach(&d, &offline, &b.addr, PORT).await, None);

    // All traffic denied, one peer allowed: allowOut wins.
    let only_a = create(
        &d,
        port,
        base(json!({"network": {"denyOut": ["0.0.0.0/0"], "allowOut": [a.addr]}})),
    )
    .await
    .expect("only a");
    assert_eq!(reach(&d, &only_a, &a.addr, PORT).await, hello(&a));
    assert_eq!(reach(&d, &only_a, &b.addr, PORT).await, None);

    // One network denied; an allowOut outside it changes nothing.
    let not_b = create(
        &d,
        port,
        base(json!({"network": {"denyOut": ["10.215.2.0/24"], "allowOut": [a.addr]}})),
    )
    .await
    .expect("not b");
    assert_eq!(reach(&d, &not_b, &a.addr, PORT).await, hello(&a));
    assert_eq!(reach(&d, &not_b, &b.addr, PORT).await, None);

    // What the firewall cannot express, or the daemon has no counterpart for: 400.
    for (body, says) in [
        (
            json!({"network": {"denyOut": ["10.215.0.0/16"], "allowOut": [a.addr]}}),
            "denyOut",
        ),
        (
            json!({"network": {"denyOut": ["10.215.2.0/24"], "allowOut": ["example.com"]}}),
            "denyOut",
        ),
        (
            json!({"network": {"allowOut": ["*.example.com"], "denyOut": ["0.0.0.0/0"]}}),
            "wildcard",
        ),
        (
            json!({"network": {"maskRequestHost": "${PORT}-x.example"}}),
            "maskRequestHost",
        ),
        (
            json!({"network": {"egressProxy": {"address": "proxy:1080"}}}),
            "egressProxy",
        ),
        (json!({"mcp": {"github": {}}}), "mcp"),
        (
            json!({"volumeMounts": [{"name": "v", "path": "/data"}]}),
            "volumeMounts",
        ),
    ] {
        let (status, error) = create(&d, port, base(body.clone()))
            .await
            .expect_err("refused");
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["code"], 400, "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{body}: {message}");
    }
    for id in [open, offline, only_a, not_b] {
        d.delete_sandbox(&id).await;
    }
    d.assert_no_leaks();
}
