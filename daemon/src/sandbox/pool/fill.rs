//! Keeping the pool filled, claiming from it, and emptying it at shutdown.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{key, Warm, BACKOFF, CHECK_EVERY, FILLS_AT_ONCE, LABEL_POOL};
use crate::docker::Engine;
use crate::firewall::{Policy, Target};
use crate::init_client::InitClient;
use crate::names::new_id;
use crate::readiness::Phase;
use crate::sandbox::boot::{Extras, Identity, Provision, Shape, INIT_DEADLINE};
use crate::sandbox::{disk, remove_dir, Attachment, Sandboxes};

/// How long shutdown waits for refills under way to stop.
const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

impl Sandboxes {
    /// Keeps the pool at its sizes until `shutdown`, then empties it.
    pub async fn run_pool(self: Arc<Self>, shutdown: CancellationToken) {
        if self.pool.sizes().is_off() {
            return;
        }
        let fills = Arc::new(tokio::sync::Semaphore::new(FILLS_AT_ONCE));
        let mut readied = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.pool.closed.cancelled() => break,
                () = tokio::time::sleep(CHECK_EVERY) => {}
                () = self.pool.wake.notified() => {}
            }
            if self.readiness.phase() != Phase::Ready {
                continue;
            }
            let Some(engine) = self.readiness.engine().cloned() else {
                continue;
            };
            // Back from an engine hiccup or restart: what died meanwhile goes now,
            // and the refill below replaces it, before a create would claim it.
            if self.readiness.readied() != readied {
                readied = self.readiness.readied();
                self.drop_dead_warm().await;
            }
            let mut wanted = self.wanted_shapes(&engine).await;
            for (key, (_, size)) in wanted.iter_mut() {
                *size = self.pool.target(key, *size);
            }
            self.prune(&wanted).await;
            for (key, (shape, size)) in wanted {
                let missing = {
                    let mut inner = self.pool.inner();
                    let backing_off = inner
                        .failed
                        .get(&key)
                        .is_some_and(|at| at.elapsed() < BACKOFF);
                    let have = inner.ready.get(&key).map_or(0, |r| r.len())
                        + inner.filling.get(&key).copied().unwrap_or(0);
                    let missing = if backing_off {
                        0
                    } else {
                        size.saturating_sub(have)
                    };
                    *inner.filling.entry(key.clone()).or_default() += missing;
                    missing
                };
                for _ in 0..missing {
                    let this = self.clone();
                    let (key, shape, fills) = (key.clone(), shape.clone(), fills.clone());
                    // Owned by the pool: it stops at `closed`, and `close_pool` waits
                    // for its `filling` count to drop.
                    tokio::spawn(async move {
                        let permit = fills.acquire_owned().await;
                        let made = match permit {
                            Ok(_permit) => this.fill_one(&shape).await,
                            Err(_) => Err("the pool is closed".to_owned()),
                        };
                        let unwanted = {
                            let mut inner = this.pool.inner();
                            match made {
                                Ok(warm) if !this.pool.closed.is_cancelled() => {
                                    tracing::debug!(sandbox = %warm.id, "warm container ready");
                                    inner.failed.remove(&key);
                                    inner.ready.entry(key.clone()).or_default().push_back(warm);
                                    None
                                }
                                Ok(warm) => Some(warm),
                                Err(e) => {
                                    if !this.pool.closed.is_cancelled() {
                                        tracing::warn!(image = %shape.image, "warm pool: {e}");
                                    }
                                    inner.failed.insert(key.clone(), std::time::Instant::now());
                                    None
                                }
                            }
                        };
                        if let Some(warm) = unwanted {
                            this.discard(warm).await;
                        }
                        // Last: `close_pool` waits for this to reach zero.
                        if let Some(n) = this.pool.inner().filling.get_mut(&key) {
                            *n = n.saturating_sub(1);
                        }
                    });
                }
            }
        }
        self.close_pool().await;
    }

    /// The shapes the agents want warm, with their sizes. Agents that pin host names
    /// (an allow list with domain names) are never pooled; nor those whose image or
    /// template is not built yet (their first create builds it).
    async fn wanted_shapes(&self, engine: &Engine) -> HashMap<String, (Shape, usize)> {
        let mut wanted: HashMap<String, (Shape, usize)> = HashMap::new();
        for (slug, def, _) in self.agents.list() {
            let size = self.pool.sizes().of(&slug);
            let sb = &def.sandbox;
            let pins = sb
                .network_allow_out
                .iter()
                .flatten()
                .any(|entry| matches!(Target::parse(entry), Ok(Target::Domain(_))));
            if size == 0 || pins || sb.sudo {
                continue;
            }
            let base = sb
                .image
                .clone()
                .unwrap_or_else(|| self.settings.image.clone());
            let image = if sb.apt.is_empty() && sb.build.is_empty() {
                match engine.image_info(&base).await {
                    Ok(Some(_)) => base,
                    _ => continue,
                }
            } else {
                match self.built_template(engine, &base, &sb.apt, &sb.build).await {
                    Some(tag) => tag,
                    None => continue,
                }
            };
            let shape = Shape {
                image,
                limits: self.limits(sb.memory_mb, sb.cpu_count),
                // A sudo agent's sandboxes start cold (see `warm_shape`).
                sudo: false,
            };
            let entry = wanted.entry(key(&shape)).or_insert((shape, 0));
            entry.1 = entry.1.max(size);
        }
        wanted
    }

    /// Removes warm containers nobody wants any more: of a shape no agent has now,
    /// beyond their shape's size, or on a network that was replaced.
    async fn prune(&self, wanted: &HashMap<String, (Shape, usize)>) {
        let network = self.attachment().map(|a| a.network.id);
        let surplus: Vec<Warm> = {
            let mut inner = self.pool.inner();
            let mut out = Vec::new();
            for (key, ready) in inner.ready.iter_mut() {
                ready.retain(|w| {
                    let keep = network.as_deref() == Some(w.network_id.as_str());
                    if !keep {
                        out.push(w.clone());
                    }
                    keep
                });
                let size = wanted.get(key).map_or(0, |(_, n)| *n);
                while ready.len() > size {
                    out.extend(ready.pop_back());
                }
            }
            inner.ready.retain(|_, r| !r.is_empty());
            out
        };
        for warm in surplus {
            self.discard(warm).await;
        }
    }

    /// Starts one warm container of `shape` and waits for its sandbox-init.
    async fn fill_one(&self, shape: &Shape) -> Result<Warm, String> {
        if self.pool.closed.is_cancelled() {
            return Err("the pool is closed".into());
        }
        let engine = self.ready_engine().map_err(|e| e.to_string())?.clone();
        let Attachment { network, firewall } = self
            .attachment()
            .ok_or("the sandbox network is not set up")?;
        let id = new_id("sb_");
        let name = format!("sbx-{}", &id[3..]);
        let dir = self.settings.sandboxes_dir.join(&id);
        self.pool.inner().ids.insert(id.clone());
        let container = Mutex::new(None::<String>);
        let booted = self
            .boot(
                &engine,
                Identity {
                    id: &id,
                    name: &name,
                    dir: &dir,
                    network: &network,
                },
                shape,
                Extras {
                    labels: vec![(LABEL_POOL.to_owned(), "warm".to_owned())],
                    ..Default::default()
                },
                &self.pool.closed,
                |c| *container.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.to_owned()),
            )
            .await;
        let ready = match booted {
            Ok(booted) => {
                let init = InitClient::new(dir.join("run"));
                init.set_init_pid(booted.init_pid);
                let ready = init
                    .wait_ready(INIT_DEADLINE)
                    .await
                    .map_err(|e| format!("sandbox-init did not come up: {e}"));
                // Rules left naming its address (by a container gone unnoticed) go
                // now, so a claim with an open policy has nothing to do.
                match ready {
                    Ok(()) => firewall
                        .apply(
                            &id,
                            booted.address,
                            booted.init_pid.into(),
                            &Policy::default(),
                        )
                        .await
                        .map(|()| booted)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                }
            }
            Err(Provision::Engine(e)) => Err(e.to_string()),
            Err(Provision::Step(e)) => Err(e.0),
        };
        let container = container.into_inner().unwrap_or_else(|p| p.into_inner());
        match ready {
            Ok(booted) => Ok(Warm {
                id,
                dir,
                booted,
                network_id: network.id,
            }),
            Err(e) => {
                self.remove_warm(&id, &dir, container.as_deref()).await;
                Err(e)
            }
        }
    }

    /// A ready warm container of `shape` that still answers, if the pool has one.
    /// Those that do not (their network was replaced, or the container died) are
    /// removed on the way.
    pub(in crate::sandbox) async fn claim_warm(&self, shape: &Shape) -> Option<Warm> {
        self.pool.record_demand(shape);
        loop {
            let warm = self.pool.take(shape)?;
            let network = self.attachment().map(|a| a.network.id);
            let init = InitClient::new(warm.dir.join("run"));
            init.set_init_pid(warm.booted.init_pid);
            if network.as_deref() == Some(warm.network_id.as_str()) && init.hello().await.is_ok() {
                return Some(warm);
            }
            tracing::warn!(sandbox = %warm.id, "warm container unusable; removed");
            self.discard(warm).await;
        }
    }

    /// Removes the ready warm containers whose sandbox-init no longer answers.
    async fn drop_dead_warm(&self) {
        let ready: Vec<Warm> = self
            .pool
            .inner()
            .ready
            .values()
            .flatten()
            .cloned()
            .collect();
        let mut dead = Vec::new();
        for warm in ready {
            let init = InitClient::new(warm.dir.join("run"));
            init.set_init_pid(warm.booted.init_pid);
            if init.hello().await.is_err() {
                dead.push(warm);
            }
        }
        if dead.is_empty() {
            return;
        }
        {
            let mut inner = self.pool.inner();
            for ready in inner.ready.values_mut() {
                ready.retain(|w| !dead.iter().any(|d| d.id == w.id));
            }
            inner.ready.retain(|_, r| !r.is_empty());
        }
        for warm in dead {
            tracing::warn!(sandbox = %warm.id, "warm container died (engine restart?); replaced");
            self.discard(warm).await;
        }
    }

    /// Removes a warm container, its disk and directory.
    pub(in crate::sandbox) async fn discard(&self, warm: Warm) {
        self.remove_warm(&warm.id, &warm.dir, Some(&warm.booted.container))
            .await;
    }

    async fn remove_warm(&self, id: &str, dir: &Path, container: Option<&str>) {
        if let (Some(container), Some(engine)) = (container, self.readiness.engine()) {
            if let Err(e) = engine.remove(container).await {
                tracing::warn!(sandbox = %id, "removing a warm container: {e}");
            }
        }
        if let Err(e) = disk::Disk::new(dir).unmount().await {
            tracing::warn!(sandbox = %id, "{e}");
        }
        remove_dir(dir);
        self.pool.inner().ids.remove(id);
    }

    /// Warm containers ready to be claimed.
    pub fn pool_ready(&self) -> usize {
        self.pool.ready_count()
    }

    /// The most warm containers one shape's pool may grow to (`--pool-max`).
    pub fn pool_max(&self) -> usize {
        self.pool.sizes().max
    }

    /// Stops refills and removes every warm container (at shutdown). Idempotent.
    pub async fn close_pool(&self) {
        self.pool.closed.cancel();
        let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
        while self.pool.inner().filling.values().any(|n| *n > 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let all: Vec<Warm> = {
            let mut inner = self.pool.inner();
            inner.ready.drain().flat_map(|(_, r)| r).collect()
        };
        let count = all.len();
        for warm in all {
            self.discard(warm).await;
        }
        if count > 0 {
            tracing::info!("warm pool: removed {count} container(s)");
        }
    }
}
