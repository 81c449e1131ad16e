//! Recent demand for each shape: the pool grows toward the largest burst of creates
//! seen lately, and shrinks back once that burst is forgotten.
//!
//! A burst is the number of creates of one shape that asked for a warm container within
//! [`BURST_SPAN`] of each other; the largest of the last [`REMEMBER`] counts. A CI job
//! starting 20 agents at once is served cold the first time (the pool then grows to 20,
//! within its ceiling) and warm the next; ten quiet minutes later the pool is back at
//! its floor.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Creates this close together are one burst.
pub(super) const BURST_SPAN: Duration = Duration::from_secs(10);
/// How long a burst is remembered.
pub(super) const REMEMBER: Duration = Duration::from_secs(10 * 60);
/// The most creates remembered per shape (a bound on memory, far above any ceiling).
const MAX_KEPT: usize = 4096;

/// When creates of each shape (by key) asked for a warm container, oldest first.
#[derive(Debug, Default)]
pub(super) struct Demand {
    asked: HashMap<String, VecDeque<Instant>>,
}

impl Demand {
    /// A create of shape `key` asked for a warm container at `now`.
    pub(super) fn record(&mut self, key: &str, now: Instant) {
        let times = self.asked.entry(key.to_owned()).or_default();
        times.push_back(now);
        if times.len() > MAX_KEPT {
            times.pop_front();
        }
    }

    /// The largest burst of shape `key` in the last [`REMEMBER`] before `now`
    /// (forgetting older creates).
    pub(super) fn peak(&mut self, key: &str, now: Instant) -> usize {
        let Some(times) = self.asked.get_mut(key) else {
            return 0;
        };
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > REMEMBER)
        {
            times.pop_front();
        }
        if times.is_empty() {
            self.asked.remove(key);
            return 0;
        }
        // The widest window of BURST_SPAN: two pointers over the sorted times.
        let (mut best, mut start) = (0, 0);
        for end in 0..times.len() {
            while times[end].saturating_duration_since(times[start]) > BURST_SPAN {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_recent_burst_counts_and_is_forgotten_in_time() {
        let t0 = Instant::now();
        let mut d = Demand::default();
        assert_eq!(d.peak("a", t0), 0);
        for i in 0..20 {
            d.record("a", t0 + Duration::from_millis(i * 100));
        }
        // Later, slower creates do not make a burst of their own.
        for i in 0..5 {
            d.record("a", t0 + Duration::from_secs(60 + i * 30));
        }
        d.record("b", t0);
        let later = t0 + Duration::from_secs(200);
        assert_eq!(d.peak("a", later), 20);
        assert_eq!(d.peak("b", later), 1);
        // Ten minutes on, the burst is forgotten; the slow creates are one at a time.
        let much_later = t0 + REMEMBER + Duration::from_secs(30);
        assert_eq!(d.peak("a", much_later), 1);
        assert_eq!(d.peak("b", much_later), 0);
        assert_eq!(d.peak("a", much_later + REMEMBER + REMEMBER), 0);
    }
}
