//! One instance's part in the deployment's rules: it loads what the rule
//! store says before it serves, follows the store from then on, and keeps
//! the disagreements its candidates in shadow find.

use std::sync::Arc;
use std::time::Duration;

use shop_runtime::ports::{AuditLog, RuleStore, SystemClock};
use shop_runtime::rules::{ReloadReport, RuleFleet, RuleHost};
use tokio::task::JoinHandle;

/// How long a starting instance waits for the rule store before it serves
/// on what it has (built-in and directory components), following the store
/// once it answers: intake does not wait on the store.
const FIRST_SYNC: Duration = Duration::from_secs(5);
/// Disagreements waiting to be stored; past this, new ones are only counted.
const DISAGREEMENTS_QUEUED: usize = 1024;

/// Follows the rule store until dropped.
pub(crate) struct Follower {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The fleet use cases over `store` for the instance `instance` whose
/// rules `host` runs, following the store from now on; returns once the
/// first sync is done (or after [`FIRST_SYNC`]). Each sync that changes
/// something is told to `on_sync`.
pub(crate) async fn join<RS, A>(
    store: RS,
    audit: A,
    host: Arc<RuleHost>,
    instance: &str,
    on_sync: impl Fn(&ReloadReport) + Send + Sync + 'static,
) -> (Arc<RuleFleet<RS, A>>, Follower)
where
    RS: RuleStore,
    A: AuditLog,
{
    let fleet = Arc::new(RuleFleet::new(store, audit, Arc::clone(&host), Arc::new(SystemClock)));
    let (synced, first_synced) = tokio::sync::oneshot::channel();
    let follower = tokio::spawn(Arc::clone(&fleet).follow(on_sync, synced));
    // What the first sync could not load it has logged.
    if tokio::time::timeout(FIRST_SYNC, first_synced).await.is_err() {
        tracing::warn!(target: "shop::rules", "the rule store did not answer in {FIRST_SYNC:?}; starting on the built-in and directory ones, and following it once it answers");
    }
    let (tell, mut told) = tokio::sync::mpsc::channel(DISAGREEMENTS_QUEUED);
    host.on_disagreement(instance, move |disagreement| {
        let _ = tell.try_send(disagreement);
    });
    let keeper = {
        let fleet = Arc::clone(&fleet);
        tokio::spawn(async move {
            while let Some(disagreement) = told.recv().await {
                if let Err(error) = fleet.record_disagreement(&disagreement).await {
                    tracing::warn!(target: "shop::rules", %error, name = %disagreement.name, "a shadow disagreement was not kept");
                }
            }
        })
    };
    (
        fleet,
        Follower {
            tasks: vec![keeper, follower],
        },
    )
}
