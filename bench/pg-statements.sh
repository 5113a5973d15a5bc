#!/usr/bin/env bash
# What PostgreSQL does per confirmed order, statement by statement: how
# often each runs, how many rows a call carries, the time spent executing
# and planning it, the buffers it touched and the log records it wrote.
# Runs one distributed shop (every role, PostgreSQL, NATS, Redis) under
# `shop-load intake` and reads pg_stat_statements for the run's database,
# from the moment the shop is ready until the saga has settled
# (docs/benchmarks.md, "PostgreSQL's work by statement").
#
#   bench/pg-statements.sh                          # 4,000 orders/s for 30 s
#   RATE=2000 DURATION=20s BIN=DIR bench/pg-statements.sh
#
# Needs pg_stat_statements loaded by the server, which takes a restart;
# the script says how when it is not. Times are wall time: a statement
# waiting for a lock or for a core counts the wait.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-18096}

. bench/lib.sh
if ! pg_sql postgres "SHOW shared_preload_libraries" | grep -q pg_stat_statements; then
  cat >&2 <<'EOF'
pg_stat_statements is not loaded. Load it, run this again, then undo it:
  psql -h 127.0.0.1 -U postgres -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
  psql -h 127.0.0.1 -U postgres -c "ALTER SYSTEM SET pg_stat_statements.track_planning = on"
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart
  ...
  psql -h 127.0.0.1 -U postgres -c "ALTER SYSTEM RESET shared_preload_libraries" \
    -c "ALTER SYSTEM RESET pg_stat_statements.track_planning"
  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main restart
EOF
  exit 2
fi

load_settings
release_binaries
scratch

db=$(fresh_db statements)
name=${db##*/}
new_namespace s
serve "$PORT" "$work/shop.log" SHOP_DATABASE_URL="$db" SHOP_NAMESPACE="$namespace" SHOP_DB_POOL=32
pg_sql "$name" "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"
dbid=$(pg_sql "$name" "SELECT oid FROM pg_database WHERE datname = current_database()")
# Only this database's statements, and only from now on.
pg_sql "$name" "SELECT pg_stat_statements_reset(0, $dbid, 0)" >/dev/null
intake_until_settled "$PORT"
pg_sql "$name" "CREATE TABLE public.settled_statements AS
  SELECT queryid, query, calls, rows, total_exec_time, total_plan_time, shared_blks_hit, shared_blks_read,
         wal_records, wal_bytes
    FROM pg_stat_statements WHERE dbid = $dbid"
intake_checked

orders=$(confirmed_orders "$name")
echo "$orders confirmed orders; per confirmed order:"
echo
echo "| statement | calls | rows a call | exec µs | plan µs | buffers | WAL records | WAL bytes |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
# A statement is named by its first 70 characters, blanks folded.
pg_sql "$name" "
  SELECT format('| \`%s\` | %s | %s | %s | %s | %s | %s | %s |',
           left(regexp_replace(query, '\s+', ' ', 'g'), 70),
           round(calls::numeric / $orders, 3), round(rows::numeric / greatest(calls, 1), 1),
           round((total_exec_time * 1000 / $orders)::numeric, 1), round((total_plan_time * 1000 / $orders)::numeric, 1),
           round((shared_blks_hit + shared_blks_read)::numeric / $orders, 1),
           round(wal_records::numeric / $orders, 2), round(wal_bytes / $orders))
    FROM public.settled_statements
   WHERE total_exec_time + total_plan_time >= 0.5 * $orders / 1000
   ORDER BY total_exec_time + total_plan_time DESC"
echo
pg_sql "$name" "
  SELECT format('all: %s statements, %s µs executing and %s µs planning, %s buffers, %s WAL records per confirmed order',
           round(sum(calls)::numeric / $orders, 2), round((sum(total_exec_time) * 1000 / $orders)::numeric),
           round((sum(total_plan_time) * 1000 / $orders)::numeric),
           round(sum(shared_blks_hit + shared_blks_read)::numeric / $orders), round(sum(wal_records)::numeric / $orders, 1))
    FROM public.settled_statements"
