//! The PID 1 loop: all signals are blocked in every thread and taken here with
//! `sigtimedwait`; every child is reaped here and nowhere else, and termination signals
//! are forwarded to the process groups of running execs.
//!
//! The [`Registry`] links an exec's pid to the connection waiting for it. Two locks
//! keep that race-free:
//! - the *gate*: spawners hold it shared while spawning (std's `spawn` may itself
//!   `waitpid` a child whose exec failed), the reaper holds it exclusively while it
//!   calls `waitpid(-1)`, so neither steals the other's child;
//! - the *map*: an exec is registered before the gate is released, so a child that
//!   exits at once is still found.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long running execs get after SIGTERM before they are killed.
const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Where a reaped exec's wait status goes.
#[derive(Debug)]
pub struct ExitSlot {
    status: Mutex<Option<i32>>,
    notify: OwnedFd,
}

impl ExitSlot {
    /// The raw wait status, once reaped.
    pub fn status(&self) -> Option<i32> {
        *self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Running execs by pid.
#[derive(Debug, Default)]
pub struct Registry {
    gate: RwLock<()>,
    map: Mutex<HashMap<i32, Arc<ExitSlot>>>,
}

/// A pipe whose read end becomes readable when the exec is reaped.
#[derive(Debug)]
pub struct ExitWatch {
    /// Poll this for readability.
    pub readable: OwnedFd,
    /// Holds the status once readable.
    pub slot: Arc<ExitSlot>,
}

impl Registry {
    /// Spawns `command` and registers the child before the reaper may reap it.
    pub fn spawn(
        &self,
        command: &mut std::process::Command,
    ) -> std::io::Result<(std::process::Child, ExitWatch)> {
        let (read, write) = pipe()?;
        let _gate = self.gate.read().unwrap_or_else(|p| p.into_inner());
        let child = command.spawn()?;
        let slot = Arc::new(ExitSlot {
            status: Mutex::new(None),
            notify: write,
        });
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(child.id() as i32, slot.clone());
        Ok((
            child,
            ExitWatch {
                readable: read,
                slot,
            },
        ))
    }

    /// Pids of running execs (each also its process-group id).
    pub fn pids(&self) -> Vec<i32> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Reaps every exited child; execs' statuses go to their slots.
    pub fn reap(&self) {
        let _gate = self.gate.write().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut status = 0;
            // SAFETY: plain syscall with a valid out-pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            let slot = self
                .map
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pid);
            if let Some(slot) = slot {
                *slot.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                // SAFETY: writing one byte from a valid buffer to our own pipe.
                unsafe { libc::write(slot.notify.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
            }
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    })
}

/// Blocks every signal in the calling thread (and so in threads it creates later);
/// returns the full set for [`run`].
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialized by sigfillset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        set
    }
}

/// Sends `signal` to the process group `pgid`; a group that is gone is fine.
pub fn signal_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; a negative pid addresses the group.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// The PID 1 loop; returns only to exit the process after a termination signal.
pub fn run(set: libc::sigset_t, registry: &Registry) -> i32 {
    let mut terminating: Option<Instant> = None;
    loop {
        let wait = if terminating.is_some() {
            Duration::from_millis(50)
        } else {
            // Reap at least once a second even if a SIGCHLD was coalesced away.
            Duration::from_secs(1)
        };
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: valid set and timeout; siginfo is not requested.
        let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) };
        match signal {
            libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT
                if terminating.is_none() =>
            {
                terminating = Some(Instant::now());
                for pid in registry.pids() {
                    signal_group(pid, libc::SIGTERM);
                }
            }
            _ => {}
        }
        registry.reap();
        if let Some(since) = terminating {
            let pids = registry.pids();
            if pids.is_empty() {
                return 0;
            }
            if since.elapsed() >= TERMINATE_GRACE {
                for pid in pids {
                    signal_group(pid, libc::SIGKILL);
                }
                return 0;
            }
        }
    }
}
