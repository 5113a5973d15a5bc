#!/usr/bin/env bash
# The chaos runner: order intake through a gateway in front of 2 order and
# 2 inventory instances while a seeded schedule of faults runs, then the
# load generator's invariant check (every accepted order found once, none
# oversold, stock conserved).
#
#   SEEDS="1 2 3" DURATION=60 RATE=300 bench/chaos.sh
#   BIN=DIR bench/chaos.sh        # release binaries built elsewhere
#
# Faults, one every 2 to 6 s (the seed decides which, whom and when):
# - SIGKILL of an order or inventory instance, restarted 1 to 3 s later;
# - SIGKILL of the NATS server (a private one, its own store), restarted
#   1 to 3 s later;
# - SIGKILL of Redis (a private one), restarted 1 to 3 s later;
# - SIGKILL of PostgreSQL (a private cluster: the postmaster and every
#   backend at once, as a crash), restarted 1 to 3 s later with crash
#   recovery;
# - latency of 50 to 250 ms on every answer of the link from the roles to
#   PostgreSQL, or to NATS, for 1 to 3 s (`shop-load link`, a proxy the
#   roles reach those servers through);
# and throughout, inventory-2 runs under a CPU quota of half a core and
# 256 MiB of memory (cgroup v1 or v2, where this machine lets root make
# one; the table says when it could not). The private PostgreSQL runs as
# the `postgres` user, from the machine's PostgreSQL binaries.
#
# Each seed appends a row to $RESULTS/chaos.md: faults injected, orders
# accepted, availability (requests answered other than 5xx or timeout),
# the longest restart-to-ready, and the invariant check.
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-1}
DURATION=${DURATION:-60}
RATE=${RATE:-300}
SETTLE=${SETTLE:-120s}
export SHOP_JWT_SECRET=chaos-secret-of-at-least-32-bytes-long
export SHOP_DATA_KEY=0000000000000000000000000000000000000000000000000000000000000000
export SHOP_RATE_LIMIT_USER=off SHOP_RATE_LIMIT_IP=off SHOP_RULES_CACHE=off SHOP_LOG=${SHOP_LOG:-warn}
export SHOP_STREAM_MAX_BYTES=off

. bench/lib.sh
release_binaries
results=${RESULTS:-$(mktemp -d)}
mkdir -p "$results"
scratch

nats_port=14322 redis_port=16390 pg_port=15432
# The links the roles reach PostgreSQL and NATS through, and their latency.
pg_link=15434 nats_link=14323
gateway_port=18180
declare -A port=([order-1]=18181 [order-2]=18182 [inventory-1]=18183 [inventory-2]=18184)
declare -A pid=()

# A cgroup holding inventory-2 to half a core and 256 MiB, when root may make one.
limited=none
limit() { # pid
  if [ -d /sys/fs/cgroup/cpu ] && mkdir -p /sys/fs/cgroup/cpu/shop-chaos /sys/fs/cgroup/memory/shop-chaos 2>/dev/null; then
    echo 50000 >/sys/fs/cgroup/cpu/shop-chaos/cpu.cfs_quota_us
    echo $((256 * 1024 * 1024)) >/sys/fs/cgroup/memory/shop-chaos/memory.limit_in_bytes
    echo "$1" >/sys/fs/cgroup/cpu/shop-chaos/cgroup.procs
    echo "$1" >/sys/fs/cgroup/memory/shop-chaos/cgroup.procs
    limited="cgroup v1: 0.5 CPU, 256 MiB"
  elif [ -f /sys/fs/cgroup/cgroup.controllers ] && mkdir -p /sys/fs/cgroup/shop-chaos 2>/dev/null; then
    echo "50000 100000" >/sys/fs/cgroup/shop-chaos/cpu.max
    echo $((256 * 1024 * 1024)) >/sys/fs/cgroup/shop-chaos/memory.max
    echo "$1" >/sys/fs/cgroup/shop-chaos/cgroup.procs
    limited="cgroup v2: 0.5 CPU, 256 MiB"
  fi
}

for link in pg nats; do
  echo 0 >"$work/$link.latency"
