//! The runner: one turn of a thread is one run of the agent runtime's CLI (Claude Code
//! or Codex, behind [`runtime::Runtime`]) inside the sandbox, through sandbox-init with
//! stdin and stdout streaming. Its JSON lines are translated into UI message chunks as
//! they arrive, appended to the turn's log (which clients subscribe to) and folded into
//! the thread's assistant message.
//!
//! The turn runs in its own task, whatever happens to the clients watching it; it ends
//! when the CLI reports its result and exits, fails, or is cancelled (the runtime's
//! interrupt first, then SIGTERM, then SIGKILL).

pub mod chunks;
pub mod claude;
pub mod codex;
pub mod fold;
pub mod lines;
pub mod out;
pub mod runtime;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sandbox_init::protocol::{ErrorKind, ExecRequest, Frame, Reply, Request};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::init_client::InitError;
use crate::threads::{Thread, ThreadStatus, Turn};
use lines::{Lines, Piece};
use out::Out;
use runtime::{Ask, Interrupt, Launch, Runtime, Translate};

/// How long the CLI may take to stop after an interrupt before it is signalled.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long the CLI may take to exit after its result (it flushes the session).
const EXIT_GRACE: Duration = Duration::from_secs(10);
/// How much of the CLI's stderr is kept for error messages.
const STDERR_TAIL: usize = 4096;

/// The runtime of an agent (`None`: Claude Code), by one of [`crate::names::RUNTIMES`].
pub fn for_name(name: Option<&str>) -> Option<Arc<dyn Runtime>> {
    match name.unwrap_or(crate::names::RUNTIMES[0]) {
        "claude-code" => Some(Arc::new(claude::Claude)),
        "codex" => Some(Arc::new(codex::Codex)),
        _ => None,
    }
}

/// The runtime of an agent whose definition was validated.
pub fn of(agent: &crate::agents::AgentDef) -> Arc<dyn Runtime> {
    for_name(agent.runtime.as_deref()).unwrap_or_else(|| Arc::new(claude::Claude))
}

/// Everything one turn needs.
#[derive(Debug)]
pub struct TurnSpec {
    /// The sandbox's id (reported in metadata).
    pub sandbox_id: String,
    /// Working directory.
    pub cwd: String,
    /// The sandbox's init client.
    pub init: crate::init_client::InitClient,
    /// The thread.
    pub thread: Arc<Thread>,
    /// The turn's stream.
    pub turn: Arc<Turn>,
    /// The agent's runtime.
    pub runtime: Arc<dyn Runtime>,
    /// How the CLI is started.
    pub launch: Launch,
    /// For a turn that resumes a session: its id, and how to start it afresh instead,
    /// used when the session was never recorded (a turn cut off before the CLI
    /// recorded anything, e.g. by a daemon restart).
    pub resume: Option<(String, Launch)>,
    /// Holds the turn's budget at the model proxy while the turn runs.
    pub budget: Option<crate::proxy::TurnBudget>,
    /// The agent's `onFinish` / `onError`, run once the turn has ended.
    pub after: Option<crate::agents::turn::AfterTurn>,
    /// Set while a client holds the sandbox paused: a cancel then ends the turn at
    /// once (the frozen CLI cannot answer; closing its connection ends it on resume).
    pub held: Arc<std::sync::atomic::AtomicBool>,
}

/// How the CLI process ended, as far as the runner saw.
#[derive(Debug, Default)]
struct Ending {
    exit: Option<sandbox_init::protocol::ExitInfo>,
    failure: Option<String>,
    stderr_tail: Vec<u8>,
}

/// Runs the turn to its end and records the outcome on the thread. Whatever happens
/// inside, the turn ends: a bug that panics the turn's task ends it with an error.
pub async fn run(spec: TurnSpec) {
    let (thread, turn) = (spec.thread.clone(), spec.turn.clone());
    let Err(e) = tokio::spawn(run_turn(spec)).await else {
        return;
    };
    let why = format!("the turn failed inside sandboxd: {e}");
    tracing::error!(thread = %thread.id, "{why}");
    {
        let mut state = thread.state();
        if state.active.as_ref().is_some_and(|a| Arc::ptr_eq(a, &turn)) {
            state.status = ThreadStatus::Error;
            state.error = Some(why.clone());
            let now = SystemTime::now();
            state.updated_at = now;
            state.completed_at = Some(now);
            state.active = None;
        }
    }
    thread.settle_permissions();
    thread.save();
    turn.push(&json!({ "type": "error", "errorText": why }));
    turn.push(&json!({ "type": "finish" }));
    turn.finish();
}

