//! The Docker engine, for sandbox lifecycle only: create, start, remove, list, and
//! building images. Exec and files never go through Docker (see `init_client`).

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions,
};
use bollard::Docker;
use deadline::{within, LIFECYCLE, QUICK};
use futures_util::{Stream, StreamExt};

pub mod deadline;
mod lifecycle;
mod network;
mod oneshot;
pub use network::NetworkInfo;

/// A failure talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine did not answer at all.
    #[error("the Docker engine is unreachable ({0}); start it (`dockerd`) or check DOCKER_HOST")]
    Unreachable(String),
    /// The engine answered 404.
    #[error("{0}")]
    NotFound(String),
    /// The engine answered with another error.
    #[error("the Docker engine refused: {0}")]
    Refused(String),
    /// The engine did not answer in time (hung or overloaded).
    #[error("the Docker engine did not answer in time ({0}); it may be hung or overloaded")]
    Timeout(String),
}

impl From<bollard::errors::Error> for EngineError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code: 404,
                message,
            } => Self::NotFound(message),
            E::DockerResponseServerError { message, .. } => Self::Refused(message),
            E::DockerStreamError { error } => Self::Refused(error),
            E::JsonDataError { message, .. } => Self::Refused(message),
            other => Self::Unreachable(other.to_string()),
        }
    }
}

/// What to run as one sandbox container.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Entrypoint (replaces the image's).
    pub entrypoint: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Labels.
    pub labels: HashMap<String, String>,
    /// `host:container[:ro]` bind mounts.
    pub binds: Vec<String>,
    /// `(host directory, container path)`: volumes bound to a host directory. Unlike a
    /// bind mount, Docker first copies the image's content at that path into the
    /// directory while it is empty. They are anonymous, so removing the container
    /// removes them (never the directory's content).
    pub bound_volumes: Vec<(String, String)>,
    /// Hostname inside the container.
    pub hostname: String,
    /// Working directory of the entrypoint.
    pub working_dir: String,
    /// Resource limits.
    pub limits: Limits,
    /// The network to join.
    pub network: String,
    /// The OCI runtime (Docker's default when `None`).
    pub runtime: Option<String>,
    /// `name:address` lines for the container's `/etc/hosts`.
    pub extra_hosts: Vec<String>,
    /// Lets setuid programs raise privileges (`sudo`): no-new-privileges is off. The
    /// capabilities stay the same few ([`KEPT_CAPABILITIES`]).
    pub allow_setuid: bool,
    /// For a job's container: its root filesystem read-only, `(path, size in MiB)`
    /// memory-backed scratch directories, and the largest file its processes may write
    /// (`RLIMIT_FSIZE`), so that what it writes to the host is bounded.
    pub confined: Option<Confined>,
}

/// What a job's container may write (see [`ContainerSpec::confined`]).
#[derive(Debug, Clone, Default)]
pub struct Confined {
    /// `(path, size in MiB)` tmpfs mounts.
    pub scratch: Vec<(String, u64)>,
    /// The largest file, in bytes.
    pub max_file_bytes: i64,
}

/// Resource limits of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory (and memory+swap) in bytes.
    pub memory_bytes: Option<i64>,
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
    /// Most processes and threads at once (a fork bomb stops here).
    pub pids: Option<i64>,
}

