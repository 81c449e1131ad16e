//! Host-wide kernel budgets: the process ids and inotify instances every sandbox draws
//! from one pool of the host's.

use sandboxd_e2e::Daemon;

fn sysctl(file: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/sys/{file}"))
        .expect("read a sysctl")
        .trim()
        .parse()
        .expect("a number")
}

/// The kernel's 32,768 process ids are fewer than 100 sandboxes × their 1,024: a few
/// sandboxes forking to their own share would leave the others (and the host) none.
/// (Forking 32,768 processes to show it is more than this suite's machine can spare;
/// the sum is what decides it.) The daemon sizes the host's pools to its sandbox cap at
/// start, so every sandbox's share fits beside the host's.
#[tokio::test]
async fn the_hosts_process_id_and_inotify_pools_fit_every_sandboxs_share() {
    let d = Daemon::start().await;
    let (max_sandboxes, pids_limit) = (100, 1024);
    let pid_max = sysctl("kernel/pid_max");
    assert!(
        pid_max >= max_sandboxes * pids_limit + 32_768,
        "kernel.pid_max is {pid_max}:\n{}",
        d.log_text()
    );
    let inotify = sysctl("fs/inotify/max_user_instances");
    assert!(
        inotify >= (max_sandboxes + 1) * 128,
        "fs.inotify.max_user_instances is {inotify}:\n{}",
        d.log_text()
    );
    // A sandbox can take what its share allows.
    let id = d
        .create_sandbox(serde_json::json!({ "agent": "test" }))
        .await;
    let out = d
        .exec(
            &id,
            "python3 -c 'import ctypes; libc = ctypes.CDLL(None); \
             print(sum(1 for _ in range(100) if libc.inotify_init() >= 0))'",
        )
        .await;
    assert_eq!(out["stdout"], "100\n", "{out}");
    d.delete_sandbox(&id).await;
    d.assert_no_leaks();
}
