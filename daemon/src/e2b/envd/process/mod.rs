//! `process.Process`: commands through sandbox-init, one exec connection each.
//!
//! A started process is owned by one task holding its sandbox-init connection (the
//! process group dies with it). The task fans its output out to the streams attached
//! to it (`Start`, and `Connect` re-attaches), each through a small bounded channel:
//! a slow client slows the process down, nothing piles up. Output produced while no
//! stream is attached is dropped, as envd does. A process ends:
//! - by itself, its exit kept [`RETAIN`] for a late `Connect`;
//! - at its `Connect-Timeout-Ms` deadline (sandbox-init kills the group);
//! - by `SendSignal`;
//! - never because its streams went away: as with envd, a process started in the
//!   background lives on when its client disconnects (a server is connected to later),
//!   within the sandbox's [`MAX_PROCESSES`];
//! - with its sandbox (killed or expired): its streams end at once.
//!
//! A process started with `pty` runs on a terminal ([`pty`]): its output is `pty`
//! data, `SendInput` types into it and `Update` resizes it.

mod own;
mod pty;
mod stream;
mod table;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use base64::Engine as _;
use sandbox_init::protocol::ExecRequest;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::connect::{self, Code, RpcError};
use super::{resolve_path, Target};
use crate::agents::check_env_name;
use crate::e2b::{auth, E2bState};
use crate::init_client::InitError;
use crate::sandbox::Sandbox;
use own::own;
use stream::attach;
pub use table::Processes;
use table::{Control, Proc, ProcState, Table};

