#!/usr/bin/env bash
# Runs the load benchmarks on this machine and writes their results into
# docs/benchmarks.md (between the load-results markers), with the machine
# and the exact commands.
#
#   bench/run.sh                 # every run, 60 s each (about 40 minutes)
#   DURATION=10s bench/run.sh    # shorter runs, for trying it out
#   RUNS="baselines distributed" bench/run.sh
#   RESULTS=DIR RUNS=scenario bench/run.sh   # add to (or redo in) an earlier run's results
#   BIN=DIR bench/run.sh         # the shop and shop-load binaries in DIR, not built here
#   RUNS=bounded bench/run.sh    # 10 minutes of intake: table and stream sizes every minute
#   RUNS=balancing bench/run.sh  # the gateway's balancing strategies at BALANCE_RATE (4,000/s)
#   RUNS=payment bench/run.sh    # intake at PAYMENT_RATE (2,000/s) paid through `shop payment-sim`, 10% declined
#   RUNS=delivery bench/run.sh   # intake at PAYMENT_RATE without, then with, encrypted delivery details
#   RUNS=tracing bench/run.sh    # intake at HIGH (4,000/s) without, then with, trace export over OTLP
#   RUNS=shadow bench/run.sh     # intake at HIGH without, then with, rule candidates in shadow (every call, default budget)
#   RUNS=policy bench/run.sh     # intake at HIGH without, then with, the purchase-limit policy (Redis counters)
#   RUNS=prices bench/run.sh     # intake at HIGH with every order priced by a query, then with the price cache
#   KEEP_DATABASES=1 bench/run.sh   # keep each run's database (dropped at exit otherwise)
#
# Needs PostgreSQL, NATS JetStream and Redis on 127.0.0.1 (as .ci/run starts
# them). Each run gets a fresh database, namespace and data directory; every
# process the script starts is stopped when it ends, and the streams of its
# namespaces (bench/jetstream.py) and its databases are deleted.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-60s}
RATE=${RATE:-10000}
FLASH_ORDERS=${FLASH_ORDERS:-100000}
FLASH_STOCK=${FLASH_STOCK:-10000}
FLASH_RATE=${FLASH_RATE:-5000}
FLASH_SETTLE=${FLASH_SETTLE:-420s}
SUSTAINED=${SUSTAINED:-2000}
HIGH=${HIGH:-4000}
SEPARATE_RATE=${SEPARATE_RATE:-1000}
BALANCE_RATE=${BALANCE_RATE:-4000}
PAYMENT_RATE=${PAYMENT_RATE:-2000}
USERS=${USERS:-1000}
# Orders spread over this many products (the issue's target: >= 1,000).
PRODUCTS=${PRODUCTS:-1000}
RUNS=${RUNS:-"baselines distributed groupcommit together slow-clients scenario embedded embedded-flash separate"}

. bench/lib.sh
load_settings
release_binaries
results=${RESULTS:-$(mktemp -d)}
mkdir -p "$results"
scratch

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}
load() { # name, then shop-load arguments
  local name=$1; shift
  echo "==> $name"
  last_run=$name
  rm -f "$work/settled" "$work/settled.ticks" "$work/settled.wal"
  SHOP_LOAD_SETTLED_FILE="$work/settled" /usr/bin/time -f '%U %S' -o "$work/load.time" \
    "$bin/shop-load" --name "$name" --json "$results/$name.json" "$@" &
  local timed=$!
  # The CPU time by process when the saga has settled, before the check's
  # reads (the costs below are the orders', not the checker's).
  ( while [ ! -e "$work/settled" ]; do sleep 0.05; done
    cost_snapshot "$(pgrep -P "$timed" -x shop-load)" >"$work/settled.ticks"
    wal_bytes >"$work/settled.wal" ) &
  local watcher=$!
  wait "$timed" || echo "    ($name ended with status $?: see above)"
  # Settled: let the snapshot finish. Never settled: stop waiting for it.
  [ -e "$work/settled" ] || kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
}

