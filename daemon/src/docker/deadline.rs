//! Deadlines on engine calls: a hung engine answers nothing, and a caller must not wait
//! on it forever. Every lifecycle call is bounded by one of two named limits; image
//! builds, pulls and imports are not (they take as long as they take, and report
//! progress).

use std::future::Future;
use std::time::Duration;

use super::EngineError;

/// Looking something up: inspect, list, ping, pause, networks.
pub const QUICK: Duration = Duration::from_secs(10);
/// Changing a container: create and start, stop, remove.
pub const LIFECYCLE: Duration = Duration::from_secs(30);

/// Runs `call`, or fails with [`EngineError::Timeout`] naming `what` after `limit`.
pub(super) async fn within<T>(
    limit: Duration,
    what: impl FnOnce() -> String,
    call: impl Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result,
        Err(_) => Err(EngineError::Timeout(format!(
            "{}: no answer within {} s",
            what(),
            limit.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_past_its_deadline_is_a_timeout_naming_it() {
        let limit = Duration::from_millis(20);
        let hung = within(limit, || "inspecting container x".into(), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        let e = hung.await.expect_err("past its deadline");
        assert!(matches!(e, EngineError::Timeout(_)), "{e:?}");
        assert!(e.to_string().contains("inspecting container x"), "{e}");
        assert!(within(QUICK, String::new, async { Ok(1) }).await.is_ok());
    }
}
