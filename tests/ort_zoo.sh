#!/usr/bin/env bash
# Every zoo model: ONNX Runtime loads it and `seifer infer` matches it within 1e-4 of the output's
# magnitude, on an input in the range the model's weights were calibrated for (docs/zoo.md).
set -u
source "$(dirname "$0")/tools/oracle.sh"
oracle_begin "$@" || exit 77
# name, input shape, pixel range
while read -r name shape lo hi; do
  [ -n "$name" ] || continue
  model="$T/$name.onnx"
  "$SEIFER" zoo "$name" -o "$model" >/dev/null || { echo "FAIL $name: seifer zoo failed"; fail=1; continue; }
  input=$("$SEIFER" inspect "$model" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
  "$NPYTOOL" image "$T/x.npy" "$shape" "$lo" "$hi"
  oracle_compare "$SEIFER" "$NPYTOOL" "$model" "$input" "$T/x.npy" "$T" "$name" || fail=1
  rm -f "$model"
done <<'LIST'
tiny-cnn 1,3,32,32 -1 1
tiny-inception 1,3,32,32 -1 1
mobilenetv2 1,3,224,224 -1 1
resnet50 1,3,224,224 -128 128
efficientnetb1 1,3,240,240 0 255
inceptionresnetv2 1,3,299,299 -1 1
LIST
exit $fail
