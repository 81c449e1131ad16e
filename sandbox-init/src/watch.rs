//! Directory watches ([`Request::Watch`]) with inotify, as the account asking: one
//! inotify instance per watch, a recursive watch adding the subdirectories that appear
//! (and reporting what they already hold, which appeared before their watch did).
//!
//! Bounded: the kernel queues at most `fs.inotify.max_queued_events` events and
//! reports an overflow past that, which ends the watch with an error; events are sent
//! as they are read, so a client that does not read stops this thread, never grows a
//! buffer. At most [`MAX_WATCHES`] watches run at once (inotify instances are a
//! host-wide budget), each of at most [`MAX_DIRS`] directories. A watch ends when its
//! connection closes.
//!
//! [`Request::Watch`]: sandbox_init::protocol::Request::Watch

use std::collections::HashMap;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use sandbox_init::protocol::{
    reply, reply_error, ErrorKind, Reply, WatchEvent, WatchOp, WatchRequest,
};

use crate::accounts::Names;
use crate::failure::{classify, Failure};
use crate::files::{self, fsys, Identity};

/// The most watches running at once in a sandbox.
pub const MAX_WATCHES: usize = 16;
/// The most directories one recursive watch covers.
pub const MAX_DIRS: usize = 10_000;
/// The most paths reported for what a new directory already held.
const MAX_FOUND: usize = 10_000;
/// The most events in one message (a few hundred bytes each, entries included).
const BATCH: usize = 256;

/// Network filesystems (`statfs.f_type`), watched only when asked for (as envd).
const NETWORK: &[i64] = &[0x6969, 0xff53_4d42, 0x517b, 0xfe53_4d42, 0x6573_5546];

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A running watch's place among [`MAX_WATCHES`].
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        let taken = RUNNING.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_WATCHES {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::MODIFY
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::MOVE_SELF
        | WatchMask::ATTRIB
        | WatchMask::ONLYDIR
}

/// The watched tree: each watch descriptor's directory, relative to the root.
struct Tree {
    inotify: Inotify,
    root: String,
    root_wd: Option<WatchDescriptor>,
    dirs: HashMap<WatchDescriptor, String>,
    recursive: bool,
}

impl Tree {
    fn absolute(&self, rel: &str) -> String {
        match (rel.is_empty(), self.root.as_str()) {
            (true, _) => self.root.clone(),
            (false, "/") => format!("/{rel}"),
            (false, root) => format!("{root}/{rel}"),
        }
    }

    /// Watches `rel` (and, recursively, its subdirectories); the paths found inside
    /// are added to `found` when given.
    fn add(&mut self, rel: &str, mut found: Option<&mut Vec<String>>) -> Result<(), Failure> {
        let path = self.absolute(rel);
        if self.dirs.len() >= MAX_DIRS {
            return Err((
                ErrorKind::TooLarge,
                format!("{}: more than {MAX_DIRS} directories to watch", self.root),
            ));
        }
        let extra = if rel.is_empty() {
            WatchMask::empty()
        } else {
            WatchMask::DONT_FOLLOW
        };
        let wd = match self.inotify.watches().add(&path, mask() | extra) {
            Ok(wd) => wd,
            // Gone, or no longer a directory, before it could be watched.
            Err(e)
                if !rel.is_empty()
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::EACCES)
                    ) =>
            {
                return Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err((
                    ErrorKind::TooLarge,
                    format!(
                    "{path}: the host's inotify watches (fs.inotify.max_user_watches) are used up"
                ),
                ))
            }
            Err(e) => return Err(classify(&path, &e)),
        };
        if rel.is_empty() {
            self.root_wd = Some(wd.clone());
        }
        self.dirs.insert(wd, rel.to_owned());
        if !self.recursive {
            return Ok(());
        }
        let Ok(listing) = std::fs::read_dir(&path) else {
            return Ok(());
        };
        for item in listing.flatten() {
            let name = item.file_name().to_string_lossy().into_owned();
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            // What a new directory held is reported up to a bound (a tree moved in
            // may hold millions of files); its directories are watched regardless.
            if let Some(found) = found.as_deref_mut().filter(|f| f.len() < MAX_FOUND) {
                found.push(child.clone());
            }
            if item.file_type().is_ok_and(|t| t.is_dir()) {
                self.add(&child, found.as_deref_mut())?;
            }
        }
        Ok(())
    }

    /// Stops watching `rel` and everything under it (moved away).
    fn forget(&mut self, rel: &str) {
        let prefix = format!("{rel}/");
        let gone: Vec<WatchDescriptor> = self
            .dirs
            .iter()
            .filter(|(_, p)| *p == rel || p.starts_with(&prefix))
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in gone {
            let _ = self.inotify.watches().remove(wd.clone());
            self.dirs.remove(&wd);
        }
    }
}

