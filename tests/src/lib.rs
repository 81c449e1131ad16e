//! The end-to-end harness: starts the real `sandboxd` binary against the real Docker
//! engine, each test with its own state directory, agents, port and container label,
//! and checks afterwards that nothing it created is left behind.
//!
//! Build the binaries first (`scripts/test` does): `target/<profile>/sandboxd` and the
//! static `target/x86_64-unknown-linux-gnu/<profile>/sandbox-init`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use reqwest::StatusCode;

mod chat;
pub mod hiccup;
mod model;
pub mod peer;
mod pool;
pub mod suites;

pub use chat::{chat_ids, chunk_types, sse_chunks, text_of, user_message};
pub use model::ScriptedModel;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// A state directory a test keeps across daemons (`Options::reuse`). When it goes,
/// after the last daemon on it, what those daemons left mounted in it (sandbox disks
/// and terminals of sandboxes not deleted) is unmounted first, so it can be removed.
#[derive(Debug)]
pub struct StateDir(tempfile::TempDir);

impl StateDir {
    pub fn new() -> Self {
        Self(tempfile::tempdir().expect("a state directory"))
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Default for StateDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        unmount_under(self.0.path());
    }
}

/// An agents directory inside the example TypeScript project, so that its
/// `node_modules` (`@21st-sdk/agent`, zod) is found.
pub fn ts_agents_dir() -> tempfile::TempDir {
    let project = workspace().join("examples/ts-agent");
    assert!(
        project.join("node_modules/@21st-sdk/agent").is_dir(),
        "run `npm ci` in {} first (scripts/test does)",
        project.display()
    );
    let parent = project.join(".test-agents");
    std::fs::create_dir_all(&parent).expect("mkdir");
    tempfile::Builder::new()
        .prefix("agents-")
        .tempdir_in(parent)
        .expect("agents dir")
}

/// The message `GET /v1/agents/problems` gives for the file whose path ends with
/// `file`; panics when there is none.
pub fn agent_problem(problems: &serde_json::Value, file: &str) -> String {
    problems
        .as_array()
        .expect("problems")
        .iter()
        .find(|p| p["path"].as_str().unwrap_or_default().ends_with(file))
        .unwrap_or_else(|| panic!("no problem reported for {file}: {problems}"))["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The daemon binary of the given profile directory (`debug` or `release`).
pub fn daemon_bin(profile: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    target.join(profile).join("sandboxd")
}

/// The newest modification time of any file under `dir`.
fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(newest)
        };
        newest = newest.max(time);
    }
    newest
}

/// Fails when the daemon or the static sandbox-init is older than its sources: the
/// e2e crate does not rebuild them, and a stale binary would test old code.
fn assert_fresh(profile: &str) {
    let target = daemon_bin(profile)
        .parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .unwrap_or_default();
    let init = target
        .join("x86_64-unknown-linux-gnu")
        .join(profile)
        .join("sandbox-init");
    for (bin, sources) in [
        (daemon_bin(profile), "daemon/src"),
        // The web console's bundle is embedded in the daemon, and built from console/src.
        (daemon_bin(profile), "console/dist"),
        (daemon_bin(profile), "console/src"),
        (init, "sandbox-init/src"),
    ] {
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .unwrap_or(std::time::UNIX_EPOCH);
        assert!(
            newest_source(&workspace().join(sources)) <= built,
            "{} is missing or older than {sources}: rebuild it (scripts/test does, \
             see build_console and build_binaries in scripts/lib.sh)",
            bin.display()
        );
    }
}

/// The daemon's default sandbox image.
pub fn default_image() -> &'static str {
    "sandboxd/default:bookworm"
}

/// Options of a test daemon.
#[derive(Debug, Clone)]
pub struct Options {
    /// Agent definitions written into its agents directory: (slug, raw file text).
    pub agents: Vec<(String, String)>,
    /// Extra environment for the daemon process (an empty value unsets it).
    pub env: Vec<(String, String)>,
    /// Extra `serve` arguments.
    pub args: Vec<String>,
    /// Wait for `/healthz` to answer 200.
    pub wait_healthy: bool,
    /// `debug` or `release`.
    pub profile: String,
    /// Reuse these state and agents directories (a restart) instead of new ones.
    pub reuse: Option<(PathBuf, PathBuf)>,
    /// A command the daemon runs under (it must `exec` it), e.g. to give it a
    /// mount namespace of its own.
    pub wrapper: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            agents: vec![("test".into(), r#"{"name": "Test agent"}"#.into())],
            env: Vec::new(),
            args: Vec::new(),
            wait_healthy: true,
            profile: "debug".into(),
            reuse: None,
            wrapper: Vec::new(),
        }
    }
}

