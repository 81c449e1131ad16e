//! Pausing idle sandboxes: a sandbox with no API call, exec, turn or open stream for
//! `--pause-after-secs` is frozen (`docker pause`, the cgroup freezer): it keeps its
//! memory and processes but costs no CPU. Its next use resumes it first, so the caller
//! never sees the difference except in `status` (`paused` meanwhile).
//!
//! The race between a pause and a new call is settled per sandbox by [`Power`]: a
//! caller first counts itself in `users`, then looks at `pausing`; the pauser first
//! sets `pausing`, then looks at `users` (both sequentially consistent). So either the
//! pauser sees the caller and gives up, or the caller sees the pause and waits for it
//! on the sandbox's lock, then resumes. No call ever reaches a frozen sandbox-init.
//!
//! A client may also pause a sandbox itself (the E2B API's pause): it is then *held*,
//! frozen whatever runs in it (its processes carry on where they were once resumed),
//! its deadline and idle expiry stop counting, and uses do not resume it (they fail
//! with a message saying so) until a client resumes it ([`Sandboxes::resume_held`]).
//! Held is kept in the store, so a paused sandbox stays paused across a restart.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Sandbox, SandboxError, Sandboxes, Status};

/// The pause state of one sandbox.
#[derive(Debug, Default)]
pub struct Power {
    /// Held while pausing or resuming.
    lock: tokio::sync::Mutex<()>,
    /// Calls and streams using the sandbox now.
    users: AtomicUsize,
    /// Set while a pause is being decided or done.
    pausing: AtomicBool,
    /// Paused by a client: only a client resumes it. Shared with the sandbox's turns,
    /// which stop at once when cancelled while it is frozen.
    held: Arc<AtomicBool>,
    /// Wakes the calls in flight when a client freezes the sandbox.
    frozen: tokio::sync::Notify,
}

/// Keeps a sandbox from being paused while alive (see [`Sandboxes::awake`]).
#[derive(Debug)]
pub struct Awake(Arc<Power>);

impl Drop for Awake {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, SeqCst);
    }
}

