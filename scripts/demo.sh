#!/usr/bin/env bash
# make demo: the main job on an embedded default. A reference model (ResNet50 architecture,
# seeded weights) is planned onto an emulated edge cluster of small nodes with SEIFER-like links,
# split, and served by one worker process per stage behind the KServe v2 gateway; a stream of
# requests measures the pipeline against the plan's prediction and against one unpartitioned
# process. The last line is a summary a script can read (measured = steady-state throughput):
#   demo: measured <req/s> predicted <req/s> ratio <measured/predicted> requests <n> failed <n>
set -euo pipefail
SEIFER=${1:-build/seifer}
NPYTOOL=${2:-build/tests/npytool}
OUT=${DEMO_DIR:-out/demo}
MODEL=${DEMO_MODEL:-resnet50}
REQUESTS=${DEMO_REQUESTS:-150}
RUN="$OUT/cluster-run"
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*"; }
"$SEIFER" down --dir "$RUN" >/dev/null 2>&1 || true
trap '"$SEIFER" down --dir "$RUN" >/dev/null 2>&1 || true' EXIT

step "generating $MODEL (Keras architecture, seeded weights) -> $OUT/$MODEL.onnx"
"$SEIFER" zoo "$MODEL" -o "$OUT/$MODEL.onnx" --seed 1

# Six edge devices of 64-256 MB (Raspberry-Pi-class compute), links of 40-120 Mbit/s, the gateway
# on a seventh, bigger node. No single small node can hold the model.
cat >"$OUT/cluster.json" <<'JSON'
{"nodes": [{"name": "gateway", "memory_mb": 1024, "gflops": 4},
           {"name": "pi-1", "memory_mb": 64,  "gflops": 25},
           {"name": "pi-2", "memory_mb": 128, "gflops": 25},
           {"name": "pi-3", "memory_mb": 96,  "gflops": 25},
           {"name": "pi-4", "memory_mb": 256, "gflops": 25},
           {"name": "pi-5", "memory_mb": 64,  "gflops": 25},
           {"name": "pi-6", "memory_mb": 128, "gflops": 25}],
 "default_link": {"mbps": 80, "rtt_ms": 2},
 "links": [{"from": "gateway", "to": "pi-1", "mbps": 120}, {"from": "pi-2", "to": "pi-3", "mbps": 40},
           {"from": "pi-4", "to": "pi-5", "mbps": 60}, {"from": "pi-5", "to": "pi-6", "mbps": 100}],
 "gateway": "gateway"}
JSON
step "cluster: $OUT/cluster.json (7 nodes, 64-1024 MB, 40-120 Mbit/s)"

shape=$("$SEIFER" inspect "$OUT/$MODEL.onnx" --json | sed -n 's/.*"resolved_shape":[[:space:]]*\[\([0-9, ]*\)\].*/\1/p' | head -n1 | tr -d " ")
input=$("$SEIFER" inspect "$OUT/$MODEL.onnx" --json | sed -n 's/.*"name":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n1)
"$NPYTOOL" image "$OUT/input.npy" "$shape" -128 128

step "seifer up: plan, split, start one worker per stage and the gateway (links and compute emulated)"
"$SEIFER" up --model "$OUT/$MODEL.onnx" --cluster "$OUT/cluster.json" --dir "$RUN" --listen 127.0.0.1:0 \
  --name "$MODEL" --codec lz4 --sample "$OUT/input.npy"
url=$(sed -n 's/.*"url":[[:space:]]*"\([^"]*\)".*/\1/p' "$RUN/up.json")
predicted=$(sed -n 's/.*"predicted_throughput_per_s":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$RUN/up.json")


step "one request through the pipeline vs. seifer infer on the whole model"
"$SEIFER" request --url "$url" --model "$MODEL" --input "$OUT/input.npy" -o "$OUT/pipeline-out.npy"
"$SEIFER" infer "$OUT/$MODEL.onnx" -i "$input=$OUT/input.npy" -o "$OUT/outputs" >/dev/null
ref=$(ls "$OUT"/outputs/*.npy | head -n1)
"$NPYTOOL" cmp "$OUT/pipeline-out.npy" "$ref" 1e-5 && echo "pipeline output matches the unpartitioned model (within 1e-5 of its largest value)"

step "a stream of $REQUESTS requests (12 concurrent clients, binary tensor data)"
"$SEIFER" loadgen --url "$url" --model "$MODEL" --input "$OUT/input.npy" --count "$REQUESTS" --concurrency 12 \
  --binary --json >"$OUT/loadgen.json"
# steady state: answers after the first one, over the time they took (the pipeline's rate without
# the time the first request needs to fill it); overall: all answers over the whole run
measured=$(sed -n 's/.*"steady_throughput_per_s":[[:space:]]*\([0-9.e+-]*\).*/\1/p' "$OUT/loadgen.json" | head -n1)
overall=$(sed -n 's/.*"throughput_per_s":[[:space:]]*\([0-9.e+-]*\),"steady.*/\1/p' "$OUT/loadgen.json" | head -n1)
requests=$(sed -n 's/.*"requests":[[:space:]]*\([0-9]*\).*/\1/p' "$OUT/loadgen.json" | head -n1)
failed=$(sed -n 's/.*"failed":[[:space:]]*\([0-9]*\).*/\1/p' "$OUT/loadgen.json" | head -n1)

step "without partitioning: the whole model in one process on this machine (2 threads)"
"$SEIFER" bench "$OUT/$MODEL.onnx" --iters 10 | tee "$OUT/bench.txt"
"$SEIFER" plan "$OUT/$MODEL.onnx" "$OUT/cluster.json" --max-stages 1 >"$OUT/single.txt" 2>&1 &&
  echo "best single node of the cluster: $(tail -n1 "$OUT/single.txt")" ||
  echo "no single node of the cluster can hold $MODEL: partitioning is what makes it run at all"

step "summary"
ratio=$(awk -v m="$measured" -v p="$predicted" 'BEGIN { printf "%.3f", (p > 0 ? m / p : 0) }')
printf 'plan predicted %.2f req/s; the emulated cluster served %.2f req/s in steady state (ratio %s), %.2f req/s over the whole run including the pipeline fill\n' \
  "$predicted" "$measured" "$ratio" "$overall"
"$SEIFER" down --dir "$RUN"
trap - EXIT
printf 'demo: measured %.3f predicted %.3f ratio %s requests %d failed %d\n' "$measured" "$predicted" "$ratio" "$requests" "$failed"
