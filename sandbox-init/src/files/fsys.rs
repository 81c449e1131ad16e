//! The system calls the file operations are built on: opens that refuse `/proc` magic
//! links, work relative to an already-opened directory, and check the filesystem type of
//! what was actually opened, so a symlink the sandbox plants cannot send an operation
//! somewhere other than where the checks looked.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use sandbox_init::protocol::{EntryKind, ErrorKind, FileEntry};

use crate::accounts::Names;
use crate::failure::{classify, Failure};

/// The kernel's pseudo filesystems (`statfs.f_type`): their files describe the kernel
/// and the processes (sandbox-init's included), not the sandbox's files.
const PSEUDO: &[(i64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0xcafe_4a11, "bpf"),
    (0x1cd1, "devpts"),
    (0x1980_0202, "mqueue"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x6265_6570, "configfs"),
    (0x6573_5543, "fusectl"),
    (0x6165_676c, "pstore"),
    (0xde5e_81e4, "efivarfs"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x5049_5045, "pipefs"),
    (0x534f_434b, "sockfs"),
];

/// Mount points of pseudo filesystems, refused by name before anything is opened (the
/// type check on the opened descriptor covers every other way of reaching them).
const PSEUDO_ROOTS: &[&str] = &["/proc", "/sys"];

fn pseudo_refusal(shown: &str, fs: &str) -> Failure {
    (
        ErrorKind::PermissionDenied,
        format!(
            "{shown}: is on the kernel's {fs} pseudo filesystem; the files API serves \
             only the sandbox's own files (run a command to inspect it)"
        ),
    )
}

/// Refuses a path under a pseudo filesystem's usual mount point.
pub fn refuse_pseudo_path(path: &str) -> Result<(), Failure> {
    for root in PSEUDO_ROOTS {
        if path == *root || path.strip_prefix(root).is_some_and(|r| r.starts_with('/')) {
            return Err(pseudo_refusal(path, root.trim_start_matches('/')));
        }
    }
    Ok(())
}

/// The pseudo filesystem `fd` is on, if any.
pub fn pseudo_fs(fd: BorrowedFd<'_>) -> io::Result<Option<&'static str>> {
    // SAFETY: statfs is plain data; fstatfs fills it for a valid descriptor.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let kind = st.f_type as i64;
    Ok(PSEUDO
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, n)| *n))
}

/// Refuses a descriptor on a pseudo filesystem.
pub fn refuse_pseudo(fd: BorrowedFd<'_>, shown: &str) -> Result<(), Failure> {
    match pseudo_fs(fd) {
        Ok(None) => Ok(()),
        Ok(Some(fs)) => Err(pseudo_refusal(shown, fs)),
        Err(e) => Err(classify(shown, &e)),
    }
}

/// A path or name as a C string (the caller checked it has no NUL).
pub fn c_path(path: impl AsRef<OsStr>) -> Result<CString, Failure> {
    let path = path.as_ref();
    CString::new(path.as_bytes()).map_err(|_| {
        (
            ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.to_string_lossy()),
        )
    })
}

/// `openat2` relative to `dir` (or the working directory) refusing `/proc` magic links
/// (`/proc/PID/root`, `/proc/PID/fd/N`) anywhere on the way; plain `openat` on kernels
/// before 5.6. `O_CLOEXEC` is always added.
pub fn open_at(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    let flags = flags | libc::O_CLOEXEC;
    // SAFETY: open_how is plain data (non_exhaustive, so built from zeroes).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.mode = if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        u64::from(mode)
    } else {
        0
    };
    how.resolve = libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid pointers for the duration of the call; the result is a new fd.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let fd = if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS) {
        // SAFETY: as above, the older call.
        i64::from(unsafe { libc::openat(dirfd, path.as_ptr(), flags, mode as libc::c_uint) })
    } else {
        fd
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Opens `path` (see [`open_at`]) and refuses what is on a pseudo filesystem; a failed
/// open of a pseudo file (say, a root-only one) is refused as such too.
pub fn open_checked(path: &str, flags: libc::c_int) -> Result<OwnedFd, Failure> {
    let c = c_path(path)?;
    match open_at(None, &c, flags, 0) {
        Ok(fd) => {
            refuse_pseudo(fd.as_fd(), path)?;
            Ok(fd)
        }
        Err(e) => {
            if let Ok(fd) = open_at(None, &c, libc::O_PATH | (flags & libc::O_NOFOLLOW), 0) {
                refuse_pseudo(fd.as_fd(), path)?;
            }
            if e.raw_os_error() == Some(libc::ELOOP) && flags & libc::O_NOFOLLOW == 0 {
                return Err((
                    ErrorKind::InvalidInput,
                    format!(
                        "{path}: too many levels of symbolic links, or a /proc magic link \
                         (the files API does not follow those)"
                    ),
                ));
            }
            Err(classify(path, &e))
        }
    }
}

/// `fstatat` of `name` in `dir` (the descriptor itself when `name` is empty), without
/// following a final symlink.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// What `name` in `dir` (the working directory when `None`) is once every symlink on
/// the way is followed; `None` when it dangles or cannot be reached.
pub fn target_kind_at(dir: Option<BorrowedFd<'_>>, name: &CStr) -> Option<EntryKind> {
    let dir = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: stat is plain data filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, 0) } != 0 {
        return None;
    }
    Some(kind_of(st.st_mode))
}

