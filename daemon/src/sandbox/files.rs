//! Files inside a sandbox, through sandbox-init, with the permissions of the account
//! a call acts as (`user`, or `root`): write (atomic, several at once), read, list,
//! stat, mkdir, rename, remove.

use sandbox_init::protocol::{ErrorKind, FileEntry};

use super::paths;
use super::{Sandbox, SandboxError, Sandboxes};
use crate::init_client::InitError;
use crate::names::{HOME, ROOT, USER};

/// The deepest listing a call may ask for.
pub const MAX_LIST_DEPTH: u32 = 32;

/// Only the sandbox user and root act on files.
pub(super) fn check_user(name: &str) -> Result<(), SandboxError> {
    if name == USER || name == ROOT {
        Ok(())
    } else {
        Err(SandboxError::Invalid(format!(
            "user {name:?} does not exist in the sandbox"
        )))
    }
}

impl Sandboxes {
    /// Writes files (path, bytes) all or none; returns their entries.
    pub async fn write_files(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<FileEntry>, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        if files.is_empty() {
            return Err(SandboxError::Invalid("files: nothing to write".into()));
        }
        let mut resolved = Vec::with_capacity(files.len());
        for (path, content) in files {
            let path = paths::resolve(&path)?;
            if resolved.iter().any(|(p, _, _)| *p == path) {
                return Err(SandboxError::Invalid(format!(
                    "files: {path} is given twice"
                )));
            }
            resolved.push((path, content, None));
        }
        sandbox
            .init
            .write_files(&resolved, as_user)
            .await
            .map_err(|e| self.write_context(sandbox).failure(e))
    }

    /// Reads a whole file, refusing one bigger than `max_size` bytes.
    pub async fn read_file(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
        max_size: u64,
    ) -> Result<(String, Vec<u8>), SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let path = paths::resolve(path)?;
        let content = sandbox.init.read_file(&path, max_size, as_user).await?;
        Ok((path, content))
    }

    /// Lists a directory `depth` levels deep.
    pub async fn list_files(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
        depth: u32,
    ) -> Result<Vec<FileEntry>, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        if depth == 0 || depth > MAX_LIST_DEPTH {
            return Err(SandboxError::Invalid(format!(
                "depth must be between 1 and {MAX_LIST_DEPTH}"
            )));
        }
        let path = paths::resolve(path)?;
        Ok(sandbox.init.list(&path, depth, as_user).await?)
    }

    /// Describes a path (symlinks not followed).
    pub async fn file_info(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
    ) -> Result<FileEntry, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let path = paths::resolve(path)?;
        Ok(sandbox.init.stat(&path, as_user).await?)
    }

    /// Whether a path exists.
    pub async fn file_exists(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
    ) -> Result<bool, SandboxError> {
        match self.file_info(sandbox, as_user, path).await {
            Ok(_) => Ok(true),
            Err(SandboxError::Init(InitError::Remote {
                kind: ErrorKind::NotFound | ErrorKind::NotADirectory,
                ..
            })) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a directory and its parents; false when it already existed.
    pub async fn make_dir(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
    ) -> Result<bool, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let path = paths::resolve(path)?;
        Ok(sandbox.init.mkdir(&path, as_user).await?)
    }

    /// Renames a path; returns the entry at its new place.
    pub async fn rename_file(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        from: &str,
        to: &str,
    ) -> Result<FileEntry, SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let from = paths::resolve(from)?;
        let to = paths::resolve(to)?;
        Ok(sandbox.init.rename(&from, &to, as_user).await?)
    }

    /// Removes a file or a directory tree.
    pub async fn remove_file(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
    ) -> Result<(), SandboxError> {
        let _awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let path = paths::resolve(path)?;
        if path == "/" || path == HOME {
            return Err(SandboxError::Invalid(format!("refusing to remove {path}")));
        }
        Ok(sandbox.init.remove(&path, as_user).await?)
    }
}
