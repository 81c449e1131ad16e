//! Disk and CPU: a sandbox that fills its disk gets `ENOSPC` (in a process and through
//! the files API) while the host disk grows by at most its bound; its disk survives a
//! daemon restart and a lost mount and leaves no mount or loop device behind; a full
//! disk under the state directory fails writes with a clear error and never corrupts
//! `state.db`; a sandbox spinning on every core gets at most its CPU cap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sandboxd_e2e::{docker_inspect, Daemon, Options, StatusCode};
use serde_json::{json, Value};

fn container(id: &str) -> String {
    id.replacen("sb_", "sbx-", 1)
}

/// Lines of the host's mount table and loop devices that mention `path`.
fn mounts_and_loops_under(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let loops = Command::new("losetup")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    mounts
        .lines()
        .chain(loops.lines())
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// Docker volumes whose data is a directory under `path`.
fn volumes_under(path: &Path) -> Vec<String> {
    let needle = path.display().to_string();
    let out = Command::new("docker")
        .args(["volume", "ls", "-q"])
        .output()
        .expect("docker volume ls");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|v| docker_volume_device(v).is_some_and(|d| d.contains(&needle)))
        .map(str::to_owned)
        .collect()
}

fn docker_volume_device(volume: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["volume", "inspect", "-f", "{{.Options.device}}", volume])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Host bytes a sandbox occupies: its directory's allocated blocks (the disk image)
/// plus its container's writable layer.
fn host_bytes(d: &Daemon, id: &str) -> u64 {
    let out = Command::new("du")
        .args(["-s", "-B1", "-x"])
        .arg(d.state_dir.join("sandboxes").join(id))
        .output()
        .expect("du");
    let dir: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a size");
    let upper = docker_inspect(&container(id), "{{.GraphDriver.Data.UpperDir}}").expect("upper");
    let out = Command::new("du")
        .args(["-s", "-B1", &upper])
        .output()
        .expect("du");
    let layer: u64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a size");
    dir + layer
}

async fn write_file(d: &Daemon, id: &str, path: &str, bytes: usize) -> (StatusCode, Value) {
    use base64::Engine as _;
    let content = base64::engine::general_purpose::STANDARD.encode(vec![7u8; bytes]);
    d.call(
        "POST",
        &format!("/v1/sandboxes/{id}/files"),
        Some(json!({ "files": { path: content }, "encoding": "base64" })),
    )
    .await
}

#[tokio::test]
async fn a_sandbox_cannot_write_past_its_disk_bound() {
    const BOUND_MB: u64 = 64;
    let mut d = Daemon::start_with(Options {
        args: vec!["--disk-mb".into(), BOUND_MB.to_string()],
        ..Options::default()
    })
    .await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;

    // The image's own home is there, the user's, on the bounded filesystem.
    let out = d
        .exec(
            &id,
            "stat -c '%U' /home/user /home/user/.bashrc; df -m --output=size /home/user /tmp /var/tmp | tail -n +2 | tr -s ' '",
        )
        .await;
    let text = out["stdout"].as_str().expect("stdout");
    assert!(text.starts_with("user\nuser\n"), "{out}");
    for size in text.lines().skip(2) {
        let mb: u64 = size.trim().parse().expect("df size");
        assert!(mb <= BOUND_MB, "a {mb} MiB filesystem: {out}");
    }

    let sandbox_dir = d.state_dir.join("sandboxes").join(&id);
    assert_eq!(volumes_under(&sandbox_dir).len(), 1, "the home volume");
    assert_eq!(
        mounts_and_loops_under(&sandbox_dir).len(),
        3,
        "its disk's mount and loop device, and its terminals' devpts"
    );

    // Its container log (host disk too) is bounded.
    assert_eq!(
        docker_inspect(&container(&id), "{{.HostConfig.LogConfig.Config}}").as_deref(),
        Some("map[max-file:2 max-size:1m]")
    );

    // /home/user, /tmp and /var/tmp share the bound.
    let before = host_bytes(&d, &id);
    let out = d
        .exec(
            &id,
            "for f in /home/user/a /tmp/b /var/tmp/c; do dd if=/dev/urandom of=$f bs=1M count=100 2>&1 | grep -o 'No space left on device'; done; true",
        )
        .await;
    assert_eq!(
        out["stdout"],
        "No space left on device\n".repeat(3),
        "every write past the bound fails with ENOSPC: {out}"
    );
    let after = host_bytes(&d, &id);
    eprintln!(
        "host bytes of the sandbox: {before} before, {after} after writing 300 MiB into a {BOUND_MB} MiB bound"
    );
    assert!(
        after <= before + (BOUND_MB << 20),
        "the host disk grew by {} bytes, more than the {BOUND_MB} MiB bound",
        after - before
    );

    // Through the files API: a clear error naming the bound; exec still works.
    let (status, body) = write_file(&d, &id, "more.bin", 2 << 20).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{BOUND_MB} MiB")),
        "names the bound: {body}"
    );
    assert_eq!(
        d.exec(&id, "rm -f /home/user/a /tmp/b /var/tmp/c && echo freed")
            .await["stdout"],
        "freed\n"
    );
    let (status, body) = write_file(&d, &id, "more.bin", 2 << 20).await;
    assert_eq!(status, StatusCode::OK, "room again once freed: {body}");

    // A daemon restart keeps the disk; so does losing the mount (a reboot): it is
    // mounted again before the container starts.
    d.exec(&id, "echo kept > /home/user/marker").await;
    d.terminate();
    let stopped = Command::new("docker")
        .args(["stop", "-t", "1", &container(&id)])
        .output()
        .expect("docker stop");
    assert!(stopped.status.success(), "{stopped:?}");
    let unmounted = Command::new("umount")
        .arg(sandbox_dir.join("disk"))
        .output()
        .expect("umount");
    assert!(unmounted.status.success(), "{unmounted:?}");
    let d2 = Daemon::start_with(Options {
        args: vec!["--disk-mb".into(), BOUND_MB.to_string()],
        reuse: Some((d.state_dir.clone(), d.agents_dir.clone())),
        ..Options::default()
    })
    .await;
    let (status, view) = d2.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(view["status"], "active", "{status} {view}");
    let out = d2
        .exec(
            &id,
            "cat /home/user/marker; df -m --output=size /home/user | tail -1",
        )
        .await;
    let text = out["stdout"].as_str().expect("stdout");
    assert!(text.starts_with("kept\n"), "{out}");

    // Delete: no container, directory, mount or loop device is left.
    d2.delete_sandbox(&id).await;
    d2.assert_no_leaks();
    let mut left = mounts_and_loops_under(&sandbox_dir);
    left.extend(volumes_under(&sandbox_dir));
    assert!(left.is_empty(), "left behind: {left:?}");
    drop(d2);
    drop(d);
}