# What one confirmed order costs, per run of a shop on PostgreSQL: row
# writes (pg_stat), NATS messages (events numbered by the outboxes) and CPU
# by process. Snapshots before the load and when the saga has settled (or,
# if it never did, after the load, with PostgreSQL's read once the shop has
# stopped, so its backends' time is in).
# Read with builtins: a snapshot taken while the check runs must be quick.
ticks() {
  local f
  { read -r -a f <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
  echo $((f[13] + f[14]))
}
sum_ticks() { # pids
  local total=0 pid
  for pid in "$@"; do total=$((total + $(ticks "$pid"))); done
  echo "$total"
}
pg_ticks() {
  local total; total=$(sum_ticks $(pgrep -x postgres))
  # Backends that exited count in the postmaster's children's time.
  local master f; master=$(pgrep -o -x postgres)
  read -r -a f <"/proc/$master/stat"
  echo $((total + f[15] + f[16]))
}
# The machine's nats-server, or the nodes a run started (`nats_pids`).
nats_ticks() {
  if [ ${#nats_pids[@]} -eq 0 ]; then ticks "$(pgrep -o -x nats-server)"; return; fi
  sum_ticks "${nats_pids[@]}"
}
nats_pids=()
# The shops', PostgreSQL's, NATS's and the load generator's ($1, if any) ticks now.
cost_snapshot() {
  echo "$(sum_ticks "${cost_pids[@]}") $(pg_ticks) $(nats_ticks) $(ticks "${1:-}")"
}
# Bytes PostgreSQL has written to its WAL so far: what the writes cost in
# the log, whatever else the machine is doing (CPU time is noisier).
wal_bytes() {
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
}
cost_begin() { # after the shop is ready: the shops' pids
  cost_pids=("$@")
  read -r cost_shop0 cost_pg0 cost_nats0 _ < <(cost_snapshot)
  cost_wal0=$(wal_bytes)
}
cost_end() { # after the load, before stop_all
  cost_pg1='' cost_load1=0
  if [ -s "$work/settled.ticks" ]; then
    read -r cost_shop1 cost_pg1 cost_nats1 cost_load1 <"$work/settled.ticks"
    cost_wal1=$(cat "$work/settled.wal" 2>/dev/null || wal_bytes)
    echo "    costs: CPU time counted to the moment the saga settled"
    return
  fi
  echo "    costs: CPU time counted to the end of the check (the saga never settled)"
  read -r cost_shop1 _ cost_nats1 _ < <(cost_snapshot)
  cost_wal1=$(wal_bytes)
}
cost_report() { # after stop_all: database URL
  local db=$1 hz; hz=$(getconf CLK_TCK)
  sleep 1
  local pg1=$cost_pg1
  [ -n "$pg1" ] || pg1=$(pg_ticks)
  read -r rows confirmed messages < <(psql -h 127.0.0.1 -U postgres -d "${db##*/}" -tA -F' ' -c "
    SELECT (SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables),
           (SELECT count(*) FROM orders.orders WHERE status IN ('CONFIRMED', 'COMPLETED')),
           (SELECT last_value FROM orders.outbox_seq_seq) + (SELECT last_value FROM inventory.outbox_seq_seq)")
  local tables; tables=$(psql -h 127.0.0.1 -U postgres -d "${db##*/}" -tA -c "
    SELECT string_agg(schemaname || '.' || relname || ' ' || n_tup_ins || '/' || n_tup_upd || '/' || n_tup_del, ', ' ORDER BY relname)
    FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0")
  read -r lu ls <"$work/load.time"
  # The load generator's time to the settled moment, when it was read.
  if [ "${cost_load1:-0}" -gt 0 ]; then lu=$(python3 -c "print($cost_load1 / $hz)") ls=0; fi
  python3 - "$last_run" "$rows" "$confirmed" "$messages" "$hz" \
    $((cost_shop1 - cost_shop0)) $((pg1 - cost_pg0)) $((cost_nats1 - cost_nats0)) "$lu" "$ls" "$tables" \
    $((cost_wal1 - cost_wal0)) >>"$results/costs.md" <<'PY'
import sys
name, rows, confirmed, messages, hz, shop, pg, nats, lu, ls, tables, wal = sys.argv[1:]
n = max(int(confirmed or 0), 1)
us = lambda ticks: f"{float(ticks) / float(hz) * 1e6 / n:,.0f}"
print(f"| {name} | {int(confirmed or 0):,} | {int(rows or 0) / n:.1f} | {int(wal) / n:,.0f} | "
      f"{int(messages or 0) / n:.1f} | {us(shop)} | {us(pg)} | {us(nats)} | {(float(lu) + float(ls)) * 1e6 / n:,.0f} |")
print(f"|  | tables (ins/upd/del): {tables} | | | | | | | |", file=sys.stderr)
PY
}

# One line of sizes at minute $3: live rows and bytes of every table of the
# shop's database $1, and messages and bytes of every stream of namespace $2
# (read from JetStream's API over the NATS protocol).
sizes() {
  local db=$1 ns=$2 minute=$3
  local tables; tables=$(psql -h 127.0.0.1 -U postgres -d "${db##*/}" -tA -c "
    SELECT string_agg(schemaname || '.' || relname || ' ' || n_live_tup || '/' ||
                      pg_size_pretty(pg_total_relation_size(relid)), ', ' ORDER BY schemaname, relname)
    FROM pg_stat_user_tables WHERE schemaname IN ('orders', 'inventory')")
  local streams; streams=$(python3 bench/jetstream.py sizes "$ns")
  echo "$minute: $tables; $streams"
}
# Each run gets a shop of its own, so no run inherits another's backlog.
distributed() { # log name, then more environment
  local log=$1; shift
  current_db=$(fresh_db bench)
  new_namespace b
  current_ns=$namespace
  serve 18080 "$work/$log.log" SHOP_DATABASE_URL="$current_db" SHOP_NAMESPACE="$current_ns" SHOP_DB_POOL=32 "$@"
  cost_begin "${pids[@]}"
}
# The load just run, costed (for shops started by `distributed`).
costed() {
  cost_end
  stop_all
  cost_report "$current_db"
}
# A gateway, 2 order and 2 inventory instances on NATS at $2 (streams in
# $3 copies), loaded through the gateway and costed; run name $1.
four_instances() {
  local name=$1 urls=$2 replicas=$3 first=${#pids[@]}
  current_db=$(fresh_db bench)
  new_namespace c
  local common=(SHOP_DATABASE_URL="$current_db" SHOP_NAMESPACE="$namespace" SHOP_DB_POOL=16
    SHOP_NATS_URL="$urls" SHOP_NATS_REPLICAS="$replicas")
  serve 18081 "$work/$name-inventory-1.log" "${common[@]}" SHOP_ROLE=inventory SHOP_INSTANCE_ID=inventory-1
  serve 18083 "$work/$name-inventory-2.log" "${common[@]}" SHOP_ROLE=inventory SHOP_INSTANCE_ID=inventory-2
  serve 18082 "$work/$name-order-1.log" "${common[@]}" SHOP_ROLE=order SHOP_INSTANCE_ID=order-1
  serve 18084 "$work/$name-order-2.log" "${common[@]}" SHOP_ROLE=order SHOP_INSTANCE_ID=order-2
  serve 18080 "$work/$name-gateway.log" "${common[@]}" SHOP_ROLE=gateway SHOP_DISCOVERY=off \
    SHOP_ORDER_UPSTREAMS=http://127.0.0.1:18082,http://127.0.0.1:18084 \
    SHOP_INVENTORY_UPSTREAMS=http://127.0.0.1:18081,http://127.0.0.1:18083
  cost_begin "${pids[@]:$first}"
  load "$name" --target http://127.0.0.1:18080 intake --rate "$SEPARATE_RATE" --duration "$DURATION" \
    --products "$PRODUCTS" --settle 60s
  # The shops only: NATS nodes this run started stay up for the next.
  cost_end
  for pid in "${pids[@]:$first}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:$first}"; do wait "$pid" 2>/dev/null || true; done
  pids=("${pids[@]:0:$first}")
  cost_report "$current_db"
}
embedded() {
  local dir="$work/embedded-$1"
  mkdir -p "$dir"
  serve 18080 "$work/embedded-$1.log" SHOP_DATABASE_URL="sqlite://$dir/shop.db"
}

for run in $RUNS; do
  case $run in
  baselines)
    "$bin/shop-load" echo-server --listen 127.0.0.1:18099 >"$work/echo.log" 2>&1 &
    pids+=($!)
    sleep 0.5
    load "http-no-io" --target http://127.0.0.1:18099 intake --rate "$RATE" --duration "$DURATION" --no-check
    load "http-no-io-flat-out" --target http://127.0.0.1:18099 intake --rate 0 --duration "$DURATION" --no-check
    stop_all
    load "postgres" baseline-postgres --seconds 10
    load "jetstream" baseline-jetstream --messages 200000
    ;;
  distributed)
    distributed intake
    load "distributed-intake" --target http://127.0.0.1:18080 intake --rate "$RATE" --duration "$DURATION" \
      --products "$PRODUCTS"
    costed
    distributed sustained
    load "distributed-intake-sustained" --target http://127.0.0.1:18080 intake --rate "$SUSTAINED" --duration "$DURATION" \
      --products "$PRODUCTS"
    costed
    distributed high
    load "distributed-intake-$HIGH" --target http://127.0.0.1:18080 intake --rate "$HIGH" --duration "$DURATION" \
      --products "$PRODUCTS"
    costed
    distributed flash
    load "distributed-flash-sale" --target http://127.0.0.1:18080 flash-sale \
      --orders "$FLASH_ORDERS" --stock "$FLASH_STOCK" --rate "$FLASH_RATE" --settle "$FLASH_SETTLE"
    costed
    ;;
  groupcommit)
    # The same flat-out intake with each order in its own transaction, then
    # with group commit: what batching the commits is worth here.
    for setting in off on; do
      distributed "gc-$setting" SHOP_GROUP_COMMIT=$setting
      load "flat-out-group-commit-$setting" --target http://127.0.0.1:18080 intake --rate 0 --workers 128 \
        --duration 20s --settle 5s
      stop_all
    done
    ;;
  together)
    # The saga's consumers handling a batch one message at a time, then the
    # messages of different orders together (one lock, one load, one commit
    # for the reservations; one for the confirmations): the sustained intake
    # and a smaller flash sale, each way.
    for setting in off on; do
      distributed "together-$setting" SHOP_HANDLE_TOGETHER=$setting
      load "sustained-handle-together-$setting" --target http://127.0.0.1:18080 intake --rate "$SUSTAINED" \
        --duration "$DURATION"
      stop_all
      distributed "together-flash-$setting" SHOP_HANDLE_TOGETHER=$setting
      load "flash-sale-20k-handle-together-$setting" --target http://127.0.0.1:18080 flash-sale \
        --orders 20000 --stock 2000 --rate 2000 --settle "$FLASH_SETTLE"
      stop_all
    done
    ;;
  slow-clients)
    # Product reads at 200/s with no slow client, then with 1,000 half-sent
    # requests held open (replaced as the header read timeout cuts them).
    distributed slow
    load "slow-clients" --target http://127.0.0.1:18080 slow-clients --slow "${SLOW:-1000}" --rate 200 \
      --duration "${SLOW_DURATION:-30s}"
    stop_all
    ;;
  relaywake)
    # The outbox relays polling every 10 ms, then woken by the commit
    # (PostgreSQL NOTIFY): the shop's CPU while idle for 20 s, then the
    # sustained intake with its accepted->CONFIRMED latency.
    for setting in off on; do
      distributed "wake-$setting" SHOP_RELAY_WAKE=$setting
      before=$(ticks "${pids[0]}")
      sleep 20
      echo "==> relays woken by the commit $setting: idle shop CPU $(( ($(ticks "${pids[0]}") - before) * 1000 / $(getconf CLK_TCK) / 20 )) ms per second"
      load "sustained-relay-wake-$setting" --target http://127.0.0.1:18080 intake --rate "$SUSTAINED" \
        --duration "$DURATION" --products "$PRODUCTS"
      costed
    done
    ;;
  bounded)
    # Intake at a rate the saga keeps up with for BOUNDED_DURATION (10 min),
    # the outbox kept for BOUNDED_RETENTION (the streams' 2-minute dedup
    # window): every minute the rows and bytes of each table and the
    # messages and bytes of each stream, to show what stays bounded. The
    # streams keep BOUNDED_STREAM_BYTES (256 MiB: above the 200 MB the
    # default intake bound may leave unread, reached within two minutes).
    distributed bounded SHOP_OUTBOX_RETENTION_SECS="${BOUNDED_RETENTION:-120}" \
      SHOP_STREAM_MAX_BYTES="${BOUNDED_STREAM_BYTES:-268435456}"
    (
      for minute in $(seq 0 $(( ${BOUNDED_DURATION_S:-600} / 60 + 2 ))); do
        sizes "$current_db" "$current_ns" "$minute"
        sleep 60
      done
    ) >"$results/bounded.txt" 2>&1 &
    sampler=$!
    load "bounded-state-${BOUNDED_RATE:-$SUSTAINED}-per-s" --target http://127.0.0.1:18080 intake \
      --rate "${BOUNDED_RATE:-$SUSTAINED}" --duration "${BOUNDED_DURATION_S:-600}s" --products "$PRODUCTS" --settle 120s
    sleep 5
    sizes "$current_db" "$current_ns" end >>"$results/bounded.txt"
    kill "$sampler" 2>/dev/null || true
    echo "==> table and stream sizes (minute: rows/bytes per table; messages/bytes per stream)"
    cat "$results/bounded.txt"
    costed
    ;;
  scenario)
    distributed scenario
    rss() { awk '/VmRSS/ {print $2 / 1024}' "/proc/${pids[0]}/status"; }
    rss_start=$(rss)
    load "seed-scenario" --target http://127.0.0.1:18080 scenario --users "$USERS" --ramp 60s \
      --duration "${SCENARIO_DURATION:-120s}" --settle "${SCENARIO_SETTLE:-300s}"
    echo "==> seed scenario: shop RSS $rss_start MiB at the start, $(rss) MiB at the end"
    stop_all
    ;;
  hotsku)
    # One product, 128 closed-loop connections placing one-unit orders.
    distributed hotsku
    load "hot-sku-128-connections" --target http://127.0.0.1:18080 intake --rate 0 --workers 128 \
      --products 1 --duration "$DURATION"
    costed
    ;;
  embedded)
    embedded intake
    load "embedded-intake" --target http://127.0.0.1:18080 intake --rate "$RATE" --duration "$DURATION"
    stop_all
    embedded sustained
    load "embedded-intake-sustained" --target http://127.0.0.1:18080 intake --rate "$SUSTAINED" --duration "$DURATION"
    stop_all
    ;;
  embedded-flash)
    embedded flash
    load "embedded-flash-sale" --target http://127.0.0.1:18080 flash-sale \
      --orders "$FLASH_ORDERS" --stock "$FLASH_STOCK" --rate "$FLASH_RATE" --settle "$FLASH_SETTLE"
    stop_all
    ;;
  separate)
    db=$(fresh_db bench)
    new_namespace p
    common=(SHOP_DATABASE_URL="$db" SHOP_NAMESPACE="$namespace" SHOP_DB_POOL=32)
    serve 18081 "$work/inventory.log" "${common[@]}" SHOP_ROLE=inventory SHOP_INSTANCE_ID=inventory-1
    serve 18082 "$work/order.log" "${common[@]}" SHOP_ROLE=order SHOP_INSTANCE_ID=order-1
    serve 18080 "$work/gateway.log" "${common[@]}" SHOP_ROLE=gateway SHOP_DISCOVERY=off \
      SHOP_ORDER_UPSTREAMS=http://127.0.0.1:18082 SHOP_INVENTORY_UPSTREAMS=http://127.0.0.1:18081
    # Three processes and the load on two cores: a rate they carry.
    load "separate-via-gateway" --target http://127.0.0.1:18080 intake --rate "$SEPARATE_RATE" --duration "$DURATION" --settle 30s
    load "separate-direct-to-order" --target http://127.0.0.1:18082 --products-target http://127.0.0.1:18081 \
      intake --rate "$SEPARATE_RATE" --duration "$DURATION" --settle 30s
    stop_all
    ;;
  cluster)
    # 2 order + 2 inventory instances behind a gateway: first on this
    # machine's single nats-server (streams in 1 copy), then on a 3-node
    # NATS cluster started here on loopback (streams in 3 replicas, the
    # nodes stopped after): what replication costs, and that the saga holds
    # its invariants on it.
    four_instances cluster-r1-via-gateway nats://127.0.0.1:4222 1
    nodes=() nats_pids=()
    for n in 1 2 3; do
      routes=$(for m in 1 2 3; do [ "$m" = "$n" ] || printf 'nats://127.0.0.1:1622%s,' "$m"; done)
      mkdir -p "$work/nats-$n"
      nats-server -a 127.0.0.1 -p "1422$n" -js -sd "$work/nats-$n" -n "bench-node-$n" \
        --cluster_name shopbench --cluster "nats://127.0.0.1:1622$n" --routes "${routes%,}" \
        >"$work/nats-$n.log" 2>&1 &
      pids+=($!)
      nats_pids+=($!)
      nodes+=("nats://127.0.0.1:1422$n")
    done
    # The cluster elects a meta leader before streams can be made.
    for _ in $(seq 1 100); do
      if grep -qi "metadata leader" "$work"/nats-*.log; then break; fi
      sleep 0.2
    done
    four_instances cluster-r3-via-gateway "$(IFS=,; echo "${nodes[*]}")" 3
    stop_all
    nats_pids=()
    ;;
  payment)
    # The same intake without a provider (orders stop at CONFIRMED: the
    # baseline), then with every confirmed order paid through the provider
    # simulator: an intent each, a signed notice back, 10% declined
    # (cancelled, stock released). No order may be left CONFIRMED, and
    # deducted stock must be exactly the completed orders' units.
    distributed payment-off
    load "distributed-$PAYMENT_RATE-no-payment" --target http://127.0.0.1:18080 intake --rate "$PAYMENT_RATE" \
      --duration "$DURATION" --products "$PRODUCTS"
    costed
    export SHOP_PAYMENT_WEBHOOK_SECRET=bench-webhook-secret-of-at-least-32-bytes
    "$bin/shop" payment-sim --listen 127.0.0.1:18090 --webhook http://127.0.0.1:18080/api/payments/webhook \
      --approve 0.9 --latency-ms 50 >"$work/payment-sim.log" 2>&1 &
    pids+=($!)
    distributed payment SHOP_PAYMENT_URL=http://127.0.0.1:18090
    load "distributed-$PAYMENT_RATE-paid" --target http://127.0.0.1:18080 intake --rate "$PAYMENT_RATE" \
      --duration "$DURATION" --products "$PRODUCTS" --paid --settle 300s
    echo "    payment-sim: $(curl -fs http://127.0.0.1:18090/v1/stats || echo unreachable)"
    costed
    ;;
  delivery)
    # The same intake twice: plain orders (the baseline), then orders with
    # delivery details, each sealed under its customer's data key (a key
    # looked up or made per order, AES-256-GCM, a row in orders.deliveries).
    distributed delivery-off
    load "distributed-$PAYMENT_RATE-plain" --target http://127.0.0.1:18080 intake --rate "$PAYMENT_RATE" \
      --duration "$DURATION" --products "$PRODUCTS"
    costed
    distributed delivery-on
    load "distributed-$PAYMENT_RATE-delivery" --target http://127.0.0.1:18080 intake --rate "$PAYMENT_RATE" \
      --duration "$DURATION" --products "$PRODUCTS" --delivery
    costed
    ;;
  tracing)
    # The same intake three times: spans not exported (the baseline), then
    # exported over OTLP/HTTP to a receiver that answers at once (shop-load
    # echo-server, not counted in the shop's CPU): every trace, then one in
    # ten (OTEL_TRACES_SAMPLER). The queue is made large enough that no
    # span is dropped for want of room.
    distributed tracing-off
    load "distributed-$HIGH-untraced" --target http://127.0.0.1:18080 intake --rate "$HIGH" \
      --duration "$DURATION" --products "$PRODUCTS"
    costed
    for sampled in 1.0 0.1; do
      "$bin/shop-load" echo-server --listen 127.0.0.1:18095 >"$work/otlp-receiver.log" 2>&1 &
      receiver=$!
      distributed "tracing-$sampled" OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:18095 \
        OTEL_BSP_MAX_QUEUE_SIZE=65536 OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG="$sampled"
      pids+=("$receiver") # stopped with the shop, after its CPU was counted
      load "distributed-$HIGH-traced-$sampled" --target http://127.0.0.1:18080 intake --rate "$HIGH" \
        --duration "$DURATION" --products "$PRODUCTS"
      costed
    done
    ;;
  shadow)
    # The same intake three times, the purchase-limit policy active in each
    # (a limit no order reaches; its counters in Redis): no candidate (the
    # baseline), then two candidates in shadow published to the running
    # shop, compared on every call (no budget), then as the shop does by
    # default (every call while SHOP_RULES_SHADOW_PER_SECOND, 300 calls a
    # second in all, lasts): the order rules and the policy, each a
    # rebuilt copy (the same decisions under another hash). The order
    # candidate runs after each order decision; the policy candidate before
    # the policies, reading the counters and writing nothing.
    "$bin/shop" rules export "$work/rules" >/dev/null
    for rule in order purchase-limit; do
      python3 -c 'import sys; w = open(sys.argv[1], "rb").read(); open(sys.argv[2], "wb").write(w + bytes([0, 10, 5]) + b"buildcand")' \
        "$work/rules/$rule.wasm" "$work/rules/$rule-candidate.wasm"
    done
    publish() { SHOP_DATABASE_URL="$current_db" SHOP_NAMESPACE="$current_ns" SHOP_RULES_CACHE=off "$bin/shop" rules publish "$@"; }
    for budget in none unbounded default; do
      settings=(SHOP_RULES_CONFIG_PURCHASE_LIMIT_MAX_UNITS_PER_DAY=1000000000)
      if [ "$budget" = unbounded ]; then settings+=(SHOP_RULES_SHADOW_PER_SECOND=16777215); fi
      distributed "shadow-$budget" "${settings[@]}"
      publish "$work/rules/purchase-limit.wasm"
      if [ "$budget" != none ]; then
        publish "$work/rules/order-candidate.wasm" --name order --shadow
        publish "$work/rules/purchase-limit-candidate.wasm" --name purchase-limit --shadow
      fi
      sleep 2
      load "distributed-$HIGH-shadow-$budget" --target http://127.0.0.1:18080 intake --rate "$HIGH" \
        --duration "$DURATION" --products "$PRODUCTS"
      echo "    shadow: $(curl -fs http://127.0.0.1:18080/metrics | grep '^shop_rule_shadow_total' | tr '\n' ' ')"
      costed
    done
    ;;
  policy)
    # The same intake twice: no policy (the baseline), then the
    # purchase-limit policy published and active (a limit no order
    # reaches; two Redis round trips per order inside the rule call).
    "$bin/shop" rules export "$work/rules" >/dev/null
    for with in off on; do
      distributed "policy-$with" SHOP_RULES_CONFIG_PURCHASE_LIMIT_MAX_UNITS_PER_DAY=1000000000
      if [ "$with" = on ]; then
        SHOP_DATABASE_URL="$current_db" SHOP_NAMESPACE="$current_ns" SHOP_RULES_CACHE=off \
          "$bin/shop" rules publish "$work/rules/purchase-limit.wasm" >/dev/null
        sleep 2
      fi
      load "distributed-$HIGH-policy-$with" --target http://127.0.0.1:18080 intake --rate "$HIGH" \
        --duration "$DURATION" --products "$PRODUCTS"
      costed
    done
    ;;
  prices)
    # The same intake twice: every order's prices read from the catalogue
    # copy (grouped with other orders' reads), then reused for a second
    # (SHOP_PRICE_CACHE_MS, the default; PRICE_CACHES lists others).
    for cache in ${PRICE_CACHES:-0 1000}; do
      distributed "prices-$cache" SHOP_PRICE_CACHE_MS=$cache
      load "distributed-$HIGH-price-cache-$cache" --target http://127.0.0.1:18080 intake --rate "$HIGH" \
        --duration "$DURATION" --products "$PRODUCTS"
      costed
    done
    ;;
  balancing)
    # The gateway alone in front of three order upstreams that answer
    # without I/O (shop-load echo-server), BALANCE_RATE orders/s offered
    # through it with each balancing strategy in turn: what choosing costs.
    ups=()
    for port in 18091 18092 18093; do
      "$bin/shop-load" echo-server --listen "127.0.0.1:$port" >"$work/echo-$port.log" 2>&1 &
      pids+=($!)
      ups+=("http://127.0.0.1:$port")
    done
    sleep 0.5
    for strategy in round-robin least-requests weighted hash; do
      serve 18080 "$work/gateway-$strategy.log" SHOP_ROLE=gateway SHOP_DISCOVERY=off SHOP_LB_ORDER="$strategy" \
        SHOP_ORDER_UPSTREAMS="$(IFS=,; echo "${ups[*]}")" SHOP_INVENTORY_UPSTREAMS="${ups[0]}"
      gateway=${pids[-1]}
      before=$(ticks "$gateway")
      load "gateway-$strategy" --target http://127.0.0.1:18080 intake --rate "$BALANCE_RATE" --duration "$DURATION" --no-check
      after=$(ticks "$gateway")
      python3 - "$strategy" "$((after - before))" "$(getconf CLK_TCK)" "$results/gateway-$strategy.json" \
        >>"$results/balancing.md" <<'PY'
