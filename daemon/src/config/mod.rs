//! The command line and the daemon's configuration.
//!
//! This module and `main.rs` are the only places that read the process environment
//! (through clap's `env` attributes): everything else receives a [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

mod client;
pub use client::{
    ChatArgs, DaemonArgs, DoctorArgs, EnvAction, EnvArgs, ExecArgs, RmArgs, ShellArgs, StateAction,
    StateArgs,
};

/// Removes the `SANDBOXD_*` variables set to nothing, so that they count as unset (a
/// script's `SANDBOXD_CLAUDE_BIN=$MAYBE` with nothing in `MAYBE`) rather than as an
/// empty value clap refuses. Call it before parsing, while the process has one thread.
pub fn unset_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(key, value)| value.is_empty() && key.to_string_lossy().starts_with("SANDBOXD_"))
        .map(|(key, _)| key)
        .collect();
    for key in empty {
        std::env::remove_var(key);
    }
}

/// `sandboxd`: a local sandbox runtime for coding agents.
#[derive(Debug, Parser)]
#[command(name = "sandboxd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: the HTTP API on --listen.
    Serve(ServeArgs),
    /// Send one message to an agent and stream the turn to the terminal.
    Chat(ChatArgs),
    /// Serve an Anthropic-compatible Messages API that plays a script of replies, for
    /// hermetic runs (point --model-upstream at it).
    ScriptedModel(ScriptedModelArgs),
    /// Connect to the Docker engine and build the default image if needed, then exit
    /// (what `serve` does before it reports healthy).
    Prepare(ServeArgs),
    /// Environment variables of an agent, given to its tools and hooks (values are
    /// never shown): `env set <agent> NAME=value…`, `env list <agent>`,
    /// `env remove <agent> NAME…`.
    Env(EnvArgs),
    /// Load the agents directory again now (it is also reloaded when a file changes).
    Reload(DaemonArgs),
    /// List a daemon's sandboxes.
    Ls(DaemonArgs),
    /// Run a command in a sandbox (`sandboxd exec <id> -- cmd args…`); prints its
    /// output and exits with its exit code.
    Exec(ExecArgs),
    /// Delete sandboxes (their containers and files).
    Rm(RmArgs),
    /// An interactive shell in a sandbox, on a terminal (`sandboxd shell <id>`); exits
    /// with the shell's exit code.
    Shell(ShellArgs),
    /// What the daemon found of its own that its store has no record of (quarantined:
    /// stopped and kept), and how to bring it back or remove it (`--remove <id>`).
    Doctor(DoctorArgs),
    /// The store's backups, with the daemon stopped: `state backups`, and
    /// `state restore [--from FILE]` to put one back in place of state.db.
    State(StateArgs),
}

