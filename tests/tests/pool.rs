//! The warm pool, with the real engine: a create claims a warm container and the
//! sandbox it becomes is indistinguishable from a cold one (user, home, envs, files,
//! setup, cwd, egress rules, limits, disk); warm containers are never sandboxes (not
//! listed, not counted against quotas); SIGTERM removes them all; a restart replaces
//! those of the crashed run and keeps its sandboxes; a slow create holds no other
//! call up.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use sandboxd_e2e::{containers_labelled, docker_inspect, Daemon, Options, StatusCode};
use serde_json::{json, Value};

const POOL_LABEL: &str = "sandboxd.pool";

/// One agent definition, served both warm and cold.
fn agent() -> Value {
    json!({
        "name": "Pooled",
        "sandbox": {
            "cwd": "/home/user/app",
            "envs": {"MODE": "dev", "PATH": "/opt/tools:/usr/local/bin:/usr/bin:/bin"},
            "files": {"notes.md": "hello\n", "/etc/sandbox-note": "root file\n"},
            "setup": ["echo set-up > /home/user/app/setup.txt", "id -un > /home/user/app/setup-user.txt"],
            "memoryMB": 512,
            "cpuCount": 1,
            "networkDenyOut": ["192.0.2.7"]
        }
    })
}

/// A daemon with the agents `warm` and `cold` (one shape) and `args`; the harness's
/// `test` agent (another shape) has no pool.
fn options(args: &[&str]) -> Options {
    Options {
        args: ["--pool-agent", "test=0"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect(),
        ..Options::default()
            .agent("warm", agent())
            .agent("cold", agent())
    }
}

/// The warm containers of a daemon: labelled by the pool and owned by no sandbox.
async fn warm_containers(d: &Daemon) -> BTreeSet<String> {
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    let owned: BTreeSet<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sandboxId"].as_str().map(str::to_owned))
        .collect();
    containers_labelled(&format!("sandboxd.test={}", d.label))
        .into_iter()
        .filter_map(|id| {
            let pool = docker_inspect(
                &id,
                &format!("{{{{index .Config.Labels \"{POOL_LABEL}\"}}}}"),
            )?;
            let name = docker_inspect(&id, "{{.Name}}")?
                .trim_start_matches('/')
                .to_owned();
            (pool == "warm" && !owned.contains(&name)).then_some(name)
        })
        .collect()
}

fn is_pooled(sandbox_id: &str) -> bool {
    docker_inspect(
        sandbox_id,
        &format!("{{{{index .Config.Labels \"{POOL_LABEL}\"}}}}"),
    )
    .is_some_and(|v| v == "warm")
}

async fn sandbox_id(d: &Daemon, id: &str) -> String {
    let (status, body) = d.call("GET", &format!("/v1/sandboxes/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["sandboxId"].as_str().expect("sandboxId").to_owned()
}

/// What a sandbox looks like from inside and from the host, with what must differ
/// between two sandboxes (ids, names, addresses) taken out.
async fn portrait(d: &Daemon, id: &str) -> Value {
    let name = sandbox_id(d, id).await;
    let inside = d
        .exec(
            id,
            "id; echo home=$HOME; pwd; echo mode=$MODE path=$PATH; \
             env | grep -v -e '^HOSTNAME=' -e '^_=' -e '^SHLVL=' -e '^OLDPWD=' | sort; \
             cat ~/notes.md /etc/sandbox-note setup.txt setup-user.txt; \
             stat -c '%U %G %a %n' ~ ~/app ~/notes.md ~/app/setup.txt /etc/sandbox-note; \
             df -k --output=size,fstype ~ /tmp | tail -n +2; \
             cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max \
                 /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null; \
             grep -v -e \"$(hostname)\" /etc/hosts; \
             timeout 10 bash -c 'exec 3<>/dev/tcp/192.0.2.7/80' 2>&1 | sed 's/^.*: //'",
        )
        .await;
    assert_eq!(inside["exitCode"], 0, "{inside}");
    let host = docker_inspect(
        &name,
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} \
         {{.HostConfig.CapAdd}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} \
         {{.Config.User}} {{.Config.Entrypoint}} {{.HostConfig.Runtime}}",
    )
    .expect("inspect");
    json!({
        "inside": inside["stdout"],
        "stderr": inside["stderr"],
        "host": host,
        "rules": egress_rules(id),
    })
}

/// The host's egress rules of a sandbox, with its address and chain name taken out.
fn egress_rules(id: &str) -> Vec<String> {
    let list = |chain: &str| {
        let out = Command::new("iptables")
            .args(["-w", "-S", chain])
            .output()
            .expect("iptables");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let suffix = id.trim_start_matches("sb_");
    let chain = list("SANDBOXD-EGRESS")
        .lines()
        .find(|l| l.contains(suffix))
        .and_then(|l| l.split_whitespace().last().map(str::to_owned))
        .unwrap_or_else(|| panic!("no egress jump for {id}"));
    list(&chain)
        .lines()
        .map(|l| l.replace(&chain, "CHAIN"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pooled_sandbox_is_indistinguishable_from_a_cold_one() {
    let d = Daemon::start_with(options(&["--pool-size", "1", "--pool-agent", "cold=0"])).await;
    d.wait_pool(1).await;
    let warm = d
        .create_sandbox(json!({"agent": "warm", "envs": {"CALL": "yes"}}))
        .await;
    let cold = d
        .create_sandbox(json!({"agent": "cold", "envs": {"CALL": "yes"}}))
        .await;
    assert!(
        is_pooled(&sandbox_id(&d, &warm).await),
        "the warm agent's create claims a warm container"
    );
    assert!(
        !is_pooled(&sandbox_id(&d, &cold).await),
        "--pool-agent cold=0 creates cold"
    );

    let (w, c) = (portrait(&d, &warm).await, portrait(&d, &cold).await);
    assert_eq!(w, c, "a pooled sandbox differs from a cold one");
    let inside = w["inside"].as_str().expect("stdout");
    for expected in [
        "uid=1000(user)",
        "home=/home/user",
        "/home/user/app\n",
        "mode=dev path=",
        "CALL=yes",
        "set-up\nroot\n",
        "user user 644 /home/user/notes.md",
        "536870912",
        "refused",
    ] {
        assert!(
            inside.contains(expected),
            "{expected:?} missing in:\n{inside}"
        );
    }
    // The claimed container is replaced in the background.
    d.wait_pool(1).await;
    d.delete_sandbox(&warm).await;
    d.delete_sandbox(&cold).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_containers_are_not_sandboxes() {
    let d = Daemon::start_with(options(&["--pool-size", "2", "--max-sandboxes", "1"])).await;
    d.wait_pool(2).await;
    let (status, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list.to_string().matches("sbx-").count(),
        0,
        "listed: {list}"
    );
    assert_eq!(warm_containers(&d).await.len(), 2);

    // Two warm containers and one slot: the first create takes the slot, the
    // second is refused although a warm container is ready.
    let one = d.create_sandbox(json!({"agent": "warm"})).await;
    let (status, body) = d
        .call("POST", "/v1/sandboxes", Some(json!({"agent": "warm"})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
    assert_eq!(
        list.to_string().matches("sbx-").count(),
        1,
        "listed: {list}"
    );
    d.delete_sandbox(&one).await;
    d.wait_pool(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_removes_every_warm_container() {
    let mut d = Daemon::start_with(options(&["--pool-size", "3"])).await;
    d.wait_pool(3).await;
    let sandbox = d.create_sandbox(json!({"agent": "warm"})).await;
    d.delete_sandbox(&sandbox).await;
    // Refills may be under way while it stops: they are removed too.
    assert!(d.terminate().success());
    d.assert_no_leaks();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_replaces_the_warm_containers_and_keeps_the_sandboxes() {
    let mut d = Daemon::start_with(options(&["--pool-size", "2"])).await;
    d.wait_pool(2).await;
    let kept = d
        .create_sandbox(json!({"agent": "warm", "envs": {"KEPT": "1"}}))
        .await;
    d.wait_pool(2).await;
    let before = warm_containers(&d).await;
    assert_eq!(before.len(), 2, "{before:?}");
    d.kill();

    let mut again = Daemon::start_with(Options {
        agents: Vec::new(),
        reuse: Some((d.state_dir.clone(), d.agents_dir.clone())),
        ..options(&["--pool-size", "2"])
    })
    .await;
    again.wait_pool(2).await;
    let after = warm_containers(&again).await;
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        before.is_disjoint(&after),
        "the crashed run's warm containers were replaced: {before:?} {after:?}"
    );
    for name in &before {
        assert!(docker_inspect(name, "{{.Id}}").is_none(), "{name} is left");
        let dir = again
            .state_dir
            .join("sandboxes")
            .join(name.replacen("sbx-", "sb_", 1));
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    // The claimed one is a sandbox like any other: kept, with its envs.
    let out = again.exec(&kept, "echo $KEPT").await;
    assert_eq!(out["stdout"], "1\n", "{out}");
    // Its container restarts with its envs too (sandbox-init keeps them).
    let name = sandbox_id(&again, &kept).await;
    let status = Command::new("docker")
        .args(["restart", "-t", "1", &name])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("docker restart");
    assert!(status.success());
    again.kill();
    let last = Daemon::start_with(Options {
        agents: Vec::new(),
        reuse: Some((again.state_dir.clone(), again.agents_dir.clone())),
        ..options(&["--pool-size", "2"])
    })
    .await;
    let out = last.exec(&kept, "echo $KEPT").await;
    assert_eq!(out["stdout"], "1\n", "{out}");
    last.delete_sandbox(&kept).await;
    let mut last = last;
    assert!(last.terminate().success());
    last.assert_no_leaks();
    drop(again);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_create_holds_no_other_call_up() {
    let d = Daemon::start_with(options(&["--pool-size", "1"])).await;
    d.wait_pool(1).await;
    let other = d.create_sandbox(json!({"agent": "warm"})).await;
    let slow = {
        let (url, key) = (d.url.clone(), d.key.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/v1/sandboxes"))
                .bearer_auth(key)
                .json(&json!({"agent": "warm", "setup": ["sleep 30"]}))
                .send()
                .await
                .expect("slow create")
                .json::<Value>()
                .await
                .expect("json")
        })
    };
    // While it is still creating, everything else is answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let creating = loop {
        let (_, list) = d.call("GET", "/v1/sandboxes", None).await;
        let found = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["status"] == "creating")
            .and_then(|s| s["id"].as_str().map(str::to_owned));
        if let Some(id) = found {
            break id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slow create was never listed: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for _ in 0..3 {
        let out = d.exec(&other, "echo ok").await;
        assert_eq!(out["stdout"], "ok\n");
        let quick = d.create_sandbox(json!({"agent": "cold"})).await;
        d.delete_sandbox(&quick).await;
    }
    let (_, body) = d
        .call("GET", &format!("/v1/sandboxes/{creating}"), None)
        .await;
    assert_eq!(
        body["status"], "creating",
        "the slow create was still running: {body}"
    );
    assert!(!slow.is_finished(), "the slow create was still running");
    d.delete_sandbox(&creating).await;
    let _ = slow.await;
    d.delete_sandbox(&other).await;
}

/// A burst of creates larger than the pool is served mostly cold the first time; the
/// pool then grows toward it (within `--pool-max`), so the next burst of that size is
/// served warm, with no flag sized by hand for it.
#[tokio::test(flavor = "multi_thread")]
async fn the_pool_grows_toward_a_burst_so_the_next_one_is_served_warm() {
    let d = Daemon::start_with(options(&["--pool-size", "1", "--pool-max", "4"])).await;
    assert!(d.metrics().await.contains("sandboxd_pool_max 4"));
    d.wait_pool(1).await;
    let burst = || {
        futures_util::future::join_all((0..4).map(|_| d.create_sandbox(json!({"agent": "warm"}))))
    };
    let first = burst().await;
    let mut pooled = 0;
    for id in &first {
        pooled += usize::from(is_pooled(&sandbox_id(&d, id).await));
    }
    eprintln!("first burst of 4: {pooled} warm");
    // The pool grows to the burst, not past its ceiling.
    d.wait_pool(4).await;
    let second = burst().await;
    for id in &second {
        assert!(
            is_pooled(&sandbox_id(&d, id).await),
            "the second burst is served warm"
        );
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        warm_containers(&d).await.len() <= 4,
        "the pool stays within its ceiling"
    );
    for id in first.iter().chain(&second) {
        d.delete_sandbox(id).await;
    }
}