async fn run_turn(mut spec: TurnSpec) {
    let started = std::time::Instant::now();
    let mut out = Out::new(&spec.turn.message_id);
    let previous = spec.thread.state().runtime_state.clone();
    let mut translator = spec.runtime.translator(&previous);
    out.emit(json!({ "type": "start", "messageId": spec.turn.message_id,
                "messageMetadata": { "sandboxId": spec.sandbox_id, "threadId": spec.thread.id } }));
    out.flush(&spec.thread, &spec.turn);
    if let Some((session, fresh)) = spec.resume.take() {
        if !spec.runtime.session_recorded(&spec.init, &session).await {
            tracing::info!(thread = %spec.thread.id, "session {session} was never recorded; starting it");
            spec.launch = fresh;
        }
    }
    let ending = drive(&spec, &mut out, translator.as_mut()).await;

    for chunk in translator.close() {
        out.emit(chunk);
    }
    let outcome = translator.outcome().clone();
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
            .or_else(|| (!outcome.finished).then(|| crashed(spec.runtime.cli(), &ending)))
    };
    let duration_ms = outcome
        .duration_ms
        .unwrap_or(started.elapsed().as_millis() as u64);
    if let (Some(hooks), false) = (&spec.after, cancelled) {
        let ended = crate::agents::turn::Ended {
            error: error.clone(),
            text: outcome.result_text.clone().unwrap_or_default(),
            subtype: outcome.subtype.clone().unwrap_or_default(),
            cost_usd: outcome.total_cost_usd.unwrap_or(0.0),
            duration_ms,
            turns: outcome.num_turns.unwrap_or(0),
            input_tokens: outcome.input_tokens.unwrap_or(0),
            output_tokens: outcome.output_tokens.unwrap_or(0),
        };
        if let Some(event) = crate::agents::turn::after(&spec.init, &spec.cwd, hooks, &ended).await
        {
            spec.thread.record(event);
        }
    }
    out.emit(json!({ "type": "message-metadata", "messageMetadata": {
        "sessionId": outcome.session_id,
        "totalCostUsd": outcome.total_cost_usd.unwrap_or(0.0),
        "inputTokens": outcome.input_tokens.unwrap_or(0),
        "outputTokens": outcome.output_tokens.unwrap_or(0),
        "durationMs": duration_ms,
        "sandboxId": spec.sandbox_id,
        "threadId": spec.thread.id,
    }}));
    // A turn the store could not keep does not end as if it had been kept: it fails,
    // saying why; memory keeps it until a write back succeeds (tried once right now).
    out.store(&spec.thread);
    let error = match spec.thread.store_failure() {
        Some(why) if spec.thread.write_back().is_err() => Some(not_stored(error, &why)),
        _ => error,
    };
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
        usage.total_cost_usd =
            crate::usd::round(usage.total_cost_usd + outcome.total_cost_usd.unwrap_or(0.0));
        usage.duration_ms += duration_ms;
        if let Some(kept) = translator.runtime_state() {
            state.runtime_state = kept;
        }
        if let Some(id) = &outcome.session_id {
            if plausible_session_id(id) {
                state.session_id = id.clone();
            }
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

/// The turn's error when the store refused its messages (`error`: its own, if any).
fn not_stored(error: Option<String>, why: &str) -> String {
    let said = format!(
        "this turn could not be stored ({why}); sandboxd keeps it in memory and stores \
         it once the state disk has room again"
    );
    match error {
        Some(error) => format!("{error}; {said}"),
        None => said,
    }
}

/// The note a client gets when the CLI printed a line too long to keep.
fn line_dropped_notice(cli: &str) -> Value {
    json!({
        "type": "data-notice",
        "id": "line-too-long",
        "data": {
            "notice": "line-too-long",
            "message": format!(
                "{cli} printed a line over the limits of one line ({} MiB, \
                 {} JSON values); it was dropped and the turn went on without it",
                lines::MAX_LINE >> 20,
                lines::MAX_VALUES
            ),
        },
    })
}

fn crashed(cli: &str, ending: &Ending) -> String {
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
        format!("{cli} {how} before finishing the turn")
    } else {
        format!("{cli} {how} before finishing the turn: {tail}")
    }
}

