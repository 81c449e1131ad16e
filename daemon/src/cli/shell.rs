//! `sandboxd shell <id>`: an interactive shell in a sandbox, in this terminal.
//!
//! It opens the relay API's terminal WebSocket (`GET /v1/sandboxes/:id/terminal`,
//! see `api::terminal`) at the local terminal's size, puts the local terminal in raw
//! mode (restored on every way out), forwards keystrokes and `SIGWINCH` resizes, prints
//! what the remote terminal writes, and exits with the remote shell's exit code.
//! Closing it (or losing the connection) ends the remote shell and all it started.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;

use futures_util::{SinkExt, StreamExt};
use rustix::termios::{self, OptionalActions, Termios};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::http::Daemon;
use crate::config::ShellArgs;

/// Puts a terminal in raw mode until dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal (nothing otherwise).
    fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// The local terminal's size (80x24 when stdout is not a terminal).
fn local_size() -> (u16, u16) {
    termios::tcgetwinsize(std::io::stdout().as_fd())
        .ok()
        .filter(|w| w.ws_col > 0 && w.ws_row > 0)
        .map_or((80, 24), |w| (w.ws_col, w.ws_row))
}

/// `ws://…` for the daemon's `http://…` URL.
fn websocket_url(base: &str) -> String {
    if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    }
}

/// Runs `sandboxd shell`; returns the remote shell's exit code.
pub async fn shell(args: ShellArgs) -> anyhow::Result<i32> {
    let daemon = Daemon::new(&args.client)?;
    let (cols, rows) = local_size();
    let mut url = url::Url::parse(&format!(
        "{}/v1/sandboxes/{}/terminal",
        websocket_url(daemon.url()),
        args.sandbox
    ))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("cols", &cols.to_string())
            .append_pair("rows", &rows.to_string());
        if let Some(cwd) = &args.cwd {
            query.append_pair("cwd", cwd);
        }
    }
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {}", daemon.key()).parse()?);
    let (socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let message = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| body.into_owned());
            eprintln!("error: {}: {message}", response.status());
            return Ok(1);
        }
        Err(e) => anyhow::bail!("cannot reach the daemon at {}: {e}", daemon.url()),
    };
    let raw = RawMode::enter();
    let code = relay(socket).await;
    drop(raw);
    Ok(code.unwrap_or_else(|| {
        eprintln!("\r\nsandboxd: the connection to the shell was lost");
        1
    }))
}

/// The exit code when the terminal hung up before the shell ended (128 + SIGHUP).
const HUNG_UP: i32 = 128 + libc::SIGHUP;

/// Moves bytes between this terminal and the socket; the exit code once it ends.
async fn relay(
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<i32> {
    let (mut tx, mut rx) = socket.split();
    let mut stdin = tokio::io::stdin();
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    // A terminal in raw mode reads at least a byte, so an end of input there is a
    // hang-up (the terminal went away), even when SIGHUP is ignored (under `nohup`):
    // the session ends with it. Piped input may end while the shell goes on.
    let on_terminal = std::io::stdin().is_terminal();
    let mut buf = vec![0u8; 16 * 1024];
    let mut stdin_open = true;
    let mut exit = None;
    loop {
        tokio::select! {
            message = rx.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&bytes);
                    let _ = out.flush();
                }
                Some(Ok(Message::Text(text))) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&text) {
                        if let Some(code) = value["exit"]["exitCode"].as_i64() {
                            exit = Some(code as i32);
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return exit,
                Some(Ok(_)) => {}
            },
            read = stdin.read(&mut buf), if stdin_open => match read {
                Ok(0) | Err(_) if on_terminal => return Some(exit.unwrap_or(HUNG_UP)),
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    if tx.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        return exit;
                    }
                }
            },
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => None } } => {
                let (cols, rows) = local_size();
                let resize = json!({"resize": {"cols": cols, "rows": rows}}).to_string();
                if tx.send(Message::Text(resize.into())).await.is_err() {
                    return exit;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_scheme() {
        assert_eq!(
            websocket_url("http://127.0.0.1:7878"),
            "ws://127.0.0.1:7878"
        );
        assert_eq!(websocket_url("https://box.example"), "wss://box.example");
    }
}
