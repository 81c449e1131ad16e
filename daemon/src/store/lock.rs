//! One daemon per state directory: `serve` (and `sandboxd state restore`) hold an
//! exclusive lock on `<state>/daemon.lock` for as long as they run, taken before
//! anything in the directory is touched. The kernel drops it when the process ends,
//! however it ends, so a crash leaves no stale lock.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The lock file's name in the state directory.
pub const FILE: &str = "daemon.lock";

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct StateLock(#[allow(dead_code)] File);

/// Takes the state directory's lock, or says which process holds it.
pub fn lock(state_dir: &Path) -> Result<StateLock, String> {
    let path = state_dir.join(FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    if !taken {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(format!(
            "another sandboxd (pid {}) is using the state directory {}; stop it first, \
             or give this one another --state-dir",
            if holder.is_empty() { "unknown" } else { holder },
            state_dir.display()
        ));
    }
    // Who holds it, for the message above (best effort: the lock is what counts).
    let _ = file.set_len(0);
    let _ = file.rewind();
    let _ = write!(file, "{}", std::process::id());
    Ok(StateLock(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("a state directory");
        let first = lock(dir.path()).expect("the first lock");
        // flock locks belong to the open file description: a second open is refused.
        let refused = lock(dir.path()).expect_err("held already");
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        drop(first);
        lock(dir.path()).expect("free again");
    }
}
