//! Whether a create would succeed now: the engine answers and the network the daemon
//! set up is still the one there. `GET /healthz` asks this, so its 200 is a promise.

use std::time::Duration;

use super::Sandboxes;
use crate::docker::EngineError;

/// How long a health check waits for the engine.
const ENGINE_DEADLINE: Duration = Duration::from_secs(5);

impl Sandboxes {
    /// Checks that the sandbox network set up at start is still there, unchanged.
    /// An error says what is wrong, in words for `/healthz` and the log.
    pub async fn check_network(&self) -> Result<(), String> {
        let engine = self
            .readiness
            .engine()
            .ok_or("the Docker engine is not connected")?;
        let attached = self
            .attachment()
            .ok_or("the sandbox network is not set up")?
            .network;
        let name = &attached.name;
        match tokio::time::timeout(ENGINE_DEADLINE, engine.network_info(&attached.id)).await {
            Err(_) => Err(format!(
                "the Docker engine did not answer within {ENGINE_DEADLINE:?}"
            )),
            Ok(Ok(now)) if now == attached => Ok(()),
            Ok(Ok(now)) => Err(format!(
                "the network {name} changed under the daemon (gateway {} -> {}, bridge {} -> {}); \
                 setting it up again",
                attached.gateway, now.gateway, attached.bridge, now.bridge
            )),
            Ok(Err(EngineError::NotFound(_))) => Err(format!(
                "the network {name} ({}) was removed; setting it up again",
                attached.id
            )),
            Ok(Err(e)) => Err(e.to_string()),
        }
    }
}
