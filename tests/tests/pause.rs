//! Idle sandboxes are paused (`docker pause`) and resumed by their next use: exec,
//! files, chat and git work on a paused sandbox with no error, its status says `paused`
//! meanwhile, a sandbox with a running exec or an open stream is never paused, calls
//! racing a pause all succeed, and a restart keeps a paused sandbox usable.

use std::time::Duration;

use sandboxd_e2e::{
    docker_inspect, eventually, text_of, user_message, Daemon, Options, ScriptedModel, StatusCode,
};
use serde_json::{json, Value};

fn options(model: Option<&ScriptedModel>) -> Options {
    let options = Options {
        args: vec!["--pause-after-secs".into(), "1".into()],
        ..Options::default()
    };
    match model {
        Some(model) => options.with_model(model),
        None => options,
    }
}

/// The status as listed: listing is no use of a sandbox (a GET of the sandbox
/// itself would be, and would keep it from pausing).
async fn listed_status(d: &Daemon, id: &str) -> String {
    let (status, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == id)
        .and_then(|s| s["status"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{id} is not listed: {list}"))
}

fn container_paused(d: &Daemon, id: &str) -> bool {
    let _ = d;
    docker_inspect(&id.replacen("sb_", "sbx-", 1), "{{.State.Paused}}").as_deref() == Some("true")
}

async fn wait_paused(d: &Daemon, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while listed_status(d, id).await != "paused" {
        assert!(
            std::time::Instant::now() < deadline,
            "{id} was not paused within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(container_paused(d, id), "its container is frozen");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_sandbox_is_paused_and_its_next_use_resumes_it() {
    let model = ScriptedModel::start(&json!([{"text": "still here"}]));
    let d = Daemon::start_with(options(Some(&model))).await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;
    // A process keeps running across the pause (frozen, then thawed).
    let out = d
        .exec(
            &id,
            "nohup sh -c 'while true; do date +%s%N > /tmp/tick; sleep 0.1; done' \
             >/dev/null 2>&1 & echo $! > /tmp/loop.pid",
        )
        .await;
    assert_eq!(out["exitCode"], 0, "{out}");

    wait_paused(&d, &id).await;
    let (status, body) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "paused", "{body}");

    // exec
    let out = d
        .exec(
            &id,
            "echo awake; kill -0 $(cat /tmp/loop.pid) && a=$(cat /tmp/tick) && sleep 0.5 \
             && b=$(cat /tmp/tick) && [ \"$a\" != \"$b\" ] && echo ticking",
        )
        .await;
    assert_eq!(out["stdout"], "awake\nticking\n", "{out}");
    assert_eq!(listed_status(&d, &id).await, "active");
    assert!(!container_paused(&d, &id));

    // files
    wait_paused(&d, &id).await;
    let (status, body) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/files"),
            Some(json!({"files": {"/home/user/a.txt": "written while paused"}})),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    wait_paused(&d, &id).await;
    let (status, body) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{id}/files?path=/home/user/a.txt"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["content"], "written while paused");

    // chat (a thread is a record: creating one leaves the sandbox paused)
    wait_paused(&d, &id).await;
    let (status, _, chunks) = d
        .chat(
            "test",
            json!({"sandboxId": id, "messages": [user_message("are you there?")]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{chunks:?}");
    assert_eq!(text_of(&chunks), "still here", "{chunks:?}");

    // git: the sandbox is resumed before anything else (here the URL is refused).
    wait_paused(&d, &id).await;
    let (status, body) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{id}/git/clone"),
            Some(json!({"url": "ftp://example.invalid/repo.git"})),
        )
        .await;
    assert!(
        status.is_client_error() && status != StatusCode::CONFLICT,
        "{status} {body}"
    );
    assert!(!body.to_string().contains("paused"), "{body}");
    assert_eq!(listed_status(&d, &id).await, "active");
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_exec_or_an_open_stream_keeps_a_sandbox_awake() {
    let model = ScriptedModel::start(&json!([{"text": "hi"}]));
    let d = Daemon::start_with(options(Some(&model))).await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;

    // An exec of 4 s: more than the idle time, the sandbox stays active throughout.
    let running = {
        let (url, key, id) = (d.url.clone(), d.key.clone(), id.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/sandboxes/{id}/exec"))
                .bearer_auth(key)
                .json(&json!({"command": "sleep 4; echo done"}))
                .send()
                .await
                .expect("exec")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    // On a loaded machine the exec may reach the sandbox after its idle second, when
    // it is paused already (the exec then resumes it): what must hold is that it stays
    // active from the moment the exec runs.
    let container = d.containers().into_iter().next().expect("its container");
    eventually(Duration::from_secs(60), "the exec running", || async {
        std::process::Command::new("docker")
            .args(["top", &container])
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("sleep 4"))
    })
    .await;
    while !running.is_finished() {
        assert_eq!(
            listed_status(&d, &id).await,
            "active",
            "paused under an exec"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(running.await.expect("exec task")["stdout"], "done\n");

    // An open events stream of one of its threads, for 4 s. It is opened while the
    // turn runs (which keeps the sandbox awake), so no idle second falls between them.
    let turn = d
        .request("POST", "/v1/chat/test")
        .json(&json!({"sandboxId": id, "messages": [user_message("hi")]}))
        .send()
        .await
        .expect("chat");
    assert_eq!(turn.status(), StatusCode::OK);
    let thread = turn.headers()["x-thread-id"]
        .to_str()
        .expect("thread id")
        .to_owned();
    let stream = d
        .request(
            "GET",
            &format!("/v1/sandboxes/{id}/threads/{thread}/events/stream"),
        )
        .send()
        .await
        .expect("events stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let chunks = sandboxd_e2e::sse_chunks(&turn.text().await.expect("the turn"));
    assert!(chunks.iter().any(|c| c["type"] == "finish"), "{chunks:?}");
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert_eq!(
            listed_status(&d, &id).await,
            "active",
            "paused under a stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stream);
    wait_paused(&d, &id).await;
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_racing_a_pause_all_succeed() {
    let d = Daemon::start_with(options(None)).await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;
    // Bursts of concurrent calls on a paused sandbox, and single calls paced around
    // the idle time, so some land while a pause is being decided or done.
    for round in 0..3 {
        wait_paused(&d, &id).await;
        let commands: Vec<String> = (0..8).map(|i| format!("echo {round}-{i}")).collect();
        let calls = commands.iter().map(|c| d.exec(&id, c));
        for (i, out) in futures_util::future::join_all(calls)
            .await
            .iter()
            .enumerate()
        {
            assert_eq!(out["stdout"], format!("{round}-{i}\n"), "{out}");
        }
    }
    for i in 0..12u64 {
        tokio::time::sleep(Duration::from_millis(850 + (i % 5) * 100)).await;
        let (status, body) = d
            .call(
                "GET",
                &format!("/v1/sandboxes/{id}/files?path=/etc/hostname"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "call {i}: {body}");
    }
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_sandbox_survives_a_daemon_restart() {
    let mut d = Daemon::start_with(options(None)).await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;
    wait_paused(&d, &id).await;
    d.kill();
    let again = Daemon::start_with(Options {
        agents: Vec::new(),
        reuse: Some((d.state_dir.clone(), d.agents_dir.clone())),
        ..options(None)
    })
    .await;
    assert_eq!(listed_status(&again, &id).await, "paused");
    let out = again.exec(&id, "echo back").await;
    assert_eq!(out["stdout"], "back\n", "{out}");
    again.delete_sandbox(&id).await;
    again.assert_no_leaks();
}
