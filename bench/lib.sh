# Shell helpers shared by bench/run.sh, bench/chaos.sh and the conformance
# scripts (sourced, not run). They expect `$bin` to name the directory
# holding the `shop` binary (`release_binaries` sets it for the benches).

# Waits (up to 30 s) until the shop on 127.0.0.1:$1 is ready; otherwise
# prints its log ($2) and exits.
wait_ready() {
  local port=$1 log=$2
  for _ in $(seq 1 300); do
    if curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "shop on port $port did not become ready; its log:" >&2
  cat "$log" >&2
  exit 1
}

# Creates a PostgreSQL database named $1_<digits>, migrates it with
# `shop migrate` (serving roles do not migrate), and prints its URL. Once
# $work exists (scratch), the database is listed there and dropped when
# the script exits, unless KEEP_DATABASES=1: a run of 120,000 orders leaves
# about half a gigabyte.
fresh_db() { # name prefix, [port: 5432]
  local name="$1_$(date +%s%N | tail -c 10)" port=${2:-5432}
  psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $name" >/dev/null
  [ -z "${work:-}" ] || echo "$port $name" >>"$work/databases"
  SHOP_DATABASE_URL="postgres://postgres@127.0.0.1:$port/$name" "$bin/shop" migrate >/dev/null
  echo "postgres://postgres@127.0.0.1:$port/$name"
}

# A scratch directory ($work) and the list of background processes the
# script starts ($pids): the processes are stopped and the directory
# removed when the script exits, however it exits. Commands in $on_exit
# run first (a server the script stops its own way). The streams of the
# namespaces in $namespaces (see new_namespace) and the databases made by
# fresh_db are deleted once the processes are stopped.
scratch() {
  work=$(mktemp -d)
  pids=()
  on_exit=()
  namespaces=()
  trap 'for step in "${on_exit[@]}"; do $step; done; for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; drop_namespaces; drop_databases; rm -rf "$work"' EXIT
}

# A new namespace for a shop on the local NATS server, in $namespace, named
# $1 and digits; its streams are dropped when the script exits. Each stream
# reserves its retention's bytes on the server, and reservations left
# behind by earlier runs soon leave no room for new streams.
new_namespace() { # prefix
  namespace="$1$(date +%s%N | tail -c 9)"
  namespaces+=("$namespace")
}
drop_namespaces() {
  [ "${#namespaces[@]}" -eq 0 ] || python3 bench/jetstream.py drop "${namespaces[@]}" || true
}
# Drops the databases fresh_db listed in $work (none with KEEP_DATABASES=1).
# A server the script has stopped already takes its databases with it.
drop_databases() {
  [ "${KEEP_DATABASES:-}" != 1 ] && [ -s "$work/databases" ] || return 0
  local port name
  while read -r port name; do
    psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" >/dev/null 2>&1 || true
  done <"$work/databases"
}

# Runs statement $2 in database $1 (a name) on 127.0.0.1: bare values out,
# stopping at the first error.
pg_sql() { psql -h 127.0.0.1 -U postgres -d "$1" -v ON_ERROR_STOP=1 -tAq -c "$2"; }

# Starts `shop-load intake` against the shop on 127.0.0.1:$1 in the
# background (RATE, DURATION, PRODUCTS: 4,000 orders/s for 30 s over 1,000
# products unless set), its pid in $load; returns once the saga has settled
# (shop-load creates the file before its check) or shop-load has ended.
intake_until_settled() { # port
  SHOP_LOAD_SETTLED_FILE="$work/settled" "$bin/shop-load" --target "http://127.0.0.1:$1" intake \
    --rate "${RATE:-4000}" --duration "${DURATION:-30s}" --products "${PRODUCTS:-1000}" >"$work/load.log" 2>&1 &
  load=$!
  pids+=("$load")
  until [ -e "$work/settled" ] || ! kill -0 "$load" 2>/dev/null; do sleep 0.2; done
}
# Waits for that run's check and prints its summary (its whole log, and
# exits, when it failed).
intake_checked() {
  wait "$load" || { cat "$work/load.log"; exit 1; }
  grep -E 'accepted/s|confirmations/s|invariants' "$work/load.log"
}
# The confirmed (or completed) orders in database $1; exits when there is none.
confirmed_orders() { # database name
  local orders
  orders=$(pg_sql "$1" "SELECT count(*) FROM orders.orders WHERE status IN ('CONFIRMED', 'COMPLETED')")
  [ "$orders" -gt 0 ] || { echo "no order was confirmed" >&2; exit 1; }
  echo "$orders"
}

# The settings every load benchmark runs the shop and shop-load with.
load_settings() {
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
  export SHOP_JWT_SECRET=bench-secret-of-at-least-32-bytes-long
  export SHOP_DATA_KEY=0000000000000000000000000000000000000000000000000000000000000000
  # The load is the point: no rate limits in the way.
  export SHOP_RATE_LIMIT_USER=off SHOP_RATE_LIMIT_IP=off SHOP_RULES_CACHE=off SHOP_LOG=${SHOP_LOG:-warn}
}

# Starts `shop serve` on 127.0.0.1:$1, logging to $2, with the environment
# that follows (NAME=value ...); adds it to $pids and waits until ready.
serve() {
  local port=$1 log=$2; shift 2
  env "$@" SHOP_LISTEN="127.0.0.1:$port" "$bin/shop" serve >"$log" 2>&1 &
  pids+=($!)
  wait_ready "$port" "$log"
}

# Sets $bin to the directory of the release `shop` and `shop-load`: $BIN
# when set (binaries built elsewhere: another commit's, for a before/after
# in one session), else built here.
release_binaries() {
  if [ -n "${BIN:-}" ]; then
    bin=$BIN
    return
  fi
  echo "==> building (release)"
  cargo build --release --locked -p shop -p shop-load
  bin="${CARGO_TARGET_DIR:-target}/release"
}