#[tokio::test]
async fn the_disk_bound_costs_little_at_create() {
    async fn p50_create_ms(d: &Daemon) -> (u128, Vec<String>) {
        let mut times = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            ids.push(d.create_sandbox(json!({ "agent": "test" })).await);
            times.push(started.elapsed().as_millis());
        }
        times.sort_unstable();
        (times[1], ids)
    }
    let bounded = Daemon::start().await;
    let unbounded = Daemon::start_with(Options {
        args: vec!["--disk-mb".into(), "0".into()],
        ..Options::default()
    })
    .await;
    // Warm both (the image's first use).
    let warm = bounded.create_sandbox(json!({ "agent": "test" })).await;
    bounded.delete_sandbox(&warm).await;
    let (with_disk, ids) = p50_create_ms(&bounded).await;
    let (without, plain) = p50_create_ms(&unbounded).await;
    // The daemon logs how long each disk took (truncate, mkfs.ext4, mount, mkdir).
    let log = strip_colours(&bounded.log_text());
    let mut disk_ms: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("disk ready"))
        .filter_map(|l| l.split("ms=").nth(1))
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|n| n.parse().ok())
        .collect();
    disk_ms.sort_unstable();
    assert_eq!(disk_ms.len(), 4, "one disk per create:\n{log}");
    eprintln!(
        "create p50 over 3: {with_disk} ms with the default 10240 MiB disk, {without} ms without (--disk-mb 0); the disk step itself took {disk_ms:?} ms (p50 {} ms)",
        disk_ms[disk_ms.len() / 2]
    );
    // The default bound: a 10 GiB filesystem at /home/user; none without it.
    let out = bounded
        .exec(&ids[0], "df -m --output=size /home/user | tail -1")
        .await;
    let mb: u64 = out["stdout"]
        .as_str()
        .and_then(|s| s.trim().parse().ok())
        .expect("df size");
    assert!((9000..=10240).contains(&mb), "{out}");
    let sandbox_dir = bounded.state_dir.join("sandboxes").join(&ids[0]);
    let host = std::fs::metadata(sandbox_dir.join("disk.img")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    });
    eprintln!("a new default disk occupies {host:?} bytes on the host (sparse)");
    assert!(!unbounded
        .state_dir
        .join("sandboxes")
        .join(&plain[0])
        .join("disk.img")
        .exists());
    for id in &ids {
        bounded.delete_sandbox(id).await;
    }
    for id in &plain {
        unbounded.delete_sandbox(id).await;
    }
    bounded.assert_no_leaks();
    unbounded.assert_no_leaks();
    assert!(mounts_and_loops_under(&bounded.state_dir).is_empty());
    assert!(volumes_under(&bounded.state_dir).is_empty());
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn strip_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A small tmpfs mounted on a temporary directory, unmounted on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn new(mb: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sandboxd-test-smallfs-")
            .tempdir()
            .expect("temp dir");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mb}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .expect("mount");
        assert!(out.status.success(), "mounting a tmpfs: {out:?}");
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Writes `name` until the filesystem has at most `leave` bytes free.
    fn fill(&self, name: &str, leave: u64) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join(name))
            .expect("filler");
        let chunk = vec![1u8; 64 * 1024];
        // Bounded: at most the filesystem's size in chunks.
        for _ in 0..(1 << 20) {
            if free_bytes(&self.path()) <= leave {
                return;
            }
            if file.write_all(&chunk).is_err() {
                return;
            }
        }
        panic!("never filled");
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        sandboxd_e2e::unmount_under(self.dir.path());
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df avail")
}

