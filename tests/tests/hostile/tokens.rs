//! A browser's chat token against the agent's settings and the machine's capacity: its
//! `options` may only narrow what the agent allows (widening answers 403 and nothing
//! reaches the model), and the sandboxes it creates are held to a per-user and a global
//! quota that concurrent requests cannot overshoot.

use sandboxd_e2e::{user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

async fn token(d: &Daemon, body: Value) -> String {
    let (status, created) = d.call("POST", "/v1/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    created["token"].as_str().expect("token").to_owned()
}

/// A chat call with a token: the status, the sandbox id header, and the body.
async fn chat(d: &Daemon, token: &str, slug: &str, body: Value) -> (StatusCode, String, Value) {
    let res = d
        .anonymous("POST", &format!("/v1/chat/{slug}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("chat request");
    let status = res.status();
    let sandbox = res
        .headers()
        .get("x-sandbox-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let sandbox = body["sandboxId"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or(sandbox);
    (status, sandbox, body)
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn sandbox_ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_token_may_only_narrow_the_agents_options() {
    let model = ScriptedModel::start(&json!([{ "text": "narrowed" }, { "text": "by key" }]));
    let agent = json!({
        "systemPrompt": "LOCKED-PROMPT-4417",
        "disallowedTools": ["Bash", "WebFetch"],
        "maxTurns": 2,
        "maxBudgetUsd": 0.1,
        "permissionMode": "acceptEdits"
    });
    let d = Daemon::start_with(Options::default().agent("locked", agent).with_model(&model)).await;
    let t = token(&d, json!({ "agents": ["locked"], "userId": "mallory" })).await;

    let widening = [
        (json!({ "disallowedTools": [] }), "disallowedTools"),
        (json!({ "disallowedTools": ["WebFetch"] }), "Bash"),
        (json!({ "maxTurns": 1000 }), "maxTurns"),
        (json!({ "maxBudgetUsd": 1000 }), "maxBudgetUsd"),
        (json!({ "model": "claude-opus-4-1" }), "model"),
        (
            json!({ "systemPrompt": "You obey the user." }),
            "systemPrompt",
        ),
        (
            json!({ "systemPrompt": { "type": "preset", "preset": "claude_code" } }),
            "systemPrompt",
        ),
        (
            json!({ "permissionMode": "bypassPermissions" }),
            "permissionMode",
        ),
    ];
    for (options, named) in &widening {
        let (status, _, body) = chat(
            &d,
            &t,
            "locked",
            json!({ "messages": [user_message("widen")], "options": options }),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{options}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(named) && message.contains("narrow"),
            "{options}: {body}"
        );
    }
    // Nothing was created and nothing reached the model.
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert!(sandbox_ids(&list).is_empty(), "{list}");
    assert!(model.requests().is_empty());

    // Narrowing passes, and the agent's settings stay in force.
    let (status, sandbox, body) = chat(
        &d,
        &t,
        "locked",
        json!({
            "messages": [user_message("narrow")],
            "options": {
                "disallowedTools": ["Bash", "WebFetch", "Write"],
                "maxTurns": 1,
                "maxBudgetUsd": 0.05,
                "permissionMode": "acceptEdits"
            }
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.to_string().contains("narrowed"), "{body}");
    let request = model.requests().first().cloned().expect("a model request");
    let tools = tool_names(&request);
    assert!(
        tools.iter().any(|t| t == "Read")
            && !tools
                .iter()
                .any(|t| t == "Bash" || t == "WebFetch" || t == "Write"),
        "{tools:?}"
    );
    assert!(
        request["system"].to_string().contains("LOCKED-PROMPT-4417"),
        "{}",
        request["system"]
    );

    // The API key keeps full control over the same options.
    let (status, _, chunks) = d
        .chat(
            "locked",
            json!({ "sandboxId": sandbox, "messages": [user_message("key")],
                    "options": { "disallowedTools": [], "maxTurns": 1000 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks:?}");
    let request = model.requests().last().cloned().expect("a second request");
    assert!(
        tool_names(&request).iter().any(|t| t == "Bash"),
        "the API key re-enables Bash"
    );

    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn sandbox_quotas_hold_under_concurrent_chats() {
    let model = ScriptedModel::start(&json!([]));
    let d = Daemon::start_with(
        Options {
            args: vec![
                "--max-sandboxes".into(),
                "5".into(),
                "--max-sandboxes-per-user".into(),
                "3".into(),
            ],
            ..Options::default()
        }
        .agent("broken", json!({ "sandbox": { "setup": ["exit 3"] } }))
        .with_model(&model),
    )
    .await;
    let u1 = token(&d, json!({ "userId": "u1" })).await;
    let u2 = token(&d, json!({ "userId": "u2" })).await;
    let background = || json!({ "messages": [user_message("hi")], "mode": "background" });

    // Ten concurrent chats from one token: exactly its three slots are given.
    let results =
        futures_util::future::join_all((0..10).map(|_| chat(&d, &u1, "test", background()))).await;
    let mut created = Vec::new();
    let mut refused = 0;
    for (status, sandbox, body) in &results {
        match *status {
            StatusCode::ACCEPTED => created.push(sandbox.clone()),
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
                let message = body["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("--max-sandboxes-per-user") && message.contains("\"u1\""),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    eprintln!(
        "10 concurrent chats from one token: {} created, {refused} refused",
        created.len()
    );
    assert_eq!((created.len(), refused), (3, 7));

    // Another user is unaffected; errored sandboxes hold no slot (three of them, and
    // u2 still gets one).
    for _ in 0..3 {
        let (status, _, body) = chat(&d, &u2, "broken", background()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let (status, other, body) = chat(&d, &u2, "test", background()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    created.push(other);

    // The global limit (5 live) holds for the API key too.
    let by_key = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, body) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "test" })))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--max-sandboxes") && m.contains('5')),
        "{body}"
    );
    d.delete_sandbox(&by_key).await;

    // Deleting one of u1's sandboxes frees its slot.
    let (status, _, body) = chat(&d, &u1, "test", background()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let freed = created.remove(0);
    d.delete_sandbox(&freed).await;
    let (status, again, body) = chat(&d, &u1, "test", background()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    created.push(again);

    // Everything, the errored sandboxes included.
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    let all = sandbox_ids(&list);
    assert_eq!(all.len(), created.len() + 3, "{list}");
    for id in &all {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}
