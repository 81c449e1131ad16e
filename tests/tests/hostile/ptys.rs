//! Terminals are a kernel budget every container shares (`kernel.pty.max`: 3,072 for
//! all of them). A process in one sandbox that opens `/dev/ptmx` in a loop must get
//! its sandbox's share, not every terminal of the host, so that the other sandboxes'
//! terminals (E2B PTYs, the console's) keep working.

use std::time::Duration;

use sandboxd_e2e::{eventually, Daemon};
use serde_json::json;

/// Opens terminals until refused, writes how many to `/tmp/ptys`, holds them.
const HOG: &str = r#"
import os, time
held, why = [], ""
while not why:
    try:
        held.append(os.openpty())
    except OSError as e:
        why = e.strerror
open("/tmp/ptys.part", "w").write(f"{len(held)} {why}")
os.rename("/tmp/ptys.part", "/tmp/ptys")
time.sleep(120)
"#;

#[tokio::test]
async fn a_sandbox_opening_terminals_in_a_loop_gets_its_share_and_no_more() {
    let d = Daemon::start().await;
    let hog = d.create_sandbox(json!({ "agent": "test" })).await;
    let other = d.create_sandbox(json!({ "agent": "test" })).await;
    let out = d
        .exec(
            &hog,
            &format!("ulimit -n 4096; nohup python3 -c '{HOG}' >/dev/null 2>&1 & echo started"),
        )
        .await;
    assert_eq!(out["stdout"], "started\n", "{out}");
    eventually(Duration::from_secs(60), "the hog to report", || {
        let (d, hog) = (&d, &hog);
        async move {
            let out = d.exec(hog, "cat /tmp/ptys 2>/dev/null || true").await;
            !out["stdout"].as_str().unwrap_or_default().is_empty()
        }
    })
    .await;
    let report = d.exec(&hog, "cat /tmp/ptys").await["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!("a sandbox opening terminals in a loop: {report}");
    let held: u32 = report
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{report}"));
    assert!(held <= 64, "one sandbox held {held} terminals: {report}");
    assert!(
        held >= 32,
        "a sandbox still has terminals of its own: {report}"
    );
    // The other sandbox still gets terminals, while the hog holds its share.
    let out = d
        .exec(
            &other,
            "python3 -c 'import os; t = [os.openpty() for _ in range(16)]; print(len(t))'",
        )
        .await;
    assert_eq!(out["stdout"], "16\n", "{out}");
    d.delete_sandbox(&hog).await;
    d.delete_sandbox(&other).await;
    d.assert_no_leaks();
}
