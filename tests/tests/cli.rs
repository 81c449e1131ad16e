//! The `sandboxd` CLI's sandbox commands (`ls`, `exec`, `rm`, `shell`) against a real
//! daemon.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sandboxd_e2e::{daemon_bin, Daemon};
use serde_json::json;

fn sandboxd(d: &Daemon, args: &[&str]) -> Output {
    Command::new(daemon_bin("debug"))
        .args(args)
        .env("SANDBOXD_URL", &d.url)
        .env("SANDBOXD_API_KEY", &d.key)
        .output()
        .expect("sandboxd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_cli_lists_runs_in_and_removes_sandboxes() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;

    let out = sandboxd(&d, &["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.starts_with("ID "), "{listing}");
    let line = listing
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} in {listing}"));
    assert!(line.contains("active") && line.contains("test"), "{line}");

    // Arguments reach the command as given (quoted for the shell), output and exit
    // code come back.
    let out = sandboxd(
        &d,
        &[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo \"$0 out\"; echo err >&2; exit 3",
            "two words; $HOME",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "two words; $HOME out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = sandboxd(&d, &["exec", &id, "--cwd", "/tmp", "--", "pwd"]);
    assert_eq!(text(&out.stdout), "/tmp\n");
    assert!(out.status.success());

    let out = sandboxd(&d, &["rm", &id, "sb_nosuchsandboxxxx"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{id}\n"));
    assert!(
        text(&out.stderr).contains("sb_nosuchsandboxxxx"),
        "{}",
        text(&out.stderr)
    );
    let out = sandboxd(&d, &["ls"]);
    assert!(!text(&out.stdout).contains(&id));
    let out = sandboxd(&d, &["exec", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    d.assert_no_leaks();
}

/// How many processes in the sandbox have a command line starting with `prefix`.
fn running(d: &Daemon, id: &str, prefix: &str) -> usize {
    let script = format!(
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done \
         | grep -c '^{prefix}' || true"
    );
    let out = sandboxd(d, &["exec", id, "--", "sh", "-c", &script]);
    text(&out.stdout).trim().parse().expect("a count")
}

/// Waits for a child within `within`, killing it past that (no hang).
fn wait_within(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn exec_streams_and_shell_is_an_interactive_terminal() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;

    // `exec` prints output as it comes: the first line is here while the command
    // still runs (it waits on a file only this test creates).
    let started = Instant::now();
    let mut child = Command::new(daemon_bin("debug"))
        .args(["exec", &id, "--", "sh", "-c"])
        .arg("echo first; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo second; exit 5")
        .env("SANDBOXD_URL", &d.url)
        .env("SANDBOXD_API_KEY", &d.key)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sandboxd runs");
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let first = tokio::task::spawn_blocking(move || {
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
        (line, stdout)
    });
    let (line, mut stdout) = tokio::time::timeout(Duration::from_secs(60), first)
        .await
        .expect("the first line within a minute")
        .expect("joined");
    let first_byte = started.elapsed();
    assert_eq!(line, "first\n");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "exec ended early"
    );
    let out = sandboxd(&d, &["exec", &id, "--", "touch", "/tmp/go"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = wait_within(&mut child, Duration::from_secs(60));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("rest");
    assert_eq!(rest, "second\n");
    assert_eq!(status.code(), Some(5));
    println!(
        "sandboxd exec: first line after {:.0} ms (process start included)",
        first_byte.as_secs_f64() * 1000.0
    );

    // `shell` under a pseudo-terminal (script(1)): typed lines run, the exit code
    // is the shell's.
    let command = format!("{} shell {id}", daemon_bin("debug").display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SANDBOXD_URL", &d.url)
        .env("SANDBOXD_API_KEY", &d.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo $((6*7))\nexit 3\n")
        .expect("typed");
    let status = wait_within(&mut child, Duration::from_secs(60));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("output");
    assert!(out.contains("42"), "{out:?}");
    assert_eq!(status.code(), Some(3), "{out:?}");

    assert_eq!(running(&d, &id, "bash -il"), 0);

    // A shell whose client goes away (its terminal hung up) ends with all it started,
    // even when the client was started with SIGHUP ignored (under `nohup`, as an
    // ignored signal stays ignored across exec): it notices the terminal is gone.
    let mut child = Command::new("env")
        .args([
            "--ignore-signal=HUP",
            "script",
            "-qec",
            &command,
            "/dev/null",
        ])
        .env("SANDBOXD_URL", &d.url)
        .env("SANDBOXD_API_KEY", &d.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"sleep 600 & echo \"st\"\"arted\"\n")
        .expect("typed");
    let mut stdout = child.stdout.take().expect("stdout");
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("started") {
            match std::io::Read::read(&mut stdout, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let seen = tokio::time::timeout(Duration::from_secs(60), seen)
        .await
        .expect("the shell answers within a minute")
        .expect("joined");
    assert!(seen.contains("started"), "{seen:?}");
    assert_eq!(running(&d, &id, "sleep 600"), 1);
    child.kill().expect("hang up");
    let _ = child.wait();
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(&d, &id, "sleep 600") + running(&d, &id, "bash -il") > 0 {
        assert!(Instant::now() < deadline, "the shell outlived its client");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = sandboxd(&d, &["rm", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    d.assert_no_leaks();
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What a terminal socket showed, and its exit once it ended.
struct Term {
    seen: String,
    exit: Option<serde_json::Value>,
}

impl Term {
    /// Reads until the output contains `needle` or the exit message arrives.
    async fn until(&mut self, ws: &mut Socket, needle: &str) {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let wait = async {
            while !self.seen.contains(needle) {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        self.seen.push_str(&String::from_utf8_lossy(&b))
                    }
                    Some(Ok(Message::Text(t))) => {
                        let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                        self.exit = Some(v["exit"]["exitCode"].clone());
                        return;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("the terminal ended: {other:?} after {:?}", self.seen),
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            panic!("no {needle:?} in {:?}", self.seen);
        }
    }
}

#[tokio::test]
async fn the_terminal_route_resizes_signals_and_wants_the_key() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;
    let url = format!(
        "{}/v1/sandboxes/{id}/terminal?cols=80&rows=24",
        d.url.replacen("http://", "ws://", 1)
    );
    // Without the key: refused before any upgrade.
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {:?}", other.map(|_| ())),
    }
    let mut request = url.as_str().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", d.key).parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    let mut term = Term {
        seen: String::new(),
        exit: None,
    };
    let bin = |s: &str| Message::Binary(s.as_bytes().to_vec().into());
    ws.send(bin("stty size; echo \"$TERM\"\n"))
        .await
        .expect("send");
    term.until(&mut ws, "xterm-256color\r\n").await;
    assert!(term.seen.contains("24 80\r\n"), "{:?}", term.seen);
    let resize = json!({"resize": {"cols": 100, "rows": 30}}).to_string();
    ws.send(Message::Text(resize.into())).await.expect("send");
    ws.send(bin("stty size\n")).await.expect("send");
    term.until(&mut ws, "30 100\r\n").await;
    ws.send(Message::Text(json!({"signal": 9}).to_string().into()))
        .await
        .expect("send");
    term.until(&mut ws, "\u{0}never").await;
    assert_eq!(term.exit, Some(json!(137)), "{:?}", term.seen);
    drop(ws);
    let out = sandboxd(&d, &["rm", &id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    d.assert_no_leaks();
}

/// A setting left empty in the environment (`SANDBOXD_CLAUDE_BIN=$UNSET_VAR` in a
/// script) counts as unset: the daemon starts with its defaults instead of refusing
/// the empty value.
#[tokio::test]
async fn empty_settings_in_the_environment_count_as_unset() {
    let d = Daemon::start_with(sandboxd_e2e::Options {
        wrapper: [
            "env",
            "SANDBOXD_CLAUDE_BIN=",
            "SANDBOXD_MAX_SANDBOXES=",
            "SANDBOXD_PAUSE_AFTER_SECS=",
        ]
        .map(String::from)
        .to_vec(),
        ..sandboxd_e2e::Options::default()
    })
    .await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}
