#!/usr/bin/env bash
# The rule author's round trip, as docs/plugins.md tells it: scaffold a
# policy crate, build it for wasm32-wasip2, run its table of cases, publish
# it in shadow to a running shop (embedded mode, in a scratch directory),
# watch the shop run it, promote it, and see it refuse an order.
#
#   rules/author-kit.sh        # SHOP=<shop binary> (default: target/debug/shop)
#
# Run by .ci/run. Needs the wasm32-wasip2 target and the crates registry
# (the scaffold depends on wit-bindgen).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$repo/target}
shop=${SHOP:-$target/debug/shop}
work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
say() { printf -- '-- %s\n' "$*"; }

say "shop rules new my-limit"
"$shop" rules new my-limit >/dev/null
say "cargo build --release --target wasm32-wasip2"
(cd my-limit && CARGO_TARGET_DIR="$target/author-kit" cargo build --release --target wasm32-wasip2 -q)
wasm="$target/author-kit/wasm32-wasip2/release/my_limit.wasm"
say "shop rules test"
"$shop" rules test "$wasm" my-limit/cases.yaml

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
say "a shop (embedded) on $base"
"$shop" serve --listen "127.0.0.1:$port" >serve.log 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fs "$base/health/live" >/dev/null 2>&1 && break
  sleep 0.1
done
admin=$("$shop" token --sub author --role admin | tail -1)
customer=$("$shop" token --sub carol --role customer | tail -1)
curl -fs -H "Authorization: Bearer $admin" -H 'content-type: application/json' "$base/api/products" \
  -d '{"id":"SKU-K","name":"Kit","unit_price":500,"currency":"KRW","stock":1000}' >/dev/null

# Waits until GET /api/rules says my-limit runs in mode $1 (at most 3 s).
runs_as() {
  for _ in $(seq 1 60); do
    if curl -fs -H "Authorization: Bearer $admin" "$base/api/rules" | python3 -c '
import json, sys
rules = json.load(sys.stdin)["rules"]
sys.exit(0 if any(r["name"] == "my-limit" and r["mode"] == sys.argv[1] for r in rules) else 1)' "$1"; then
      return 0
    fi
    sleep 0.05
  done
  echo "my-limit does not run as $1:" >&2
  curl -s -H "Authorization: Bearer $admin" "$base/api/rules" >&2
  return 1
}
order() {
  curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $customer" -H 'content-type: application/json' \
    "$base/api/orders" -d "{\"items\":[{\"product_id\":\"SKU-K\",\"quantity\":$1}]}"
}

say "shop rules publish --shadow"
"$shop" rules publish "$wasm" --name my-limit --shadow
runs_as shadow
status=$(order 101)
[ "$status" = 202 ] || { echo "in shadow, an order it would refuse is taken: got $status" >&2; exit 1; }
# The shop keeps disagreements in the background: give it up to 3 s.
kept() {
  for _ in $(seq 1 60); do
    if "$shop" rules diff my-limit | grep -q 'my-limit v1'; then return 0; fi
    sleep 0.05
  done
  return 1
}
kept || { echo "the disagreement is not kept" >&2; exit 1; }

say "shop rules promote my-limit"
"$shop" rules promote my-limit
runs_as active
status=$(order 101)
[ "$status" = 422 ] || { echo "promoted, it refuses: got $status" >&2; exit 1; }
say "author kit round trip: ok"
