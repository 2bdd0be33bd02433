#!/usr/bin/env bash
# What measuring compute buys: the same cluster served twice by `seifer controller`, once planning
# on the cluster file's node speeds (--no-probe) and once on the speeds it measures itself. The
# file claims n1 is 10x faster than the other nodes; in truth n1's worker runs in a CPU cgroup
# capped at --cap percent of one core. For each run: the pipeline's nodes, n1's share of the
# model's FLOPs, the predicted throughput and the steady throughput `seifer loadgen` measures.
# Needs root and the cgroup v1 cpu controller. Results: bench/RESULTS.md.
#
#   sudo bench/controller_compute.sh [--model mobilenetv2] [--cap 5] [--seconds 15] [--build build]
set -u
MODEL=mobilenetv2 CAP=5 SECONDS_LOAD=15 BUILD=build CONC=4
while [ $# -gt 0 ]; do
  case $1 in
    --model) MODEL=$2; shift 2 ;;
    --cap) CAP=$2; shift 2 ;;
    --seconds) SECONDS_LOAD=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    *) echo "usage: $0 [--model NAME] [--cap PERCENT] [--seconds S] [--concurrency C] [--build DIR]" >&2; exit 2 ;;
  esac
done
SEIFER=$(readlink -f "$BUILD/seifer")
NPYTOOL=$(readlink -f "$BUILD/tests/npytool")
[ -x "$SEIFER" ] || { echo "no $BUILD/seifer: run make first" >&2; exit 1; }
source tests/tools/cpucap.sh
cpucap_up "$CAP" || exit 1
T=$(mktemp -d)
cleanup() {
  for d in "$T"/run-*; do [ -f "$d/controller.json" ] && "$SEIFER" down --dir "$d" >/dev/null 2>&1; done
  pkill -9 -f "$T/run-" 2>/dev/null
  cpucap_down
  rm -rf "$T"
}
trap cleanup EXIT
cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 1024, "gflops": 10, "address": "127.0.0.1:0"},
           {"name": "n1", "memory_mb": 1024, "gflops": 100, "address": "127.0.0.1:0"},
           {"name": "n2", "memory_mb": 1024, "gflops": 10, "address": "127.0.0.1:0"},
           {"name": "n3", "memory_mb": 1024, "gflops": 10, "address": "127.0.0.1:0"}],
 "default_link": {"mbps": 10000, "rtt_ms": 0.05}, "gateway": "gw"}
JSON
cpucap_wrap "$T/wrap.sh" n1
"$SEIFER" zoo "$MODEL" -o "$T/m.onnx" >/dev/null
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"

rows=()
for mode in file measured; do
  run="$T/run-$mode"
  port=$((20000 + RANDOM % 20000))
  flag=()
  [ $mode = file ] && flag=(--no-probe)
  echo "== $mode speeds: starting the controller" >&2
  "$SEIFER" controller --cluster "$T/cluster.json" --model "$T/m.onnx" --name m --dir "$run" \
    --listen "127.0.0.1:$port" --wrap "$T/wrap.sh" --probe-seconds 0.1 "${flag[@]}" >"$T/$mode.log" 2>&1 &
  for _ in $(seq 600); do [ "$(jq -r .status "$run/controller.json" 2>/dev/null)" = serving ] && break; sleep 0.1; done
  st() { jq -r "$1" "$run/controller.json"; }
  nodes=$(st '[.pipeline.stages[].node] | join(",")')
  share=$(st '.nodes as $n | [.pipeline.stages[] | .node as $x | {node: .node, f: (.compute_s * ($n[] | select(.name == $x) | .gflops))}] |
              ((map(select(.node == "n1") | .f) | add // 0) / (map(.f) | add)) * 1000 | round / 1000')
  pred=$(st '.pipeline.predicted_throughput_per_s * 100 | round / 100')
  echo "== $mode speeds: pipeline on $nodes, loadgen ${SECONDS_LOAD} s" >&2
  lg=$("$SEIFER" loadgen --url "http://127.0.0.1:$port" --model m --input "$T/in.npy" --binary \
         --concurrency "$CONC" --duration "$SECONDS_LOAD" --json 2>/dev/null)
  meas=$(jq -r '.steady_throughput_per_s * 100 | round / 100' <<<"$lg")
  failed=$(jq -r .failed <<<"$lg")
  ratio=$(awk -v m="$meas" -v p="$pred" 'BEGIN { printf "%.3f", (p > 0 ? m / p : 0) }')
  rows+=("| $mode | $nodes | $share | $pred | $meas | $ratio | $failed |")
  kill "$(jq -r .controller_pid "$run/controller.json")" 2>/dev/null
  sleep 1
  "$SEIFER" down --dir "$run" >/dev/null 2>&1
done
echo "model $MODEL, n1 capped at $CAP% of a core (the file says 10x the others), $(nproc) cores, loadgen concurrency $CONC"
echo "| node speeds | pipeline | n1 share of FLOPs | predicted req/s | measured req/s | measured / predicted | failed |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
