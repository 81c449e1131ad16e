//! Changing a container's state: freeze and thaw it, stop it and keep it, kill and
//! remove it. Each call is bounded (see [`super::deadline`]).

use std::time::Duration;

use bollard::query_parameters::RemoveContainerOptions;

use super::deadline::{within, LIFECYCLE, QUICK};
use super::{Engine, EngineError};

impl Engine {
    /// Freezes every process of a container (the cgroup freezer, `docker pause`): it
    /// keeps its memory and costs no CPU until [`Engine::unpause`].
    pub async fn pause(&self, id: &str) -> Result<(), EngineError> {
        within(QUICK, || format!("pausing container {id}"), async {
            Ok(self.docker.pause_container(id).await?)
        })
        .await
    }

    /// Thaws a paused container. One that is not paused is not an error.
    pub async fn unpause(&self, id: &str) -> Result<(), EngineError> {
        let unpaused = within(QUICK, || format!("unpausing container {id}"), async {
            Ok(self.docker.unpause_container(id).await?)
        });
        match unpaused.await {
            Err(EngineError::Refused(m)) if m.contains("is not paused") => Ok(()),
            other => other,
        }
    }

    /// Stops a container and keeps it (its filesystem stays for an operator, or for
    /// a later start). One that is paused is thawed first; one already stopped is
    /// not an error.
    pub async fn stop(&self, id: &str) -> Result<(), EngineError> {
        self.unpause(id).await.or_else(|e| match e {
            EngineError::Refused(m) if m.contains("is not running") => Ok(()),
            other => Err(other),
        })?;
        let options = bollard::query_parameters::StopContainerOptionsBuilder::default()
            .t(5)
            .build();
        within(LIFECYCLE, || format!("stopping container {id}"), async {
            match self.docker.stop_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                // 304: it was not running.
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 304, ..
                }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// Kills and removes a container with its anonymous volumes. A container that is
    /// already gone is not an error.
    pub async fn remove(&self, id: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = within(LIFECYCLE, || format!("removing container {id}"), async {
            Ok(self.docker.remove_container(id, Some(options)).await)
        });
        match removed.await? {
            Ok(()) => Ok(()),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(()),
                // Someone else is removing it: return once it is really gone.
                EngineError::Refused(m) if m.contains("already in progress") => {
                    within(
                        LIFECYCLE,
                        || format!("waiting for container {id} to go"),
                        async {
                            loop {
                                let inspected = self.docker.inspect_container(id, None).await;
                                if let Err(EngineError::NotFound(_)) =
                                    inspected.map_err(EngineError::from)
                                {
                                    return Ok(());
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        },
                    )
                    .await
                }
                other => Err(other),
            },
        }
    }
}