/// Whether a name is one of the files API's temporary files (`write.rs`).
fn is_temp(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.strip_prefix(b".sandboxd-write-")
        .is_some_and(|hex| hex.len() == 16 && hex.iter().all(u8::is_ascii_hexdigit))
}

/// Handles [`Request::Watch`](sandbox_init::protocol::Request::Watch).
pub fn run(mut stream: UnixStream, request: WatchRequest) {
    let Some(_slot) = Slot::take() else {
        return reply_error(
            &mut stream,
            ErrorKind::TooLarge,
            format!("at most {MAX_WATCHES} directory watches may run at once in a sandbox"),
        );
    };
    let account = match files::account(&request.as_user) {
        Ok(a) => a,
        Err((kind, message)) => return reply_error(&mut stream, kind, message),
    };
    let _identity = Identity::become_(&account);
    let mut tree = match start(&request) {
        Ok(tree) => tree,
        Err((kind, message)) => return reply_error(&mut stream, kind, message),
    };
    if reply(&mut stream, Reply::Watching).is_err() {
        return;
    }
    match watch(&mut stream, &mut tree, request.include_entry) {
        Ok(()) => {
            let _ = reply(&mut stream, Reply::End);
        }
        Err(Some((kind, message))) => reply_error(&mut stream, kind, message),
        Err(None) => {}
    }
}

fn start(request: &WatchRequest) -> Result<Tree, Failure> {
    let path = request.path.as_str();
    files::check_path(path)?;
    let dir =
        fsys::open_checked(path, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|f| match f.0 {
            ErrorKind::NotADirectory => {
                (ErrorKind::InvalidInput, format!("{path}: not a directory"))
            }
            _ => f,
        })?;
    if !request.allow_network_mounts {
        // SAFETY: statfs is plain data; fstatfs fills it for a valid descriptor.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstatfs(dir.as_fd().as_raw_fd(), &mut st) } == 0
            && NETWORK.contains(&(st.f_type as i64))
        {
            return Err((
                ErrorKind::InvalidInput,
                format!("cannot watch path on network filesystem: {path} (allow network mounts to watch it)"),
            ));
        }
    }
    let inotify = Inotify::init().map_err(|e| match e.raw_os_error() {
        Some(libc::EMFILE) => (
            ErrorKind::TooLarge,
            "the host's inotify instances (fs.inotify.max_user_instances) are used up".to_owned(),
        ),
        _ => classify(path, &e),
    })?;
    let root = if path == "/" {
        "/".to_owned()
    } else {
        path.trim_end_matches('/').to_owned()
    };
    let mut tree = Tree {
        inotify,
        root,
        root_wd: None,
        dirs: HashMap::new(),
        recursive: request.recursive,
    };
    tree.add("", None)?;
    Ok(tree)
}

