#!/usr/bin/env bash
# make demo: the main job on an embedded default. Today: generate a reference model with
# `seifer zoo`, show what it is and costs, run it on an input and measure it.
set -euo pipefail
SEIFER=${1:-build/seifer}
NPYTOOL=${2:-build/tests/npytool}
OUT=${DEMO_DIR:-out/demo}
MODEL=${DEMO_MODEL:-mobilenetv2}
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }

step "generating $MODEL (Keras architecture, seeded weights) -> $OUT/$MODEL.onnx"
"$SEIFER" zoo "$MODEL" -o "$OUT/$MODEL.onnx" --seed 1

step "seifer inspect $OUT/$MODEL.onnx"
"$SEIFER" inspect "$OUT/$MODEL.onnx"

step "seifer infer (deterministic input) -> $OUT/outputs/"
shape=$("$SEIFER" inspect "$OUT/$MODEL.onnx" --json | sed -n 's/.*"resolved_shape":[[:space:]]*\[\([0-9, ]*\)\].*/\1/p' | head -n1 | tr -d " ")
input=$("$SEIFER" inspect "$OUT/$MODEL.onnx" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
if [ -x "$NPYTOOL" ] && [ -n "$shape" ]; then
  "$NPYTOOL" image "$OUT/input.npy" "$shape"
  "$SEIFER" infer "$OUT/$MODEL.onnx" -i "$input=$OUT/input.npy" -o "$OUT/outputs"
fi

step "seifer bench (1 thread, then all cores)"
"$SEIFER" bench "$OUT/$MODEL.onnx" --threads 1 --iters 20
"$SEIFER" bench "$OUT/$MODEL.onnx" --iters 20
