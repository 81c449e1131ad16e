//! Benchmarks that print figures (no assertions on time): exec round trip through the
//! HTTP API next to `docker exec` on the same container, and sandbox creation time.
//!
//! Run with `cargo run --release -p sandboxd-e2e --bin bench` after building the
//! release binaries (scripts/test does both).

use std::process::Command;
use std::time::{Duration, Instant};

use sandboxd_e2e::{Daemon, Options};
use serde_json::json;

/// Percentiles of a set of durations.
struct Stats {
    p50: Duration,
    p99: Duration,
    n: usize,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        n: samples.len(),
    }
}

fn row(what: &str, s: &Stats, target: &str) {
    println!(
        "{what:<48} p50 {:>9.2} ms   p99 {:>9.2} ms   (n={:<4}) {target}",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.n
    );
}

#[tokio::main]
async fn main() {
    let daemon = Daemon::start_with(Options {
        profile: "release".into(),
        env: vec![("SANDBOXD_LOG".into(), "warn".into())],
        ..Options::default()
    })
    .await;
    println!(
        "sandboxd benchmarks (release build, this machine: {} cores)",
        cores()
    );

    // Sandbox creation, default image, no setup.
    let mut create = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let id = daemon.create_sandbox(json!({ "agent": "test" })).await;
        create.push(started.elapsed());
        ids.push(id);
    }
    let sandbox = ids[0].clone();
    let (_, detail) = daemon
        .call("GET", &format!("/v1/sandboxes/{sandbox}"), None)
        .await;
    let container = detail["sandboxId"].as_str().expect("sandboxId").to_owned();

    // Exec `true` through the API (warm up first).
    for _ in 0..20 {
        daemon.exec(&sandbox, "true").await;
    }
    let mut api = Vec::new();
    for _ in 0..300 {
        let started = Instant::now();
        let out = daemon.exec(&sandbox, "true").await;
        api.push(started.elapsed());
        assert_eq!(out["exitCode"], 0, "{out}");
    }

    // The same through the docker CLI.
    let mut docker = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let status = Command::new("docker")
            .args(["exec", "-u", "1000", &container, "bash", "-lc", "true"])
            .status()
            .expect("docker exec");
        docker.push(started.elapsed());
        assert!(status.success());
    }

    // `docker run --rm true` as the reference for creation.
    let mut run = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let status = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--entrypoint",
                "true",
                "sandboxd/default:bookworm",
            ])
            .status()
            .expect("docker run");
        run.push(started.elapsed());
        assert!(status.success());
    }

    println!();
    row(
        "exec `true` via HTTP API (bash -lc)",
        &stats(api),
        "target p50 <= 5 ms",
    );
    row(
        "exec `true` via `docker exec` CLI (bash -lc)",
        &stats(docker),
        "reference",
    );
    row(
        "sandbox create to active (no setup)",
        &stats(create),
        "target p50 <= 300 ms",
    );
    row(
        "`docker run --rm true` (reference)",
        &stats(run),
        "reference",
    );
    println!(
        "daemon RSS with {} sandboxes: {} KiB",
        ids.len(),
        daemon_rss_kib(&daemon)
    );

    for id in &ids {
        daemon.delete_sandbox(id).await;
    }
    daemon.assert_no_leaks();
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The daemon's resident set, from /proc (0 if unknown).
fn daemon_rss_kib(daemon: &Daemon) -> u64 {
    let pid = daemon.pid();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
