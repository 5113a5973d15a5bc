//! `shop migrate`: bring the database's schemas up to this binary's version.
//!
//! On PostgreSQL this is its own step, run once per release with a role
//! that may change the schemas (`SHOP_MIGRATION_DATABASE_URL`, else
//! `SHOP_DATABASE_URL`); serving roles connect as roles that may only read
//! and write their context's tables (deploy/postgres-roles.sql) and check
//! that this has run. The embedded mode migrates itself at start.

use std::process::ExitCode;

use shop_adapter_postgres::{PgSettings, PgStore};
use shop_adapter_sqlite::SqliteStore;

use crate::config::{self, Database, Settings};

pub fn run(settings: &Settings) -> anyhow::Result<ExitCode> {
    let database = config::database(settings)?;
    config::block_on(async {
        match database {
            Database::Embedded(url) => {
                SqliteStore::open(&url).await?;
            }
            Database::Postgres(url) => {
                let url = config::migration_url(settings, url);
                PgStore::connect(&PgSettings::new(url)).await?.migrate().await?;
            }
        }
        println!("database migrated");
        Ok(ExitCode::SUCCESS)
    })
}
