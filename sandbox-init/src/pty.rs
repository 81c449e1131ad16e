//! Pseudo-terminals for [`Request::PtyExec`](sandbox_init::protocol::Request::PtyExec):
//! open a pair, make the slave the process's stdio and controlling terminal, resize.
//!
//! The process becomes a session leader (`setsid`) rather than only a group leader, so
//! its process-group id is still its pid: signals, timeouts and the hang-up kill of
//! [`crate::exec`] work as for a piped exec.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use rustix::pty::{grantpt, ioctl_tiocgptpeer, openpt, unlockpt, OpenptFlags};
use rustix::termios::{tcsetwinsize, Winsize};
use sandbox_init::protocol::PtySize;

/// A terminal pair: the master stays here, the slave goes to the process.
pub struct Pair {
    /// The side sandbox-init reads output from and writes input to.
    pub master: OwnedFd,
    /// The process's terminal.
    pub slave: OwnedFd,
}

/// Opens a new terminal of `size` whose slave belongs to `uid`/`gid` (as a login's
/// terminal does, so `tty`, `ssh` or `script` may reopen it).
pub fn open(size: PtySize, uid: u32, gid: u32) -> std::io::Result<Pair> {
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = openpt(flags)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let slave = ioctl_tiocgptpeer(&master, flags)?;
    resize(&master, size)?;
    rustix::fs::fchown(
        &slave,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    Ok(Pair { master, slave })
}

/// Sets the terminal's size; the kernel sends `SIGWINCH` to its foreground group.
pub fn resize(master: impl AsFd, size: PtySize) -> std::io::Result<()> {
    tcsetwinsize(
        master,
        Winsize {
            ws_row: size.rows.max(1),
            ws_col: size.cols.max(1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// Makes `slave` the command's stdin, stdout and stderr and its controlling terminal,
/// the process the leader of a new session.
pub fn attach(command: &mut Command, slave: &OwnedFd) -> std::io::Result<()> {
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: the closure runs between fork and exec and makes two system calls
    // (setsid, ioctl), both async-signal-safe; it allocates nothing.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            // Stdin is the slave by now (std dups the stdio before running this).
            rustix::process::ioctl_tiocsctty(BorrowedFd::borrow_raw(0))?;
            Ok(())
        });
    }
    Ok(())
}
