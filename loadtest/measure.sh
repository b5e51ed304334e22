#!/usr/bin/env bash
# The results cache, measured: the Locust dashboard scenario (DashboardUser:
# 12 panels refreshed every 15 s) against one data directory holding
# SERIES series × HISTORY of 15 s samples, still scraped every 15 s while
# the dashboards refresh, with the cache off, in-process and in Redis, one
# after the other in the same run. Each mode starts with a WARMUP of the
# same dashboards (not measured: the first refresh of a range is evaluated
# whole in every mode). Prints p50/p95 panel latency, server CPU per
# dashboard refresh, and whether the answers of the three modes are
# identical.
#
#   loadtest/measure.sh                     # 10k series × 24h, 10 dashboards, 3 min per mode
#   SERIES=1000 HISTORY=6h DURATION=1m loadtest/measure.sh
#
# Needs the release binary (cargo build --release), redis-server and Locust
# (scripts/test installs both). Everything listens on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SERIES=${SERIES:-10000}
HISTORY=${HISTORY:-24h}
USERS=${USERS:-10}
DURATION=${DURATION:-3m}
WARMUP=${WARMUP:-20s}
RANGE=${RANGE:-6h}
OXEYE=${OXEYE:-${CARGO_TARGET_DIR:-$HOME/.cache/oxeye-target}/release/oxeye}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000)); es=$((port + 1)); redis_port=$((port + 2))
base=http://127.0.0.1:$port

log() { echo "[measure] $*" >&2; }
start() { # env assignments for the server
  env "$@" "$OXEYE" serve --listen 127.0.0.1:$port --data "$work/data" \
    --otlp-grpc 127.0.0.1:0 --otlp-http 127.0.0.1:0 --elasticsearch 127.0.0.1:$es --postgres 127.0.0.1:0 \
    >"$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 600); do curl -sf "$base/-/ready" >/dev/null && return; sleep 0.5; done
  log "server did not start"; cat "$work/server.log"; exit 1
}
stop() { kill "$server"; wait "$server" || true; }
cpu() { curl -s "$base/metrics" | awk '$1 == "process_cpu_seconds_total" {print $2}'; }

log "writing $SERIES series × $HISTORY of 15 s samples"
start OXEYE_CACHE__ENABLED=false
"$OXEYE" loadgen --url "$base" --protocol remote_write --backfill "$HISTORY" --interval 15s \
  --series "$SERIES" --rate 0 --batch 10000 --run-id measure --quiet
stop

# Fixed past ranges for the answer comparison (the panels' own ranges end now).
now=$(date +%s)
fixed_end=$((now - 3600 - now % 60)); fixed_start=$((fixed_end - 6 * 3600))
answers() { # file
  "$PYTHON" - "$base" "$fixed_start" "$fixed_end" >"$1" <<'EOF'
import sys, urllib.parse, urllib.request
sys.path.insert(0, "loadtest")
import importlib.util
spec = importlib.util.spec_from_file_location("lf", "loadtest/locustfile.py")
lf = importlib.util.module_from_spec(spec); spec.loader.exec_module(lf)
base, start, end = sys.argv[1], sys.argv[2], sys.argv[3]
for expr in lf.PANELS:
    data = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 60}).encode()
    for _ in range(2):  # the second answer comes from the cache when there is one
        body = urllib.request.urlopen(base + "/api/v1/query_range", data).read().decode()
    print(body)
EOF
}

declare -A p50 p95 per_refresh
for mode in off memory redis; do
  case $mode in
    off) start OXEYE_CACHE__ENABLED=false ;;
    memory) start OXEYE_CACHE__ENABLED=true ;;
    redis)
      redis-server --port $redis_port --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null &
      redis=$!
      sleep 1
      start OXEYE_CACHE__ENABLED=true OXEYE_CACHE__REDIS_URL=redis://127.0.0.1:$redis_port/0 ;;
  esac
  answers "$work/answers-$mode.txt"
  # The same series go on being scraped every 15 s meanwhile.
  "$OXEYE" loadgen --url "$base" --protocol remote_write --series "$SERIES" \
    --rate "$(awk -v s="$SERIES" 'BEGIN {print s / 15}')" --duration 1h --batch 1000 \
    --run-id measure --quiet >/dev/null 2>&1 &
  live=$!
  log "$mode: warm-up ($WARMUP), then $USERS dashboards for $DURATION"
  OXEYE_LOCUST_RANGE=$RANGE "$PYTHON" -m locust -f loadtest/locustfile.py --headless \
    -u "$USERS" -r "$USERS" -t "$WARMUP" --host "$base" --only-summary DashboardUser \
    >/dev/null 2>&1 || true
  before=$(cpu)
  OXEYE_LOCUST_RANGE=$RANGE "$PYTHON" -m locust -f loadtest/locustfile.py --headless \
    -u "$USERS" -r "$USERS" -t "$DURATION" --host "$base" --csv "$work/$mode" \
    --only-summary DashboardUser >/dev/null 2>"$work/locust-$mode.log" || {
      log "locust reported failures ($mode)"; tail -30 "$work/locust-$mode.log"; exit 1; }
  after=$(cpu)
  kill "$live" 2>/dev/null || true
  # Locust's columns: 3 requests, 4 failures, 12 the 50th and 17 the 95th percentile.
  read -r requests failures q50 q95 < <(awk -F, '{gsub(/"/, "")} $2 == "Aggregated" {print $3, $4, $12, $17}' \
    "$work/${mode}_stats.csv")
  refreshes=$((requests / 12))
  p50[$mode]=$q50; p95[$mode]=$q95
  per_refresh[$mode]=$(awk -v a="$before" -v b="$after" -v r="$refreshes" 'BEGIN {printf "%.4f", (b - a) / r}')
  log "$mode: $requests panel queries ($refreshes refreshes, $failures failed), p50 ${q50} ms, p95 ${q95} ms, ${per_refresh[$mode]} CPU-s per refresh"
  if [ "$mode" = redis ]; then
    curl -s "$base/metrics" | grep -E '^oxeye_results_cache_(lookups|errors)_total' >&2 || true
  fi
  stop
  [ "$mode" = redis ] && kill "$redis"
done

same() { cmp -s "$work/answers-off.txt" "$work/answers-$1.txt" && echo yes || echo NO; }
printf '\n%-8s %10s %10s %16s %14s %10s\n' mode "p50 ms" "p95 ms" "CPU-s/refresh" "CPU vs off" identical
for mode in off memory redis; do
  printf '%-8s %10s %10s %16s %14s %10s\n' "$mode" "${p50[$mode]}" "${p95[$mode]}" "${per_refresh[$mode]}" \
    "$(awk -v o="${per_refresh[off]}" -v m="${per_refresh[$mode]}" 'BEGIN {printf "%.1fx less", o / (m > 0 ? m : 1e-9)}')" \
    "$( [ $mode = off ] && echo - || same $mode)"
done
