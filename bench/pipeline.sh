#!/usr/bin/env bash
# Pipelines on a namespaced edge cluster with real tc-shaped links (needs root):
#  1. per zoo model: the plan's predicted throughput vs the steady-state throughput measured with
#     `seifer loadgen` through the gateway (--requests, at most ~40 s worth per run), on the full cluster and on the smallest prefix of its
#     nodes that still holds the model (the gain of using the whole cluster);
#  2. per-hop overhead: latency of one request through k stages on unshaped loopback links,
#     minus the latency through one stage, per extra hop (tiny model, compute negligible);
#  3. codec ratio and speed on the tensors that cross the chosen cuts of each model.
# Prints markdown tables (paste into bench/RESULTS.md).
#
# usage: bench/pipeline.sh [--build DIR] [--models a,b,...] [--requests N] [--codec C]
# Nodes are namespaces of this one machine, so the nodes' compute is emulated (every stage is
# padded to its planned time, `seifer up --emulate-compute`) while the links are real.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=build
MODELS=resnet50,mobilenetv2,efficientnetb1,inceptionresnetv2
REQUESTS=120
CODEC=lz4
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --codec) CODEC=$2; shift 2 ;;
    *) echo "usage: bench/pipeline.sh [--build DIR] [--models a,b] [--requests N] [--codec C]" >&2; exit 2 ;;
  esac
done
SEIFER=$(readlink -f "$BUILD/seifer")
NPYTOOL=$(readlink -f "$BUILD/tests/npytool")
CODECBENCH=$(readlink -f "$BUILD/tests/codecbench")
source tests/tools/netns.sh
source tests/tools/stages.sh
netns_can_run || exit 1
W=$(mktemp -d)
trap 'netns_down; rm -rf "$W"' EXIT
mkdir -p out/bench

# SEIFER-like edge cluster: small devices (64-512 MB), 8-15 GFLOP/s, links of 25-100 Mbit/s.
cat >"$W/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 1024, "gflops": 8},
           {"name": "e1", "memory_mb": 128, "gflops": 12},
           {"name": "e2", "memory_mb": 96,  "gflops": 10},
           {"name": "e3", "memory_mb": 256, "gflops": 15},
           {"name": "e4", "memory_mb": 64,  "gflops": 10},
           {"name": "e5", "memory_mb": 192, "gflops": 12},
           {"name": "e6", "memory_mb": 128, "gflops": 12},
           {"name": "e7", "memory_mb": 512, "gflops": 15}],
 "default_link": {"mbps": 50, "rtt_ms": 1},
 "links": [{"from": "gw", "to": "e1", "mbps": 100}, {"from": "e1", "to": "e2", "mbps": 40},
           {"from": "e2", "to": "e3", "mbps": 80}, {"from": "e3", "to": "e4", "mbps": 25},
           {"from": "e4", "to": "e5", "mbps": 60}, {"from": "e5", "to": "e6", "mbps": 100},
           {"from": "e6", "to": "e7", "mbps": 30}],
 "gateway": "gw"}
JSON
echo "bench/pipeline: building the namespaced cluster" >&2
netns_up "$W/cluster.json" 2>/dev/null
mkdir -p "$W/run"
"$SEIFER" keygen -o "$W/run/secret" >/dev/null
start_workers() {
  local n
  for n in "${NETNS_NODES[@]}"; do
    netns_exec "$n" "$SEIFER" worker --listen "${NETNS_ADDR[$n]}:7000" --secret "$W/run/secret" --name "$n" \
      --cache "$W/cache-$n" --threads 1 >"$W/$n.log" 2>&1 &
  done
  netns_exec gw "$SEIFER" gateway --listen "${NETNS_ADDR[gw]}:8000" --data "${NETNS_ADDR[gw]}:7100" \
    --secret "$W/run/secret" >"$W/gateway.log" 2>&1 &
  sleep 1
}
start_workers
netns_addresses "$W/cluster.json" "$W/cluster-addr.json"
gwa=${NETNS_ADDR[gw]}

# run MODEL CLUSTER -> "predicted steady stages"
run() {
  local model=$1 cluster=$2
  rm -f "$W/run/up.json"
  netns_exec gw "$SEIFER" up --model "out/bench/$model.onnx" --cluster "$cluster" --dir "$W/run" \
    --attach "$gwa:7100" --emulate-compute --codec "$CODEC" --name "$model" --sample "$W/in-$model.npy" >"$W/up.log" 2>&1 ||
    { echo "up failed:" >&2; cat "$W/up.log" >&2; return 1; }
  local pred k
  pred=$(jq .predicted_throughput_per_s "$W/run/up.json")
  k=$(jq '.stages | length' "$W/run/up.json")
  local count
  count=$(awk -v r="$REQUESTS" -v p="$pred" 'BEGIN { c = int(p * 40); if (c > r) c = r; if (c < 12) c = 12; print c }')
  netns_exec gw "$SEIFER" loadgen --url "http://$gwa:8000" --model "$model" --input "$W/in-$model.npy" \
    --count "$count" --concurrency $((2 * k + 4)) --binary --json >"$W/lg.json" 2>/dev/null ||
    { echo "loadgen failed" >&2; cat "$W/lg.json" >&2; return 1; }
  echo "$pred $(jq .steady_throughput_per_s "$W/lg.json") $k $(jq .failed "$W/lg.json")"
}

