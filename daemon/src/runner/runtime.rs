//! The seam between the runner and an agent runtime (a coding-agent CLI). The runner
//! owns everything runtimes share — the process in the sandbox, bounded output
//! parsing, the stream to the clients, cancellation and the thread's bookkeeping — and
//! asks the runtime only what differs: how a turn is started (argv, environment, what
//! goes on stdin), how its output lines become UI message chunks, whether a session it
//! would resume was ever recorded, and how the process is interrupted. A new runtime
//! is one module implementing [`Runtime`], one entry in [`super::for_name`] and its name
//! in [`crate::names::RUNTIMES`].

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::agents::{AgentDef, SystemPrompt};
use crate::init_client::InitClient;
use crate::threads::PermissionReply;

/// Per-request overrides of the agent (`options` of a chat call).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOptions {
    /// Model id.
    pub model: Option<String>,
    /// System prompt.
    pub system_prompt: Option<SystemPrompt>,
    /// Turn limit.
    pub max_turns: Option<u32>,
    /// Cost limit.
    pub max_budget_usd: Option<f64>,
    /// The sandbox's model spend cap for this call (the lower of it and the agent's
    /// binds).
    pub max_sandbox_budget_usd: Option<f64>,
    /// Permission mode.
    pub permission_mode: Option<String>,
    /// Tools to disable.
    pub disallowed_tools: Option<Vec<String>>,
    /// Thinking effort (`--effort`).
    pub effort: Option<String>,
}

/// Whether this turn starts Claude's session or resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// First turn: create the session with this id.
    Start(String),
    /// Later turn: resume it.
    Resume(String),
}

/// The permission mode when neither the agent nor the request sets one: the sandbox
/// is the boundary, as in the hosted relay.
pub const DEFAULT_PERMISSION_MODE: &str = "bypassPermissions";

/// What a turn came to: usage and identity gathered from the runtime's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The runtime's session id.
    pub session_id: Option<String>,
    /// Cost in USD (cumulative for the process, i.e. this turn).
    pub total_cost_usd: Option<f64>,
    /// Input tokens (including cache reads and writes).
    pub input_tokens: Option<u64>,
    /// Output tokens.
    pub output_tokens: Option<u64>,
    /// Wall time of the turn.
    pub duration_ms: Option<u64>,
    /// The result's text.
    pub result_text: Option<String>,
    /// The result's subtype (`success`, `error_max_turns`, …).
    pub subtype: Option<String>,
    /// Model turns of the turn.
    pub num_turns: Option<u64>,
    /// A failure the turn ended with, for a person.
    pub error: Option<String>,
    /// The `result` line arrived.
    pub finished: bool,
    /// The turn was interrupted.
    pub interrupted: bool,
}

/// What a turn is started from.
#[derive(Debug, Clone, Copy)]
pub struct TurnInput<'a> {
    /// The agent.
    pub agent: &'a AgentDef,
    /// The merged options (the call's, else the thread's settings).
    pub options: &'a TurnOptions,
    /// Start or resume, with the session id.
    pub session: &'a Session,
    /// The model proxy's base URL, as sandboxes reach it.
    pub base_url: &'a str,
    /// The sandbox's own model token (never the real key).
    pub token: &'a str,
    /// The user message content (a string or Anthropic content blocks).
    pub prompt: &'a Value,
    /// The CLI's path inside the sandbox.
    pub program: &'a str,
}

/// How the CLI process of one turn is started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Its environment (on top of the account's `HOME`, `USER`, ...).
    pub env: Vec<(String, String)>,
    /// Written to its stdin once it runs.
    pub stdin: Vec<u8>,
    /// Whether stdin is closed right after (else when the turn's end is seen).
    pub close_stdin: bool,
    /// Files written in the sandbox (as `user`) before it starts: path and content.
    pub files: Vec<(String, Vec<u8>)>,
}

/// How the runner stops a running turn before signalling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupt {
    /// A line on its stdin (a control request).
    Stdin(Vec<u8>),
    /// A signal to its process group.
    Signal(i32),
}

/// A permission question the CLI asked on its control channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    /// The request's id.
    pub request_id: String,
    /// The tool call it is about.
    pub tool_call_id: String,
    /// The tool.
    pub tool: String,
    /// The tool's input.
    pub input: Value,
}

/// Turns one runtime's output lines into UI message chunks.
pub trait Translate: Send {
    /// Translates one JSON line of the CLI's stdout.
    fn line(&mut self, line: &Value) -> Vec<Value>;
    /// Whether a line ends the turn (the CLI then exits). Looked at without
    /// translating once the turn is being stopped.
    fn ends_turn(&self, line: &Value) -> bool;
    /// Closes whatever the CLI left open (an interrupted stream) and the open step.
    fn close(&mut self) -> Vec<Value>;
    /// What the turn came to so far.
    fn outcome(&self) -> &Outcome;
    /// What the runtime keeps for the thread's next turn, when it changed.
    fn runtime_state(&self) -> Option<Value> {
        None
    }
}

/// One agent runtime.
pub trait Runtime: Send + Sync + std::fmt::Debug {
    /// The runtime's name in agent definitions (`claude-code`, `codex`).
    fn name(&self) -> &'static str;
    /// The CLI, for people ("the Claude Code CLI").
    fn cli(&self) -> &'static str;
    /// What to do when the CLI is missing from the sandbox.
    fn missing_hint(&self) -> &'static str;
    /// Refuses (with a message naming the setting) what the runtime cannot honour.
    fn check(&self, agent: &AgentDef, options: &TurnOptions) -> Result<(), String>;
    /// How the turn's CLI is started.
    fn launch(&self, input: &TurnInput<'_>) -> Result<Launch, String>;
    /// A fresh translator for one turn, given what the thread's last turn kept
    /// ([`Translate::runtime_state`]; `null` at first).
    fn translator(&self, state: &Value) -> Box<dyn Translate>;
    /// Whether the session `id` was recorded in the sandbox (when unknown: assume it
    /// was). A turn resuming a session never recorded starts it afresh instead.
    fn session_recorded<'a>(&'a self, init: &'a InitClient, id: &'a str) -> BoxFuture<'a, bool>;
    /// How a turn is interrupted.
    fn interrupt(&self, message_id: &str) -> Interrupt;
    /// A permission question in an output line, if the line is one.
    fn permission_request(&self, _line: &Value) -> Option<Ask> {
        None
    }
    /// The line answering a permission question.
    fn permission_response(&self, _ask: &Ask, _reply: PermissionReply) -> Option<Vec<u8>> {
        None
    }
}
