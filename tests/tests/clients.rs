//! The real npm client packages against the real daemon: runs Node's test runner on
//! tests/node (installed by scripts/test) with a scripted model behind the daemon.

use sandboxd_e2e::suites::{relay_env, Suite};
use sandboxd_e2e::{Daemon, Options, ScriptedModel};
use serde_json::json;

/// Runs one Node test file against a daemon and checks that `passes` tests passed and
/// none failed.
async fn node_tests(d: &Daemon, file: &str, passes: usize) {
    Suite {
        dir: "tests/node",
        file,
        installed: "node_modules/ai5",
        env: relay_env(d),
    }
    .node(passes)
    .await;
}

#[tokio::test]
async fn the_official_clients_work_unchanged() {
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
    node_tests(&d, "clients.test.mjs", 7).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn strict_clients_read_a_codex_agents_stream() {
    let model = ScriptedModel::start(&json!([
        { "toolUse": { "name": "exec_command", "input": { "cmd": "echo from-codex-v5" } } },
        { "text": "v5 done" },
        { "thinking": "weighing codex", "text": "v6 reply" }
    ]));
    // A model Codex has no metadata for: every turn carries a non-fatal warning.
    let agent = json!({ "runtime": "codex", "model": "gpt-5-codex" });
    let d = Daemon::start_with(
        Options::default()
            .agent("codex", agent)
            .with_codex(&model, "sk-openai-test"),
    )
    .await;
    node_tests(&d, "codex.test.mjs", 2).await;
    d.assert_no_leaks();
}