/// Flags of `sandboxd serve`; each can also come from the environment variable shown.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address of the HTTP API.
    #[arg(long, env = "SANDBOXD_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,

    /// Address of the E2B-compatible API (control plane and envd on one address, for
    /// the `e2b` SDKs: set `E2B_API_URL` and `E2B_SANDBOX_URL` to `http://ADDR`); off
    /// when absent. Port 0 picks a free one (the address is printed).
    #[arg(long, env = "SANDBOXD_E2B_LISTEN")]
    pub e2b_listen: Option<SocketAddr>,

    /// Passwordless `sudo` in sandboxes of the E2B API's `base` template, as on E2B
    /// (they then run without no-new-privileges; root inside stays confined by the
    /// container). Off: `sudo` fails there; an agent opts in with `sudo: true`.
    #[arg(long, env = "SANDBOXD_E2B_BASE_SUDO")]
    pub e2b_base_sudo: bool,

    /// Where state lives (API key, sandbox directories). Default:
    /// $XDG_DATA_HOME/sandboxd or ~/.local/share/sandboxd.
    #[arg(long, env = "SANDBOXD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Directory of agent definitions, one `<slug>.json` per agent.
    #[arg(long, env = "SANDBOXD_AGENTS_DIR", default_value = "./agents")]
    pub agents_dir: PathBuf,

    /// The default sandbox image (built from the embedded `images/default` when it is
    /// the default and missing).
    #[arg(long, env = "SANDBOXD_IMAGE", default_value = crate::image::DEFAULT_IMAGE)]
    pub image: String,

    /// Anthropic-compatible API the model proxy forwards to.
    #[arg(
        long,
        env = "SANDBOXD_MODEL_UPSTREAM",
        default_value = "https://api.anthropic.com"
    )]
    pub model_upstream: String,

    /// OpenAI-compatible API (the Responses API) the model proxy forwards the codex
    /// runtime's calls to, with the key from OPENAI_API_KEY.
    #[arg(
        long,
        env = "SANDBOXD_OPENAI_UPSTREAM",
        default_value = "https://api.openai.com"
    )]
    pub openai_upstream: String,

    /// Most a sandbox may spend on the model, in USD at Anthropic's list prices, metered
    /// at the model proxy; past it, model calls are refused (0: no cap).
    #[arg(long, env = "SANDBOXD_MAX_SANDBOX_BUDGET_USD", default_value_t = 0.0)]
    pub max_sandbox_budget_usd: f64,

    /// The claude CLI binary to mount into sandboxes (default: `claude` on PATH, else
    /// the image's own).
    #[arg(long, env = "SANDBOXD_CLAUDE_BIN")]
    pub claude_bin: Option<PathBuf>,

    /// The Codex CLI binary (a static musl build) to mount into sandboxes, for agents
    /// with `"runtime": "codex"` (default: `codex` on PATH, else the image's own).
    #[arg(long, env = "SANDBOXD_CODEX_BIN")]
    pub codex_bin: Option<PathBuf>,

    /// The static `sandbox-init` binary (default: next to this executable, or in the
    /// cargo target directory).
    #[arg(long, env = "SANDBOXD_INIT_BIN")]
    pub init_bin: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "SANDBOXD_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest stdout (and, separately, stderr) an exec returns, in bytes; the rest is
    /// dropped and the result flagged as truncated.
    #[arg(long, env = "SANDBOXD_EXEC_OUTPUT_LIMIT", default_value_t = 8 * 1024 * 1024)]
    pub exec_output_limit: u64,

    /// Timeout of an exec that does not give `timeoutMs`, in milliseconds.
    #[arg(long, env = "SANDBOXD_EXEC_TIMEOUT_MS", default_value_t = 10 * 60 * 1000)]
    pub exec_timeout_ms: u64,

    /// Memory limit of a sandbox whose agent sets no `memoryMB`, in MiB (0: none).
    #[arg(long, env = "SANDBOXD_DEFAULT_MEMORY_MB", default_value_t = 4096)]
    pub default_memory_mb: u64,

    /// CPU limit of a sandbox whose agent sets no `cpuCount` (0: none). Default: one
    /// core fewer than the host has (at least 1), so one sandbox can never take every
    /// core from the daemon and the other sandboxes.
    #[arg(long, env = "SANDBOXD_DEFAULT_CPUS")]
    pub default_cpus: Option<f64>,

    /// Disk space of a sandbox, in MiB: everything its user can write (`/home/user`,
    /// `/tmp`, `/var/tmp`) lives on a filesystem of this size (0: no bound).
    #[arg(long, env = "SANDBOXD_DISK_MB", default_value_t = 10240)]
    pub disk_mb: u64,

    /// Free space to keep under the state directory, in MiB: creating a sandbox is
    /// refused below it (the sandboxes' disks are sparse and grow as they fill).
    #[arg(long, env = "SANDBOXD_RESERVE_DISK_MB", default_value_t = 1024)]
    pub reserve_disk_mb: u64,

    /// What the daemon keeps of each thread's history, in MiB: its newest messages up
    /// to this size, and its newest events up to this size; the oldest are dropped.
    #[arg(long, env = "SANDBOXD_THREAD_HISTORY_MB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub thread_history_mb: u64,

    /// Most processes and threads in one sandbox.
    #[arg(long, env = "SANDBOXD_PIDS_LIMIT", default_value_t = 1024)]
    pub pids_limit: i64,

    /// How long one call of a custom tool of an agent defined in code may run, in
    /// milliseconds; then it is an error result.
    #[arg(
        long,
        env = "SANDBOXD_AGENT_TOOL_TIMEOUT_MS",
        default_value_t = 120_000
    )]
    pub agent_tool_timeout_ms: u64,

    /// A sandbox whose agent and create call set no `timeoutMs` expires after this
    /// long without activity, in milliseconds (0: never).
    #[arg(long, env = "SANDBOXD_SANDBOX_TIMEOUT_MS", default_value_t = 60 * 60 * 1000)]
    pub sandbox_timeout_ms: u64,

    /// OCI runtime for sandbox containers (for example `runsc` for gVisor, once it is
    /// registered with Docker); Docker's default when unset.
    #[arg(long, env = "SANDBOXD_RUNTIME")]
    pub runtime: Option<String>,

    /// The Docker bridge network sandboxes join (created with traffic between its
    /// containers off when missing; shared by every daemon of the engine).
    #[arg(long, env = "SANDBOXD_NETWORK", default_value = "sandboxd")]
    pub network: String,
    /// Most live sandboxes (creating or active) at once; a create beyond it answers 429
    /// (0: no limit).
    #[arg(long, env = "SANDBOXD_MAX_SANDBOXES", default_value_t = 100)]
    pub max_sandboxes: usize,

    /// Most live sandboxes of one token user (or of one token without a user) when a
    /// chat token creates another; beyond it chat answers 429 (0: no limit).
    #[arg(long, env = "SANDBOXD_MAX_SANDBOXES_PER_USER", default_value_t = 5)]
    pub max_sandboxes_per_user: usize,

    /// Warm containers kept ready per agent shape (image, memory, CPUs), so a create
    /// claims one instead of starting a container (0: no warm pool).
    #[arg(long, env = "SANDBOXD_POOL_SIZE", default_value_t = 2)]
    pub pool_size: usize,

    /// The most warm containers of one shape when recent bursts of creates grow its
    /// pool past its size (0: from the machine, one per 512 MiB of memory, within
    /// --max-sandboxes).
    #[arg(long, env = "SANDBOXD_POOL_MAX", default_value_t = 0)]
    pub pool_max: usize,

    /// The warm pool size of particular agents, `slug=N` (repeatable, or
    /// comma-separated in the environment); `slug=0` keeps an agent out of the pool.
    #[arg(
        long = "pool-agent",
        env = "SANDBOXD_POOL_AGENTS",
        value_delimiter = ','
    )]
    pub pool_agents: Vec<String>,

    /// Pause (freeze) a sandbox after this many seconds without an API call, exec,
    /// turn or open stream; its next use resumes it (0: never pause).
    #[arg(long, env = "SANDBOXD_PAUSE_AFTER_SECS", default_value_t = 300)]
    pub pause_after_secs: u64,

    /// Origins whose pages may call the API from a browser (CORS), comma-separated;
    /// `*` lets any origin send a bearer token (no cookies are used, so a page gains
    /// nothing without one).
    #[arg(
        long,
        env = "SANDBOXD_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = "*"
    )]
    pub cors_origins: Vec<String>,

    /// Debian mirror used to build the base image where no registry is reachable.
    #[arg(
        long,
        env = "SANDBOXD_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    pub debian_mirror: String,

    /// npm registry the default image's Node.js 22, npm and corepack come from (pinned
    /// versions, checked against their published sha512).
    #[arg(
        long,
        env = "SANDBOXD_NPM_REGISTRY",
        default_value = "https://registry.npmjs.org"
    )]
    pub npm_registry: String,

    /// Whether sandboxes trust the host's CA bundle (mounted read-only; curl, git, npm,
    /// corepack and pip use it): `auto` when it differs from the image's own bundle, as
    /// behind a TLS-intercepting proxy.
    #[arg(
        long,
        env = "SANDBOXD_TRUST_HOST_CA",
        value_enum,
        default_value = "auto"
    )]
    pub trust_host_ca: crate::sandbox::hostca::TrustHostCa,

    /// The host's CA bundle (default: the first of /etc/ssl/certs/ca-certificates.crt,
    /// /etc/pki/tls/certs/ca-bundle.crt, /etc/ssl/cert.pem that exists).
    #[arg(long, env = "SANDBOXD_HOST_CA_BUNDLE")]
    pub host_ca_bundle: Option<PathBuf>,

    /// Extra label `key=value` put on every container (tests use it to find theirs).
    #[arg(long = "label", env = "SANDBOXD_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
}