done
# The private cluster, made once and crashed as the seeds say.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
chmod 755 "$work"
mkdir -p "$work/pg"
chown postgres "$work/pg"
as_postgres() { runuser -u postgres -- "$@"; }
as_postgres "$pg_bin/initdb" -D "$work/pg/data" -U postgres --auth=trust >"$work/pg/initdb.log"
start_postgres() {
  as_postgres "$pg_bin/pg_ctl" -D "$work/pg/data" -w -t 60 -l "$work/pg/server.log" \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
  pg_pid=$(head -1 "$work/pg/data/postmaster.pid")
}
crash_postgres() { # the postmaster and its backends, all at once
  pkill -KILL -P "$pg_pid" 2>/dev/null || true
  kill -KILL "$pg_pid" 2>/dev/null || true
  while kill -0 "$pg_pid" 2>/dev/null; do sleep 0.05; done
}
stop_postgres() { as_postgres "$pg_bin/pg_ctl" -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true; }
start_postgres
on_exit+=(stop_postgres)
"$bin/shop-load" link --listen "127.0.0.1:$pg_link" --to "127.0.0.1:$pg_port" --control "$work/pg.latency" \
  2>>"$work/links.log" &
pids+=($!)
"$bin/shop-load" link --listen "127.0.0.1:$nats_link" --to "127.0.0.1:$nats_port" --control "$work/nats.latency" \
  2>>"$work/links.log" &
pids+=($!)
# What outlives a seed: the links.
lasting=("${pids[@]}")

start_nats() {
  nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >>"$work/nats.log" 2>&1 &
  pids+=($!)
  nats_pid=$!
  for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && return 0; sleep 0.05; done
}
start_redis() {
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >>"$work/redis.log" 2>&1 &
  pids+=($!)
  redis_pid=$!
}
start_role() { # name
  local name=$1 role=${1%-*}
  env SHOP_DATABASE_URL="${db/:$pg_port\//:$pg_link/}" SHOP_NAMESPACE="$namespace" SHOP_DB_POOL=8 SHOP_ROLE="$role" \
    SHOP_INSTANCE_ID="$name" SHOP_NATS_URL="nats://127.0.0.1:$nats_link" SHOP_REDIS_URL="redis://127.0.0.1:$redis_port" \
    SHOP_LISTEN="127.0.0.1:${port[$name]}" "$bin/shop" serve >>"$work/$name.log" 2>&1 &
  pids+=($!)
  pid[$name]=$!
  if [ "$name" = inventory-2 ]; then limit "$!"; fi
}
# Seconds until the instance answers /health/live (it serves, degraded or not).
until_live() { # name
  local started=$SECONDS
  for _ in $(seq 1 600); do
    curl -fs "http://127.0.0.1:${port[$1]}/health/live" >/dev/null 2>&1 && { echo $((SECONDS - started)); return 0; }
    sleep 0.1
  done
  echo "$1 did not come back; its log:" >&2
  tail -20 "$work/$1.log" >&2
  return 1
}