/// The kind of a `st_mode`.
fn kind_of(mode: libc::mode_t) -> EntryKind {
    match mode & libc::S_IFMT {
        libc::S_IFLNK => EntryKind::Symlink,
        libc::S_IFDIR => EntryKind::Dir,
        libc::S_IFREG => EntryKind::File,
        _ => EntryKind::Other,
    }
}

/// Where the symlink `name` in `dir` points (`name` empty: the descriptor itself).
pub fn read_link_at(dir: BorrowedFd<'_>, name: &CStr) -> Option<String> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: the buffer is valid for its length; readlinkat writes at most that.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

/// `fchownat` of `name` in `dir` (the descriptor itself when empty), not following a
/// symlink.
pub fn chown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: valid C string and descriptor.
    if unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `renameat` within one directory.
pub fn rename_at(dir: BorrowedFd<'_>, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: valid C strings and descriptor.
    if unsafe { libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr()) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `unlinkat` of a non-directory; failures are ignored (cleanup only).
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) {
    // SAFETY: valid C string and descriptor.
    unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
}

/// 64 random bits for a temporary file's name.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: the buffer is valid for 8 bytes.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n == 8 {
        return u64::from_ne_bytes(bytes);
    }
    // getrandom cannot fail on a supported kernel; the clock is a fallback, and O_EXCL
    // keeps a guessed name harmless anyway.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}

/// An open directory stream, closed on drop.
pub struct DirStream(*mut libc::DIR);

impl DirStream {
    /// Takes ownership of a directory descriptor.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an owned directory descriptor; on success DIR owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the descriptor is still ours to close.
            unsafe { libc::close(raw) };
            return Err(e);
        }
        Ok(Self(dir))
    }

    /// The descriptor, for `*at` calls relative to this directory.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor lives as long as the stream.
        unsafe { BorrowedFd::borrow_raw(libc::dirfd(self.0)) }
    }

    /// Every name in the directory but `.` and `..`, at most `max` of them (more is an
    /// error the caller reports).
    pub fn names(&mut self, max: usize) -> io::Result<Result<Vec<CString>, usize>> {
        let mut names = Vec::new();
        loop {
            // readdir reports errors only through errno.
            // SAFETY: errno is thread-local; the stream is valid.
            unsafe { *libc::__errno_location() = 0 };
            let item = unsafe { libc::readdir64(self.0) };
            if item.is_null() {
                let e = io::Error::last_os_error();
                return match e.raw_os_error() {
                    Some(0) | None => Ok(Ok(names)),
                    _ => Err(e),
                };
            }
            // SAFETY: d_name is a NUL-terminated name inside the returned entry.
            let name = unsafe { CStr::from_ptr((*item).d_name.as_ptr()) };
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            if names.len() == max {
                return Ok(Err(max));
            }
            names.push(name.to_owned());
        }
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the stream is open and closed only here.
        unsafe { libc::closedir(self.0) };
    }
}

/// The entry for `stat` data of `path` (whose last component is `name`).
pub fn entry_from(
    path: &str,
    st: &libc::stat,
    symlink_target: Option<String>,
    names: &Names,
) -> FileEntry {
    let kind = kind_of(st.st_mode);
    let name = std::path::Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".to_owned());
    FileEntry {
        name,
        path: path.to_owned(),
        kind,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        owner: names.user(st.st_uid),
        group: names.group(st.st_gid),
        modified_ms: st.st_mtime * 1000 + st.st_mtime_nsec / 1_000_000,
        symlink_target: (kind == EntryKind::Symlink)
            .then_some(symlink_target)
            .flatten(),
        target_kind: None,
        metadata: Default::default(),
    }
}

