#!/usr/bin/env bash
# A pipeline on real links: one network namespace per node on a bridge, every pair's bandwidth
# shaped with tc (htb + u32 per destination) from the cluster file, a worker in every node's
# namespace, the gateway in its node's namespace, `seifer up --attach` deploying onto them.
# Pipeline outputs must equal single-process `seifer infer` of the same stages chained bit for
# bit (raw and lz4 codecs) and the whole model within 1e-5; a load of requests loses none. Needs root (skipped otherwise).
set -u
SEIFER=$(readlink -f "$1")
NPYTOOL=$(readlink -f "$2")
source "$(dirname "$0")/tools/netns.sh"
netns_can_run || exit 77
T=$(mktemp -d)
fail=0
trap 'netns_down; rm -rf "$T"' EXIT
source "$(dirname "$0")/tools/testlib.sh"

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5},
           {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5},
           {"name": "n3", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1},
 "links": [{"from": "gw", "to": "n1", "mbps": 50, "symmetric": true}],
 "gateway": "gw"}
JSON
netns_up "$T/cluster.json" || { echo "FAIL: namespaces"; exit 1; }
"$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null
mkdir -p "$T/run"
"$SEIFER" keygen -o "$T/run/secret" >/dev/null
for n in "${NETNS_NODES[@]}"; do
  netns_exec "$n" "$SEIFER" worker --listen "${NETNS_ADDR[$n]}:7000" --secret "$T/run/secret" --name "$n" \
    --cache "$T/cache-$n" --port-file "$T/$n.port" >"$T/$n.log" 2>&1 &
done
gwa=${NETNS_ADDR[gw]}
netns_exec gw "$SEIFER" gateway --listen "$gwa:8000" --data "$gwa:7100" --secret "$T/run/secret" \
  --port-file "$T/gateway.port" >"$T/gateway.log" 2>&1 &
for f in "${NETNS_NODES[@]}" gateway; do
  for _ in $(seq 100); do [ -s "$T/$f.port" ] && break; sleep 0.05; done
  check "$f listening" '[ -s "$T/$f.port" ]'
done
netns_addresses "$T/cluster.json" "$T/cluster-addr.json"

shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
"$NPYTOOL" image "$T/in.npy" "$shape"
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null
source "$(dirname "$0")/tools/stages.sh"
ref="$T/ref/$(stages_safe "$output").npy"

for codec in raw lz4; do
  if ! netns_exec gw "$SEIFER" up --model "$T/m.onnx" --cluster "$T/cluster-addr.json" --dir "$T/run" \
       --attach "$gwa:7100" --codec "$codec" --name tiny >"$T/up.log" 2>&1; then
    echo "FAIL: up --attach ($codec):"; cat "$T/up.log"; tail -n 5 "$T"/*.log; fail=1; continue
  fi
  nst=$(jq '.stages | length' "$T/run/up.json")
  check "$codec: >= 2 stages on separate namespaces (got $nst)" '[ "$nst" -ge 2 ]'
  url="http://$gwa:8000"
  if netns_exec gw "$SEIFER" request --url "$url" --model tiny --input "$T/in.npy" -o "$T/out.npy" >"$T/req.log" 2>&1; then
    mkdir -p "$T/chain-$codec" && cp "$T/in.npy" "$T/chain-$codec/$(stages_safe "$input").npy"
    stages_chain "$SEIFER" "$T/run/stages" "$T/chain-$codec" || { echo "FAIL: chaining the stages"; fail=1; }
    check "$codec: output equals the chained stages bit for bit" '"$NPYTOOL" cmp "$T/out.npy" "$T/chain-$codec/$(stages_safe "$output").npy" 0 >/dev/null'
    check "$codec: output equals the whole model within 1e-5" '"$NPYTOOL" cmp "$T/out.npy" "$ref" 1e-5 >/dev/null'
  else
    echo "FAIL: request ($codec):"; cat "$T/req.log"; tail -n 5 "$T"/*.log; fail=1
  fi
  if netns_exec gw "$SEIFER" loadgen --url "$url" --model tiny --input "$T/in.npy" --count 40 --concurrency 4 \
       --json >"$T/lg.json" 2>"$T/lg.err"; then
    check "$codec: 40 requests, none failed" 'jq -e ".requests == 40 and .failed == 0" "$T/lg.json" >/dev/null'
  else
    echo "FAIL: loadgen ($codec)"; cat "$T/lg.err"; fail=1
  fi
  rm -f "$T/run/up.json"
done
# a peer from another namespace without the secret is refused; the worker keeps serving
printf 'garbage' | netns_exec n2 bash -c "cat >/dev/tcp/${NETNS_ADDR[n1]}/7000" 2>/dev/null
sleep 0.3
check "unauthenticated peer refused and logged" 'grep -q refused "$T/n1.log"'
check "still serving after the refused peer" 'netns_exec gw "$SEIFER" request --url "http://$gwa:8000" --model tiny --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1'
exit $fail