#[tokio::test]
async fn a_full_state_disk_fails_writes_clearly_and_keeps_the_store() {
    let fs = SmallFs::new(48);
    let state = fs.path().join("state");
    let agents = tempfile::tempdir().expect("agents dir");
    std::fs::create_dir(&state).expect("state dir");
    std::fs::write(agents.path().join("test.json"), r#"{"name": "Test agent"}"#).expect("agent");
    let args = vec![
        "--reserve-disk-mb".into(),
        "16".into(),
        "--disk-mb".into(),
        "8".into(),
    ];
    let options = || Options {
        args: args.clone(),
        reuse: Some((state.clone(), agents.path().to_owned())),
        agents: Vec::new(),
        ..Options::default()
    };
    let mut d = Daemon::start_with(options()).await;
    let kept = d.create_sandbox(json!({ "agent": "test" })).await;
    let (status, _) = d
        .call("PUT", "/v1/agents/small", Some(json!({ "name": "Small" })))
        .await;
    assert!(status.is_success(), "deploying an agent: {status}");

    // Below the reserve: creates are refused, clearly.
    fs.fill("filler-1", 8 << 20);
    let (status, body) = d
        .call("POST", "/v1/sandboxes", Some(json!({ "agent": "test" })))
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("--reserve-disk-mb")),
        "{body}"
    );

    // Completely full: a write to the store fails with a clear error, not a 500.
    fs.fill("filler-2", 0);
    let big = "x".repeat(2 << 20);
    let (status, body) = d
        .call(
            "PUT",
            "/v1/agents/big",
            Some(json!({ "name": "Big", "systemPrompt": big })),
        )
        .await;
    eprintln!("a store write on a full disk: {status} {body}");
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    // Reads keep working, and so does the sandbox.
    let (status, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(d.exec(&kept, "echo alive").await["stdout"], "alive\n");
    let (status, _) = d.call("GET", "/v1/agents/small", None).await;
    assert_eq!(status, StatusCode::OK);

    // Intact: SQLite's own check, then a restart on it finds everything.
    d.terminate();
    let _ = std::fs::remove_file(fs.path().join("filler-1"));
    let _ = std::fs::remove_file(fs.path().join("filler-2"));
    let check = Command::new("sqlite3")
        .arg(state.join("state.db"))
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("sqlite3");
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        "ok",
        "{check:?}"
    );
    let d2 = Daemon::start_with(options()).await;
    let (_, view) = d2.call("GET", &format!("/v1/sandboxes/{kept}"), None).await;
    assert_eq!(view["status"], "active", "{view}");
    let (status, _) = d2.call("GET", "/v1/agents/small", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = d2.call("GET", "/v1/agents/big", None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the failed write left nothing"
    );
    d2.delete_sandbox(&kept).await;
    d2.assert_no_leaks();
    assert!(mounts_and_loops_under(&state).is_empty());
    drop(d2);
    drop(d);
}

