//! `shop migrate`: bring the database's schemas up to this binary's version.

use std::process::ExitCode;

use anyhow::{Context, bail};
use shop_adapter_postgres::{PgSettings, PgStore};

pub fn run() -> anyhow::Result<ExitCode> {
    let Some(url) = crate::config::database_url() else {
        bail!("SHOP_DATABASE_URL is not set: there is no database to migrate");
    };
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        bail!("SHOP_DATABASE_URL must be a postgres:// URL for `shop migrate`");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        let store = PgStore::connect(&PgSettings::new(url)).await?;
        store.migrate().await?;
        println!("database migrated");
        Ok(ExitCode::SUCCESS)
    })
}
