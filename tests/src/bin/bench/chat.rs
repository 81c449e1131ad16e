//! A chat turn's cost without the daemon: the same CLI run directly in the sandbox's
//! container with `docker exec`, against the same scripted model.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

/// `n` runs of the CLI in `container`, each to its exit.
pub fn direct_turns(
    container: &str,
    gateway: &str,
    model_url: &str,
    model_port: &str,
    n: usize,
) -> Vec<Duration> {
    // Sandboxes reach no host service but the daemon's model proxy: let the direct
    // runs reach the scripted model for the time of the measurement.
    let opening = [
        "-p",
        "tcp",
        "-d",
        gateway,
        "--dport",
        model_port,
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
    for i in 0..n {
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
                container,
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
    direct
}

/// The host's address on Docker's default bridge. A fresh engine (20.10) lists no
/// gateway in that network's IPAM config, so the bridge interface is asked.
pub fn docker_bridge_gateway() -> String {
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
