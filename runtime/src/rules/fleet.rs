//! The deployment's rules as a whole: [`RuleFleet`] publishes, promotes
//! and rolls back versions in the shared rule store, and keeps the
//! instance it runs in on what the store says ([`RuleFleet::follow`]).
//!
//! Every instance follows the same store, so a change made by any one of
//! them (or by `shop rules` from a shell) reaches all of them: each swaps
//! within a second of the notice, calls in flight finishing on the version
//! they started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::error::LoadError;
use super::host::{ReloadReport, RuleHost};
use super::release::{Release, ReleaseError, RuleMode};
use super::source::RuleSource;
use super::{ComponentInfo, ComponentKind};
use crate::audit::Actor;
use crate::ports::{AuditLog, Clock, Disagreement, RuleStore, RuleStoreError, StoreError};

/// How often a save that lost a race is tried again on the fresh release.
const SAVE_ATTEMPTS: usize = 5;
/// How long a follower waits before watching again after the store failed.
const RETRY_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Store(#[from] RuleStoreError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The component, or the set it would make, does not load here.
    #[error("not published: {0}")]
    Load(#[from] LoadError),
    #[error("the change was made, but not recorded in the audit log: {0}")]
    Audit(#[source] StoreError),
    #[error("{0:?} is not a rule name: use 1 to 64 letters, digits, '-' or '_'")]
    BadName(String),
}

/// A version just published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub name: String,
    pub version: u32,
    pub hash: String,
    pub mode: RuleMode,
    pub role: ComponentKind,
}

/// The rule store's use cases, over the instance's rule host.
pub struct RuleFleet<S, A> {
    store: S,
    audit: A,
    host: Arc<RuleHost>,
    clock: Arc<dyn Clock>,
    /// Component bytes by hash, so a sync fetches only what is new.
    fetched: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl<S: RuleStore, A: AuditLog> RuleFleet<S, A> {
    pub fn new(store: S, audit: A, host: Arc<RuleHost>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            audit,
            host,
            clock,
            fetched: Mutex::new(HashMap::new()),
        }
    }

    pub fn host(&self) -> &Arc<RuleHost> {
        &self.host
    }

    /// Publishes `wasm` as the next version of `name`, active or in
    /// shadow. Refused, publishing nothing, when the component is not one
    /// this host runs (or trusts), or the rule set it would make does not
    /// load.
    pub async fn publish(
        &self,
        name: &str,
        wasm: Vec<u8>,
        signature: Option<Vec<u8>>,
        mode: RuleMode,
        actor: &Actor,
    ) -> Result<Published, FleetError> {
        check_name(name)?;
        let candidate = RuleSource::published(name, 0, wasm, signature.clone(), mode);
        let info: ComponentInfo = self.host.inspect(&candidate)?;
        let hash = info.stamp.hash.to_string();
        self.store.put_component(&hash, &candidate.wasm).await?;
        self.remember(&hash, candidate.wasm.into_owned());
        let at = self.clock.now_ms();
        let signature = signature.map(|s| shop_streams::hex::encode(&s));
        let (release, version) = self
            .change(name, true, |release| {
                Ok(release.publish(&hash, at, signature.clone(), mode))
            })
            .await?;
        let published = Published {
            name: release.name,
            version,
            hash,
            mode,
            role: info.role,
        };
        let detail = serde_json::json!({
            "version": version, "hash": published.hash, "mode": mode, "role": info.role.to_string(),
        });
        self.record(actor, "rule.publish", name, &detail).await?;
        Ok(published)
    }

    /// Makes the version in shadow the active one; answers the release as saved.
    pub async fn promote(&self, name: &str, actor: &Actor) -> Result<Release, FleetError> {
        let (release, version) = self.change(name, false, Release::promote).await?;
        self.record(actor, "rule.promote", name, &serde_json::json!({ "version": version }))
            .await?;
        Ok(release)
    }

    /// Returns to the version active before the current one, or to `to`;
    /// answers the release as saved.
    pub async fn rollback(&self, name: &str, to: Option<u32>, actor: &Actor) -> Result<Release, FleetError> {
        let (release, active) = self.change(name, false, |release| release.rollback(to)).await?;
        self.record(actor, "rule.rollback", name, &serde_json::json!({ "version": active }))
            .await?;
        Ok(release)
    }

    /// Every release, by name.
    pub async fn releases(&self) -> Result<Vec<Release>, FleetError> {
        Ok(self.store.releases().await?.into_iter().map(|(r, _)| r).collect())
    }

    /// The disagreements kept for `name`, oldest first.
    pub async fn disagreements(&self, name: &str) -> Result<Vec<Disagreement>, FleetError> {
        Ok(self.store.disagreements(name).await?)
    }

    /// Keeps a disagreement in the store.
    pub async fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), FleetError> {
        Ok(self.store.record_disagreement(disagreement).await?)
    }

    /// Runs what the store says: its active and shadow versions, over the
    /// built-in and directory components.
    pub async fn sync(&self) -> Result<ReloadReport, FleetError> {
        let releases = self.releases().await?;
        let sources = self.sources(&releases).await?;
        Ok(self.host.install(sources)?)
    }

    /// Syncs now, then after every change notice, until the future is
    /// dropped; `on_sync` hears of each sync that changed something. A
    /// store that fails is watched again a second later; a set that does
    /// not load here is logged and the running one stays.
    /// `first_synced` hears when the first sync is done (loaded or not),
    /// so a starting instance can wait for it before it serves.
    pub async fn follow(
        self: Arc<Self>,
        on_sync: impl Fn(&ReloadReport) + Send + Sync + 'static,
        first_synced: tokio::sync::oneshot::Sender<()>,
    ) {
        let mut first_synced = Some(first_synced);
        loop {
            let mut changes = match self.store.changes().await {
                Ok(changes) => changes,
                Err(error) => {
                    tracing::warn!(target: "shop::rules", %error, "cannot watch the rule store; trying again");
                    tokio::time::sleep(RETRY_EVERY).await;
                    continue;
                }
            };
            // Synced after the watch began, so no change falls between.
            self.sync_logged(&on_sync).await;
            if let Some(first) = first_synced.take() {
                let _ = first.send(());
            }
            while changes.next().await.is_some() {
                self.sync_logged(&on_sync).await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    async fn sync_logged(&self, on_sync: &impl Fn(&ReloadReport)) {
        match self.sync().await {
            Ok(report) if report.loaded.is_empty() && report.retired.is_empty() => {}
            Ok(report) => on_sync(&report),
            Err(error) => {
                tracing::error!(target: "shop::rules", %error, "published rules not loaded; the running set stays");
            }
        }
    }

    /// Applies `change` to the release of `name` (a new one if `create`)
    /// and saves it, after checking that the rule set it makes loads. A
    /// save that lost a race with another publisher is made again on the
    /// release as that one left it.
    async fn change<T: Copy>(
        &self,
        name: &str,
        create: bool,
        change: impl Fn(&mut Release) -> Result<T, ReleaseError>,
    ) -> Result<(Release, T), FleetError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut releases = self.store.releases().await?;
            let at = releases.iter().position(|(r, _)| r.name == name);
            let (mut release, revision) = match at {
                Some(at) => {
                    let (release, revision) = releases.swap_remove(at);
                    (release, Some(revision))
                }
                None if create => (Release::new(name), None),
                None => return Err(ReleaseError::NoSuchRule(name.to_owned()).into()),
            };
            let outcome = change(&mut release)?;
            let mut all: Vec<Release> = releases.into_iter().map(|(r, _)| r).collect();
            all.push(release.clone());
            let sources = self.sources(&all).await?;
            self.host.verify(&sources)?;
            match self.store.save(&release, revision).await {
                Ok(_) => return Ok((release, outcome)),
                Err(RuleStoreError::Conflict(_)) if attempt < SAVE_ATTEMPTS => continue,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The sources of every running version of `releases`.
    async fn sources(&self, releases: &[Release]) -> Result<Vec<RuleSource>, FleetError> {
        let mut sources = Vec::new();
        for release in releases {
            for (mode, version) in release.running() {
                let wasm = self.fetch(&version.hash).await?;
                let signature = version.signature.as_deref().and_then(shop_streams::hex::decode);
                sources.push(RuleSource::published(
                    &release.name,
                    version.version,
                    wasm.to_vec(),
                    signature,
                    mode,
                ));
            }
        }
        Ok(sources)
    }

    async fn fetch(&self, hash: &str) -> Result<Arc<Vec<u8>>, FleetError> {
        if let Some(known) = self.fetched.lock().ok().and_then(|f| f.get(hash).cloned()) {
            return Ok(known);
        }
        let wasm = self.store.component(hash).await?;
        // Content-addressed: bytes that do not hash to their key are not it.
        if shop_streams::hex::encode(&Sha256::digest(&wasm)) != hash {
            return Err(RuleStoreError::Corrupt(format!("the component under {hash} has other contents")).into());
        }
        Ok(self.remember(hash, wasm))
    }

    fn remember(&self, hash: &str, wasm: Vec<u8>) -> Arc<Vec<u8>> {
        let wasm = Arc::new(wasm);
        if let Ok(mut fetched) = self.fetched.lock() {
            fetched.insert(hash.to_owned(), Arc::clone(&wasm));
        }
        wasm
    }

    async fn record(
        &self,
        actor: &Actor,
        action: &str,
        name: &str,
        detail: &serde_json::Value,
    ) -> Result<(), FleetError> {
        let record = actor.did("rules", action, format!("rule:{name}"), self.clock.now_ms(), detail);
        self.audit.append(&[record]).await.map_err(FleetError::Audit)
    }
}

/// Names become keys and subjects in the stores: keep them plain.
fn check_name(name: &str) -> Result<(), FleetError> {
    let plain = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        Ok(())
    } else {
        Err(FleetError::BadName(name.to_owned()))
    }
}
