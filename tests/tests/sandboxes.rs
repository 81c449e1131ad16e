//! Sandboxes end to end: create with the agent's config and the call's overrides, get,
//! list, exec, delete, and every error a client can cause. Real Docker engine.

use std::time::Duration;

use sandboxd_e2e::{docker_inspect, eventually, Daemon, Options, StatusCode};
use serde_json::{json, Value};

fn configured_agent() -> Value {
    json!({
        "name": "Configured",
        "sandbox": {
            "cwd": "project",
            "files": {
                "project/hello.txt": "hello from the agent\n",
                "/home/user/.claude/skills/demo/SKILL.md": "skill",
                "/opt/agent/tool.cfg": "root-owned config"
            },
            "envs": { "GREETING": "hi", "OVERRIDDEN": "agent" },
            "setup": [
                "echo \"setup 1 in $PWD as $(id -un) greeting=$GREETING\" > setup.log",
                "echo 'setup 2' >> setup.log && mkdir -p build && touch build/out"
            ]
        }
    })
}

#[tokio::test]
async fn create_applies_config_then_exec_get_list_and_delete() {
    let d = Daemon::start_with(Options::default().agent("configured", configured_agent())).await;
    let (status, created) = d
        .call(
            "POST",
            "/v1/sandboxes",
            Some(json!({
                "agent": "configured",
                "files": { "project/extra.txt": "from the call" },
                "envs": { "OVERRIDDEN": "call", "EXTRA": "1" },
                "setup": ["echo 'setup 3 from the call' >> setup.log"]
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "active", "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let sandbox_id = created["sandboxId"].as_str().expect("sandboxId").to_owned();
    assert!(id.starts_with("sb_") && sandbox_id != id, "{created}");
    assert!(created["createdAt"]
        .as_str()
        .expect("createdAt")
        .ends_with('Z'));

    // GET by either id.
    for key in [&id, &sandbox_id] {
        let (status, detail) = d.call("GET", &format!("/v1/sandboxes/{key}"), None).await;
        assert_eq!(status, StatusCode::OK, "{detail}");
        assert_eq!(detail["id"], id.as_str());
        assert_eq!(detail["sandboxId"], sandbox_id.as_str());
        assert_eq!(detail["status"], "active");
        assert_eq!(detail["error"], Value::Null);
        assert_eq!(
            detail["agent"],
            json!({"slug": "configured", "name": "Configured"})
        );
        assert_eq!(detail["threads"], json!([]));
        assert!(detail["updatedAt"].is_string());
    }
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0]["id"], id.as_str());

    // The container is labelled and stays up.
    assert_eq!(
        docker_inspect(&sandbox_id, "{{index .Config.Labels \"sandboxd.sandbox\"}}").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        docker_inspect(&sandbox_id, "{{.State.Running}}").as_deref(),
        Some("true")
    );

    // Exec runs as user, in the cwd, with HOME and the merged envs.
    let out = d
        .exec(
            &id,
            "echo \"$(id -un) $(id -u) $PWD $HOME $GREETING $OVERRIDDEN $EXTRA\"",
        )
        .await;
    assert_eq!(
        out["stdout"], "user 1000 /home/user/project /home/user hi call 1\n",
        "{out}"
    );
    assert_eq!(out["exitCode"], 0);

    // Files: content and ownership; setup ran in order, as root, in cwd; home is user's.
    let out = d
        .exec(
            &id,
            "cat hello.txt extra.txt; echo; cat setup.log; \
             stat -c '%U %n' hello.txt extra.txt setup.log build build/out \
               ~/.claude/skills/demo/SKILL.md /opt/agent/tool.cfg",
        )
        .await;
    assert_eq!(
        out["stdout"],
        "hello from the agent\nfrom the call\n\
         setup 1 in /home/user/project as root greeting=hi\nsetup 2\nsetup 3 from the call\n\
         user hello.txt\nuser extra.txt\nuser setup.log\nuser build\nuser build/out\n\
         user /home/user/.claude/skills/demo/SKILL.md\nroot /opt/agent/tool.cfg\n",
        "{out}"
    );

    // Delete: 204, then 404 everywhere, no container, no directory.
    d.delete_sandbox(&sandbox_id).await;
    for (method, path) in [
        ("GET", format!("/v1/sandboxes/{id}")),
        ("DELETE", format!("/v1/sandboxes/{id}")),
    ] {
        let (status, body) = d.call(method, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "sandbox_not_found");
    }
    assert_eq!(docker_inspect(&sandbox_id, "{{.Id}}"), None);
    d.assert_no_leaks();
}

#[tokio::test]
async fn exec_reports_exit_codes_stderr_cwd_envs_and_bounds() {
    let d = Daemon::start_with(Options {
        args: vec!["--exec-output-limit".into(), "100000".into()],
        ..Options::default()
    })
    .await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;

    let out = d.exec(&id, "echo out; echo err >&2; exit 3").await;
    assert_eq!(
        (
            out["stdout"].as_str(),
            out["stderr"].as_str(),
            out["exitCode"].as_i64()
        ),
        (Some("out\n"), Some("err\n"), Some(3)),
        "{out}"
    );
    assert_eq!(out["timedOut"], false);

    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({
                "command": "mkdir -p sub && cd . && pwd && echo $A",
                "cwd": "/tmp",
                "envs": { "A": "from-call" }
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["stdout"], "/tmp\nfrom-call\n");

    // Relative cwd resolves under /home/user; a missing one is a clear 404.
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({ "command": "pwd", "cwd": "nope/missing" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("/home/user/nope/missing")),
        "{out}"
    );

    // A flood is cut at the limit and flagged; the daemon stays small and responsive.
    let out = d
        .exec(
            &id,
            "head -c 50000000 /dev/zero | tr '\\0' a; echo done >&2",
        )
        .await;
    assert_eq!(
        out["stdout"].as_str().map(str::len),
        Some(100_000),
        "stdout cut"
    );
    assert_eq!(out["stdoutTruncated"], true);
    assert_eq!(out["stderr"], "done\n");
    assert_eq!(out["stderrTruncated"], false);
    assert!(out["error"].as_str().is_some_and(|e| e.contains("dropped")));

    // Binary output comes back as (lossy) text rather than failing.
    let out = d.exec(&id, "printf 'a\\377b'").await;
    assert_eq!(out["stdout"], "a\u{fffd}b");

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_timed_out_exec_kills_its_whole_process_group() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let started = std::time::Instant::now();
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({
                "command": "echo started; sleep 300 & sleep 301; echo never",
                "timeoutMs": 500
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["timedOut"], true, "{out}");
    assert_eq!(out["exitCode"], 124);
    assert_eq!(out["stdout"], "started\n");
    assert!(out["error"]
        .as_str()
        .is_some_and(|e| e.contains("timed out after 500 ms")));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Neither sleep survives: the whole group was killed.
    let left = d.exec(&id, "pgrep -x sleep || echo none").await;
    assert_eq!(left["stdout"], "none\n", "{left}");

    // A client that hangs up also ends its command.
    let request = d
        .request("POST", &format!("/v1/sandboxes/{id}/exec"))
        .json(&json!({ "command": "sleep 302" }))
        .send();
    let _ = tokio::time::timeout(Duration::from_millis(700), request).await;
    eventually(
        Duration::from_secs(10),
        "the abandoned sleep to end",
        || async { d.exec(&id, "pgrep -x sleep || echo none").await["stdout"] == "none\n" },
    )
    .await;

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_setup_step_is_reported_and_cleaned_up() {
    let d = Daemon::start_with(Options::default().agent(
        "broken",
        json!({ "sandbox": { "setup": [
            "echo fine",
            "echo 'about to fail' && echo 'oh no' >&2 && exit 7",
            "echo never"
        ] } }),
    ))
    .await;
    let (status, created) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "broken" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "error");
    let error = created["error"].as_str().expect("error message");
    assert!(error.contains("setup command 2 of 3"), "{error}");
    assert!(error.contains("exit code 7"), "{error}");
    assert!(
        error.contains("about to fail") && error.contains("oh no"),
        "{error}"
    );
    let id = created["id"].as_str().expect("id");

    let (_, detail) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(detail["status"], "error");
    assert_eq!(detail["error"], error);
    // Its container is already gone; exec says the sandbox is not active.
    assert!(d.containers().is_empty(), "{:?}", d.containers());
    let (status, body) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/exec"),
            Some(json!({"command": "true"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "sandbox_not_active");

    d.delete_sandbox(id).await;
    d.assert_no_leaks();
}

/// A request (method, path, body) and the error it must get: status and a piece of
/// its message.
type ClientErrorCase<'a> = (&'a str, String, Option<&'a str>, StatusCode, &'a str);

/// Sends each case and checks its status, message and error code.
async fn assert_client_errors(d: &Daemon, cases: Vec<ClientErrorCase<'_>>) {
    for (method, path, body, status, needle) in cases {
        let mut req = d.request(method, &path);
        if let Some(body) = body {
            req = req.body(body.to_owned());
        }
        let res = req.send().await.expect("sent");
        let got = res.status();
        let json: Value = res.json().await.expect("JSON error body");
        assert_eq!(got, status, "{method} {path} {body:?}: {json}");
        let message = json["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{method} {path} {body:?}: {json}");
        assert!(json["error"]["code"].is_string(), "{json}");
    }
}

#[tokio::test]
async fn client_errors_get_clear_messages_and_never_a_500() {
    let d = Daemon::start().await;
    // Auth.
    let res = d
        .anonymous("GET", "/v1/sandboxes")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    let res = d
        .anonymous("GET", "/v1/sandboxes")
        .bearer_auth("wrong")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Health needs no key.
    let res = d.anonymous("GET", "/healthz").send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::OK);

    let cases: Vec<ClientErrorCase> = vec![
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\": "),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\": 5}"),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{}"),
            StatusCode::BAD_REQUEST,
            "missing field `agent`",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"fils\":{}}"),
            StatusCode::BAD_REQUEST,
            "unknown field `fils`",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some(""),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"nope\"}"),
            StatusCode::NOT_FOUND,
            "agent \"nope\" does not exist",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"files\":{\"a\\u0000b\":\"x\"}}"),
            StatusCode::BAD_REQUEST,
            "NUL",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"files\":{\"/.sandboxd/run/x\":\"x\"}}"),
            StatusCode::BAD_REQUEST,
            "reserved",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"envs\":{\"BAD-NAME\":\"x\"}}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "BAD-NAME",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"files\":7}"),
            StatusCode::BAD_REQUEST,
            "files as",
        ),
        (
            "POST",
            "/v1/sandboxes".into(),
            Some("{\"agent\":\"test\",\"networkDenyOut\":[\"10.0.0.0/99\"]}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "networkDenyOut",
        ),
        (
            "GET",
            "/v1/sandboxes/sb_nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "DELETE",
            "/v1/sandboxes/sb_nope".into(),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "POST",
            "/v1/sandboxes/sb_nope/exec".into(),
            Some("{\"command\":\"true\"}"),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            "/v1/nothing-here".into(),
            None,
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
        (
            "PUT",
            "/v1/sandboxes".into(),
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
        ),
    ];
    assert_client_errors(&d, cases).await;

    // Exec input errors on a real sandbox.
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    for (body, status, needle) in [
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "missing field `command`",
        ),
        (
            json!({"command": ["ls"]}),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
        (
            json!({"command": "true", "timeoutMs": -1}),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
        (
            json!({"command": "true", "timeoutMs": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least 1",
        ),
        (
            json!({"command": "true", "cwd": "a\u{0}b"}),
            StatusCode::BAD_REQUEST,
            "NUL",
        ),
        (
            json!({"command": "true", "envs": {"": "x"}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "environment variable",
        ),
    ] {
        let (got, json) = d
            .call(
                "POST",
                &format!("/v1/sandboxes/{id}/exec"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{body}: {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{body}: {json}"
        );
    }

    // Threads, their settings, permissions and events.
    let (_, thread) = d
        .call("POST", &format!("/v1/sandboxes/{id}/threads"), None)
        .await;
    let thread = thread["id"].as_str().expect("thread id").to_owned();
    let base = format!("/v1/sandboxes/{id}/threads/{thread}");
    let thread_cases: Vec<ClientErrorCase> = vec![
        (
            "POST",
            format!("/v1/sandboxes/{id}/threads"),
            Some("{\"name\": 5}"),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
        (
            "POST",
            format!("/v1/sandboxes/{id}/threads"),
            Some("{\"thinking\": \"huge\"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "thinking must be one of",
        ),
        (
            "PATCH",
            base.clone(),
            Some("{\"model\": "),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "PATCH",
            base.clone(),
            Some("{\"modle\": \"x\"}"),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "PATCH",
            base.clone(),
            Some("{\"model\": \" \"}"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "model",
        ),
        (
            "PATCH",
            format!("/v1/sandboxes/{id}/threads/th_nope"),
            Some("{}"),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "POST",
            format!("{base}/permissions/p_nope"),
            Some("{\"reply\": true}"),
            StatusCode::BAD_REQUEST,
            "wrong shape",
        ),
        (
            "POST",
            format!("{base}/permissions/p_nope"),
            Some("{\"reply\": \"once\"}"),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "GET",
            format!("{base}/events?limit=x"),
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "GET",
            format!("/v1/sandboxes/{id}/threads/th_nope/events/stream"),
            None,
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
    ];
    assert_client_errors(&d, thread_cases).await;
    let res = d
        .request("GET", &format!("{base}/events/stream"))
        .header("Last-Event-ID", "not-a-number")
        .send()
        .await
        .expect("sent");
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // A body over the limit is refused from its Content-Length.
    let huge = vec![b' '; 65 * 1024 * 1024];
    let res = d
        .request("POST", &format!("/v1/sandboxes/{id}/exec"))
        .body(huge)
        .send()
        .await;
    if let Ok(res) = res {
        assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    } // else the daemon closed the connection before reading it all: also a refusal.

    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_malformed_agent_file_is_reported_and_the_others_load() {
    let mut options = Options::default();
    options.agents.push(("broken".into(), "{\"name\": ".into()));
    options
        .agents
        .push(("typo".into(), "{\"sandbox\": {\"setpu\": []}}".into()));
    let d = Daemon::start_with(options).await;
    let log = d.log_text();
    assert!(log.contains("broken.json") && log.contains("EOF"), "{log}");
    assert!(log.contains("typo.json") && log.contains("setpu"), "{log}");
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, _) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "broken" })))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn an_unreachable_docker_engine_is_a_503_that_says_so() {
    let d = Daemon::start_with(Options {
        env: vec![(
            "DOCKER_HOST".into(),
            "unix:///nonexistent/docker.sock".into(),
        )],
        wait_healthy: false,
        ..Options::default()
    })
    .await;
    let res = d.anonymous("GET", "/healthz").send().await.expect("sent");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    eventually(
        Duration::from_secs(10),
        "the engine error to be known",
        || async {
            let (status, body) = d
                .call("POST", "/v1/sandboxes", Some(json!({ "agent": "test" })))
                .await;
            status == StatusCode::SERVICE_UNAVAILABLE
                && body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Docker engine is unreachable"))
        },
    )
    .await;
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn concurrent_creates_and_a_delete_during_creation_leave_nothing_behind() {
    let d = Daemon::start_with(
        Options::default().agent("slow", json!({ "sandbox": { "setup": ["sleep 2"] } })),
    )
    .await;
    // Three at once.
    let creates = (0..3).map(|_| d.create_sandbox(json!({ "agent": "test" })));
    let ids = futures_util::future::join_all(creates).await;
    assert_eq!(d.containers().len(), 3);
    for id in &ids {
        assert_eq!(d.exec(id, "echo ok").await["stdout"], "ok\n");
    }

    // A create whose client hangs up still finishes (and can be deleted), and one
    // deleted while its setup runs leaves no container.
    let abandoned = d
        .request("POST", "/v1/sandboxes")
        .json(&json!({ "agent": "slow" }))
        .send();
    let _ = tokio::time::timeout(Duration::from_millis(500), abandoned).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let slow_id = loop {
        let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
        let new = list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str())
            .find(|id| !ids.iter().any(|known| known == id))
            .map(str::to_owned);
        if let Some(id) = new {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow sandbox was never listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, detail) = d
        .call("GET", &format!("/v1/sandboxes/{slow_id}"), None)
        .await;
    assert_eq!(detail["status"], "creating", "{detail}");
    d.delete_sandbox(&slow_id).await;
    eventually(
        Duration::from_secs(15),
        "the deleted sandbox's container to go",
        || async { d.containers().len() == 3 },
    )
    .await;

    for id in &ids {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn the_openapi_document_describes_only_routes_that_exist() {
    let d = Daemon::start().await;
    let res = d
        .anonymous("GET", "/openapi.json")
        .send()
        .await
        .expect("openapi");
    assert_eq!(res.status(), StatusCode::OK);
    let doc: serde_json::Value = res.json().await.expect("JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 23, "{}", paths.len());
    for (path, operations) in paths {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "nope"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in operations.as_object().expect("operations").keys() {
            let mut request = d.request(&method.to_uppercase(), &concrete);
            if ["post", "put", "patch"].contains(&method.as_str()) {
                request = request.body("{}");
            }
            let res = request.send().await.expect("request");
            let status = res.status();
            let body = res.text().await.unwrap_or_default();
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}: {body}"
            );
            assert!(
                !body.contains("no such endpoint"),
                "{method} {path} is documented but not routed: {body}"
            );
        }
    }
}
