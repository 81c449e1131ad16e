//! Tests in a real browser: Debian's chromium, driven by playwright-core from
//! tests/browser (installed by scripts/test), against a real daemon behind a scripted
//! model. Covers the web console (sign-in, agents, chat, permissions, stop, resume,
//! sandbox files and commands, event log) and a page on another origin using
//! `@21st-sdk/react` with the seeds' session pattern. Screenshots of the console land
//! in `target/test-artifacts/console/`.

use sandboxd_e2e::suites::{assert_chromium, relay_env, Suite};
use sandboxd_e2e::{workspace, Daemon, Options, ScriptedModel};
use serde_json::json;

#[tokio::test]
async fn the_console_and_a_page_of_another_origin_work_in_chromium() {
    assert_chromium();
    // Each reply belongs to the prompt browser.test.mjs sends (the scripted model plays
    // per conversation; within a turn, the next reply of that prompt follows a tool result).
    let story = (1..=120)
        .map(|i| format!("sentence{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let model = ScriptedModel::start(&json!([
        { "text": "cross-origin reply", "prompt": "hello from another origin" },
        { "text": "session reply one", "prompt": "first question" },
        { "text": "session reply two", "prompt": "second question" },
        { "toolUse": { "name": "Bash", "input": { "command": "echo from-console > ~/console.txt", "description": "write" } }, "prompt": "write a file please" },
        { "text": "asker done", "prompt": "write a file please" },
        { "text": format!("Once upon a time {story} The end."), "chunkDelayMs": 250, "prompt": "tell me a long story" },
        { "text": format!("Twice upon a time {} The second end.", &story[..200]), "chunkDelayMs": 150, "prompt": "another long story" }
    ]));
    let d = Daemon::start_with(
        Options::default()
            .with_model(&model)
            .agent(
                "asker",
                json!({ "name": "Asker", "permissionMode": "default" }),
            )
            .agent_file("broken", "{ not json"),
    )
    .await;
    let artifacts = workspace().join("target/test-artifacts/console");
    let mut env = relay_env(&d);
    env.push((
        "SANDBOXD_ARTIFACTS".into(),
        artifacts.to_string_lossy().into_owned(),
    ));
    Suite {
        dir: "tests/browser",
        file: "browser.test.mjs",
        installed: "node_modules/playwright-core",
        env,
    }
    .node(3)
    .await;
    for name in [
        "console-2-agents.png",
        "console-4-chat.png",
        "console-6-sandbox.png",
    ] {
        let len = std::fs::metadata(artifacts.join(name)).map_or(0, |m| m.len());
        assert!(len > 10_000, "screenshot {name} is missing or empty");
    }
    assert!(
        !d.log_text().contains(&d.key),
        "the daemon's log holds the API key"
    );
    d.assert_no_leaks();
}
