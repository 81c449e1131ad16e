//! The warm pool: containers started ahead of need, so a create claims one instead of
//! waiting for `docker run`.
//!
//! A warm container is a sandbox container with nothing of a sandbox in it yet: made
//! by the same [`Sandboxes::boot`] as a cold create (its own id, name, host directory
//! and disk, sandbox-init up and answering), with the image's environment only, no
//! `/etc/hosts` pins, no egress rules and no model-proxy token. What cannot change once
//! a container exists (image, memory, CPUs, pids) is its [`Shape`], the pool key; the
//! daemon-wide rest (runtime, disk size, mounts, labels) is the same for every
//! container anyway. A create whose plan has that shape and pins no host names claims
//! one and then applies what a cold create would: egress rules, token, envs (through
//! sandbox-init), cwd, files and setup. Anything else is a cold create.
//!
//! Invariants: a warm container is never in the sandbox map (so never listed, counted
//! against a quota, expired or paused); every one carries [`LABEL_POOL`] and its id
//! is in [`Pool::owns`] from before it exists until it is claimed or removed; shutdown
//! removes them all (their disks and directories too); after a crash, `adopt` removes
//! what is left (the pool is replaced, not adopted) and the refill makes new ones.
//!
//! Sizes come from `--pool-size` (per shape of each agent) and `--pool-agent
//! slug=N`, a floor: a shape's pool grows toward its recent bursts of creates
//! ([`demand`]) up to `--pool-max`, and shrinks back when they are forgotten. Refills
//! run in the background, at most [`FILLS_AT_ONCE`] at a time, so they never hold a
//! create up beyond what a cold create costs anyway. A warm container costs no CPU
//! (its sandbox-init sleeps in `accept`); its memory is under 1 MiB of cgroup and
//! sandbox-init's RSS, plus the engine's shim on the host (see the README).

mod demand;
mod fill;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::boot::{Booted, Shape};

/// The label on every warm container (it stays once the container is claimed: labels
/// cannot change; a claimed one is told apart by its stored sandbox).
pub const LABEL_POOL: &str = "sandboxd.pool";

/// Refills under way at once, across all shapes.
const FILLS_AT_ONCE: usize = 2;

/// How often the pool is checked against its sizes (and at once after a claim).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// After a failed refill, the shape waits this long before the next try.
const BACKOFF: Duration = Duration::from_secs(10);

/// Pool sizes.
#[derive(Debug, Clone, Default)]
pub struct PoolSizes {
    /// Warm containers per shape of every agent without its own size (0: none).
    pub default: usize,
    /// Sizes of particular agents (by slug), overriding the default.
    pub per_agent: HashMap<String, usize>,
    /// The most warm containers of one shape when recent demand grows its pool past
    /// its size (`--pool-max`; never below the size).
    pub max: usize,
}

impl PoolSizes {
    /// The size for an agent.
    pub fn of(&self, slug: &str) -> usize {
        self.per_agent.get(slug).copied().unwrap_or(self.default)
    }

    /// Whether no agent can have a pool.
    pub fn is_off(&self) -> bool {
        self.default == 0 && self.per_agent.values().all(|n| *n == 0)
    }
}

/// One warm container.
#[derive(Debug, Clone)]
pub(super) struct Warm {
    /// The sandbox id it was made for (its label, directory and name).
    pub id: String,
    /// Its host directory.
    pub dir: PathBuf,
    /// The container.
    pub booted: Booted,
    /// The network it joined (a recreated network makes it useless).
    pub network_id: String,
}

/// The pool's bookkeeping.
#[derive(Debug, Default)]
struct Inner {
    /// Ready containers by shape key, oldest first.
    ready: HashMap<String, VecDeque<Warm>>,
    /// Refills under way by shape key.
    filling: HashMap<String, usize>,
    /// Sandbox ids of every container the pool holds or is making.
    ids: HashSet<String>,
    /// When a shape's last refill failed.
    failed: HashMap<String, Instant>,
    /// Recent creates that asked for a warm container, by shape key.
    demand: demand::Demand,
}

/// The warm pool of one daemon (see the module).
#[derive(Debug)]
pub(super) struct Pool {
    sizes: PoolSizes,
    inner: Mutex<Inner>,
    /// Wakes the refill loop (after a claim).
    wake: tokio::sync::Notify,
    /// Cancelled at shutdown: refills stop and clean up after themselves.
    closed: CancellationToken,
}

