//! `shop audit`: the audit log for operators. `verify` walks the whole
//! hash chain from its first entry to the head the store keeps and names
//! the first entry that does not hold; `list` prints entries as
//! `GET /api/audit` filters them.

use std::process::ExitCode;

use clap::Subcommand;
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;
use shop_runtime::audit::{Actor, BrokenLink, ChainWalk};
use shop_runtime::ports::{AuditLog, AuditQuery};
use uuid::Uuid;

use crate::config::{self, Database, Settings};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the chain from its first entry: exit 0 when every link holds
    /// and it ends at the recorded head, 1 naming the first broken entry.
    Verify,
    /// Print entries oldest first, one JSON object a line.
    List {
        #[arg(long)]
        actor: Option<String>,
        #[arg(long)]
        target: Option<String>,
        #[arg(long)]
        action: Option<String>,
        /// Entries numbered above this.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

/// Entries read per query while verifying.
const PAGE: u32 = 1_000;

/// How often `verify` says how far it got.
const PROGRESS_EVERY: u64 = 100_000;

/// Who an operator's command-line change is audited as: the login user,
/// acting through the request `request_id` (the command's correlation id).
pub(crate) fn operator(request_id: Uuid) -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned());
    Actor::new(format!("cli:{user}"), "operator", request_id.to_string())
}

pub fn run(command: AuditCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async {
        match database {
            Database::Embedded(url) => on(&SqliteStore::open(&url).await?, command).await,
            Database::Postgres(url) => on(&PgStore::connect(&PgSettings::new(url)).await?, command).await,
        }
    })
}

async fn on(log: &impl AuditLog, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify => verify(log).await,
        AuditCommand::List {
            actor,
            target,
            action,
            after,
            limit,
        } => {
            let query = AuditQuery {
                actor: actor.as_deref(),
                target: target.as_deref(),
                action: action.as_deref(),
                after,
                limit,
            };
            for e in log.entries(query).await? {
                let r = &e.record;
                let line = serde_json::json!({
                    "seq": e.seq, "context": r.context, "at": r.at, "actor": r.actor, "role": r.role,
                    "action": r.action, "target": r.target, "request_id": r.request_id,
                    "detail": serde_json::from_str::<serde_json::Value>(&r.detail).unwrap_or_else(|_| r.detail.clone().into()),
                    "prev_hash": e.prev_hash, "hash": e.hash,
                });
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify(log: &impl AuditLog) -> anyhow::Result<ExitCode> {
    // The head first: entries appended while the walk runs lie beyond it.
    let head = log.head().await?;
    let mut walk = ChainWalk::default();
    while walk.checked().seq < head.seq {
        let after = walk.checked().seq;
        // Never past the head: a chain missing entries below it ends the
        // walk on an empty page (or a gap), not in a chase of new appends.
        let query = AuditQuery {
            after,
            limit: u32::try_from(head.seq - after).map_or(PAGE, |left| left.min(PAGE)),
            ..AuditQuery::default()
        };
        let page = log.entries(query).await?;
        if page.is_empty() {
            break;
        }
        // The limit keeps a whole chain's pages at or below the head; an
        // entry above it here comes after a gap, which the walk reports.
        for entry in &page {
            if let Err(broken) = walk.next(entry) {
                return broken_at(&broken);
            }
            if entry.seq % PROGRESS_EVERY == 0 {
                eprintln!("verified {} of {} entries", entry.seq, head.seq);
            }
        }
    }
    if let Err(broken) = walk.end(&head) {
        return broken_at(&broken);
    }
    // An entry commits with its head, so every entry read now has a head
    // read after it; one beyond every head means heads were removed.
    let next = AuditQuery {
        after: head.seq,
        limit: 1,
        ..AuditQuery::default()
    };
    if let Some(beyond) = log.entries(next).await?.first() {
        let latest = log.head().await?;
        if beyond.seq > latest.seq {
            let why = format!(
                "it lies beyond the chain's last recorded head (entry {}): heads were removed",
                latest.seq
            );
            return broken_at(&BrokenLink { seq: beyond.seq, why });
        }
    }
    println!(
        "audit chain holds: {} entries, head {}",
        head.seq,
        &head.hash[..16.min(head.hash.len())]
    );
    Ok(ExitCode::SUCCESS)
}

fn broken_at(broken: &BrokenLink) -> anyhow::Result<ExitCode> {
    println!("audit chain broken at entry {}: {}", broken.seq, broken.why);
    Ok(ExitCode::FAILURE)
}
