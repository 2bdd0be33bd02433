#!/usr/bin/env bash
# A link between two stages breaks while both nodes still reach the controller: heartbeats keep
# flowing, the pipeline does not. One network namespace per node (tests/tools/netns.sh); the
# controller runs in the gateway node's namespace; the nodes are too small for the whole model
# (40 MB each; the gateway node holds no stage), so the pipeline has stages on two other nodes in
# a row. Under load from `seifer loadgen`, a blackhole route in the first stage's namespace cuts
# its link to the second stage (one direction, one pair). The gateway's oldest unanswered request
# ages past the stall limit; the controller probes the pipeline's hops, finds the broken one,
# re-plans around it and the gateway replays what it held: no request fails, the new pipeline
# does not use that pair, the time from the cut to the first answer of the new pipeline is
# printed. When the route is removed the link is probed again and planned at its rate. Needs
# root (skipped otherwise).
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
failovers() { state '[.records[] | select(.kind == "failover")] | length'; }
show_logs() { tail -n 25 "$T/controller.log"; tail -n 3 "$T"/run/logs/*.log; }
# "a b c": the pipeline's hops as "from>to" words, gateway node included
hops() { local prev=gw n out=""; for n in $1 gw; do [ "$prev" != "$n" ] && out="$out $prev>$n"; prev=$n; done; echo "$out"; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 8, "gflops": 50}, {"name": "n1", "memory_mb": 40, "gflops": 50},
           {"name": "n2", "memory_mb": 40, "gflops": 50}, {"name": "n3", "memory_mb": 40, "gflops": 50},
           {"name": "n4", "memory_mb": 40, "gflops": 50}],
 "default_link": {"mbps": 1000, "rtt_ms": 0.2}, "gateway": "gw"}
JSON
netns_up "$T/cluster.json" || { echo "FAIL: namespaces"; exit 1; }
netns_addresses "$T/cluster.json" "$T/cluster-addr.json"
netns_wrap "$T/wrap.sh"

"$SEIFER" zoo mobilenetv2 -o "$T/m.onnx" >/dev/null
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
"$NPYTOOL" image "$T/in.npy" "$shape"
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null
source "$(dirname "$0")/tools/stages.sh"
ref="$T/ref/$(stages_safe "$output").npy"

gwa=${NETNS_ADDR[gw]}
URL="http://$gwa:8000"
netns_exec gw "$SEIFER" controller --cluster "$T/cluster-addr.json" --model "$T/m.onnx" --name mb --dir "$T/run" \
  --listen "$gwa:8000" --wrap "$T/wrap.sh" --probe-seconds 0.1 >"$T/controller.log" 2>&1 &
if ! wait_until 60 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
nodes=$(state '[.pipeline.stages[].node] | join(" ")')
echo "pipeline on $nodes"
a=$(state '.pipeline.stages[0].node')
b=$(state '.pipeline.stages[1].node // empty')
if [ -z "$b" ] || [ "$a" = gw ] || [ "$b" = gw ]; then echo "FAIL: expected two stages in a row on non-gateway nodes: $nodes"; show_logs; exit 1; fi
check "output through the pipeline equals the whole model" \
  'netns_exec gw "$SEIFER" request --url "$URL" --model mb --input "$T/in.npy" -o "$T/out.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out.npy" "$ref" 1e-4 >/dev/null'

n0=$(failovers)
pipe0=$(state .pipeline.id)
netns_exec gw "$SEIFER" loadgen --url "$URL" --model mb --input "$T/in.npy" --duration 10 --concurrency 6 \
  --binary --json >"$T/lg.json" 2>"$T/lg.err" &
LG=$!
sleep 2
t=$(date +%s.%N)
ip -n "${NETNS_NS[$a]}" route add blackhole "${NETNS_ADDR[$b]}/32"
check "the broken link $a -> $b is found and the pipeline re-planned" \
  "wait_until 20 '[ \$(failovers) -gt $n0 ] && grep -q \"link $a -> $b broken\" \"$T/controller.log\"'" || show_logs
nodes2=$(state '[.pipeline.stages[].node] | join(" ")')
echo "pipeline after the break: $nodes2 (hops:$(hops "$nodes2"))"
check "the new pipeline does not use $a -> $b" '! grep -qw "$a>$b" <<<"$(hops "$nodes2")"'
check "both nodes stayed up" '[ "$(state "[.nodes[] | select(.name == \"$a\" or .name == \"$b\") | .up] | all")" = true ]'
check "controller.json marks the pair broken" \
  '[ "$(state ".links.pairs[] | select(.from == \"$a\" and .to == \"$b\") | .broken_at > 0")" = true ]'
wait $LG
check "no request failed ($(jq -c '{requests, failed, errors}' "$T/lg.json" 2>/dev/null))" \
  'jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg.json" >/dev/null'
pipe=$(state '[.records[] | select(.kind == "failover")] | last | .pipeline')
first=$(netns_exec gw curl -s --noproxy '*' "$URL/metrics" | awk -v p="pipeline=\"$pipe\"" '/^seifer_pipeline_first_answer_timestamp_seconds/ && index($1, p) {print $2}')
echo "recovery (link $a -> $b broken): first answer from pipeline $pipe $(awk -v a="$t" -v b="$first" 'BEGIN {printf "%.3f", b - a}') s after the cut"
echo "controller: $(grep -m1 "stalled" "$T/controller.log" | sed 's/.*controller: //')"

# the link returns: probed again, planned at its rate, no churn required
ip -n "${NETNS_NS[$a]}" route del blackhole "${NETNS_ADDR[$b]}/32"
check "the link answers again" "wait_until 30 'grep -q \"link $a -> $b answers again\" \"$T/controller.log\"'" || show_logs
check "controller.json no longer marks it broken" \
  'wait_until 5 "[ \"\$(state \".links.pairs[] | select(.from == \\\"$a\\\" and .to == \\\"$b\\\") | has(\\\"broken_at\\\")\")\" = false ]"'
check "output after the break equals the whole model" \
  'netns_exec gw "$SEIFER" request --url "$URL" --model mb --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out2.npy" "$ref" 1e-4 >/dev/null'
[ "$(state .pipeline.id)" != "$pipe0" ] || { echo "FAIL: the pipeline never changed"; fail=1; }
[ $fail = 0 ] || show_logs
exit $fail
