//! One sandbox: its identity, its state (written through to the store), and its
//! activity, which decides when it expires.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::{SandboxError, Status};
use crate::agents::AgentDef;
use crate::firewall::Policy;
use crate::init_client::InitClient;
use crate::store::{SandboxRow, Store};
use crate::threads::Thread;

/// The mutable part of a sandbox.
#[derive(Debug, Clone)]
pub(super) struct State {
    pub(super) status: Status,
    pub(super) error: Option<String>,
    pub(super) updated_at: SystemTime,
    pub(super) container_id: Option<String>,
}

/// One sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// Its primary id (`sb_…`).
    pub id: String,
    /// Its second id, also the container's name (`sbx-…`).
    pub sandbox_id: String,
    /// The agent it was created for.
    pub agent_slug: String,
    /// That agent's display name.
    pub agent_name: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Default working directory (absolute).
    pub cwd: String,
    /// Its host directory.
    pub dir: PathBuf,
    /// The client of its sandbox-init.
    pub init: InitClient,
    /// Cancelled when it is deleted or expires.
    pub deleted: CancellationToken,
    /// The agent's definition when the sandbox was created.
    pub agent: AgentDef,
    /// The sandbox's model-proxy token.
    pub model_token: String,
    /// The Claude Code CLI inside the sandbox.
    pub claude_program: String,
    /// Its threads, oldest first.
    pub threads: Mutex<Vec<Arc<Thread>>>,
    /// Who it was created for (`user:<id>` or `token:<id>`); `None` when created with
    /// the API key for nobody in particular. Chat tokens reach only their own.
    pub owner: Option<String>,
    /// How long it may go without activity before it expires.
    pub ttl: Option<std::time::Duration>,
    /// Last activity (API call, exec or turn ending).
    pub(super) activity: Mutex<std::time::Instant>,
    /// Execs and turns in progress: a busy sandbox never expires.
    pub(super) busy: std::sync::atomic::AtomicUsize,
    /// Pausing and resuming (see `pause`).
    pub(super) power: Arc<super::pause::Power>,
    /// Its egress policy, resolved at creation.
    pub policy: Policy,
    /// What the client attached at creation (metadata).
    pub attributes: Attributes,
    /// An absolute deadline: past it the sandbox expires, busy or not.
    pub(super) deadline: Mutex<Option<SystemTime>>,
    /// Where it is persisted.
    pub(super) store: Arc<Store>,
    pub(super) state: Mutex<State>,
}

/// What a client attached to a sandbox when creating it, kept with it (the E2B API's
/// metadata).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Attributes {
    /// Key-value pairs a client filters sandboxes by.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Paused (as a client pauses it) rather than expired when its deadline passes
    /// (the E2B API's `autoPause`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pause_at_deadline: bool,
    /// Who may reach its ports through getHost (`None`: nobody; only sandboxes
    /// created through the E2B API are served there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port_access: Option<PortAccess>,
}

/// Who may reach a sandbox's ports through the E2B API's getHost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PortAccess {
    /// Anyone who can reach the listener (E2B's public traffic).
    Public,
    /// Only requests with the sandbox's traffic access token
    /// (`allowPublicTraffic: false`).
    Token,
}

