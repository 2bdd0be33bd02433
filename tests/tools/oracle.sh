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
