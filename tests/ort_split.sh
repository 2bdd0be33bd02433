#!/usr/bin/env bash
# Stage models written by `seifer split` are standalone ONNX models: ONNX Runtime loads every
# stage, and on the same stage inputs its outputs match seifer's within 1e-4 of their magnitude.
set -u
source "$(dirname "$0")/tools/oracle.sh"
oracle_begin "$@" || exit 77
cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "a", "memory_mb": 64, "gflops": 1}, {"name": "b", "memory_mb": 64, "gflops": 1},
           {"name": "c", "memory_mb": 64, "gflops": 1}, {"name": "d", "memory_mb": 64, "gflops": 1}],
 "default_link": {"mbps": 100}}
JSON
for model in tiny-inception mobilenetv2; do
  "$SEIFER" zoo "$model" -o "$T/m.onnx" >/dev/null || { echo "FAIL zoo $model"; fail=1; continue; }
  if ! "$SEIFER" plan "$T/m.onnx" "$T/cluster.json" -o "$T/plan.json" >"$T/log" 2>&1 ||
     ! "$SEIFER" split "$T/m.onnx" "$T/plan.json" -o "$T/st-$model" >>"$T/log" 2>&1; then
    echo "FAIL $model: plan/split:"; cat "$T/log"; fail=1; continue
  fi
  shape=$("$SEIFER" inspect "$T/m.onnx" --json | sed -n 's/.*"resolved_shape":[[:space:]]*\[\([0-9, ]*\)\].*/\1/p' | head -n1 | tr -d ' ')
  input=$("$SEIFER" inspect "$T/m.onnx" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
  vals="$T/vals-$model"
  mkdir -p "$vals"
  "$NPYTOOL" image "$vals/$input.npy" "$shape"
  n=$(ls "$T/st-$model"/stage-*.onnx | wc -l)
  for ((s = 1; s <= n; s++)); do
    stage="$T/st-$model/stage-$s.onnx"
    args=()
    for name in $("$SEIFER" inspect "$stage" --json | sed -n '/"inputs"/,/"outputs"/s/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p'); do
      args+=("$name=$vals/$(printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_').npy")
    done
    sargs=()
    for a in "${args[@]}"; do sargs+=(-i "$a"); done
    rm -rf "$T/ours" "$T/ort"
    if ! "$SEIFER" infer "$stage" "${sargs[@]}" -o "$T/ours" >"$T/log" 2>&1; then
      echo "FAIL $model stage $s: seifer:"; cat "$T/log"; fail=1; continue 2
    fi
    if ! oracle_run "$stage" "$T/ort" "${args[@]}" >"$T/log" 2>&1; then
      echo "FAIL $model stage $s: onnxruntime cannot run it:"; cat "$T/log"; fail=1; continue 2
    fi
    for ref in "$T"/ort/*.npy; do
      f=$(basename "$ref")
      if "$NPYTOOL" cmp "$T/ours/$f" "$ref" 1e-4 >/dev/null; then
        echo "ok   $model stage $s/$n ${f%.npy} matches onnxruntime"
      else
        echo "FAIL $model stage $s/$n ${f%.npy}"; "$NPYTOOL" cmp "$T/ours/$f" "$ref" 1e-4; fail=1
      fi
      cp "$T/ours/$f" "$vals/$f"
    done
  done
done
exit $fail
