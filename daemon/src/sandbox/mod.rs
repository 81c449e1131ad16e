//! Sandboxes: one Docker container each, with sandbox-init as PID 1.
//!
//! [`Sandboxes`] is the one door into this domain: create (in `create.rs`), look up,
//! list, exec (in `exec.rs`) and delete. It knows nothing of HTTP.

mod boot;
mod create;
pub mod disk;
mod exec;
pub mod files;
mod git;
mod health;
pub mod hostca;
mod instance;
mod layer;
pub mod paths;
mod pause;
mod pool;
mod pressure;
mod quarantine;
mod quota;
mod restore;
mod template;
mod threads;
pub mod transfer;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

pub use create::CreateSandbox;
pub use exec::{ExecParams, ExecResult};
pub use git::{CloneParams, Cloned, GitFailure, GitFailureKind};
use instance::State;
pub use instance::{Attributes, BusyGuard, PortAccess, Sandbox, SandboxView};
pub use pause::Awake;
pub use pool::{PoolSizes, LABEL_POOL};
pub use pressure::StateDisk;
pub use quarantine::{Quarantined, CLAIM_MARKER};
pub use quota::Limits as QuotaLimits;
pub use restore::Adopted;

use crate::agents::Agents;
use crate::docker::{Engine, EngineError, NetworkInfo};
use crate::firewall::Firewall;
use crate::init_client::InitError;
use crate::proxy::ModelProxy;
use crate::readiness::{Phase, Readiness};
use crate::store::{Store, StoreError};

/// A sandbox's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being provisioned.
    Creating,
    /// Ready for exec, files and chat.
    Active,
    /// Idle and frozen; its next use resumes it.
    Paused,
    /// Provisioning failed or the container died; see the error.
    Error,
    /// It went unused for longer than its timeout and was stopped.
    Expired,
}

