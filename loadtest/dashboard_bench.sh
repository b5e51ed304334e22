#!/usr/bin/env bash
# Node Exporter Full (../shared/reference/grafana-dashboards) over 24 hours of
# node_exporter data, drawn by Oxeye in headless Chromium: the time until the
# dashboard's first screen is drawn, the time until every panel of every
# row is drawn, and the HTTP requests it took, against the requests Grafana
# makes for the same dashboard (counted from its JSON by the rule in
# Grafana's source: one /api/ds/query per panel in view, one Prometheus
# call per range or instant target, one more per exemplar target, one per
# query variable).
#
# History: this machine's node_exporter scraped once, its series replayed by
# `oxeye loadgen --series-from` every 15 s over 24 h (counters growing,
# gauges swinging). Needs a release build (cargo build --release), node
# with tests/e2e's playwright-core, chromium and prometheus-node-exporter.
# Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-$HOME/.cache/oxeye-target}
bin=${OXEYE_BIN:-$target/release/oxeye}
# Every OXEYE_* variable is configuration to the server.
unset OXEYE_BIN
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(port); node_port=$(port)

OXEYE_SERVER__LISTEN=127.0.0.1:$http OXEYE_SERVER__OTLP_GRPC=127.0.0.1:0 OXEYE_SERVER__OTLP_HTTP=127.0.0.1:0 \
OXEYE_SERVER__ELASTICSEARCH=127.0.0.1:0 OXEYE_SERVER__POSTGRES=127.0.0.1:0 OXEYE_STORAGE__DATA_DIR=$work/data \
  "$bin" > "$work/oxeye.log" 2>&1 &
prometheus-node-exporter --web.listen-address=127.0.0.1:$node_port > /dev/null 2>&1 &
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/-/ready" >/dev/null && curl -sf "127.0.0.1:$node_port/metrics" >/dev/null && break; sleep 0.2; done
curl -sf "127.0.0.1:$node_port/metrics" > "$work/node.prom"
series=$(grep -vc '^#' "$work/node.prom")
echo "node_exporter: $series series; writing 24 h of history every 15 s …"
"$bin" loadgen --url "http://127.0.0.1:$http" --protocol remote_write --backfill 24h --interval 15s \
  --series-from "$work/node.prom" --series-labels "job=node,instance=127.0.0.1:$node_port" --batch 5000 --rate 0 --quiet \
  | tail -8
curl -sf -XPOST "127.0.0.1:$http/api/v1/admin/flush" > /dev/null
"$bin" dashboards import ../shared/reference/grafana-dashboards/node-exporter-full.json --url "http://127.0.0.1:$http"

for run in 1 2 3; do
  BASE_URL=http://127.0.0.1:$http SHOTS=$work/shots FROM=now-24h \
  DASHBOARDS='[{"uid": "rYdddlPWk", "expect_data": 80}]' \
    node tests/e2e/grafana_dashboards.mjs | grep '^DASHBOARD' | sed "s/^DASHBOARD/run $run:/"
done

# Server time per query (of the three runs), from Oxeye's own histogram.
curl -sf "127.0.0.1:$http/metrics" | awk '
  /^oxeye_http_request_duration_seconds_(sum|count)\{.*handler="\/api\/v1\/query_range"/ { if ($1 ~ /_sum/) s += $2; else c += $2 }
  END { if (c) printf "server: %d query_range requests, %.1f ms each on average, %.2f s in all\n", c, 1000 * s / c, s }'

python3 - ../shared/reference/grafana-dashboards/node-exporter-full.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
panels = []
for p in d["panels"]:
    panels.append(p)
    panels.extend(p.get("panels", []))
data = [p for p in panels if p["type"] != "row" and any(not t.get("hide") and t.get("expr") for t in p.get("targets", []))]
calls = 0
for p in data:
    for t in p.get("targets", []):
        if t.get("hide") or not t.get("expr"):
            continue
        instant, rng = t.get("instant") is True, t.get("range") is True
        calls += (1 if rng or not instant else 0) + (1 if instant else 0) + (1 if t.get("exemplar") is True else 0)
qvars = sum(1 for v in d["templating"]["list"] if v["type"] == "query")
print(f"Grafana, every row open: {len(data)} /api/ds/query requests from the browser, "
      f"{calls + qvars} Prometheus calls ({calls} for panels, {qvars} for variables)")
PY
