//! Templates: `sandbox.apt` and `sandbox.build` baked into a derived image built once per
//! (base, apt, build) and reused, across sandboxes and across daemon restarts.

use sandboxd_e2e::{docker_inspect, Daemon, Options, StatusCode};
use serde_json::json;

fn builds_in(log: &str) -> usize {
    log.matches("building template").count()
}

#[tokio::test]
async fn apt_and_build_are_baked_once_and_reused() {
    // A unique build command makes this run's template new, whatever ran before.
    let nonce = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let agent = json!({ "sandbox": {
        "apt": ["jq"],
        "build": [format!("echo '{nonce}' > /etc/template-nonce"), "jq --version > /etc/jq-version"]
    } });
    let d = Daemon::start_with(Options::default().agent("jq", agent.clone())).await;

    let first = d.create_sandbox(json!({ "agent": "jq" })).await;
    let out = d
        .exec(
            &first,
            "echo '{\"a\": [1, 2]}' | jq -c '.a | length'; cat /etc/template-nonce",
        )
        .await;
    assert_eq!(out["stdout"], format!("2\n{nonce}\n"), "{out}");
    assert_eq!(builds_in(&d.log_text()), 1, "{}", d.log_text());

    // The second sandbox starts from the same image without running apt again.
    let second = d.create_sandbox(json!({ "agent": "jq" })).await;
    assert_eq!(d.exec(&second, "jq -n 1").await["stdout"], "1\n");
    assert_eq!(
        builds_in(&d.log_text()),
        1,
        "apt ran again:\n{}",
        d.log_text()
    );
    let image = |id: &str| {
        let name = id.replacen("sb_", "sbx-", 1);
        docker_inspect(&name, "{{.Image}}").expect("container image")
    };
    assert_eq!(image(&first), image(&second));

    // Sandboxes of an agent without apt do not have jq.
    let plain = d.create_sandbox(json!({ "agent": "test" })).await;
    assert_eq!(
        d.exec(&plain, "command -v jq || echo none").await["stdout"],
        "none\n"
    );

    for id in [&first, &second, &plain] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
    drop(d);

    // A restarted daemon reuses the template; a changed definition makes a new one.
    let changed = json!({ "sandbox": {
        "apt": ["jq"],
        "build": [format!("echo '{nonce}-v2' > /etc/template-nonce")]
    } });
    let d = Daemon::start_with(Options::default().agent("jq", agent).agent("jq2", changed)).await;
    let again = d.create_sandbox(json!({ "agent": "jq" })).await;
    assert_eq!(
        builds_in(&d.log_text()),
        0,
        "not reused across restarts:\n{}",
        d.log_text()
    );
    let v2 = d.create_sandbox(json!({ "agent": "jq2" })).await;
    assert_eq!(builds_in(&d.log_text()), 1);
    assert_eq!(
        d.exec(&v2, "cat /etc/template-nonce").await["stdout"],
        format!("{nonce}-v2\n")
    );
    d.delete_sandbox(&again).await;
    d.delete_sandbox(&v2).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_failing_template_build_names_the_command_and_its_output() {
    let d = Daemon::start_with(Options::default().agent(
        "bad",
        json!({ "sandbox": { "build": ["echo 'making things' && echo 'it broke' >&2 && exit 42"] } }),
    ))
    .await;
    let (status, created) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "bad" })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "error");
    let error = created["error"].as_str().expect("error");
    assert!(error.contains("building the template image"), "{error}");
    assert!(error.contains("exit 42") || error.contains("42"), "{error}");
    assert!(error.contains("it broke"), "{error}");
    let id = created["id"].as_str().expect("id");
    d.delete_sandbox(id).await;
    d.assert_no_leaks();
}
