//! The unmodified `e2b` Python SDK (PyPI `e2b==2.45.1`, pinned with pytest in
//! tests/e2b-py/requirements.txt) against a real daemon's E2B API and real
//! containers: pytest on tests/e2b-py (its venv made by scripts/test), with
//! `E2B_API_URL`/`E2B_SANDBOX_URL` pointing at `--e2b-listen` and `E2B_API_KEY` the
//! daemon's key (of the `e2b_<hex>` form the SDK checks).

use sandboxd_e2e::suites::{E2bDaemon, Suite};

/// Runs pytest on one file of tests/e2b-py against a fresh daemon, and checks that
/// `expected_pass` tests passed and none failed.
async fn run_pytest(file: &str, expected_pass: usize) {
    run_pytest_with(file, expected_pass, &[]).await;
}

/// [`run_pytest`] with extra daemon flags.
async fn run_pytest_with(file: &str, expected_pass: usize, flags: &[&str]) {
    let d = E2bDaemon::start(flags).await;
    Suite {
        dir: "tests/e2b-py",
        file,
        installed: ".venv/bin/python",
        env: d.sdk_env(),
    }
    .pytest(expected_pass)
    .await;
    d.daemon.assert_no_leaks();
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