/// Flags of `sandboxd scripted-model`.
#[derive(Debug, Clone, Args)]
pub struct ScriptedModelArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7879")]
    pub listen: SocketAddr,
    /// The script: a JSON array of replies (see the README).
    #[arg(long)]
    pub script: PathBuf,
    /// Append every request body to this file, one JSON line each.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Append every request's path and credentials (`x-api-key`, `authorization`) to
    /// this file, one JSON line each.
    #[arg(long)]
    pub headers_log: Option<PathBuf>,
}

/// Everything the daemon needs to run, resolved from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// The E2B-compatible API's address, when on.
    pub e2b_listen: Option<SocketAddr>,
    /// `sudo` in the E2B `base` template's sandboxes.
    pub e2b_base_sudo: bool,
    /// State directory (created if missing).
    pub state_dir: PathBuf,
    /// Agent definitions directory.
    pub agents_dir: PathBuf,
    /// Default sandbox image.
    pub image: String,
    /// Model upstream URL.
    pub model_upstream: String,
    /// OpenAI upstream URL (the codex runtime).
    pub openai_upstream: String,
    /// Spending cap per sandbox at the model proxy, in USD.
    pub max_sandbox_budget_usd: Option<f64>,
    /// Claude binary on the host, if configured.
    pub claude_bin: Option<PathBuf>,
    /// Codex binary on the host, if configured.
    pub codex_bin: Option<PathBuf>,
    /// sandbox-init binary on the host, if configured.
    pub init_bin: Option<PathBuf>,
    /// The API key from `SANDBOXD_API_KEY`, if set.
    pub api_key: Option<String>,
    /// The model upstream's key, from `ANTHROPIC_API_KEY` (never given to sandboxes).
    pub upstream_api_key: Option<String>,
    /// The OpenAI upstream's key, from `OPENAI_API_KEY` (never given to sandboxes).
    pub openai_api_key: Option<String>,
    /// The secret chat tokens are signed with, from `SANDBOXD_TOKEN_SECRET`.
    pub token_secret: Option<String>,
    /// Request body limit.
    pub max_body_bytes: usize,
    /// Exec output limit per stream.
    pub exec_output_limit: u64,
    /// Default exec timeout.
    pub exec_timeout_ms: u64,
    /// Debian mirror for the offline base image.
    pub debian_mirror: String,
    /// npm registry for the default image's Node.js.
    pub npm_registry: String,
    /// Whether sandboxes trust the host's CA bundle.
    pub trust_host_ca: crate::sandbox::hostca::TrustHostCa,
    /// The host's CA bundle, when not at a usual path.
    pub host_ca_bundle: Option<PathBuf>,
    /// Default memory limit in MiB (0: none).
    pub default_memory_mb: u64,
    /// Default CPU limit (0: none).
    pub default_cpus: f64,
    /// Disk bound of a sandbox in MiB (0: none).
    pub disk_mb: u64,
    /// Free space to keep under the state directory, in MiB.
    pub reserve_disk_mb: u64,
    /// What is kept of each thread's messages, and of its events, in MiB.
    pub thread_history_mb: u64,
    /// Pids limit per sandbox.
    pub pids_limit: i64,
    /// Bound of one custom tool call, in milliseconds.
    pub agent_tool_timeout_ms: u64,
    /// Default idle lifetime of a sandbox (0: never).
    pub sandbox_timeout_ms: u64,
    /// OCI runtime for sandbox containers.
    pub runtime: Option<String>,
    /// The Docker network sandboxes join.
    pub network: String,
    /// Origins allowed to call the API from a browser (`*`: any).
    pub cors_origins: Vec<String>,
    /// Most live sandboxes (0: none).
    pub max_sandboxes: usize,
    /// Most live sandboxes per token owner (0: none).
    pub max_sandboxes_per_user: usize,
    /// Warm pool sizes.
    pub pool: crate::sandbox::PoolSizes,
    /// Idle time before a sandbox is paused (0: never).
    pub pause_after_secs: u64,
    /// Extra container labels.
    pub labels: Vec<(String, String)>,
    /// This executable's path, to find `sandbox-init` beside it.
    pub current_exe: Option<PathBuf>,
}