/// Keeps a sandbox busy (not expirable) while alive.
#[derive(Debug)]
pub struct BusyGuard(Arc<Sandbox>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A consistent snapshot of a sandbox, for callers.
#[derive(Debug, Clone)]
pub struct SandboxView {
    /// Primary id.
    pub id: String,
    /// Second id.
    pub sandbox_id: String,
    /// Status.
    pub status: Status,
    /// Error, when status is `Error`.
    pub error: Option<String>,
    /// Agent slug.
    pub agent_slug: String,
    /// Agent name.
    pub agent_name: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last change.
    pub updated_at: SystemTime,
}

impl Sandbox {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // State updates are single assignments; a poisoned lock still holds a
        // consistent value.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot.
    pub fn view(&self) -> SandboxView {
        let state = self.state().clone();
        SandboxView {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            status: state.status,
            error: state.error,
            agent_slug: self.agent_slug.clone(),
            agent_name: self.agent_name.clone(),
            created_at: self.created_at,
            updated_at: state.updated_at,
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.state().status
    }

    pub(super) fn set_status(&self, status: Status, error: Option<String>) {
        let mut state = self.state();
        state.status = status;
        state.error = error;
        state.updated_at = SystemTime::now();
        self.persist(&state);
    }

    pub(super) fn set_container(&self, id: String) {
        let mut state = self.state();
        state.container_id = Some(id);
        self.persist(&state);
    }

    /// Writes the state through (called with the state locked, so writes keep order).
    pub(super) fn persist(&self, state: &State) {
        if let Err(e) = self.store.set_sandbox_state(
            &self.id,
            state.status.as_str(),
            state.error.as_deref(),
            state.container_id.as_deref(),
        ) {
            tracing::error!(sandbox = %self.id, "{e}");
        }
    }

    /// The sandbox as the store keeps it.
    pub(super) fn row(&self) -> SandboxRow {
        let state = self.state().clone();
        SandboxRow {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            agent_slug: self.agent_slug.clone(),
            agent_name: self.agent_name.clone(),
            agent: serde_json::to_string(&self.agent).unwrap_or_else(|_| "{}".into()),
            owner: self.owner.clone(),
            cwd: self.cwd.clone(),
            ttl_ms: self.ttl.map(|t| t.as_millis() as u64),
            policy: serde_json::to_string(&self.policy).unwrap_or_else(|_| "{}".into()),
            model_token: self.model_token.clone(),
            claude_program: self.claude_program.clone(),
            status: state.status.as_str().to_owned(),
            error: state.error,
            container_id: state.container_id,
            created_at: crate::store::millis(self.created_at),
            updated_at: crate::store::millis(state.updated_at),
            model_usage: None,
            attributes: Some(&self.attributes)
                .filter(|a| **a != Attributes::default())
                .and_then(|a| serde_json::to_string(a).ok()),
            deadline_ms: self.deadline().map(crate::store::millis),
            held: self.held(),
        }
    }

    pub(super) fn container_id(&self) -> Option<String> {
        self.state().container_id.clone()
    }

    /// Its absolute deadline, when it has one.
    pub fn deadline(&self) -> Option<SystemTime> {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves its absolute deadline (written through to the store).
    pub fn set_deadline(&self, deadline: Option<SystemTime>) -> Result<(), SandboxError> {
        let mut slot = self.deadline.lock().unwrap_or_else(|p| p.into_inner());
        self.store
            .set_sandbox_deadline(&self.id, deadline.map(crate::store::millis))?;
        *slot = deadline;
        Ok(())
    }

    /// Whether its absolute deadline has passed.
    pub(super) fn deadline_passed(&self) -> bool {
        self.deadline().is_some_and(|d| SystemTime::now() >= d)
    }

    /// Records activity now.
    pub fn touch(&self) {
        *self.activity.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// Marks the sandbox busy until the guard drops (then records activity).
    pub fn busy(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.touch();
        BusyGuard(self.clone())
    }

    /// Whether it has been idle (nothing running) for longer than its timeout.
    pub(super) fn idle_expired(&self) -> bool {
        let Some(ttl) = self.ttl else { return false };
        self.busy.load(std::sync::atomic::Ordering::SeqCst) == 0
            && self
                .activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                > ttl
    }

    /// Its threads, oldest first.
    pub fn threads_snapshot(&self) -> Vec<Arc<Thread>> {
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Fails unless the sandbox is active or paused (for what needs its record only).
    pub fn ensure_live(&self) -> Result<(), SandboxError> {
        let state = self.state();
        if matches!(state.status, Status::Active | Status::Paused) {
            Ok(())
        } else {
            Err(SandboxError::NotActive {
                id: self.id.clone(),
                status: state.status,
                error: state.error.clone(),
            })
        }
    }

    /// Fails unless the sandbox is active.
    pub fn ensure_active(&self) -> Result<(), SandboxError> {
        let state = self.state();
        if state.status == Status::Active {
            Ok(())
        } else {
            Err(SandboxError::NotActive {
                id: self.id.clone(),
                status: state.status,
                error: state.error.clone(),
            })
        }
    }
}
