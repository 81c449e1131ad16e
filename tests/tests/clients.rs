//! The real npm client packages against the real daemon: runs Node's test runner on
//! tests/node (installed by scripts/test) with a scripted model behind the daemon.

use std::process::Command;

use sandboxd_e2e::{workspace, Daemon, Options, ScriptedModel};
use serde_json::json;

#[tokio::test]
async fn the_official_clients_work_unchanged() {
    let node_dir = workspace().join("tests/node");
    assert!(
        node_dir.join("node_modules/ai5").is_dir(),
        "tests/node has no node_modules: run the suite with scripts/test (npm ci there)"
    );
    let model = ScriptedModel::start(&json!([
        // Each client test's turn plays the replies bound to its prompt.
        { "prompt": "write a file", "text": "Writing.", "toolUse": { "name": "Bash", "input": { "command": "echo 'from v5'", "description": "echo" } } },
        { "prompt": "write a file", "text": "v5 done" },
        { "prompt": "think first", "thinking": "weighing the options", "text": "v6 reply" },
        { "prompt": "hello sdk", "text": "sdk reply" },
        { "prompt": "in the background", "text": "background reply" },
        { "prompt": "as a browser user", "text": "token reply" },
        { "prompt": "ask v5", "toolUse": { "name": "Bash", "input": { "command": "echo allowed > /tmp/asked && cat /tmp/asked", "description": "echo" } } },
        { "prompt": "ask v5", "text": "v5 asked" },
        { "prompt": "ask v6", "toolUse": { "name": "Bash", "input": { "command": "echo allowed > /tmp/asked && cat /tmp/asked", "description": "echo" } } },
        { "prompt": "ask v6", "text": "v6 asked" }
    ]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let url = d.url.clone();
    let key = d.key.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", "clients.test.mjs"])
            .current_dir(node_dir)
            .env("SANDBOXD_URL", url)
            .env("SANDBOXD_API_KEY", key)
            .output()
            .expect("node runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "node tests failed:\n{stdout}");
    assert!(
        stdout.contains("# pass 6") && stdout.contains("# fail 0"),
        "{stdout}"
    );
    d.assert_no_leaks();
}
