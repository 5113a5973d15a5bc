#!/usr/bin/env bash
# Where PostgreSQL's write-ahead log goes, per confirmed order: bytes by
# table or index, and by kind of record. Runs one distributed shop (every
# role, PostgreSQL, NATS, Redis) under `shop-load intake`, holds the log
# with a replication slot from the moment the shop is ready until the saga
# has settled, then reads it back with pg_walinspect (PostgreSQL 15's
# contrib) in the run's own database (docs/benchmarks.md, "Where
# PostgreSQL's log goes").
#
#   bench/wal-tables.sh                          # 4,000 orders/s for 30 s
#   RATE=2000 DURATION=20s BIN=DIR bench/wal-tables.sh
#
# The slot keeps every segment of the run on disk (about 6 KB an order)
# and is dropped when the script ends, however it ends. The whole server's
# log is read, so run it alone on the server.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18095}
SLOT=shop_wal_tables_$$

. bench/lib.sh
load_settings
release_binaries
scratch

drop_slot() { pg_sql postgres "SELECT pg_drop_replication_slot('$SLOT')" >/dev/null 2>&1 || true; }
on_exit+=(drop_slot)

db=$(fresh_db wal)
new_namespace w
serve "$PORT" "$work/shop.log" SHOP_DATABASE_URL="$db" SHOP_NAMESPACE="$namespace" SHOP_DB_POOL=32
pg_sql postgres "SELECT pg_create_physical_replication_slot('$SLOT', true)" >/dev/null
start=$(pg_sql postgres "SELECT pg_current_wal_lsn()")
intake_until_settled "$PORT"
end=$(pg_sql postgres "SELECT pg_current_wal_lsn()")
intake_checked

name=${db##*/}
pg_sql "$name" "CREATE EXTENSION IF NOT EXISTS pg_walinspect"
orders=$(confirmed_orders "$name")
echo "$orders confirmed orders; log from $start to $end: $(pg_sql postgres "SELECT pg_size_pretty(pg_wal_lsn_diff('$end', '$start'))")"
echo
echo "| table or index | records | bytes per order | of which full-page images |"
echo "|---|---:|---:|---:|"
# A record names its blocks as "rel <tablespace>/<database>/<filenode>";
# the first block names the relation. Records of no relation (commits,
# the sequences' own) are "(none)".
pg_sql "$name" "
  WITH r AS (
    SELECT record_length, fpi_length, substring(block_ref FROM 'rel \d+/\d+/(\d+)')::oid AS node
      FROM pg_get_wal_records_info('$start', '$end')),
  named AS (
    SELECT coalesce(n.nspname || '.' || c.relname, r.node::text, '(none)') AS rel, count(*) AS records,
           sum(record_length) AS bytes, sum(fpi_length) AS fpi
      FROM r LEFT JOIN pg_class c ON c.relfilenode = r.node
             LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
     GROUP BY 1)
  SELECT format('| %s | %s | %s | %s |', rel, records, round(bytes::numeric / $orders), round(fpi::numeric / $orders))
    FROM named WHERE bytes >= $orders ORDER BY bytes DESC"
echo
echo "| record | count | bytes per order |"
echo "|---|---:|---:|"
pg_sql "$name" "
  SELECT format('| %s | %s | %s |', \"resource_manager/record_type\", count, round(combined_size::numeric / $orders))
    FROM pg_get_wal_stats('$start', '$end', true)
   WHERE combined_size >= $orders ORDER BY combined_size DESC"
echo
echo "total: $(pg_sql postgres "SELECT round(pg_wal_lsn_diff('$end', '$start') / $orders)") bytes per confirmed order"
