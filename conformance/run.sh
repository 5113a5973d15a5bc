#!/usr/bin/env bash
# Property-based conformance of the live HTTP API against its own OpenAPI
# document (/openapi.json), in both modes: schemathesis 4 with every check
# and every phase (examples, coverage, fuzzing, stateful), as an admin over
# every operation and as a customer over the order operations.
#
#   conformance/run.sh [embedded|distributed ...]     (default: both)
#
# Environment: BIN (directory holding the `shop` binary; default
# $CARGO_TARGET_DIR/debug), EXAMPLES (hypothesis examples per operation and
# phase, default 300), MIN_CASES (fails below this many cases per mode,
# default 5000), VENV (where schemathesis is installed, kept between runs).
# Distributed mode uses PostgreSQL (:5432), NATS (:4222) and Redis (:6379)
# on 127.0.0.1 with a fresh database and namespace. Exits non-zero on any
# failure, or when a mode ran fewer cases than MIN_CASES.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
bin=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
examples=${EXAMPLES:-300}
min_cases=${MIN_CASES:-5000}
venv=${VENV:-/var/tmp/shop-conformance-venv}
. bench/lib.sh
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(embedded distributed)

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

export SHOP_JWT_SECRET=conformance-secret-of-at-least-32-bytes
export SHOP_DATA_KEY=0000000000000000000000000000000000000000000000000000000000000000
# The fuzzer sends thousands of requests as two callers: no rate limit in
# the way (the limiter has its own tests).
export SHOP_RATE_LIMIT_USER=off SHOP_RATE_LIMIT_IP=off SHOP_LOG=${SHOP_LOG:-warn}
# Each run's streams are left behind on the shared server: none may reserve
# space there (JetStream reserves a stream's byte limit when it creates it).
export SHOP_STREAM_MAX_BYTES=off
# The payment webhook is part of the API, so the shops under test take
# notices. Their provider is never there: an intent asked for is retried
# in the background, which the fuzzer does not see.
export SHOP_PAYMENT_URL=http://127.0.0.1:9 SHOP_PAYMENT_WEBHOOK_SECRET=conformance-webhook-secret-0123456789abcdef

work=$(mktemp -d)
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  drop_databases
  rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 10000))
base="http://127.0.0.1:$port"

serve() {
  env "$@" SHOP_LISTEN="127.0.0.1:$port" "$bin/shop" serve >"$work/shop.log" 2>&1 &
  pid=$!
  wait_ready "$port" "$work/shop.log"
}

# One schemathesis run; prints its summary and adds its cases to $cases.
fuzz() {
  local who=$1; shift
  local token out
  token=$("$bin/shop" token --sub "conformance-$who" --role "$who")
  out="$work/$mode-$who.txt"
  echo "==> $mode: schemathesis as $who ($*)"
  local status=0
  # use_after_free: the API's one DELETE, /api/customers/{id}, erases a
  # customer's personal data, not the customer (conformance/schemathesis.toml
  # says why), and the stateful phase ignores the per-operation switch.
  "$venv/bin/schemathesis" --config-file conformance/schemathesis.toml run "$base/openapi.json" \
    --checks all --exclude-checks use_after_free --max-examples "$examples" --seed "${SEED:-$RANDOM}" --no-color \
    -H "Authorization: Bearer $token" "$@" >"$out" 2>&1 || status=$?
  sed -n '/SUMMARY/,$p' "$out"
  if [ "$status" -ne 0 ]; then
    echo "schemathesis found failures ($mode, $who); the whole report:" >&2
    cat "$out" >&2
    exit 1
  fi
  local ran
  ran=$(grep -oE '[0-9]+ generated' "$out" | tail -1 | cut -d' ' -f1)
  cases=$((cases + ${ran:-0}))
}

for mode in "${modes[@]}"; do
  case $mode in
    embedded)
      serve SHOP_DATABASE_URL="sqlite://$work/shop.db"
      ;;
    distributed)
      url=$(fresh_db conformance)
      serve SHOP_DATABASE_URL="$url" SHOP_NATS_URL=nats://127.0.0.1:4222 SHOP_REDIS_URL=redis://127.0.0.1:6379 \
        SHOP_NAMESPACE="conf$(date +%s%N | tail -c 9)"
      ;;
    *)
      echo "unknown mode $mode (embedded or distributed)" >&2
      exit 2
      ;;
  esac
  # The documents' example product, so the examples phase reaches intake.
  admin=$("$bin/shop" token --sub conformance-admin --role admin)
  curl -fsS -o /dev/null -X POST "$base/api/products" -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' \
    -d '{"id":"SKU-1","name":"Mug","unit_price":12000,"currency":"KRW","stock":1000000}'
  cases=0
  fuzz admin
  fuzz customer --include-tag orders
  echo "==> $mode: $cases cases, 0 failures"
  if [ "$cases" -lt "$min_cases" ]; then
    echo "$mode ran $cases cases, fewer than $min_cases" >&2
    exit 1
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
done