/// An anonymous `local` volume whose data is the host directory `device`.
fn bound_volume(device: String, target: String) -> bollard::models::Mount {
    use bollard::models::{Mount, MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig};
    Mount {
        target: Some(target),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            no_copy: Some(false),
            driver_config: Some(MountVolumeOptionsDriverConfig {
                name: Some("local".into()),
                options: Some(HashMap::from([
                    ("type".to_owned(), "none".to_owned()),
                    ("o".to_owned(), "bind".to_owned()),
                    ("device".to_owned(), device),
                ])),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Capabilities a sandbox keeps: what sandbox-init needs to run processes and files
/// as the sandbox user, and what root setup steps (apt, chown) need. Everything else
/// Docker grants by default (NET_RAW, MKNOD, SYS_CHROOT, SETFCAP, SETPCAP,
/// AUDIT_WRITE) is dropped.
pub const KEPT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "SETUID",
    "SETGID",
    "KILL",
    "NET_BIND_SERVICE",
];

/// What the engine knows of an image.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// Content-addressed id (`sha256:…`).
    pub id: String,
    /// Labels.
    pub labels: HashMap<String, String>,
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
}

impl Engine {
    /// Connects to the local engine (DOCKER_HOST or the default socket) and agrees on
    /// an API version, so that both old (20.10) and new engines work.
    pub async fn connect() -> Result<Self, EngineError> {
        let docker = Docker::connect_with_local_defaults()?;
        within(QUICK, || "connecting".to_owned(), async {
            let docker = docker.negotiate_version().await?;
            docker.ping().await?;
            Ok(Self { docker })
        })
        .await
    }

    /// Checks that the engine still answers.
    pub async fn ping(&self) -> Result<(), EngineError> {
        within(QUICK, || "ping".to_owned(), async {
            self.docker.ping().await?;
            Ok(())
        })
        .await
    }

    /// Whether an image exists locally, and its labels.
    pub async fn image_labels(
        &self,
        image: &str,
    ) -> Result<Option<HashMap<String, String>>, EngineError> {
        Ok(self.image_info(image).await?.map(|i| i.labels))
    }

    /// An image's id and labels, if it exists locally.
    pub async fn image_info(&self, image: &str) -> Result<Option<ImageInfo>, EngineError> {
        let inspected = within(QUICK, || format!("inspecting the image {image}"), async {
            Ok(self.docker.inspect_image(image).await)
        })
        .await?;
        match inspected {
            Ok(info) => Ok(Some(ImageInfo {
                id: info.id.unwrap_or_default(),
                labels: info.config.and_then(|c| c.labels).unwrap_or_default(),
            })),
            Err(e) => match EngineError::from(e) {
                EngineError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    /// A running container's IPv4 address on network `name`, and the host pid of its
    /// first process (to reach its namespaces).
    pub async fn container_address(
        &self,
        id: &str,
        network: &str,
    ) -> Result<(std::net::Ipv4Addr, i64), EngineError> {
        let info = self.inspect(id).await?;
        let pid = info
            .state
            .and_then(|s| s.pid)
            .filter(|pid| *pid > 0)
            .ok_or_else(|| EngineError::Refused(format!("container {id} is not running")))?;
        let address = info
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|n| n.get(network).cloned())
            .and_then(|e| e.ip_address)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| {
                EngineError::Refused(format!("container {id} has no address on {network}"))
            })?;
        Ok((address, pid))
    }

    /// Creates and starts a container; returns its id. A container that fails to start
    /// is removed again.
    pub async fn run(&self, spec: ContainerSpec) -> Result<String, EngineError> {
        let body = ContainerCreateBody {
            image: Some(spec.image),
            entrypoint: Some(spec.entrypoint),
            cmd: Some(vec![]),
            env: Some(spec.env),
            labels: Some(spec.labels),
            hostname: Some(spec.hostname),
            working_dir: Some(spec.working_dir),
            user: Some("0:0".into()),
            host_config: Some(HostConfig {
                binds: Some(spec.binds),
                mounts: Some(
                    spec.bound_volumes
                        .into_iter()
                        .map(|(device, target)| bound_volume(device, target))
                        .collect(),
                ),
                init: Some(false),
                network_mode: Some(spec.network),
                extra_hosts: Some(spec.extra_hosts),
                runtime: spec.runtime,
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                security_opt: Some(if spec.allow_setuid {
                    Vec::new()
                } else {
                    vec!["no-new-privileges".into()]
                }),
                pids_limit: spec.limits.pids,
                memory: spec.limits.memory_bytes,
                memory_swap: spec.limits.memory_bytes,
                nano_cpus: spec.limits.cpus.map(|c| (c * 1e9) as i64),
                // Only sandbox-init writes the container's log, but it is on the host
                // disk: keep it bounded whatever the engine's default driver.
                readonly_rootfs: spec.confined.as_ref().map(|_| true),
                tmpfs: spec.confined.as_ref().map(|c| {
                    c.scratch
                        .iter()
                        .map(|(path, mb)| {
                            (path.clone(), format!("size={mb}m,mode=1777,nosuid,nodev"))
                        })
                        .collect()
                }),
                ulimits: spec.confined.as_ref().map(|c| {
                    vec![bollard::models::ResourcesUlimits {
                        name: Some("fsize".into()),
                        soft: Some(c.max_file_bytes),
                        hard: Some(c.max_file_bytes),
                    }]
                }),
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([
                        ("max-size".to_owned(), "1m".to_owned()),
                        ("max-file".to_owned(), "2".to_owned()),
                    ])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(spec.name),
            ..Default::default()
        };
        let name = options.name.clone().unwrap_or_default();
        let created = within(LIFECYCLE, || format!("creating {name}"), async {
            Ok(self.docker.create_container(Some(options), body).await?)
        })
        .await?;
        let started = within(LIFECYCLE, || format!("starting {name}"), async {
            Ok(self.docker.start_container(&created.id, None).await?)
        })
        .await;
        if let Err(e) = started {
            let _ = self.remove(&created.id).await;
            return Err(e);
        }
        Ok(created.id)
    }

    /// Starts a container again if it is not running (a Docker restart stops them).
    pub async fn ensure_running(&self, id: &str) -> Result<(), EngineError> {
        let info = self.inspect(id).await?;
        let running = info.state.and_then(|s| s.running).unwrap_or(false);
        if !running {
            within(LIFECYCLE, || format!("starting container {id}"), async {
                Ok(self.docker.start_container(id, None).await?)
            })
            .await?;
        }
        Ok(())
    }

    /// Inspects a container.
    async fn inspect(
        &self,
        id: &str,
    ) -> Result<bollard::models::ContainerInspectResponse, EngineError> {
        within(QUICK, || format!("inspecting container {id}"), async {
            Ok(self.docker.inspect_container(id, None).await?)
        })
        .await
    }

    /// Where a container's writable layer is on the host (overlay2's `UpperDir`), when
    /// the storage driver says.
    pub async fn writable_layer(&self, id: &str) -> Result<Option<PathBuf>, EngineError> {
        let info = self.inspect(id).await?;
        Ok(info
            .graph_driver
            .and_then(|g| g.data.get("UpperDir").cloned())
            .map(PathBuf::from))
    }

    /// The host pid of a running container's init process (`State.Pid`).
    pub async fn init_pid(&self, id: &str) -> Result<u32, EngineError> {
        let info = self.inspect(id).await?;
        info.state
            .and_then(|s| s.pid)
            .and_then(|pid| u32::try_from(pid).ok())
            .filter(|pid| *pid > 0)
            .ok_or_else(|| EngineError::Refused(format!("container {id} is not running")))
    }

    /// Reads one regular file of an image (at most `max` bytes), through a container
    /// that is created, never started, and removed. `None` when the image has no
    /// such file or it is larger.
    pub async fn read_image_file(
        &self,
        image: &str,
        path: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec!["/nonexistent".to_owned()]),
            network_disabled: Some(true),
            ..Default::default()
        };
        let id = self.docker.create_container(None, body).await?.id;
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let mut archive = Vec::new();
        let mut stream = self.docker.download_from_container(&id, Some(options));
        let mut read = Ok(true);
        while let Some(chunk) = stream.next().await {
            match chunk.map_err(EngineError::from) {
                Ok(chunk) if archive.len() as u64 + chunk.len() as u64 <= max + 4096 => {
                    archive.extend_from_slice(&chunk)
                }
                Ok(_) => {
                    read = Ok(false);
                    break;
                }
                Err(EngineError::NotFound(_)) => {
                    read = Ok(false);
                    break;
                }
                Err(e) => {
                    read = Err(e);
                    break;
                }
            }
        }
        drop(stream);
        self.remove(&id).await?;
        if !read? {
            return Ok(None);
        }
        let mut entries = tar::Archive::new(archive.as_slice());
        let Some(Ok(mut entry)) = entries.entries().ok().and_then(|mut e| e.next()) else {
            return Ok(None);
        };
        if !entry.header().entry_type().is_file() || entry.size() > max {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)
            .map_err(|e| EngineError::Refused(format!("reading {path} of {image}: {e}")))?;
        Ok(Some(bytes))
    }

    /// Lists containers (running or not) carrying a label `key=value`.
    pub async fn list_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_owned(),
                vec![format!("{key}={value}")],
            )])),
            ..Default::default()
        };
        within(
            QUICK,
            || format!("listing containers labelled {key}"),
            async { Ok(self.docker.list_containers(Some(options)).await?) },
        )
        .await
    }

    /// Pulls an image from its registry, reporting progress lines.
    pub async fn pull(&self, image: &str, progress: impl Fn(&str)) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(image.to_owned()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item?;
            if let Some(status) = info.status {
                progress(&status);
            }
        }
        Ok(())
    }

    /// Imports a root filesystem tarball as an image (what `docker import` does).
    pub async fn import_rootfs<S>(&self, tag: &str, tarball: S) -> Result<(), EngineError>
    where
        S: Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    {
        let (repo, tag) = split_ref(tag);
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let body = bollard::body_try_stream(tarball);
        let mut stream = self.docker.create_image(Some(options), Some(body), None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }

    /// Builds an image from a tar build context, reporting each output line.
    pub async fn build(
        &self,
        tag: &str,
        context_tar: Vec<u8>,
        build_args: HashMap<String, String>,
        labels: HashMap<String, String>,
        progress: impl Fn(&str),
    ) -> Result<(), EngineError> {
        let options = bollard::query_parameters::BuildImageOptions {
            dockerfile: "Dockerfile".to_owned(),
            t: Some(tag.to_owned()),
            rm: true,
            forcerm: true,
            buildargs: Some(build_args),
            labels: Some(labels),
            ..Default::default()
        };
        let body = bollard::body_full(context_tar.into());
        let mut stream = self.docker.build_image(options, None, Some(body));
        // The classic builder reports a failing RUN step as an `error` item in the
        // stream, not as an HTTP error: keep the last lines to explain it.
        let mut tail: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(e) => {
                    let e = EngineError::from(e);
                    return Err(with_tail(e, &tail));
                }
            };
            if let Some(line) = info.stream {
                let line = strip_ansi(&line);
                for l in line.lines().filter(|l| !l.trim().is_empty()) {
                    progress(l);
                    tail.push(l.to_owned());
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
            }
            if let Some(detail) = info.error_detail {
                let message = detail.message.unwrap_or_default();
                return Err(with_tail(EngineError::Refused(message), &tail));
            }
        }
        Ok(())
    }
}

fn with_tail(e: EngineError, tail: &[String]) -> EngineError {
    match e {
        EngineError::Refused(m) if !tail.is_empty() => EngineError::Refused(format!(
            "{m}\n--- last build output ---\n{}",
            tail.join("\n")
        )),
        other => other,
    }
}

/// Removes terminal colour sequences (the builder colours a step's stderr).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits `repo:tag` (a registry port is not a tag).
fn split_ref(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(split_ref("a/b:c"), ("a/b", "c"));
        assert_eq!(split_ref("a/b"), ("a/b", "latest"));
        assert_eq!(split_ref("host:5000/a"), ("host:5000/a", "latest"));
    }

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\x1b[91mred\x1b[0m plain"), "red plain");
    }

    #[test]
    fn classifies_errors() {
        let e = bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message: "no such container".into(),
        };
        assert!(matches!(EngineError::from(e), EngineError::NotFound(_)));
        let e = bollard::errors::Error::SocketNotFoundError("/var/run/docker.sock".into());
        assert!(matches!(EngineError::from(e), EngineError::Unreachable(_)));
    }
}
