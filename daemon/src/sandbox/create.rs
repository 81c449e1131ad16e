//! Creating a sandbox: merge the agent's Sandbox config with the call's overrides, start
//! the container, then apply cwd, files and setup through sandbox-init.
//!
//! Provisioning runs in its own task: a client that hangs up mid-way does not leave a
//! half-made container behind, and a delete during creation cancels it cleanly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sandbox_init::protocol::{ExecRequest, Frame, Reply};
use tokio_util::sync::CancellationToken;

use super::boot::{check_cancelled, Extras, Identity, Provision, Shape, StepError, INIT_DEADLINE};
use super::disk;
use super::paths;
use super::pool::Warm;
use super::{merged, Attachment, Sandbox, SandboxError, Sandboxes, State, Status};
use crate::agents::{check_env_name, AgentDef};
use crate::docker::Engine;
use crate::firewall::{Policy, Target};
use crate::init_client::{InitClient, InitError};
use crate::names::{mounts, new_id, HOME, ROOT, USER};

/// How much of a failing step's output the error keeps.
const ERROR_TAIL_BYTES: usize = 2000;

/// A create call: the agent and its per-sandbox overrides.
#[derive(Debug, Clone, Default)]
pub struct CreateSandbox {
    /// Agent slug.
    pub agent: String,
    /// Extra files (path to content), winning over the agent's.
    pub files: BTreeMap<String, String>,
    /// Extra environment, winning over the agent's.
    pub envs: BTreeMap<String, String>,
    /// Setup commands run after the agent's.
    pub setup: Vec<String>,
    /// Idle lifetime override.
    pub timeout_ms: Option<u64>,
    /// Egress allow list override.
    pub network_allow_out: Option<Vec<String>>,
    /// Egress deny list override.
    pub network_deny_out: Option<Vec<String>>,
    /// Who it is created for (see [`Sandbox::owner`]).
    pub owner: Option<String>,
    /// Created through a chat token: held to the per-owner quota too.
    pub by_token: bool,
    /// The definition to use instead of looking `agent` up (a template such as the
    /// E2B API's `base`, which is the default image with nothing added).
    pub definition: Option<AgentDef>,
    /// What the client attaches to the sandbox.
    pub attributes: super::Attributes,
    /// An absolute lifetime from now, on top of (or instead of) the idle timeout.
    pub lifetime_ms: Option<u64>,
}

/// What provisioning will do, fully resolved and validated before anything starts.
#[derive(Debug, Clone)]
struct Plan {
    image: String,
    memory_mb: Option<u64>,
    cpus: Option<f64>,
    apt: Vec<String>,
    build: Vec<String>,
    cwd: String,
    envs: BTreeMap<String, String>,
    files: Vec<(String, Vec<u8>)>,
    setup: Vec<String>,
    /// `networkAllowOut` as given.
    allow: Vec<String>,
    /// `networkDenyOut` as given.
    deny: Vec<String>,
    /// Both, resolved when the sandbox is created.
    policy: Policy,
    /// `sudo` works in it.
    sudo: bool,
}

impl Plan {
    fn new(
        agent: &AgentDef,
        call: &CreateSandbox,
        default_image: &str,
    ) -> Result<Self, SandboxError> {
        let sb = &agent.sandbox;
        // The call's lists replace the agent's.
        let allow = call
            .network_allow_out
            .as_ref()
            .or(sb.network_allow_out.as_ref())
            .cloned()
            .unwrap_or_default();
        let deny = call
            .network_deny_out
            .as_ref()
            .or(sb.network_deny_out.as_ref())
            .cloned()
            .unwrap_or_default();
        for (field, list) in [("networkAllowOut", &allow), ("networkDenyOut", &deny)] {
            for entry in list {
                Target::parse(entry).map_err(|e| SandboxError::Invalid(format!("{field}: {e}")))?;
            }
        }
        let envs = merged(&sb.envs, &call.envs);
        for key in envs.keys() {
            check_env_name(key).map_err(|e| SandboxError::Invalid(format!("envs: {e}")))?;
        }
        let cwd = paths::resolve(sb.cwd.as_deref().unwrap_or(HOME))?;
        let files = merged(&sb.files, &call.files)
            .into_iter()
            .map(|(path, content)| Ok((paths::resolve(&path)?, content.into_bytes())))
            .collect::<Result<_, SandboxError>>()?;
        let setup = sb.setup.iter().chain(&call.setup).cloned().collect();
        Ok(Self {
            image: sb.image.clone().unwrap_or_else(|| default_image.to_owned()),
            memory_mb: sb.memory_mb,
            cpus: sb.cpu_count,
            apt: sb.apt.clone(),
            build: sb.build.clone(),
            cwd,
            envs,
            files,
            setup,
            allow,
            deny,
            policy: Policy::default(),
            sudo: sb.sudo,
        })
    }
}

