#!/usr/bin/env bash
# Databuddy POST /batch measured from outside with wrk: a gateway on a fresh SQLite file, then for
# each body shape `wrk -c CONNS -d SECONDS` posting the same 50-event body over and over, printing
# events/s (requests/s x 50). The shapes, built from the seed's own example:
#   seed    {"type":"track","payload":{...}} page views without eventId (new events every request)
#   bare    the tracker's unwrapped items, without eventId (new events every request)
#   withid  the seed's shape with eventId (stored once: every later request is all duplicates)
# Usage: scripts/wrk/databuddy-batch.sh [SECONDS] [CONNS] [RUNS]   (needs wrk: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_=${1:-10}; CONNS=${2:-16}; RUNS=${3:-1}
PY=${PY:-.venv/bin/python}
WORK=$(mktemp -d)
PORT=${PORT:-18181}
SITE=550e8400-e29b-41d4-a716-446655440000
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$PY" - "$WORK" <<'PY'
import json, sys
seed = json.load(open("tests/adapters/databuddy/golden/batch_seed_two_tracks_without_event_id/request.json"))["body"]
items = [dict(seed[i % 2], payload=dict(seed[i % 2]["payload"], timestamp=1709251205000 + i)) for i in range(50)]
shapes = {
    "seed": items,
    "bare": [{"type": "track", **item["payload"]} for item in items],
    "withid": [dict(item, payload=dict(item["payload"], eventId=f"evt-{i}")) for i, item in enumerate(items)],
}
for name, body in shapes.items():
    open(f"{sys.argv[1]}/{name}.json", "w").write(json.dumps(body))
PY
for run in $(seq "$RUNS"); do
  rm -f "$WORK"/gw.db*
  URL="sqlite:///$WORK/gw.db"
  "$PY" -m gateway db upgrade --database-url "$URL" >/dev/null 2>&1
  "$PY" -m gateway projects create wrk --id "$SITE" --database-url "$URL" >/dev/null
  EVENTGW_ACCESS_LOG=false "$PY" -m gateway serve --database-url "$URL" \
    --http "127.0.0.1:$PORT" --grpc "127.0.0.1:$((PORT + 1))" >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  for shape in seed bare withid; do
    rps=$(BODY="$WORK/$shape.json" wrk -t2 -c"$CONNS" -d"${SECONDS_}s" -s scripts/wrk/post.lua \
      "http://127.0.0.1:$PORT/batch?client_id=$SITE" | awk '/Requests\/sec/ {print $2}')
    echo "run $run  $shape  $(awk -v r="$rps" 'BEGIN {printf "%.0f events/s (%.1f requests/s)", r * 50, r}')"
  done
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
done
