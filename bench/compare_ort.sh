#!/usr/bin/env bash
# seifer vs ONNX Runtime (npm onnxruntime-node, CPU EP, all graph optimisations, same intra-op
# thread count) on the same model files, batch 1, runs alternating seifer / ORT.
#
# usage: bench/compare_ort.sh [--rounds R] [--iters N] [--threads "1 2"] [MODEL.onnx|zoo-name ...]
# Default models: the four zoo models and the two small test models (generated into out/bench).
# Prints progress on stderr and a Markdown table on stdout: median throughput of the rounds for
# each, the ratio seifer/ORT, peak RSS of each and the ratio, and load time (file to first
# inference). ORT's RSS is reported net of a node + onnxruntime process that loads no model
# (the baseline is printed), which is the comparison least favourable to seifer.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 ITERS=20 THREADS="1 2"
models=()
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) models+=("$1"); shift ;;
  esac
done
((${#models[@]})) || models=(resnet50 mobilenetv2 efficientnetb1 inceptionresnetv2 tiny-cnn tiny-inception)
SEIFER=${SEIFER:-build/seifer}
[ -x "$SEIFER" ] || make build >&2
CACHE=$PWD/.cache/oracle
source tests/tools/oracle.sh
oracle_setup >&2 || { echo "ONNX Runtime unavailable" >&2; exit 1; }
OUT=out/bench
mkdir -p "$OUT"
ORT="env NODE_PATH=$CACHE/ort/node_modules node bench/ort_bench.js"
baseline=$($ORT --baseline | sed 's/.*"peak_rss_bytes": *\([0-9]*\).*/\1/')

json() { sed -n "s/.*\"$2\": *\([0-9.e+-]*\).*/\1/p" <<<"$1"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "| model | threads | seifer inf/s | ORT inf/s | ratio | seifer p50 ms | ORT p50 ms | seifer RSS MiB | ORT RSS MiB (net) | RSS ratio | seifer load ms | ORT load ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for m in "${models[@]}"; do
  file=$m
  if [[ $m != *.onnx ]]; then
    file=$OUT/$m.onnx
    [ -f "$file" ] || "$SEIFER" zoo "$m" -o "$file" >&2
  fi
  name=$(basename "$file" .onnx)
  for t in $THREADS; do
    s_t=() o_t=() s_p=() o_p=() s_r=() o_r=() s_l=() o_l=()
    for ((r = 1; r <= ROUNDS; r++)); do
      echo "[$name, $t thread(s)] round $r/$ROUNDS: seifer" >&2
      s=$("$SEIFER" bench "$file" --threads "$t" --iters "$ITERS" --json)
      echo "[$name, $t thread(s)] round $r/$ROUNDS: onnxruntime" >&2
      o=$($ORT "$file" "$t" "$ITERS" 3)
      s_t+=("$(json "$s" throughput_per_s)") o_t+=("$(json "$o" throughput_per_s)")
      s_p+=("$(json "$s" p50_ms)") o_p+=("$(json "$o" p50_ms)")
      s_r+=("$(json "$s" peak_rss_bytes)") o_r+=("$(json "$o" peak_rss_bytes)")
      s_l+=("$(json "$s" load_ms)") o_l+=("$(json "$o" load_ms)")
    done
    st=$(printf '%s\n' "${s_t[@]}" | median) ot=$(printf '%s\n' "${o_t[@]}" | median)
    sp=$(printf '%s\n' "${s_p[@]}" | median) op=$(printf '%s\n' "${o_p[@]}" | median)
    sr=$(printf '%s\n' "${s_r[@]}" | median) orr=$(printf '%s\n' "${o_r[@]}" | median)
    sl=$(printf '%s\n' "${s_l[@]}" | median) ol=$(printf '%s\n' "${o_l[@]}" | median)
    awk -v n="$name" -v t="$t" -v st="$st" -v ot="$ot" -v sp="$sp" -v op="$op" -v sr="$sr" \
        -v orr="$orr" -v b="$baseline" -v sl="$sl" -v ol="$ol" 'BEGIN {
      on = orr - b; if (on < 1) on = 1;
      printf "| %s | %d | %.2f | %.2f | **%.2f** | %.2f | %.2f | %.1f | %.1f | **%.2f** | %.0f | %.0f |\n",
             n, t, st, ot, st / ot, sp, op, sr / 1048576, on / 1048576, sr / on, sl, ol }'
  done
done
echo
echo "ORT RSS baseline (node + onnxruntime-node, no model): $(awk -v b="$baseline" 'BEGIN{printf "%.1f", b/1048576}') MiB, subtracted above."
echo "Medians of $ROUNDS alternating rounds of $ITERS iterations after warm-up; machine: $(nproc) cores, $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n1)."
