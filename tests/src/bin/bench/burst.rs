//! Bursts of creates with the default pool floor (2): the first burst of 20 goes mostly
//! cold, the pool then grows toward it, and the second is served warm. Beside it, 20
//! parallel `docker run -d` of the same image, the reference for the cold path.

use std::process::Command;
use std::time::{Duration, Instant};

use sandboxd_e2e::Daemon;
use serde_json::json;

/// Creates in one burst.
pub const BURST: usize = 20;

/// One burst: its wall time and how many of its creates claimed a warm container.
pub struct Burst {
    pub wall: Duration,
    pub warm: usize,
}

/// Two bursts of [`BURST`] creates of `agent` (whose pool has the default floor),
/// each deleted before the next; between them the pool grows toward the first.
/// `others` warm containers of other shapes are ready beside it (`/metrics` counts
/// them all).
pub async fn two_bursts(daemon: &Daemon, agent: &str, others: usize) -> (Burst, Burst) {
    let mut out = Vec::new();
    for round in 0..2 {
        if round == 1 {
            daemon
                .wait_pool_within(others + BURST, Duration::from_secs(600))
                .await;
        }
        let started = Instant::now();
        let creates = (0..BURST).map(|_| daemon.create_sandbox(json!({ "agent": agent })));
        let ids = futures_util::future::join_all(creates).await;
        let wall = started.elapsed();
        let warm = ids.iter().filter(|id| super::warm(id)).count();
        futures_util::future::join_all(ids.iter().map(|id| daemon.delete_sandbox(id))).await;
        out.push(Burst { wall, warm });
    }
    let second = out.pop().expect("two bursts");
    let first = out.pop().expect("two bursts");
    (first, second)
}

/// The wall time of [`BURST`] parallel `docker run -d` of the default image.
pub fn parallel_docker_runs() -> Duration {
    let started = Instant::now();
    let runs: Vec<_> = (0..BURST)
        .map(|_| {
            std::thread::spawn(|| {
                Command::new("docker")
                    .args(["run", "-d", "--label", "sandboxd-bench=1"])
                    .args(["--entrypoint", "sleep", "sandboxd/default:bookworm", "600"])
                    .output()
                    .expect("docker run")
            })
        })
        .collect();
    let ids: Vec<String> = runs
        .into_iter()
        .map(|r| {
            let out = r.join().expect("joined");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
        .collect();
    let wall = started.elapsed();
    let _ = Command::new("docker")
        .arg("rm")
        .arg("-f")
        .args(&ids)
        .output();
    wall
}
