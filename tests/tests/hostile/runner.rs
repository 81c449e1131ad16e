//! The runner reads the Claude Code CLI's stdout, which a process in the sandbox can
//! write (it runs as the same uid as the CLI and can write into its memory): one
//! giant line, a flood of text deltas, or a stream without end must cost the daemon
//! time and storage linear in what it keeps, bounded per turn, and leave cancel prompt.
//!
//! Most attacks replace the `claude` binary with a shell script that prints the hostile
//! stream (what a process writing to the CLI's stdout achieves); the cancel test runs
//! the real CLI against a scripted model that floods it with text.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sandboxd_e2e::{
    chunk_types, sse_chunks, text_of, user_message, Daemon, Options, ScriptedModel, StatusCode,
};
use serde_json::{json, Value};

/// A fake `claude`: a shell script, mounted where the CLI would be.
struct FakeCli {
    dir: tempfile::TempDir,
}

impl FakeCli {
    /// A script whose body (after `#!/bin/sh`) is `body`.
    fn new(body: &str) -> FakeCli {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("sandboxd-fake-cli-")
            .tempdir()
            .expect("dir");
        let path = dir.path().join("claude");
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // Docker must be able to bind-mount it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod dir");
        FakeCli { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("claude")
    }

    fn options(&self) -> Options {
        let mut options = Options::default();
        options
            .args
            .extend(["--claude-bin".to_owned(), self.path().display().to_string()]);
        options
    }
}

/// `printf` lines of the script printing each JSON line.
fn print(lines: &[Value]) -> String {
    lines
        .iter()
        .map(|l| format!("printf '%s\\n' '{l}'\n"))
        .collect()
}

fn init() -> Value {
    json!({"type": "system", "subtype": "init", "session_id": "s-fake", "parent_tool_use_id": null})
}

fn event(event: Value) -> Value {
    json!({"type": "stream_event", "event": event, "session_id": "s-fake", "parent_tool_use_id": null})
}

fn text_block_start() -> Vec<Value> {
    vec![
        event(json!({"type": "message_start", "message": {"id": "msg_fake"}})),
        event(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ]
}

fn text_delta(text: &str) -> Value {
    event(
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
    )
}

fn text_block_end() -> Vec<Value> {
    vec![
        event(json!({"type": "content_block_stop", "index": 0})),
        event(json!({"type": "message_stop"})),
    ]
}

fn result() -> Value {
    json!({"type": "result", "subtype": "success", "is_error": false, "duration_ms": 5,
           "result": "done", "session_id": "s-fake", "total_cost_usd": 0,
           "usage": {"input_tokens": 1, "output_tokens": 1}})
}

/// The script's ending: like the CLI, it exits when its stdin closes.
const WAIT_STDIN: &str = "exec cat >/dev/null\n";

/// CPU time (user + system) the daemon has used so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which ends with the last ')').
    let fields: Vec<&str> = stat[stat.rfind(')').expect("comm") + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // Linux reports these in USER_HZ, 100 per second on every architecture we run on.
    Duration::from_millis(ticks * 10)
}

/// The state database's size on disk, with its write-ahead log.
fn db_bytes(d: &Daemon) -> u64 {
    ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.state_dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Every event of a thread, checked to be numbered 1, 2, … without gaps.
async fn events(d: &Daemon, sandbox: &str, thread: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = d
            .call(
                "GET",
                &format!(
                    "/v1/sandboxes/{sandbox}/threads/{thread}/events?offset={offset}&limit=1000"
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let rows = page["events"].as_array().expect("events").clone();
        for row in &rows {
            assert_eq!(row["seq"], all.len() as u64 + 1, "a gap before {row}");
            all.push(row.clone());
        }
        if page["hasMore"] != true {
            return all;
        }
        offset = page["nextOffset"].as_u64().expect("nextOffset");
    }
}

/// Starts a chat turn in a new sandbox; returns (sandbox, thread, response).
async fn start_turn(d: &Daemon, text: &str) -> (String, String, reqwest::Response) {
    let res = d
        .request("POST", "/v1/chat/test")
        .json(&json!({ "messages": [user_message(text)] }))
        .send()
        .await
        .expect("chat");
    assert_eq!(res.status(), StatusCode::OK);
    let (sandbox, thread) = sandboxd_e2e::chat_ids(&res);
    (sandbox, thread, res)
}

/// The whole SSE body of a chat response, read within `within`.
async fn body(res: reqwest::Response, within: Duration) -> Vec<Value> {
    let text = tokio::time::timeout(within, res.text())
        .await
        .unwrap_or_else(|_| panic!("the stream did not end within {within:?}"))
        .expect("body");
    sse_chunks(&text)
}

/// Waits (at most `within`) for the thread to stop streaming.
async fn settled(d: &Daemon, sandbox: &str, thread: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let t = d.thread(sandbox, thread).await;
        if t["status"] != "streaming" {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "the turn was still streaming after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assistant_text(thread: &Value) -> String {
    thread["messages"][1]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn a_giant_line_is_skipped_without_buffering_it() {
    const GIANT: usize = 64 << 20;
    let mut script = print(&[init()]);
    script.push_str(&format!(
        "head -c {GIANT} /dev/zero | tr '\\0' a\nprintf '\\n'\n"
    ));
    // A line well under the length limit, of two million tiny values (each of which
    // would take 32 bytes or more, parsed).
    script.push_str("printf '['; yes '0,' | head -n 2000000 | tr -d '\\n'; printf '0]\\n'\n");
    let mut after = text_block_start();
    after.push(text_delta("after the giant line"));
    after.extend(text_block_end());
    after.push(result());
    script.push_str(&print(&after));
    script.push_str(WAIT_STDIN);
    let cli = FakeCli::new(&script);
    let d = Daemon::start_with(cli.options()).await;
    let before = cpu(d.pid());
    let started = Instant::now();
    let (sandbox, thread, res) = start_turn(&d, "hi").await;
    let chunks = body(res, Duration::from_secs(300)).await;
    let t = settled(&d, &sandbox, &thread, Duration::from_secs(60)).await;
    eprintln!(
        "a {} MiB line: turn {:?}, daemon CPU {:?}, daemon RSS {} MiB",
        GIANT >> 20,
        started.elapsed(),
        cpu(d.pid()) - before,
        sandboxd_e2e::rss_kib(d.pid()) >> 10
    );
    // The turn went on past the line, and the client was told what was dropped.
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(text_of(&chunks), "after the giant line");
    assert_eq!(assistant_text(&t), "after the giant line");
    let notices: Vec<&Value> = chunks
        .iter()
        .filter(|c| c["type"] == "data-notice")
        .collect();
    assert_eq!(notices.len(), 1, "{:?}", chunk_types(&chunks));
    let message = notices[0]["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("MiB"), "{message}");
    assert!(
        t["messages"][1]["parts"]
            .to_string()
            .contains("data-notice"),
        "{t}"
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_delta_flood_is_stored_coalesced_and_streamed_whole() {
    const DELTA: &str = "flood text 0123456789 ";
    const DELTAS: usize = 110_000;
    let mut script = print(&[init()]);
    script.push_str(&print(&text_block_start()));
    script.push_str(&format!("yes '{}' | head -n {DELTAS}\n", text_delta(DELTA)));
    let mut end = text_block_end();
    end.push(result());
    script.push_str(&print(&end));
    script.push_str(WAIT_STDIN);
    let output_bytes = DELTAS * (text_delta(DELTA).to_string().len() + 1);
    let cli = FakeCli::new(&script);
    let d = Daemon::start_with(cli.options()).await;
    let db_before = db_bytes(&d);
    let before = cpu(d.pid());
    let started = Instant::now();
    let (sandbox, thread, res) = start_turn(&d, "flood").await;
    let chunks = body(res, Duration::from_secs(600)).await;
    let t = settled(&d, &sandbox, &thread, Duration::from_secs(60)).await;
    let took = started.elapsed();
    let spent = cpu(d.pid()) - before;
    let events = events(&d, &sandbox, &thread).await;
    eprintln!(
        "a flood of {DELTAS} deltas ({} MB of CLI output): turn {took:?}, daemon CPU {spent:?}, \
         database +{} MB, {} events, {} chunks streamed",
        output_bytes / 1_000_000,
        db_bytes(&d).saturating_sub(db_before) / 1_000_000,
        events.len(),
        chunks.len()
    );
    let expected = DELTA.repeat(DELTAS);
    assert_eq!(t["status"], "completed", "{}", t["error"]);
    // Clients got every delta; the stored message and the event log hold all of it.
    assert!(text_of(&chunks) == expected, "the streamed text differs");
    assert!(assistant_text(&t) == expected, "the stored text differs");
    let logged: String = events
        .iter()
        .filter(|e| e["payload"]["sessionUpdate"] == "agent_message_chunk")
        .filter_map(|e| e["payload"]["content"]["text"].as_str())
        .collect();
    assert!(logged == expected, "the event log's text differs");
    // Storage grows with time, not with the number of deltas.
    assert!(
        events.len() < DELTAS / 100,
        "{} events for {DELTAS} deltas",
        events.len()
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn an_endless_stream_ends_the_turn_at_its_output_limit() {
    // Deltas of 4 KiB, without end: the CLI never finishes on its own.
    let delta = "x".repeat(4096);
    let mut script = print(&[init()]);
    script.push_str(&print(&text_block_start()));
    script.push_str(&print(&[text_delta("the start ")]));
    script.push_str(&format!("exec yes '{}'\n", text_delta(&delta)));
    let cli = FakeCli::new(&script);
    let d = Daemon::start_with(cli.options()).await;
    let before = cpu(d.pid());
    let started = Instant::now();
    let (sandbox, thread, res) = start_turn(&d, "never stop").await;
    let mut stream = res.bytes_stream();
    let mut body = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(300), async {
        while let Some(bytes) = stream.next().await {
            body.extend_from_slice(&bytes.expect("bytes"));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end within 300 s");
    let t = settled(&d, &sandbox, &thread, Duration::from_secs(60)).await;
    let text = assistant_text(&t);
    eprintln!(
        "an endless stream: ended after {:?}, daemon CPU {:?}, {} MiB kept, daemon RSS {} MiB",
        started.elapsed(),
        cpu(d.pid()) - before,
        text.len() >> 20,
        sandboxd_e2e::rss_kib(d.pid()) >> 10
    );
    assert_eq!(t["status"], "error", "{t}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(error.contains("output limit"), "{error}");
    let chunks = sse_chunks(&String::from_utf8_lossy(&body));
    let types = chunk_types(&chunks);
    assert_eq!(
        &types[types.len() - 3..],
        ["error", "finish", "[DONE]"],
        "{:?}",
        &types[types.len().saturating_sub(6)..]
    );
    assert!(
        text.starts_with("the start xxxx"),
        "{}",
        &text[..40.min(text.len())]
    );
    assert!(text.len() <= 64 << 20, "{} bytes kept", text.len());
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn cancel_is_prompt_during_a_flood_from_the_real_cli() {
    // About 4 MB of text, streamed by the model as fast as the CLI takes it.
    let text = "flood ".repeat(700_000);
    let model = ScriptedModel::start(&json!([{ "text": text }]));
    let d = Daemon::start_with(Options::default().with_model(&model)).await;
    let before = cpu(d.pid());
    let (sandbox, thread, res) = start_turn(&d, "flood me").await;
    let mut stream = res.bytes_stream();
    let mut body = Vec::new();
    let mut received = 0usize;
    // Cancel once the flood is well under way.
    while received < 256 << 10 {
        let bytes = stream.next().await.expect("more").expect("bytes");
        received += bytes.len();
        body.extend_from_slice(&bytes);
    }
    let asked = Instant::now();
    let (status, cancelled) = d
        .call("DELETE", &format!("/v1/chat/test/{sandbox}/stream"), None)
        .await;
    let answered = asked.elapsed();
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    while let Some(bytes) = stream.next().await {
        body.extend_from_slice(&bytes.expect("bytes"));
    }
    let t = settled(&d, &sandbox, &thread, Duration::from_secs(120)).await;
    eprintln!(
        "cancel during a flood: DELETE answered in {answered:?} ({}), settled after {:?}, \
         daemon CPU {:?}, {} KiB of text kept",
        cancelled["status"],
        asked.elapsed(),
        cpu(d.pid()) - before,
        assistant_text(&t).len() >> 10
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(t["status"], "cancelled", "{t}");
    let chunks = sse_chunks(&String::from_utf8_lossy(&body));
    let types = chunk_types(&chunks);
    assert_eq!(&types[types.len() - 3..], ["abort", "finish", "[DONE]"]);
    let kept = assistant_text(&t);
    assert!(
        kept.starts_with("flood flood") && kept.len() < text.len(),
        "{} bytes kept",
        kept.len()
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_thread_keeps_its_newest_history_within_its_bound() {
    // Each turn, the CLI (or a process writing to its stdout) says 3 MB; ten turns on
    // one thread would keep 60 MB of messages and events, and hold the messages in
    // the daemon's memory, without the bound.
    const TURN_TEXT: usize = 3_000_000;
    const TURNS: usize = 10;
    const LIMIT_MB: u64 = 8;
    let mut script = print(&[init()]);
    script.push_str(&print(&text_block_start()));
    let delta = text_delta("@").to_string();
    let (head, tail) = delta.split_once('@').expect("placeholder");
    script.push_str(&format!(
        "printf '%s' '{head}'\nhead -c {TURN_TEXT} /dev/zero | tr '\\0' x\nprintf '%s\\n' '{tail}'\n"
    ));
    let mut end = text_block_end();
    end.push(result());
    script.push_str(&print(&end));
    script.push_str(WAIT_STDIN);
    let cli = FakeCli::new(&script);
    let mut options = cli.options();
    options
        .args
        .extend(["--thread-history-mb".to_owned(), LIMIT_MB.to_string()]);
    let d = Daemon::start_with(options).await;
    let db_before = db_bytes(&d);
    let (sandbox, thread, res) = start_turn(&d, "turn 0").await;
    body(res, Duration::from_secs(120)).await;
    for turn in 1..TURNS {
        settled(&d, &sandbox, &thread, Duration::from_secs(60)).await;
        let (status, _, chunks) = d
            .chat(
                "test",
                json!({ "sandboxId": sandbox, "threadId": thread,
                        "messages": [user_message(&format!("turn {turn}"))] }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{:?}", chunk_types(&chunks));
        assert_eq!(
            text_of(&chunks).len(),
            TURN_TEXT,
            "turn {turn} streamed whole"
        );
    }
    let t = settled(&d, &sandbox, &thread, Duration::from_secs(60)).await;
    let grown = db_bytes(&d).saturating_sub(db_before);
    let messages = t["messages"].as_array().expect("messages");
    let kept: usize = messages.iter().map(|m| m.to_string().len()).sum();
    eprintln!(
        "{TURNS} turns of {TURN_TEXT} bytes under a {LIMIT_MB} MiB bound: {} messages kept \
         ({kept} bytes), {} dropped, {} events dropped, database +{} MB, daemon RSS {} MiB",
        messages.len(),
        t["droppedMessages"],
        t["droppedEvents"],
        grown / 1_000_000,
        sandboxd_e2e::rss_kib(d.pid()) >> 10
    );
    assert_eq!(t["status"], "completed", "{}", t["error"]);
    // The newest turn is kept whole; the oldest went, and the thread says how many.
    let last = messages.last().expect("a message");
    assert_eq!(last["role"], "assistant");
    let text: String = last["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect();
    assert_eq!(text.len(), TURN_TEXT);
    assert!(
        kept as u64 <= LIMIT_MB << 20,
        "{kept} bytes of messages kept"
    );
    let dropped = t["droppedMessages"].as_u64().expect("droppedMessages");
    assert_eq!(dropped as usize + messages.len(), 2 * TURNS, "{t:.300}");
    // The event log starts after what went, numbered on.
    let dropped_events = t["droppedEvents"].as_u64().expect("droppedEvents");
    assert!(dropped_events > 0, "no event was dropped");
    let (status, page) = d
        .call(
            "GET",
            &format!("/v1/sandboxes/{sandbox}/threads/{thread}/events?limit=1"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["events"][0]["seq"], dropped_events + 1, "{page}");
    // Storage holds the bound (messages and events, each), not the whole history.
    assert!(
        grown < 4 * (LIMIT_MB << 20),
        "the database grew by {grown} bytes"
    );
    d.delete_sandbox(&sandbox).await;
    d.assert_no_leaks();
}
