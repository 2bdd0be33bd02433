#!/usr/bin/env bash
# seifer probe compute: per-operator times of a zoo model written to a costs file; `seifer plan
# --costs` uses them: every stage's compute_s is positive and finite, and on nodes as fast as
# the probed one they add up to about the whole-model time of `seifer bench` (a loose sanity
# check, within a factor 3, not a timing assertion). Plus `plan --compute measured` and errors.
set -u
SEIFER=${1:?usage: cli_probe.sh SEIFER}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "me", "memory_mb": 64, "gflops": 2},
           {"name": "x", "memory_mb": 64, "gflops": 2},
           {"name": "y", "memory_mb": 64, "gflops": 2}],
 "default_link": {"mbps": 1000, "rtt_ms": 1}, "gateway": "me"}
JSON
"$SEIFER" zoo tiny-cnn -o "$T/m.onnx" >/dev/null || { echo "FAIL zoo tiny-cnn"; exit 1; }
"$SEIFER" zoo tiny-inception -o "$T/other.onnx" >/dev/null || { echo "FAIL zoo tiny-inception"; exit 1; }

# expect STATUS NEEDLE CMD...: CMD exits with STATUS and prints NEEDLE on stderr
expect() {
  local want=$1 needle=$2
  shift 2
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  if [ "$got" -ne "$want" ] || ! grep -qF -- "$needle" "$T/err"; then
    echo "FAIL '$*': want exit $want and '$needle', got $got:"; cat "$T/err"; fail=1
  else
    echo "ok   $needle"
  fi
}

if ! "$SEIFER" probe compute "$T/m.onnx" --threads 1 --iters 20 --cluster "$T/cluster.json" --node me \
    -o "$T/costs.json" >"$T/log" 2>&1; then
  echo "FAIL probe compute:"; cat "$T/log"; exit 1
fi
grep -q '"kind":[[:space:]]*"seifer-compute-costs"' "$T/costs.json" || { echo "FAIL costs file kind"; fail=1; }
ops=$(sed -n 's/.*"operators":[[:space:]]*\([0-9]*\).*/\1/p' "$T/costs.json")
entries=$(grep -c '"seconds"' "$T/costs.json")
[ -n "$ops" ] && [ "$ops" -eq "$entries" ] && [ "$ops" -gt 10 ] || { echo "FAIL costs file: $entries times for $ops operators"; fail=1; }
grep -q '"reference":[[:space:]]*"node me"' "$T/costs.json" || { echo "FAIL costs file: reference is not node me"; fail=1; }

if ! "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/costs.json" -o "$T/plan.json" >"$T/log" 2>&1; then
  echo "FAIL plan --costs:"; cat "$T/log"; fail=1
else
  grep -q '"compute":[[:space:]]*"measured"' "$T/plan.json" || { echo "FAIL plan.json: compute is not measured"; fail=1; }
  # top-level stages (3 tabs deep): compute_s of every stage
  read -r n sum bad < <(awk -F'[:,]' '/^\t\t\t"compute_s"/ { gsub(/[ \t]/, "", $2); v = $2 + 0; n++; s += v;
      if (!(v > 0) || v > 1e3) bad = 1 } END { printf "%d %.9g %d\n", n, s, bad }' "$T/plan.json")
  p50=$("$SEIFER" bench "$T/m.onnx" --threads 1 --iters 50 --json | sed -n 's/.*"p50_ms":[[:space:]]*\([0-9.e+-]*\).*/\1/p')
  if [ "$n" -ge 2 ] && [ "$bad" = 0 ] && [ -n "$p50" ] &&
     awk -v s="$sum" -v b="$p50" 'BEGIN { exit !(s * 1e3 > b / 3 && s * 1e3 < b * 3) }'; then
    echo "ok   plan --costs: $n stages, compute $(awk -v s="$sum" 'BEGIN { printf "%.4f", s * 1e3 }') ms in total; bench p50 $p50 ms"
  else
    echo "FAIL plan --costs: $n stages, compute sum $sum s (bad $bad), bench p50 '$p50' ms"; cat "$T/log"; fail=1
  fi
fi

if "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --compute measured --threads 1 --iters 5 -o "$T/plan2.json" >"$T/log" 2>&1 &&
   grep -q '"compute":[[:space:]]*"measured"' "$T/plan2.json"; then
  echo "ok   plan --compute measured"
else
  echo "FAIL plan --compute measured:"; cat "$T/log"; fail=1
fi
if "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/costs.json" --pipelines auto -o "$T/plan3.json" >"$T/log" 2>&1 &&
   grep -q '"throughput_per_s_total"' "$T/plan3.json"; then
  echo "ok   plan --costs --pipelines auto"
else
  echo "FAIL plan --costs --pipelines auto:"; cat "$T/log"; fail=1
fi

# errors
"$SEIFER" probe compute "$T/other.onnx" --threads 1 --iters 2 -o "$T/other.json" >/dev/null 2>&1 || { echo "FAIL probe other model"; fail=1; }
expect 1 "operators measured, the model has" "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/other.json"
sed 's/seifer-compute-costs/something-else/' "$T/costs.json" >"$T/bad.json"
expect 1 "'kind' is 'something-else'" "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/bad.json"
sed '0,/"seconds":[^,}]*/s//"seconds": -1/' "$T/costs.json" >"$T/neg.json"
expect 1 "ops[0]: 'seconds' = -1 is out of range" "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/neg.json"
expect 2 "--compute flops asks for none" "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" --costs "$T/costs.json" --compute flops
expect 2 "unknown measurement 'link'" "$SEIFER" probe link
expect 2 "--node names a node of --cluster" "$SEIFER" probe compute "$T/m.onnx" --node me
expect 1 "no node named 'zz'" "$SEIFER" probe compute "$T/m.onnx" --cluster "$T/cluster.json" --node zz
"$SEIFER" probe >/dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL probe without a measurement should exit 2"; fail=1; }
exit $fail
