//! Container hardening and resource limits: dropped capabilities, no-new-privileges,
//! a pids limit that stops a fork bomb, and a memory limit that stops a hog, each
//! leaving the daemon responsive and other sandboxes unaffected.

use std::time::{Duration, Instant};

use sandboxd_e2e::{docker_inspect, Daemon, Options, StatusCode};
use serde_json::json;

fn container(id: &str) -> String {
    id.replacen("sb_", "sbx-", 1)
}

#[tokio::test]
async fn sandboxes_are_hardened_and_limited() {
    let d = Daemon::start_with(Options::default().agent(
        "sized",
        json!({ "sandbox": { "memoryMB": 512, "cpuCount": 1.5 } }),
    ))
    .await;
    let plain = d.create_sandbox(json!({ "agent": "test" })).await;
    let sized = d.create_sandbox(json!({ "agent": "sized" })).await;
    let inspect = |id: &str, f: &str| docker_inspect(&container(id), f).expect("inspect");
    assert_eq!(inspect(&plain, "{{.HostConfig.CapDrop}}"), "[ALL]");
    assert!(inspect(&plain, "{{.HostConfig.SecurityOpt}}").contains("no-new-privileges"));
    assert_eq!(inspect(&plain, "{{.HostConfig.PidsLimit}}"), "1024");
    assert_eq!(
        inspect(&plain, "{{.HostConfig.Memory}}"),
        (4096u64 << 20).to_string()
    );
    assert_eq!(
        inspect(&sized, "{{.HostConfig.Memory}}"),
        (512u64 << 20).to_string()
    );
    assert_eq!(inspect(&sized, "{{.HostConfig.NanoCpus}}"), "1500000000");
    // No Docker socket or host paths beyond the init dir (and the claude binary), and
    // the sandbox's own disk.
    let mounts = inspect(&plain, "{{range .Mounts}}{{.Destination}}:{{.RW}} {{end}}");
    let mut mounts: Vec<&str> = mounts.split_whitespace().collect();
    mounts.sort_unstable();
    let mut expected = vec!["/.sandboxd/init:false", "/.sandboxd/run:true"];
    if std::env::var_os("SANDBOXD_CLAUDE_BIN").is_some() {
        expected.push("/.sandboxd/bin/claude:false");
    }
    if std::env::var_os("SANDBOXD_CODEX_BIN").is_some() {
        expected.push("/.sandboxd/bin/codex:false");
    }
    expected.extend([
        // The sandbox's own terminals (a devpts instance with its share).
        "/dev/pts:true",
        "/home/user:true",
        "/run/lock:true",
        "/tmp:true",
        "/var/tmp:true",
    ]);
    // The host's CA bundle, read-only, where it differs from the image's own (the
    // default --trust-host-ca auto, as behind a TLS-intercepting proxy).
    if mounts
        .iter()
        .any(|m| m.starts_with("/.sandboxd/ca-certificates.crt:"))
    {
        expected.push("/.sandboxd/ca-certificates.crt:false");
    }
    expected.sort_unstable();
    assert_eq!(mounts, expected);

    // Inside: no new privileges, only the kept capabilities in the bounding set.
    let out = d
        .exec(&plain, "grep -E '^(NoNewPrivs|CapBnd)' /proc/self/status")
        .await;
    assert_eq!(
        out["stdout"], "CapBnd:\t00000000000004fb\nNoNewPrivs:\t1\n",
        "{out}"
    );
    for id in [&plain, &sized] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_fork_bomb_hits_the_pids_limit_and_harms_nobody_else() {
    let d = Daemon::start_with(Options {
        args: vec!["--pids-limit".into(), "128".into()],
        ..Options::default()
    })
    .await;
    let bomb = d.create_sandbox(json!({ "agent": "test" })).await;
    let other = d.create_sandbox(json!({ "agent": "test" })).await;
    let started = Instant::now();
    let (status, out) = d
        .call(
            "POST",
            &format!("/v1/sandboxes/{bomb}/exec"),
            Some(
                json!({ "command": "bomb() { bomb | bomb & }; bomb; sleep 5", "timeoutMs": 4000 }),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The daemon and the other sandbox answer; the bombed one recovers.
    assert_eq!(d.exec(&other, "echo fine").await["stdout"], "fine\n");
    let (status, _) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, out) = d
            .call(
                "POST",
                &format!("/v1/sandboxes/{bomb}/exec"),
                Some(json!({ "command": "echo recovered" })),
            )
            .await;
        if status == StatusCode::OK && out["stdout"] == "recovered\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bombed sandbox did not recover: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in [&bomb, &other] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}

#[tokio::test]
async fn a_memory_hog_is_killed_inside_its_sandbox_only() {
    let d = Daemon::start_with(
        Options::default().agent("small", json!({ "sandbox": { "memoryMB": 128 } })),
    )
    .await;
    let small = d.create_sandbox(json!({ "agent": "small" })).await;
    // tail -c must hold 400 MiB: far over the 128 MiB limit.
    let out = d
        .exec(
            &small,
            "head -c 600M /dev/zero | tail -c 400M > /dev/null; echo \"status=$?\"",
        )
        .await;
    assert_eq!(
        out["stdout"], "status=137\n",
        "killed by SIGKILL (the OOM killer): {out}"
    );
    assert_eq!(
        d.exec(&small, "echo still here").await["stdout"],
        "still here\n"
    );
    d.delete_sandbox(&small).await;
    d.assert_no_leaks();
}

#[tokio::test]
async fn the_runtime_flag_reaches_the_engine() {
    // runc is always registered; an unknown runtime is refused by the engine.
    let d = Daemon::start_with(Options {
        args: vec!["--runtime".into(), "runc".into()],
        ..Options::default()
    })
    .await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    assert_eq!(
        docker_inspect(&container(&id), "{{.HostConfig.Runtime}}").as_deref(),
        Some("runc")
    );
    d.delete_sandbox(&id).await;
    drop(d);
    let d = Daemon::start_with(Options {
        args: vec!["--runtime".into(), "no-such-runtime".into()],
        ..Options::default()
    })
    .await;
    let (status, body) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "test" })))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-runtime")),
        "{body}"
    );
    d.assert_no_leaks();
}