/// How long an exited process stays known to `Connect` and `List`-free lookups.
const RETAIN: Duration = Duration::from_secs(30);
/// The most processes a sandbox may have running through envd at once.
const MAX_PROCESSES: usize = 256;
/// The most stdin one `SendInput` may carry.
const MAX_INPUT: usize = 1 << 20;
/// How long a stream gets to take a process's last event.
const FINISH_WITHIN: Duration = Duration::from_secs(5);
/// The most streams attached to one process at once.
const MAX_STREAMS: usize = 16;
/// The longest `Connect-Timeout-Ms` honoured (a day).
const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;
/// Keepalive interval bounds, in seconds.
const KEEPALIVE_SECS: (u64, u64) = (1, 600);
/// The longest a stream stays silent: HTTP/1.1 notices a client that left only when
/// it writes, so keepalives go at least this often (the SDKs ignore extra ones).
const PROBE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProcessConfig {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cwd: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartRequest {
    process: ProcessConfig,
    #[serde(default)]
    pty: Option<pty::PtyConfig>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    stdin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct Selector {
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    tag: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProcessRequest {
    #[serde(default)]
    process: Selector,
    #[serde(default)]
    input: Option<Input>,
    #[serde(default)]
    signal: Option<serde_json::Value>,
    /// `Update`'s new terminal size.
    #[serde(default)]
    pty: Option<pty::PtyConfig>,
}

#[derive(Debug, Deserialize)]
struct Input {
    #[serde(default)]
    stdin: Option<String>,
    #[serde(default)]
    pty: Option<String>,
}

/// `POST /process.Process/{method}`.
pub async fn call(
    State(state): State<E2bState>,
    Extension(Target(sandbox)): Extension<Target>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let table = state.processes.table(&sandbox);
    match method.as_str() {
        "Start" => start(table, &headers, &body).await,
        "Connect" => match connect::stream_request::<ProcessRequest>(&headers, &body) {
            Ok(req) => match table.find(&req.process) {
                Ok(proc) => attach(proc, None, &headers),
                Err(e) => connect::stream_error(e),
            },
            Err(e) => connect::stream_error(e),
        },
        "List" => connect::unary_response(list(&table, &headers, &body)),
        "SendInput" | "SendSignal" | "CloseStdin" | "Update" => {
            connect::unary_response(control(&table, &method, &headers, &body).await)
        }
        "StreamInput" => connect::unary_response::<()>(Err(RpcError::new(
            Code::Unimplemented,
            "process.Process/StreamInput is not supported by sandboxd yet (use SendInput)",
        ))),
        _ => connect::unary_response::<()>(Err(RpcError::new(
            Code::Unimplemented,
            "no such method of process.Process",
        ))),
    }
}

fn list(table: &Table, headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, RpcError> {
    let _: serde_json::Value = connect::unary_request(headers, body)?;
    let processes: Vec<_> = table
        .procs()
        .values()
        .filter(|p| p.ended_at().is_none())
        .map(|p| json!({"config": p.config, "pid": p.pid, "tag": p.tag}))
        .collect();
    Ok(json!({ "processes": processes }))
}

async fn control(
    table: &Table,
    method: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, RpcError> {
    let req: ProcessRequest = connect::unary_request(headers, body)?;
    let proc = table.find(&req.process)?;
    let control = match method {
        "SendInput" => {
            let input = req
                .input
                .ok_or_else(|| RpcError::invalid("input is missing"))?;
            let (field, encoded) = match (input.pty, input.stdin) {
                (Some(typed), _) => ("input.pty", typed),
                (None, stdin) => ("input.stdin", stdin.unwrap_or_default()),
            };
            let data = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| RpcError::invalid(format!("{field}: not base64")))?;
            if data.len() > MAX_INPUT {
                return Err(RpcError::invalid(format!(
                    "{field}: at most {MAX_INPUT} bytes per call"
                )));
            }
            if field == "input.pty" {
                pty::has_terminal(&proc)?;
            } else {
                no_stdin(&proc)?;
            }
            Control::Stdin(data)
        }
        "CloseStdin" => {
            no_stdin(&proc)?;
            Control::CloseStdin
        }
        "Update" => {
            pty::has_terminal(&proc)?;
            Control::Resize(pty::size_of(req.pty.as_ref())?)
        }
        _ => Control::Signal(signal(req.signal.as_ref())?),
    };
    if matches!(control, Control::Signal(libc::SIGKILL)) && proc.ended_at().is_none() {
        proc.killed.cancel();
        return Ok(json!({}));
    }
    if proc.ended_at().is_some() {
        return Err(RpcError::new(Code::NotFound, "the process has exited"));
    }
    proc.control
        .send(control)
        .await
        .map_err(|_| RpcError::new(Code::NotFound, "the process has exited"))?;
    Ok(json!({}))
}

/// Refuses input for a process started without stdin (it would be dropped).
fn no_stdin(proc: &Proc) -> Result<(), RpcError> {
    if proc.stdin {
        Ok(())
    } else {
        Err(RpcError::invalid(
            "the process was started without stdin (run it with stdin: true)",
        ))
    }
}

/// SIGKILL or SIGTERM, by enum name or number (the only two envd sends).
fn signal(value: Option<&serde_json::Value>) -> Result<i32, RpcError> {
    match value {
        Some(v) if v == "SIGNAL_SIGKILL" || v == 9 => Ok(libc::SIGKILL),
        Some(v) if v == "SIGNAL_SIGTERM" || v == 15 => Ok(libc::SIGTERM),
        _ => Err(RpcError::invalid(
            "signal: SIGNAL_SIGKILL or SIGNAL_SIGTERM",
        )),
    }
}

async fn start(table: Arc<Table>, headers: &HeaderMap, body: &[u8]) -> Response {
    let prepared = async {
        let mut req: StartRequest = connect::stream_request(headers, body)?;
        let size = match &req.pty {
            Some(config) => {
                pty::default_envs(&mut req.process.envs);
                Some(pty::size_of(Some(config))?)
            }
            None => None,
        };
        let user = auth::rpc_account(headers)?;
        let timeout_ms = connect::timeout_ms(headers)?.map(|ms| ms.min(MAX_TIMEOUT_MS));
        let request = exec_request(&table.sandbox, &req, user, timeout_ms)?;
        let slot = table.reserve()?;
        let init = &table.sandbox.init;
        let (conn, pid) = match size {
            Some(size) => init.spawn_pty(request, size).await,
            None => init.spawn(request).await,
        }
        .map_err(spawn_error)?;
        let (control_tx, control_rx) = mpsc::channel(16);
        let proc = Arc::new(Proc {
            pid,
            tag: req.tag,
            stdin: req.stdin.unwrap_or(false) && size.is_none(),
            pty: size.is_some(),
            config: req.process,
            control: control_tx,
            killed: tokio_util::sync::CancellationToken::new(),
            state: Mutex::new(ProcState::default()),
        });
        let rx = proc
            .subscribe()
            .map_err(|_| RpcError::new(Code::Internal, "ended at once"))?;
        table.procs().insert(pid, proc.clone());
        tokio::spawn(own(
            proc.clone(),
            table.sandbox.clone(),
            conn,
            control_rx,
            slot,
        ));
        Ok((proc, rx))
    };
    match prepared.await {
        Ok((proc, rx)) => attach(proc, Some(rx), headers),
        Err(e) => connect::stream_error(e),
    }
}

fn spawn_error(e: InitError) -> RpcError {
    match e {
        // A missing program, user or working directory.
        InitError::Remote { kind, message } => {
            let code = match kind {
                sandbox_init::protocol::ErrorKind::NotFound => Code::NotFound,
                sandbox_init::protocol::ErrorKind::PermissionDenied => Code::PermissionDenied,
                _ => Code::InvalidArgument,
            };
            RpcError::new(code, message)
        }
        other => other.into(),
    }
}

fn exec_request(
    sandbox: &Sandbox,
    req: &StartRequest,
    user: &str,
    timeout_ms: Option<u64>,
) -> Result<ExecRequest, RpcError> {
    let config = &req.process;
    if config.cmd.is_empty() {
        return Err(RpcError::invalid("process.cmd is empty"));
    }
    for key in config.envs.keys() {
        check_env_name(key).map_err(|e| RpcError::invalid(format!("process.envs: {e}")))?;
    }
    let cwd = match &config.cwd {
        Some(cwd) if !cwd.is_empty() => resolve_path(cwd, user)?,
        _ => sandbox.cwd.clone(),
    };
    let mut argv = vec![config.cmd.clone()];
    argv.extend(config.args.iter().cloned());
    Ok(ExecRequest {
        argv,
        env: config.envs.clone().into_iter().collect(),
        cwd: Some(cwd),
        user: user.to_owned(),
        timeout_ms,
        stdin: req.stdin.unwrap_or(false),
        output_limit: None,
    })
}
