#!/usr/bin/env bash
# Failover and rollout times of `seifer controller` (local driver, emulated links and compute,
# default heartbeat settings: 500 ms, 3 misses), under a steady load from `seifer loadgen`:
#  1. recovery over N kill -9 of a stage's worker (the stage position rotates): time from the
#     kill to the first answer of the new pipeline (the gateway's
#     seifer_pipeline_first_answer_timestamp_seconds), the controller's own detect-to-switch
#     time, requests failed;
#  2. the same for H hangs (SIGSTOP: detected by missed heartbeats only);
#  3. rollout over R new versions pushed with `seifer deploy`: time from the command to the
#     version serving, the controller's validation-to-switch time, requests failed.
# Prints a markdown table (paste into bench/RESULTS.md).
#
# usage: bench/failover.sh [--build DIR] [--models a,b] [--kills N] [--hangs H] [--rollouts R]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
MODELS=tiny-inception,mobilenetv2
KILLS=20
HANGS=5
ROLLOUTS=5
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --kills) KILLS=$2; shift 2 ;;
    --hangs) HANGS=$2; shift 2 ;;
    --rollouts) ROLLOUTS=$2; shift 2 ;;
    *) echo "usage: bench/failover.sh [--build DIR] [--models a,b] [--kills N] [--hangs H] [--rollouts R]" >&2; exit 2 ;;
  esac
done
SEIFER=$(readlink -f "$BUILD/seifer")
NPYTOOL=$(readlink -f "$BUILD/tests/npytool")
W=$(mktemp -d)
RUN=$W/run
trap '"$SEIFER" down --dir "$RUN" >/dev/null 2>&1 || true; rm -rf "$W"' EXIT

# Six SEIFER-like nodes, so that spares exist beside the planned pipeline.
cat >"$W/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 10}, {"name": "n1", "memory_mb": 64, "gflops": 10},
           {"name": "n2", "memory_mb": 64, "gflops": 10}, {"name": "n3", "memory_mb": 64, "gflops": 10},
           {"name": "n4", "memory_mb": 64, "gflops": 10}, {"name": "n5", "memory_mb": 64, "gflops": 10}],
 "default_link": {"mbps": 100, "rtt_ms": 1}, "gateway": "gw"}
JSON

wait_until() { local end=$((SECONDS + $1)); while ! eval "$2" 2>/dev/null; do [ $SECONDS -ge $end ] && return 1; sleep 0.05; done; }
state() { jq -r "$1" "$RUN/controller.json" 2>/dev/null; }
count() { state "[.records[] | select(.kind == \"$1\")] | length"; }
first_answer() { curl -s "$URL/metrics" | awk -v p="pipeline=\"$1\"" '/^seifer_pipeline_first_answer_timestamp_seconds/ && index($1, p) {print $2}'; }
# stats FILE -> "p50 / p90 / max" of the numbers in FILE (seconds, printed in ms)
stats() { sort -g "$1" | awk '{v[NR] = $1} END {if (!NR) {print "-"; exit}
  i50 = int(0.5 * (NR - 1) + 1); i90 = int(0.9 * (NR - 1) + 1)
  printf "%.0f / %.0f / %.0f", v[i50] * 1000, v[i90] * 1000, v[NR] * 1000}'; }
sum_failed() { local s=0; for f in "$@"; do s=$((s + $(jq .failed "$f"))); done; echo $s; }
sum_requests() { local s=0; for f in "$@"; do s=$((s + $(jq .requests "$f"))); done; echo $s; }