impl Config {
    /// Resolves `serve` flags plus the environment-only settings.
    pub fn from_serve_args(args: ServeArgs) -> anyhow::Result<Self> {
        let state_dir = match args.state_dir {
            Some(dir) => dir,
            None => default_state_dir()?,
        };
        let labels = args
            .labels
            .iter()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| anyhow::anyhow!("--label {l:?}: expected key=value"))
            })
            .collect::<anyhow::Result<_>>()?;
        // mkfs.ext4 needs room for a journal and its metadata.
        anyhow::ensure!(
            args.disk_mb == 0 || args.disk_mb >= MIN_DISK_MB,
            "--disk-mb {}: give 0 (no bound) or at least {MIN_DISK_MB}",
            args.disk_mb
        );
        Ok(Self {
            listen: args.listen,
            e2b_listen: args.e2b_listen,
            e2b_base_sudo: args.e2b_base_sudo,
            state_dir,
            agents_dir: args.agents_dir,
            image: args.image,
            model_upstream: args.model_upstream,
            openai_upstream: args.openai_upstream,
            max_sandbox_budget_usd: Some(args.max_sandbox_budget_usd).filter(|b| *b > 0.0),
            claude_bin: args.claude_bin.or_else(|| find_on_path("claude")),
            codex_bin: args.codex_bin.or_else(|| find_on_path("codex")),
            init_bin: args.init_bin,
            api_key: std::env::var("SANDBOXD_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            upstream_api_key: std::env::var("ANTHROPIC_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            openai_api_key: std::env::var("OPENAI_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            token_secret: std::env::var("SANDBOXD_TOKEN_SECRET")
                .ok()
                .filter(|k| !k.is_empty()),
            max_body_bytes: args.max_body_bytes,
            exec_output_limit: args.exec_output_limit,
            exec_timeout_ms: args.exec_timeout_ms,
            debian_mirror: args.debian_mirror,
            npm_registry: args.npm_registry,
            trust_host_ca: args.trust_host_ca,
            host_ca_bundle: args.host_ca_bundle,
            default_memory_mb: args.default_memory_mb,
            default_cpus: args.default_cpus.unwrap_or_else(default_cpus),
            disk_mb: args.disk_mb,
            reserve_disk_mb: args.reserve_disk_mb,
            thread_history_mb: args.thread_history_mb,
            pids_limit: args.pids_limit,
            agent_tool_timeout_ms: args.agent_tool_timeout_ms,
            sandbox_timeout_ms: args.sandbox_timeout_ms,
            runtime: args.runtime,
            network: args.network,
            cors_origins: args.cors_origins,
            max_sandboxes: args.max_sandboxes,
            max_sandboxes_per_user: args.max_sandboxes_per_user,
            pool: crate::sandbox::PoolSizes {
                default: args.pool_size,
                per_agent: args
                    .pool_agents
                    .iter()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| parse_pool_agent(s))
                    .collect::<anyhow::Result<_>>()?,
                max: match args.pool_max {
                    0 => auto_pool_max(args.max_sandboxes),
                    n => n,
                },
            },
            pause_after_secs: args.pause_after_secs,
            labels,
            current_exe: std::env::current_exe().ok(),
        })
    }
}

