//! Turn budgets at the proxy. The agent's `maxBudgetUsd` (or the chat call's) bounds a
//! turn inside the CLI, but the CLI runs in the sandbox, and any process there can use
//! its token. So the proxy holds the same line itself: while turns with a budget run in
//! a sandbox, its model calls are refused once it has spent, since the earliest of them
//! began, the sum of their budgets. A turn without a budget lifts the line while it runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{lock, ModelProxy};

/// The budgets of the turns running in each sandbox.
#[derive(Debug, Default)]
pub(super) struct TurnBudgets {
    open: Mutex<HashMap<String, Vec<Open>>>,
    next: AtomicU64,
}

/// One running turn's allowance.
#[derive(Debug, Clone, Copy)]
struct Open {
    id: u64,
    /// The sandbox's spend when the turn began.
    started_at_usd: f64,
    budget_usd: Option<f64>,
}

impl TurnBudgets {
    fn open(&self, sandbox_id: &str, spent_usd: f64, budget_usd: Option<f64>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open)
            .entry(sandbox_id.to_owned())
            .or_default()
            .push(Open {
                id,
                started_at_usd: spent_usd,
                budget_usd,
            });
        id
    }

    fn close(&self, sandbox_id: &str, id: u64) {
        let mut open = lock(&self.open);
        if let Some(turns) = open.get_mut(sandbox_id) {
            turns.retain(|t| t.id != id);
            if turns.is_empty() {
                open.remove(sandbox_id);
            }
        }
    }

    /// The spend the sandbox may reach while its turns run, and the budgets summed;
    /// `None` when no running turn bounds it.
    pub(super) fn ceiling(&self, sandbox_id: &str) -> Option<(f64, f64)> {
        let open = lock(&self.open);
        let turns = open.get(sandbox_id)?;
        let budgets: Option<Vec<f64>> = turns.iter().map(|t| t.budget_usd).collect();
        let total: f64 = budgets?.iter().sum();
        let start = turns
            .iter()
            .map(|t| t.started_at_usd)
            .fold(f64::INFINITY, f64::min);
        Some((start + total, total))
    }
}

/// A running turn's allowance at the proxy; dropping it ends the allowance.
#[derive(Debug)]
pub struct TurnBudget {
    proxy: Arc<ModelProxy>,
    sandbox_id: String,
    id: u64,
}

impl Drop for TurnBudget {
    fn drop(&mut self) {
        self.proxy.turns.close(&self.sandbox_id, self.id);
    }
}

impl ModelProxy {
    /// Lends a turn starting in `sandbox_id` its budget (see the module's comment)
    /// until the returned guard is dropped.
    pub fn open_turn(self: &Arc<Self>, sandbox_id: &str, budget_usd: Option<f64>) -> TurnBudget {
        let spent = self.usage(sandbox_id).cost_usd;
        let id = self.turns.open(sandbox_id, spent, budget_usd);
        TurnBudget {
            proxy: self.clone(),
            sandbox_id: sandbox_id.to_owned(),
            id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TurnBudgets;

    #[test]
    fn running_turns_share_the_sum_of_their_budgets_from_the_earliest_start() {
        let budgets = TurnBudgets::default();
        assert_eq!(budgets.ceiling("sb"), None);
        let a = budgets.open("sb", 1.0, Some(0.5));
        assert_eq!(budgets.ceiling("sb"), Some((1.5, 0.5)));
        let b = budgets.open("sb", 1.2, Some(0.25));
        assert_eq!(budgets.ceiling("sb"), Some((1.75, 0.75)));
        let unbounded = budgets.open("sb", 1.3, None);
        assert_eq!(budgets.ceiling("sb"), None, "a turn without a budget");
        budgets.close("sb", unbounded);
        budgets.close("sb", a);
        assert_eq!(budgets.ceiling("sb"), Some((1.45, 0.25)));
        budgets.close("sb", b);
        assert_eq!(budgets.ceiling("sb"), None);
        assert_eq!(budgets.ceiling("other"), None);
    }
}
