//! Threads of a sandbox and starting their turns.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{Sandbox, SandboxError, Sandboxes};
use crate::names::new_id;
use crate::runner::runtime::{Session, TurnInput, TurnOptions};
use crate::threads::{events, Thread, ThreadSettings, ThreadStatus, Turn};

/// Levels of `thinking` (the CLI's `--effort`).
pub const THINKING_LEVELS: &[&str] = &["low", "medium", "high", "xhigh", "max"];

fn check_settings(settings: &ThreadSettings) -> Result<(), SandboxError> {
    if let Some(mode) = &settings.permission_mode {
        crate::agents::check_permission_mode(mode).map_err(SandboxError::Invalid)?;
    }
    if let Some(level) = &settings.thinking {
        if !THINKING_LEVELS.contains(&level.as_str()) {
            return Err(SandboxError::Invalid(format!(
                "thinking must be one of {}, not {level:?}",
                THINKING_LEVELS.join(", ")
            )));
        }
    }
    if settings
        .model
        .as_deref()
        .is_some_and(|m| m.trim().is_empty())
    {
        return Err(SandboxError::Invalid("model must not be empty".into()));
    }
    Ok(())
}

/// The longest thread name kept.
const MAX_NAME: usize = 200;

impl Sandboxes {
    /// Creates a thread in an active sandbox.
    pub fn create_thread(
        &self,
        sandbox: &Sandbox,
        name: Option<String>,
        settings: ThreadSettings,
    ) -> Result<Arc<Thread>, SandboxError> {
        // A thread is a record: a paused sandbox stays paused.
        sandbox.ensure_live()?;
        check_settings(&settings)?;
        let mut threads = sandbox.threads.lock().unwrap_or_else(|p| p.into_inner());
        let name = name
            .map(|n| n.trim().chars().take(MAX_NAME).collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("Chat {}", threads.len() + 1));
        let thread = Thread::create(
            self.store.clone(),
            new_id("th_"),
            name,
            sandbox.id.clone(),
            settings,
        )?;
        threads.push(thread.clone());
        Ok(thread)
    }

    /// Changes a thread's settings for its next turns: each field given replaces the
    /// current one (`null` clears it).
    pub fn update_thread_settings(
        &self,
        thread: &Thread,
        change: impl FnOnce(&mut ThreadSettings),
    ) -> Result<ThreadSettings, SandboxError> {
        let mut settings = thread.state().settings.clone();
        change(&mut settings);
        check_settings(&settings)?;
        thread.state().settings = settings.clone();
        thread.save();
        Ok(settings)
    }