impl Options {
    /// Adds an agent definition.
    pub fn agent(mut self, slug: &str, definition: Value) -> Self {
        self.agents.push((slug.into(), definition.to_string()));
        self
    }

    /// Adds an agent file with this exact text (a broken one, say).
    pub fn agent_file(mut self, slug: &str, text: &str) -> Self {
        self.agents.push((slug.into(), text.into()));
        self
    }
}

/// A running daemon, killed (and its containers removed) on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    /// Base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The API key.
    pub key: String,
    /// `sandboxd.test=<this>` is on every container this daemon makes.
    pub label: String,
    /// Its state directory.
    pub state_dir: PathBuf,
    /// Its agents directory.
    pub agents_dir: PathBuf,
    _temps: Vec<tempfile::TempDir>,
    log: PathBuf,
    http: reqwest::Client,
}

/// A free loopback port (bound then released; races are harmless in practice here).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on loopback")
}

impl Daemon {
    /// Starts a daemon with the default options.
    pub async fn start() -> Daemon {
        Self::start_with(Options::default()).await
    }

    /// Starts a daemon.
    pub async fn start_with(options: Options) -> Daemon {
        let mut temps = Vec::new();
        let (state_dir, agents_dir) = match &options.reuse {
            Some((state, agents)) => (state.clone(), agents.clone()),
            None => {
                let state = tempfile::Builder::new()
                    .prefix("sandboxd-test-state-")
                    .tempdir()
                    .expect("state dir");
                let agents = tempfile::Builder::new()
                    .prefix("sandboxd-test-agents-")
                    .tempdir()
                    .expect("agents dir");
                let paths = (state.path().to_owned(), agents.path().to_owned());
                temps.push(state);
                temps.push(agents);
                paths
            }
        };
        for (slug, text) in &options.agents {
            std::fs::write(agents_dir.join(format!("{slug}.json")), text).expect("write agent");
        }
        let port = free_port();
        let label = format!(
            "t{}-{}",
            std::process::id(),
            state_dir
                .file_name()
                .map(|n| n.to_string_lossy().replace("sandboxd-test-state-", ""))
                .unwrap_or_default()
        )
        .to_lowercase();
        let key = format!("test-key-{label}");
        let log = state_dir.join("daemon.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let bin = daemon_bin(&options.profile);
        assert!(
            bin.is_file(),
            "{} is missing: build it first (scripts/test does)",
            bin.display()
        );
        assert_fresh(&options.profile);
        let mut cmd = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&bin);
                cmd
            }
            None => Command::new(&bin),
        };
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--agents-dir")
            .arg(&agents_dir)
            .arg("--label")
            .arg(format!("sandboxd.test={label}"))
            .args(&options.args)
            .env("SANDBOXD_API_KEY", &key)
            .env("SANDBOXD_LOG", "info,sandboxd=debug")
            // No warm pool unless a test asks for one (`--pool-size`), or the whole
            // run does: warm containers would count as leaks in tests that check
            // the engine while their daemon runs.
            .env(
                "SANDBOXD_POOL_SIZE",
                std::env::var("SANDBOXD_TEST_POOL_SIZE").unwrap_or_else(|_| "0".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file);
        for (k, v) in &options.env {
            // An empty value removes the variable.
            if v.is_empty() {
                cmd.env_remove(k);
            } else {
                cmd.env(k, v);
            }
        }
        let child = cmd.spawn().expect("spawn sandboxd");
        let daemon = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            key,
            label,
            state_dir,
            agents_dir,
            _temps: temps,
            log,
            http: reqwest::Client::new(),
        };
        daemon.wait_listening().await;
        if options.wait_healthy {
            daemon.wait_healthy().await;
        }
        daemon
    }

    /// Panics with the daemon's own words when its process has ended: a wait for a
    /// daemon that refused to start fails at once, not at its deadline.
    fn assert_running(&self) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()));
        // The state follows the command's closing parenthesis; `Z`: it exited.
        let exited = stat.map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        });
        assert!(!exited, "the daemon exited; log:\n{}", self.log_text());
    }

    async fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            self.assert_running();
            if self
                .http
                .get(format!("{}/healthz", self.url))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the daemon did not listen within 30 s; log:\n{}",
            self.log_text()
        );
    }

    /// Waits for `/healthz` to answer 200 (the default image is prepared beforehand
    /// by `sandboxd prepare`, so this is quick).
    pub async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            self.assert_running();
            let res = self.http.get(format!("{}/healthz", self.url)).send().await;
            if res.is_ok_and(|r| r.status() == StatusCode::OK) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the daemon did not become healthy; log:\n{}",
            self.log_text()
        );
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request with the API key; returns the status and the JSON body (Null if none).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.url),
            )
            .bearer_auth(&self.key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("request sent");
        let status = res.status();
        let text = res.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// A call to a sandbox's files API: `rest` follows `/v1/sandboxes/:id/files`.
    pub async fn files(
        &self,
        id: &str,
        method: &str,
        rest: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, &format!("/v1/sandboxes/{id}/files{rest}"), body)
            .await
    }

    /// A raw request builder with the API key.
    pub fn request(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(
                method.parse().expect("method"),
                format!("{}{path}", self.url),
            )
            .bearer_auth(&self.key)
    }

    /// A request builder without credentials.
    pub fn anonymous(&self, method: &str, path: &str) -> reqwest::RequestBuilder {
        self.http.request(
            method.parse().expect("method"),
            format!("{}{path}", self.url),
        )
    }

    /// Creates a sandbox of `agent` and asserts it is active; returns its id.
    pub async fn create_sandbox(&self, body: Value) -> String {
        let (status, json) = self.call("POST", "/v1/sandboxes", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        assert_eq!(json["status"], "active", "{json}");
        json["id"].as_str().expect("id").to_owned()
    }

    /// Runs a command; asserts 200 and returns the result.
    pub async fn exec(&self, sandbox: &str, command: &str) -> Value {
        let (status, json) = self
            .call(
                "POST",
                &format!("/v1/sandboxes/{sandbox}/exec"),
                Some(serde_json::json!({ "command": command })),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// Deletes a sandbox; asserts 204.
    pub async fn delete_sandbox(&self, sandbox: &str) {
        let (status, json) = self
            .call("DELETE", &format!("/v1/sandboxes/{sandbox}"), None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{json}");
    }

    /// Containers carrying this daemon's test label.
    pub fn containers(&self) -> Vec<String> {
        containers_labelled(&format!("sandboxd.test={}", self.label))
    }

    /// Asserts that no container of this daemon is left.
    pub fn assert_no_leaks(&self) {
        let left = self.containers();
        assert!(left.is_empty(), "containers left behind: {left:?}");
        let sandboxes = self.state_dir.join("sandboxes");
        let dirs: Vec<_> = std::fs::read_dir(&sandboxes)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
            .unwrap_or_default();
        assert!(dirs.is_empty(), "sandbox directories left behind: {dirs:?}");
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process outright (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever a failed test left behind goes now, so runs stay independent.
        for id in self.containers() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // And the sandboxes' disks still mounted in a state directory it owns (a
        // failed test did not delete its sandboxes), before the directory goes.
        if !self._temps.is_empty() {
            unmount_under(&self.state_dir);
        }
    }
}

/// Unmounts (lazily) every mount below `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_unstable_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount")
            .args(["-l", point])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Ids of containers (running or not) with a label `key=value`.
pub fn containers_labelled(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={label}"),
        ])
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `docker inspect -f FORMAT NAME`, trimmed.
pub fn docker_inspect(name: &str, format: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["inspect", "-f", format, name])
        .output()
        .expect("docker inspect");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Polls `check` every 20 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The Claude Code CLI the tests run (scripts/test exports it; see scripts/lib.sh).
pub fn claude_bin() -> String {
    match std::env::var("SANDBOXD_CLAUDE_BIN") {
        Ok(path) if Path::new(&path).is_file() => path,
        _ => panic!(
            "SANDBOXD_CLAUDE_BIN is not set to the claude binary: run the suite with \
             scripts/test, which installs it"
        ),
    }
}

/// The Codex CLI the tests run (scripts/test exports it; see ensure_codex in
/// scripts/lib.sh).
pub fn codex_bin() -> String {
    match std::env::var("SANDBOXD_CODEX_BIN") {
        Ok(path) if Path::new(&path).is_file() => path,
        _ => panic!(
            "SANDBOXD_CODEX_BIN is not set to the codex binary: run the suite with \
             scripts/test, which installs it"
        ),
    }
}

/// How long a helper process the tests start gets to say it is ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// The first line a just-started process prints on its stdout (its "ready" line),
/// waited for at most 30 s; panics saying `what` did not start otherwise. The process
/// is killed on a timeout so the test does not hang on it.
pub fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(STARTUP_DEADLINE) {
        Ok(Ok(line)) if !line.is_empty() => line,
        Ok(Ok(_)) => panic!("{what} exited before printing its ready line"),
        Ok(Err(e)) => panic!("reading {what}'s ready line: {e}"),
        Err(_) => {
            let _ = child.kill();
            panic!("{what} printed no ready line within {STARTUP_DEADLINE:?}")
        }
    }
}

/// The resident set size of a process, in KiB (0 if unknown).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
