//! Killing everything an exec started, when it timed out or its client hung up.
//!
//! Killing the exec's process group is not enough: `setsid` children and double-forked
//! daemons leave it. Three things identify what the exec started:
//! - the exec's process is a child subreaper (`PR_SET_CHILD_SUBREAPER`, set between fork
//!   and exec by [`become_subreaper`]): while it lives, orphans of its descendants
//!   reparent to it instead of to PID 1, so they stay in its tree (`/proc/*/stat` ppid);
//! - members of its process group;
//! - any process holding one of its pipes (stdin/stdout/stderr), which catches a
//!   `setsid` child that outlived the exec's process but still writes its output
//!   (`/proc/*/fd`, read with the holder's file-system uid: without `CAP_SYS_PTRACE`,
//!   root may not read another uid's descriptors).
//!
//! Each round first stops (SIGSTOP) everything it finds, walking again until nothing
//! new appears, so nothing forks past the walk; then it SIGKILLs them all. Rounds repeat
//! until nothing alive is left (zombies are the reaper's). A command that ended by
//! itself is not followed: it may leave servers running on purpose.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;

/// Kill rounds before giving up (each ends with SIGKILL; one is normally enough).
const ROUNDS: usize = 10;

/// Stop walks per round: each stops what the previous one found.
const WALKS: usize = 64;

/// Makes the calling process a child subreaper. Async-signal-safe: for `pre_exec`.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The pipe inode of a descriptor, if it is a pipe.
pub fn pipe_inode(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    let file = std::fs::File::from(fd.try_clone_to_owned().ok()?);
    let meta = file.metadata().ok()?;
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo().then(|| meta.ino())
}

/// Kills the exec rooted at `root` (also its process-group id) and everything it
/// started (see the module); returns how many processes were killed.
pub fn everything(root: i32, pipes: &[u64]) -> usize {
    let me = std::process::id() as i32;
    let mut killed = 0;
    for _ in 0..ROUNDS {
        let mut stopped: HashSet<i32> = HashSet::new();
        for _ in 0..WALKS {
            let found = members(root, pipes, me);
            let new: Vec<i32> = found.difference(&stopped).copied().collect();
            if new.is_empty() {
                break;
            }
            for pid in new {
                signal(pid, libc::SIGSTOP);
                stopped.insert(pid);
            }
        }
        if stopped.is_empty() {
            break;
        }
        for &pid in &stopped {
            signal(pid, libc::SIGKILL);
        }
        killed += stopped.len();
    }
    killed
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: plain syscall on a positive pid (never a group, never ourselves).
    unsafe { libc::kill(pid, signal) };
}

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
}

/// Live (not zombie) processes other than PID 1 and ourselves.
fn processes(me: i32) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid > 1 && *pid != me)
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_stat(pid, &stat)
        })
        .collect()
}

/// Parses `pid (comm) state ppid pgrp …`; `None` for a zombie or dead process.
fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    // The command name may contain spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Proc { pid, ppid, pgid })
}

/// Everything alive that belongs to the exec now.
fn members(root: i32, pipes: &[u64], me: i32) -> HashSet<i32> {
    let procs = processes(me);
    let mut found: HashSet<i32> = procs
        .iter()
        .filter(|p| p.pid == root || p.pgid == root)
        .map(|p| p.pid)
        .collect();
    if !pipes.is_empty() {
        found.extend(
            procs
                .iter()
                .filter(|p| !found.contains(&p.pid) && holds_pipe(p.pid, pipes))
                .map(|p| p.pid)
                .collect::<Vec<_>>(),
        );
    }
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut queue: Vec<i32> = found.iter().copied().collect();
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if found.insert(child) {
                queue.push(child);
            }
        }
    }
    found
}

/// Whether `pid` has one of the pipes open.
fn holds_pipe(pid: i32, pipes: &[u64]) -> bool {
    let fd_dir = format!("/proc/{pid}/fd");
    let Ok(owner) = std::fs::metadata(format!("/proc/{pid}")) else {
        return false;
    };
    let _as_owner = FsIds::become_(owner.uid(), owner.gid());
    let Ok(entries) = std::fs::read_dir(&fd_dir) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|entry| {
        std::fs::read_link(entry.path())
            .ok()
            .and_then(|target| {
                let target = target.to_str()?;
                target
                    .strip_prefix("pipe:[")?
                    .strip_suffix(']')?
                    .parse()
                    .ok()
            })
            .is_some_and(|inode: u64| pipes.contains(&inode))
    })
}

