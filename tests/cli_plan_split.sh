#!/usr/bin/env bash
# seifer plan + seifer split end to end: plan a zoo model on a small cluster, split it, run the
# stage models one after another with `seifer infer` (each stage's inputs are the files the
# earlier stages wrote, by tensor name) and compare with the whole model (<= 1e-5 relative).
set -u
SEIFER=${1:?usage: cli_plan_split.sh SEIFER}
NPYTOOL=$(dirname "$SEIFER")/tests/npytool
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "a", "memory_mb": 1, "gflops": 1},
           {"name": "b", "memory_mb": 1, "gflops": 1},
           {"name": "c", "memory_mb": 1, "gflops": 1},
           {"name": "d", "memory_mb": 1, "gflops": 1}],
 "default_link": {"mbps": 100, "rtt_ms": 1},
 "links": [{"from": "a", "to": "b", "mbps": 5}],
 "gateway": "a"}
JSON
for model in tiny-cnn tiny-inception; do
  "$SEIFER" zoo "$model" -o "$T/$model.onnx" >/dev/null || { echo "FAIL zoo $model"; fail=1; continue; }
  if ! "$SEIFER" plan "$T/$model.onnx" "$T/cluster.json" -o "$T/plan.json" --explain >"$T/log" 2>&1; then
    echo "FAIL $model: plan failed:"; cat "$T/log"; fail=1; continue
  fi
  grep -q '"optimal":[[:space:]]*true' "$T/plan.json" || { echo "FAIL $model: plan not proven optimal"; fail=1; }
  stages=$(grep -c '"first_op"' "$T/plan.json")
  [ "$stages" -ge 2 ] || { echo "FAIL $model: expected a plan of several stages (1 MB nodes), got $stages"; cat "$T/log"; fail=1; continue; }
  rm -rf "$T/stages" "$T/vals" "$T/full"
  if ! "$SEIFER" split "$T/$model.onnx" "$T/plan.json" -o "$T/stages" >"$T/log" 2>&1; then
    echo "FAIL $model: split failed:"; cat "$T/log"; fail=1; continue
  fi
  input=$("$SEIFER" inspect "$T/$model.onnx" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
  mkdir -p "$T/vals"
  "$NPYTOOL" image "$T/vals/$input.npy" 1,3,32,32
  "$SEIFER" infer "$T/$model.onnx" -i "$input=$T/vals/$input.npy" -o "$T/full" >/dev/null || { echo "FAIL $model: full infer"; fail=1; continue; }
  for ((s = 1; s <= stages; s++)); do
    args=()
    for name in $("$SEIFER" inspect "$T/stages/stage-$s.onnx" --json | sed -n '/"inputs"/,/"outputs"/s/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p'); do
      args+=(-i "$name=$T/vals/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').npy")
    done
    if ! "$SEIFER" infer "$T/stages/stage-$s.onnx" "${args[@]}" -o "$T/vals" >"$T/log" 2>&1; then
      echo "FAIL $model: stage $s failed:"; cat "$T/log"; fail=1; continue 2
    fi
  done
  for ref in "$T"/full/*.npy; do
    if "$NPYTOOL" cmp "$T/vals/$(basename "$ref")" "$ref" 1e-5 >/dev/null; then
      echo "ok   $model: $stages chained stages reproduce the whole model"
    else
      echo "FAIL $model: chained stages differ"; "$NPYTOOL" cmp "$T/vals/$(basename "$ref")" "$ref" 1e-5; fail=1
    fi
  done
done
exit $fail
