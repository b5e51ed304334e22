#!/usr/bin/env bash
# Forwarding, side by side: an edge server takes remote_write and forwards
# everything to a central VictoriaMetrics. Peers in the edge role:
#   prometheus — Prometheus 2.42 with --web.enable-remote-write-receiver and
#                a remote_write section (its queue manager tails its WAL);
#   oxeye      — Oxeye with [[forward.remote_write]] (tails its WAL).
# Each is fed the same data by ../shared/bench/promload.py (SERIES ×
# SAMPLES, time-ordered per series, Prometheus-like requests; timestamps
# just after the edge started, since Prometheus forwards nothing older)
# and measured:
# the time until VictoriaMetrics holds every sample, the edge's CPU seconds
# over ingest + forwarding, samples per edge CPU-second, and its peak RSS.
# Needs a release build, prometheus, victoria-metrics and promload.py's
# Python packages. Everything listens on 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target=${CARGO_TARGET_DIR:-$HOME/.cache/oxeye-target}
bin=${OXEYE_BIN:-$target/release/oxeye}
# Every OXEYE_* variable is configuration to the server.
unset OXEYE_BIN
SERIES=${SERIES:-10000}
SAMPLES=${SAMPLES:-120}
PEERS=${PEERS:-"prometheus oxeye"}
promload=../shared/bench/promload.py
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_seconds() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
rss_mib() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
expected=$((SERIES * SAMPLES))

printf '%-11s %10s %12s %12s %14s %9s\n' peer samples arrived_s edge_cpu_s samples/cpu_s peak_MiB
for peer in $PEERS; do
  vm_port=$(port); edge_port=$(port)
  mkdir -p "$work/$peer"
  victoria-metrics -storageDataPath="$work/$peer/vm" -httpListenAddr=127.0.0.1:$vm_port \
    -search.disableCache -search.latencyOffset=0s -retentionPeriod=1y > "$work/$peer/vm.log" 2>&1 &
  vm_pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$vm_port/health" >/dev/null && break; sleep 0.2; done
  case $peer in
    prometheus)
      cat > "$work/$peer/prometheus.yml" <<EOF
global: {scrape_interval: 1m}
remote_write:
  - url: http://127.0.0.1:$vm_port/api/v1/write
EOF
      prometheus --config.file="$work/$peer/prometheus.yml" --storage.tsdb.path="$work/$peer/tsdb" \
        --web.listen-address=127.0.0.1:$edge_port --web.enable-remote-write-receiver > "$work/$peer/edge.log" 2>&1 &
      ;;
    oxeye)
      OXEYE_SERVER__LISTEN=127.0.0.1:$edge_port OXEYE_SERVER__OTLP_GRPC=127.0.0.1:0 OXEYE_SERVER__OTLP_HTTP=127.0.0.1:0 \
      OXEYE_SERVER__ELASTICSEARCH=127.0.0.1:0 OXEYE_SERVER__POSTGRES=127.0.0.1:0 OXEYE_STORAGE__DATA_DIR="$work/$peer/data" \
      OXEYE_LIMITS__CREATION_GRACE_PERIOD=2h OXEYE_FORWARD__REMOTE_WRITE="[{name = \"central\", url = \"http://127.0.0.1:$vm_port/api/v1/write\"}]" \
        "$bin" > "$work/$peer/edge.log" 2>&1 &
      ;;
  esac
  edge_pid=$!
  for _ in $(seq 150); do curl -sf "127.0.0.1:$edge_port/-/ready" >/dev/null && break; sleep 0.2; done
  # Prometheus' WAL watcher forwards only samples newer than its own start
  # (tsdb/wlog/watcher.go: startTimestamp), so the data lies just after it
  # (Oxeye forwards whatever it accepted; its grace period is raised to
  # take these future timestamps).
  end_time=$(( $(date +%s) + SAMPLES * 15 + 5 ))
  cpu0=$(cpu_seconds $edge_pid)
  started=$(date +%s.%N)
  timeout 900 python3 "$promload" ingest --target "http://127.0.0.1:$edge_port" --write-path /api/v1/write \
    --series "$SERIES" --samples-per-series "$SAMPLES" --interval 15s --concurrency 4 \
    --end-time "$end_time" --out "$work/$peer/ingest" > "$work/$peer/ingest.log" 2>&1
  arrived=""
  last=""; stalled=0
  for _ in $(seq 600); do
    curl -sf "127.0.0.1:$vm_port/internal/force_flush" > /dev/null || true
    got=$(curl -sf "127.0.0.1:$vm_port/api/v1/query" --data-urlencode "query=sum(count_over_time({__name__=~\".+\"}[1d]))" \
      --data-urlencode "time=$((end_time + 1))" | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')
    if [ "$got" -ge "$expected" ]; then arrived=$(python3 -c "import time; print(f'{time.time()-$started:.1f}')"); break; fi
    # Nothing more for 20 s: what arrived is all that will.
    if [ "$got" = "${last:-}" ] && [ "$got" -gt 0 ]; then stalled=$((${stalled:-0} + 1)); else stalled=0; fi
    last=$got
    [ "$stalled" -ge 40 ] && break
    sleep 0.5
  done
  # CPU until everything arrived (or until it stalled, minus the wait).
  cpu=$(python3 -c "print(f'{$(cpu_seconds $edge_pid) - $cpu0:.1f}')")
  printf '%-11s %10s %12s %12s %14s %9s\n' "$peer" "$got/$expected" "${arrived:-never}" "$cpu" \
    "$(python3 -c "print(int($expected / max($cpu, 0.01)))")" "$(rss_mib $edge_pid)"
  kill $edge_pid; wait $edge_pid 2>/dev/null || true
  kill $vm_pid; wait $vm_pid 2>/dev/null || true
done