rows=()
for model in ${MODELS//,/ }; do
  echo "bench/failover: $model" >&2
  "$SEIFER" down --dir "$RUN" >/dev/null 2>&1 || true
  rm -rf "$RUN" "$W"/lg-*.json "$W"/*.txt
  "$SEIFER" zoo "$model" -o "$W/v1.onnx" >/dev/null
  "$SEIFER" zoo "$model" --seed 2 -o "$W/v2.onnx" >/dev/null
  shape=$("$SEIFER" inspect "$W/v1.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
  "$NPYTOOL" image "$W/in.npy" "$shape"
  mkdir -p "$RUN/logs"
  "$SEIFER" controller --cluster "$W/cluster.json" --model "$W/v1.onnx" --name m --dir "$RUN" \
    --listen 127.0.0.1:0 --restart-ms 500 >>"$RUN/logs/controller.log" 2>&1 &
  wait_until 120 '[ "$(state .status)" = serving ]' || { echo "controller did not start" >&2; tail "$RUN/logs/controller.log" >&2; exit 1; }
  URL=$(state .url)
  nst=$(state '.pipeline.stages | length')
  tp=$(state '.pipeline.predicted_throughput_per_s')
  conc=$((2 * nst + 2))
  # one round: load for D s, fault at 1 s, wait for the failover record and the load
  round() { # KIND(kill|hang) I
    local kind=$1 i=$2 stage victim vpid n0 t pipe first
    stage=$((i % nst))
    victim=$(state ".pipeline.stages[$stage].node")
    vpid=$(state ".nodes[] | select(.name == \"$victim\") | .pid")
    n0=$(count failover)
    "$SEIFER" loadgen --url "$URL" --model m --input "$W/in.npy" --duration 4 --concurrency $conc --binary --json \
      >"$W/lg-$kind-$i.json" 2>/dev/null &
    local lg=$!
    sleep 1
    t=$(date +%s.%N)
    if [ "$kind" = kill ]; then kill -9 "$vpid"; else kill -STOP "$vpid"; fi
    wait_until 30 "[ \$(count failover) -gt $n0 ]" || { echo "no failover after $kind $i" >&2; exit 1; }
    wait $lg
    [ "$kind" = hang ] && kill -CONT "$vpid"
    pipe=$(state '[.records[] | select(.kind == "failover")] | last | .pipeline')
    first=$(first_answer "$pipe")
    awk -v a="$t" -v b="$first" 'BEGIN {print b - a}' >>"$W/$kind-recovery.txt"
    state '[.records[] | select(.kind == "failover")] | last | .seconds' >>"$W/$kind-switch.txt"
    state '[.records[] | select(.kind == "failover")] | last | .stages_shipped' >>"$W/$kind-shipped.txt"
    wait_until 30 "[ \"\$(state '.nodes[] | select(.name == \"$victim\") | .up')\" = true ]" || true
  }
  for i in $(seq 1 "$KILLS"); do round kill "$i"; done
  for i in $(seq 1 "$HANGS"); do round hang "$i"; done
  # rollouts: versions 2.. alternate between two weight sets
  for i in $(seq 1 "$ROLLOUTS"); do
    v=$((i + 1))
    "$SEIFER" loadgen --url "$URL" --model m --input "$W/in.npy" --duration 3 --concurrency $conc --binary --json \
      >"$W/lg-roll-$i.json" 2>/dev/null &
    lg=$!
    sleep 0.5
    t0=$(date +%s.%N)
    "$SEIFER" deploy --model "$W/v$((i % 2 + 1)).onnx" --version "$v" --dir "$RUN" --timeout 120 >/dev/null
    awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}' >>"$W/roll-deploy.txt"
    state '[.records[] | select(.kind == "rollout")] | last | .seconds' >>"$W/roll-switch.txt"
    state '[.records[] | select(.kind == "rollout")] | last | .mode' >>"$W/roll-mode.txt"
    wait $lg
  done
  kf=$(sum_failed "$W"/lg-kill-*.json); kr=$(sum_requests "$W"/lg-kill-*.json)
  hf=$(sum_failed "$W"/lg-hang-*.json); hr=$(sum_requests "$W"/lg-hang-*.json)
  rf=$(sum_failed "$W"/lg-roll-*.json); rr=$(sum_requests "$W"/lg-roll-*.json)
  modes=$(sort "$W/roll-mode.txt" | uniq -c | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
  shipped=$(awk '{s += $1} END {printf "%.1f", NR ? s / NR : 0}' "$W/kill-shipped.txt")
  rows+=("| $model | $nst stages, $(printf %.0f "$tp") req/s | $KILLS kill -9 | $(stats "$W/kill-recovery.txt") | $(stats "$W/kill-switch.txt") | $shipped | $kf of $kr |")
  rows+=("| | | $HANGS SIGSTOP | $(stats "$W/hang-recovery.txt") | $(stats "$W/hang-switch.txt") | | $hf of $hr |")
  rows+=("| | | $ROLLOUTS rollouts ($modes) | $(stats "$W/roll-deploy.txt") | $(stats "$W/roll-switch.txt") | | $rf of $rr |")
  "$SEIFER" down --dir "$RUN" >/dev/null
done

echo
echo "| model | pipeline | event | fault (or deploy) to first answer of the new pipeline, ms p50 / p90 / max | controller: detection (or validation) to switch, ms p50 / p90 / max | stages shipped | failed requests |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for r in "${rows[@]}"; do echo "$r"; done