impl Power {
    /// Holds off pauses and resumes until the guard drops (for work that stops and
    /// starts the container itself).
    pub(super) async fn locked(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Sandbox {
    /// Whether a client paused it (see the module).
    pub fn held(&self) -> bool {
        self.power.held.load(SeqCst)
    }

    /// Sets the held flag in memory only (when restoring from the store).
    pub(super) fn restore_held(&self, held: bool) {
        self.power.held.store(held, SeqCst);
    }

    /// The held flag, for the sandbox's turns (see [`Power::held`]).
    pub fn held_flag(&self) -> Arc<AtomicBool> {
        self.power.held.clone()
    }

    /// Resolves once a client has frozen the sandbox: a call in flight selects on it
    /// rather than wait on a frozen sandbox-init until someone resumes it.
    pub async fn frozen(&self) {
        let notified = self.power.frozen.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.held() && self.status() == Status::Paused {
            return;
        }
        notified.await;
    }

    /// The error of a call a client's pause cut off: what it ran is ended once the
    /// sandbox runs again.
    pub fn paused_midway(&self, what: &str) -> SandboxError {
        SandboxError::NotActive {
            id: self.id.clone(),
            status: Status::Paused,
            error: Some(format!(
                "a client paused it while {what} ran, which ends once it is resumed; \
                 resume it (E2B: connect) and run it again"
            )),
        }
    }

    fn held_error(&self) -> SandboxError {
        SandboxError::NotActive {
            id: self.id.clone(),
            status: Status::Paused,
            error: Some("a client paused it; resume it first (E2B: connect)".into()),
        }
    }

    /// Keeps the sandbox from being paused until the guard drops, without resuming
    /// it: for streams that read only the store.
    pub fn hold(&self) -> Awake {
        self.power.users.fetch_add(1, SeqCst);
        self.touch();
        Awake(self.power.clone())
    }

    /// Whether nothing has used it for `idle`.
    fn idle_for(&self, idle: Duration) -> bool {
        self.power.users.load(SeqCst) == 0
            && self.busy.load(SeqCst) == 0
            && self
                .activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                > idle
    }
}

impl Sandboxes {
    /// Makes sure a sandbox is running (resuming it when it is paused) and keeps it
    /// from being paused until the guard drops. Fails unless it is active or paused.
    pub async fn awake(&self, sandbox: &Sandbox) -> Result<Awake, SandboxError> {
        let guard = sandbox.hold();
        if sandbox.held() {
            return Err(sandbox.held_error());
        }
        if sandbox.power.pausing.load(SeqCst) || sandbox.status() == Status::Paused {
            let _power = sandbox.power.lock.lock().await;
            if sandbox.held() {
                return Err(sandbox.held_error());
            }
            if sandbox.status() == Status::Paused {
                self.resume(sandbox).await?;
            }
        }
        sandbox.ensure_active()?;
        Ok(guard)
    }

    /// Thaws a paused sandbox (called with its power lock held).
    async fn resume(&self, sandbox: &Sandbox) -> Result<(), SandboxError> {
        let engine = self.engine()?;
        let started = Instant::now();
        if let Some(container) = sandbox.container_id() {
            engine.unpause(&container).await?;
        }
        sandbox.set_status(Status::Active, None);
        tracing::info!(
            sandbox = %sandbox.id,
            ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            "resumed"
        );
        Ok(())
    }

    /// Pauses a sandbox at a client's request, whatever runs in it, until a client
    /// resumes it. Returns `false` when a client had paused it already.
    pub async fn pause_held(&self, sandbox: &Sandbox) -> Result<bool, SandboxError> {
        let engine = self.engine()?;
        let _power = sandbox.power.lock.lock().await;
        if sandbox.held() {
            return Ok(false);
        }
        sandbox.ensure_live()?;
        // Visible first: calls that come now fail instead of reaching a frozen init.
        sandbox.power.held.store(true, SeqCst);
        if sandbox.status() == Status::Active {
            let frozen = match sandbox.container_id() {
                Some(container) => engine.pause(&container).await.map_err(SandboxError::from),
                None => Err(sandbox.held_error()),
            };
            if let Err(e) = frozen {
                sandbox.power.held.store(false, SeqCst);
                return Err(e);
            }
            sandbox.set_status(Status::Paused, None);
            sandbox.power.frozen.notify_waiters();
        }
        if let Err(e) = self.store.set_sandbox_held(&sandbox.id, true) {
            tracing::error!(sandbox = %sandbox.id, "{e}");
        }
        tracing::info!(sandbox = %sandbox.id, "paused by a client");
        Ok(true)
    }

    /// Resumes a sandbox that is paused (by a client or for being idle). Returns
    /// whether a client had paused it.
    pub async fn resume_held(&self, sandbox: &Sandbox) -> Result<bool, SandboxError> {
        let _power = sandbox.power.lock.lock().await;
        let held = sandbox.held();
        sandbox.ensure_live()?;
        if sandbox.status() == Status::Paused {
            self.resume(sandbox).await?;
        }
        if held {
            sandbox.power.held.store(false, SeqCst);
            if let Err(e) = self.store.set_sandbox_held(&sandbox.id, false) {
                tracing::error!(sandbox = %sandbox.id, "{e}");
            }
        }
        sandbox.touch();
        Ok(held)
    }

    /// Pauses (as a client would) every sandbox that asked to be paused rather than
    /// expired at its deadline, once that passed.
    pub(super) async fn pause_at_deadlines(&self) {
        for sandbox in self.list_arcs() {
            if sandbox.attributes.pause_at_deadline
                && !sandbox.held()
                && sandbox.deadline_passed()
                && matches!(sandbox.status(), Status::Active | Status::Paused)
            {
                match self.pause_held(&sandbox).await {
                    Ok(_) => tracing::info!(sandbox = %sandbox.id, "paused at its deadline"),
                    Err(e) => {
                        tracing::warn!(sandbox = %sandbox.id, "could not pause at its deadline: {e}")
                    }
                }
            }
        }
    }

    /// Pauses every active sandbox idle for longer than `--pause-after-secs`.
    /// Returns how many were paused.
    pub async fn pause_idle(&self) -> usize {
        let (Some(after), Some(engine)) = (self.settings.pause_after, self.readiness.engine())
        else {
            return 0;
        };
        let mut paused = 0;
        for sandbox in self.list_arcs() {
            if sandbox.status() != Status::Active || !sandbox.idle_for(after) {
                continue;
            }
            let Some(container) = sandbox.container_id() else {
                continue;
            };
            let _power = sandbox.power.lock.lock().await;
            sandbox.power.pausing.store(true, SeqCst);
            // Checked again after `pausing` is visible: a call that counted itself
            // before is seen here; one that comes later waits for the lock.
            if sandbox.status() == Status::Active && sandbox.idle_for(after) {
                match engine.pause(&container).await {
                    Ok(()) => {
                        sandbox.set_status(Status::Paused, None);
                        tracing::info!(sandbox = %sandbox.id, "paused (idle)");
                        paused += 1;
                    }
                    Err(e) => tracing::warn!(sandbox = %sandbox.id, "could not pause: {e}"),
                }
            }
            sandbox.power.pausing.store(false, SeqCst);
        }
        paused
    }
}