/// The pool ceiling the machine affords: one warm container per 512 MiB of memory
/// (each costs a few MiB, but the sandbox it becomes will want more), within the
/// sandbox cap.
fn auto_pool_max(max_sandboxes: usize) -> usize {
    let mem_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        })
        .map_or(4096, |kib| kib / 1024);
    let cap = if max_sandboxes == 0 {
        100
    } else {
        max_sandboxes
    };
    (mem_mib / 512).clamp(1, cap)
}

/// Parses `--pool-agent slug=N`.
fn parse_pool_agent(text: &str) -> anyhow::Result<(String, usize)> {
    let (slug, size) = text
        .trim()
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--pool-agent {text:?}: expected slug=N"))?;
    let size = size
        .parse()
        .map_err(|e| anyhow::anyhow!("--pool-agent {text:?}: {e}"))?;
    Ok((slug.to_owned(), size))
}

/// The smallest sandbox disk, in MiB.
const MIN_DISK_MB: u64 = 8;

/// The CPU cap of a sandbox whose agent sets none: every core but one (at least one),
/// so a sandbox spinning on all its threads leaves a core to the daemon and the rest.
fn default_cpus() -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1) as f64
}

/// The first executable named `name` on `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl Config {
    /// Where the default image's ingredients come from; fetched packages are cached in
    /// `state_dir`.
    pub fn image_sources(&self, state_dir: &Path) -> crate::image::Sources {
        crate::image::Sources {
            debian_mirror: self.debian_mirror.clone(),
            npm_registry: self.npm_registry.clone(),
            cache_dir: state_dir.join("cache"),
        }
    }
}

fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("sandboxd"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow::anyhow!("neither --state-dir, XDG_DATA_HOME nor HOME is set"))?;
    Ok(PathBuf::from(home).join(".local/share/sandboxd"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_agents_are_slug_equals_size() {
        assert_eq!(
            parse_pool_agent(" demo=3 ").expect("valid"),
            ("demo".to_owned(), 3)
        );
        assert!(parse_pool_agent("demo").is_err());
        assert!(parse_pool_agent("demo=x").is_err());
    }
}
