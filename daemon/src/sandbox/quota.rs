//! Sandbox quotas: how many live sandboxes (status `creating` or `active`) the daemon
//! runs at once (`--max-sandboxes`), and how many one token owner may have when a chat
//! token creates another (`--max-sandboxes-per-user`).
//!
//! A create reserves its slot before provisioning starts, under one lock that also
//! covers counting the live sandboxes and turning the reservation into the sandbox
//! itself; so concurrent creates never overshoot, and a create that fails before its
//! sandbox exists gives its slot back (the reservation is dropped). Expired, errored
//! and deleted sandboxes are not live and hold no slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Sandbox, SandboxError, Status};

/// The limits (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Live sandboxes in total.
    pub total: usize,
    /// Live sandboxes of one owner, checked when a chat token creates one.
    pub per_owner: usize,
}

/// Creates under way, not yet counted as sandboxes.
#[derive(Debug, Default)]
struct Pending {
    total: usize,
    by_owner: HashMap<String, usize>,
}

/// The quota bookkeeping of one daemon.
#[derive(Debug, Default)]
pub(super) struct Quota {
    limits: Limits,
    pending: Arc<Mutex<Pending>>,
}

/// A reserved slot; given back on drop unless committed.
#[derive(Debug)]
pub(super) struct Reservation {
    pending: Arc<Mutex<Pending>>,
    owner: Option<String>,
    committed: bool,
}

fn lock(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    // Every update is a whole increment or decrement: a poisoned lock is consistent.
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a sandbox holds a slot.
fn is_live(sandbox: &Sandbox) -> bool {
    matches!(
        sandbox.status(),
        Status::Creating | Status::Active | Status::Paused
    )
}

/// How the owner reads in a message.
fn describe(owner: &str) -> String {
    match owner.split_once(':') {
        Some(("user", user)) => format!("user {user:?}"),
        _ => "this token".to_owned(),
    }
}

impl Quota {
    /// Bookkeeping for these limits.
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            pending: Arc::default(),
        }
    }

    /// Reserves a slot for a new sandbox, or says which limit is reached. `owner` is
    /// held to the per-owner limit (creates through a chat token); `None` only to the
    /// total. `live` lists the current sandboxes; it is read under the quota lock.
    pub(super) fn reserve(
        &self,
        owner: Option<&str>,
        live: impl FnOnce() -> Vec<Arc<Sandbox>>,
    ) -> Result<Reservation, SandboxError> {
        let mut pending = lock(&self.pending);
        let sandboxes: Vec<Arc<Sandbox>> = live().into_iter().filter(|s| is_live(s)).collect();
        let total = self.limits.total;
        if total > 0 && sandboxes.len() + pending.total >= total {
            return Err(SandboxError::QuotaExceeded(format!(
                "this daemon already runs its limit of {total} live sandboxes \
                 (--max-sandboxes); delete one (DELETE /v1/sandboxes/:id) or raise the limit"
            )));
        }
        let per_owner = self.limits.per_owner;
        if let Some(owner) = owner.filter(|_| per_owner > 0) {
            let own = sandboxes
                .iter()
                .filter(|s| s.owner.as_deref() == Some(owner))
                .count();
            let reserved = pending.by_owner.get(owner).copied().unwrap_or(0);
            if own + reserved >= per_owner {
                return Err(SandboxError::QuotaExceeded(format!(
                    "{} already has its limit of {per_owner} live sandboxes \
                     (--max-sandboxes-per-user); continue in one of them with sandboxId, \
                     or wait until one expires or is deleted",
                    describe(owner)
                )));
            }
        }
        pending.total += 1;
        if let Some(owner) = owner {
            *pending.by_owner.entry(owner.to_owned()).or_default() += 1;
        }
        Ok(Reservation {
            pending: self.pending.clone(),
            owner: owner.map(str::to_owned),
            committed: false,
        })
    }
}

impl Reservation {
    /// Turns the slot into the sandbox `insert` makes visible, atomically with respect
    /// to other reservations (so it is never counted twice, nor not at all).
    pub(super) fn commit(mut self, insert: impl FnOnce()) {
        let mut pending = lock(&self.pending);
        insert();
        release(&mut pending, self.owner.as_deref());
        self.committed = true;
    }
}

fn release(pending: &mut Pending, owner: Option<&str>) {
    pending.total = pending.total.saturating_sub(1);
    if let Some(owner) = owner {
        if let Some(n) = pending.by_owner.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                pending.by_owner.remove(owner);
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            release(&mut lock(&self.pending), self.owner.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(total: usize, per_owner: usize) -> Quota {
        Quota::new(Limits { total, per_owner })
    }

    #[test]
    fn reservations_count_until_dropped() {
        let q = quota(2, 0);
        let a = q.reserve(None, Vec::new).expect("first");
        let _b = q.reserve(None, Vec::new).expect("second");
        let e = q.reserve(None, Vec::new).expect_err("third is over");
        assert!(e.to_string().contains("--max-sandboxes"), "{e}");
        drop(a);
        q.reserve(None, Vec::new)
            .expect("a dropped reservation frees its slot");
    }

    #[test]
    fn owners_are_counted_apart() {
        let q = quota(0, 1);
        let _a = q.reserve(Some("user:a"), Vec::new).expect("a");
        let e = q.reserve(Some("user:a"), Vec::new).expect_err("a again");
        assert!(
            e.to_string().contains("user \"a\"") && e.to_string().contains("per-user"),
            "{e}"
        );
        q.reserve(Some("user:b"), Vec::new)
            .expect("b is unaffected");
        q.reserve(None, Vec::new)
            .expect("the API key has no per-owner limit");
    }

    #[test]
    fn zero_means_no_limit() {
        let q = quota(0, 0);
        let held: Vec<_> = (0..50)
            .map(|_| q.reserve(Some("user:a"), Vec::new).expect("unlimited"))
            .collect();
        assert_eq!(held.len(), 50);
    }

    #[test]
    fn a_commit_moves_the_slot_without_freeing_it() {
        let q = quota(1, 0);
        let r = q.reserve(None, Vec::new).expect("first");
        let mut inserted = false;
        r.commit(|| inserted = true);
        assert!(inserted);
        // The slot is now the sandbox's (not passed in here): the reservation is gone.
        q.reserve(None, Vec::new)
            .expect("no reservation left after commit");
    }
}