import json, sys
strategy, ticks, hz, path = sys.argv[1:]
run = json.load(open(path))
answered = max(int(run.get("sent", 0)), 1)
print(f"| {strategy} | {answered:,} | {float(ticks) / float(hz) * 1e6 / answered:,.1f} |")
PY
      kill "$gateway"
      wait "$gateway" 2>/dev/null || true
      unset 'pids[-1]'
    done
    stop_all
    ;;
  *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done

echo "==> writing docs/benchmarks.md"
{
  echo "<!-- load:begin (written by bench/run.sh; edit outside the markers) -->"
  echo "Run of $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD) on $(nproc) cores"
  echo "($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB,"
  echo "$(. /etc/os-release && echo "$PRETTY_NAME"), PostgreSQL $(psql -h 127.0.0.1 -U postgres -tAc 'SHOW server_version' | cut -d' ' -f1),"
  echo "nats-server $(nats-server --version 2>/dev/null | awk '{print $NF}' || echo '?'); the load generator on the same cores."
  echo "\`DURATION=$DURATION RATE=$RATE SUSTAINED=$SUSTAINED HIGH=$HIGH FLASH_ORDERS=$FLASH_ORDERS FLASH_STOCK=$FLASH_STOCK FLASH_RATE=$FLASH_RATE bench/run.sh\`, runs: $RUNS."
  echo
  "$bin/shop-load" report "$results"
  if [ -s "$results/costs.md" ]; then
    echo
    echo "Per confirmed order (runs on PostgreSQL): row writes from pg_stat_user_tables"
    echo "(inserts + updates + deletes), bytes of PostgreSQL's WAL (the whole server's),"
    echo "NATS messages (events the outboxes numbered), and CPU time by process from the"
    echo "start of the load until the saga settled (the check's reads after it are not counted)."
    echo
    echo "| run | confirmed | row writes | WAL bytes | NATS messages | shop CPU µs | postgres CPU µs | nats-server CPU µs | load generator CPU µs |"
    echo "|---|---|---|---|---|---|---|---|---|"
    cat "$results/costs.md"
  fi
  if [ -s "$results/balancing.md" ]; then
    echo
    echo "The gateway's CPU per request, by balancing strategy (upstreams without I/O):"
    echo
    echo "| strategy | requests sent | gateway CPU µs per request |"
    echo "|---|---|---|"
    cat "$results/balancing.md"
  fi
  echo "<!-- load:end -->"
} >"$work/section.md"
python3 - "$work/section.md" <<'EOF'
import re, sys
section = open(sys.argv[1]).read()
path = "docs/benchmarks.md"
text = open(path).read()
pattern = re.compile(r"<!-- load:begin.*?<!-- load:end -->\n?", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
EOF
echo "results in docs/benchmarks.md; raw JSON in $results"
