//! `sandboxd chat <agent> "<prompt>"`: one turn streamed to the terminal. Text as it
//! arrives, each tool call on a line of its own, permission requests asked on the
//! terminal (answered from stdin), and the cost at the end.

pub mod admin;
pub mod http;
pub mod sandboxes;
pub mod shell;

use std::io::Write;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::config::ChatArgs;

/// Runs one chat turn against a daemon; returns the process exit code.
pub async fn chat(args: ChatArgs) -> anyhow::Result<i32> {
    let daemon = http::Daemon::new(&args.client)?;
    let mut body = json!({
        "messages": [{
            "id": crate::names::new_id("msg_"),
            "role": "user",
            "parts": [{"type": "text", "text": args.prompt}]
        }]
    });
    if let Some(sandbox) = &args.sandbox {
        body["sandboxId"] = json!(sandbox);
    }
    if let Some(thread) = &args.thread {
        body["threadId"] = json!(thread);
    }
    if let Some(mode) = &args.permission_mode {
        body["options"] = json!({ "permissionMode": mode });
    }
    let request = daemon
        .request(reqwest::Method::POST, &format!("/v1/chat/{}", args.agent))
        .json(&body);
    let response = daemon.send(request).await?;
    if !response.status().is_success() {
        if let Err(message) = http::answer(response).await {
            eprintln!("error: {message}");
        }
        return Ok(1);
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    let (sandbox, thread) = (header("x-sandbox-id"), header("x-thread-id"));

    let mut printer = Printer::default();
    let mut stream = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(bytes) = stream.next().await {
        pending.extend_from_slice(&bytes?);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            if let Some(data) = line.trim_end().strip_prefix("data: ") {
                if let Ok(chunk) = serde_json::from_str::<Value>(data) {
                    printer.chunk(&chunk);
                    if chunk["type"] == "data-permission-request"
                        && chunk["data"]["status"] == "pending"
                    {
                        printer.end_line();
                        let path = format!(
                            "/v1/sandboxes/{sandbox}/threads/{thread}/permissions/{}",
                            chunk["data"]["requestId"].as_str().unwrap_or_default()
                        );
                        let reply = ask(&chunk["data"]).await;
                        let sent = daemon
                            .request(reqwest::Method::POST, &path)
                            .json(&json!({ "reply": reply }))
                            .send()
                            .await;
                        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
                            eprintln!("error: answering the permission request: {e}");
                        }
                    }
                }
            }
        }
    }
    printer.end_line();
    let m = &printer.metadata;
    println!(
        "-- ${:.4} · {} in / {} out tokens · {:.1} s · sandbox {sandbox} · thread {thread}",
        m["totalCostUsd"].as_f64().unwrap_or(0.0),
        m["inputTokens"].as_u64().unwrap_or(0),
        m["outputTokens"].as_u64().unwrap_or(0),
        m["durationMs"].as_f64().unwrap_or(0.0) / 1000.0,
    );
    Ok(if printer.failed { 1 } else { 0 })
}

/// Asks on the terminal whether a tool call may run; reads the answer from stdin.
/// Without an answer (stdin closed) the call is rejected.
async fn ask(request: &Value) -> &'static str {
    let input = request["input"].to_string();
    let shown: String = input.chars().take(200).collect();
    eprint!(
        "? allow {}({shown})? [o]nce, [a]lways, [r]eject: ",
        request["toolName"].as_str().unwrap_or("tool")
    );
    let _ = std::io::stderr().flush();
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await;
    let reply = match line {
        Ok(Ok(line)) => match line.trim().to_ascii_lowercase().as_str() {
            "o" | "once" | "y" | "yes" => "once",
            "a" | "always" => "always",
            _ => "reject",
        },
        _ => "reject",
    };
    eprintln!("  → {reply}");
    reply
}

/// Prints chunks to the terminal.
#[derive(Debug, Default)]
struct Printer {
    mid_line: bool,
    metadata: Value,
    failed: bool,
}

impl Printer {
    fn end_line(&mut self) {
        if std::mem::take(&mut self.mid_line) {
            println!();
        }
    }

    fn chunk(&mut self, chunk: &Value) {
        let mut out = std::io::stdout().lock();
        match chunk["type"].as_str().unwrap_or_default() {
            "text-delta" => {
                let _ = write!(out, "{}", chunk["delta"].as_str().unwrap_or_default());
                let _ = out.flush();
                self.mid_line = true;
            }
            "text-end" => self.end_line(),
            "tool-input-available" => {
                self.end_line();
                let input = chunk["input"].to_string();
                let shown: String = input.chars().take(100).collect();
                let more = if input.chars().count() > 100 {
                    "…"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "⏺ {}({shown}{more})",
                    chunk["toolName"].as_str().unwrap_or("tool")
                );
            }
            "tool-output-error" => {
                let _ = writeln!(out, "  ⎿ error: {}", first_line(&chunk["errorText"]));
            }
            "tool-output-available" => {
                let output = &chunk["output"];
                let text = output["stdout"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        output
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| output.to_string())
                    });
                let _ = writeln!(out, "  ⎿ {}", first_line(&Value::String(text)));
            }
            "message-metadata" => {
                if let (Some(into), Some(from)) = (
                    self.metadata.as_object_mut(),
                    chunk["messageMetadata"].as_object(),
                ) {
                    into.extend(from.clone());
                } else {
                    self.metadata = chunk["messageMetadata"].clone();
                }
            }
            "error" => {
                self.end_line();
                self.failed = true;
                eprintln!(
                    "error: {}",
                    chunk["errorText"].as_str().unwrap_or("unknown")
                );
            }
            "abort" => {
                self.end_line();
                eprintln!("(cancelled)");
            }
            _ => {}
        }
    }
}

fn first_line(v: &Value) -> String {
    let text = v.as_str().unwrap_or_default();
    let first: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(120)
        .collect();
    let lines = text.lines().count();
    if lines > 1 {
        format!("{first} (+{} lines)", lines - 1)
    } else {
        first
    }
}
