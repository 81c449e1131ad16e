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
//! - [`DETACH_GRACE`] after its last stream went away (a client that disconnects
//!   leaves nothing behind; envd would keep it until its deadline);
//! - with its sandbox (killed or expired): its streams end at once.

mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Extension;
use base64::Engine as _;
use sandbox_init::protocol::{ExecRequest, ExitInfo, Frame, Reply, Request};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use super::connect::{self, Code, RpcError};
use super::{resolve_path, Target};
use crate::agents::check_env_name;
use crate::e2b::{auth, E2bState};
use crate::init_client::InitError;
use crate::sandbox::Sandbox;
use stream::attach;

/// How long an exited process stays known to `Connect` and `List`-free lookups.
const RETAIN: Duration = Duration::from_secs(30);
/// How long a running process outlives its last attached stream.
pub const DETACH_GRACE: Duration = Duration::from_secs(10);
/// The most processes (running or retained) a sandbox may have through envd.
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

/// The processes of every sandbox.
#[derive(Debug, Default)]
pub struct Processes {
    by_sandbox: Mutex<HashMap<String, Arc<Table>>>,
}

#[derive(Debug)]
struct Table {
    sandbox: Arc<Sandbox>,
    procs: Mutex<BTreeMap<u32, Arc<Proc>>>,
}

impl Processes {
    fn table(&self, sandbox: &Arc<Sandbox>) -> Arc<Table> {
        let mut map = self.by_sandbox.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| !t.sandbox.deleted.is_cancelled());
        map.entry(sandbox.id.clone())
            .or_insert_with(|| {
                Arc::new(Table {
                    sandbox: sandbox.clone(),
                    procs: Mutex::new(BTreeMap::new()),
                })
            })
            .clone()
    }
}

impl Table {
    fn procs(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Arc<Proc>>> {
        let mut procs = self.procs.lock().unwrap_or_else(|p| p.into_inner());
        procs.retain(|_, p| p.ended_at().is_none_or(|t| t.elapsed() < RETAIN));
        procs
    }

    fn find(&self, selector: &Selector) -> Result<Arc<Proc>, RpcError> {
        let procs = self.procs();
        let found = match (selector.pid, &selector.tag) {
            (Some(pid), _) => procs.get(&pid).cloned(),
            (None, Some(tag)) => procs
                .values()
                .find(|p| p.tag.as_deref() == Some(tag.as_str()))
                .cloned(),
            (None, None) => return Err(RpcError::invalid("process: give a pid or a tag")),
        };
        found.ok_or_else(|| RpcError::new(Code::NotFound, "process not found"))
    }
}

/// What a process sends its streams.
#[derive(Debug, Clone)]
enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// It ended (`EndEvent` JSON).
    End(serde_json::Value),
    /// Its stream fails (deadline, sandbox gone, protocol).
    Failed(RpcError),
}

/// What a client asks of a running process.
#[derive(Debug)]
enum Control {
    Stdin(Vec<u8>),
    CloseStdin,
    Signal(i32),
}

#[derive(Debug)]
struct Proc {
    pid: u32,
    tag: Option<String>,
    config: ProcessConfig,
    /// Started with stdin open.
    stdin: bool,
    control: mpsc::Sender<Control>,
    /// Cancelled by a SIGKILL: the owner drops the connection (killing the group)
    /// even while it waits on a slow stream.
    killed: tokio_util::sync::CancellationToken,
    state: Mutex<ProcState>,
}

#[derive(Debug, Default)]
struct ProcState {
    subscribers: Vec<mpsc::Sender<Event>>,
    /// The last event (end or failure), once it ended.
    outcome: Option<(Event, Instant)>,
    /// Since when no stream is attached.
    detached_at: Option<Instant>,
}

impl Proc {
    fn lock(&self) -> std::sync::MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ended_at(&self) -> Option<Instant> {
        self.lock().outcome.as_ref().map(|(_, at)| *at)
    }

    /// Attaches a stream; the outcome instead when it has ended.
    fn subscribe(&self) -> Result<mpsc::Receiver<Event>, Event> {
        let mut state = self.lock();
        if let Some((outcome, _)) = &state.outcome {
            return Err(outcome.clone());
        }
        state.subscribers.retain(|tx| !tx.is_closed());
        if state.subscribers.len() >= MAX_STREAMS {
            return Err(Event::Failed(RpcError::new(
                Code::ResourceExhausted,
                format!("at most {MAX_STREAMS} streams per process"),
            )));
        }
        let (tx, rx) = mpsc::channel(16);
        state.subscribers.push(tx);
        state.detached_at = None;
        Ok(rx)
    }

