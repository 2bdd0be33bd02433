#!/usr/bin/env bash
# seifer simulate on a small grid: the CSV has a row per (capacity, nodes, algorithm), the plot is
# written, and the optimal planner's mean bottleneck is never above a baseline's.
set -u
SEIFER=${1:?usage: cli_simulate.sh SEIFER}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if ! "$SEIFER" simulate --models tiny-inception,mobilenetv2 --capacities 16,64 --nodes 5,10 \
    --trials 4 --seed 3 --csv "$T/sim.csv" --plot "$T/sim.svg" >"$T/out" 2>&1; then
  echo "FAIL simulate:"; cat "$T/out"; exit 1
fi
fail=0
rows=$(tail -n +2 "$T/sim.csv" | wc -l)
[ "$rows" -eq 32 ] || { echo "FAIL expected 32 CSV rows (2 models x 2 capacities x 2 sizes x 4 algorithms), got $rows"; fail=1; }
head -n1 "$T/sim.csv" | grep -q '^model,capacity_mb,nodes,algorithm,mean_bottleneck_s' || { echo "FAIL CSV header"; fail=1; }
grep -q '<svg' "$T/sim.svg" || { echo "FAIL no SVG plot"; fail=1; }
# optimal <= every other algorithm on the same (model, capacity, nodes)
awk -F, 'NR > 1 {
           k = $1 "," $2 "," $3
           v = ($5 == "inf" || $5 == "nan") ? 1e300 : $5 + 0
           if ($4 == "optimal") { opt[k] = v } else if (!(k in other) || v < other[k]) { other[k] = v }
         }
         END { bad = 0; for (k in opt) if (opt[k] > other[k] * (1 + 1e-9)) { print "FAIL optimal above a baseline at " k; bad = 1 }
               exit bad }' "$T/sim.csv" || fail=1
[ $fail -eq 0 ] && echo "ok   simulate: $rows rows, optimal never above a baseline"
exit $fail