for seed in $SEEDS; do
  echo "==> seed $seed: $RATE orders/s for ${DURATION}s under faults"
  RANDOM=$seed
  rm -rf "$work/nats"
  db=$(fresh_db chaos "$pg_port")
  namespace="x$seed$(date +%s%N | tail -c 7)"
  start_nats
  start_redis
  for name in inventory-1 inventory-2 order-1 order-2; do start_role "$name"; done
  for name in inventory-1 inventory-2 order-1 order-2; do until_live "$name" >/dev/null; done
  env SHOP_LISTEN="127.0.0.1:$gateway_port" SHOP_ROLE=gateway SHOP_DISCOVERY=off SHOP_INSTANCE_ID=gateway \
    SHOP_ORDER_UPSTREAMS="http://127.0.0.1:${port[order-1]},http://127.0.0.1:${port[order-2]}" \
    SHOP_INVENTORY_UPSTREAMS="http://127.0.0.1:${port[inventory-1]},http://127.0.0.1:${port[inventory-2]}" \
    SHOP_HEALTH_EVERY_MS=500 SHOP_BREAKER_OPEN_MS=2000 "$bin/shop" serve >"$work/gateway.log" 2>&1 &
  pids+=($!)
  gateway_pid=$!
  wait_ready "$gateway_port" "$work/gateway.log"

  "$bin/shop-load" --name "chaos-$seed" --json "$results/chaos-$seed.json" --target "http://127.0.0.1:$gateway_port" \
    intake --rate "$RATE" --duration "${DURATION}s" --products 100 --users 200 --settle "$SETTLE" --timeout 10s \
    >"$work/load-$seed.log" 2>&1 &
  load=$!
  faults=() slowest=0
  sleep 3
  deadline=$((SECONDS + DURATION - 8))
  while [ "$SECONDS" -lt "$deadline" ]; do
    sleep $((2 + RANDOM % 5))
    down=$((1 + RANDOM % 3))
    case $((RANDOM % 9)) in
      0 | 1) victim=order-$((1 + RANDOM % 2)) ;;
      2 | 3) victim=inventory-$((1 + RANDOM % 2)) ;;
      4) victim=nats ;;
      5) victim=redis ;;
      6) victim=slow-postgres ;;
      7) victim=slow-nats ;;
      8) victim=postgres ;;
    esac
    faults+=("$victim")
    case $victim in
      slow-*)
        lag=$((50 + RANDOM % 201))
        echo "    $victim: ${lag} ms on each answer for ${down}s"
        link=${victim#slow-} link=${link/postgres/pg}
        echo "$lag" >"$work/$link.latency"
        sleep "$down"
        echo 0 >"$work/$link.latency"
        ;;
      *) echo "    kill -9 $victim, back in ${down}s" ;;
    esac
    case $victim in
      slow-*) ;;
      nats) kill -9 "$nats_pid" 2>/dev/null || true; sleep "$down"; start_nats ;;
      redis) kill -9 "$redis_pid" 2>/dev/null || true; sleep "$down"; start_redis ;;
      postgres) crash_postgres; sleep "$down"; start_postgres ;;
      *)
        kill -9 "${pid[$victim]}" 2>/dev/null || true
        wait "${pid[$victim]}" 2>/dev/null || true
        sleep "$down"
        start_role "$victim"
        took=$(until_live "$victim")
        [ "$took" -gt "$slowest" ] && slowest=$took
        ;;
    esac
  done
  status=0
  wait "$load" || status=$?
  tail -25 "$work/load-$seed.log"
  python3 - "$seed" "$results/chaos-$seed.json" "$status" "$slowest" "$limited" "${faults[*]}" >>"$results/chaos.md" <<'PY'
import collections, json, sys
seed, path, status, slowest, limited, faults = sys.argv[1:]
run = json.load(open(path))
ok = sum(k.get("ok", 0) for k in run.get("kinds", []))
# Errors by answer ("503 unavailable", "timeout", ...): a 4xx is an answer.
errors = [(what, n) for k in run.get("kinds", []) for what, n in (k.get("errors") or {}).items()]
ok += sum(n for what, n in errors if what.startswith("4"))
failed = sum(n for what, n in errors if not what.startswith("4"))
inv = run.get("invariants") or {}
counts = collections.Counter(faults.split())
injected = ", ".join(f"{n}x {f}" for f, n in sorted(counts.items()))
check = "green" if status == "0" and not inv.get("violations") else "; ".join(inv.get("violations", [])) or f"load exited {status}"
print(f"| {seed} | {injected} | {limited} | {inv.get('accepted', 0):,} | {100.0 * ok / max(ok + failed, 1):.2f}% | "
      f"{slowest} s | {inv.get('lost', '?')} | {inv.get('duplicated', '?')} | {inv.get('created_unanswered', '?')} | "
      f"{inv.get('confirmed', 0):,} / {inv.get('cancelled', 0):,} | "
      f"{inv.get('confirm_p99_ms', 0) / 1000:.1f} s / {inv.get('confirm_max_ms', 0) / 1000:.1f} s | {check} |")
PY
  tail -1 "$results/chaos.md"
  # The shop first, while NATS is up for its last publishes, then the
  # servers. Not a bare `wait`: the links live on to the next seed.
  for name in "${!pid[@]}"; do kill "${pid[$name]}" 2>/dev/null || true; done
  kill "$gateway_pid" 2>/dev/null || true
  wait "${pid[@]}" "$gateway_pid" 2>/dev/null || true
  kill "$nats_pid" "$redis_pid" 2>/dev/null || true
  wait "$nats_pid" "$redis_pid" 2>/dev/null || true
  pids=("${lasting[@]}")
  psql -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "DROP DATABASE ${db##*/} WITH (FORCE)" >/dev/null 2>&1 || true
  [ "$status" -eq 0 ] || { echo "seed $seed: the invariant check failed" >&2; exit 1; }
done
rmdir /sys/fs/cgroup/cpu/shop-chaos /sys/fs/cgroup/memory/shop-chaos /sys/fs/cgroup/shop-chaos 2>/dev/null || true
echo "results in $results/chaos.md"