/// Forwards events until the client leaves (`Err(None)`), the watched directory goes
/// away (`Ok`), or the watch fails.
fn watch(
    stream: &mut UnixStream,
    tree: &mut Tree,
    include_entry: bool,
) -> Result<(), Option<Failure>> {
    let mut buf = vec![0u8; 64 * 1024];
    // The cookies of temporary files renamed away, whose arrival may be in a later read.
    let mut temp_cookies: Vec<u32> = Vec::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: tree.inotify.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stream.as_raw_fd(),
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the duration of the call.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            continue;
        }
        if fds[1].revents != 0 {
            // The client sends nothing during a watch: anything is its end.
            let mut byte = [0u8; 1];
            match stream.read(&mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                _ => return Err(None),
            }
        }
        if fds[0].revents == 0 {
            continue;
        }
        let mut events = Vec::new();
        let mut ended = false;
        let mut new_dirs = Vec::new();
        let read = match tree.inotify.read_events(&mut buf) {
            Ok(read) => read,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(Some(classify(&tree.root, &e))),
        };
        for event in read {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                return Err(Some((
                    ErrorKind::TooLarge,
                    "the watch's event queue overflowed: events were lost".into(),
                )));
            }
            let is_root = Some(&event.wd) == tree.root_wd.as_ref();
            if event.mask.contains(EventMask::IGNORED) {
                if is_root {
                    ended = true;
                }
                tree.dirs.remove(&event.wd);
                continue;
            }
            let Some(name) = event.name else {
                // Self events: the parent reports them; the root's end the watch.
                if is_root
                    && event
                        .mask
                        .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    ended = true;
                }
                continue;
            };
            let Some(dir) = tree.dirs.get(&event.wd) else {
                continue;
            };
            let m = event.mask;
            // The files API writes through a temporary file renamed over the target:
            // the temporary file is not reported, its rename in is the target's
            // creation and write (what a client sees of envd's in-place writes).
            if is_temp(name) {
                if m.contains(EventMask::MOVED_FROM) {
                    if temp_cookies.len() >= 64 {
                        temp_cookies.remove(0);
                    }
                    temp_cookies.push(event.cookie);
                }
                continue;
            }
            let from_temp = m.contains(EventMask::MOVED_TO) && temp_cookies.contains(&event.cookie);
            let name = name.to_string_lossy();
            let rel = if dir.is_empty() {
                name.into_owned()
            } else {
                format!("{dir}/{name}")
            };
            let op = if m.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                WatchOp::Create
            } else if m.contains(EventMask::MODIFY) {
                WatchOp::Write
            } else if m.contains(EventMask::DELETE) {
                WatchOp::Remove
            } else if m.contains(EventMask::MOVED_FROM) {
                WatchOp::Rename
            } else if m.contains(EventMask::ATTRIB) {
                WatchOp::Chmod
            } else {
                continue;
            };
            if tree.recursive && m.contains(EventMask::ISDIR) {
                match op {
                    WatchOp::Create => new_dirs.push(rel.clone()),
                    WatchOp::Rename => tree.forget(&rel),
                    _ => {}
                }
            }
            if from_temp {
                events.push(WatchEvent {
                    name: rel.clone(),
                    op: WatchOp::Create,
                    entry: None,
                });
                events.push(WatchEvent {
                    name: rel,
                    op: WatchOp::Write,
                    entry: None,
                });
                continue;
            }
            events.push(WatchEvent {
                name: rel,
                op,
                entry: None,
            });
        }
        for dir in new_dirs {
            let mut found = Vec::new();
            tree.add(&dir, Some(&mut found)).map_err(Some)?;
            events.extend(found.into_iter().map(|name| WatchEvent {
                name,
                op: WatchOp::Create,
                entry: None,
            }));
        }
        if include_entry {
            let names = Names::load();
            for event in &mut events {
                if matches!(event.op, WatchOp::Create | WatchOp::Write | WatchOp::Chmod) {
                    event.entry = files::entry(&tree.absolute(&event.name), &names).ok();
                }
            }
        }
        for batch in events.chunks(BATCH) {
            let events = batch.to_vec();
            if reply(stream, Reply::WatchEvents { events }).is_err() {
                return Err(None);
            }
        }
        if ended {
            return Ok(());
        }
    }
}
