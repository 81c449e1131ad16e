//! The runner: one turn of a thread is one run of the Claude Code CLI inside the
//! sandbox, through sandbox-init with stdin and stdout streaming. Its stream-json
//! output is translated into UI message chunks as it arrives, appended to the turn's
//! log (which clients subscribe to) and folded into the thread's assistant message.
//!
//! The turn runs in its own task, whatever happens to the clients watching it; it ends
//! when the CLI reports its result and exits, fails, or is cancelled (the CLI's
//! interrupt control request first, then SIGTERM, then SIGKILL).

pub mod claude;
pub mod fold;
pub mod lines;
pub mod out;
pub mod translate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sandbox_init::protocol::{ErrorKind, ExecRequest, Frame, Reply, Request};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::init_client::{InitClient, InitError};
use crate::threads::{PermissionReply, Thread, ThreadStatus, Turn};
use lines::{Lines, Piece};
use out::Out;
use translate::Translator;

/// How long the CLI may take to stop after an interrupt before it is signalled.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long the CLI may take to exit after its result (it flushes the session).
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How much of the CLI's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// Everything one turn needs.
#[derive(Debug)]
pub struct TurnSpec {
    /// The sandbox's id (reported in metadata).
    pub sandbox_id: String,
    /// Working directory.
    pub cwd: String,
    /// The sandbox's init client.
    pub init: InitClient,
    /// The thread.
    pub thread: Arc<Thread>,
    /// The turn's stream.
    pub turn: Arc<Turn>,
    /// The CLI's path inside the sandbox.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// For a turn that resumes Claude's session: its id, and the arguments that start
    /// it afresh, used when the session was never written (a turn cut off before the
    /// CLI recorded anything, e.g. by a daemon restart).
    pub resume: Option<(String, Vec<String>)>,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// The user message content (a string or Anthropic content blocks).
    pub prompt: Value,
    /// Keeps the sandbox from expiring while the turn runs.
    pub busy: Option<crate::sandbox::BusyGuard>,
    /// Holds the turn's budget at the model proxy while the turn runs.
    pub budget: Option<crate::proxy::TurnBudget>,
}

/// How the CLI process ended, as far as the runner saw.
#[derive(Debug, Default)]
struct Ending {
    exit: Option<sandbox_init::protocol::ExitInfo>,
    failure: Option<String>,
    stderr_tail: Vec<u8>,
}

/// Runs the turn to its end and records the outcome on the thread.
pub async fn run(mut spec: TurnSpec) {
    let started = std::time::Instant::now();
    let mut out = Out::new(&spec.turn.message_id);
    let mut translator = Translator::default();
    out.emit(json!({ "type": "start", "messageId": spec.turn.message_id,
                "messageMetadata": { "sandboxId": spec.sandbox_id, "threadId": spec.thread.id } }));
    out.flush(&spec.thread, &spec.turn);
    if let Some((session, fresh)) = spec.resume.take() {
        if !session_recorded(&spec.init, &session).await {
            tracing::info!(thread = %spec.thread.id, "session {session} was never recorded; starting it");
            spec.args = fresh;
        }
    }
    let ending = drive(&spec, &mut out, &mut translator).await;

    let mut closing = translator.close_open_blocks();
    closing.extend(translator.close_step());
    for chunk in closing {
        out.emit(chunk);
    }
    let outcome = translator.outcome.clone();
    let stopped = spec.turn.stop_reason();
    let cancelled = spec.turn.cancel.is_cancelled() && stopped.is_none();
    let error = if cancelled {
        None
    } else if stopped.is_some() {
        stopped
    } else {
        outcome
            .error
            .clone()
            .or(ending.failure.clone())
            .or_else(|| (!outcome.finished).then(|| crashed(&ending)))
    };
    let duration_ms = outcome
        .duration_ms
        .unwrap_or(started.elapsed().as_millis() as u64);
    out.emit(json!({ "type": "message-metadata", "messageMetadata": {
        "sessionId": outcome.session_id,
        "totalCostUsd": outcome.total_cost_usd.unwrap_or(0.0),
        "inputTokens": outcome.input_tokens.unwrap_or(0),
        "outputTokens": outcome.output_tokens.unwrap_or(0),
        "durationMs": duration_ms,
        "sandboxId": spec.sandbox_id,
        "threadId": spec.thread.id,
    }}));
    if cancelled {
        out.emit(json!({ "type": "abort" }));
    } else if let Some(error) = &error {
        out.emit(json!({ "type": "error", "errorText": error }));
    }
    out.emit(json!({ "type": "finish" }));
    out.settle();
    out.store(&spec.thread);

    {
        let mut state = spec.thread.state();
        let usage = &mut state.usage;
        usage.input_tokens += outcome.input_tokens.unwrap_or(0);
        usage.output_tokens += outcome.output_tokens.unwrap_or(0);
        usage.total_tokens = usage.input_tokens + usage.output_tokens;
        usage.total_cost_usd += outcome.total_cost_usd.unwrap_or(0.0);
        usage.duration_ms += duration_ms;
        if outcome.session_id.is_some() {
            state.session_started = true;
        }
        state.status = if cancelled {
            ThreadStatus::Cancelled
        } else if error.is_some() {
            ThreadStatus::Error
        } else {
            ThreadStatus::Completed
        };
        state.error = error.clone();
        let now = SystemTime::now();
        state.updated_at = now;
        state.completed_at = Some(now);
        state.active = None;
    }
    spec.thread.settle_permissions();
    spec.thread.save();
    let status = spec.thread.state().status;
    spec.thread.record(json!({
        "sessionUpdate": "session_info_update",
        "status": status.as_str(),
        "error": error,
        "messageId": spec.turn.message_id,
    }));
    // The outcome is stored; now the clients hear of it.
    out.send(&spec.turn);
    spec.turn.finish();
    tracing::info!(
        thread = %spec.thread.id,
        sandbox = %spec.sandbox_id,
        ms = started.elapsed().as_millis() as u64,
        cancelled,
        error = error.as_deref().unwrap_or(""),
        "turn ended"
    );
}

