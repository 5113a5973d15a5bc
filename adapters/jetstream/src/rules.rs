//! The distributed mode's rule store on JetStream: components in an object
//! store bucket (by content hash), one release record per rule name in a
//! key-value bucket (its revision is the compare-and-set token, its watch
//! the change notice), and the disagreements of versions in shadow in a
//! stream that keeps the newest [`DISAGREEMENTS_KEPT`] per rule name.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use async_nats::jetstream::object_store::{self, GetErrorKind, ObjectStore};
use async_nats::jetstream::{self, context::Context as JsContext, stream};
use futures::{StreamExt, TryStreamExt};
use shop_runtime::ports::{Cause, Changes, DISAGREEMENTS_KEPT, Disagreement, Revision, RuleStore, RuleStoreError};
use shop_runtime::rules::Release;
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;

use crate::JetStreamBus;

/// The rule store of one namespace; cheap to clone, sharing the bus's connection.
#[derive(Clone)]
pub struct JetStreamRuleStore {
    js: JsContext,
    namespace: String,
    replicas: usize,
    releases: std::sync::Arc<OnceCell<kv::Store>>,
    components: std::sync::Arc<OnceCell<ObjectStore>>,
    diffs: std::sync::Arc<OnceCell<stream::Stream>>,
}

impl std::fmt::Debug for JetStreamRuleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamRuleStore")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, error: impl std::error::Error + Send + Sync + 'static) -> RuleStoreError {
    RuleStoreError::Unavailable(Cause::context(what.to_owned(), error))
}

fn corrupt(what: &str, error: serde_json::Error) -> RuleStoreError {
    RuleStoreError::Corrupt(format!("{what}: {error}"))
}

impl JetStreamBus {
    /// The deployment's rule store, on this bus's connection.
    pub fn rules(&self) -> JetStreamRuleStore {
        let namespace = self.topology().namespace().to_string();
        JetStreamRuleStore {
            js: self.jetstream().clone(),
            replicas: self.topology().dead_letter_stream().replicas,
            namespace,
            releases: Default::default(),
            components: Default::default(),
            diffs: Default::default(),
        }
    }
}

impl JetStreamRuleStore {
    fn releases_bucket(&self) -> String {
        format!("{}_rules", self.namespace)
    }

    fn components_bucket(&self) -> String {
        format!("{}_rule_components", self.namespace)
    }

    fn diffs_stream(&self) -> String {
        format!("{}_rule_diffs", self.namespace)
    }

    fn diff_subject(&self, name: &str) -> String {
        format!("{}.rules.diff.{name}", self.namespace)
    }

    async fn kv(&self) -> Result<&kv::Store, RuleStoreError> {
        self.releases
            .get_or_try_init(|| async {
                let bucket = self.releases_bucket();
                if let Ok(store) = self.js.get_key_value(&bucket).await {
                    return Ok(store);
                }
                // The bucket's stream, made as the client's `create_key_value`
                // makes it: that call first asks for the account's limits, in
                // a form nats-server 2.9 does not answer in.
                self.js
                    .get_or_create_stream(stream::Config {
                        name: format!("KV_{bucket}"),
                        description: Some("The shop's rule releases, one per rule name".into()),
                        subjects: vec![format!("$KV.{bucket}.>")],
                        max_messages_per_subject: 10,
                        allow_rollup: true,
                        deny_delete: true,
                        allow_direct: true,
                        discard: stream::DiscardPolicy::New,
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&format!("key-value bucket {bucket}"), e))?;
                self.js
                    .get_key_value(&bucket)
                    .await
                    .map_err(|e| unavailable(&format!("key-value bucket {bucket}"), e))
            })
            .await
    }

    async fn objects(&self) -> Result<&ObjectStore, RuleStoreError> {
        self.components
            .get_or_try_init(|| async {
                let bucket = self.components_bucket();
                if let Ok(store) = self.js.get_object_store(&bucket).await {
                    return Ok(store);
                }
                self.js
                    .create_object_store(object_store::Config {
                        bucket: bucket.clone(),
                        description: Some("The shop's published rule components, by SHA-256".into()),
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&format!("object store {bucket}"), e))
            })
            .await
    }

    async fn diffs(&self) -> Result<&stream::Stream, RuleStoreError> {
        self.diffs
            .get_or_try_init(|| async {
                let name = self.diffs_stream();
                self.js
                    .get_or_create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{}.rules.diff.*", self.namespace)],
                        max_messages_per_subject: i64::try_from(DISAGREEMENTS_KEPT).unwrap_or(i64::MAX),
                        discard: stream::DiscardPolicy::Old,
                        num_replicas: self.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| unavailable(&format!("stream {name}"), e))
            })
            .await
    }

    /// Deletes this namespace's rule buckets and stream (for tests).
    pub async fn delete(&self) -> Result<(), RuleStoreError> {
        for stream in [
            format!("KV_{}", self.releases_bucket()),
            format!("OBJ_{}", self.components_bucket()),
            self.diffs_stream(),
        ] {
            // One that was never made is as good as deleted.
            let _ = self.js.delete_stream(&stream).await;
        }
        Ok(())
    }
}

