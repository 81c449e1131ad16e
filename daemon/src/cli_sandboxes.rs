//! `sandboxd ls`, `sandboxd exec <id> -- cmd…` and `sandboxd rm <id>…`: the relay
//! API's sandbox calls from a terminal. `exec` prints the output once the command
//! ends (collected, not yet streamed).

use serde_json::{json, Value};

use crate::config::{DaemonArgs, ExecArgs, RmArgs};

/// One call to the daemon: the JSON answer, or an error line naming the status.
async fn call(
    client: &DaemonArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<Value, String>> {
    let key = client.api_key()?;
    let url = format!("{}{path}", client.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the daemon at {}: {e}", client.url))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(Ok(value))
    } else {
        let message = value["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or(text);
        Ok(Err(format!("{status}: {message}")))
    }
}

/// `sandboxd ls`: one line per sandbox; returns the exit code.
pub async fn ls(client: DaemonArgs) -> anyhow::Result<i32> {
    let list = match call(&client, reqwest::Method::GET, "/v1/sandboxes", None).await? {
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

/// `sandboxd exec`: prints stdout and stderr; returns the command's exit code.
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
    let path = format!("/v1/sandboxes/{}/exec", args.sandbox);
    match call(&args.client, reqwest::Method::POST, &path, Some(body)).await? {
        Ok(result) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(result["stdout"].as_str().unwrap_or("").as_bytes());
            let _ = std::io::stderr().write_all(result["stderr"].as_str().unwrap_or("").as_bytes());
            if result["timedOut"] == json!(true) {
                eprintln!("sandboxd: the command timed out");
            }
            Ok(result["exitCode"].as_i64().unwrap_or(1) as i32)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

/// `sandboxd rm`: deletes each sandbox; returns 1 if any failed.
pub async fn rm(args: RmArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for id in &args.sandboxes {
        let path = format!("/v1/sandboxes/{id}");
        match call(&args.client, reqwest::Method::DELETE, &path, None).await? {
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
