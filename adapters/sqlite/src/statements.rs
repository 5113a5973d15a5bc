//! This adapter's SQL for the statements both databases run alike.

use shop_adapter_sql::{AuditSql, AuditStatements, Statements, StoreSql};
use sqlx::Sqlite;

use crate::outbox::DRIVER;

static SQL: StoreSql = StoreSql {
    order: "SELECT state, version FROM orders_orders WHERE order_id = $1",
    order_record: "SELECT o.order_id, o.state, o.version, o.policy, d.key_id, d.sealed
                   FROM orders_orders o LEFT JOIN orders_deliveries d ON d.order_id = o.order_id
                   WHERE o.order_id = $1",
    pending_count: "SELECT count(*) AS count FROM orders_orders WHERE status = 'PENDING'",
    confirmed_before: "SELECT order_id FROM orders_orders WHERE status = 'CONFIRMED' AND confirmed_at < $1
                       ORDER BY confirmed_at LIMIT $2",
    customer_orders: "SELECT state FROM orders_orders
                      WHERE customer_id = $1
                        AND ($2 IS NULL OR status = $2)
                        AND ($3 IS NULL OR (created_at, order_id) < ($3, $4))
                      ORDER BY created_at DESC, order_id DESC
                      LIMIT $5",
    update_catalogue: "INSERT INTO orders_catalogue (product_id, unit_price, currency, source_version)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (product_id) DO UPDATE
                       SET unit_price = excluded.unit_price, currency = excluded.currency,
                           source_version = excluded.source_version
                       WHERE orders_catalogue.source_version < excluded.source_version",
    // The movements kept apart before the audit log, then the audit
    // entries that keep them since (0011_movements_in_audit.sql), numbered
    // after the last of those.
    movements: "WITH before_audit AS (SELECT coalesce(max(seq), 0) AS last FROM inventory_movements_before_audit)
                SELECT seq, product_id, kind, quantity, order_id, reason, at, actor, request_id FROM (
                    SELECT seq, product_id, kind, quantity, order_id, reason, at, NULL AS actor, NULL AS request_id
                      FROM inventory_movements_before_audit WHERE product_id = $1 AND seq > $2
                    UNION ALL
                    SELECT e.seq + b.last, $1, substr(e.action, 7), e.detail ->> '$.quantity',
                           e.detail ->> '$.order_id', e.detail ->> '$.reason', e.at, e.actor, e.request_id
                      FROM audit_entries e, before_audit b
                     WHERE e.target = 'product:' || $1 AND e.seq > $2 - b.last
                       AND e.context = 'inventory' AND e.action LIKE 'stock.%'
                ) ORDER BY seq LIMIT $3",
    reservation: "SELECT status, lines FROM inventory_reservations WHERE order_id = $1",
    reservations: "SELECT order_id, status, lines FROM inventory_reservations
                   WHERE order_id IN (SELECT value FROM json_each($1))",
    products: "SELECT product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                      deducted, version
               FROM inventory_products WHERE product_id IN (SELECT value FROM json_each($1)) ORDER BY product_id",
    // SQLite's LIKE ignores ASCII case.
    product_page: "SELECT product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                          deducted, version
                   FROM inventory_products
                   WHERE ($1 IS NULL OR product_id > $1)
                     AND ($2 IS NULL OR product_id LIKE $2 ESCAPE '\\' OR name LIKE $2 ESCAPE '\\')
                   ORDER BY product_id LIMIT $3",
    insert_product: "INSERT INTO inventory_products
                     (product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                      deducted, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (product_id) DO NOTHING",
    deliveries: "SELECT order_id, key_id, sealed FROM orders_deliveries WHERE order_id IN (SELECT value FROM json_each($1))",
    provenance: "SELECT order_id, policy FROM orders_orders
                 WHERE order_id IN (SELECT value FROM json_each($1)) AND policy IS NOT NULL",
    customer_key: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders_customer_keys WHERE customer_id = $1",
    insert_key: "INSERT INTO orders_customer_keys (customer_id, key_id, kek_id, wrapped, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id) DO NOTHING",
    keys: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders_customer_keys WHERE key_id IN (SELECT value FROM json_each($1))",
    destroy_key: "DELETE FROM orders_customer_keys WHERE customer_id = $1",
    keys_not_under: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders_customer_keys
                     WHERE kek_id <> $1 AND key_id > $2 ORDER BY key_id LIMIT $3",
    rewrap_key: "UPDATE orders_customer_keys SET kek_id = $2, wrapped = $3 WHERE key_id = $1 AND kek_id = $4",
};

pub(crate) const STATEMENTS: Statements<Sqlite> = Statements::new(&SQL, DRIVER);

static AUDIT_SQL: AuditSql = AuditSql {
    // A write transaction (BEGIN IMMEDIATE) holds the database already.
    lock: "SELECT 1",
    head: "SELECT seq, hash FROM audit_heads ORDER BY seq DESC LIMIT 1",
    insert_head: "INSERT INTO audit_heads (seq, hash) VALUES ($1, $2)",
    // FAIL, not SQLite's default ABORT: a statement of many rows that may
    // abort journals every page it changes first (`WRITER_TEMP_STORE` in
    // lib.rs), and one that may only fail needs no journal. Any error rolls
    // the whole transaction back anyway. At 3,000 orders/s the shop
    // journals a fifth fewer pages (docs/benchmarks.md, "Statement journals").
    insert_entries: "INSERT OR FAIL INTO audit_entries (seq, context, at, actor, role, action, target, request_id, detail, prev_hash, hash) ",
    entries:
        "SELECT seq, context, at, actor, role, action, target, request_id, detail, prev_hash, hash FROM audit_entries
              WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR target = $2) AND ($3 IS NULL OR action = $3)
                AND seq > $4
              ORDER BY seq LIMIT $5",
};

pub(crate) const AUDIT: AuditStatements<Sqlite> = AuditStatements::new(&AUDIT_SQL, DRIVER);

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::AUDIT_SQL;
    use crate::SqliteStore;

    /// SQLite journals a statement of many rows when it may abort: when a
    /// constraint is checked with ABORT (`Halt` with P2 = 2) or it calls a
    /// function, which may raise an error. The entries' insert does neither:
    /// its constraints FAIL (P2 = 3), and its values are bound.
    #[tokio::test]
    async fn the_audit_insert_needs_no_statement_journal() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = SqliteStore::open_in(dir.path()).await.expect("opened and migrated");
        let row = "(?, 'inventory', 1, 'a', 'customer', 'stock.reserve', 'p', 'r', '{}', '', 'h')";
        let explain = format!("EXPLAIN {}VALUES {row}, {row}", AUDIT_SQL.insert_entries);
        let program: Vec<(String, i64, i64)> = sqlx::query(sqlx::AssertSqlSafe(explain))
            .bind(1_i64)
            .bind(2_i64)
            .fetch_all(store.pool())
            .await
            .expect("explained")
            .iter()
            .map(|op| (op.get("opcode"), op.get("p1"), op.get("p2")))
            .collect();
        let checks: Vec<_> = program
            .iter()
            .filter(|(opcode, p1, _)| opcode.starts_with("Halt") && *p1 != 0)
            .collect();
        assert!(!checks.is_empty(), "the program checks its constraints: {program:?}");
        assert!(
            checks.iter().all(|(_, _, p2)| *p2 == 3),
            "a constraint that aborts: {checks:?}"
        );
        let calls: Vec<_> = program
            .iter()
            .filter(|(opcode, _, _)| opcode.ends_with("Func") || opcode == "Function")
            .collect();
        assert!(calls.is_empty(), "a function call: {calls:?}");
    }
}
