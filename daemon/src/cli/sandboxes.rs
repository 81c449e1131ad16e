//! `sandboxd ls`, `sandboxd exec <id> -- cmd…` and `sandboxd rm <id>…`: the relay
//! API's sandbox calls from a terminal. `exec` streams the output as the command
//! writes it (`POST /v1/sandboxes/:id/exec/stream`) and exits with its code.

use std::io::Write;

use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::http::{answer, Daemon};
use crate::config::{DaemonArgs, ExecArgs, RmArgs};

/// `sandboxd ls`: one line per sandbox; returns the exit code.
pub async fn ls(client: DaemonArgs) -> anyhow::Result<i32> {
    let daemon = Daemon::new(&client)?;
    let list = match daemon.call(Method::GET, "/v1/sandboxes", None).await? {
        Ok(list) => list,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(1);
        }
    };
    let rows = list["sandboxes"]
        .as_array()
        .or_else(|| list.as_array())
        .cloned()
        .unwrap_or_default();
    println!(
        "{:<20} {:<22} {:<9} {:<16} CREATED",
        "ID", "SANDBOX ID", "STATUS", "AGENT"
    );
    for sb in rows {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        println!(
            "{:<20} {:<22} {:<9} {:<16} {}",
            text(&sb["id"]),
            text(&sb["sandboxId"]),
            text(&sb["status"]),
            text(&sb["agent"]["slug"]),
            text(&sb["createdAt"]),
        );
    }
    Ok(0)
}

/// Quotes one argument for `bash -lc`.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `sandboxd exec`: streams stdout and stderr; returns the command's exit code.
pub async fn exec(args: ExecArgs) -> anyhow::Result<i32> {
    let command = args
        .command
        .iter()
        .map(|a| quote(a))
        .collect::<Vec<_>>()
        .join(" ");
    let mut body = json!({ "command": command });
    if let Some(ms) = args.timeout_ms {
        body["timeoutMs"] = json!(ms);
    }
    if let Some(cwd) = &args.cwd {
        body["cwd"] = json!(cwd);
    }
    let daemon = Daemon::new(&args.client)?;
    let path = format!("/v1/sandboxes/{}/exec/stream", args.sandbox);
    let response = daemon
        .send(daemon.request(Method::POST, &path).json(&body))
        .await?;
    if !response.status().is_success() {
        if let Err(e) = answer(response).await {
            eprintln!("error: {e}");
        }
        return Ok(1);
    }
    let mut body = response.bytes_stream();
    let mut pending = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| anyhow::anyhow!("the output stream broke: {e}"))?;
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(code) = print_event(&event) {
                return Ok(code);
            }
        }
    }
    eprintln!("sandboxd: the output stream ended before the command did");
    Ok(1)
}

/// Prints one streamed event; the exit code once the command ended.
fn print_event(event: &Value) -> Option<i32> {
    let bytes = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    if let Some(out) = event.get("stdout") {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(&bytes(out));
        let _ = stdout.flush();
    } else if let Some(err) = event.get("stderr") {
        let _ = std::io::stderr().write_all(&bytes(err));
    } else if let Some(exit) = event.get("exit") {
        if exit["timedOut"] == json!(true) {
            eprintln!("sandboxd: the command timed out");
        }
        return Some(exit["exitCode"].as_i64().unwrap_or(1) as i32);
    } else {
        let message = event["error"]["message"].as_str().unwrap_or("unknown");
        eprintln!("error: {message}");
        return Some(1);
    }
    None
}

/// `sandboxd rm`: deletes each sandbox; returns 1 if any failed.
pub async fn rm(args: RmArgs) -> anyhow::Result<i32> {
    let daemon = Daemon::new(&args.client)?;
    let mut code = 0;
    for id in &args.sandboxes {
        let path = format!("/v1/sandboxes/{id}");
        match daemon.call(Method::DELETE, &path, None).await? {
            Ok(_) => println!("{id}"),
            Err(e) => {
                eprintln!("error: {id}: {e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_bash() {
        assert_eq!(quote("ls"), "ls");
        assert_eq!(quote("/tmp/a-b.txt"), "/tmp/a-b.txt");
        assert_eq!(quote("two words"), "'two words'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("$HOME"), "'$HOME'");
    }
}