#[tokio::test]
async fn a_sandbox_spinning_on_every_core_gets_at_most_its_cap() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cap = cores.saturating_sub(1).max(1);
    let d = Daemon::start().await;
    let id = d.create_sandbox(json!({ "agent": "test" })).await;
    assert_eq!(
        docker_inspect(&container(&id), "{{.HostConfig.NanoCpus}}").as_deref(),
        Some((cap as u64 * 1_000_000_000).to_string().as_str()),
        "the default cap is every core but one (at least one)"
    );
    let full = docker_inspect(&container(&id), "{{.Id}}").expect("id");
    // cgroup v1 (cpuacct on its own or with cpu) or v2, with the cgroupfs driver.
    let v1 = [
        format!("/sys/fs/cgroup/cpuacct/docker/{full}/cpuacct.usage"),
        format!("/sys/fs/cgroup/cpu,cpuacct/docker/{full}/cpuacct.usage"),
    ];
    let v2 = format!("/sys/fs/cgroup/system.slice/docker-{full}.scope/cpu.stat");
    let usage_ns = || -> u64 {
        if let Some(text) = v1.iter().find_map(|f| std::fs::read_to_string(f).ok()) {
            return text.trim().parse().expect("cpuacct.usage");
        }
        let text = std::fs::read_to_string(&v2).expect("the container's cgroup");
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|n| n.parse::<u64>().ok())
            .map(|us| us * 1000)
            .expect("usage_usec")
    };

    // One busy loop per host core for 4 s; measure the middle 2 s.
    let spin = format!(
        "for i in $(seq {cores}); do timeout 4 sh -c 'while :; do :; done' & done; wait; echo done"
    );
    let exec_path = format!("/v1/sandboxes/{id}/exec");
    let spinning = d.call("POST", &exec_path, Some(json!({ "command": spin })));
    let measure = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let (t0, u0) = (Instant::now(), usage_ns());
        // The API keeps answering meanwhile.
        let asked = Instant::now();
        let (status, _) = d.call("GET", "/v1/sandboxes", None).await;
        let answered = asked.elapsed();
        tokio::time::sleep(Duration::from_millis(2000)).await;
        let used = (usage_ns() - u0) as f64 / t0.elapsed().as_nanos() as f64;
        (status, answered, used)
    };
    let ((status, out), (list_status, answered, used)) = tokio::join!(spinning, measure);
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["stdout"], "done\n", "{out}");
    assert_eq!(list_status, StatusCode::OK);
    eprintln!(
        "{cores} busy loops on a {cores}-core host used {used:.2} cores (cap {cap}); the API answered in {answered:?} meanwhile"
    );
    assert!(
        used <= cap as f64 * 1.1,
        "used {used:.2} cores, over the cap of {cap}"
    );
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}

/// Root in a sandbox (through sudo, an E2B `user: 'root'` process, a setup step; here
/// `docker exec -u root`) writes where `--disk-mb`'s disk is not: the image layer on
/// the engine's storage, and the sandbox's socket directory on the host. Past the
/// bound, in bytes or in files, the sandbox is stopped with a clear reason; deleting
/// it gives the space back.
#[tokio::test]
async fn root_writing_past_the_bound_outside_the_disk_stops_the_sandbox() {
    const BOUND_MB: u64 = 64;
    let d = Daemon::start_with(Options {
        args: vec!["--disk-mb".into(), BOUND_MB.to_string()],
        ..Options::default()
    })
    .await;
    let as_root = |id: &str, script: &str| {
        Command::new("docker")
            .args(["exec", "-u", "root", &container(id), "sh", "-c", script])
            .output()
            .expect("docker exec")
    };
    let stopped = |id: String| {
        let d = &d;
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                let (status, info) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
                assert_eq!(status, StatusCode::OK, "{info}");
                if info["status"] == "error" {
                    return info;
                }
                assert!(
                    Instant::now() < deadline,
                    "still {} after writing past the bound outside its disk: {info}",
                    info["status"]
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };

    // Bytes: 200 MiB into the image layer.
    let bytes = d.create_sandbox(json!({ "agent": "test" })).await;
    let _ = as_root(
        &bytes,
        "dd if=/dev/zero of=/var/big bs=1M count=200 2>/dev/null; sync",
    );
    let info = stopped(bytes.clone()).await;
    let why = info["error"].to_string();
    assert!(
        why.contains("outside its disk") && why.contains("--disk-mb"),
        "{info}"
    );
    assert_eq!(
        docker_inspect(&container(&bytes), "{{.State.Running}}").as_deref(),
        Some("false")
    );

    // Files: twenty thousand empty ones (inodes cost the host too).
    let files = d.create_sandbox(json!({ "agent": "test" })).await;
    let _ = as_root(
        &files,
        "mkdir -p /var/many && cd /var/many && seq 1 20000 | xargs touch",
    );
    let info = stopped(files.clone()).await;
    assert!(info["error"].to_string().contains("files"), "{info}");

    // A sandbox that stays under the bound keeps running.
    let quiet = d.create_sandbox(json!({ "agent": "test" })).await;
    let out = as_root(
        &quiet,
        "dd if=/dev/zero of=/var/small bs=1M count=8 2>/dev/null",
    );
    assert!(out.status.success(), "{out:?}");
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (_, info) = d.call("GET", &format!("/v1/sandboxes/{quiet}"), None).await;
    assert_eq!(info["status"], "active", "{info}");

    for id in [&bytes, &files, &quiet] {
        d.delete_sandbox(id).await;
    }
    d.assert_no_leaks();
}
