//! `shop migrate`: bring the database's schemas up to this binary's version
//! (`shop serve` does the same at start).

use std::process::ExitCode;

use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;

use crate::config::{self, Database};

pub fn run() -> anyhow::Result<ExitCode> {
    let database = config::database()?;
    config::block_on(async {
        match database {
            Database::Embedded(url) => {
                SqliteStore::open(&url).await?;
            }
            Database::Postgres(url) => PgStore::connect(&PgSettings::new(url)).await?.migrate().await?,
        }
        println!("database migrated");
        Ok(ExitCode::SUCCESS)
    })
}