impl RuleStore for JetStreamRuleStore {
    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), RuleStoreError> {
        let objects = self.objects().await?;
        // Content-addressed: what is there under the hash is this already,
        // and putting it again would replace chunks a reader may be reading.
        if objects.info(hash).await.is_ok() {
            return Ok(());
        }
        let mut reader = wasm;
        objects
            .put(hash, &mut reader)
            .await
            .map_err(|e| unavailable("put a rule component", e))?;
        Ok(())
    }

    async fn component(&self, hash: &str) -> Result<Vec<u8>, RuleStoreError> {
        let mut object = match self.objects().await?.get(hash).await {
            Ok(object) => object,
            Err(error) if error.kind() == GetErrorKind::NotFound => {
                return Err(RuleStoreError::MissingComponent(hash.to_owned()));
            }
            Err(error) => return Err(unavailable("get a rule component", error)),
        };
        let mut wasm = Vec::new();
        object
            .read_to_end(&mut wasm)
            .await
            .map_err(|e| unavailable("read a rule component", e))?;
        Ok(wasm)
    }

    async fn releases(&self) -> Result<Vec<(Release, Revision)>, RuleStoreError> {
        let kv = self.kv().await?;
        let mut names: Vec<String> = kv
            .keys()
            .await
            .map_err(|e| unavailable("list the rule releases", e))?
            .try_collect()
            .await
            .map_err(|e| unavailable("list the rule releases", e))?;
        names.sort();
        let mut releases = Vec::with_capacity(names.len());
        for name in names {
            let Some(entry) = kv
                .entry(&name)
                .await
                .map_err(|e| unavailable("read a rule release", e))?
            else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let release = serde_json::from_slice(&entry.value).map_err(|e| corrupt("a release", e))?;
            releases.push((release, entry.revision));
        }
        Ok(releases)
    }

    async fn save(&self, release: &Release, expected: Option<Revision>) -> Result<Revision, RuleStoreError> {
        let kv = self.kv().await?;
        let record = serde_json::to_vec(release).map_err(|e| corrupt("a release", e))?;
        let conflict = || RuleStoreError::Conflict(release.name.clone());
        match expected {
            None => kv
                .create(&release.name, record.into())
                .await
                .map_err(|e| match e.kind() {
                    CreateErrorKind::AlreadyExists => conflict(),
                    _ => unavailable("save a rule release", e),
                }),
            Some(revision) => kv
                .update(&release.name, record.into(), revision)
                .await
                .map_err(|e| match e.kind() {
                    UpdateErrorKind::WrongLastRevision => conflict(),
                    _ => unavailable("save a rule release", e),
                }),
        }
    }

    async fn changes(&self) -> Result<Changes, RuleStoreError> {
        let watch = self
            .kv()
            .await?
            .watch_all()
            .await
            .map_err(|e| unavailable("watch the rule releases", e))?;
        // A failed watch ends the stream; the follower watches again.
        Ok(watch
            .take_while(|entry| std::future::ready(entry.is_ok()))
            .map(drop)
            .boxed())
    }

    async fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), RuleStoreError> {
        self.diffs().await?;
        let record = serde_json::to_vec(disagreement).map_err(|e| corrupt("a disagreement", e))?;
        self.js
            .publish(self.diff_subject(&disagreement.name), record.into())
            .await
            .map_err(|e| unavailable("record a disagreement", e))?
            .await
            .map_err(|e| unavailable("record a disagreement", e))?;
        Ok(())
    }

    async fn disagreements(&self, name: &str) -> Result<Vec<Disagreement>, RuleStoreError> {
        let consumer: jetstream::consumer::Consumer<pull::Config> = self
            .diffs()
            .await?
            .create_consumer(pull::Config {
                filter_subject: self.diff_subject(name),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("read the disagreements", e))?;
        let mut kept = Vec::new();
        loop {
            let mut batch = consumer
                .fetch()
                .max_messages(DISAGREEMENTS_KEPT)
                .messages()
                .await
                .map_err(|e| unavailable("read the disagreements", e))?;
            let before = kept.len();
            while let Some(message) = batch.next().await {
                let message =
                    message.map_err(|e| RuleStoreError::Unavailable(Cause::context("read the disagreements", e)))?;
                kept.push(serde_json::from_slice(&message.payload).map_err(|e| corrupt("a disagreement", e))?);
            }
            if kept.len() == before {
                return Ok(kept);
            }
        }
    }
}