impl Status {
    /// The name clients see (and the store keeps).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Error => "error",
            Status::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Status::Creating,
            Status::Active,
            Status::Paused,
            Status::Error,
            Status::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Failures of sandbox operations, each a distinct thing a client can act on.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No agent by that slug.
    #[error("agent {0:?} does not exist")]
    AgentNotFound(String),
    /// No sandbox by that id.
    #[error("sandbox {0:?} does not exist")]
    NotFound(String),
    /// The sandbox exists but cannot take operations now.
    #[error("sandbox {id} is {status:?}, not active{}", error_suffix(.error))]
    NotActive {
        /// Its id.
        id: String,
        /// Its status.
        status: Status,
        /// Its error, if any.
        error: Option<String>,
    },
    /// The request is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A path is unusable (empty, NUL, reserved).
    #[error(transparent)]
    BadPath(#[from] paths::BadPath),
    /// A git clone failed.
    #[error(transparent)]
    Git(#[from] git::GitFailure),
    /// No thread by that id in this sandbox.
    #[error("thread {0:?} does not exist in this sandbox")]
    ThreadNotFound(String),
    /// The thread is running a turn.
    #[error("thread {0} is already streaming a turn; wait for it, or cancel it with DELETE /v1/chat/:slug/:sandboxId/stream")]
    ThreadBusy(String),
    /// The model proxy is not listening.
    #[error("the model proxy is not available yet: {0}")]
    ProxyUnavailable(String),
    /// The daemon is still starting, or its preparation failed.
    #[error("{0}")]
    NotReady(String),
    /// The Docker engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No pending permission request by that id in the thread.
    #[error("permission request {0:?} does not exist in this thread")]
    PermissionNotFound(String),
    /// The permission request was answered already (or its turn ended).
    #[error("permission request {0:?} was already answered, or its turn has ended")]
    PermissionAnswered(String),
    /// sandbox-init failed.
    #[error(transparent)]
    Init(#[from] InitError),
    /// A sandbox limit is reached; the message names it and its flag.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A write did not fit on the sandbox's disk.
    #[error(
        "the sandbox's disk is full ({detail}): it holds {limit_mb} MiB (--disk-mb); \
         delete files in the sandbox to make room"
    )]
    DiskFull {
        /// Its bound in MiB.
        limit_mb: u64,
        /// What failed.
        detail: String,
    },
    /// A write failed because the host's state disk is full (or was, and the
    /// sandbox's disk turned read-only); the message says which.
    #[error("{0}")]
    HostDiskFull(String),
    /// A sandbox's disk, or the state directory's free space.
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
}

fn error_suffix(error: &Option<String>) -> String {
    error
        .as_deref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

/// Fixed settings of the sandbox domain.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Default image.
    pub image: String,
    /// The static sandbox-init binary on the host.
    pub init_bin: PathBuf,
    /// Host directory holding one directory per sandbox.
    pub sandboxes_dir: PathBuf,
    /// The value of [`crate::names::LABEL_INSTANCE`] for this daemon.
    pub instance: String,
    /// Extra labels for every container.
    pub labels: Vec<(String, String)>,
    /// Exec output limit per stream.
    pub exec_output_limit: u64,
    /// Default exec timeout.
    pub exec_timeout_ms: u64,
    /// Where the default image's ingredients come from.
    pub image_sources: crate::image::Sources,
    /// The host's CA bundle, when sandboxes may trust it.
    pub host_ca: Option<Arc<hostca::HostCa>>,
    /// The Claude Code CLI on the host, mounted into every sandbox; `None` uses the
    /// image's own `claude`.
    pub claude_bin: Option<PathBuf>,
    /// The Codex CLI binary mounted read-only into every sandbox; `None` uses the
    /// image's own `codex`.
    pub codex_bin: Option<PathBuf>,
    /// Default memory limit in MiB (0: none).
    pub default_memory_mb: u64,
    /// Default CPU limit (0: none).
    pub default_cpus: f64,
    /// Disk bound of a sandbox in MiB (0: none); see [`disk`].
    pub disk_mb: u64,
    /// Free space to keep under the state directory, in MiB.
    pub reserve_disk_mb: u64,
    /// The state directory (holding `state.db` and the sandboxes' directories).
    pub state_dir: PathBuf,
    /// Pids limit per sandbox.
    pub pids_limit: i64,
    /// Idle lifetime of a sandbox whose agent and create call set none (0: never).
    pub sandbox_timeout_ms: u64,
    /// OCI runtime for sandbox containers (Docker's default when `None`).
    pub runtime: Option<String>,
    /// The name of the network every sandbox joins: a bridge with traffic between
    /// containers off.
    pub network: String,
    /// Live sandbox limits (`--max-sandboxes`, `--max-sandboxes-per-user`).
    pub quota: QuotaLimits,
    /// Warm pool sizes (`--pool-size`, `--pool-agent`).
    pub pool: PoolSizes,
    /// Idle time after which a sandbox is paused (`--pause-after-secs`; `None`: never).
    pub pause_after: Option<std::time::Duration>,
    /// How long a custom tool of an agent defined in code may run.
    pub agent_tool_timeout_ms: u64,
}

/// The sandbox network as last set up, and the firewall installed for its bridge.
/// Replaced as a whole when the network is recreated (someone removed it).
#[derive(Debug, Clone)]
pub struct Attachment {
    /// The network (its id is what containers join).
    pub network: NetworkInfo,
    /// The egress firewall on its bridge.
    pub firewall: Arc<Firewall>,
}

/// All sandboxes of this daemon.
#[derive(Debug)]
pub struct Sandboxes {
    settings: Settings,
    agents: Arc<Agents>,
    readiness: Arc<Readiness>,
    /// Keyed by both `id` and `sandbox_id`.
    by_key: RwLock<HashMap<String, Arc<Sandbox>>>,
    /// One lock per template hash, so concurrent creates build a template once.
    template_locks: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The model proxy, which issues each sandbox's token.
    proxy: Arc<ModelProxy>,
    /// The network and its firewall, once set up (before the daemon is ready).
    attachment: RwLock<Option<Attachment>>,
    /// The state database.
    store: Arc<Store>,
    /// Live sandbox limits and the slots reserved by creates under way.
    quota: quota::Quota,
    /// Warm containers, made ahead of creates.
    pool: pool::Pool,
    /// What was found of this instance that no stored sandbox accounts for.
    quarantine: quarantine::Quarantine,
}

impl Sandboxes {
    /// An empty set.
    pub fn new(
        settings: Settings,
        agents: Arc<Agents>,
        readiness: Arc<Readiness>,
        proxy: Arc<ModelProxy>,
        store: Arc<Store>,
    ) -> Self {
        Self {
            store,
            proxy,
            quota: quota::Quota::new(settings.quota),
            pool: pool::Pool::new(settings.pool.clone()),
            settings,
            agents,
            readiness,
            by_key: RwLock::new(HashMap::new()),
            template_locks: tokio::sync::Mutex::new(HashMap::new()),
            attachment: RwLock::new(None),
            quarantine: Default::default(),
        }
    }

