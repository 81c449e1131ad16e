//! The model proxy under attack from inside a sandbox: a connection flood, paths and
//! methods the runtime does not need, another sandbox's token, spending past the
//! budget, and slow, huge request bodies. The upstream is a loopback stub that records
//! every request it gets, so "never forwarded" is checked where it matters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sandboxd_e2e::{eventually, rss_kib, user_message, Daemon, Options, ScriptedModel, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A loopback model upstream: records `METHOD target` of every request and answers each
/// with one non-streamed message whose `usage` is `usage`.
struct Upstream {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    body_bytes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start(usage: Value) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub upstream");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let reply = json!({
            "id": "msg_stub", "type": "message", "role": "assistant",
            "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        })
        .to_string();
        let (s, b) = (seen.clone(), body_bytes.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve_one(stream, s.clone(), b.clone(), reply.clone()));
            }
        });
        Upstream {
            url,
            seen,
            body_bytes,
            task,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request per connection: the head is recorded, the body read and counted (until
/// its length, or the end of the stream), the reply sent, the connection closed.
async fn serve_one(
    mut stream: tokio::net::TcpStream,
    seen: Arc<Mutex<Vec<String>>>,
    body_bytes: Arc<AtomicU64>,
    reply: String,
) {
    let mut head = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let end = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > 1 << 20 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_string();
    let line = text.lines().next().unwrap_or_default();
    let target: Vec<&str> = line.split_whitespace().take(2).collect();
    seen.lock().expect("seen").push(target.join(" "));
    let lower = text.to_ascii_lowercase();
    let length: Option<u64> = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    // Only the tail is kept (for the chunked terminator); the bytes are counted.
    let mut tail = head[end..].to_vec();
    let mut got = tail.len() as u64;
    body_bytes.fetch_add(got, Ordering::Relaxed);
    let complete = |got: u64, tail: &[u8]| match length {
        Some(n) => got >= n,
        None if chunked => tail.ends_with(b"0\r\n\r\n"),
        None => true,
    };
    while !complete(got, &tail) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                got += n as u64;
                body_bytes.fetch_add(n as u64, Ordering::Relaxed);
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 16 {
                    tail.drain(..tail.len() - 16);
                }
            }
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The model proxy's address, as the daemon logs it.
fn proxy_address(d: &Daemon) -> String {
    d.log_text()
        .lines()
        .find_map(|l| l.split("model proxy: http://").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the daemon logs the model proxy's address")
        .to_owned()
}

/// A sandbox's model-proxy token (the CLI inside gets it as ANTHROPIC_API_KEY; any
/// process of the sandbox's user can read it from there during a turn).
fn token_of(d: &Daemon, sandbox: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(d.state_dir.join("state.db"))
        .arg(format!(
            "SELECT model_token FROM sandboxes WHERE id = '{sandbox}'"
        ))
        .output()
        .expect("sqlite3");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        token.starts_with("sbxtok_"),
        "no token for {sandbox}: {out:?}"
    );
    token
}

/// Runs `command` in a sandbox with a timeout; asserts the call itself succeeded.
async fn exec(d: &Daemon, sandbox: &str, command: &str, timeout_ms: u64) -> Value {
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{sandbox}/exec"),
            Some(json!({ "command": command, "timeoutMs": timeout_ms })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

/// One request to the proxy from inside `sandbox` with curl: (HTTP status, body).
async fn curl(
    d: &Daemon,
    sandbox: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let proxy = proxy_address(d);
    let data = body
        .map(|b| format!("-H 'content-type: application/json' --data-binary '{b}'"))
        .unwrap_or_default();
    let out = exec(
        d,
        sandbox,
        &format!(
            "curl -s --path-as-is -m 20 -X {method} -H 'x-api-key: {token}' \
             -H 'anthropic-version: 2023-06-01' {data} -w '\\n%{{http_code}}' \
             'http://{proxy}{path}'"
        ),
        30_000,
    )
    .await;
    let stdout = out["stdout"].as_str().unwrap_or_default();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

const MESSAGE: &str =
    r#"{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;

/// A daemon whose model upstream is `upstream`.
async fn daemon(upstream: &Upstream, extra: &[&str]) -> Daemon {
    let mut options = Options::default();
    options
        .args
        .extend(["--model-upstream".to_owned(), upstream.url.clone()]);
    options.args.extend(extra.iter().map(|s| s.to_string()));
    Daemon::start_with(options).await
}

#[tokio::test]
async fn the_proxy_forwards_only_what_the_runtime_needs() {
    let upstream = Upstream::start(json!({"input_tokens": 10, "output_tokens": 5})).await;
    let d = daemon(&upstream, &[]).await;
    let sb = d.create_sandbox(json!({ "agent": "test" })).await;
    let token = token_of(&d, &sb);
    for (method, path, body) in [
        ("GET", "/v1/files", None),
        ("DELETE", "/v1/files/file_011", None),
        ("POST", "/v1/messages/batches", Some(MESSAGE)),
        ("GET", "/v1/messages/batches", None),
        ("GET", "/v1/organizations/me", None),
        ("GET", "/v1/models", None),
        ("GET", "/v1/messages", None),
        ("DELETE", "/v1/messages", None),
        (
            "POST",
            "/v1/messages/count_tokens/../../files",
            Some(MESSAGE),
        ),
        ("POST", "/v1/%6Dessages", Some(MESSAGE)),
        ("POST", "//v1/messages", Some(MESSAGE)),
        ("POST", "/v1/messages/", Some(MESSAGE)),
    ] {
        let (status, reply) = curl(&d, &sb, &token, method, path, body).await;
        eprintln!("{method} {path}: {status} {reply}");
        assert!(
            status == 403 || status == 404,
            "{method} {path} answered {status}: {reply}"
        );
        assert_eq!(reply["type"], "error", "{method} {path}: {reply}");
        assert_eq!(
            reply["error"]["type"], "permission_error",
            "{method} {path}: {reply}"
        );
    }
    // Beta features that reach beyond the model call (the account's files, servers the
    // upstream connects to) are refused on the allowed route too.
    let proxy = proxy_address(&d);
    for beta in ["files-api-2025-04-14", "mcp-client-2025-04-04"] {
        let out = exec(
            &d,
            &sb,
            &format!(
                "curl -s -m 20 -H 'x-api-key: {token}' -H 'anthropic-beta: claude-code-20250219,{beta}' \
                 -H 'content-type: application/json' --data-binary '{MESSAGE}' \
                 -w '\\n%{{http_code}}' 'http://{proxy}/v1/messages?beta=true'"
            ),
            30_000,
        )
        .await;
        let stdout = out["stdout"].as_str().unwrap_or_default();
        eprintln!("anthropic-beta {beta}: {stdout}");
        assert!(stdout.ends_with("\n403"), "{out}");
        assert!(stdout.contains("permission_error"), "{out}");
    }
    assert_eq!(
        upstream.seen(),
        Vec::<String>::new(),
        "refused calls reached the upstream"
    );

    // What the CLI does call still goes through.
    let (status, reply) = curl(
        &d,
        &sb,
        &token,
        "POST",
        "/v1/messages?beta=true",
        Some(MESSAGE),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = curl(
        &d,
        &sb,
        &token,
        "POST",
        "/v1/messages/count_tokens?beta=true",
        Some(MESSAGE),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        upstream.seen(),
        vec![
            "POST /v1/messages?beta=true".to_owned(),
            "POST /v1/messages/count_tokens?beta=true".to_owned()
        ]
    );
    d.delete_sandbox(&sb).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_token_works_only_from_its_own_sandbox() {
    let upstream = Upstream::start(json!({"input_tokens": 10, "output_tokens": 5})).await;
    let d = daemon(&upstream, &[]).await;
    let owner = d.create_sandbox(json!({ "agent": "test" })).await;
    let other = d.create_sandbox(json!({ "agent": "test" })).await;
    let token = token_of(&d, &owner);

    let (status, reply) = curl(&d, &other, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    eprintln!("the owner's token from another sandbox: {status} {reply}");
    assert!(status == 401 || status == 403, "{status}: {reply}");
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(upstream.seen(), Vec::<String>::new());

    let (status, reply) = curl(&d, &owner, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(upstream.seen().len(), 1);
    for sb in [&owner, &other] {
        d.delete_sandbox(sb).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn non_streamed_replies_are_metered_and_the_budget_is_enforced() {
    // $3 + $15 per million input and output tokens (Sonnet): 100k of each is $1.80.
    let upstream =
        Upstream::start(json!({"input_tokens": 100_000, "output_tokens": 100_000})).await;
    let d = daemon(&upstream, &["--max-sandbox-budget-usd", "1"]).await;
    let sb = d.create_sandbox(json!({ "agent": "test" })).await;
    let token = token_of(&d, &sb);

    let (status, reply) = curl(&d, &sb, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(status, 200, "{reply}");
    let (_, detail) = d.call("GET", &format!("/v1/sandboxes/{sb}"), None).await;
    let usage = &detail["modelUsage"];
    eprintln!("modelUsage after one non-streamed reply: {usage}");
    assert_eq!(usage["requests"], 1, "{detail}");
    assert_eq!(usage["inputTokens"], 100_000, "{detail}");
    assert_eq!(usage["outputTokens"], 100_000, "{detail}");
    let cost = usage["costUsd"].as_f64().unwrap_or_default();
    assert!((cost - 1.8).abs() < 1e-9, "{detail}");

    // Past the cap: refused at the proxy, not forwarded.
    let (status, reply) = curl(&d, &sb, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    eprintln!("past the budget: {status} {reply}");
    assert_eq!(status, 402, "{reply}");
    assert_eq!(reply["error"]["type"], "billing_error", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget")),
        "{reply}"
    );
    assert_eq!(upstream.seen().len(), 1);
    d.delete_sandbox(&sb).await;
    d.assert_no_leaks();
}

/// Open connections (file descriptors) of a process.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A file inside a sandbox's container, read with `docker exec` (the daemon may be the
/// thing under test, so the test does not ask it).
fn read_in_container(sandbox: &str, path: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["exec", &sandbox.replacen("sb_", "sbx-", 1), "cat", path])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test]
async fn a_connection_flood_from_one_sandbox_leaves_the_daemon_serving() {
    let upstream = Upstream::start(json!({"input_tokens": 1, "output_tokens": 1})).await;
    // The fd limit a release build met on this machine: 1,024 (the daemon must raise
    // its soft limit itself).
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("ulimit -Hn");
    let mut options = Options::default();
    options
        .args
        .extend(["--model-upstream".to_owned(), upstream.url.clone()]);
    options.wrapper = vec!["prlimit".into(), "--nofile=1024:".into(), "--".into()];
    let d = Daemon::start_with(options).await;
    eprintln!("fd limit: soft 1024 at start, hard {hard}");
    let attacker = d.create_sandbox(json!({ "agent": "test" })).await;
    let bystander = d.create_sandbox(json!({ "agent": "test" })).await;
    let proxy = proxy_address(&d);
    let fds_before = fds(d.pid());

    // 3,000 idle connections, held 45 s, each connect bounded so a full backlog cannot
    // stall the attack past its own deadline.
    let flood = format!(
        "ulimit -n 20000; perl -MIO::Socket::INET -e '
           my ($host, $port) = split /:/, q({proxy}); my @held; my $t0 = time;
           for (1..3000) {{
             last if time - $t0 > 40;
             my $c = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 2) or next;
             push @held, $c;
           }}
           open(my $f, q(>), q(/tmp/flood.count));
           print $f scalar(@held) . q( in ) . (time - $t0) . q( s); close $f;
           sleep 45; print scalar(@held);'"
    );
    let attack = {
        let (url, key, sb) = (d.url.clone(), d.key.clone(), attacker.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/sandboxes/{sb}/exec"))
                .bearer_auth(key)
                .json(&json!({ "command": flood, "timeoutMs": 120_000 }))
                .timeout(Duration::from_secs(150))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    // The most fds the daemon held while the attacker was connecting.
    let mut opened = String::new();
    let mut held_fds = 0;
    eventually(Duration::from_secs(90), "the flood to be held", || {
        held_fds = held_fds.max(fds(d.pid()));
        opened = read_in_container(&attacker, "/tmp/flood.count").unwrap_or_default();
        let done = !opened.is_empty();
        async move { done }
    })
    .await;
    held_fds = held_fds.max(fds(d.pid()));
    eprintln!(
        "connections opened by the attacker: {opened}; daemon fds: {fds_before} before, \
         at most {held_fds} during the flood"
    );

    let http = reqwest::Client::new();
    let started = Instant::now();
    let health = http
        .get(format!("{}/healthz", d.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status());
    eprintln!(
        "/healthz during the flood: {health:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(health.ok(), Some(StatusCode::OK), "/healthz did not answer");

    let started = Instant::now();
    let out = http
        .post(format!("{}/v1/sandboxes/{bystander}/exec", d.url))
        .bearer_auth(&d.key)
        .json(&json!({ "command": "echo still here" }))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let out: Option<Value> = match out {
        Ok(r) => r.json().await.ok(),
        Err(e) => {
            eprintln!("exec in another sandbox failed: {e}");
            None
        }
    };
    eprintln!(
        "exec in another sandbox during the flood: {:?}",
        started.elapsed()
    );
    assert_eq!(
        out.as_ref().map(|o| o["stdout"].clone()),
        Some(json!("still here\n"))
    );
    assert!(
        held_fds < 1024,
        "the daemon holds {held_fds} fds for one sandbox's connections"
    );

    // The attacker still holds its connections; the daemon closes its side of them
    // once they idle past the header/idle timeout.
    let started = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the idle flood connections to be closed by the daemon",
        || {
            let n = fds(d.pid());
            async move { n <= fds_before + 8 }
        },
    )
    .await;
    eprintln!(
        "daemon fds back to {} ({:?} after the checks) while the attacker still holds its sockets",
        fds(d.pid()),
        started.elapsed()
    );
    assert!(!attack.is_finished(), "the attacker let go first");
    let _ = attack.await;
    for sb in [&attacker, &bystander] {
        d.delete_sandbox(sb).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn slow_huge_bodies_are_streamed_capped_and_timed_out() {
    let upstream = Upstream::start(json!({"input_tokens": 1, "output_tokens": 1})).await;
    let d = daemon(&upstream, &[]).await;
    let sb = d.create_sandbox(json!({ "agent": "test" })).await;
    let token = token_of(&d, &sb);
    let proxy = proxy_address(&d);
    let (host, port) = proxy.split_once(':').expect("host:port");
    let rss_before = rss_kib(d.pid());

    // Eight connections each announce 30 MiB, send 24 MiB at once, then stall; two
    // more then announce as much and send nothing (over the in-flight cap, they are
    // refused before any body is read, so the refusal is not lost to a reset).
    let send = format!(
        r#"exec 3<>/dev/tcp/{host}/{port}
           printf 'POST /v1/messages HTTP/1.1\r\nHost: model\r\nx-api-key: {token}\r\ncontent-type: application/json\r\nContent-Length: 31457280\r\n\r\n' >&3"#
    );
    let script = format!(
        r#"for i in $(seq 8); do (
             {send}
             head -c 25165824 /dev/zero >&3 2>/dev/null
             touch /tmp/sent.$i
             echo "$(timeout 100 head -n 1 <&3 | tr -d '\r')" > /tmp/reply.$i
           ) & done
           for t in $(seq 600); do [ "$(ls /tmp/sent.* | wc -l)" -ge 8 ] && break; sleep 0.1; done
           for i in 9 10; do (
             {send}
             touch /tmp/sent.$i
             echo "$(timeout 100 head -n 1 <&3 | tr -d '\r')" > /tmp/reply.$i
           ) & done; wait; cat /tmp/reply.*"#
    );
    let attack = {
        let (url, key, sb) = (d.url.clone(), d.key.clone(), sb.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/sandboxes/{sb}/exec"))
                .bearer_auth(key)
                .json(&json!({ "command": script, "timeoutMs": 150_000 }))
                .timeout(Duration::from_secs(180))
                .send()
                .await
                .expect("exec")
                .json::<Value>()
                .await
                .expect("exec result")
        })
    };
    eventually(Duration::from_secs(60), "the bodies to be sent", || {
        let sent = std::process::Command::new("docker")
            .args([
                "exec",
                &sb.replacen("sb_", "sbx-", 1),
                "sh",
                "-c",
                "ls /tmp/sent.* 2>/dev/null | wc -l",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "10")
            .unwrap_or(false);
        async move { sent }
    })
    .await;
    let rss_held = rss_kib(d.pid());
    eprintln!(
        "daemon RSS: {rss_before} KiB before, {rss_held} KiB with the bodies held \
         (upstream got {} MiB)",
        upstream.body_bytes.load(Ordering::Relaxed) >> 20
    );
    let started = Instant::now();
    let out = attack.await.expect("attack task");
    eprintln!(
        "replies after {:?} more: {}",
        started.elapsed(),
        out["stdout"]
    );
    assert_eq!(
        out["timedOut"], false,
        "the held bodies were never cut: {out}"
    );
    let replies: Vec<&str> = out["stdout"].as_str().unwrap_or_default().lines().collect();
    assert_eq!(replies.len(), 10, "{out}");
    assert!(
        replies
            .iter()
            .all(|r| r.contains(" 408 ") || r.contains(" 429 ")),
        "every held body is timed out or refused: {replies:?}"
    );
    assert!(
        replies.iter().any(|r| r.contains(" 429 ")),
        "more than 8 requests at once are refused: {replies:?}"
    );
    assert!(
        rss_held < rss_before + 48 * 1024,
        "held bodies grew the daemon from {rss_before} to {rss_held} KiB"
    );
    d.delete_sandbox(&sb).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_running_turns_budget_binds_every_process_of_the_sandbox() {
    // The CLI's first call streams slowly, so the turn is still running while a
    // process of the sandbox spends on the CLI's token (read from its environment).
    let slow = "word ".repeat(60);
    let model = ScriptedModel::start(&json!([
        { "text": slow, "chunkDelayMs": 500 },
        { "text": "spent" },
        { "text": "after the turn" },
    ]));
    let d = Daemon::start_with(
        Options::default()
            .agent("capped", json!({ "maxBudgetUsd": 0.01 }))
            .with_model(&model),
    )
    .await;
    let (status, started) = d
        .call(
            "POST",
            "/v1/chat/capped",
            Some(json!({ "messages": [user_message("go")], "mode": "background" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let sandbox = started["sandboxId"].as_str().expect("sandboxId").to_owned();
    let thread = started["threadId"].as_str().expect("threadId").to_owned();
    eventually(
        Duration::from_secs(60),
        "the CLI's first model call",
        || async { !model.requests().is_empty() },
    )
    .await;
    let token = token_of(&d, &sandbox);
    // ~10k input tokens at Sonnet's $3 per million: $0.03, over the turn's $0.01.
    let big = format!(
        r#"{{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x ".repeat(20_000)
    );
    let (status, reply) = curl(&d, &sandbox, &token, "POST", "/v1/messages", Some(&big)).await;
    assert_eq!(status, 200, "within the budget: {reply}");
    let (status, reply) = curl(&d, &sandbox, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    eprintln!("past the running turn's budget: {status} {reply}");
    assert_eq!(status, 402, "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("maxBudgetUsd")),
        "{reply}"
    );
    assert_eq!(
        model.requests().len(),
        2,
        "the refused call never reached the model"
    );

    // Once the turn is over, its budget no longer binds.
    let (status, _) = d
        .call("DELETE", &format!("/v1/chat/capped/{sandbox}/stream"), None)
        .await;
    assert!(status.is_success(), "{status}");
    d.settled_thread(&sandbox, &thread).await;
    let (status, reply) = curl(&d, &sandbox, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(status, 200, "no turn runs: {reply}");
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

/// Sandboxes that hold every connection they may (32 each, and together the whole
/// shared budget of a daemon with 256 descriptors) leave another sandbox its model
/// calls, and the connections refused meanwhile do not flood the log.
#[tokio::test]
async fn sandboxes_holding_the_whole_proxy_budget_leave_another_its_calls() {
    let upstream = Upstream::start(json!({"input_tokens": 1, "output_tokens": 1})).await;
    let mut options = Options::default();
    options
        .args
        .extend(["--model-upstream".to_owned(), upstream.url.clone()]);
    options.wrapper = vec!["prlimit".into(), "--nofile=256:256".into(), "--".into()];
    let d = Daemon::start_with(options).await;
    assert!(
        d.log_text().contains("at most 64 connections"),
        "the proxy's budget for 256 descriptors is 64:\n{}",
        d.log_text()
    );
    let attackers = [
        d.create_sandbox(json!({ "agent": "test" })).await,
        d.create_sandbox(json!({ "agent": "test" })).await,
    ];
    let bystander = d.create_sandbox(json!({ "agent": "test" })).await;
    let proxy = proxy_address(&d);
    // 100 connections each (32 are kept), held 60 s.
    let hold = format!(
        "perl -MIO::Socket::INET -e '
           my ($host, $port) = split /:/, q({proxy}); my @held;
           for (1..100) {{
             my $c = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Timeout => 2) or next;
             push @held, $c;
           }}
           open(my $f, q(>), q(/tmp/held)); print $f scalar(@held); close $f;
           sleep 60;' >/dev/null 2>&1 &"
    );
    for sb in &attackers {
        let out = exec(&d, sb, &hold, 10_000).await;
        assert_eq!(out["exitCode"], 0, "{out}");
    }
    for sb in &attackers {
        eventually(
            Duration::from_secs(60),
            "the attacker's connections",
            || {
                let done = read_in_container(sb, "/tmp/held").is_some();
                async move { done }
            },
        )
        .await;
    }
    let token = token_of(&d, &bystander);
    let (status, body) = curl(
        &d,
        &bystander,
        &token,
        "POST",
        "/v1/messages",
        Some(MESSAGE),
    )
    .await;
    assert_eq!(status, 200, "the bystander's model call: {body}");
    let refusals = d
        .log_text()
        .lines()
        .filter(|l| l.contains("model proxy") && l.contains("closed") && l.contains("WARN"))
        .count();
    assert!(refusals <= 3, "{refusals} warnings for refused connections");
    for sb in attackers.iter().chain([&bystander]) {
        d.delete_sandbox(sb).await;
    }
    d.assert_no_leaks();
}

/// An agent's `maxSandboxBudgetUsd` binds its sandboxes' tokens from their creation
/// (no turn needed), and across a restart of the daemon: a sandbox over budget stays
/// refused.
#[tokio::test]
async fn an_agents_sandbox_budget_binds_from_creation_and_across_a_restart() {
    // $1.80 a call (100k input and output tokens of Sonnet); the agent allows $1.
    let upstream =
        Upstream::start(json!({"input_tokens": 100_000, "output_tokens": 100_000})).await;
    let mut options = Options::default().agent(
        "capped",
        json!({ "name": "Capped", "maxSandboxBudgetUsd": 1.0 }),
    );
    options
        .args
        .extend(["--model-upstream".to_owned(), upstream.url.clone()]);
    let mut d = Daemon::start_with(options.clone()).await;
    let sb = d.create_sandbox(json!({ "agent": "capped" })).await;
    let token = token_of(&d, &sb);
    let (status, reply) = curl(&d, &sb, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = curl(&d, &sb, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(
        status, 402,
        "over the agent's budget before any turn: {reply}"
    );

    assert!(d.terminate().success(), "{}", d.log_text());
    options.agents = Vec::new();
    options.reuse = Some((d.state_dir.clone(), d.agents_dir.clone()));
    let d = Daemon::start_with(options).await;
    let (status, reply) = curl(&d, &sb, &token, "POST", "/v1/messages", Some(MESSAGE)).await;
    assert_eq!(
        status, 402,
        "over the agent's budget after a restart: {reply}"
    );
    assert_eq!(upstream.seen().len(), 1, "{:?}", upstream.seen());
    d.delete_sandbox(&sb).await;
    d.assert_no_leaks();
}
