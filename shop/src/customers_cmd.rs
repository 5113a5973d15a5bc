//! `shop customers` and `shop keys`: customer data for operators. Erasure
//! from the command line, as `DELETE /api/customers/{id}` does it, and the
//! rotation of the key-encryption key (docs/security.md walks through it).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;
use shop_runtime::customer_data::{self, Keyring, Rotation};
use shop_runtime::ports::{Clock, CustomerKeys, SystemClock};

use crate::config::{self, Database, Settings};
use crate::{audit_cmd, secrets};

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Erase a customer's personal data: their data key is destroyed, so
    /// their orders' delivery details read back as erased everywhere.
    /// Idempotent.
    Erase {
        /// The customer id (their token subject).
        customer_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-wrap every customer data key under the current key-encryption
    /// key (SHOP_DATA_KEY), reading the old one from SHOP_DATA_KEY_PREVIOUS.
    /// Order rows are not touched. Exit code 1 when keys remain under a key
    /// this process does not hold.
    Rotate {
        /// Embedded mode: make a new key-encryption key first (the old one
        /// moves to data-key.previous in the data directory).
        #[arg(long)]
        new_key: bool,
    },
}

pub fn erase(command: CustomersCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let CustomersCommand::Erase { customer_id } = command;
    shop_rules::common::check_id("customer_id", &customer_id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Done::Erased(destroyed) = on_keys(settings, Task::Erase(customer_id))? else {
        unreachable!("an erasure ends erased")
    };
    println!(
        "{}",
        match destroyed {
            true => "erased: the customer's data key is destroyed",
            false => "nothing to erase: the customer has no data key (never gave delivery details, or erased already)",
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn keys(command: KeysCommand, settings: &Settings) -> anyhow::Result<ExitCode> {
    let KeysCommand::Rotate { new_key } = command;
    let database = config::database(settings)?;
    if new_key {
        let Database::Embedded(url) = &database else {
            anyhow::bail!(
                "--new-key is for the embedded mode; elsewhere set SHOP_DATA_KEY to the new key and SHOP_DATA_KEY_PREVIOUS to the old one"
            );
        };
        if settings.data_key.as_deref().is_some_and(|k| !k.is_empty()) {
            anyhow::bail!(
                "--new-key makes the data directory's key, but SHOP_DATA_KEY is set: rotate by changing it instead"
            );
        }
        new_embedded_key(&secrets::data_dir(url).join("secrets"))?;
    }
    let keyring = secrets::keyring(settings, &database)?
        .ok_or_else(|| anyhow::anyhow!("SHOP_DATA_KEY is not set: rotation re-wraps keys under it"))?;
    let Done::Rotated(rotation) = on_keys(settings, Task::Rotate(Box::new(keyring)))? else {
        unreachable!("a rotation ends rotated")
    };
    println!(
        "{} data keys re-wrapped; {} under a key-encryption key this process does not hold",
        rotation.rewrapped, rotation.unknown
    );
    Ok(match rotation.unknown {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Moves the embedded key-encryption key to `data-key.previous` and makes
/// a new one, unless a rotation is unfinished (a previous key is there).
fn new_embedded_key(dir: &Path) -> anyhow::Result<()> {
    let (current, previous) = (dir.join("data-key"), dir.join(secrets::PREVIOUS_DATA_KEY));
    if previous.exists() {
        anyhow::bail!(
            "{} exists: a rotation is under way. Run `shop keys rotate` to finish it, restart running shops, run it once more, then delete that file",
            previous.display()
        );
    }
    std::fs::rename(&current, &previous)
        .with_context(|| format!("cannot move {} to {}", current.display(), previous.display()))?;
    // The next keyring made from the settings creates the new one.
    Ok(())
}

/// What the commands do to the customer keys of the configured database.
enum Task {
    Erase(String),
    Rotate(Box<Keyring>),
}

enum Done {
    Erased(bool),
    Rotated(Rotation),
}

/// Runs `task` on the customer keys of the configured database.
fn on_keys(settings: &Settings, task: Task) -> anyhow::Result<Done> {
    let database = config::database(settings)?;
    config::block_on(async {
        match database {
            Database::Embedded(url) => run(&SqliteStore::open(&url).await?, task).await,
            Database::Postgres(url) => run(&PgStore::connect(&PgSettings::new(url)).await?, task).await,
        }
    })
}

async fn run(keys: &impl CustomerKeys, task: Task) -> anyhow::Result<Done> {
    Ok(match task {
        Task::Erase(customer_id) => {
            let operator = audit_cmd::operator(uuid::Uuid::now_v7());
            let record = customer_data::erasure(&operator, &customer_id, SystemClock.now_ms());
            Done::Erased(keys.destroy_key(&customer_id, &record).await?)
        }
        Task::Rotate(keyring) => Done::Rotated(
            customer_data::rotate(keys, &keyring, |done| {
                eprintln!("re-wrapped {} so far", done.rewrapped);
            })
            .await?,
        ),
    })
}
