//! A Docker engine that hangs for one daemon only: a unix socket that relays every
//! connection to the real engine and can stop relaying for a while. A daemon started
//! with `DOCKER_HOST` set to [`EngineHiccup::host`] sees its engine hang and come back,
//! while every other test keeps the real engine to itself.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// The relay; it stops when dropped.
#[derive(Debug)]
pub struct EngineHiccup {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    hung: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The real engine's socket: `DOCKER_HOST` when it is a unix socket, else Docker's.
fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

impl EngineHiccup {
    /// Starts relaying (within a tokio runtime).
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sandboxd-test-engine-")
            .tempdir()
            .expect("a directory for the relay's socket");
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).expect("the relay's socket");
        let (hung, _) = watch::channel(false);
        let relay_hung = hung.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(engine) = UnixStream::connect(engine_socket()).await else {
                    continue;
                };
                let (client_in, client_out) = client.into_split();
                let (engine_in, engine_out) = engine.into_split();
                tokio::spawn(pump(client_in, engine_out, relay_hung.subscribe()));
                tokio::spawn(pump(engine_in, client_out, relay_hung.subscribe()));
            }
        });
        Self {
            _dir: dir,
            socket,
            hung,
            task,
        }
    }

    /// The `DOCKER_HOST` value that reaches the engine through the relay.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Stops relaying: requests and answers wait, as with a hung engine.
    pub fn hang(&self) {
        self.hung.send_replace(true);
    }

    /// Relays again; what waited goes through.
    pub fn resume(&self) {
        self.hung.send_replace(false);
    }
}

impl Drop for EngineHiccup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies one direction, holding each chunk while the relay is hung.
async fn pump(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mut hung: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hung.wait_for(|hung| !*hung).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
