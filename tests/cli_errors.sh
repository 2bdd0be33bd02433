#!/usr/bin/env bash
# Bad input to the seifer command: every case must exit non-zero with a clear message naming
# what is wrong, and never crash (exit status >= 128 means a signal).
set -u
SEIFER=${1:?usage: cli_errors.sh SEIFER}
DATA=/usr/share/libonnx-testdata/data/node
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0

# expect_error DESCRIPTION PATTERN -- COMMAND...
expect_error() {
  local desc=$1 pat=$2
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "FAIL $desc: exit 0"; fail=1
  elif [ $rc -ge 128 ]; then
    echo "FAIL $desc: crashed (status $rc)"; cat "$T/err"; fail=1
  elif ! grep -qiE -- "$pat" "$T/err"; then
    echo "FAIL $desc: message does not match /$pat/:"; cat "$T/err"; fail=1
  else
    echo "ok   $desc: $(head -c 200 "$T/err" | head -n1)"
  fi
}

conv=$DATA/test_basic_conv_with_padding
relu=$DATA/test_relu

expect_error "no arguments" "usage" -- "$SEIFER"
expect_error "unknown command" "unknown command" -- "$SEIFER" frobnicate
expect_error "missing model file" "cannot open" -- "$SEIFER" inspect "$T/nope.onnx"
head -c 1000 /dev/urandom >"$T/garbage.onnx"
expect_error "garbage model" "not a valid|malformed|corrupt|truncated|invalid" -- "$SEIFER" inspect "$T/garbage.onnx"
head -c 100 "$conv/model.onnx" >"$T/trunc.onnx"
expect_error "truncated model" "not a valid|truncated|corrupt|malformed|invalid" -- "$SEIFER" inspect "$T/trunc.onnx"
: >"$T/empty.onnx"
expect_error "empty model" "empty|no graph|not a valid|malformed" -- "$SEIFER" inspect "$T/empty.onnx"
expect_error "unsupported operator" "unsupported operator 'GRU'.*node" -- "$SEIFER" inspect "$DATA/test_gru_defaults/model.onnx"
expect_error "wrong input name" "no model input named 'bogus'" -- \
  "$SEIFER" infer "$relu/model.onnx" -i bogus="$relu/test_data_set_0/input_0.pb" -o "$T/o"
expect_error "missing input" "not given" -- \
  "$SEIFER" infer "$conv/model.onnx" -i x="$conv/test_data_set_0/input_0.pb" -o "$T/o"
expect_error "input shape mismatch" "expects shape|rank" -- \
  "$SEIFER" infer "$conv/model.onnx" -i x="$relu/test_data_set_0/input_0.pb" \
  -i W="$conv/test_data_set_0/input_1.pb" -o "$T/o"
expect_error "input file missing" "cannot open" -- \
  "$SEIFER" infer "$relu/model.onnx" -i x="$T/none.npy" -o "$T/o"
head -c 50 "$relu/test_data_set_0/input_0.pb" >"$T/bad.pb"
expect_error "truncated input tensor" "input 'x'" -- \
  "$SEIFER" infer "$relu/model.onnx" -i x="$T/bad.pb" -o "$T/o"
printf '\x93NUMPY\x01\x00\x46\x00{"descr": "<f4", "fortran_order": False, "shape": (1099511627776,), }          \n' >"$T/huge.npy"
expect_error "absurd npy shape" "limit|size|bytes|data|mismatch" -- \
  "$SEIFER" infer "$relu/model.onnx" -i x="$T/huge.npy" -o "$T/o"
expect_error "bad thread count" "--threads" -- "$SEIFER" bench "$relu/model.onnx" --threads -3
expect_error "bad input shape option" "input-shape" -- "$SEIFER" inspect "$relu/model.onnx" --input-shape x=3,-4
expect_error "unknown option" "unknown option" -- "$SEIFER" inspect "$relu/model.onnx" --frob

exit $fail
