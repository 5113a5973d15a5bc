//! What the SQL adapters share, written once for PostgreSQL and SQLite.
//!
//! The two adapters keep what differs (connection setup, migrations,
//! the batched writes each database does its own way); what is the same
//! logic in the same SQL lives here, generic over the sqlx database: the
//! outbox as its relay sees it ([`SqlOutbox`]), whose statements each
//! adapter instantiates with its own table names ([`outbox_sql!`]), and the
//! API keys ([`SqlApiKeys`], [`api_keys_sql!`]), the connections busy
//! workers keep between rounds ([`Kept`]), the catalogue look-ups new
//! orders share ([`lookups`]), the audit log's chain
//! ([`AuditStatements`] over each adapter's [`AuditSql`], [`audit_log!`]),
//! and the row mappers and
//! number conversions both stores read with ([`rows`]), and the stores'
//! statements that run alike in both ([`Statements`] over each adapter's
//! [`StoreSql`], and [`inventory_reads!`], the store's reads written once).

#![forbid(unsafe_code)]

mod api_keys;
mod audit;
pub mod kept;
pub mod lookups;
mod outbox;
pub mod rows;
mod statements;

pub use api_keys::{ApiKeySql, SqlApiKeys};
pub use audit::{AuditSql, AuditStatements};
pub use kept::Kept;
pub use outbox::{CommitSignal, Driver, OutboxSignals, OutboxSql, SqlOutbox, now_ms};
pub use statements::{Statements, StoreSql, bind_product};
