//! The unmodified `e2b` Python SDK (PyPI `e2b==2.45.1`, pinned with pytest in
//! tests/e2b-py/requirements.txt) against a real daemon's E2B API and real
//! containers: pytest on tests/e2b-py (its venv made by scripts/test), with
//! `E2B_API_URL`/`E2B_SANDBOX_URL` pointing at `--e2b-listen` and `E2B_API_KEY` the
//! daemon's key (of the `e2b_<hex>` form the SDK checks).

use std::time::Duration;

use sandboxd_e2e::{free_port, workspace, Daemon, Options};
use serde_json::json;

/// The longest a whole pytest file may take.
const SUITE_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// Runs pytest on one file of tests/e2b-py against a fresh daemon, and checks that
/// `expected_pass` tests passed and none failed.
async fn run_pytest(file: &str, expected_pass: usize) {
    run_pytest_with(file, expected_pass, &[]).await;
}

/// [`run_pytest`] with extra daemon flags.
async fn run_pytest_with(file: &str, expected_pass: usize, flags: &[&str]) {
    let dir = workspace().join("tests/e2b-py");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "tests/e2b-py has no .venv: run the suite with scripts/test (ensure_e2b_py in scripts/lib.sh)"
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
    options.args.extend(flags.iter().map(|f| f.to_string()));
    options.env.push(("SANDBOXD_API_KEY".into(), key.clone()));
    let d = Daemon::start_with(options).await;
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-v", "-s", file])
        .current_dir(&dir)
        .env("E2B_API_URL", &url)
        .env("E2B_SANDBOX_URL", &url)
        .env("E2B_API_KEY", key)
        .env("PYTHONUNBUFFERED", "1")
        .env_remove("E2B_DEBUG")
        .env_remove("E2B_DOMAIN")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SUITE_DEADLINE, child)
        .await
        .unwrap_or_else(|_| panic!("pytest {file} did not finish within {SUITE_DEADLINE:?}"))
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!(
        "{stdout}{}\n(took {:.1} s)",
        String::from_utf8_lossy(&output.stderr),
        started.elapsed().as_secs_f64()
    );
    assert!(output.status.success(), "pytest {file} failed:\n{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(&format!(" {expected_pass} passed")) && !summary.contains("failed"),
        "{summary}"
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
async fn the_python_sdk_manages_sandboxes() {
    run_pytest("test_lifecycle.py", 5).await;
}

#[tokio::test]
async fn the_python_sdk_runs_commands() {
    run_pytest("test_commands.py", 9).await;
}

#[tokio::test]
async fn the_python_sdk_reads_and_writes_files() {
    run_pytest("test_files.py", 5).await;
}

#[tokio::test]
async fn the_async_python_sdk_works_too() {
    run_pytest("test_async.py", 3).await;
}

#[tokio::test]
async fn the_python_sdk_watches_directories() {
    run_pytest("test_watch.py", 2).await;
}

#[tokio::test]
async fn the_python_sdk_pauses_and_resumes() {
    run_pytest("test_pause.py", 5).await;
}

#[tokio::test]
async fn the_base_template_has_sudo_when_the_daemon_allows_it() {
    run_pytest_with("test_sudo.py", 1, &["--e2b-base-sudo"]).await;
}