    /// Hands over the network and its installed firewall; returns the previous ones.
    pub fn attach(&self, attachment: Attachment) -> Option<Attachment> {
        // Every write replaces the whole value: a poisoned lock is still consistent.
        let mut slot = self.attachment.write().unwrap_or_else(|p| p.into_inner());
        slot.replace(attachment)
    }

    /// The network and firewall, once set up.
    pub fn attachment(&self) -> Option<Attachment> {
        self.attachment
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The egress firewall, when installed.
    pub fn firewall(&self) -> Option<Arc<Firewall>> {
        self.attachment().map(|a| a.firewall)
    }

    /// Lets go of what a sandbox held outside its container once the container is
    /// gone: its firewall rules, its model-proxy token, its host directory.
    async fn release(&self, sandbox: &Sandbox) {
        if let Some(firewall) = self.firewall() {
            if let Err(e) = firewall.release(&sandbox.id).await {
                tracing::warn!(sandbox = %sandbox.id, "{e}");
            }
        }
        self.proxy.unregister(&sandbox.id);
        // Unmounted first: removing the directory must not descend into the
        // sandbox's filesystem (and a mount point cannot be removed).
        if let Err(e) = disk::Disk::new(&sandbox.dir).unmount().await {
            tracing::warn!(sandbox = %sandbox.id, "{e}");
        }
        remove_dir(&sandbox.dir);
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn map_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Sandbox>>> {
        // Every write is a whole insert or remove: a poisoned lock is still consistent.
        self.by_key.read().unwrap_or_else(|p| p.into_inner())
    }

    fn map_write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Sandbox>>> {
        self.by_key.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine, when connected.
    fn engine(&self) -> Result<&Engine, SandboxError> {
        self.readiness.engine().ok_or_else(|| {
            SandboxError::NotReady(match self.readiness.phase() {
                Phase::Failed(e) => e,
                Phase::Starting(what) => format!("the daemon is still starting: {what}"),
                Phase::Ready => "the Docker engine is not connected".into(),
            })
        })
    }

    /// The engine, when the daemon is ready to create sandboxes.
    fn ready_engine(&self) -> Result<&Engine, SandboxError> {
        match self.readiness.phase() {
            Phase::Ready => self.engine(),
            Phase::Starting(what) => Err(SandboxError::NotReady(format!(
                "the daemon is still starting ({what}); retry when GET /healthz answers 200"
            ))),
            Phase::Failed(why) => Err(SandboxError::NotReady(format!(
                "the daemon cannot create sandboxes: {why}"
            ))),
        }
    }

    /// Looks a sandbox up by either of its ids; an API call is activity.
    pub fn get(&self, key: &str) -> Result<Arc<Sandbox>, SandboxError> {
        let sandbox = self
            .map_read()
            .get(key)
            .cloned()
            .ok_or_else(|| SandboxError::NotFound(key.to_owned()))?;
        sandbox.touch();
        Ok(sandbox)
    }

    /// Stops every active sandbox that has been idle past its timeout, or whose
    /// absolute deadline passed; its record stays, with status `expired`. One that
    /// asked for it is paused at its deadline instead. Returns how many expired.
    pub async fn expire_idle(&self) -> usize {
        let Some(engine) = self.readiness.engine() else {
            return 0;
        };
        // Those that asked to be paused at their deadline are, instead of expiring.
        self.pause_at_deadlines().await;
        let due: Vec<Arc<Sandbox>> = self
            .list_arcs()
            .into_iter()
            .filter(|sb| matches!(sb.status(), Status::Active | Status::Paused))
            // Paused by a client: neither its deadline nor its idle time counts.
            .filter(|sb| !sb.held())
            .filter(|sb| sb.idle_expired() || sb.deadline_passed())
            .collect();
        for sandbox in &due {
            let why = if sandbox.deadline_passed() {
                "expired: its deadline passed".to_owned()
            } else {
                let ttl = sandbox.ttl.map(|t| t.as_millis()).unwrap_or(0);
                format!("expired after {ttl} ms without activity")
            };
            sandbox.deleted.cancel();
            sandbox.set_status(Status::Expired, Some(why));
            if let Some(container) = sandbox.container_id() {
                if let Err(e) = engine.remove(&container).await {
                    tracing::warn!(sandbox = %sandbox.id, error = %e, "could not remove an expired sandbox");
                }
            }
            self.release(sandbox).await;
            tracing::info!(sandbox = %sandbox.id, "expired");
        }
        due.len()
    }

    fn list_arcs(&self) -> Vec<Arc<Sandbox>> {
        self.map_read()
            .iter()
            .filter(|(key, sb)| **key == sb.id)
            .map(|(_, sb)| sb.clone())
            .collect()
    }

    /// Looks a sandbox up by either of its ids without counting it as activity.
    pub fn peek(&self, key: &str) -> Option<Arc<Sandbox>> {
        self.map_read().get(key).cloned()
    }

    /// Looks up an active sandbox.
    pub fn get_active(&self, key: &str) -> Result<Arc<Sandbox>, SandboxError> {
        let sandbox = self.get(key)?;
        sandbox.ensure_active()?;
        Ok(sandbox)
    }

    /// All sandboxes, oldest first.
    pub fn list(&self) -> Vec<SandboxView> {
        let mut views: Vec<SandboxView> = self.list_arcs().iter().map(|sb| sb.view()).collect();
        views.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        views
    }

    fn insert(&self, sandbox: Arc<Sandbox>) {
        let mut map = self.map_write();
        map.insert(sandbox.id.clone(), sandbox.clone());
        map.insert(sandbox.sandbox_id.clone(), sandbox);
    }

    fn forget(&self, sandbox: &Sandbox) {
        let mut map = self.map_write();
        map.remove(&sandbox.id);
        map.remove(&sandbox.sandbox_id);
    }

    /// Deletes a sandbox: its container, its host directory, its record.
    pub async fn delete(&self, key: &str) -> Result<(), SandboxError> {
        let sandbox = self.get(key)?;
        let engine = self.engine()?;
        // Cancel first so a creation still under way stops and cleans up after itself.
        sandbox.deleted.cancel();
        for thread in sandbox.threads_snapshot() {
            if let Some(turn) = thread.active_turn() {
                turn.cancel.cancel();
            }
        }
        if let Some(container) = sandbox.container_id() {
            engine.remove(&container).await?;
        }
        self.release(&sandbox).await;
        self.store.delete_sandbox(&sandbox.id)?;
        self.forget(&sandbox);
        tracing::info!(sandbox = %sandbox.id, "deleted");
        Ok(())
    }

    /// Model traffic of all current sandboxes.
    pub fn model_totals(&self) -> crate::proxy::ProxyUsage {
        self.proxy.totals()
    }

    /// On shutdown: gives running turns up to `grace` to end on their own, then stops
    /// the rest (their clients get an error saying why) and waits for them briefly.
    /// Returns how many had to be stopped.
    pub async fn drain_turns(&self, grace: std::time::Duration) -> usize {
        let turns: Vec<_> = self
            .list_arcs()
            .iter()
            .flat_map(|sb| sb.threads_snapshot())
            .filter_map(|t| t.active_turn())
            .collect();
        if turns.is_empty() {
            return 0;
        }
        tracing::info!(
            "waiting up to {grace:?} for {} running turn(s)",
            turns.len()
        );
        let deadline = tokio::time::Instant::now() + grace;
        for turn in &turns {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            turn.wait_finished(left).await;
        }
        let mut stopped = 0;
        for turn in turns.iter().filter(|t| !t.is_finished()) {
            turn.stop("the daemon is shutting down; this turn was stopped (send the message again to continue)");
            stopped += 1;
        }
        for turn in &turns {
            turn.wait_finished(std::time::Duration::from_secs(8)).await;
        }
        stopped
    }

    /// Running turns across all sandboxes.
    pub fn streaming_turns(&self) -> usize {
        self.list_arcs()
            .iter()
            .flat_map(|sb| sb.threads_snapshot())
            .filter(|t| t.active_turn().is_some())
            .count()
    }

    /// What a sandbox consumed through the model proxy.
    pub fn model_usage(&self, sandbox_id: &str) -> crate::proxy::ProxyUsage {
        self.proxy.usage(sandbox_id)
    }

    /// The agents registry.
    pub fn agents(&self) -> &Agents {
        &self.agents
    }
}

fn remove_dir(dir: &std::path::Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove sandbox directory");
        }
    }
}

/// Merges maps, `over` winning.
fn merged<V: Clone>(base: &BTreeMap<String, V>, over: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = base.clone();
    out.extend(over.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_prefers_the_override() {
        let base = BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 2)]);
        let over = BTreeMap::from([("b".to_owned(), 3)]);
        assert_eq!(
            merged(&base, &over),
            BTreeMap::from([("a".to_owned(), 1), ("b".to_owned(), 3)])
        );
    }
}
