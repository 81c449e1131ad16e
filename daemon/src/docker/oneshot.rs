//! Waiting for a container that runs one job and exits (the agent loader).

use std::time::Duration;

use super::{Engine, EngineError};

impl Engine {
    /// Waits until container `id` has exited, at most `limit`; returns its exit code,
    /// or `None` when it was still running at the deadline.
    pub async fn wait_exit(&self, id: &str, limit: Duration) -> Result<Option<i64>, EngineError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(20);
        loop {
            let info = self.docker.inspect_container(id, None).await?;
            let state = info.state.unwrap_or_default();
            if !state.running.unwrap_or(false) {
                return Ok(Some(state.exit_code.unwrap_or(-1)));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
