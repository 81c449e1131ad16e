//! The `sandboxd` CLI's sandbox commands (`ls`, `exec`, `rm`) against a real daemon.

use std::process::{Command, Output};

use sandboxd_e2e::{daemon_bin, Daemon};
use serde_json::json;

fn sandboxd(d: &Daemon, args: &[&str]) -> Output {
    Command::new(daemon_bin("debug"))
        .args(args)
        .env("SANDBOXD_URL", &d.url)
        .env("SANDBOXD_API_KEY", &d.key)
        .output()
        .expect("sandboxd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_cli_lists_runs_in_and_removes_sandboxes() {
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({"agent": "test"})).await;

    let out = sandboxd(&d, &["ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(listing.starts_with("ID "), "{listing}");
    let line = listing
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} in {listing}"));
    assert!(line.contains("active") && line.contains("test"), "{line}");

    // Arguments reach the command as given (quoted for the shell), output and exit
    // code come back.
    let out = sandboxd(
        &d,
        &[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo \"$0 out\"; echo err >&2; exit 3",
            "two words; $HOME",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "two words; $HOME out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = sandboxd(&d, &["exec", &id, "--cwd", "/tmp", "--", "pwd"]);
    assert_eq!(text(&out.stdout), "/tmp\n");
    assert!(out.status.success());

    let out = sandboxd(&d, &["rm", &id, "sb_nosuchsandboxxxx"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), format!("{id}\n"));
    assert!(
        text(&out.stderr).contains("sb_nosuchsandboxxxx"),
        "{}",
        text(&out.stderr)
    );
    let out = sandboxd(&d, &["ls"]);
    assert!(!text(&out.stdout).contains(&id));
    let out = sandboxd(&d, &["exec", &id, "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("404"), "{}", text(&out.stderr));
    d.assert_no_leaks();
}