    /// Sends output to every attached stream, waiting for slow ones (unless the
    /// sandbox goes away or the process is killed meanwhile).
    async fn publish(&self, event: Event, sandbox: &Sandbox) {
        let subscribers = self.lock().subscribers.clone();
        for tx in subscribers {
            tokio::select! {
                _ = tx.send(event.clone()) => {}
                () = sandbox.deleted.cancelled() => return,
                () = self.killed.cancelled() => return,
            }
        }
    }

    /// Records the outcome and tells every stream (a stream too slow to take it
    /// within [`FINISH_WITHIN`] is dropped: its client sees the stream break).
    async fn finish(&self, event: Event) {
        let subscribers = {
            let mut state = self.lock();
            state.outcome = Some((event.clone(), Instant::now()));
            std::mem::take(&mut state.subscribers)
        };
        for tx in subscribers {
            let _ = tx.send_timeout(event.clone(), FINISH_WITHIN).await;
        }
    }

    /// Whether no stream has been attached for longer than [`DETACH_GRACE`].
    fn abandoned(&self) -> bool {
        let mut state = self.lock();
        state.subscribers.retain(|tx| !tx.is_closed());
        if !state.subscribers.is_empty() {
            state.detached_at = None;
            return false;
        }
        let since = *state.detached_at.get_or_insert_with(Instant::now);
        since.elapsed() >= DETACH_GRACE
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessConfig {
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
    pty: Option<serde_json::Value>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    stdin: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
struct Selector {
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
        "SendInput" | "SendSignal" | "CloseStdin" => {
            connect::unary_response(control(&table, &method, &headers, &body).await)
        }
        "Update" | "StreamInput" => connect::unary_response::<()>(Err(RpcError::new(
            Code::Unimplemented,
            format!(
                "process.Process/{method} (PTY, input streams) is not supported by sandboxd yet"
            ),
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
            if input.pty.is_some() {
                return Err(RpcError::new(Code::Unimplemented, "PTY input: no PTY here"));
            }
            let data = base64::engine::general_purpose::STANDARD
                .decode(input.stdin.unwrap_or_default())
                .map_err(|_| RpcError::invalid("input.stdin: not base64"))?;
            if data.len() > MAX_INPUT {
                return Err(RpcError::invalid(format!(
                    "input.stdin: at most {MAX_INPUT} bytes per call"
                )));
            }
            no_stdin(&proc)?;
            Control::Stdin(data)
        }
        "CloseStdin" => {
            no_stdin(&proc)?;
            Control::CloseStdin
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
        let req: StartRequest = connect::stream_request(headers, body)?;
        if req.pty.is_some() {
            return Err(RpcError::new(
                Code::Unimplemented,
                "PTY sessions are not supported by sandboxd yet",
            ));
        }
        let user = auth::rpc_user(headers).map_err(RpcError::invalid)?;
        let timeout_ms = connect::timeout_ms(headers)?.map(|ms| ms.min(MAX_TIMEOUT_MS));
        let request = exec_request(&table.sandbox, &req, user, timeout_ms)?;
        if table
            .procs()
            .values()
            .filter(|p| p.ended_at().is_none())
            .count()
            >= MAX_PROCESSES
        {
            return Err(RpcError::new(
                Code::ResourceExhausted,
                format!("at most {MAX_PROCESSES} processes per sandbox"),
            ));
        }
        let (conn, pid) = table
            .sandbox
            .init
            .spawn(request)
            .await
            .map_err(spawn_error)?;
        let (control_tx, control_rx) = mpsc::channel(16);
        let proc = Arc::new(Proc {
            pid,
            tag: req.tag,
            stdin: req.stdin.unwrap_or(false),
            config: req.process,
            control: control_tx,
            killed: tokio_util::sync::CancellationToken::new(),
            state: Mutex::new(ProcState::default()),
        });
        let rx = proc
            .subscribe()
            .map_err(|_| RpcError::new(Code::Internal, "ended at once"))?;
        table.procs().insert(pid, proc.clone());
        tokio::spawn(own(proc.clone(), table.sandbox.clone(), conn, control_rx));
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

/// The task owning a process's connection (see the module).
async fn own(
    proc: Arc<Proc>,
    sandbox: Arc<Sandbox>,
    conn: crate::init_client::Conn,
    mut control: mpsc::Receiver<Control>,
) {
    // A running process keeps its sandbox from being paused.
    let _awake = sandbox.hold();
    let (mut reader, mut writer) = conn.split();
    // Reading a frame is not cancel-safe: one task reads, this one selects.
    let (frames_tx, mut frames) = mpsc::channel(4);
    let read = tokio::spawn(async move {
        loop {
            let frame = reader.recv().await;
            let last = !matches!(frame, Ok(Some(Frame::Stdout(_) | Frame::Stderr(_))));
            if frames_tx.send(frame).await.is_err() || last {
                return;
            }
        }
    });
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let outcome = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(Ok(Some(Frame::Stdout(b)))) => proc.publish(Event::Stdout(b), &sandbox).await,
                Some(Ok(Some(Frame::Stderr(b)))) => proc.publish(Event::Stderr(b), &sandbox).await,
                Some(Ok(Some(Frame::Message(Reply::Exited(exit))))) => break exit_event(&exit),
                Some(Ok(Some(Frame::Message(Reply::Error { message, .. })))) => {
                    break Event::Failed(RpcError::new(Code::Internal, message))
                }
                Some(Ok(Some(_))) => {
                    break Event::Failed(RpcError::new(Code::Internal, "the sandbox broke the protocol"))
                }
                Some(Ok(None)) | None => {
                    break Event::Failed(RpcError::new(Code::Unavailable, "the sandbox stopped"))
                }
                Some(Err(e)) => break Event::Failed(RpcError::from(e)),
            },
            Some(ctl) = control.recv() => {
                let frames = match ctl {
                    // A frame carries at most MAX_FRAME_LEN: stdin goes in chunks.
                    Control::Stdin(data) => data
                        .chunks(sandbox_init::protocol::CHUNK_LEN)
                        .map(|c| Frame::Stdin(c.to_vec()))
                        .collect(),
                    Control::CloseStdin => vec![Frame::Message(Request::CloseStdin)],
                    Control::Signal(signal) => vec![Frame::Message(Request::Signal { signal })],
                };
                for frame in &frames {
                    if let Err(e) = writer.send(frame).await {
                        tracing::debug!(pid = proc.pid, "process input not delivered: {e}");
                        break;
                    }
                }
            }
            () = sandbox.deleted.cancelled() => {
                break Event::Failed(RpcError::new(Code::Unavailable, "the sandbox was killed"))
            }
            () = proc.killed.cancelled() => break exit_event(&ExitInfo {
                signal: Some(libc::SIGKILL),
                ..ExitInfo::default()
            }),
            _ = tick.tick() => if proc.abandoned() {
                tracing::info!(sandbox = %sandbox.id, pid = proc.pid, "killing a process no client is attached to");
                break Event::Failed(RpcError::new(Code::Unavailable, "killed: no client stayed attached"));
            },
        }
    };
    // Dropping the connection kills the process group if it still runs.
    read.abort();
    drop(writer);
    proc.finish(outcome).await;
}

/// envd's `EndEvent` for an exit.
fn exit_event(exit: &ExitInfo) -> Event {
    if exit.timed_out {
        return Event::Failed(RpcError::new(
            Code::DeadlineExceeded,
            "the command's timeout passed: it was killed",
        ));
    }
    let (code, status) = match (exit.code, exit.signal) {
        (Some(code), _) => (code, format!("exit status {code}")),
        (None, Some(signal)) => (-1, format!("signal: {}", signal_name(signal))),
        (None, None) => (-1, "unknown".to_owned()),
    };
    Event::End(json!({
        "exitCode": code,
        "exited": exit.code.is_some(),
        "status": status,
    }))
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGKILL => "killed".into(),
        libc::SIGTERM => "terminated".into(),
        libc::SIGINT => "interrupt".into(),
        libc::SIGPIPE => "broken pipe".into(),
        other => format!("signal {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_become_envd_end_events() {
        let Event::End(end) = exit_event(&ExitInfo {
            code: Some(3),
            ..ExitInfo::default()
        }) else {
            panic!("an end")
        };
        assert_eq!(
            end,
            json!({"exitCode": 3, "exited": true, "status": "exit status 3"})
        );
        let Event::End(end) = exit_event(&ExitInfo {
            signal: Some(9),
            ..ExitInfo::default()
        }) else {
            panic!("an end")
        };
        assert_eq!(end["status"], "signal: killed");
        assert!(matches!(
            exit_event(&ExitInfo {
                timed_out: true,
                ..ExitInfo::default()
            }),
            Event::Failed(RpcError {
                code: Code::DeadlineExceeded,
                ..
            })
        ));
        assert_eq!(signal(Some(&json!("SIGNAL_SIGKILL"))).expect("ok"), 9);
        assert_eq!(signal(Some(&json!(15))).expect("ok"), 15);
        assert!(signal(None).is_err());
    }
}
