//! Directory listings, walked through opened directory descriptors (a directory swapped
//! for a symlink mid-walk is not followed; pseudo filesystems are not entered) and sent
//! in pages that each fit a frame, however long the listing.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use sandbox_init::protocol::{
    reply, EntryKind, ErrorKind, FileEntry, Reply, MAX_FRAME_LEN, MAX_LISTING_BYTES,
};

use super::check_path;
use super::fsys::{self, DirStream};
use crate::accounts::Names;
use crate::failure::{classify, Failure};

/// The most entries a listing holds when the client asks for no lower bound.
pub const MAX_ENTRIES: u64 = 100_000;

/// The deepest listing walked (one descriptor and stack frame a level).
pub const MAX_DEPTH: u32 = 64;

/// The JSON bytes of entries per page: a quarter of a frame leaves ample room for the
/// envelope (an entry is under 9 KiB: a name, a 4 KiB path and a 4 KiB link target).
const PAGE_BYTES: usize = MAX_FRAME_LEN / 4;

/// Lists `path` `depth` levels deep, at most `max_entries` entries, sorted by path.
pub fn list(path: &str, depth: u32, max_entries: Option<u64>) -> Result<Vec<FileEntry>, Failure> {
    list_within(path, depth, max_entries, MAX_LISTING_BYTES)
}

