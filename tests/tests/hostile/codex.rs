//! The model proxy's OpenAI route under attack from inside a codex agent's sandbox: the
//! Responses calls Codex makes go through with the daemon's key put in place of the
//! sandbox's token; every other OpenAI call (models, files, stored responses, chat
//! completions), an unknown token, and headers that would pick another organization or
//! project of the daemon's key never reach the upstream as sent.

use sandboxd_e2e::{Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};

const KEY: &str = "sk-openai-hostile-suite-secret";

/// The model proxy's address, as the daemon logs it.
fn proxy_address(d: &Daemon) -> String {
    d.log_text()
        .lines()
        .find_map(|l| l.split("model proxy: http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the daemon logs the model proxy's address")
        .to_owned()
}

/// A sandbox's model-proxy token (Codex gets it as SANDBOXD_MODEL_TOKEN, and hands it
/// to every command it runs).
fn token_of(d: &Daemon, sandbox: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(d.state_dir.join("state.db"))
        .arg(format!(
            "SELECT model_token FROM sandboxes WHERE id = '{sandbox}'"
        ))
        .output()
        .expect("sqlite3");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        token.starts_with("sbxtok_"),
        "no token for {sandbox}: {out:?}"
    );
    token
}

/// One OpenAI-style request to the proxy from inside `sandbox`: (HTTP status, body).
async fn call(
    d: &Daemon,
    sandbox: &str,
    headers: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let proxy = proxy_address(d);
    let data = body
        .map(|b| format!("-H 'content-type: application/json' --data-binary '{b}'"))
        .unwrap_or_default();
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/exec"),
            Some(json!({
                "command": format!(
                    "curl -s --path-as-is -m 20 -X {method} {headers} {data} \
                     -w '\\n%{{http_code}}' 'http://{proxy}{path}'"
                ),
                "timeoutMs": 30_000,
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

const RESPONSE: &str = r#"{"model":"gpt-5-codex","stream":false,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}]}"#;

#[tokio::test]
async fn the_openai_route_forwards_only_responses_with_the_daemons_key() {
    let model = ScriptedModel::start(&json!([{ "text": "hi" }]));
    let d = Daemon::start_with(
        Options::default()
            .agent("codex", json!({ "runtime": "codex" }))
            .with_codex(&model, KEY),
    )
    .await;
    let sb = d.create_sandbox(json!({ "agent": "codex" })).await;
    let token = token_of(&d, &sb);
    let bearer = format!("-H 'authorization: Bearer {token}'");
    for (method, path, body) in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/files", Some(RESPONSE)),
        ("GET", "/v1/responses", None),
        ("GET", "/v1/responses/resp_123", None),
        ("DELETE", "/v1/responses/resp_123", None),
        ("POST", "/v1/responses/resp_123/cancel", Some(RESPONSE)),
        ("POST", "/v1/responses/", Some(RESPONSE)),
        ("POST", "/v1/responses/../files", Some(RESPONSE)),
        ("POST", "/v1/chat/completions", Some(RESPONSE)),
        ("POST", "/v1/embeddings", Some(RESPONSE)),
        ("GET", "/v1/organization/projects", None),
    ] {
        let (status, reply) = call(&d, &sb, &bearer, method, path, body).await;
        eprintln!("{method} {path}: {status} {reply}");
        assert_eq!(status, 403, "{method} {path}: {reply}");
        assert_eq!(
            reply["error"]["type"], "permission_error",
            "{method} {path}: {reply}"
        );
    }
    // A token that is no sandbox's.
    let (status, reply) = call(
        &d,
        &sb,
        "-H 'authorization: Bearer sbxtok_guessed'",
        "POST",
        "/v1/responses",
        Some(RESPONSE),
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    assert!(
        model.credentials().is_empty(),
        "refused calls reached the upstream"
    );
    assert!(model.requests().is_empty());

    // The call Codex makes goes through; the upstream sees the daemon's key, never the
    // sandbox's token, and none of the organization or project the sandbox asked for.
    let (status, reply) = call(
        &d,
        &sb,
        &format!("{bearer} -H 'OpenAI-Organization: org-attacker' -H 'OpenAI-Project: proj_x'"),
        "POST",
        "/v1/responses",
        Some(RESPONSE),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["output"][0]["content"][0]["text"], "hi", "{reply}");
    let seen = model.credentials();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        seen[0]["authorization"],
        format!("Bearer {KEY}"),
        "{seen:?}"
    );
    assert!(seen[0]["openai-organization"].is_null(), "{seen:?}");
    assert!(seen[0]["openai-project"].is_null(), "{seen:?}");
    // And it is metered for the sandbox (a non-streamed reply too).
    let (_, detail) = d.call("GET", &format!("/v1/sandboxes/{sb}"), None).await;
    assert_eq!(detail["modelUsage"]["requests"], 1, "{detail}");
    assert!(
        detail["modelUsage"]["outputTokens"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{detail}"
    );
    d.delete_sandbox(&sb).await;
    d.assert_no_leaks();
}

/// A token opens only its own runtime's routes: a Claude sandbox's token cannot spend
/// the OpenAI key on `/v1/responses`, nor a codex sandbox's the Anthropic key on
/// `/v1/messages`.
#[tokio::test]
async fn a_token_opens_only_its_own_runtimes_routes() {
    let model = ScriptedModel::start(&json!([{ "text": "hi" }]));
    let d = Daemon::start_with(
        Options::default()
            .agent("codex", json!({ "runtime": "codex" }))
            .with_codex(&model, KEY),
    )
    .await;
    let claude = d.create_sandbox(json!({ "agent": "test" })).await;
    let codex = d.create_sandbox(json!({ "agent": "codex" })).await;
    let bearer = format!("-H 'authorization: Bearer {}'", token_of(&d, &claude));
    let (status, reply) = call(
        &d,
        &claude,
        &bearer,
        "POST",
        "/v1/responses",
        Some(RESPONSE),
    )
    .await;
    assert_eq!(status, 403, "a Claude sandbox on the OpenAI route: {reply}");
    assert_eq!(reply["error"]["type"], "permission_error", "{reply}");
    assert!(model.requests().is_empty(), "the call reached the upstream");

    let key = format!(
        "-H 'x-api-key: {}' -H 'anthropic-version: 2023-06-01'",
        token_of(&d, &codex)
    );
    let message = r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let (status, reply) = call(&d, &codex, &key, "POST", "/v1/messages", Some(message)).await;
    assert_eq!(
        status, 403,
        "a codex sandbox on the Anthropic route: {reply}"
    );
    assert_eq!(reply["error"]["type"], "permission_error", "{reply}");
    for sb in [&claude, &codex] {
        d.delete_sandbox(sb).await;
    }
    d.assert_no_leaks();
}
