//! Agent files are code: the project's own, or source a token holder deploys. The
//! loader container evaluates each one's top level. A file that writes without end
//! there must not fill the host's disk (the loader's output directory is on the state
//! directory's filesystem, its root filesystem on the engine's), and one whose top
//! level never finishes must not hold up every other file's load for minutes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sandboxd_e2e::{Daemon, Options, StatusCode};

const GOOD: &str = r#"import { agent } from "@21st-sdk/agent"
export default agent({ maxTurns: 2 })
"#;

/// Writes 8 MiB files at its top level, 100 per directory, wherever it can.
const FLOOD: &str = r#"import { agent } from "@21st-sdk/agent"
import { writeFileSync } from "node:fs"
const chunk = Buffer.alloc(8 << 20, 120)
for (const dir of ["/out", "/tmp", "/var/tmp", "/root", "/project"]) {
  for (let i = 0; i < 100; i++) {
    try { writeFileSync(`${dir}/flood-${i}`, chunk) } catch { break }
  }
}
export default agent({})
"#;

const SPIN: &str = r#"import { agent } from "@21st-sdk/agent"
while (true) {}
export default agent({})
"#;

/// The bytes under `dir`, now.
fn bytes_under(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(meta) = entry.metadata() {
                total += meta.blocks() * 512;
                if meta.is_dir() {
                    pending.push(entry.path());
                }
            }
        }
    }
    total
}

#[tokio::test]
async fn agent_files_that_flood_or_spin_at_load_are_bounded_and_named() {
    let agents = sandboxd_e2e::ts_agents_dir();
    for (file, text) in [("flood.ts", FLOOD), ("good.ts", GOOD), ("spin.ts", SPIN)] {
        std::fs::write(agents.path().join(file), text).expect("write");
    }
    let state = sandboxd_e2e::StateDir::new();
    // The most the load held under the state directory, watched while it runs.
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done, dir) = (peak.clone(), done.clone(), state.path().to_owned());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(bytes_under(&dir), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let d = Daemon::start_with(Options {
        reuse: Some((state.path().to_owned(), agents.path().to_owned())),
        ..Options::default()
    })
    .await;
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let peak = peak.load(Ordering::Relaxed);
    let (_, problems) = d.call("GET", "/v1/agents/problems", None).await;
    eprintln!(
        "a flooding and a spinning agent file: the state directory peaked at {} MiB; {problems}",
        peak >> 20
    );
    // The good file loaded beside them.
    assert_eq!(
        d.call("GET", "/v1/agents/good", None).await.0,
        StatusCode::OK
    );
    let problem = |file: &str| sandboxd_e2e::agent_problem(&problems, file);
    assert!(problem("spin.ts").contains("did not finish"), "{problems}");
    // 100 files of 8 MiB were tried into the output alone: the files' code cannot
    // write there (nor anywhere else on disk), so the state directory holds the
    // bundles and the store, not the flood.
    assert!(
        peak < 64 << 20,
        "the state directory peaked at {peak} bytes"
    );
    d.assert_no_leaks();
}
