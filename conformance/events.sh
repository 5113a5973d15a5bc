#!/usr/bin/env bash
# The event catalogue as a subscriber outside Rust meets it, against a real
# distributed shop (PostgreSQL, NATS JetStream, Redis on 127.0.0.1, a fresh
# database and namespace):
# - its /asyncapi.json is parsed and validated as AsyncAPI 3.0 by the
#   AsyncAPI parser (@asyncapi/parser, from the npm registry);
# - the Python subscriber of examples/subscriber (nats-py and jsonschema,
#   from PyPI) receives a real order's events, and a cancelled one's in
#   both versions, and validates each against the schema the shop
#   publishes for it.
#
#   conformance/events.sh
#
# Environment: BIN (directory holding the `shop` binary; default
# $CARGO_TARGET_DIR/debug), EVENTS_VENV and PARSER_DIR (where the Python
# and npm packages are installed, kept between runs).
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_PY_VERSION=2.11.0
JSONSCHEMA_VERSION=4.25.1
PARSER_VERSION=3.6.6
bin=${BIN:-${CARGO_TARGET_DIR:-target}/debug}
venv=${EVENTS_VENV:-/var/tmp/shop-events-venv}
parser_dir=${PARSER_DIR:-/var/tmp/shop-asyncapi-parser}
. bench/lib.sh

if ! "$venv/bin/python" -c "import nats, jsonschema" 2>/dev/null; then
  echo "==> installing nats-py and jsonschema into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "nats-py==$NATS_PY_VERSION" "jsonschema==$JSONSCHEMA_VERSION"
fi
if [ ! -d "$parser_dir/node_modules/@asyncapi/parser" ]; then
  echo "==> installing @asyncapi/parser $PARSER_VERSION into $parser_dir"
  mkdir -p "$parser_dir"
  npm install --silent --no-audit --no-fund --prefix "$parser_dir" "@asyncapi/parser@$PARSER_VERSION" >/dev/null
fi

export SHOP_JWT_SECRET=events-conformance-secret-of-32-bytes
export SHOP_DATA_KEY=0000000000000000000000000000000000000000000000000000000000000000
export SHOP_STREAM_MAX_BYTES=off SHOP_LOG=${SHOP_LOG:-warn}

scratch

port=$((20000 + RANDOM % 10000))
base="http://127.0.0.1:$port"
db=$(fresh_db events)
namespace="ev$(date +%s%N | tail -c 9)"
SHOP_DATABASE_URL="$db" SHOP_NAMESPACE="$namespace" SHOP_LISTEN="127.0.0.1:$port" \
  "$bin/shop" serve >"$work/shop.log" 2>&1 &
pids+=($!)
wait_ready "$port" "$work/shop.log"

echo "==> /asyncapi.json against the AsyncAPI 3.0 specification"
curl -fsS "$base/asyncapi.json" >"$work/asyncapi.json"
NODE_PATH="$parser_dir/node_modules" node - "$work/asyncapi.json" <<'JS'
const fs = require("fs");
const { Parser } = require("@asyncapi/parser");
(async () => {
  const text = fs.readFileSync(process.argv[2], "utf8");
  const { document, diagnostics } = await new Parser().parse(text);
  const errors = diagnostics.filter((d) => d.severity === 0);
  for (const d of errors) console.error(`${d.code}: ${d.message} at /${d.path.join("/")}`);
  if (!document || errors.length > 0) process.exit(1);
  const messages = document.allMessages().length;
  console.log(`valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ${messages} messages`);
})().catch((e) => { console.error(e); process.exit(1); });
JS

echo "==> the Python subscriber validates a real order's events"
"$venv/bin/python" examples/subscriber/subscribe.py --shop "$base" --nats nats://127.0.0.1:4222 \
  --expect ProductRegistered,OrderCreated,StockReserved,OrderConfirmed,InsufficientStock,OrderCancelled,OrderCancelledV2 \
  --timeout 60 >"$work/subscriber.log" 2>&1 &
subscriber=$!
pids+=($subscriber)
for _ in $(seq 1 100); do
  grep -q "listening on" "$work/subscriber.log" && break
  sleep 0.1
done
admin=$("$bin/shop" token --sub events-admin --role admin)
customer=$("$bin/shop" token --sub events-customer --role customer)
curl -fsS -X POST "$base/api/products" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"id":"EV-1","name":"Event Mug","unit_price":1200,"currency":"KRW","stock":3}' >/dev/null
# The order side learns of the product through its event: until then, 422.
for attempt in $(seq 1 100); do
  placed=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/api/orders" -H "authorization: Bearer $customer" \
    -H 'content-type: application/json' -d '{"items":[{"product_id":"EV-1","quantity":2}]}')
  [ "$placed" = 202 ] && break
  [ "$attempt" -lt 100 ] || { echo "the order was not accepted ($placed)" >&2; exit 1; }
  sleep 0.1
done
# More than the one unit left (within the purchase limit): cancelled for
# want of stock, in version 1 and 2.
curl -fsS -o /dev/null -X POST "$base/api/orders" -H "authorization: Bearer $customer" \
  -H 'content-type: application/json' -d '{"items":[{"product_id":"EV-1","quantity":5}]}'
status=0
wait "$subscriber" || status=$?
cat "$work/subscriber.log"
if [ "$status" -ne 0 ]; then
  echo "the subscriber failed (status $status); the shop's log:" >&2
  cat "$work/shop.log" >&2
  exit 1
fi
psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE ${db##*/} WITH (FORCE)" >/dev/null 2>&1 || true
echo "events conform"
