#!/usr/bin/env bash
# seifer plan + seifer split end to end: plan a zoo model on a small cluster, split it, run the
# stage models one after another with `seifer infer` (each stage's inputs are the files the
# earlier stages wrote, by tensor name) and compare with the whole model (<= 1e-5 relative).
# Then several pipelines (--pipelines auto on 8 small nodes): plan.json lists >= 2 pipelines,
# `split --pipeline 1` and `split --pipeline all` write stages that chain to the same result.
set -u
SEIFER=${1:?usage: cli_plan_split.sh SEIFER}
NPYTOOL=$(dirname "$SEIFER")/tests/npytool
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "a", "memory_mb": 64, "gflops": 1},
           {"name": "b", "memory_mb": 64, "gflops": 1},
           {"name": "c", "memory_mb": 64, "gflops": 1},
           {"name": "d", "memory_mb": 64, "gflops": 1}],
 "default_link": {"mbps": 100, "rtt_ms": 1},
 "links": [{"from": "a", "to": "b", "mbps": 5}],
 "gateway": "a"}
JSON
{
  printf '{"nodes": ['
  for n in a b c d e f g h; do
    [ "$n" = a ] || printf ', '
    printf '{"name": "%s", "memory_mb": 64, "gflops": 1}' "$n"
  done
  printf '],\n "default_link": {"mbps": 100, "rtt_ms": 1}, "gateway": "a"}\n'
} >"$T/cluster8.json"

# chain MODEL DIR LABEL: run DIR/stage-1.onnx .. in order and compare with the whole model.
chain() {
  local model=$1 dir=$2 label=$3 stages s name ref
  stages=$(ls "$dir"/stage-*.onnx 2>/dev/null | wc -l)
  [ "$stages" -ge 1 ] || { echo "FAIL $label: no stages in $dir"; return 1; }
  rm -rf "$T/vals" "$T/full"
  local input
  input=$("$SEIFER" inspect "$model" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
  mkdir -p "$T/vals"
  "$NPYTOOL" image "$T/vals/$input.npy" 1,3,32,32
  "$SEIFER" infer "$model" -i "$input=$T/vals/$input.npy" -o "$T/full" >/dev/null || { echo "FAIL $label: full infer"; return 1; }
  for ((s = 1; s <= stages; s++)); do
    local args=()
    for name in $("$SEIFER" inspect "$dir/stage-$s.onnx" --json | sed -n '/"inputs"/,/"outputs"/s/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p'); do
      args+=(-i "$name=$T/vals/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').npy")
    done
    if ! "$SEIFER" infer "$dir/stage-$s.onnx" "${args[@]}" -o "$T/vals" >"$T/log" 2>&1; then
      echo "FAIL $label: stage $s failed:"; cat "$T/log"; return 1
    fi
  done
  for ref in "$T"/full/*.npy; do
    if "$NPYTOOL" cmp "$T/vals/$(basename "$ref")" "$ref" 1e-5 >/dev/null; then
      echo "ok   $label: $stages chained stages reproduce the whole model"
    else
      echo "FAIL $label: chained stages differ"; "$NPYTOOL" cmp "$T/vals/$(basename "$ref")" "$ref" 1e-5; return 1
    fi
  done
}

for model in tiny-cnn tiny-inception; do
  "$SEIFER" zoo "$model" -o "$T/$model.onnx" >/dev/null || { echo "FAIL zoo $model"; fail=1; continue; }
  if ! "$SEIFER" plan "$T/$model.onnx" "$T/cluster.json" -o "$T/plan.json" --explain >"$T/log" 2>&1; then
    echo "FAIL $model: plan failed:"; cat "$T/log"; fail=1; continue
  fi
  grep -q '"optimal":[[:space:]]*true' "$T/plan.json" || { echo "FAIL $model: plan not proven optimal"; fail=1; }
  stages=$(grep -c $'^\t\t\t"first_op"' "$T/plan.json") # top-level stages (pipeline 0)
  [ "$stages" -ge 2 ] || { echo "FAIL $model: expected a plan of several stages (slow nodes), got $stages"; cat "$T/log"; fail=1; continue; }
  rm -rf "$T/stages"
  if ! "$SEIFER" split "$T/$model.onnx" "$T/plan.json" -o "$T/stages" >"$T/log" 2>&1; then
    echo "FAIL $model: split failed:"; cat "$T/log"; fail=1; continue
  fi
  chain "$T/$model.onnx" "$T/stages" "$model" || fail=1
done

# several pipelines
model=tiny-cnn
if ! "$SEIFER" plan "$T/$model.onnx" "$T/cluster8.json" --pipelines auto -o "$T/plan.json" >"$T/log" 2>&1; then
  echo "FAIL pipelines: plan failed:"; cat "$T/log"; fail=1
else
  pipes=$(grep -c '"id":' "$T/plan.json")
  total=$(sed -n 's/.*"throughput_per_s_total":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$T/plan.json")
  single=$(sed -n $'s/^\t"throughput_per_s":[[:space:]]*\\([0-9.e+-]*\\).*/\\1/p' "$T/plan.json")
  if [ "$pipes" -ge 2 ] && awk -v t="$total" -v s="$single" 'BEGIN { exit !(t > 1.5 * s) }'; then
    echo "ok   pipelines: $pipes pipelines, $total inferences/s in total (pipeline 0: $single)"
  else
    echo "FAIL pipelines: expected >= 2 pipelines raising the total, got $pipes ($total vs $single)"; cat "$T/log"; fail=1
  fi
  rm -rf "$T/p1" "$T/all"
  if ! "$SEIFER" split "$T/$model.onnx" "$T/plan.json" -o "$T/p1" --pipeline 1 >"$T/log" 2>&1; then
    echo "FAIL pipelines: split --pipeline 1 failed:"; cat "$T/log"; fail=1
  else
    chain "$T/$model.onnx" "$T/p1" "pipeline 1" || fail=1
  fi
  if ! "$SEIFER" split "$T/$model.onnx" "$T/plan.json" -o "$T/all" --pipeline all >"$T/log" 2>&1; then
    echo "FAIL pipelines: split --pipeline all failed:"; cat "$T/log"; fail=1
  else
    for ((k = 0; k < pipes; k++)); do
      [ -f "$T/all/p$k/manifest.json" ] || { echo "FAIL pipelines: no $T/all/p$k/manifest.json"; fail=1; }
    done
    chain "$T/$model.onnx" "$T/all/p$((pipes - 1))" "pipeline $((pipes - 1)) of --pipeline all" || fail=1
  fi
  if "$SEIFER" split "$T/$model.onnx" "$T/plan.json" -o "$T/px" --pipeline "$pipes" >"$T/log" 2>&1 ||
     ! grep -q "the plan has $pipes pipelines" "$T/log"; then
    echo "FAIL pipelines: split --pipeline $pipes should fail naming the count:"; cat "$T/log"; fail=1
  fi
fi
exit $fail
