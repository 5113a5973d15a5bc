#!/usr/bin/env bash
# Which tables and indexes the embedded shop's commits write. Runs the
# shop on a new SQLite file under `shop-load intake`, copies its
# write-ahead log every 1.3 s through the middle of the load, and maps each
# frame's page to its b-tree with SQLite's `dbstat` once the shop has
# stopped (docs/benchmarks.md, "Where the embedded writer's pages go").
#
#   bench/wal-pages.sh                          # 3,000 orders/s for 20 s
#   RATE=10000 DURATION=30s BIN=DIR bench/wal-pages.sh
#
# The log is copied from the 8th to the 15th second of the load, so a
# DURATION under 16 s misses it.
#
# Needs python3 with its sqlite3 module built with dbstat (Debian's is).
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-3000}
DURATION=${DURATION:-20s}
PORT=${PORT:-18090}

. bench/lib.sh
load_settings
release_binaries
scratch

serve "$PORT" "$work/shop.log" SHOP_DATABASE_URL="sqlite://$work/shop.db"
shop=${pids[-1]}
"$bin/shop-load" --target "http://127.0.0.1:$PORT" intake --rate "$RATE" --duration "$DURATION" >"$work/load.log" 2>&1 &
load=$!
pids+=("$load")
# Past the warm-up. The log restarts from its first frame after each
# checkpoint, so one copy holds only the frames since the last one.
sleep 8
for i in 1 2 3 4 5 6; do
  cp "$work/shop.db-wal" "$work/wal-$i"
  sleep 1.3
done
wait "$load" || { cat "$work/load.log"; exit 1; }
grep -E 'accepted/s|confirmations/s|invariants' "$work/load.log"
kill -INT "$shop"
wait "$shop" || true
pids=()

python3 - "$work/shop.db" "$work"/wal-* <<'PY'
import collections, sqlite3, struct, sys

db, copies = sys.argv[1], sys.argv[2:]
owner = dict(sqlite3.connect(db).execute("SELECT pageno, name FROM dbstat"))
# A frame is known by the log's salts and its offset: the copies overlap,
# and each frame counts once.
frames, commits = {}, set()
for path in copies:
    data = open(path, "rb").read()
    page_size, _, salt1, salt2 = struct.unpack(">IIII", data[8:24])
    offset = 32
    while offset + 24 + page_size <= len(data):
        page, size_after, f1, f2 = struct.unpack(">IIII", data[offset:offset + 16])
        if (f1, f2) != (salt1, salt2):
            break  # past this generation's last frame
        key = (salt1, salt2, offset)
        frames[key] = page
        if size_after:
            commits.add(key)
        offset += 24 + page_size
count = collections.Counter(owner.get(page, "(freed since)") for page in frames.values())
total = len(frames)
print(f"{total} frames in {len(commits)} commits: {total / max(len(commits), 1):.1f} pages a commit")
print("| b-tree | frames | share |\n|---|---:|---:|")
for name, n in count.most_common():
    print(f"| {name} | {n} | {100 * n / total:.1f}% |")
PY