impl Sandboxes {
    /// Binds a sandbox's model token to its agent: the agent's own budget, and the one
    /// API its runtime calls.
    pub(super) fn lend_model(&self, id: &str, agent: &AgentDef) {
        let api = match crate::runner::of(agent).name() {
            "codex" => crate::proxy::Api::OpenAi,
            _ => crate::proxy::Api::Anthropic,
        };
        self.proxy.lend(id, agent.max_sandbox_budget_usd, api);
    }

    /// Creates a sandbox and returns once it is `active` or `error`.
    ///
    /// Errors are returned only when nothing was created (unknown agent, bad input,
    /// engine unreachable); a failing step yields a sandbox in status `error`.
    pub async fn create(
        self: &Arc<Self>,
        call: CreateSandbox,
    ) -> Result<Arc<Sandbox>, SandboxError> {
        let agent = match &call.definition {
            Some(def) => def.clone(),
            None => self
                .agents
                .get(&call.agent)
                .ok_or_else(|| SandboxError::AgentNotFound(call.agent.clone()))?,
        };
        let mut plan = Plan::new(&agent, &call, &self.settings.image)?;
        // The slot is held from here; every early return below gives it back.
        let slot = self
            .quota
            .reserve(call.owner.as_deref().filter(|_| call.by_token), || {
                self.list_arcs()
            })?;
        plan.policy = Policy::resolve(&plan.allow, &plan.deny)
            .await
            .map_err(SandboxError::Invalid)?;
        let engine = self.ready_engine()?.clone();
        disk::check_reserve(&self.settings.state_dir, self.settings.reserve_disk_mb)?;

        // A warm container of the plan's shape, when the pool has one (its id, name
        // and directory become the sandbox's). Pinned host names are fixed when a
        // container is made, so such a plan is always created cold.
        let warm = match self.warm_shape(&engine, &call.agent, &plan).await {
            Some(shape) => self.claim_warm(&shape).await,
            None => None,
        };
        if warm.is_none() {
            // (A warm container's image exists: it runs.)
            crate::image::ensure_image(
                &engine,
                &plan.image,
                &self.settings.image_sources,
                &|l: &str| tracing::info!("image {}: {l}", plan.image),
            )
            .await
            .map_err(|e| SandboxError::Invalid(e.to_string()))?;
        }
        let id = warm
            .as_ref()
            .map_or_else(|| new_id("sb_"), |w| w.id.clone());
        let model_token = self.proxy.register(&id);
        // Bound from the start: the token works before any turn.
        self.lend_model(&id, &agent);
        let sandbox_id = format!("sbx-{}", &id[3..]);
        let dir = self.settings.sandboxes_dir.join(&id);
        let now = SystemTime::now();
        let sandbox = Arc::new(Sandbox {
            init: InitClient::new(dir.join("run")),
            id,
            sandbox_id,
            agent_slug: call.agent.clone(),
            agent_name: agent.display_name(&call.agent),
            created_at: now,
            cwd: plan.cwd.clone(),
            dir,
            deleted: CancellationToken::new(),
            model_token,
            claude_program: if self.settings.claude_bin.is_some() {
                mounts::CLAUDE.to_owned()
            } else {
                "claude".to_owned()
            },
            agent: agent.clone(),
            threads: Mutex::new(Vec::new()),
            owner: call.owner.clone(),
            ttl: call
                .timeout_ms
                .or(agent.sandbox.timeout_ms)
                .or(Some(self.settings.sandbox_timeout_ms))
                .filter(|ms| *ms > 0)
                .map(std::time::Duration::from_millis),
            activity: Mutex::new(std::time::Instant::now()),
            busy: std::sync::atomic::AtomicUsize::new(0),
            power: Default::default(),
            policy: plan.policy.clone(),
            attributes: call.attributes.clone(),
            deadline: Mutex::new(
                call.lifetime_ms
                    .map(|ms| now + std::time::Duration::from_millis(ms)),
            ),
            store: self.store.clone(),
            state: Mutex::new(State {
                status: Status::Creating,
                error: None,
                updated_at: now,
                container_id: None,
            }),
        });
        // The row, then the claim marker: from then on, whatever happens to the
        // store, the directory says a client was given this sandbox (see
        // quarantine.rs). A kill between the two leaves a row, which restore honours
        // (and marks the directory then); the other order left a directory no row
        // accounts for, quarantined as if the store had lost it.
        let stored = self
            .store
            .put_sandbox(&sandbox.row())
            .map_err(SandboxError::from)
            .and_then(|()| {
                super::quarantine::mark_claimed(&sandbox.dir).map_err(|e| {
                    let _ = self.store.delete_sandbox(&sandbox.id);
                    SandboxError::from(e)
                })
            });
        if let Err(e) = stored {
            self.proxy.unregister(&sandbox.id);
            match warm {
                Some(warm) => self.discard(warm).await,
                None => super::remove_dir(&sandbox.dir),
            }
            return Err(e);
        }
        slot.commit(|| self.insert(sandbox.clone()));
        if warm.is_some() {
            self.pool.handed_over(&sandbox.id);
        }
        tracing::info!(sandbox = %sandbox.id, agent = %call.agent, warm = warm.is_some(), "creating");

        let this = self.clone();
        let task_sandbox = sandbox.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let outcome = this.provision(&engine, &task_sandbox, &plan, warm).await;
            if task_sandbox.deleted.is_cancelled() {
                // Deleted while being created: make sure the container goes too.
                if let Some(container) = task_sandbox.container_id() {
                    let _ = engine.remove(&container).await;
                }
                this.release(&task_sandbox).await;
                return Ok(());
            }
            match outcome {
                Ok(()) => {
                    task_sandbox.set_status(Status::Active, None);
                    tracing::info!(
                        sandbox = %task_sandbox.id,
                        ms = started.elapsed().as_millis() as u64,
                        "active"
                    );
                    Ok(())
                }
                Err(Provision::Engine(e)) => {
                    if let Some(container) = task_sandbox.container_id() {
                        let _ = engine.remove(&container).await;
                    }
                    this.release(&task_sandbox).await;
                    let _ = this.store.delete_sandbox(&task_sandbox.id);
                    this.forget(&task_sandbox);
                    // The engine refused: maybe the network was removed under us.
                    this.readiness.request_recheck();
                    Err(SandboxError::Engine(e))
                }
                Err(Provision::Step(StepError(message))) => {
                    tracing::warn!(sandbox = %task_sandbox.id, error = %message, "provisioning failed");
                    if let Some(container) = task_sandbox.container_id() {
                        let _ = engine.remove(&container).await;
                    }
                    this.release(&task_sandbox).await;
                    task_sandbox.set_status(Status::Error, Some(message));
                    Ok(())
                }
            }
        });
        match task.await {
            Ok(Ok(())) => Ok(sandbox),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(SandboxError::Invalid(format!(
                "provisioning panicked: {join}"
            ))),
        }
    }

    async fn provision(
        &self,
        engine: &Engine,
        sb: &Sandbox,
        plan: &Plan,
        warm: Option<Warm>,
    ) -> Result<(), Provision> {
        // The network and the firewall on its bridge, as set up now (a recreated
        // network comes with its own firewall; a warm container on another network
        // was not claimed).
        let Attachment { network, firewall } = self
            .attachment()
            .ok_or_else(|| StepError("the sandbox network is not set up".into()))?;
        let cold = warm.is_none();
        let booted = match warm {
            Some(warm) => {
                sb.set_container(warm.booted.container.clone());
                warm.booted
            }
            None => {
                let shape = Shape {
                    image: self.image_for(engine, plan).await?,
                    limits: self.limits(plan.memory_mb, plan.cpus),
                    sudo: plan.sudo,
                };
                check_cancelled(&sb.deleted)?;
                let extras = Extras {
                    env: plan.envs.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    extra_hosts: plan.policy.hosts.clone(),
                    labels: Vec::new(),
                };
                let who = Identity {
                    id: &sb.id,
                    name: &sb.sandbox_id,
                    dir: &sb.dir,
                    network: &network,
                };
                self.boot(engine, who, &shape, extras, &sb.deleted, |c| {
                    sb.set_container(c.to_owned())
                })
                .await?
            }
        };
        sb.init.set_init_pid(booted.init_pid);
        check_cancelled(&sb.deleted)?;

        // Nothing runs in the container but sandbox-init until the rules are in. (A
        // warm container's address was cleared of stale rules when it was made, so
        // an open policy has nothing to apply.)
        if cold || !plan.policy.is_open() {
            firewall
                .apply(&sb.id, booted.address, booted.init_pid.into(), &plan.policy)
                .await
                .map_err(|e| StepError(e.to_string()))?;
        }
        // Its model token works from this address only.
        self.proxy.bind_address(&sb.id, booted.address.into());

        if cold {
            sb.init
                .wait_ready(INIT_DEADLINE)
                .await
                .map_err(|e| StepError(format!("sandbox-init did not come up: {e}")))?;
        } else if !plan.envs.is_empty() {
            // A cold container has them from its creation; a warm one gets them now,
            // before anything else runs in it.
            let env = plan.envs.iter().map(|(k, v)| (k.clone(), v.clone()));
            sb.init
                .set_env(env.collect())
                .await
                .map_err(|e| StepError(format!("setting the sandbox's envs: {e}")))?;
        }
        check_cancelled(&sb.deleted)?;

        make_cwd(&sb.init, &plan.cwd).await?;
        write_files(&sb.init, &plan.files).await?;
        check_cancelled(&sb.deleted)?;

        for (index, command) in plan.setup.iter().enumerate() {
            run_setup(&sb.init, &plan.cwd, command, index, plan.setup.len()).await?;
            check_cancelled(&sb.deleted)?;
        }
        if !plan.setup.is_empty() {
            // Setup ran as root; everything in the sandbox user's home is the user's.
            sb.init
                .chown(HOME, USER)
                .await
                .map_err(|e| StepError(format!("giving {HOME} to {USER}: {e}")))?;
        }
        Ok(())
    }

    /// The shape a warm container must have to serve `plan`, or `None` when the plan
    /// pins host names, its template is not built yet, or the agent's pool is off
    /// (then it is created cold).
    async fn warm_shape(&self, engine: &Engine, agent: &str, plan: &Plan) -> Option<Shape> {
        // (Warm containers run with no-new-privileges: a sudo sandbox starts cold.)
        if !plan.policy.hosts.is_empty() || plan.sudo || self.pool.sizes().of(agent) == 0 {
            return None;
        }
        let image = if plan.apt.is_empty() && plan.build.is_empty() {
            plan.image.clone()
        } else {
            self.built_template(engine, &plan.image, &plan.apt, &plan.build)
                .await?
        };
        Some(Shape {
            image,
            limits: self.limits(plan.memory_mb, plan.cpus),
            sudo: false,
        })
    }
}

