//! Passwordless `sudo` for `user`, in a sandbox whose agent chose it (`sudo: true`):
//! root reached through sudo still reaches nothing outside its container. It cannot
//! read the daemon's state or the model key, reach another sandbox, remount the
//! read-only mounts, gain capabilities beyond the container's few, or lift its cgroup
//! limits. Without the choice, sudo fails (no-new-privileges).

use sandboxd_e2e::{docker_inspect, Daemon, Options};
use serde_json::{json, Value};

const MODEL_KEY: &str = "sk-ant-hostile-sudo-secret-4f1c";

/// Runs `command` through the relay API's exec (as `user`); returns exit code and
/// both streams joined.
async fn run(d: &Daemon, sandbox: &str, command: &str) -> (i64, String) {
    let out: Value = d.exec(sandbox, command).await;
    let text = format!(
        "{}{}",
        out["stdout"].as_str().unwrap_or_default(),
        out["stderr"].as_str().unwrap_or_default()
    );
    (out["exitCode"].as_i64().unwrap_or(-1), text)
}

#[tokio::test]
async fn root_through_sudo_stays_inside_its_sandbox() {
    let mut options = Options::default()
        .agent(
            "sudoer",
            json!({"name": "Sudoer", "sandbox": {"sudo": true, "memoryMB": 256}}),
        )
        .agent("plain", json!({"name": "Plain"}));
    options
        .env
        .push(("ANTHROPIC_API_KEY".into(), MODEL_KEY.into()));
    let d = Daemon::start_with(options).await;
    let plain = d.create_sandbox(json!({"agent": "plain"})).await;
    let root = d.create_sandbox(json!({"agent": "sudoer"})).await;
    let other = d.create_sandbox(json!({"agent": "sudoer"})).await;

    // Without the choice, sudo fails.
    let (code, text) = run(&d, &plain, "sudo -n id -u").await;
    assert_ne!(code, 0, "sudo worked without the choice: {text}");
    // With it, root.
    let (code, text) = run(&d, &root, "sudo -n id -u 2>/dev/null").await;
    assert_eq!((code, text.trim()), (0, "0"), "{text}");

    // The daemon's state directory and the model key are nowhere inside.
    let state = d.state_dir.display().to_string();
    let (code, text) = run(&d, &root, &format!("sudo -n ls {state}")).await;
    assert_ne!(code, 0, "the state directory is visible: {text}");
    let (_, text) = run(
        &d,
        &root,
        &format!(
            "sudo -n grep -rlsF {MODEL_KEY} /proc/[0-9]*/environ /etc /root /home /tmp /.sandboxd 2>/dev/null | wc -l"
        ),
    )
    .await;
    assert_eq!(text.trim(), "0", "the model key was found");

    // No capability beyond the container's few: no CAP_SYS_ADMIN (bit 21), no
    // CAP_NET_ADMIN (12), no CAP_SYS_PTRACE (19), no CAP_SYS_MODULE (16).
    let (_, text) = run(
        &d,
        &root,
        "sudo -n grep CapEff /proc/self/status 2>/dev/null",
    )
    .await;
    let hex = text.split_whitespace().last().unwrap_or_default();
    let caps = u64::from_str_radix(hex, 16).expect("CapEff");
    for bit in [12, 16, 19, 21] {
        assert_eq!(caps & (1 << bit), 0, "capability {bit} in {text}");
    }

    // Read-only mounts stay read-only.
    for command in [
        "sudo -n mount -o remount,rw /.sandboxd/init",
        "sudo -n sh -c 'echo x >> /.sandboxd/init'",
        "sudo -n mount -t tmpfs none /mnt",
    ] {
        let (code, text) = run(&d, &root, command).await;
        assert_ne!(code, 0, "{command} worked: {text}");
    }

    // Its cgroup limits hold: root can neither mount a cgroup hierarchy to rewrite
    // them nor use more memory than its bound.
    let (code, text) = run(&d, &root, "sudo -n mount -t cgroup2 none /mnt").await;
    assert_ne!(code, 0, "mounted the cgroup hierarchy: {text}");
    let (code, text) = run(
        &d,
        &root,
        "sudo -n python3 -c 'b = b\"x\" * (512 << 20); print(len(b))'",
    )
    .await;
    assert_ne!(code, 0, "root used 512 MiB in a 256 MiB sandbox: {text}");
    assert_eq!(
        docker_inspect(&root.replacen("sb_", "sbx-", 1), "{{.HostConfig.Memory}}").as_deref(),
        Some((256u64 << 20).to_string().as_str())
    );

    // Another sandbox (a sudo one too) is out of reach, even for root.
    let (code, text) = run(
        &d,
        &other,
        "nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1; echo started",
    )
    .await;
    assert_eq!(code, 0, "{text}");
    let address = docker_inspect(
        &other.replacen("sb_", "sbx-", 1),
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
    )
    .expect("the other sandbox's address");
    let (_, own) = run(
        &d,
        &other,
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/",
    )
    .await;
    assert_eq!(own.trim(), "200", "the other sandbox's own server answers");
    let (code, text) = run(
        &d,
        &root,
        &format!("sudo -n curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://{address}:8000/"),
    )
    .await;
    assert!(
        code != 0 && !text.contains("200"),
        "reached the other sandbox: {code} {text}"
    );

    // And the daemon serves everyone as before.
    let (code, text) = run(&d, &plain, "echo still here").await;
    assert_eq!((code, text.trim()), (0, "still here"));
    for id in [plain, root, other] {
        d.delete_sandbox(&id).await;
    }
    d.assert_no_leaks();
}
