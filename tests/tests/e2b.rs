//! The unmodified `e2b` JS SDK (npm `e2b@2.45.0`, pinned in tests/e2b-js) against a
//! real daemon's E2B API and real containers: Node's test runner on tests/e2b-js
//! (installed by scripts/test), with `E2B_API_URL`/`E2B_SANDBOX_URL` pointing at
//! `--e2b-listen` and `E2B_API_KEY` the daemon's key (of the `e2b_<hex>` form the
//! SDK checks).

use std::process::Command;

use sandboxd_e2e::{free_port, workspace, Daemon, Options};
use serde_json::json;

/// Runs one test file of tests/e2b-js against a fresh daemon; returns its output.
async fn run_suite(file: &str, expected_pass: usize) {
    let dir = workspace().join("tests/e2b-js");
    assert!(
        dir.join("node_modules/e2b").is_dir(),
        "tests/e2b-js has no node_modules: run the suite with scripts/test (npm ci there)"
    );
    let key = format!("e2b_{:032x}", rand_u128());
    let port = free_port();
    let mut options = Options::default().agent(
        "tiny",
        json!({
            "name": "Tiny",
            "sandbox": {
                "envs": { "FROM_AGENT": "agent" },
                "files": { "agent-file.txt": "from the agent\n" }
            }
        }),
    );
    options.args = vec!["--e2b-listen".into(), format!("127.0.0.1:{port}")];
    options.env.push(("SANDBOXD_API_KEY".into(), key.clone()));
    let d = Daemon::start_with(options).await;
    let url = format!("http://127.0.0.1:{port}");
    let file = file.to_owned();
    let started = std::time::Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-concurrency=1", &file])
            .current_dir(dir)
            .env("E2B_API_URL", &url)
            .env("E2B_SANDBOX_URL", &url)
            .env("E2B_API_KEY", key)
            .env_remove("E2B_DEBUG")
            .env_remove("E2B_DOMAIN")
            .output()
            .expect("node runs")
    })
    .await
    .expect("joined");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "{stdout}{}\n(took {:.1} s)",
        String::from_utf8_lossy(&output.stderr),
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "node tests failed:\n{stdout}");
    assert!(
        stdout.contains(&format!("# pass {expected_pass}")) && stdout.contains("# fail 0"),
        "{stdout}"
    );
    d.assert_no_leaks();
}

/// A random number from the OS, for the API key.
fn rand_u128() -> u128 {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").expect("a random uuid");
    let hex: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    u128::from_str_radix(&hex, 16).expect("hex")
}

#[tokio::test]
async fn the_e2b_sdk_manages_sandboxes() {
    run_suite("lifecycle.test.mjs", 3).await;
}

#[tokio::test]
async fn the_e2b_sdk_runs_commands() {
    run_suite("commands.test.mjs", 8).await;
}

#[tokio::test]
async fn the_e2b_sdk_reads_and_writes_files() {
    run_suite("files.test.mjs", 3).await;
}
