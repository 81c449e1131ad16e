//! sandbox-init run as an ordinary child process with the root account, for the
//! socket-level tests.

// Each test crate uses a part of this module.
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sandbox_init::protocol::SOCKET_NAME;

/// The longest a test waits for one reply before failing (nothing hangs).
pub const READ_DEADLINE: Duration = Duration::from_secs(60);

/// A running sandbox-init, killed on drop.
pub struct Init {
    pub child: Child,
    pub dir: tempfile::TempDir,
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Init {
    /// Starts one with SIGINT and SIGQUIT ignored, as a shell's background job (or a
    /// hostile parent) would start it: what it runs must get them back all the same.
    pub fn start() -> Init {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut command = Command::new(env!("CARGO_BIN_EXE_sandbox-init"));
        command
            .args(["--socket-dir"])
            .arg(dir.path().join("run"))
            .args(["--user", "root", "--uid", "0", "--home", "/root"]);
        // SAFETY: between fork and exec, only `signal` (async-signal-safe) is called.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                Ok(())
            });
        }
        let child = command.spawn().expect("spawn sandbox-init");
        let init = Init { child, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(init.socket()).is_err() {
            assert!(Instant::now() < deadline, "sandbox-init did not listen");
            std::thread::sleep(Duration::from_millis(5));
        }
        init
    }

    /// Its socket.
    pub fn socket(&self) -> std::path::PathBuf {
        self.dir.path().join("run").join(SOCKET_NAME)
    }

    /// A new connection whose reads fail after [`READ_DEADLINE`].
    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.socket()).expect("connect");
        s.set_read_timeout(Some(READ_DEADLINE))
            .expect("read timeout");
        s
    }
}