impl Sandboxes {
    /// The image to start from: the agent's (ensured by `create` before provisioning
    /// began) or its template when the agent has `apt` or `build`.
    async fn image_for(&self, engine: &Engine, plan: &Plan) -> Result<String, Provision> {
        if plan.apt.is_empty() && plan.build.is_empty() {
            return Ok(plan.image.clone());
        }
        self.template_image(engine, &plan.image, &plan.apt, &plan.build)
            .await
            .map_err(|e| Provision::Step(StepError(e)))
    }
}

/// Creates the working directory, owned by the user when it is under their home.
async fn make_cwd(init: &InitClient, cwd: &str) -> Result<(), StepError> {
    let in_home = cwd == HOME || cwd.starts_with(&format!("{HOME}/"));
    let fail = |e: InitError| StepError(format!("creating the working directory {cwd}: {e}"));
    if in_home {
        init.mkdir(cwd, USER).await.map_err(fail)?;
    } else if init.mkdir(cwd, ROOT).await.map_err(fail)? {
        init.chown(cwd, USER).await.map_err(fail)?;
    }
    Ok(())
}

/// Writes the config's files: those in the user's home as the user, others as root.
async fn write_files(init: &InitClient, files: &[(String, Vec<u8>)]) -> Result<(), StepError> {
    let (home, other): (Vec<_>, Vec<_>) = files
        .iter()
        .map(|(p, c)| (p.clone(), c.clone(), None))
        .partition(|(p, _, _)| p.starts_with(&format!("{HOME}/")));
    for (batch, user) in [(home, USER), (other, ROOT)] {
        if !batch.is_empty() {
            init.write_files(&batch, user)
                .await
                .map_err(|e| StepError(format!("writing files: {e}")))?;
        }
    }
    Ok(())
}

