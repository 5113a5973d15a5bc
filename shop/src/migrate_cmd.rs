//! `shop migrate`: bring the database's schemas up to this binary's version
//! (`shop serve` does the same at start).

use std::process::ExitCode;

use anyhow::{Context, bail};
use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;

use crate::config::{EMBEDDED_DATABASE, database_url};

pub fn run() -> anyhow::Result<ExitCode> {
    let url = database_url().unwrap_or_else(|| EMBEDDED_DATABASE.to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        if url.starts_with("sqlite:") {
            SqliteStore::open(&url).await?;
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let store = PgStore::connect(&PgSettings::new(url)).await?;
            store.migrate().await?;
        } else {
            bail!("SHOP_DATABASE_URL must be a postgres:// or sqlite:// URL");
        }
        println!("database migrated");
        Ok(ExitCode::SUCCESS)
    })
}
