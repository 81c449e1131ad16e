//! The agents API: deploy, update and remove definitions without a restart; files and
//! deployments both show; deployments survive a restart; bad definitions are refused.

use sandboxd_e2e::{Daemon, Options, StatusCode};
use serde_json::json;

#[tokio::test]
async fn agents_are_deployed_updated_and_removed_without_a_restart() {
    let d = Daemon::start().await;
    let (status, list) = d.call("GET", "/v1/agents", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["slug"], "test");
    assert_eq!(list[0]["source"], "file");

    // Deploy, then use it at once.
    let def = json!({ "name": "Deployed", "sandbox": { "envs": { "FLAVOR": "v1" } } });
    let (status, created) = d.call("PUT", "/v1/agents/deployed", Some(def)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "Deployed");
    assert_eq!(created["source"], "api");
    let first = d.create_sandbox(json!({ "agent": "deployed" })).await;
    assert_eq!(d.exec(&first, "echo $FLAVOR").await["stdout"], "v1\n");

    // Update: new sandboxes get the new definition.
    let (status, _) = d
        .call(
            "PUT",
            "/v1/agents/deployed",
            Some(json!({ "name": "Deployed", "sandbox": { "envs": { "FLAVOR": "v2" } } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = d.create_sandbox(json!({ "agent": "deployed" })).await;
    assert_eq!(d.exec(&second, "echo $FLAVOR").await["stdout"], "v2\n");
    let (_, got) = d.call("GET", "/v1/agents/deployed", None).await;
    assert_eq!(got["definition"]["sandbox"]["envs"]["FLAVOR"], "v2");

    // Bad definitions and slugs are refused with the reason; file agents stay.
    for (path, body, status, needle) in [
        (
            "/v1/agents/bad",
            json!({ "sandbox": { "aptt": [] } }),
            StatusCode::BAD_REQUEST,
            "aptt",
        ),
        (
            "/v1/agents/bad",
            json!({ "permissionMode": "yolo" }),
            StatusCode::BAD_REQUEST,
            "yolo",
        ),
        (
            "/v1/agents/.hidden",
            json!({}),
            StatusCode::BAD_REQUEST,
            "slug",
        ),
    ] {
        let (got, err) = d.call("PUT", path, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(needle)),
            "{err}"
        );
    }
    let (status, _) = d.call("DELETE", "/v1/agents/test", None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = d.call("DELETE", "/v1/agents/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for id in [&first, &second] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn deployed_agents_survive_a_restart_and_can_be_removed() {
    let mut d = Daemon::start().await;
    let (status, _) = d
        .call("PUT", "/v1/agents/kept", Some(json!({ "name": "Kept" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    d.terminate();
    // A new daemon on the same state and agents directories.
    let options = Options {
        agents: Vec::new(),
        reuse: Some((d.state_dir.clone(), d.agents_dir.clone())),
        ..Options::default()
    };
    let again = Daemon::start_with(options).await;
    let (status, got) = again.call("GET", "/v1/agents/kept", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["source"], "api");
    let (status, _) = again.call("DELETE", "/v1/agents/kept", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = again.call("GET", "/v1/agents/kept", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(d);
}

#[tokio::test]
async fn agents_deployed_before_the_state_database_are_moved_into_it() {
    let state = tempfile::Builder::new()
        .prefix("sandboxd-test-state-")
        .tempdir()
        .expect("state dir");
    let agents = tempfile::tempdir().expect("agents dir");
    std::fs::create_dir(state.path().join("agents")).expect("legacy dir");
    std::fs::write(
        state.path().join("agents/legacy.json"),
        r#"{"name": "Deployed long ago"}"#,
    )
    .expect("legacy agent");
    let d = Daemon::start_with(Options {
        agents: Vec::new(),
        reuse: Some((state.path().to_owned(), agents.path().to_owned())),
        ..Options::default()
    })
    .await;
    let (status, got) = d.call("GET", "/v1/agents/legacy", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["source"], "api");
    assert_eq!(got["definition"]["name"], "Deployed long ago", "{got}");
    assert!(!state.path().join("agents").exists());
    assert!(state.path().join("agents.imported/legacy.json").is_file());
}

#[tokio::test]
async fn definitions_skipped_at_start_up_are_listed_with_why() {
    let d = Daemon::start_with(Options::default().agent_file("broken", "{ not json")).await;
    let (status, problems) = d.call("GET", "/v1/agents/problems", None).await;
    assert_eq!(status, StatusCode::OK, "{problems}");
    let problems = problems.as_array().expect("a list");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["slug"], "broken");
    assert!(
        problems[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("broken.json")),
        "{problems:?}"
    );
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 1")),
        "{problems:?}"
    );
    // The others loaded.
    let (_, agents) = d.call("GET", "/v1/agents", None).await;
    assert_eq!(agents.as_array().map(Vec::len), Some(1), "{agents}");
}

/// One rule for file and API agents: a file's agent is changed through its file, so a
/// `PUT` over it is refused like its `DELETE`; an API agent deployed before a file of
/// the same slug appeared keeps winning, and its `DELETE` brings the file's agent back.
/// A deleted agent's variables go with it.
#[tokio::test]
async fn file_agents_are_never_shadowed_by_a_put_and_come_back_from_under_a_delete() {
    let d = Daemon::start().await;
    let (status, err) = d
        .call("PUT", "/v1/agents/test", Some(json!({ "name": "Usurper" })))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err.to_string().contains("file"), "{err}");
    let (_, got) = d.call("GET", "/v1/agents/test", None).await;
    assert_eq!(got["definition"]["name"], "Test agent", "{got}");
    assert_eq!(got["source"], "file", "{got}");

    // Deployed first, then a file of the same slug appears: the deployment wins until
    // it is deleted, and then the file's agent is there at once.
    let (status, _) = d
        .call(
            "PUT",
            "/v1/agents/both",
            Some(json!({ "name": "From the API" })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    std::fs::write(
        d.agents_dir.join("both.json"),
        r#"{"name": "From the file"}"#,
    )
    .expect("write");
    let (status, _) = d.call("POST", "/v1/agents/reload", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, got) = d.call("GET", "/v1/agents/both", None).await;
    assert_eq!(got["definition"]["name"], "From the API", "{got}");
    let (status, _) = d.call("DELETE", "/v1/agents/both", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, got) = d.call("GET", "/v1/agents/both", None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["definition"]["name"], "From the file", "{got}");
    assert_eq!(got["source"], "file", "{got}");
    let (status, _) = d.call("DELETE", "/v1/agents/both", None).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A deleted agent's sub-resources are gone, and so are its secrets: an agent
    // deployed later under the slug does not inherit them.
    let (status, _) = d
        .call("PUT", "/v1/agents/gone", Some(json!({ "name": "Gone" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = d
        .call(
            "PUT",
            "/v1/agents/gone/env",
            Some(json!({ "vars": { "SECRET": "s3cret" } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = d.call("DELETE", "/v1/agents/gone", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = d.call("GET", "/v1/agents/gone/env", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = d.call("DELETE", "/v1/agents/gone/env/SECRET", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = d
        .call("PUT", "/v1/agents/gone", Some(json!({ "name": "Again" })))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, names) = d.call("GET", "/v1/agents/gone/env", None).await;
    assert_eq!(names["names"], json!([]), "{names}");
    d.assert_no_leaks();
}
