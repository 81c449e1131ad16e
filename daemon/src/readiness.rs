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
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            engine: OnceLock::new(),
            phase: watch::Sender::new(Phase::Starting("starting".into())),
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
        self.phase.send_replace(phase);
    }

    /// Waits until the phase is `Ready`.
    pub async fn wait_ready(&self) {
        let mut rx = self.phase.subscribe();
        let _ = rx.wait_for(|p| *p == Phase::Ready).await;
    }
}