    /// A thread of a sandbox.
    pub fn thread(&self, sandbox: &Sandbox, id: &str) -> Result<Arc<Thread>, SandboxError> {
        sandbox
            .threads_snapshot()
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| SandboxError::ThreadNotFound(id.to_owned()))
    }

    /// Deletes a thread, stopping its running turn first.
    pub async fn delete_thread(&self, sandbox: &Sandbox, id: &str) -> Result<(), SandboxError> {
        let thread = self.thread(sandbox, id)?;
        if let Some(turn) = thread.active_turn() {
            turn.cancel.cancel();
            turn.wait_finished(std::time::Duration::from_secs(15)).await;
        }
        self.store.delete_thread(id)?;
        sandbox
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|t| t.id != id);
        Ok(())
    }

    /// The sandbox holding a thread, by the thread's id.
    pub fn find_thread(&self, thread_id: &str) -> Option<(Arc<Sandbox>, String)> {
        let map = self.map_read();
        map.values()
            .find(|sb| sb.threads_snapshot().iter().any(|t| t.id == thread_id))
            .map(|sb| (sb.clone(), thread_id.to_owned()))
    }

    /// The running turn of a thread, or the latest running one of the sandbox.
    pub fn active_turn(&self, sandbox: &Sandbox, thread: Option<&str>) -> Option<Arc<Turn>> {
        sandbox
            .threads_snapshot()
            .iter()
            .rev()
            .filter(|t| thread.is_none_or(|id| t.id == id))
            .find_map(|t| t.active_turn())
    }

    /// Starts a turn: records the user message and runs the CLI in the background.
    /// Fails with `ThreadBusy` while another turn of the thread runs. The caller
    /// holds the sandbox [`Sandboxes::awake`] (the turn then keeps it busy).
    pub fn start_turn(
        &self,
        sandbox: &Arc<Sandbox>,
        thread: &Arc<Thread>,
        user_message: Value,
        prompt: Value,
        mut options: TurnOptions,
    ) -> Result<Arc<Turn>, SandboxError> {
        sandbox.ensure_active()?;
        let base_url = self
            .proxy
            .base_url()
            .ok_or_else(|| {
                SandboxError::ProxyUnavailable("it starts with the Docker engine".into())
            })?
            .to_owned();
        let mut agent = self
            .agents
            .get(&sandbox.agent_slug)
            .unwrap_or_else(|| sandbox.agent.clone());
        // Tools, hooks and variables of the agent (see `agents::turn`).
        let vars = self.store.agent_env(&sandbox.agent_slug)?;
        let code = crate::agents::turn::prepare(
            &mut agent,
            &self.settings.state_dir,
            vars,
            self.settings.agent_tool_timeout_ms,
        )
        .map_err(SandboxError::Invalid)?;
        // The call's cap narrows the agent's for this call, never widens it.
        agent.max_sandbox_budget_usd =
            match (agent.max_sandbox_budget_usd, options.max_sandbox_budget_usd) {
                (Some(own), Some(call)) => Some(own.min(call)),
                (own, call) => own.or(call),
            };
        self.lend_model(&sandbox.id, &agent);
        let runtime = crate::runner::of(&agent);
        let program = match runtime.name() {
            "codex" if self.settings.codex_bin.is_some() => crate::names::mounts::CODEX.to_owned(),
            "codex" => "codex".to_owned(),
            _ => sandbox.claude_program.clone(),
        };
        let turn = Turn::new(&thread.id, &new_id("msg_"));
        let (session, launch, resume) = {
            let mut state = thread.state();
            if state.active.is_some() {
                return Err(SandboxError::ThreadBusy(thread.id.clone()));
            }
            // The call's options win; the thread's settings come next, then the agent.
            let settings = &state.settings;
            options.model = options.model.take().or_else(|| settings.model.clone());
            options.permission_mode = options
                .permission_mode
                .take()
                .or_else(|| settings.permission_mode.clone());
            options.effort = options.effort.take().or_else(|| settings.thinking.clone());
            let session = if state.session_started {
                Session::Resume(state.session_id.clone())
            } else {
                Session::Start(state.session_id.clone())
            };
            runtime
                .check(&agent, &options)
                .map_err(SandboxError::Invalid)?;
            let input = TurnInput {
                agent: &agent,
                options: &options,
                session: &session,
                base_url: &base_url,
                token: &sandbox.model_token,
                prompt: &prompt,
                program: &program,
            };
            if !code.args.is_empty() && runtime.name() != "claude-code" {
                return Err(SandboxError::Invalid(format!(
                    "the tools and hooks of an agent defined in code run on the claude-code \
                     runtime only, not on {}",
                    runtime.name()
                )));
            }
            // The agent's tools, hooks and variables ride on the runtime's launch.
            let with_code = |mut launch: crate::runner::runtime::Launch| {
                launch.argv.extend(code.args.iter().cloned());
                launch.env.extend(code.env.iter().cloned());
                launch
            };
            let launch = with_code(runtime.launch(&input).map_err(SandboxError::Invalid)?);
            let resume = match &session {
                Session::Resume(id) => {
                    let fresh = Session::Start(id.clone());
                    let fresh = runtime
                        .launch(&TurnInput {
                            session: &fresh,
                            ..input
                        })
                        .map_err(SandboxError::Invalid)?;
                    Some((id.clone(), with_code(fresh)))
                }
                Session::Start(_) => None,
            };
            state.active = Some(turn.clone());
            state.status = ThreadStatus::Streaming;
            state.error = None;
            state.updated_at = std::time::SystemTime::now();
            (session, launch, resume)
        };
        thread.save();
        for update in events::user_message(&user_message) {
            thread.record(update);
        }
        thread.record(json!({
            "sessionUpdate": "session_info_update",
            "status": "streaming",
            "messageId": turn.message_id,
        }));
        thread.upsert_message(user_message);
        let spec = crate::runner::TurnSpec {
            sandbox_id: sandbox.id.clone(),
            cwd: sandbox.cwd.clone(),
            init: sandbox.init.clone(),
            thread: thread.clone(),
            turn: turn.clone(),
            runtime,
            launch,
            resume,
            budget: Some(
                self.proxy
                    .open_turn(&sandbox.id, options.max_budget_usd.or(agent.max_budget_usd)),
            ),
            after: code.after.clone(),
            held: sandbox.held_flag(),
        };
        tracing::info!(sandbox = %sandbox.id, thread = %thread.id, resume = matches!(session, Session::Resume(_)), "turn started");
        let init = sandbox.init.clone();
        // Keeps the sandbox from expiring while the turn runs.
        let busy = sandbox.busy();
        tokio::spawn(async move {
            let _busy = busy;
            if let Err(e) = crate::agents::turn::install(&init, &code.files).await {
                // The CLI then reports the tools' server as failed; the turn goes on.
                tracing::warn!(thread = %spec.thread.id, "{e}");
                spec.thread
                    .record(json!({ "sessionUpdate": "agent_hook_error", "message": e }));
            }
            crate::runner::run(spec).await;
        });
        Ok(turn)
    }
}