/// Whether Claude Code recorded session `id` in the sandbox
/// (`~/.claude/projects/<cwd>/<id>.jsonl`). When the answer is unknown, assume it did.
async fn session_recorded(init: &InitClient, id: &str) -> bool {
    let file = format!("{id}.jsonl");
    match init
        .list("/home/user/.claude/projects", 2, crate::sandbox::USER)
        .await
    {
        Ok(entries) => entries.iter().any(|e| e.name == file),
        Err(InitError::Remote {
            kind: ErrorKind::NotFound,
            ..
        }) => false,
        Err(_) => true,
    }
}

/// The CLI's answer line to a `can_use_tool` control request.
fn permission_response(request_id: &str, reply: PermissionReply, input: &Value) -> Value {
    let decision = match reply {
        PermissionReply::Once | PermissionReply::Always => {
            json!({ "behavior": "allow", "updatedInput": input })
        }
        PermissionReply::Reject => json!({
            "behavior": "deny",
            "message": "The user rejected this tool call.",
        }),
    };
    json!({
        "type": "control_response",
        "response": { "subtype": "success", "request_id": request_id, "response": decision },
    })
}

/// The note a client gets when the CLI printed a line too long to keep.
fn line_dropped_notice() -> Value {
    json!({
        "type": "data-notice",
        "id": "line-too-long",
        "data": {
            "notice": "line-too-long",
            "message": format!(
                "the Claude Code CLI printed a line over the limits of one line ({} MiB, \
                 {} JSON values); it was dropped and the turn went on without it",
                lines::MAX_LINE >> 20,
                lines::MAX_VALUES
            ),
        },
    })
}

fn crashed(ending: &Ending) -> String {
    let how = match &ending.exit {
        Some(exit) => match (exit.code, exit.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            _ => "ended".to_owned(),
        },
        None => "lost its connection".to_owned(),
    };
    let tail = String::from_utf8_lossy(&ending.stderr_tail);
    let tail = tail.trim();
    if tail.is_empty() {
        format!("the Claude Code CLI {how} before finishing the turn")
    } else {
        format!("the Claude Code CLI {how} before finishing the turn: {tail}")
    }
}

