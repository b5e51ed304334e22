#!/usr/bin/env bash
# SQL over Oxeye's stores, measured against DuckDB reading the same data as
# Parquet, in one run: LOGS log records (Elasticsearch _bulk) and SPANS
# spans (OTLP/HTTP) written by `oxeye loadgen`, the heads flushed to blocks,
# then loadtest/sql_duckdb.py exports the columns the queries read, runs
# each query on both and prints the medians, their ratio and whether the
# answers agree.
#
#   loadtest/sql_bench.sh                     # 10M log records, 1M spans
#   LOGS=1000000 SPANS=100000 loadtest/sql_bench.sh
#
# Needs the release binary (cargo build --release) and PyPI's duckdb and
# pyarrow (installed here when missing). Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LOGS=${LOGS:-10000000}
SPANS=${SPANS:-1000000}
OXEYE=${OXEYE:-${CARGO_TARGET_DIR:-$HOME/.cache/oxeye-target}/release/oxeye}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000)); es=$((port + 1)); otlp=$((port + 2))
base=http://127.0.0.1:$port
log() { echo "[sql_bench] $*" >&2; }

"$PYTHON" -c 'import duckdb, pyarrow' 2>/dev/null || "$PYTHON" -m pip install -q duckdb pyarrow

OXEYE_SQL__MAX_ROWS=100000000 OXEYE_SQL__MAX_MEMORY=8GiB OXEYE_SQL__TIMEOUT=1h \
OXEYE_LOG__LEVEL=warn \
  "$OXEYE" serve --listen 127.0.0.1:$port --data "$work/data" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:$otlp --elasticsearch 127.0.0.1:$es \
    --postgres 127.0.0.1:0 >"$work/server.log" 2>&1 &
for _ in $(seq 600); do curl -sf "$base/-/ready" >/dev/null && break; sleep 0.5; done

log "writing $LOGS log records and $SPANS spans"
"$OXEYE" loadgen --url "$base" --elasticsearch "http://127.0.0.1:$es" --protocol es-bulk \
  --items "$LOGS" --rate 0 --batch 5000 --concurrency 2 --services 20 --run-id sqlbench --quiet
"$OXEYE" loadgen --url "$base" --otlp-http "http://127.0.0.1:$otlp" --protocol otlp-http-traces \
  --items "$SPANS" --rate 0 --batch 2000 --concurrency 2 --services 20 --run-id sqlbench --quiet
curl -sf -XPOST "$base/api/v1/admin/flush" >/dev/null
log "data on disk: $(du -sh "$work/data" | cut -f1)"
OXEYE_URL=$base OUT=$work "$PYTHON" loadtest/sql_duckdb.py