/// Whether a session id the CLI reported may be kept: it goes back on a later turn's
/// command line, and the CLI's stdout is hostile input.
fn plausible_session_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !id.starts_with('-')
}

/// Keeps the session id the CLI reported as soon as it does, so a turn cut off by a
/// daemon restart is resumed by the next one.
fn adopt_session(thread: &Thread, outcome: &runtime::Outcome) {
    let Some(id) = outcome
        .session_id
        .as_deref()
        .filter(|id| plausible_session_id(id))
    else {
        return;
    };
    let changed = {
        let mut state = thread.state();
        let changed = state.session_id != id;
        if changed {
            state.session_id = id.to_owned();
        }
        changed
    };
    if changed {
        thread.save();
    }
}

/// Starts the CLI, feeds it its stdin, and pumps its output until it ends.
async fn drive(spec: &TurnSpec, out: &mut Out, translator: &mut dyn Translate) -> Ending {
    let mut ending = Ending::default();
    let runtime = spec.runtime.as_ref();
    let cli = runtime.cli();
    if !spec.launch.files.is_empty() {
        let files: Vec<_> = spec
            .launch
            .files
            .iter()
            .map(|(path, content)| (path.clone(), content.clone(), Some(0o600)))
            .collect();
        if let Err(e) = spec.init.write_files(&files, crate::names::USER).await {
            ending.failure = Some(format!("could not prepare {cli}'s files: {e}"));
            return ending;
        }
    }
    let request = ExecRequest {
        argv: spec.launch.argv.clone(),
        env: spec.launch.env.clone(),
        cwd: Some(spec.cwd.clone()),
        user: crate::names::USER.into(),
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
                "{cli} is not available in the sandbox ({message}); {}",
                runtime.missing_hint()
            ));
            return ending;
        }
        Err(e) => {
            ending.failure = Some(format!("could not start {cli}: {e}"));
            return ending;
        }
    };
    let (mut reader, mut writer) = conn.split();
    if !spec.launch.stdin.is_empty() {
        if let Err(e) = writer.send(&Frame::Stdin(spec.launch.stdin.clone())).await {
            ending.failure = Some(format!("could not send the prompt to {cli}: {e}"));
            return ending;
        }
    }
    if spec.launch.close_stdin {
        let _ = writer.send(&Frame::Message(Request::CloseStdin)).await;
    }

    let mut lines = Lines::default();
    // Whether a line over the limit was reported (once per turn is enough).
    let mut dropped_line = false;
    // Whether the turn was stopped for passing its output limit.
    let mut limited = false;
    // Permission requests waiting for a client, by request id.
    let mut asking: HashMap<String, Ask> = HashMap::new();
    let (answers_tx, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let mut deadline: Option<Instant> = None;
    let mut escalation = 0u8;
    let mut interrupted = false;
    loop {
        let wake = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            frame = reader.recv() => match frame {
                Ok(Some(Frame::Stdout(bytes))) => {
                    let mut urgent = false;
                    let mut ended = false;
                    let session_before = translator.outcome().session_id.is_some();
                    for piece in lines.push(&bytes) {
                        let line = match piece {
                            Piece::Line(line) => line,
                            Piece::Dropped => {
                                if !std::mem::replace(&mut dropped_line, true) {
                                    tracing::warn!(thread = %spec.thread.id,
                                        "the CLI printed a line over the limits of one line; dropped");
                                    out.emit(line_dropped_notice(cli));
                                    urgent = true;
                                }
                                continue;
                            }
                        };
                        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
                            continue; // The CLI may print non-JSON diagnostics.
                        };
                        ended |= translator.ends_turn(&value);
                        if limited {
                            continue; // The turn is being stopped: only its end matters.
                        }
                        if let Some(ask) = runtime.permission_request(&value) {
                            if spec.thread.always_allowed(&ask.tool) {
                                let reply = crate::threads::PermissionReply::Always;
                                if let Some(line) = runtime.permission_response(&ask, reply) {
                                    let _ = writer.send(&Frame::Stdin(line)).await;
                                }
                                continue;
                            }
                            spec.thread.ask_permission(&ask.request_id, &ask.tool, answers_tx.clone());
                            urgent = true;
                            out.emit(json!({
                                "type": "data-permission-request",
                                "id": ask.request_id,
                                "data": { "requestId": ask.request_id, "toolCallId": ask.tool_call_id,
                                          "toolName": ask.tool, "input": ask.input,
                                          "status": "pending" },
                            }));
                            asking.insert(ask.request_id.clone(), ask);
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
                                "the turn reached its output limit ({} MiB streamed); {cli} was \
                                 stopped and the rest of its output dropped",
                                out::OUTPUT_LIMIT >> 20
                            ));
                        }
                    }
                    if !session_before && translator.outcome().session_id.is_some() {
                        adopt_session(&spec.thread, translator.outcome());
                    }
                    if urgent {
                        out.flush(&spec.thread, &spec.turn);
                    } else {
                        out.flush_paced(&spec.thread, &spec.turn);
                    }
                    if ended {
                        // The CLI exits when its stdin closes (or by itself); it flushes
                        // the session first.
                        if !spec.launch.close_stdin {
                            let _ = writer.send(&Frame::Message(Request::CloseStdin)).await;
                        }
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
                    ending.failure.get_or_insert(format!("lost the output of {cli}: {e}"));
                    break;
                }
            },
            Some((request_id, reply)) = answers.recv() => {
                let Some(ask) = asking.remove(&request_id) else { continue };
                if let Some(line) = runtime.permission_response(&ask, reply) {
                    let _ = writer.send(&Frame::Stdin(line)).await;
                }
                out.emit(json!({
                    "type": "data-permission-request",
                    "id": request_id,
                    "data": { "requestId": request_id, "toolCallId": ask.tool_call_id,
                              "toolName": ask.tool, "input": ask.input, "status": "resolved",
                              "reply": reply },
                }));
                out.flush(&spec.thread, &spec.turn);
            }
            () = tokio::time::sleep_until(out.due().unwrap_or(wake)), if out.due().is_some() => {
                out.flush(&spec.thread, &spec.turn);
            }
            () = spec.turn.cancel.cancelled(), if !interrupted => {
                interrupted = true;
                let sent = match runtime.interrupt(&spec.turn.message_id) {
                    Interrupt::Stdin(line) => writer.send(&Frame::Stdin(line)).await,
                    Interrupt::Signal(signal) => {
                        writer.send(&Frame::Message(Request::Signal { signal })).await
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!(thread = %spec.thread.id, "interrupt not delivered: {e}");
                }
                if spec.held.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                deadline = Some(Instant::now() + INTERRUPT_GRACE);
            }
            () = tokio::time::sleep_until(wake), if deadline.is_some() => {
                if spec.held.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_session_ids_are_kept() {
        assert!(plausible_session_id("01a2285b-4d99-7d40-8180-f3b52160087d"));
        for id in ["", "-x", "a b", "../x", "a;b", &"a".repeat(129)] {
            assert!(!plausible_session_id(id), "{id:?}");
        }
    }

    #[test]
    fn every_runtime_name_an_agent_may_use_has_a_runtime() {
        for name in crate::names::RUNTIMES {
            assert_eq!(for_name(Some(name)).map(|r| r.name()), Some(*name));
        }
        assert_eq!(
            for_name(None).map(|r| r.name()),
            Some(crate::names::RUNTIMES[0])
        );
        assert!(for_name(Some("gemini")).is_none());
    }
}
