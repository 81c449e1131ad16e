//! Whether the daemon can serve sandboxes yet: the Docker engine connection and the
//! preparation of the default image happen in the background after the HTTP listener is
//! up, and this says how far they got.

use std::sync::OnceLock;

use tokio::sync::watch;

use crate::docker::Engine;

/// The start-up phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Still preparing; the text says what it is doing.
    Starting(String),
    /// Sandboxes can be served.
    Ready,
    /// Preparation failed; the text says why (it is retried).
    Failed(String),
}

/// Shared start-up state.
#[derive(Debug)]
pub struct Readiness {
    engine: OnceLock<Engine>,
    phase: watch::Sender<Phase>,
    /// Asks the preparation task to check the network now rather than at its next
    /// round.
    recheck: tokio::sync::Notify,
    /// How many times the daemon became ready (after each engine hiccup, once more).
    readied: std::sync::atomic::AtomicU64,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            engine: OnceLock::new(),
            phase: watch::Sender::new(Phase::Starting("starting".into())),
            recheck: tokio::sync::Notify::new(),
            readied: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Readiness {
    /// The engine, once connected (sandboxes may be managed from then on).
    pub fn engine(&self) -> Option<&Engine> {
        self.engine.get()
    }

    /// Records the connected engine (the first one wins).
    pub fn set_engine(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Moves to a new phase.
    pub fn set_phase(&self, phase: Phase) {
        if phase == Phase::Ready {
            self.readied
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.phase.send_replace(phase);
    }

    /// How many times the daemon became ready: a change means it set itself up again
    /// (after an engine hiccup or restart), however briefly it was not ready.
    pub fn readied(&self) -> u64 {
        self.readied.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Asks for the network to be checked now (something failed that it may explain).
    pub fn request_recheck(&self) {
        self.recheck.notify_one();
    }

    /// Resolves when a check was asked for.
    pub async fn recheck_requested(&self) {
        self.recheck.notified().await;
    }

    /// Waits until the phase is `Ready`.
    pub async fn wait_ready(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Ready).await;
    }
}
