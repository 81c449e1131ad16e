//! Files streamed into and out of a sandbox, and directory watches: the domain's side
//! of what `files.rs` does whole, for callers that must not hold a file (a 100 MB
//! upload) or that follow a directory. Each keeps the sandbox awake while it runs.

use sandbox_init::protocol::{FileEntry, StreamFileSpec, WatchRequest};

use super::files::check_user;
use super::pause::Awake;
use super::pressure::WriteContext;
use super::{paths, Sandbox, SandboxError, Sandboxes};
use crate::init_client::{FileReader, FileWriter, Watch};

/// A streamed write in progress (see [`Sandboxes::write_stream`]).
#[derive(Debug)]
pub struct Upload {
    writer: FileWriter,
    context: WriteContext,
    _awake: Awake,
}

impl Upload {
    /// Starts the next file (its path resolved like every path of the domain).
    pub async fn start_file(
        &mut self,
        path: &str,
        metadata: std::collections::BTreeMap<String, String>,
    ) -> Result<String, SandboxError> {
        let path = paths::resolve(path)?;
        self.writer
            .start_file(StreamFileSpec {
                path: path.clone(),
                mode: None,
                metadata,
            })
            .await
            .map_err(|e| self.context.failure(e))?;
        Ok(path)
    }

    /// Sends bytes of the current file.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), SandboxError> {
        self.writer
            .write(bytes)
            .await
            .map_err(|e| self.context.failure(e))
    }

    /// Puts every file in place, all or none; their entries.
    pub async fn commit(self) -> Result<Vec<FileEntry>, SandboxError> {
        self.writer
            .commit()
            .await
            .map_err(|e| self.context.failure(e))
    }
}

/// A file being read (see [`Sandboxes::read_stream`]).
#[derive(Debug)]
pub struct Download {
    /// Its size when opened.
    pub size: u64,
    reader: FileReader,
    _awake: Awake,
}

impl Download {
    /// The next chunk; `None` at the end.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, SandboxError> {
        Ok(self.reader.next().await?)
    }
}

/// A directory watch (see [`Sandboxes::watch_dir`]).
#[derive(Debug)]
pub struct DirWatch {
    /// Its events.
    pub watch: Watch,
    _awake: Option<Awake>,
}

impl Sandboxes {
    /// Starts a streamed write as `as_user`: files of any size, all or none.
    pub async fn write_stream(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
    ) -> Result<Upload, SandboxError> {
        let awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        Ok(Upload {
            writer: sandbox.init.write_stream(as_user).await?,
            context: self.write_context(sandbox),
            _awake: awake,
        })
    }

    /// Opens a file for a streamed read as `as_user`.
    pub async fn read_stream(
        &self,
        sandbox: &Sandbox,
        as_user: &str,
        path: &str,
    ) -> Result<Download, SandboxError> {
        let awake = self.awake(sandbox).await?;
        check_user(as_user)?;
        let path = paths::resolve(path)?;
        let (size, reader) = sandbox.init.open_read(&path, as_user).await?;
        Ok(Download {
            size,
            reader,
            _awake: awake,
        })
    }

    /// Watches a directory as `request.as_user`. With `keep_awake`, the sandbox is not
    /// paused while the watch runs (a client is following it).
    pub async fn watch_dir(
        &self,
        sandbox: &Sandbox,
        mut request: WatchRequest,
        keep_awake: bool,
    ) -> Result<DirWatch, SandboxError> {
        let awake = self.awake(sandbox).await?;
        check_user(&request.as_user)?;
        request.path = paths::resolve(&request.path)?;
        let watch = sandbox.init.watch(request).await?;
        Ok(DirWatch {
            watch,
            _awake: keep_awake.then_some(awake),
        })
    }
}