/// Runs one setup command as root in `cwd`, keeping the tail of its output for the
/// error message. Output is streamed, so a chatty setup costs no memory.
async fn run_setup(
    init: &InitClient,
    cwd: &str,
    command: &str,
    index: usize,
    total: usize,
) -> Result<(), StepError> {
    let step = format!("setup command {} of {total} (`{command}`)", index + 1);
    let request = ExecRequest {
        argv: vec!["bash".into(), "-lc".into(), command.into()],
        env: vec![("HOME".into(), HOME.into())],
        cwd: Some(cwd.to_owned()),
        user: ROOT.into(),
        timeout_ms: None,
        stdin: false,
        output_limit: None,
    };
    let (mut conn, _) = init
        .spawn(request)
        .await
        .map_err(|e| StepError(format!("{step} could not start: {e}")))?;
    let mut tail: Vec<u8> = Vec::new();
    let exit = loop {
        match conn.recv().await {
            Ok(Some(Frame::Stdout(b) | Frame::Stderr(b))) => {
                tail.extend_from_slice(&b);
                if tail.len() > 2 * ERROR_TAIL_BYTES {
                    tail.drain(..tail.len() - ERROR_TAIL_BYTES);
                }
            }
            Ok(Some(Frame::Message(Reply::Exited(exit)))) => break exit,
            Ok(other) => return Err(StepError(format!("{step}: unexpected {other:?}"))),
            Err(e) => return Err(StepError(format!("{step}: {e}"))),
        }
    };
    if exit.code == Some(0) {
        return Ok(());
    }
    let how = match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "an unknown status".into(),
    };
    let start = tail.len().saturating_sub(ERROR_TAIL_BYTES);
    let output = String::from_utf8_lossy(&tail[start..]);
    Err(StepError(format!(
        "{step} failed with {how}; last output:\n{}",
        output.trim_end()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::SandboxConfig;

    fn agent(sandbox: SandboxConfig) -> AgentDef {
        AgentDef {
            sandbox,
            ..Default::default()
        }
    }

    #[test]
    fn the_call_extends_and_overrides_the_agent() {
        let def = agent(SandboxConfig {
            setup: vec!["a".into()],
            files: BTreeMap::from([("x".into(), "agent".into()), ("y".into(), "1".into())]),
            envs: BTreeMap::from([("A".into(), "1".into()), ("B".into(), "1".into())]),
            cwd: Some("app".into()),
            ..Default::default()
        });
        let call = CreateSandbox {
            setup: vec!["b".into()],
            files: BTreeMap::from([("x".into(), "call".into())]),
            envs: BTreeMap::from([("B".into(), "2".into())]),
            ..Default::default()
        };
        let plan = Plan::new(&def, &call, "img").expect("valid");
        assert_eq!(plan.setup, vec!["a", "b"]);
        assert_eq!(plan.cwd, "/home/user/app");
        assert_eq!(plan.envs["B"], "2");
        assert_eq!(plan.envs["A"], "1");
        assert_eq!(
            plan.files,
            vec![
                ("/home/user/x".to_owned(), b"call".to_vec()),
                ("/home/user/y".to_owned(), b"1".to_vec())
            ]
        );
        assert_eq!(plan.image, "img");
    }

    #[test]
    fn egress_lists_of_the_call_replace_the_agents_and_are_checked() {
        let agent = agent(SandboxConfig {
            network_allow_out: Some(vec!["10.0.0.0/8".into()]),
            network_deny_out: Some(vec!["10.1.0.0/16".into()]),
            ..Default::default()
        });
        let call = CreateSandbox {
            network_deny_out: Some(vec!["192.0.2.7".into()]),
            ..Default::default()
        };
        let plan = Plan::new(&agent, &call, "i").unwrap();
        assert_eq!(plan.allow, vec!["10.0.0.0/8".to_owned()]);
        assert_eq!(plan.deny, vec!["192.0.2.7".to_owned()]);
        let bad = CreateSandbox {
            network_allow_out: Some(vec!["10.0.0.0/40".into()]),
            ..Default::default()
        };
        let e = Plan::new(&agent, &bad, "i").unwrap_err();
        assert!(e.to_string().contains("prefix length"), "{e}");
    }

    #[test]
    fn bad_input_is_refused_before_anything_starts() {
        let call = CreateSandbox {
            files: BTreeMap::from([("a\0".into(), String::new())]),
            ..Default::default()
        };
        assert!(Plan::new(&agent(SandboxConfig::default()), &call, "i")
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        let call = CreateSandbox {
            envs: BTreeMap::from([("A-B".into(), String::new())]),
            ..Default::default()
        };
        assert!(Plan::new(&agent(SandboxConfig::default()), &call, "i")
            .unwrap_err()
            .to_string()
            .contains("A-B"));
    }
}
