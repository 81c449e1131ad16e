//! `sandbox-init --shim -- PROGRAM ARGS…`: the process an exec starts first, standing
//! between sandbox-init and the command.
//!
//! It is the exec's child subreaper: orphans of whatever the command starts reparent to
//! it, so they stay in the exec's tree for [`crate::kill`] on a timeout or a hang-up.
//! The flag belongs to the shim, so the command cannot clear it (`prctl` acts on the
//! caller only); when the flag sat on the command itself, a command that cleared it
//! and then double-forked left an orphan of PID 1 that outlived its timeout.
//!
//! The shim runs the command in its own process group and session (the exec's), hands
//! it its stdio and closes its own copies, reaps what reparents to it, passes on a
//! signal the command would not get otherwise (it left the shim's process group, as an
//! interactive shell on a terminal does), and ends as the command ended: the same exit
//! code, or killed by the same signal. Once the command has ended, what it left running
//! goes to PID 1, as before: a command that ends by itself may leave servers behind.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Exit code when the program could not be started (as shells use).
const CANNOT_START: i32 = 127;

/// Runs the shim; never returns.
pub fn run(argv: &[String]) -> ! {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("sandbox-init --shim: no command");
        std::process::exit(2);
    };
    // Every signal is taken with sigwaitinfo below, so all are blocked here. sandbox-init
    // blocks every signal too, and a mask survives fork and exec, as do signals ignored
    // where it was started (a shell's background job ignores SIGINT and SIGQUIT): the
    // command starts with none blocked and every disposition at its default, as in a
    // fresh login, or SIGTERM and SIGINT would never reach it.
    let all = block_all();
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: between fork and exec only sigemptyset, sigprocmask and signal run,
    // all async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SIGKILL, SIGSTOP and the numbers past SIGRTMAX fail harmlessly.
            for signal in 1..=64 {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child.id() as i32,
        Err(e) => {
            eprintln!("sandbox-init: cannot start {program}: {e}");
            std::process::exit(CANNOT_START);
        }
    };
    release_stdio();
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` is an initialised set; `info` is writable.
        let signal = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if signal < 0 {
            continue;
        }
        if signal == libc::SIGCHLD {
            if let Some(status) = reap(child) {
                end_as(status);
            }
            continue;
        }
        // The group's signals reach the command already, unless it left the group.
        // SAFETY: plain syscalls on our own child's pid.
        unsafe {
            if libc::getpgid(child) != libc::getpgid(0) {
                libc::kill(child, signal);
            }
        }
    }
}

/// Blocks every signal; returns the full set.
fn block_all() -> libc::sigset_t {
    // SAFETY: sigfillset initialises the set; sigprocmask with a valid set.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        all
    }
}

/// Points the shim's stdin, stdout and stderr at `/dev/null`: only the command (and
/// what it starts) holds the exec's pipes or terminal, so they end when it does.
fn release_stdio() {
    // SAFETY: open, dup2 and close on descriptors this process owns.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            libc::close(null);
        }
    }
}

/// Reaps every child that has ended; the command's wait status once it is among them.
fn reap(command: i32) -> Option<i32> {
    let mut ended = None;
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return ended;
        }
        if pid == command {
            ended = Some(status);
        }
    }
}

/// Ends the shim the way the command ended.
fn end_as(status: i32) -> ! {
    if libc::WIFSIGNALED(status) {
        let signal = libc::WTERMSIG(status);
        // SAFETY: default disposition, unblock, and raise: the process dies of it.
        unsafe {
            libc::signal(signal, libc::SIG_DFL);
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            libc::raise(signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(libc::WEXITSTATUS(status));
}
