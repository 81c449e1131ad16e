//! Host-wide kernel budgets every sandbox draws from: process ids (`kernel.pid_max`)
//! and inotify instances (`fs.inotify.max_user_instances`, counted per host uid, and
//! every sandbox's `user` is uid 1000, every `sandbox-init` root).
//!
//! Each sandbox has its own share of processes (its cgroup's `--pids-limit`), but the
//! kernel's defaults are smaller than the sum of the shares: 32,768 process ids against
//! 100 sandboxes × 1,024, so a few sandboxes forking to their share would leave the
//! others, and the host, none. At start the daemon raises each budget to what its
//! sandbox cap needs, never lowers one, and says plainly when it could not.

use std::path::Path;

/// Process ids the host keeps for itself beside the sandboxes' shares (the kernel's
/// default `pid_max`).
const HOST_PIDS: u64 = 32_768;
/// The kernel's ceiling for `pid_max` on 64-bit machines.
const PID_MAX_LIMIT: u64 = 4_194_304;
/// inotify instances counted for each sandbox (the kernel's default for a whole uid):
/// its `user`'s tools and its `sandbox-init`'s watches (at most 16) share one host uid
/// with every other sandbox, so the pool is sized for all of them.
const INOTIFY_PER_SANDBOX: u64 = 128;

/// One sysctl and the value the sandboxes need of it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Budget {
    /// The sysctl's name, as `sysctl -w` takes it.
    pub name: &'static str,
    /// Its file under `/proc/sys`.
    pub file: &'static str,
    /// The least value that fits every sandbox's share and the host's.
    pub needed: u64,
}

/// The budgets `max_sandboxes` sandboxes of `pids_limit` processes each need (none
/// when the sandbox count is unbounded: there is no sum to size for).
pub(super) fn budgets(max_sandboxes: usize, pids_limit: i64) -> Vec<Budget> {
    if max_sandboxes == 0 {
        return Vec::new();
    }
    let sandboxes = max_sandboxes as u64;
    let mut out = Vec::new();
    if let Ok(pids) = u64::try_from(pids_limit) {
        if pids > 0 {
            out.push(Budget {
                name: "kernel.pid_max",
                file: "kernel/pid_max",
                needed: sandboxes
                    .saturating_mul(pids)
                    .saturating_add(HOST_PIDS)
                    .min(PID_MAX_LIMIT),
            });
        }
    }
    out.push(Budget {
        name: "fs.inotify.max_user_instances",
        file: "fs/inotify/max_user_instances",
        needed: sandboxes
            .saturating_add(1)
            .saturating_mul(INOTIFY_PER_SANDBOX),
    });
    out
}

/// Raises each budget under `/proc/sys` (`root`) that is below what it needs; logs what
/// it changed, and what it could not with the command that would.
pub(super) fn size_host_budgets(root: &Path, max_sandboxes: usize, pids_limit: i64) {
    if max_sandboxes == 0 {
        tracing::warn!(
            "--max-sandboxes 0: the host's process-id and inotify budgets are not sized for \
             the sandboxes; one sandbox can take what the others need"
        );
    }
    for budget in budgets(max_sandboxes, pids_limit) {
        let path = root.join(budget.file);
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        match current {
            Some(now) if now >= budget.needed => {
                tracing::debug!("{} = {now} (needs {})", budget.name, budget.needed);
            }
            Some(now) => match std::fs::write(&path, budget.needed.to_string()) {
                Ok(()) => tracing::info!(
                    "{} raised from {now} to {} so each of {max_sandboxes} sandboxes keeps \
                     its share",
                    budget.name,
                    budget.needed
                ),
                Err(e) => tracing::warn!(
                    "{} is {now}, below the {} that {max_sandboxes} sandboxes need, and could \
                     not be raised ({e}): sandboxes may starve each other of it; run \
                     `sysctl -w {}={}` or lower --max-sandboxes",
                    budget.name,
                    budget.needed,
                    budget.name,
                    budget.needed
                ),
            },
            None => tracing::warn!(
                "{} cannot be read at {}: not sized for the sandboxes",
                budget.name,
                path.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budgets_fit_every_share_and_the_hosts() {
        let b = budgets(100, 1024);
        assert_eq!(b[0].name, "kernel.pid_max");
        assert_eq!(b[0].needed, 100 * 1024 + 32_768);
        assert_eq!(b[1].needed, 101 * 128);
        assert_eq!(budgets(100_000, 1_000_000)[0].needed, PID_MAX_LIMIT);
        assert!(budgets(0, 1024).is_empty());
        assert_eq!(budgets(10, 0).len(), 1, "no pids limit, no pid budget");
    }

    #[test]
    fn budgets_are_raised_never_lowered_and_a_failure_is_survived() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("kernel")).expect("mkdir");
        std::fs::create_dir_all(root.path().join("fs/inotify")).expect("mkdir");
        std::fs::write(root.path().join("kernel/pid_max"), "32768\n").expect("write");
        std::fs::write(
            root.path().join("fs/inotify/max_user_instances"),
            "999999\n",
        )
        .expect("write");
        size_host_budgets(root.path(), 10, 1000);
        let read = |f: &str| std::fs::read_to_string(root.path().join(f)).expect("read");
        assert_eq!(read("kernel/pid_max"), (10 * 1000 + 32_768).to_string());
        assert_eq!(read("fs/inotify/max_user_instances"), "999999\n");
        // Missing files (no /proc/sys here) are only logged.
        size_host_budgets(&root.path().join("absent"), 10, 1000);
    }
}
