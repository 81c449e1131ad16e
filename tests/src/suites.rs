//! Test suites written in other languages, run against a test daemon: Node's test
//! runner (the npm client packages, the e2b JS SDK, the browser) and pytest (the e2b
//! Python SDK). Each run has a deadline, prints its output, and passes only when the
//! expected number of tests passed and none failed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{free_port, workspace, Daemon, Options};

/// The longest one suite file may take.
pub const SUITE_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// A suite file to run: where (relative to the workspace), and with what environment.
#[derive(Debug)]
pub struct Suite<'a> {
    /// The suite's folder, e.g. `tests/node`.
    pub dir: &'a str,
    /// The test file in it.
    pub file: &'a str,
    /// A path inside `dir` that its installation makes (so a missing `npm ci` or venv
    /// says what to run instead of failing obscurely).
    pub installed: &'a str,
    /// Variables for the test process.
    pub env: Vec<(String, String)>,
}

impl Suite<'_> {
    /// Runs the file with `node --test` and checks `# pass <expected_pass>`, `# fail 0`.
    pub async fn node(self, expected_pass: usize) -> String {
        let stdout = self
            .run("node", &["--test", "--test-concurrency=1", self.file])
            .await;
        assert!(
            stdout.contains(&format!("# pass {expected_pass}")) && stdout.contains("# fail 0"),
            "{stdout}"
        );
        stdout
    }

    /// Runs the file with the folder's `.venv` pytest and checks that `expected_pass`
    /// tests passed and none failed.
    pub async fn pytest(self, expected_pass: usize) -> String {
        let python = workspace().join(self.dir).join(".venv/bin/python");
        let python = python.to_string_lossy().into_owned();
        let stdout = self
            .run(&python, &["-m", "pytest", "-v", "-s", self.file])
            .await;
        let summary = stdout.lines().last().unwrap_or_default();
        assert!(
            summary.contains(&format!(" {expected_pass} passed")) && !summary.contains("failed"),
            "{summary}"
        );
        stdout
    }

    async fn run(&self, program: &str, args: &[&str]) -> String {
        let dir = workspace().join(self.dir);
        assert!(
            dir.join(self.installed).exists(),
            "{} has no {}: run the suite with scripts/test, which installs it",
            self.dir,
            self.installed
        );
        let started = Instant::now();
        let child = tokio::process::Command::new(program)
            .args(args)
            .current_dir(&dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("PYTHONUNBUFFERED", "1")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(SUITE_DEADLINE, child)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}/{} did not finish within {SUITE_DEADLINE:?}",
                    self.dir, self.file
                )
            })
            .unwrap_or_else(|e| panic!("{program} does not run: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        println!(
            "{stdout}{}\n({}/{} took {:.1} s)",
            String::from_utf8_lossy(&output.stderr),
            self.dir,
            self.file,
            started.elapsed().as_secs_f64()
        );
        assert!(
            output.status.success(),
            "{}/{} failed:\n{stdout}",
            self.dir,
            self.file
        );
        stdout
    }
}

/// The variables that point a Node test file at a test daemon's relay API.
pub fn relay_env(d: &Daemon) -> Vec<(String, String)> {
    vec![
        ("SANDBOXD_URL".into(), d.url.clone()),
        ("SANDBOXD_API_KEY".into(), d.key.clone()),
    ]
}

/// A daemon serving the E2B API, for the SDKs: its API key is of the `e2b_<hex>` form
/// the SDKs check, and it has a `tiny` agent (a template with envs and a file).
#[derive(Debug)]
pub struct E2bDaemon {
    /// The daemon.
    pub daemon: Daemon,
    /// `http://127.0.0.1:<port>` of its E2B API.
    pub url: String,
    /// Its API key.
    pub key: String,
}

impl E2bDaemon {
    /// Starts one, with `flags` added to its command line.
    pub async fn start(flags: &[&str]) -> E2bDaemon {
        let key = format!("e2b_{:032x}", random_u128());
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
        let daemon = Daemon::start_with(options).await;
        let url = format!("http://127.0.0.1:{port}");
        E2bDaemon { daemon, url, key }
    }

    /// The variables the SDKs read (`E2B_DEBUG` and `E2B_DOMAIN` left unset, so the SDK
    /// routes through these URLs as it would through E2B's).
    pub fn sdk_env(&self) -> Vec<(String, String)> {
        vec![
            ("E2B_API_URL".into(), self.url.clone()),
            ("E2B_SANDBOX_URL".into(), self.url.clone()),
            ("E2B_API_KEY".into(), self.key.clone()),
            ("SANDBOXD_PID".into(), self.daemon.pid().to_string()),
        ]
    }
}

/// A daemon with the E2B API on `port` and the harness's own key; with `reuse`, on
/// the state of an earlier (stopped) daemon, as a restart.
pub async fn e2b_daemon(reuse: Option<&Daemon>, port: u16) -> Daemon {
    let mut options = Options::default();
    if let Some(d) = reuse {
        options.agents = Vec::new();
        options.reuse = Some((d.state_dir.clone(), d.agents_dir.clone()));
    }
    options.args = vec!["--e2b-listen".into(), format!("127.0.0.1:{port}")];
    Daemon::start_with(options).await
}

/// The sandbox id and envd access token an E2B create answered with.
pub fn envd_credentials(created: &Value) -> (String, String) {
    let field = |name: &str| {
        created[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} in {created}"))
            .to_owned()
    };
    (field("sandboxID"), field("envdAccessToken"))
}

/// A random number from the kernel.
pub fn random_u128() -> u128 {
    let bytes = std::fs::read("/proc/sys/kernel/random/uuid").expect("a random uuid");
    let hex: String = String::from_utf8_lossy(&bytes)
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    u128::from_str_radix(&hex, 16).expect("hex")
}

/// Whether Debian's chromium is installed (the browser tests need it).
pub fn assert_chromium() {
    assert!(
        Path::new("/usr/bin/chromium").is_file(),
        "no /usr/bin/chromium: scripts/test installs Debian's chromium"
    );
}
