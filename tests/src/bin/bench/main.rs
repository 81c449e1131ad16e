//! Benchmarks that print figures (no assertions on time): exec round trip through the
//! HTTP API next to `docker exec` on the same container, and sandbox creation time.
//!
//! Run with `cargo run --release -p sandboxd-e2e --bin bench` after building the
//! release binaries (scripts/test does both).

use std::process::Command;
use std::time::{Duration, Instant};

use sandboxd_e2e::{claude_bin, Daemon, Options};
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
    // A scripted model on the Docker bridge address, so the CLI run directly in a
    // container can reach it too (the daemon reaches it the same way).
    let gateway = docker_bridge_gateway();
    let script = std::env::temp_dir().join(format!("sandboxd-bench-{}.json", std::process::id()));
    let replies: Vec<_> = (0..64)
        .map(|i| json!({ "text": format!("ok {i}") }))
        .collect();
    std::fs::write(&script, serde_json::to_string(&replies).expect("json")).expect("script");
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

    let daemon = Daemon::start_with(Options {
        profile: "release".into(),
        env: vec![("SANDBOXD_LOG".into(), "warn".into())],
        args: vec![
            "--model-upstream".into(),
            model_url.clone(),
            "--claude-bin".into(),
            claude_bin(),
        ],
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

    // Write a 1 MiB file and read it back.
    let mib = "a".repeat(1024 * 1024);
    let mut files = Vec::new();
    for i in 0..40 {
        let path = format!("/home/user/bench-{i}.txt");
        let started = Instant::now();
        let (status, _) = daemon
            .call(
                "POST",
                &format!("/v1/sandboxes/{sandbox}/files"),
                Some(json!({ "files": { path.clone(): mib.clone() } })),
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
        assert_eq!(read["content"].as_str().map(str::len), Some(mib.len()));
    }

    // The same through the docker CLI.
    let mut docker: Vec<Duration> = Vec::new();
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

    // A chat turn through the daemon (new thread each time) against the CLI run
    // directly in the same container with `docker exec`, same scripted model.
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
    // Sandboxes reach no host service but the daemon's model proxy: let the direct
    // runs reach the scripted model for the time of the measurement.
    let opening = [
        "-p",
        "tcp",
        "-d",
        &gateway,
        "--dport",
        &model_port,
        "-m",
        "comment",
        "--comment",
        "sandboxd-bench",
        "-j",
        "ACCEPT",
    ];
    let iptables = |op: &[&str]| {
        Command::new("iptables")
            .arg("-w")
            .args(op)
            .args(opening)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        iptables(&["-I", "SANDBOXD-INPUT", "1"]),
        "could not open the scripted model to sandboxes"
    );
    let mut direct = Vec::new();
    for i in 0..8 {
        let line =
            json!({"type": "user", "message": {"role": "user", "content": format!("direct {i}")},
                          "parent_tool_use_id": null, "session_id": ""})
            .to_string();
        let started = Instant::now();
        let mut child = Command::new("docker")
            .args([
                "exec",
                "-i",
                "-u",
                "1000",
                "-w",
                "/home/user",
                "-e",
                "HOME=/home/user",
            ])
            .args([
                "-e",
                &format!("ANTHROPIC_BASE_URL={model_url}"),
                "-e",
                "ANTHROPIC_API_KEY=bench",
            ])
            .args([
                "-e",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
                "-e",
                "DISABLE_AUTOUPDATER=1",
            ])
            .args([
                &container,
                "/.sandboxd/bin/claude",
                "--output-format",
                "stream-json",
                "--verbose",
            ])
            .args([
                "--input-format",
                "stream-json",
                "--include-partial-messages",
            ])
            .args(["--permission-mode", "bypassPermissions"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("docker exec claude");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin");
            writeln!(stdin, "{line}").expect("prompt");
        }
        let out = child.wait_with_output().expect("claude output");
        direct.push(started.elapsed());
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"type\":\"result\""));
    }
    iptables(&["-D", "SANDBOXD-INPUT"]);
    let docker_exec_p50 = stats(docker.clone()).p50;
    let turn_p50 = stats(turns.clone()).p50;
    let direct_p50 = stats(direct.clone()).p50;

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
    row(
        "write + read back a 1 MiB file",
        &stats(files),
        "target p50 <= 10 ms",
    );
    row("chat turn via the daemon (to [DONE])", &stats(turns), "");
    row(
        "same CLI via `docker exec` (to exit)",
        &stats(direct),
        "reference",
    );
    println!(
        "daemon overhead on a turn: {:+.1} ms (daemon p50 - (direct p50 - docker exec p50)); target <= 50 ms",
        (turn_p50.as_secs_f64() - (direct_p50.as_secs_f64() - docker_exec_p50.as_secs_f64())) * 1e3
    );
    println!(
        "daemon RSS with {} sandboxes: {} KiB",
        ids.len(),
        sandboxd_e2e::rss_kib(daemon.pid())
    );
    // sandbox-init is each container's PID 1.
    let init_rss: Vec<u64> = ids
        .iter()
        .filter_map(|id| {
            let name = id.replacen("sb_", "sbx-", 1);
            sandboxd_e2e::docker_inspect(&name, "{{.State.Pid}}")?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .map(sandboxd_e2e::rss_kib)
        .collect();
    println!(
        "sandbox-init RSS: max {} KiB, mean {} KiB over {} sandboxes; target <= 2048 KiB",
        init_rss.iter().max().copied().unwrap_or(0),
        init_rss.iter().sum::<u64>() / init_rss.len().max(1) as u64,
        init_rss.len()
    );

    for id in &ids {
        daemon.delete_sandbox(id).await;
    }
    daemon.assert_no_leaks();
    let _ = model.kill();
    let _ = model.wait();
    let _ = std::fs::remove_file(&script);
}

/// The host's address on Docker's default bridge. A fresh engine (20.10) lists no
/// gateway in that network's IPAM config, so the bridge interface is asked.
fn docker_bridge_gateway() -> String {
    let output = |program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let bridge = output(
        "docker",
        &[
            "network",
            "inspect",
            "bridge",
            "-f",
            r#"{{index .Options "com.docker.network.bridge.name"}}"#,
        ],
    );
    let bridge = if bridge.is_empty() {
        "docker0".to_owned()
    } else {
        bridge
    };
    let addr = output("ip", &["-4", "-o", "addr", "show", "dev", &bridge]);
    addr.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("{bridge} has no IPv4 address: {addr:?}"))
        .to_owned()
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
