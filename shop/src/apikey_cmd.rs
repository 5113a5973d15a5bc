//! `shop apikey create|list|revoke`: API keys for third-party callers, kept
//! in the deployment's database so every instance accepts (or stops
//! accepting) a key within seconds.
//!
//! A key is shown once, when it is made; only its SHA-256 is stored. On
//! PostgreSQL the command writes as `SHOP_MIGRATION_DATABASE_URL` when set
//! (serving roles may only read the keys).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;
use shop_gateway::{ApiKey, CallerRole, StoredApiKeys, api_key_digest};
use shop_runtime::ports::{ApiKeyRecord, ApiKeyStore, Clock, StoreError, SystemClock};

use crate::config::{self, Database, Settings};

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Make a key and print it (once: only its digest is kept).
    Create {
        /// What the key is for, unique (it is the caller's subject).
        name: String,
        /// Its scope: customer, admin or payment.
        #[arg(long)]
        role: String,
        /// How long it lives (`90d`, `12h`, `30m`, `3600s`); for ever without.
        #[arg(long)]
        expires: Option<String>,
    },
    /// List the keys: name, role, when made, when they expire, whether usable.
    List,
    /// Stop a key from working, everywhere, within seconds.
    Revoke { name: String },
}

pub fn run(command: ApiKeyCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async move {
        match database {
            Database::Embedded(url) => execute(SqliteStore::open(&url).await?.api_keys(), command).await,
            Database::Postgres(url) => {
                let url = config::migration_url(settings, url);
                let settings = PgSettings {
                    max_connections: 1,
                    ..PgSettings::new(url)
                };
                execute(PgStore::connect(&settings).await?.api_keys(), command).await
            }
        }
    })
}

async fn execute(store: impl ApiKeyStore, command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_ms();
    let operator = crate::audit_cmd::operator(uuid::Uuid::now_v7());
    // Audited by name and scope; never the key, nor its digest.
    let audit = |action: &str, name: &str, detail: serde_json::Value| {
        operator.did("access", action, format!("api_key:{name}"), now, &detail)
    };
    match command {
        ApiKeyCommand::Create { name, role, expires } => {
            if name.trim().is_empty() || name.chars().any(char::is_control) || name.len() > 100 {
                bail!("a key's name is 1 to 100 characters, none of them control characters");
            }
            if CallerRole::parse(&role).is_none() {
                bail!("--role {role:?}: expected customer, admin or payment");
            }
            let lifetime = expires
                .map(|text| config::parse_duration(&text).with_context(|| format!("--expires {text:?}")))
                .transpose()?;
            let key = crate::secrets::random_hex()?;
            let record = ApiKeyRecord {
                name: name.clone(),
                role,
                digest: api_key_digest(&key),
                created_ms: now,
                expires_ms: lifetime.map(|d| now.saturating_add(millis(d))),
                revoked_ms: None,
            };
            let audit = audit(
                "api_key.create",
                &name,
                serde_json::json!({ "role": record.role, "expires_ms": record.expires_ms }),
            );
            match store.create_api_key(&record, &audit).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => {
                    bail!("an API key named {name} exists; revoke it or choose another name")
                }
                Err(error) => return Err(error.into()),
            }
            println!("{key}");
            eprintln!("API key {name} created; it is shown this once. Send it as X-Api-Key.");
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::List => {
            println!(
                "{:<24} {:<9} {:<14} {:<14} state",
                "name", "role", "created_ms", "expires_ms"
            );
            for key in store.api_keys().await? {
                let state = match (key.revoked_ms, key.is_active(now)) {
                    (Some(_), _) => "revoked",
                    (None, true) => "active",
                    (None, false) => "expired",
                };
                let expires = key.expires_ms.map_or_else(|| "never".to_owned(), |ms| ms.to_string());
                println!(
                    "{:<24} {:<9} {:<14} {:<14} {state}",
                    key.name, key.role, key.created_ms, expires
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::Revoke { name } => match store
            .revoke_api_key(&name, now, &audit("api_key.revoke", &name, serde_json::json!({})))
            .await?
        {
            true => {
                println!("API key {name} revoked; instances refuse it within seconds");
                Ok(ExitCode::SUCCESS)
            }
            false => {
                eprintln!("no API key named {name}");
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

/// How often a serving process reads the key store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Keeps `stored` equal to the store's usable keys until the task is
/// aborted; a failed read keeps the last known keys (logged once per outage).
pub fn keep_current(store: impl ApiKeyStore, stored: StoredApiKeys) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match store.api_keys().await {
                Ok(records) => {
                    failing = false;
                    let keys = records
                        .into_iter()
                        .filter(|record| record.revoked_ms.is_none())
                        .filter_map(|record| {
                            Some(ApiKey {
                                role: CallerRole::parse(&record.role)?,
                                name: record.name,
                                digest: record.digest,
                                expires_ms: record.expires_ms,
                            })
                        })
                        .collect();
                    stored.replace(keys);
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(target: "shop::auth", %error, "API keys not read; the last known stay in force");
                    }
                    failing = true;
                }
            }
            tokio::time::sleep(REFRESH_EVERY).await;
        }
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
