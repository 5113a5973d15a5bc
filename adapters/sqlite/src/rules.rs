//! The embedded mode's rule store: components, releases and shadow
//! disagreements in the shop's SQLite database, so `shop rules publish`
//! from a shell reaches the running shop on the same file.

use std::time::Duration;

use futures::StreamExt;
use shop_runtime::ports::{Cause, Changes, DISAGREEMENTS_KEPT, Disagreement, Revision, RuleStore, RuleStoreError};
use shop_runtime::rules::Release;
use sqlx::SqlitePool;

/// How often a watcher looks for a new revision: another process may have
/// written it, so there is nothing to wait on but the file.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The rule store in the shop's database; cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteRuleStore {
    pool: SqlitePool,
}

impl SqliteRuleStore {
    pub(crate) fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn unavailable(error: sqlx::Error) -> RuleStoreError {
    RuleStoreError::Unavailable(Cause::new(error))
}

fn corrupt(what: &str, error: serde_json::Error) -> RuleStoreError {
    RuleStoreError::Corrupt(format!("{what}: {error}"))
}

async fn latest(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(revision), 0) FROM rule_releases")
        .fetch_one(pool)
        .await
}

impl RuleStore for SqliteRuleStore {
    async fn put_component(&self, hash: &str, wasm: &[u8]) -> Result<(), RuleStoreError> {
        sqlx::query("INSERT INTO rule_components (hash, wasm) VALUES (?1, ?2) ON CONFLICT (hash) DO NOTHING")
            .bind(hash)
            .bind(wasm)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn component(&self, hash: &str) -> Result<Vec<u8>, RuleStoreError> {
        sqlx::query_scalar("SELECT wasm FROM rule_components WHERE hash = ?1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| RuleStoreError::MissingComponent(hash.to_owned()))
    }

    async fn releases(&self) -> Result<Vec<(Release, Revision)>, RuleStoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT record, revision FROM rule_releases ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|(record, revision)| {
                let release = serde_json::from_str(&record).map_err(|e| corrupt("a release", e))?;
                Ok((release, revision.unsigned_abs()))
            })
            .collect()
    }

    async fn save(&self, release: &Release, expected: Option<Revision>) -> Result<Revision, RuleStoreError> {
        let record = serde_json::to_string(release).map_err(|e| corrupt("a release", e))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        let stored: Option<i64> = sqlx::query_scalar("SELECT revision FROM rule_releases WHERE name = ?1")
            .bind(&release.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if stored.map(i64::unsigned_abs) != expected {
            return Err(RuleStoreError::Conflict(release.name.clone()));
        }
        let revision: i64 = sqlx::query_scalar(
            "INSERT INTO rule_releases (name, revision, record) \
             VALUES (?1, (SELECT coalesce(max(revision), 0) + 1 FROM rule_releases), ?2) \
             ON CONFLICT (name) DO UPDATE SET revision = excluded.revision, record = excluded.record \
             RETURNING revision",
        )
        .bind(&release.name)
        .bind(record)
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(revision.unsigned_abs())
    }

    async fn changes(&self) -> Result<Changes, RuleStoreError> {
        let seen = latest(&self.pool).await.map_err(unavailable)?;
        let pool = self.pool.clone();
        let ticks = futures::stream::unfold((pool, seen), |(pool, mut seen)| async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                // A failed look is no change; the next one tries again.
                if let Ok(now) = latest(&pool).await
                    && now != seen
                {
                    seen = now;
                    return Some(((), (pool, seen)));
                }
            }
        });
        Ok(ticks.boxed())
    }

    async fn record_disagreement(&self, disagreement: &Disagreement) -> Result<(), RuleStoreError> {
        let record = serde_json::to_string(disagreement).map_err(|e| corrupt("a disagreement", e))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
        sqlx::query("INSERT INTO rule_disagreements (name, record) VALUES (?1, ?2)")
            .bind(&disagreement.name)
            .bind(record)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(
            "DELETE FROM rule_disagreements WHERE name = ?1 AND seq <= \
             (SELECT seq FROM rule_disagreements WHERE name = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)",
        )
        .bind(&disagreement.name)
        .bind(i64::try_from(DISAGREEMENTS_KEPT).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn disagreements(&self, name: &str) -> Result<Vec<Disagreement>, RuleStoreError> {
        let records: Vec<String> =
            sqlx::query_scalar("SELECT record FROM rule_disagreements WHERE name = ?1 ORDER BY seq")
                .bind(name)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        records
            .iter()
            .map(|record| serde_json::from_str(record).map_err(|e| corrupt("a disagreement", e)))
            .collect()
    }
}
