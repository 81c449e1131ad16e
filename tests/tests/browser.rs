//! Tests in a real browser: Debian's chromium, driven by playwright-core from
//! tests/browser (installed by scripts/test), against a real daemon behind a scripted
//! model. Covers the web console (sign-in, agents, chat, permissions, stop, resume,
//! sandbox files and commands, event log) and a page on another origin using
//! `@21st-sdk/react` with the seeds' session pattern. Screenshots of the console land
//! in `target/test-artifacts/console/`.

use std::process::Command;

use sandboxd_e2e::{workspace, Daemon, Options, ScriptedModel};
use serde_json::json;

#[tokio::test]
async fn the_console_and_a_page_of_another_origin_work_in_chromium() {
    let dir = workspace().join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser has no node_modules: run the suite with scripts/test (npm ci there)"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").is_file(),
        "no /usr/bin/chromium: scripts/test installs Debian's chromium"
    );
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
    let (url, key) = (d.url.clone(), d.key.clone());
    let shots = artifacts.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "browser.test.mjs"])
            .current_dir(dir)
            .env("SANDBOXD_URL", url)
            .env("SANDBOXD_API_KEY", key)
            .env("SANDBOXD_ARTIFACTS", shots)
            .output()
            .expect("node runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "browser tests failed:\n{stdout}");
    assert!(
        stdout.contains("# pass 3") && stdout.contains("# fail 0"),
        "{stdout}"
    );
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
