//! This adapter's SQL for the statements both databases run alike.

use shop_adapter_sql::{AuditSql, AuditStatements, Statements, StoreSql};
use sqlx::Postgres;

use crate::outbox::DRIVER;

static SQL: StoreSql = StoreSql {
    order: "SELECT state, version FROM orders.orders WHERE order_id = $1",
    order_record: "SELECT o.order_id, o.state, o.version, o.policy::text AS policy, d.key_id, d.sealed
                   FROM orders.orders o LEFT JOIN orders.deliveries d ON d.order_id = o.order_id
                   WHERE o.order_id = $1",
    // An index-only count over the partial index of PENDING orders.
    pending_count: "SELECT count(*) AS count FROM orders.orders WHERE status = 'PENDING'",
    confirmed_before: "SELECT order_id FROM orders.orders WHERE status = 'CONFIRMED' AND confirmed_at < $1
                       ORDER BY confirmed_at LIMIT $2",
    customer_orders: "SELECT state FROM orders.orders
                      WHERE customer_id = $1
                        AND ($2::text IS NULL OR status = $2)
                        AND ($3::bigint IS NULL OR (created_at, order_id) < ($3, $4))
                      ORDER BY created_at DESC, order_id DESC
                      LIMIT $5",
    update_catalogue: "INSERT INTO orders.catalogue (product_id, unit_price, currency, source_version)
                       VALUES ($1, $2, $3, $4)
                       ON CONFLICT (product_id) DO UPDATE
                       SET unit_price = EXCLUDED.unit_price, currency = EXCLUDED.currency,
                           source_version = EXCLUDED.source_version
                       WHERE orders.catalogue.source_version < EXCLUDED.source_version",
    // The movements kept apart before the audit log, then the audit
    // entries that keep them since (0010_movements_in_audit.sql), numbered
    // after the last of those.
    movements: "WITH before_audit AS (SELECT coalesce(max(seq), 0) AS last FROM inventory.movements_before_audit)
                SELECT seq, product_id, kind, quantity, order_id, reason, at, actor, request_id FROM (
                    SELECT seq, product_id, kind, quantity, order_id, reason, at,
                           NULL::text AS actor, NULL::text AS request_id
                      FROM inventory.movements_before_audit WHERE product_id = $1 AND seq > $2
                    UNION ALL
                    SELECT e.seq + b.last, $1::text, substr(e.action, 7), (e.detail::json ->> 'quantity')::bigint,
                           e.detail::json ->> 'order_id', e.detail::json ->> 'reason', e.at, e.actor, e.request_id
                      FROM audit.entries e, before_audit b
                     WHERE e.target = 'product:' || $1 AND e.seq > $2 - b.last
                       AND e.context = 'inventory' AND e.action LIKE 'stock.%'
                ) trail ORDER BY seq LIMIT $3",
    reservation: "SELECT status, lines FROM inventory.reservations WHERE order_id = $1",
    reservations: "SELECT order_id, status, lines FROM inventory.reservations WHERE order_id = ANY($1)",
    products: "SELECT product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                      deducted, version
               FROM inventory.products WHERE product_id = ANY($1) ORDER BY product_id",
    product_page: "SELECT product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                          deducted, version
                   FROM inventory.products
                   WHERE ($1::text IS NULL OR product_id > $1)
                     AND ($2::text IS NULL OR product_id ILIKE $2 ESCAPE '\\' OR name ILIKE $2 ESCAPE '\\')
                   ORDER BY product_id LIMIT $3",
    insert_product: "INSERT INTO inventory.products
                     (product_id, name, unit_price, currency, available, reserved, initial, restocked, adjusted,
                      deducted, version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (product_id) DO NOTHING",
    deliveries: "SELECT order_id, key_id, sealed FROM orders.deliveries WHERE order_id = ANY($1)",
    provenance: "SELECT order_id, policy::text AS policy FROM orders.orders
                 WHERE order_id = ANY($1) AND policy IS NOT NULL",
    customer_key: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders.customer_keys WHERE customer_id = $1",
    insert_key: "INSERT INTO orders.customer_keys (customer_id, key_id, kek_id, wrapped, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (customer_id) DO NOTHING",
    keys: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders.customer_keys WHERE key_id = ANY($1)",
    destroy_key: "DELETE FROM orders.customer_keys WHERE customer_id = $1",
    keys_not_under: "SELECT customer_id, key_id, kek_id, wrapped, created_at FROM orders.customer_keys
                     WHERE kek_id <> $1 AND key_id > $2 ORDER BY key_id LIMIT $3",
    rewrap_key: "UPDATE orders.customer_keys SET kek_id = $2, wrapped = $3 WHERE key_id = $1 AND kek_id = $4",
};

pub(crate) const STATEMENTS: Statements<Postgres> = Statements::new(&SQL, DRIVER);

static AUDIT_SQL: AuditSql = AuditSql {
    // "audit" in ASCII: the key of the advisory lock that orders appends.
    lock: "SELECT pg_advisory_xact_lock(418581342580)",
    head: "SELECT seq, hash FROM audit.heads ORDER BY seq DESC LIMIT 1",
    insert_head: "INSERT INTO audit.heads (seq, hash) VALUES ($1, $2)",
    insert_entries: "INSERT INTO audit.entries (seq, context, at, actor, role, action, target, request_id, detail, prev_hash, hash) ",
    entries: "SELECT seq, context, at, actor, role, action, target, request_id, detail, prev_hash, hash FROM audit.entries
              WHERE ($1::text IS NULL OR actor = $1) AND ($2::text IS NULL OR target = $2) AND ($3::text IS NULL OR action = $3)
                AND seq > $4
              ORDER BY seq LIMIT $5",
};

pub(crate) const AUDIT: AuditStatements<Postgres> = AuditStatements::new(&AUDIT_SQL, DRIVER);
