#!/usr/bin/env bash
# Failover on real links: one network namespace per node on a tc-shaped bridge
# (tests/tools/netns.sh); `seifer controller` runs in the gateway node's namespace and starts
# every worker in its own node's namespace through --wrap (ip netns exec). Under load from
# `seifer loadgen`: kill -9 of a stage's worker, and a link cut (`ip link set eth0 down` in a
# stage node's namespace: no RST, only missed heartbeats), lose no request; the time from the
# fault to the first answer of the new pipeline is printed. When the cut link comes back the
# node rejoins (same process) and the plan does not change. Needs root (skipped otherwise).
set -u
SEIFER=$(readlink -f "$1")
NPYTOOL=$(readlink -f "$2")
source "$(dirname "$0")/tools/netns.sh"
netns_can_run || exit 77
T=$(mktemp -d)
fail=0
trap 'netns_down; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
source "$(dirname "$0")/tools/testlib.sh"
state() { jq -r "$1" "$T/run/controller.json" 2>/dev/null; }
node_pid() { state ".nodes[] | select(.name == \"$1\") | .pid"; }
failovers() { state '[.records[] | select(.kind == "failover")] | length'; }
show_logs() { tail -n 15 "$T/controller.log"; tail -n 3 "$T"/run/logs/*.log; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5}, {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5}, {"name": "n3", "memory_mb": 64, "gflops": 5},
           {"name": "n4", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
netns_up "$T/cluster.json" || { echo "FAIL: namespaces"; exit 1; }
netns_addresses "$T/cluster.json" "$T/cluster-addr.json"
netns_wrap "$T/wrap.sh"

"$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
"$NPYTOOL" image "$T/in.npy" "$shape"
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null
source "$(dirname "$0")/tools/stages.sh"
ref="$T/ref/$(stages_safe "$output").npy"

gwa=${NETNS_ADDR[gw]}
URL="http://$gwa:8000"
netns_exec gw "$SEIFER" controller --cluster "$T/cluster-addr.json" --model "$T/m.onnx" --name tiny --dir "$T/run" \
  --listen "$gwa:8000" --wrap "$T/wrap.sh" >"$T/controller.log" 2>&1 &
if ! wait_until 30 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
check "output through the namespaced pipeline equals the whole model" \
  'netns_exec gw "$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out.npy" "$ref" 1e-5 >/dev/null'
check "workers run in their nodes' namespaces" \
  '[ "$(ip netns identify "$(node_pid n1)")" = "${NETNS_NS[n1]}" ] && [ "$(ip netns identify "$(state .gateway.pid)")" = "${NETNS_NS[gw]}" ]'

load() { netns_exec gw "$SEIFER" loadgen --url "$URL" --model tiny --input "$T/in.npy" --duration "$2" --concurrency 8 \
           --binary --json >"$T/lg-$1.json" 2>"$T/lg-$1.err" & LG=$!; }
recovery() { # LABEL T_FAULT
  local pipe first
  pipe=$(state '[.records[] | select(.kind == "failover")] | last | .pipeline')
  first=$(netns_exec gw curl -s --noproxy '*' "$URL/metrics" | awk -v p="pipeline=\"$pipe\"" '/^seifer_pipeline_first_answer_timestamp_seconds/ && index($1, p) {print $2}')
  echo "recovery ($1): first answer from pipeline $pipe $(awk -v a="$2" -v b="$first" 'BEGIN {printf "%.3f", b - a}') s after the fault"
}

# ---- kill -9 ------------------------------------------------------------------------------------
victim=$(state '.pipeline.stages[1].node')
n0=$(failovers)
load kill 6
sleep 1.5
t=$(date +%s.%N)
kill -9 "$(node_pid "$victim")"
check "kill -9 of $victim: failover" "wait_until 10 '[ \$(failovers) -gt $n0 ]'"
wait $LG
check "kill -9 under load: no request failed ($(jq -c '{requests, failed, errors}' "$T/lg-kill.json" 2>/dev/null))" \
  'jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg-kill.json" >/dev/null'
recovery "kill -9 of $victim" "$t"
check "the killed worker is restarted in its namespace" \
  "wait_until 15 '[ \"\$(state \".nodes[] | select(.name == \\\"$victim\\\") | .up\")\" = true ]'"

# ---- link cut -----------------------------------------------------------------------------------
victim=$(state '[.pipeline.stages[].node | select(. != "gw")] | first')
vpid=$(node_pid "$victim")
n0=$(failovers)
load cut 8
sleep 1.5
t=$(date +%s.%N)
ip -n "${NETNS_NS[$victim]}" link set eth0 down
check "link cut of $victim: failover after missed heartbeats" "wait_until 10 '[ \$(failovers) -gt $n0 ]'"
pipe_after=$(state .pipeline.id)
sleep 1
ip -n "${NETNS_NS[$victim]}" link set eth0 up
wait $LG
check "link cut under load: no request failed ($(jq -c '{requests, failed, errors}' "$T/lg-cut.json" 2>/dev/null))" \
  'jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg-cut.json" >/dev/null'
recovery "link cut of $victim" "$t"
check "the node rejoins when its link returns (same process)" \
  "wait_until 20 '[ \"\$(state \".nodes[] | select(.name == \\\"$victim\\\") | .up\")\" = true ]' && [ \"\$(node_pid $victim)\" = $vpid ]"
sleep 2
check "its return does not change the plan (pipeline $pipe_after)" '[ "$(state .pipeline.id)" = "$pipe_after" ]'
check "output after the faults equals the whole model" \
  'netns_exec gw "$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out2.npy" "$ref" 1e-5 >/dev/null'
[ $fail = 0 ] || show_logs
exit $fail