/// This thread's file-system uid and gid switched to a process's owner while alive:
/// `/proc/<pid>/fd` is readable by its owner, and by root only with `CAP_SYS_PTRACE`.
/// The switch is per thread (the raw syscalls, not a process-wide wrapper).
struct FsIds {
    uid: u32,
    gid: u32,
}

impl FsIds {
    fn become_(uid: u32, gid: u32) -> Option<FsIds> {
        let (old_uid, old_gid) = (set_fsuid(u32::MAX), set_fsgid(u32::MAX));
        if old_uid != 0 || (uid == 0 && gid == 0) {
            // Not root: the owner's descriptors are readable or not, as they are.
            return None;
        }
        set_fsgid(gid);
        set_fsuid(uid);
        Some(FsIds {
            uid: old_uid,
            gid: old_gid,
        })
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        set_fsuid(self.uid);
        set_fsgid(self.gid);
    }
}

/// `setfsuid(2)` on this thread; returns the previous value (an invalid id only reads it).
fn set_fsuid(uid: u32) -> u32 {
    // SAFETY: a syscall with an integer argument; it cannot fail, only refuse.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid as libc::c_long) as u32 }
}

/// `setfsgid(2)` on this thread; returns the previous value.
fn set_fsgid(gid: u32) -> u32 {
    // SAFETY: as for set_fsuid.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid as libc::c_long) as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let p = parse_stat(42, "42 (a) b (c)) S 7 9 9 0 -1").expect("parses");
        assert_eq!((p.pid, p.ppid, p.pgid), (42, 7, 9));
        assert!(parse_stat(42, "42 (x) Z 7 9 9").is_none());
        assert!(parse_stat(42, "garbage").is_none());
    }

    /// Drops `CAP_SYS_PTRACE` from this thread's effective set, as in a container.
    fn drop_ptrace_capability() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: capget/capset with a valid header and two data structs (version 3).
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
                0
            );
            data[0].effective &= !(1 << 19); // CAP_SYS_PTRACE
            assert_eq!(
                libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
                0
            );
        }
    }

    #[test]
    fn another_uids_pipe_is_seen_without_the_ptrace_capability() {
        use std::os::fd::AsFd;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        if set_fsuid(u32::MAX) != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let mut child = Command::new("sleep")
            .arg("30")
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn sleep as nobody");
        let stdout = child.stdout.take().expect("stdout");
        let inode = pipe_inode(stdout.as_fd()).expect("a pipe");
        let pid = child.id() as i32;
        // Capabilities are per thread: only this one loses CAP_SYS_PTRACE.
        let (direct, found) = std::thread::spawn(move || {
            drop_ptrace_capability();
            let direct = std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok();
            (direct, holds_pipe(pid, &[inode]))
        })
        .join()
        .expect("thread");
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("root without CAP_SYS_PTRACE reads another uid's fds directly: {direct}");
        assert!(found, "the pipe held by another uid was not found");
    }

    #[test]
    fn a_setsid_grandchild_holding_a_pipe_is_found_and_killed() {
        use std::io::BufRead;
        use std::os::fd::AsFd;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // sh starts a setsid sleep (its own session and group) that keeps stdout.
        let mut child = Command::new("sh")
            .args(["-c", "setsid sleep 1000 & echo $!; wait"])
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let mut stdout = child.stdout.take().expect("stdout");
        let inode = pipe_inode(stdout.as_fd()).expect("a pipe");
        let mut line = String::new();
        std::io::BufReader::new(&mut stdout)
            .read_line(&mut line)
            .expect("the sleep's pid");
        let sleep: i32 = line.trim().parse().expect("a pid");
        let root = child.id() as i32;
        let killed = everything(root, &[inode]);
        let _ = child.wait();
        assert!(killed >= 2, "killed {killed}");
        // Gone or a zombie of ours (if sh died first, it was reparented elsewhere).
        let stat = std::fs::read_to_string(format!("/proc/{sleep}/stat")).unwrap_or_default();
        assert!(
            parse_stat(sleep, &stat).is_none(),
            "the setsid sleep survived: {stat}"
        );
    }
}
