//! `shop outbox`: the published side of the outbox, for operators.
//!
//! Published events stay in each context's outbox for a while
//! (`SHOP_OUTBOX_RETENTION_SECS`, 15 minutes by default). After the broker lost
//! messages (a JetStream node's disk, an OS crash before its fsync),
//! `republish --since` moves the outbox's cursor back to the first event
//! committed since then, and the running relay publishes from there once
//! more; dedup ids and the idempotent handlers make the repeats harmless.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Subcommand, ValueEnum};
use shop_adapter_postgres::{PgSettings, PgStore, Schema};
use shop_adapter_sqlite::SqliteStore;
use shop_runtime::ports::Outbox;
use shop_streams::Context;

use crate::config::{self, Database, Settings};

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Events committed but not yet published, per context.
    Backlog,
    /// Publish again every event committed at or after a point in time (as
    /// far back as the outbox keeps them).
    Republish {
        /// How far back: a duration (`90s`, `15m`, `2h`, `1d`) or milliseconds
        /// since the Unix epoch.
        #[arg(long, value_parser = parse_since)]
        since: i64,
        /// Whose outbox.
        #[arg(long, value_enum, default_value = "all")]
        context: Which,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Order,
    Inventory,
    All,
}

impl Which {
    fn contexts(self) -> &'static [(Context, &'static str)] {
        match self {
            Self::Order => &[(Context::Order, "order")],
            Self::Inventory => &[(Context::Inventory, "inventory")],
            Self::All => &[(Context::Order, "order"), (Context::Inventory, "inventory")],
        }
    }
}

pub fn run(command: OutboxCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async {
        match database {
            Database::Embedded(url) => {
                let store = SqliteStore::open(&url).await?;
                execute(command, |context| store.outbox(context)).await
            }
            Database::Postgres(url) => {
                let store = PgStore::connect(&PgSettings::new(url)).await?;
                execute(command, |context| {
                    store.outbox(match context {
                        Context::Order => Schema::Orders,
                        Context::Inventory => Schema::Inventory,
                    })
                })
                .await
            }
        }
    })
}

async fn execute<O: Outbox>(command: OutboxCommand, outbox: impl Fn(Context) -> O) -> anyhow::Result<ExitCode> {
    match command {
        OutboxCommand::Backlog => {
            for (context, name) in Which::All.contexts() {
                println!("{name}: {} unsent", outbox(*context).backlog().await?);
            }
        }
        OutboxCommand::Republish { since, context } => {
            for (context, name) in context.contexts() {
                let requeued = outbox(*context).rewind_to(since).await?;
                println!("{name}: {requeued} events queued for publishing again");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `15m` ago or an absolute epoch-milliseconds timestamp, as epoch milliseconds.
fn parse_since(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let unit = text.char_indices().find(|(_, c)| !c.is_ascii_digit()).map(|(at, _)| at);
    let (digits, unit) = match unit {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration like 15m or epoch milliseconds"))?;
    let seconds = match unit {
        "" => return i64::try_from(number).map_err(|_| format!("{text:?} is too large")),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use s, m, h or d)")),
    };
    let ago = Duration::from_secs(number.saturating_mul(seconds));
    let at = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?;
    i64::try_from(at.as_millis()).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_durations_ago_and_epoch_milliseconds() {
        assert_eq!(parse_since("1700000000000"), Ok(1_700_000_000_000));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let fifteen_minutes_ago = parse_since("15m").unwrap_or_default();
        assert!((now - 15 * 60_000 - fifteen_minutes_ago).abs() < 5_000);
        assert!(parse_since("2h").unwrap_or_default() < fifteen_minutes_ago);
        assert!(parse_since("15 minutes").is_err());
        assert!(parse_since("m").is_err());
        assert!(parse_since("").is_err());
    }
}
