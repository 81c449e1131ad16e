//! Chat tokens: issued with the API key, scoped to agents and a user, refused on every
//! other endpoint, and refused when expired or forged.

use std::time::Duration;

use sandboxd_e2e::{sse_chunks, user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

fn text(body: &str) -> String {
    sse_chunks(body)
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .filter_map(|c| c["delta"].as_str().map(str::to_owned))
        .collect()
}

async fn token(d: &Daemon, body: Value) -> String {
    let (status, created) = d.call("POST", "/v1/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(
        created["expiresAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{created}"
    );
    created["token"].as_str().expect("token").to_owned()
}

/// A chat with `token` on the test agent that must succeed; returns the reply's text.
async fn chat_text(d: &Daemon, token: &str, body: Value) -> String {
    let (status, reply) = with(d, token, "POST", "/v1/chat/test", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    text(reply.as_str().unwrap_or_default())
}

async fn with(
    d: &Daemon,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = d.anonymous(method, path).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("sent");
    let status = res.status();
    let text = res.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn tokens_reach_their_agents_and_their_users_sandboxes_only() {
    let model = ScriptedModel::start(&json!([
        { "text": "hello u1", "prompt": "hi" },
        { "text": "hello unowned", "prompt": "x" },
        { "text": "hello again", "prompt": "again" },
    ]));
    let d = Daemon::start_with(
        Options::default()
            .agent("other", json!({}))
            .with_model(&model),
    )
    .await;
    let u1 = token(
        &d,
        json!({ "agents": ["test"], "userId": "u1", "expiresIn": "30m" }),
    )
    .await;
    let u2 = token(&d, json!({ "agents": ["test"], "userId": "u2" })).await;

    // Never the sandbox, file, exec or token endpoints.
    for (method, path) in [
        ("GET", "/v1/sandboxes"),
        ("POST", "/v1/tokens"),
        ("POST", "/v1/sandboxes"),
    ] {
        let (status, body) = with(&d, &u1, method, path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        // The token route answers its errors flat (`exchangeToken` renders a string).
        let message = if path == "/v1/tokens" {
            &body["error"]
        } else {
            &body["error"]["message"]
        };
        assert!(
            message.as_str().is_some_and(|m| m.contains("/v1/chat")),
            "{body}"
        );
    }
    // Not another agent's chat.
    let (status, body) = with(
        &d,
        &u1,
        "POST",
        "/v1/chat/other",
        Some(json!({ "messages": [user_message("x")] })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // Its own agent: a sandbox is created for its user.
    let res = d
        .anonymous("POST", "/v1/chat/test")
        .bearer_auth(&u1)
        .json(&json!({ "messages": [user_message("hi")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (sandbox, thread) = sandboxd_e2e::chat_ids(&res);
    assert_eq!(text(&res.text().await.expect("body")), "hello u1");
    let resume = format!("/v1/chat/test/{sandbox}/stream");

    // Another user's token cannot use it, not even to resume or cancel.
    let cont =
        json!({ "sandboxId": sandbox, "threadId": thread, "messages": [user_message("mine?")] });
    let (status, body) = with(&d, &u2, "POST", "/v1/chat/test", Some(cont.clone())).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        with(&d, &u2, "GET", &resume, None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with(&d, &u2, "DELETE", &resume, None).await.0,
        StatusCode::FORBIDDEN
    );
    // A sandbox made with the API key for nobody (a backend's, before it hands the
    // browser a token) is reachable by tokens of its agent; one made for u1 with
    // userId is reachable by every token of u1, a renewed one included.
    let unowned = d.create_sandbox(json!({ "agent": "test" })).await;
    let reply = chat_text(
        &d,
        &u1,
        json!({ "sandboxId": unowned, "messages": [user_message("x")] }),
    )
    .await;
    assert_eq!(reply, "hello unowned");
    let given = d
        .create_sandbox(json!({ "agent": "test", "userId": "u1" }))
        .await;
    let renewed = token(&d, json!({ "agents": ["test"], "userId": "u1" })).await;
    assert_ne!(renewed, u1);
    let reply = chat_text(
        &d,
        &renewed,
        json!({ "sandboxId": given, "messages": [user_message("again")] }),
    )
    .await;
    assert_eq!(reply, "hello again");
    assert_eq!(
        with(&d, &renewed, "GET", &resume, None).await.0,
        StatusCode::NO_CONTENT,
        "the renewed token reaches the first token's sandbox"
    );
    // Never another user's, nor a userless token's reach into a user's sandbox, nor
    // another agent's token into this agent's sandbox.
    let userless = token(&d, json!({ "agents": ["test"] })).await;
    let other_agent = token(&d, json!({ "agents": ["other"], "userId": "u1" })).await;
    for (who, t) in [
        ("u2", &u2),
        ("userless", &userless),
        ("other agent", &other_agent),
    ] {
        let (status, body) = with(
            &d,
            t,
            "POST",
            "/v1/chat/test",
            Some(json!({ "sandboxId": given, "messages": [user_message("x")] })),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }

    for id in [&sandbox, &unowned, &given] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn browser_pages_may_call_with_a_bearer_token() {
    let model = ScriptedModel::start(&json!([{ "text": "from a page" }]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let preflight = |origin: &'static str| {
        d.anonymous("OPTIONS", "/v1/chat/test")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let res = preflight("http://app.example").await.expect("preflight");
    assert!(res.status().is_success(), "{}", res.status());
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_lowercase()
    };
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    let allowed = header(&res, "access-control-allow-headers");
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(header(&res, "access-control-allow-methods").contains("post"));
    assert_eq!(header(&res, "access-control-allow-credentials"), "");

    // The chat itself: the page can read which sandbox and thread were used.
    let page_token = token(&d, json!({ "agents": ["test"], "userId": "page" })).await;
    let res = d
        .anonymous("POST", "/v1/chat/test")
        .header("origin", "http://app.example")
        .bearer_auth(&page_token)
        .json(&json!({ "messages": [user_message("hi")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let exposed = header(&res, "access-control-expose-headers");
    assert!(
        exposed.contains("x-sandbox-id") && exposed.contains("x-thread-id"),
        "{exposed}"
    );
    let (sandbox, _) = sandboxd_e2e::chat_ids(&res);
    assert_eq!(text(&res.text().await.expect("body")), "from a page");
    d.delete_sandbox(&sandbox).await;
    drop(d);

    // With a list of origins, other origins get no CORS headers.
    let d = Daemon::start_with(Options {
        args: vec!["--cors-origins".into(), "http://good.example".into()],
        ..Options::default()
    })
    .await;
    let preflight = |origin: &'static str| {
        d.anonymous("OPTIONS", "/v1/chat/test")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let good = preflight("http://good.example").await.expect("preflight");
    assert_eq!(
        header(&good, "access-control-allow-origin"),
        "http://good.example"
    );
    let evil = preflight("http://evil.example").await.expect("preflight");
    assert_eq!(header(&evil, "access-control-allow-origin"), "");
    d.assert_no_leaks();
}

#[tokio::test]
async fn expired_forged_and_malformed_tokens_are_refused() {
    let d = Daemon::start().await;
    let short = token(&d, json!({ "expiresIn": "1s" })).await;
    let good = token(&d, json!({ "agents": ["test"] })).await;
    let mut forged = good.clone();
    let flip = if forged.ends_with('A') { 'B' } else { 'A' };
    forged.pop();
    forged.push(flip);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for (token, needle) in [
        (&short, "expired"),
        (&forged, "invalid token"),
        (&"a.b.c".to_owned(), "invalid token"),
    ] {
        let (status, body) = with(
            &d,
            token,
            "POST",
            "/v1/chat/test",
            Some(json!({ "messages": [user_message("x")] })),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}"
        );
    }
    for (body, status, needle) in [
        (
            json!({ "expiresIn": "1y" }),
            StatusCode::BAD_REQUEST,
            "expiresIn",
        ),
        (
            json!({ "expiresIn": "90d" }),
            StatusCode::BAD_REQUEST,
            "30d",
        ),
        (json!({ "agents": ["nope"] }), StatusCode::NOT_FOUND, "nope"),
        (
            json!({ "agent": "test" }),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (json!({ "userId": "" }), StatusCode::BAD_REQUEST, "userId"),
    ] {
        let (got, err) = d.call("POST", "/v1/tokens", Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {err}");
        assert_flat_error(&err, needle);
    }
    // Refusals before the handler (the key check, the body) have the same shape.
    let response = d
        .anonymous("POST", "/v1/tokens")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_flat_error(&response.json().await.expect("json"), "Authorization");
    let (status, err) = with(&d, "sk_wrong", "POST", "/v1/tokens", Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_flat_error(&err, "invalid API key");
    let response = d
        .request("POST", "/v1/tokens")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_flat_error(&response.json().await.expect("json"), "JSON");
}

/// `{"error": message, "code", "message"}`: what `exchangeToken` shows as the message.
fn assert_flat_error(err: &serde_json::Value, needle: &str) {
    let message = err["error"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{err}");
    assert_eq!(err["message"].as_str(), Some(message), "{err}");
    assert!(err["code"].as_str().is_some_and(|c| !c.is_empty()), "{err}");
}
