//! What a test reads of `/metrics`: its text, and the warm pool: how many warm
//! containers are ready, and a wait for them.

use std::time::Duration;

use crate::{eventually, Daemon};

impl Daemon {
    /// The text of `/metrics` (with the API key).
    pub async fn metrics(&self) -> String {
        self.request("GET", "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// `sandboxd_pool_ready` from `/metrics`: warm containers whose sandbox-init
    /// answers, ready to be claimed.
    pub async fn pool_ready(&self) -> usize {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix("sandboxd_pool_ready "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no sandboxd_pool_ready in {text}"))
    }

    /// Waits until at least `n` warm containers are ready (two minutes at most).
    pub async fn wait_pool(&self, n: usize) {
        self.wait_pool_within(n, Duration::from_secs(120)).await;
    }

    /// Waits until at least `n` warm containers are ready, `within` at most.
    pub async fn wait_pool_within(&self, n: usize, within: Duration) {
        eventually(within, &format!("{n} warm container(s)"), || async {
            self.pool_ready().await >= n
        })
        .await;
    }
}
