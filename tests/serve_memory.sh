#!/usr/bin/env bash
# The planner's memory estimate of every stage against the peak resident memory of the worker
# that serves it: `seifer up` splits mobilenetv2 and resnet50 over nodes too small for fewer than
# three stages, requests flow (enough for every worker's job pool to hold a full input and
# output), then each stage's estimate (up.json memory_bytes) must be within 20% of its worker's
# peak RSS (gateway /metrics seifer_stage_peak_rss_bytes, the worker's VmHWM). Prints the table.
# Skipped (exit 0) under sanitizers: their allocator and shadow memory are not what is modelled.
set -u
SEIFER=$1
T=$(mktemp -d)
fail=0
cleanup() {
  for d in "$T"/run-*; do [ -d "$d" ] && "$SEIFER" down --dir "$d" >/dev/null 2>&1; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
if ldd "$SEIFER" 2>/dev/null | grep -q -e libasan -e libubsan -e libtsan; then
  echo "serve_memory: skipped (sanitizer build: resident memory is not the modelled one)"
  exit 0
fi
TOL=${TOL:-0.20}

# model, node memory (MB) and node count: every node too small for the whole model
cases=("mobilenetv2 30 6" "resnet50 80 6")
printf '%-12s %5s %-6s %12s %12s %8s\n' model stage node "estimate MB" "peak RSS MB" "dev"
for c in "${cases[@]}"; do
  set -- $c
  model=$1 mem=$2 n=$3
  "$SEIFER" zoo "$model" -o "$T/$model.onnx" >/dev/null || { echo "FAIL: zoo $model"; fail=1; continue; }
  {
    printf '{"nodes": [{"name": "gw", "memory_mb": 4096, "gflops": 1}'
    for i in $(seq 1 "$n"); do printf ', {"name": "n%d", "memory_mb": %d, "gflops": 20}' "$i" "$mem"; done
    printf '],\n "default_link": {"mbps": 2000, "rtt_ms": 0.1}, "gateway": "gw"}\n'
  } >"$T/cluster-$model.json"
  run="$T/run-$model"
  if ! "$SEIFER" up --model "$T/$model.onnx" --cluster "$T/cluster-$model.json" --dir "$run" \
       --listen 127.0.0.1:0 --no-emulate --name "$model" >"$T/up-$model.log" 2>&1; then
    echo "FAIL: up $model:"; cat "$T/up-$model.log"; tail -n 5 "$run"/logs/*.log 2>/dev/null; fail=1; continue
  fi
  url=$(jq -r .url "$run/up.json")
  k=$(jq '.stages | length' "$run/up.json")
  if [ "$k" -lt 3 ]; then echo "FAIL: $model: $k stages, the cluster should force >= 3"; fail=1; fi
  # 24 requests: more than the 8 jobs of each worker's pool (each keeps its largest frame)
  if ! "$SEIFER" loadgen --url "$url" --model "$model" --random --binary --count 24 --concurrency 2 \
       >"$T/lg-$model.log" 2>&1; then
    echo "FAIL: loadgen $model:"; tail -n 5 "$T/lg-$model.log"; fail=1
  fi
  sleep 1.5 # a heartbeat (500 ms) carries the workers' peak RSS to the gateway
  curl -s "$url/metrics" >"$T/metrics-$model.txt"
  for i in $(seq 0 $((k - 1))); do
    node=$(jq -r ".stages[$i].node" "$run/up.json")
    est=$(jq -r ".stages[$i].memory_bytes" "$run/up.json")
    rss=$(grep "^seifer_stage_peak_rss_bytes{.*node=\"$node\"" "$T/metrics-$model.txt" | awk '{print $2}' | head -1)
    pid=$(jq -r ".stages[$i].pid" "$run/up.json")
    hwm=$(awk '/^VmHWM:/ {print $2 * 1024}' "/proc/$pid/status" 2>/dev/null)
    [ -n "$rss" ] || rss=$hwm # metrics not there yet: the worker's own VmHWM
    if [ -z "$rss" ] || [ "$rss" = 0 ]; then echo "FAIL: $model stage $((i + 1)): no peak RSS"; fail=1; continue; fi
    # the peak can only have grown since the heartbeat
    [ -n "$hwm" ] && [ "$hwm" -gt "${rss%.*}" ] && rss=$hwm
    line=$(awk -v m="$model" -v s=$((i + 1)) -v nd="$node" -v e="$est" -v r="$rss" -v t="$TOL" 'BEGIN {
      d = (e - r) / r; a = d < 0 ? -d : d
      printf "%-12s %5d %-6s %12.1f %12.1f %+7.1f%%%s", m, s, nd, e / 1e6, r / 1e6, 100 * d, (a > t ? "  FAIL" : "")
      exit (a > t) }')
    ok=$?
    echo "$line"
    if [ $ok -ne 0 ]; then fail=1; fi
  done
  "$SEIFER" down --dir "$run" >/dev/null 2>&1
done
if [ $fail -ne 0 ]; then
  echo "serve_memory: FAILED (estimate off by more than $(awk -v t="$TOL" 'BEGIN{print 100 * t}')% of the peak RSS, or a step failed)"
  exit 1
fi
echo "serve_memory: every stage's estimate within $(awk -v t="$TOL" 'BEGIN{print 100 * t}')% of its worker's peak RSS"
