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
    let model = ScriptedModel::start(&json!([{ "text": "hello u1" }, { "text": "hello again" }]));
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
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("/v1/chat")),
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
    // A sandbox made with the API key for nobody is not reachable either;
    // one made for u1 with userId is.
    let unowned = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, _) = with(
        &d,
        &u1,
        "POST",
        "/v1/chat/test",
        Some(json!({ "sandboxId": unowned, "messages": [user_message("x")] })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let given = d
        .create_sandbox(json!({ "agent": "test", "userId": "u1" }))
        .await;
    let res = d
        .anonymous("POST", "/v1/chat/test")
        .bearer_auth(&u1)
        .json(&json!({ "sandboxId": given, "messages": [user_message("again")] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(&res.text().await.expect("body")), "hello again");
    assert_eq!(
        with(&d, &u1, "GET", &resume, None).await.0,
        StatusCode::NO_CONTENT
    );

    for id in [&sandbox, &unowned, &given] {
        d.delete_sandbox(id).await;
    }
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
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{body}: {err}"
        );
    }
}
