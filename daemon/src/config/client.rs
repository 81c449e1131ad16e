//! Flags of the client commands (`chat`, `env`, `reload`, `ls`, `exec`, `rm`): how they
//! reach a daemon and its API key.

use std::path::PathBuf;

use clap::Args;

use super::default_state_dir;

/// How a client command reaches the daemon.
#[derive(Debug, Clone, Args)]
pub struct DaemonArgs {
    /// The daemon's URL.
    #[arg(
        long,
        global = true,
        env = "SANDBOXD_URL",
        default_value = "http://127.0.0.1:7878"
    )]
    pub url: String,
    /// The daemon's state directory, where its API key is kept (when
    /// SANDBOXD_API_KEY is not set).
    #[arg(long, global = true, env = "SANDBOXD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl DaemonArgs {
    /// The API key: `SANDBOXD_API_KEY`, else the daemon's key file.
    pub fn api_key(&self) -> anyhow::Result<String> {
        api_key(self.state_dir.as_ref())
    }
}

/// `sandboxd env …`.
#[derive(Debug, Clone, Args)]
pub struct EnvArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: EnvAction,
    /// The daemon.
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// The `env` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EnvAction {
    /// Set variables: `NAME=value…`, or `NAME value`.
    Set {
        /// The agent's slug.
        agent: String,
        /// `NAME=value` pairs (or one `NAME value`).
        #[arg(required = true)]
        vars: Vec<String>,
    },
    /// List the names of the agent's variables.
    List {
        /// The agent's slug.
        agent: String,
    },
    /// Remove variables.
    Remove {
        /// The agent's slug.
        agent: String,
        /// Their names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `sandboxd exec` flags.
#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// The sandbox (either of its ids).
    pub sandbox: String,
    /// The command and its arguments, after `--` (run through `bash -lc`, each
    /// argument quoted).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
    /// Kill it after this many milliseconds (default: the daemon's).
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    /// Working directory inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// The daemon.
    #[command(flatten)]
    pub client: DaemonArgs,
}

/// `sandboxd shell` flags.
#[derive(Debug, Clone, Args)]
pub struct ShellArgs {
    /// The sandbox (either of its ids).
    pub sandbox: String,
    /// Working directory inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// The daemon.
    #[command(flatten)]
    pub client: DaemonArgs,
}

/// `sandboxd rm` flags.
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// The sandboxes (either of their ids).
    #[arg(required = true)]
    pub sandboxes: Vec<String>,
    /// The daemon.
    #[command(flatten)]
    pub client: DaemonArgs,
}

/// `sandboxd state …`: the store, with the daemon stopped.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: StateAction,
    /// The daemon's state directory (default: the daemon's own default).
    #[arg(long, global = true, env = "SANDBOXD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateArgs {
    /// The state directory these commands work on.
    pub fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.state_dir {
            Some(dir) => Ok(dir.clone()),
            None => default_state_dir(),
        }
    }
}

/// The `state` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StateAction {
    /// Put a backup of the store in place of state.db (the daemon must be stopped):
    /// the newest one that passes the integrity check, or `--from FILE`. The replaced
    /// state.db is kept beside it as state.db.damaged-<time>.
    Restore {
        /// The backup to put back.
        #[arg(long)]
        from: Option<PathBuf>,
    },
    /// List the store's backups, newest first, with whether each passes the check.
    Backups,
}

/// `sandboxd doctor` flags.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Remove these quarantined sandboxes for good (container, home disk, directory).
    #[arg(long = "remove", value_name = "ID")]
    pub remove: Vec<String>,
    /// The daemon.
    #[command(flatten)]
    pub client: DaemonArgs,
}

/// Arguments of `sandboxd chat`.
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    /// The agent's slug.
    pub agent: String,
    /// The message.
    pub prompt: String,
    /// Continue in this sandbox (default: a new one).
    #[arg(long)]
    pub sandbox: Option<String>,
    /// Continue this thread (needs --sandbox).
    #[arg(long, requires = "sandbox")]
    pub thread: Option<String>,
    /// Permission mode for this turn (e.g. `default`: each tool call Claude would ask
    /// about is asked here, on the terminal).
    #[arg(long)]
    pub permission_mode: Option<String>,
    /// The daemon.
    #[command(flatten)]
    pub client: DaemonArgs,
}

/// `SANDBOXD_API_KEY`, else the key file in the state directory.
fn api_key(state_dir: Option<&PathBuf>) -> anyhow::Result<String> {
    if let Some(key) = std::env::var("SANDBOXD_API_KEY")
        .ok()
        .filter(|k| !k.is_empty())
    {
        return Ok(key);
    }
    let dir = match state_dir {
        Some(dir) => dir.clone(),
        None => default_state_dir()?,
    };
    let path = dir.join(crate::auth::KEY_FILE);
    std::fs::read_to_string(&path)
        .map(|k| k.trim().to_owned())
        .map_err(|e| {
            anyhow::anyhow!(
                "no SANDBOXD_API_KEY and cannot read {}: {e}",
                path.display()
            )
        })
}