/// The prefix of the extended attributes that hold a file's metadata.
pub const METADATA_PREFIX: &str = "user.e2b.";
/// The most bytes of metadata (names with the prefix, and values) a file may carry,
/// as envd bounds it (ext4 keeps a file's attributes within one block).
pub const MAX_METADATA_BYTES: usize = 4096;

/// The `user.e2b.*` attributes of an opened file or directory (an `O_PATH` descriptor
/// will do: it is reached through its `/proc/self/fd` link, the very inode), prefix
/// stripped; best-effort, as envd: what cannot be read, or is not UTF-8, is left out.
/// Symlinks carry none (Linux refuses `user.*` attributes on them).
pub fn read_metadata(fd: BorrowedFd<'_>, kind: EntryKind) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !matches!(kind, EntryKind::File | EntryKind::Dir) {
        return out;
    }
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let Ok(names) = xattr::list_deref(&link) else {
        return out;
    };
    let mut total = 0;
    for name in names {
        let Some(key) = name.to_str().and_then(|n| n.strip_prefix(METADATA_PREFIX)) else {
            continue;
        };
        let Ok(Some(value)) = xattr::get_deref(&link, &name) else {
            continue;
        };
        let Ok(value) = String::from_utf8(value) else {
            continue;
        };
        // A bound whatever was set inside the sandbox (setfattr allows 64 KiB values).
        total += METADATA_PREFIX.len() + key.len() + value.len();
        if total > 4 * MAX_METADATA_BYTES {
            break;
        }
        out.insert(key.to_owned(), value);
    }
    out
}

/// Checks metadata as envd does: non-empty printable-ASCII keys of at most 246 bytes,
/// printable-ASCII values, at most [`MAX_METADATA_BYTES`] in all.
pub fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), Failure> {
    let printable = |s: &str| s.bytes().all(|c| (0x20..=0x7e).contains(&c));
    let mut total = 0;
    for (key, value) in metadata {
        if key.is_empty() || key.len() > 255 - METADATA_PREFIX.len() || !printable(key) {
            return Err((
                ErrorKind::InvalidInput,
                format!("invalid metadata: key {key:?} must be 1 to 246 printable ASCII bytes"),
            ));
        }
        if !printable(value) {
            return Err((
                ErrorKind::InvalidInput,
                format!("invalid metadata: the value for key {key:?} must be printable ASCII"),
            ));
        }
        total += METADATA_PREFIX.len() + key.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err((
            ErrorKind::InvalidInput,
            format!(
                "invalid metadata: total metadata size {total} exceeds {MAX_METADATA_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// Sets `user.e2b.*` attributes on an open file.
pub fn write_metadata(file: &std::fs::File, metadata: &BTreeMap<String, String>) -> io::Result<()> {
    use xattr::FileExt;
    for (key, value) in metadata {
        file.set_xattr(format!("{METADATA_PREFIX}{key}"), value.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_sys_are_pseudo_by_name_and_by_type() {
        assert!(refuse_pseudo_path("/proc").is_err());
        assert!(refuse_pseudo_path("/proc/1/maps").is_err());
        assert!(refuse_pseudo_path("/sys/kernel").is_err());
        assert!(refuse_pseudo_path("/process").is_ok());
        assert!(refuse_pseudo_path("/home/user/proc").is_ok());
        let proc = open_at(None, c"/proc/self/stat", libc::O_RDONLY, 0).expect("open");
        let (kind, message) = refuse_pseudo(proc.as_fd(), "/proc/self/stat").unwrap_err();
        assert_eq!(kind, ErrorKind::PermissionDenied);
        assert!(message.contains("proc pseudo filesystem"), "{message}");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = open_at(None, &c_path(tmp.path()).expect("c"), libc::O_RDONLY, 0).expect("dir");
        assert!(refuse_pseudo(dir.as_fd(), "tmp").is_ok());
    }

    #[test]
    fn magic_links_are_refused() {
        let e = open_at(None, c"/proc/self/root/etc", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn directory_names_are_listed_and_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for n in ["a", "b", "c"] {
            std::fs::write(tmp.path().join(n), n).expect("write");
        }
        let open = || {
            let fd = open_at(
                None,
                &c_path(tmp.path()).expect("c"),
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
            )
            .expect("open");
            DirStream::new(fd).expect("stream")
        };
        let mut names = open().names(10).expect("read").expect("within");
        names.sort();
        assert_eq!(
            names,
            vec![c"a".to_owned(), c"b".to_owned(), c"c".to_owned()]
        );
        assert_eq!(open().names(2).expect("read"), Err(2));
    }
}
