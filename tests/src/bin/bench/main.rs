//! Benchmarks that print one table (no assertions on time): exec through the API
//! next to `docker exec`; create cold, from the warm pool, and `docker run -d`;
//! resume from pause; a 1 MiB write and read; a chat turn's daemon overhead; 20
//! concurrent creates; the daemon's RSS at 0, 10 and 100 sandboxes; what an idle
//! sandbox costs.
//!
//! Run with `cargo run --release -p sandboxd-e2e --bin bench` after building the
//! release binaries (`. scripts/lib.sh && build_binaries release`).

mod burst;
mod chat;
mod report;

use std::process::Command;
use std::time::{Duration, Instant};

use report::{cgroup_memory, container, mib, stats, Table};
use sandboxd_e2e::{claude_bin, Daemon, Options};
use serde_json::{json, Value};

/// Warm containers kept for the `pooled` agent.
const POOL: usize = 20;

async fn timed_creates(daemon: &Daemon, agent: &str, n: usize) -> (Vec<Duration>, Vec<String>) {
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        ids.push(daemon.create_sandbox(json!({ "agent": agent })).await);
        times.push(started.elapsed());
    }
    (times, ids)
}

async fn status(daemon: &Daemon, id: &str) -> String {
    let (_, list) = daemon.call("GET", "/v1/sandboxes", None).await;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|s| s["id"] == id)
        .and_then(|s| s["status"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether a sandbox's container came from the warm pool.
fn warm(id: &str) -> bool {
    sandboxd_e2e::docker_inspect(&name(id), "{{index .Config.Labels \"sandboxd.pool\"}}")
        .is_some_and(|v| v == "warm")
}

fn name(id: &str) -> String {
    id.replacen("sb_", "sbx-", 1)
}

#[tokio::main]
async fn main() {
    let machine = report::machine();
    let gateway = chat::docker_bridge_gateway();
    let script = std::env::temp_dir().join(format!("sandboxd-bench-{}.json", std::process::id()));
    let replies: Vec<_> = (0..64)
        .map(|i| json!({ "text": format!("ok {i}") }))
        .collect();
    std::fs::write(&script, serde_json::to_string(&replies).expect("json")).expect("script");
    // A scripted model on the Docker bridge address, so the CLI run directly in a
    // container can reach it too (the daemon reaches it the same way).
    let mut model = Command::new(sandboxd_e2e::daemon_bin("release"))
        .args([
            "scripted-model",
            "--listen",
            &format!("{gateway}:0"),
            "--script",
        ])
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("scripted model");
    let line = sandboxd_e2e::first_line(&mut model, "the scripted model");
    let model_url = line.trim().trim_start_matches("listening on ").to_owned();
    let model_port = model_url.rsplit(':').next().expect("port").to_owned();

    // `test` is created cold, `pooled` (the same shape) from the warm pool. No pause
    // here: the `docker exec` references go around the daemon.
    let daemon = Daemon::start_with(
        Options {
            profile: "release".into(),
            env: vec![("SANDBOXD_LOG".into(), "warn".into())],
            args: [
                "--model-upstream",
                &model_url,
                "--claude-bin",
                &claude_bin(),
                "--max-sandboxes",
                "0",
                "--pause-after-secs",
                "0",
                "--pool-size",
                "0",
                "--pool-agent",
                &format!("pooled={POOL}"),
                "--pool-agent",
                "bursty=2",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        }
        .agent("pooled", json!({"name": "Pooled"}))
        // A shape of its own (its memory), with the default pool floor.
        .agent(
            "bursty",
            json!({"name": "Bursty", "sandbox": {"memoryMB": 1024}}),
        ),
    )
    .await;
    eprintln!("bench: {machine}");
    let mut table = Table::default();
    let rss = || sandboxd_e2e::rss_kib(daemon.pid()) as f64 / 1024.0;

    daemon
        .wait_pool_within(POOL, Duration::from_secs(600))
        .await;
    let rss_0 = rss();

    // First, while the `pooled` pool has seen no demand and stays at its floor (then
    // the count of ready containers tells the `bursty` pool's).
    eprintln!("bench: bursts");
    let docker_burst = burst::parallel_docker_runs();
    daemon
        .wait_pool_within(POOL + 2, Duration::from_secs(600))
        .await;
    let (first_burst, second_burst) = burst::two_bursts(&daemon, "bursty", POOL).await;

    eprintln!("bench: creates");
    let (cold, cold_ids) = timed_creates(&daemon, "test", 10).await;
    let rss_10 = rss();
    let mut pooled = Vec::new();
    let mut pooled_warm = 0;
    let mut ids = cold_ids.clone();
    for _ in 0..2 {
        daemon
            .wait_pool_within(POOL, Duration::from_secs(600))
            .await;
        let (times, more) = timed_creates(&daemon, "pooled", 10).await;
        pooled.extend(times);
        pooled_warm += more.iter().filter(|id| warm(id)).count();
        ids.extend(more);
    }
    let mut run_d = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let out = Command::new("docker")
            .args(["run", "-d", "--label", "sandboxd-bench=1"])
            .args(["--entrypoint", "sleep", "sandboxd/default:bookworm", "600"])
            .output()
            .expect("docker run");
        run_d.push(started.elapsed());
        assert!(out.status.success(), "{out:?}");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let _ = Command::new("docker").args(["rm", "-f", &id]).output();
    }
    daemon
        .wait_pool_within(POOL, Duration::from_secs(600))
        .await;
    let started = Instant::now();
    let creates = (0..20).map(|_| daemon.create_sandbox(json!({ "agent": "pooled" })));
    let burst = futures_util::future::join_all(creates).await;
    let concurrent = started.elapsed();
    let burst_warm = burst.iter().filter(|id| warm(id)).count();
    ids.extend(burst);

    eprintln!("bench: exec, files, chat");
    let sandbox = cold_ids[0].clone();
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
    let mut docker = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        let status = Command::new("docker")
            .args(["exec", "-u", "1000", &name(&sandbox), "bash", "-lc", "true"])
            .status()
            .expect("docker exec");
        docker.push(started.elapsed());
        assert!(status.success());
    }
    let mebibyte = "a".repeat(1024 * 1024);
    let mut files = Vec::new();
    for i in 0..40 {
        let path = format!("/home/user/bench-{i}.txt");
        let started = Instant::now();
        let (status, _) = daemon
            .call(
                "POST",
                &format!("/v1/sandboxes/{sandbox}/files"),
                Some(json!({ "files": { path.clone(): mebibyte.clone() } })),
            )
            .await;
        assert!(status.is_success(), "write: {status}");
        let (status, read) = daemon
            .call(
                "GET",
                &format!("/v1/sandboxes/{sandbox}/files?path={path}"),
                None,
            )
            .await;
        files.push(started.elapsed());
        assert!(status.is_success(), "read: {status}");
        assert_eq!(read["content"].as_str().map(str::len), Some(mebibyte.len()));
    }
    let mut turns = Vec::new();
    for i in 0..8 {
        let started = Instant::now();
        let (status, _, chunks) = daemon
            .chat(
                "test",
                json!({ "sandboxId": sandbox, "messages": [sandboxd_e2e::user_message(&format!("bench {i}"))] }),
            )
            .await;
        turns.push(started.elapsed());
        assert!(status.is_success() && chunks.iter().any(|c| c["type"] == "finish"));
    }
    let direct = chat::direct_turns(&name(&sandbox), &gateway, &model_url, &model_port, 8);

    eprintln!("bench: 100 sandboxes");
    while ids.len() < 100 {
        let batch = (100 - ids.len()).min(10);
        let creates = (0..batch).map(|_| daemon.create_sandbox(json!({ "agent": "pooled" })));
        ids.extend(futures_util::future::join_all(creates).await);
    }
    let rss_100 = rss();
    let idle: Vec<(u64, u64, u64)> = ids
        .iter()
        .filter_map(|id| {
            let (full, pid) = container(&name(id))?;
            let (usage, rss) = cgroup_memory(&full)?;
            Some((usage, rss, sandboxd_e2e::rss_kib(pid) * 1024))
        })
        .collect();
    let mean =
        |f: fn(&(u64, u64, u64)) -> u64| idle.iter().map(f).sum::<u64>() / idle.len().max(1) as u64;
    let init_max = idle.iter().map(|i| i.2).max().unwrap_or(0);
    let deletes = ids.iter().map(|id| daemon.delete_sandbox(id));
    futures_util::future::join_all(deletes).await;

    eprintln!("bench: pause and resume");
    let (resume, paused_usage) = pause_resume(&model_url).await;

    let exec_p50 = stats(api.clone()).p50;
    let docker_p50 = stats(docker.clone()).p50;
    let overhead = stats(turns.clone()).p50.as_secs_f64()
        - (stats(direct.clone()).p50.as_secs_f64() - docker_p50.as_secs_f64());
    table.timed("exec `true` via the HTTP API", &stats(api), "p50 <= 5 ms");
    table.timed(
        "exec `true` via `docker exec` (reference)",
        &stats(docker),
        "~60 ms",
    );
    table.timed(
        "create to `active`, cold (no setup)",
        &stats(cold),
        "p50 <= 300 ms",
    );
    table.timed(
        "create to `active`, from the warm pool",
        &stats(pooled),
        &format!("p50 <= 50 ms; <= 0.15x `docker run -d` ({pooled_warm} of 20 warm)"),
    );
    table.timed("`docker run -d` (reference)", &stats(run_d), "");
    table.figure(
        "20 concurrent creates (warm pool), wall",
        format!("{:.2} s", concurrent.as_secs_f64()),
        20,
        &format!("< 3 s ({burst_warm} of 20 claimed warm containers)"),
    );
    table.figure(
        "20 concurrent creates, default pool floor: first burst, wall",
        format!("{:.2} s", first_burst.wall.as_secs_f64()),
        burst::BURST,
        &format!(
            "<= 1.1x {:.2} s of 20 parallel `docker run -d` ({} warm)",
            docker_burst.as_secs_f64(),
            first_burst.warm
        ),
    );
    table.figure(
        "the same burst again (the pool grew toward it), wall",
        format!("{:.2} s", second_burst.wall.as_secs_f64()),
        burst::BURST,
        &format!("< 1 s ({} of 20 warm)", second_burst.warm),
    );
    table.timed(
        "exec `true` on a paused sandbox (resume + exec)",
        &stats(resume.clone()),
        &format!(
            "resume ~ {:.1} ms over a plain exec",
            (stats(resume).p50.as_secs_f64() - exec_p50.as_secs_f64()) * 1e3
        ),
    );
    table.timed("write + read back 1 MiB", &stats(files), "p50 <= 10 ms");
    table.timed("chat turn via the daemon (to `[DONE]`)", &stats(turns), "");
    table.timed(
        "same CLI via `docker exec` (to exit)",
        &stats(direct),
        "reference",
    );
    table.figure(
        "daemon overhead on a chat turn",
        format!("{:+.1} ms", overhead * 1e3),
        8,
        "<= 50 ms (daemon p50 − (direct p50 − docker exec p50))",
    );
    table.figure(
        "daemon RSS at 0 / 10 / 100 sandboxes",
        format!("{rss_0:.1} / {rss_10:.1} / {rss_100:.1} MiB"),
        100,
        &format!(
            "<= 100 MB (with {} warm containers, not counted)",
            POOL + burst::BURST
        ),
    );
    table.figure(
        "idle sandbox: cgroup memory (rss) / sandbox-init RSS, mean",
        format!(
            "{} ({}) / {}",
            mib(mean(|i| i.0)),
            mib(mean(|i| i.1)),
            mib(mean(|i| i.2))
        ),
        idle.len(),
        &format!("init <= 2 MB (max {})", mib(init_max)),
    );
    table.figure(
        "paused sandbox: cgroup memory, mean",
        mib(paused_usage),
        5,
        "frozen: no CPU; memory kept",
    );

    println!("\nsandboxd bench, release build, on: {machine}\n");
    table.print();

    drop(daemon);
    let _ = model.kill();
    let _ = model.wait();
    let _ = std::fs::remove_file(&script);
}

/// A daemon that pauses after 1 s: exec on paused sandboxes (each resumed first), and
/// the memory of paused ones.
async fn pause_resume(model_url: &str) -> (Vec<Duration>, u64) {
    let mut daemon = Daemon::start_with(Options {
        profile: "release".into(),
        env: vec![("SANDBOXD_LOG".into(), "warn".into())],
        args: [
            "--model-upstream",
            model_url,
            "--pause-after-secs",
            "1",
            "--pool-size",
            "0",
        ]
        .map(String::from)
        .to_vec(),
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(daemon.create_sandbox(json!({ "agent": "test" })).await);
    }
    let mut resume = Vec::new();
    let mut usage = Vec::new();
    for round in 0..4 {
        for id in &ids {
            let deadline = Instant::now() + Duration::from_secs(60);
            while status(&daemon, id).await != "paused" {
                assert!(Instant::now() < deadline, "{id} was never paused");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if round == 0 {
                if let Some((full, _)) = container(&name(id)) {
                    usage.extend(cgroup_memory(&full).map(|m| m.0));
                }
            }
            let started = Instant::now();
            let out: Value = daemon.exec(id, "true").await;
            resume.push(started.elapsed());
            assert_eq!(out["exitCode"], 0, "{out}");
        }
    }
    for id in &ids {
        daemon.delete_sandbox(id).await;
    }
    assert!(daemon.terminate().success());
    daemon.assert_no_leaks();
    let mean = usage.iter().sum::<u64>() / usage.len().max(1) as u64;
    (resume, mean)
}