/// [`list`] with a weight bound of `max_bytes`.
fn list_within(
    path: &str,
    depth: u32,
    max_entries: Option<u64>,
    max_bytes: usize,
) -> Result<Vec<FileEntry>, Failure> {
    check_path(path)?;
    if depth == 0 || depth > MAX_DEPTH {
        return Err((
            ErrorKind::InvalidInput,
            format!("depth must be between 1 and {MAX_DEPTH}"),
        ));
    }
    let max = max_entries.unwrap_or(MAX_ENTRIES).min(MAX_ENTRIES) as usize;
    // The listed directory itself may be reached through symlinks (as with `ls`).
    let root =
        fsys::open_checked(path, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|f| match f.0 {
            ErrorKind::NotADirectory => {
                (ErrorKind::NotADirectory, format!("{path}: not a directory"))
            }
            _ => f,
        })?;
    let mut walk = Walk {
        names: Names::load(),
        entries: Vec::new(),
        weight: 0,
        max_bytes,
        max,
        depth,
    };
    let stream = DirStream::new(root).map_err(|e| classify(path, &e))?;
    walk.dir(stream, path.trim_end_matches('/'), 1)
        .map_err(|over| {
            over.unwrap_or_else(|| {
                let what = if walk.weight > max_bytes {
                    format!("a listing over {} KiB", max_bytes >> 10)
                } else {
                    format!("more than {max} entries")
                };
                (
                    ErrorKind::TooLarge,
                    format!(
                        "{path} has {what} at depth {depth}; \
                         list a subdirectory or a smaller depth"
                    ),
                )
            })
        })?;
    let mut entries = walk.entries;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

struct Walk {
    names: Names,
    entries: Vec<FileEntry>,
    /// The sum of the entries' weights.
    weight: usize,
    /// The bound of `weight`.
    max_bytes: usize,
    max: usize,
    depth: u32,
}

impl Walk {
    /// Adds the entries of an opened directory shown as `shown` (at `level`), and those
    /// of its subdirectories below the depth. `Err(None)`: past the count or weight
    /// bound.
    fn dir(
        &mut self,
        mut stream: DirStream,
        shown: &str,
        level: u32,
    ) -> Result<(), Option<Failure>> {
        let left = self.max - self.entries.len();
        let names = stream
            .names(left)
            .map_err(|e| Some(classify(shown, &e)))?
            .map_err(|_| None)?;
        for name in names {
            let child = format!("{shown}/{}", name.to_string_lossy());
            let dir = stream.fd();
            let st = match fsys::stat_at(dir, &name) {
                Ok(st) => st,
                // Removed while listed: it is simply not there any more.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(Some(classify(&child, &e))),
            };
            let link = (st.st_mode & libc::S_IFMT == libc::S_IFLNK)
                .then(|| fsys::read_link_at(dir, &name))
                .flatten();
            let mut entry = fsys::entry_from(&child, &st, link, &self.names);
            if entry.kind == EntryKind::Symlink {
                entry.target_kind = fsys::target_kind_at(Some(dir), &name);
            }
            if matches!(entry.kind, EntryKind::File | EntryKind::Dir) {
                let flags = libc::O_PATH | libc::O_NOFOLLOW;
                if let Ok(fd) = fsys::open_at(Some(dir), &name, flags, 0) {
                    entry.metadata = fsys::read_metadata(fd.as_fd(), entry.kind);
                }
            }
            let descend = entry.kind == EntryKind::Dir && level < self.depth;
            self.weight += entry.weight();
            if self.entries.len() == self.max || self.weight > self.max_bytes {
                return Err(None);
            }
            self.entries.push(entry);
            if descend {
                if let Some(sub) = open_subdir(dir, &name, &child).map_err(Some)? {
                    self.dir(sub, &child, level + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// Opens a subdirectory without following a symlink put in its place; `None` for one
/// that cannot be entered (permissions, gone) or is a pseudo filesystem's mount.
pub(super) fn open_subdir(
    dir: BorrowedFd<'_>,
    name: &CStr,
    shown: &str,
) -> Result<Option<DirStream>, Failure> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let fd = match fsys::open_at(Some(dir), name, flags, 0) {
        Ok(fd) => fd,
        Err(_) => return Ok(None),
    };
    if !matches!(fsys::pseudo_fs(fd.as_fd()), Ok(None)) {
        return Ok(None);
    }
    DirStream::new(fd)
        .map(Some)
        .map_err(|e| classify(shown, &e))
}

/// Sends a listing as [`Reply::Entries`] pages that each fit a frame, then
/// [`Reply::End`].
pub fn send(stream: &mut UnixStream, entries: Vec<FileEntry>) {
    let mut page = Vec::new();
    let mut bytes = 0;
    for entry in entries {
        let size = serde_json::to_vec(&entry).map_or(PAGE_BYTES, |v| v.len() + 1);
        if !page.is_empty() && bytes + size > PAGE_BYTES {
            let full = std::mem::take(&mut page);
            if reply(stream, Reply::Entries { entries: full }).is_err() {
                return;
            }
            bytes = 0;
        }
        bytes += size;
        page.push(entry);
    }
    if !page.is_empty() && reply(stream, Reply::Entries { entries: page }).is_err() {
        return;
    }
    let _ = reply(stream, Reply::End);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_depth_and_bounds_the_count() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("a/b/c")).expect("dirs");
        std::fs::write(tmp.path().join("a/f"), "x").expect("file");
        std::os::unix::fs::symlink("/proc", tmp.path().join("a/p")).expect("link");
        let root = tmp.path().to_str().expect("utf8");
        let paths = |depth, max| {
            list(root, depth, max).map(|e| {
                e.into_iter()
                    .map(|e| e.path[root.len()..].to_owned())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(paths(1, None).expect("depth 1"), vec!["/a"]);
        assert_eq!(
            paths(3, None).expect("depth 3"),
            vec!["/a", "/a/b", "/a/b/c", "/a/f", "/a/p"]
        );
        let (kind, message) = paths(3, Some(4)).unwrap_err();
        assert_eq!(kind, ErrorKind::TooLarge);
        assert!(message.contains("more than 4 entries"), "{message}");
        assert_eq!(
            list("/proc", 1, None).unwrap_err().0,
            ErrorKind::PermissionDenied
        );
        let link = format!("{root}/a/p");
        assert_eq!(
            list(&link, 1, None).unwrap_err().0,
            ErrorKind::PermissionDenied
        );
        assert_eq!(list(root, 65, None).unwrap_err().0, ErrorKind::InvalidInput);
    }

    #[test]
    fn a_listing_is_bounded_by_weight_too() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = "t".repeat(4000);
        // 30 links of 4 KB: past a 64 KiB bound with few entries.
        for i in 0..30 {
            std::os::unix::fs::symlink(&target, tmp.path().join(i.to_string())).expect("link");
        }
        let root = tmp.path().to_str().expect("utf8");
        assert_eq!(list_within(root, 1, None, 1 << 20).map(|e| e.len()), Ok(30));
        let (kind, message) = list_within(root, 1, None, 64 << 10).unwrap_err();
        assert_eq!(kind, ErrorKind::TooLarge);
        assert!(message.contains("a listing over 64 KiB"), "{message}");
    }

    #[test]
    fn a_long_listing_goes_in_pages_that_each_fit_a_frame() {
        use sandbox_init::protocol::{read_frame, Frame};
        let entry = |i: usize| FileEntry {
            name: format!("{i:0200}"),
            path: format!("/d/{i:0200}"),
            kind: EntryKind::File,
            size: 0,
            mode: 0o644,
            owner: "user".into(),
            group: "user".into(),
            modified_ms: 0,
            symlink_target: None,
            target_kind: None,
            metadata: Default::default(),
        };
        let entries: Vec<FileEntry> = (0..6000).map(entry).collect();
        let (mut ours, mut theirs) = UnixStream::pair().expect("pair");
        let sender = std::thread::spawn(move || send(&mut ours, entries));
        let mut got = Vec::new();
        let mut pages = 0;
        loop {
            match read_frame::<Reply>(&mut theirs).expect("a frame within the bound") {
                Some(Frame::Message(Reply::Entries { entries })) => {
                    assert!(!entries.is_empty());
                    pages += 1;
                    got.extend(entries);
                }
                Some(Frame::Message(Reply::End)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        sender.join().expect("sender");
        assert!(pages > 1, "{pages} pages");
        assert_eq!(got, (0..6000).map(entry).collect::<Vec<_>>());
    }
}