/// Starts the CLI, feeds it the prompt, and pumps its output until it ends.
async fn drive(spec: &TurnSpec, out: &mut Out, translator: &mut Translator) -> Ending {
    let mut ending = Ending::default();
    let mut argv = vec![spec.program.clone()];
    argv.extend(spec.args.iter().cloned());
    let request = ExecRequest {
        argv,
        env: spec.env.clone(),
        cwd: Some(spec.cwd.clone()),
        user: crate::sandbox::USER.into(),
        timeout_ms: None,
        stdin: true,
        output_limit: None,
    };
    let conn = match spec.init.spawn(request).await {
        Ok((conn, _pid)) => conn,
        Err(InitError::Remote {
            kind: ErrorKind::NotFound,
            message,
        }) => {
            ending.failure = Some(format!(
                "the Claude Code CLI is not available in the sandbox ({message}); \
                 start the daemon with --claude-bin, or use an image that has `claude`"
            ));
            return ending;
        }
        Err(e) => {
            ending.failure = Some(format!("could not start the Claude Code CLI: {e}"));
            return ending;
        }
    };
    let (mut reader, mut writer) = conn.split();
    let user_line = json!({
        "type": "user",
        "message": { "role": "user", "content": spec.prompt },
        "parent_tool_use_id": null,
        "session_id": "",
    });
    if let Err(e) = writer
        .send(&Frame::Stdin(format!("{user_line}\n").into_bytes()))
        .await
    {
        ending.failure = Some(format!("could not send the prompt to the CLI: {e}"));
        return ending;
    }

    let mut lines = Lines::default();
    // Whether a line over the limit was reported (once per turn is enough).
    let mut dropped_line = false;
    // Whether the turn was stopped for passing its output limit.
    let mut limited = false;
    // Permission requests waiting for a client: request id to (tool call, tool, input).
    let mut asking: HashMap<String, (String, String, Value)> = HashMap::new();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let mut deadline: Option<Instant> = None;
    let mut escalation = 0u8;
    let mut interrupted = false;
    loop {
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = reader.recv() => match frame {
                Ok(Some(Frame::Stdout(bytes))) => {
                    let mut result_seen = false;
                    let mut urgent = false;
                    for piece in lines.push(&bytes) {
                        let line = match piece {
                            Piece::Line(line) => line,
                            Piece::Dropped => {
                                if !std::mem::replace(&mut dropped_line, true) {
                                    tracing::warn!(thread = %spec.thread.id,
                                        "the CLI printed a line over the limits of one line; dropped");
                                    out.emit(line_dropped_notice());
                                    urgent = true;
                                }
                                continue;
                            }
                        };
                        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                            continue; // The CLI may print non-JSON diagnostics.
                        };
                        if value["type"] == "result" {
                            result_seen = true;
                        }
                        if limited {
                            continue; // The turn is being stopped: only its end matters.
                        }
                        if value["type"] == "control_request"
                            && value["request"]["subtype"] == "can_use_tool"
                        {
                            let request_id = value["request_id"].as_str().unwrap_or_default();
                            let request = &value["request"];
                            let tool = request["tool_name"].as_str().unwrap_or_default();
                            if spec.thread.always_allowed(tool) {
                                let line = permission_response(
                                    request_id, PermissionReply::Always, &request["input"]);
                                let _ = writer.send(&Frame::Stdin(format!("{line}\n").into_bytes())).await;
                                continue;
                            }
                            let call = request["tool_use_id"].as_str().unwrap_or_default();
                            asking.insert(
                                request_id.to_owned(),
                                (call.to_owned(), tool.to_owned(), request["input"].clone()),
                            );
                            spec.thread.ask_permission(request_id, tool, answers_tx.clone());
                            urgent = true;
                            out.emit(json!({
                                "type": "data-permission-request",
                                "id": request_id,
                                "data": { "requestId": request_id, "toolCallId": call,
                                          "toolName": tool, "input": request["input"],
                                          "status": "pending" },
                            }));
                            continue;
                        }
                        if let Some(event) = crate::agents::turn::hook_event(&value) {
                            spec.thread.record(event);
                        }
                        for chunk in translator.line(&value) {
                            out.emit(chunk);
                        }
                        if out.over_limit() {
                            limited = true;
                            tracing::warn!(thread = %spec.thread.id, "the turn passed its output limit");
                            spec.turn.stop(&format!(
                                "the turn reached its output limit ({} MiB streamed); the Claude \
                                 Code CLI was stopped and the rest of its output dropped",
                                out::OUTPUT_LIMIT >> 20
                            ));
                        }
                    }
                    if urgent {
                        out.flush(&spec.thread, &spec.turn);
                    } else {
                        out.flush_paced(&spec.thread, &spec.turn);
                    }
                    if result_seen {
                        // The CLI exits when its stdin closes; it flushes the session first.
                        let _ = writer.send(&Frame::Message(Request::CloseStdin)).await;
                        deadline.get_or_insert(Instant::now() + EXIT_GRACE);
                    }
                }
                Ok(Some(Frame::Stderr(bytes))) => {
                    ending.stderr_tail.extend_from_slice(&bytes);
                    let excess = ending.stderr_tail.len().saturating_sub(STDERR_TAIL);
                    ending.stderr_tail.drain(..excess);
                }
                Ok(Some(Frame::Message(Reply::Exited(exit)))) => {
                    ending.exit = Some(exit);
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    ending.failure.get_or_insert(format!("lost the CLI's output: {e}"));
                    break;
                }
            },
            Some((request_id, reply)) = answers.recv() => {
                let Some((call, tool, input)) = asking.remove(&request_id) else { continue };
                let line = permission_response(&request_id, reply, &input);
                let _ = writer.send(&Frame::Stdin(format!("{line}\n").into_bytes())).await;
                out.emit(json!({
                    "type": "data-permission-request",
                    "id": request_id,
                    "data": { "requestId": request_id, "toolCallId": call, "toolName": tool,
                              "input": input, "status": "resolved", "reply": reply },
                }));
                out.flush(&spec.thread, &spec.turn);
            }
            () = tokio::time::sleep_until(out.due().unwrap_or(wake)), if out.due().is_some() => {
                out.flush(&spec.thread, &spec.turn);
            }
            () = spec.turn.cancel.cancelled(), if !interrupted => {
                interrupted = true;
                let interrupt = json!({
                    "type": "control_request",
                    "request_id": format!("interrupt_{}", spec.turn.message_id),
                    "request": { "subtype": "interrupt" }
                });
                let _ = writer.send(&Frame::Stdin(format!("{interrupt}\n").into_bytes())).await;
                deadline = Some(Instant::now() + INTERRUPT_GRACE);
            }
            () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                // It did not stop in time: SIGTERM, then SIGKILL.
                let signal = if escalation == 0 { libc::SIGTERM } else { libc::SIGKILL };
                escalation += 1;
                let _ = writer.send(&Frame::Message(Request::Signal { signal })).await;
                deadline = Some(Instant::now() + Duration::from_secs(3));
            }
        }
    }
    ending
}