echo "| model | cluster | stages | predicted req/s | measured req/s | measured / predicted | failed |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
IFS=, read -ra models <<<"$MODELS"
declare -A GAIN
for model in "${models[@]}"; do
  [ -f "out/bench/$model.onnx" ] || "$SEIFER" zoo "$model" -o "out/bench/$model.onnx" >/dev/null
  shape=$("$SEIFER" inspect "out/bench/$model.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
  "$NPYTOOL" image "$W/in-$model.npy" "$shape"
  echo "bench/pipeline: $model on the full cluster" >&2
  run "$model" "$W/cluster-addr.json" >"$W/r1"
  read -r pred meas k failed <"$W/r1"
  printf '| %s | all %d nodes | %d | %.2f | %.2f | %.3f | %d |\n' "$model" "${#NETNS_NODES[@]}" "$k" "$pred" "$meas" \
    "$(awk -v m="$meas" -v p="$pred" 'BEGIN{print m/p}')" "$failed"
  cp -r "$W/run/stages" "$W/stages-$model"
  # smallest prefix of the node list (gateway first) that holds the model
  for ((n = 1; n <= ${#NETNS_NODES[@]}; n++)); do
    jq --argjson n "$n" '.nodes |= .[:$n] | .links |= map(select(.from as $f | .to as $t | true))' "$W/cluster-addr.json" >"$W/sub.json"
    names=$(jq -c '[.nodes[].name]' "$W/sub.json")
    jq --argjson keep "$names" '.links |= map(select((.from as $f | $keep | index($f)) and (.to as $t | $keep | index($t))))' \
      "$W/sub.json" >"$W/sub2.json"
    if "$SEIFER" plan "out/bench/$model.onnx" "$W/sub2.json" -o "$W/p.json" >/dev/null 2>&1 &&
       [ "$(jq '.stages | length' "$W/p.json")" -gt 0 ]; then
      echo "bench/pipeline: $model on the smallest cluster that holds it ($n nodes)" >&2
      run "$model" "$W/sub2.json" >"$W/r2"
      read -r spred smeas sk sfailed <"$W/r2"
      printf '| %s | smallest: %d nodes | %d | %.2f | %.2f | %.3f | %d |\n' "$model" "$n" "$sk" "$spred" "$smeas" \
        "$(awk -v m="$smeas" -v p="$spred" 'BEGIN{print m/p}')" "$sfailed"
      GAIN[$model]=$(awk -v a="$meas" -v b="$smeas" 'BEGIN{printf "%.2f", a/b}')
      break
    fi
  done
done
echo
echo "| model | measured gain of the full cluster over the smallest that holds the model |"
echo "| --- | ---: |"
for model in "${models[@]}"; do echo "| $model | ${GAIN[$model]:-n/a}x |"; done

# per-hop overhead on loopback (no shaping, no emulation): tiny model, 1 stage vs k stages
echo
echo "bench/pipeline: per-hop overhead" >&2
"$SEIFER" zoo tiny-inception -o "$W/tiny.onnx" >/dev/null
"$NPYTOOL" image "$W/tiny-in.npy" 1,3,32,32
hop_latency() { # NODES MEMORY_MB -> "stages p50_ms"
  jq -n --argjson n "$1" --argjson m "$2" \
    '{nodes: [range($n) | {name: "n\(.)", memory_mb: $m, gflops: 100}], default_link: {mbps: 10000}, gateway: "n0"}' \
    >"$W/hop.json"
  "$SEIFER" up --model "$W/tiny.onnx" --cluster "$W/hop.json" --dir "$W/hop" --listen 127.0.0.1:0 --no-emulate \
    --name tiny >/dev/null
  "$SEIFER" loadgen --url "$(jq -r .url "$W/hop/up.json")" --model tiny --input "$W/tiny-in.npy" --count 300 \
    --concurrency 1 --binary --json 2>/dev/null >"$W/hop-lg.json"
  echo "$(jq '.stages | length' "$W/hop/up.json") $(jq .latency_ms.p50 "$W/hop-lg.json")"
  "$SEIFER" down --dir "$W/hop" >/dev/null
}
hop_latency 1 64 >"$W/hop1"
hop_latency 6 0.25 >"$W/hopn"
read -r k1 l1 <"$W/hop1"
read -r kn ln <"$W/hopn"
echo "| stages | p50 latency ms (1 request at a time, loopback) |"
echo "| ---: | ---: |"
echo "| $k1 | $l1 |"
echo "| $kn | $ln |"
if [ "$kn" -gt "$k1" ]; then
  printf '\nper-hop overhead: %.3f ms per extra stage (receive, decode, encode, send, incl. the stage compute of a tiny model)\n' \
    "$(awk -v a="$l1" -v b="$ln" -v k="$k1" -v n="$kn" 'BEGIN{print (b-a)/(n-k)}')"
fi

# codecs on the tensors crossing the cuts chosen above
echo
echo "bench/pipeline: codecs" >&2
for model in "${models[@]}"; do
  d="$W/stages-$model"
  [ -d "$d" ] || continue
  v="$W/vals-$model"
  mkdir -p "$v"
  input=$("$SEIFER" inspect "out/bench/$model.onnx" --json | jq -r '.inputs[0].name')
  cp "$W/in-$model.npy" "$v/$(stages_safe "$input").npy"
  stages_chain "$SEIFER" "$d" "$v"
  files=()
  n=$(jq '.stages | length' "$d/manifest.json")
  for ((s = 0; s + 1 < n; s++)); do
    for name in $(jq -r ".stages[$s].outputs[]" "$d/manifest.json"); do files+=("$v/$(stages_safe "$name").npy"); done
  done
  echo "$model:"
  [ ${#files[@]} -gt 0 ] && "$CODECBENCH" "${files[@]}"
done