/// The key of a shape: equal keys, interchangeable containers.
pub(super) fn key(shape: &Shape) -> String {
    let l = &shape.limits;
    format!(
        "{}|mem={:?}|cpus={:?}|pids={:?}",
        shape.image, l.memory_bytes, l.cpus, l.pids
    )
}

impl Pool {
    pub(super) fn new(sizes: PoolSizes) -> Self {
        Self {
            sizes,
            inner: Mutex::new(Inner::default()),
            wake: tokio::sync::Notify::new(),
            closed: CancellationToken::new(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update is a whole insert or remove: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sizes.
    pub(super) fn sizes(&self) -> &PoolSizes {
        &self.sizes
    }

    /// Whether the pool holds or is making the container of sandbox id `id`.
    pub(super) fn owns(&self, id: &str) -> bool {
        self.inner().ids.contains(id)
    }

    /// A create asks for a warm container of `shape` (served or not, it is demand).
    pub(super) fn record_demand(&self, shape: &Shape) {
        self.inner().demand.record(&key(shape), Instant::now());
    }

    /// How many warm containers shape `key` should have: its `floor` (0: none at
    /// all), grown toward its recent bursts up to the ceiling.
    pub(super) fn target(&self, key: &str, floor: usize) -> usize {
        if floor == 0 {
            return 0;
        }
        let peak = self.inner().demand.peak(key, Instant::now());
        floor.max(peak.min(self.sizes.max))
    }

    /// Takes the oldest ready container of `shape`, if any. Its id stays in
    /// [`Pool::owns`] until the sandbox it becomes is in the map (then
    /// [`Pool::handed_over`]) or it is removed, so `adopt` never takes it for a stray.
    pub(super) fn take(&self, shape: &Shape) -> Option<Warm> {
        let warm = self.inner().ready.get_mut(&key(shape))?.pop_front()?;
        self.wake.notify_one();
        Some(warm)
    }

    /// The claimed container of sandbox `id` now belongs to that sandbox.
    pub(super) fn handed_over(&self, id: &str) {
        self.inner().ids.remove(id);
    }

    /// Ready containers, all shapes.
    pub(super) fn ready_count(&self) -> usize {
        self.inner().ready.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Limits;

    fn shape(image: &str, memory: Option<i64>) -> Shape {
        Shape {
            sudo: false,
            image: image.into(),
            limits: Limits {
                memory_bytes: memory,
                cpus: Some(1.0),
                pids: Some(1024),
            },
        }
    }

    #[test]
    fn shapes_that_differ_in_anything_fixed_have_other_keys() {
        assert_eq!(key(&shape("a", Some(1))), key(&shape("a", Some(1))));
        assert_ne!(key(&shape("a", Some(1))), key(&shape("b", Some(1))));
        assert_ne!(key(&shape("a", Some(1))), key(&shape("a", None)));
    }

    #[test]
    fn an_agent_size_overrides_the_default_and_zero_is_off() {
        let sizes = PoolSizes {
            default: 2,
            per_agent: HashMap::from([("cold".to_owned(), 0), ("hot".to_owned(), 5)]),
            max: 8,
        };
        assert_eq!(
            (sizes.of("x"), sizes.of("cold"), sizes.of("hot")),
            (2, 0, 5)
        );
        assert!(!sizes.is_off());
        assert!(PoolSizes::default().is_off());
    }

    #[test]
    fn a_pool_grows_toward_its_bursts_within_its_ceiling() {
        let pool = Pool::new(PoolSizes {
            default: 2,
            max: 8,
            ..PoolSizes::default()
        });
        let s = shape("a", None);
        assert_eq!(pool.target(&key(&s), 2), 2);
        for _ in 0..5 {
            pool.record_demand(&s);
        }
        assert_eq!(pool.target(&key(&s), 2), 5);
        for _ in 0..10 {
            pool.record_demand(&s);
        }
        assert_eq!(pool.target(&key(&s), 2), 8, "the ceiling binds");
        assert_eq!(pool.target(&key(&s), 0), 0, "a pool that is off stays off");
    }

    #[test]
    fn taking_from_an_empty_pool_gives_nothing() {
        let pool = Pool::new(PoolSizes::default());
        assert!(pool.take(&shape("a", None)).is_none());
        assert_eq!(pool.ready_count(), 0);
        assert!(!pool.owns("sb_x"));
    }
}
