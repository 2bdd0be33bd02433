#!/usr/bin/env bash
# The controller measures the links itself: one network namespace per node, tc shaping two pairs
# at 20 Mbit/s (the others 200), while the cluster file the controller gets claims 1000 Mbit/s
# everywhere. After start DIR/controller.json must list every pair as measured within 10% of the
# goodput tc allows (0.956 x the rate: docs/probe.md), and the pipeline must keep activations of
# 4 KB or more off the slow pairs (on the file's links the best plan sends them over one) and
# predict what the best plan on the true links and the measured node speeds predicts. A worker killed with -9 comes back and only its pairs are
# probed again; a restarted controller keeps the measured links instead of probing under the
# pipeline's traffic. Needs root (skipped otherwise).
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
pair() { state ".links.pairs[] | select(.from == \"$1\" and .to == \"$2\") | $3"; }
show_logs() { tail -n 30 "$T/controller.log"; tail -n 3 "$T"/run/logs/*.log; }

# what tc shapes (the truth) and what the controller is told (wrong: 1000 Mbit/s everywhere)
cat >"$T/truth.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5}, {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5}, {"name": "n3", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200},
 "links": [{"from": "gw", "to": "n1", "mbps": 20}, {"from": "n2", "to": "n3", "mbps": 20}],
 "gateway": "gw"}
JSON
netns_up "$T/truth.json" || { echo "FAIL: namespaces"; exit 1; }
netns_addresses "$T/truth.json" "$T/wrong.json" 'del(.links) | .default_link = {"mbps": 1000, "rtt_ms": 1}'
netns_wrap "$T/wrap.sh"

"$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"
slow() { case "$1-$2" in gw-n1 | n1-gw | n2-n3 | n3-n2) return 0 ;; esac; return 1; }
# the hops of a plan listed as "node node ..." that carry activations: the gateway (on gw) to the
# first stage and between stages (the last stage's output, 40 bytes, may take a slow pair)
uses_slow() {
  local prev=gw n
  for n in $1; do
    if [ "$prev" != "$n" ] && slow "$prev" "$n"; then return 0; fi
    prev=$n
  done
  return 1
}
# the serving pipeline sends an activation of 4 KB or more over a slow pair (a small tail, e.g.
# the pooled features, may take one: with measured compute a near-tie decides where it runs)
cut_bytes() { jq -r --argjson p "$1" '.candidate_cuts[] | select(.position == $p) | .bytes' "$T/plan-file.json"; }
heavy_slow() {
  local prev=gw k=0 n b
  for n in $(state '.pipeline.stages[].node'); do
    b=$(cut_bytes "$(state ".pipeline.stages[$k].ops[0]")")
    if [ "$prev" != "$n" ] && slow "$prev" "$n" && [ "${b%.*}" -ge 4096 ]; then return 0; fi
    prev=$n
    k=$((k + 1))
  done
  return 1
}
file_plan=$("$SEIFER" plan "$T/m.onnx" "$T/wrong.json" --explain -o "$T/plan-file.json" >/dev/null 2>&1 &&
  jq -r '[.stages[].node] | join(" ")' "$T/plan-file.json")
check "on the file's links the best plan uses a slow pair (it matters): ${file_plan:-none}" 'uses_slow "$file_plan"'

gwa=${NETNS_ADDR[gw]}
t_start=$(date +%s.%N)
netns_exec gw "$SEIFER" controller --cluster "$T/wrong.json" --model "$T/m.onnx" --name tiny --dir "$T/run" \
  --listen "$gwa:8000" --wrap "$T/wrap.sh" --probe-seconds 0.3 --restart-ms 300 >"$T/controller.log" 2>&1 &
if ! wait_until 40 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
echo "serving $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s after start"

printf '%-4s %-4s %6s %9s %9s %6s\n' from to tc goodput measured file
for a in "${NETNS_NODES[@]}"; do
  for b in "${NETNS_NODES[@]}"; do
    [ "$a" = "$b" ] && continue
    tc_mbps=$(netns_rate "$T/truth.json" "$a" "$b")
    want=$(awk -v r="$tc_mbps" 'BEGIN { printf "%.3f", r * 1448 / 1514 }')
    got=$(pair "$a" "$b" .mbps)
    printf '%-4s %-4s %6s %9s %9s %6s\n' "$a" "$b" "$tc_mbps" "$want" "${got:-none}" "$(pair "$a" "$b" .file_mbps)"
    check "$a -> $b: measured" '[ "$(pair "$a" "$b" .source)" = measured ]'
    check "$a -> $b: ${got:-none} Mbit/s in controller.json within 10% of the goodput $want of tc's $tc_mbps" \
      'within "${got:-0}" "$want" 0.10'
  done
done
check "RTTs measured" '[ "$(state "[.links.pairs[] | select(.rtt_ms > 0 and .rtt_ms < 50)] | length")" = 12 ]'
nodes=$(state '[.pipeline.stages[].node] | join(" ")')
echo "pipeline on the measured links: $nodes (on the file's: $file_plan); bytes into each stage:" \
  "$(for k in $(state '.pipeline.stages | keys[]'); do cut_bytes "$(state ".pipeline.stages[$k].ops[0]")"; done | tr '\n' ' ')"
check "the pipeline sends no activation of 4 KB or more over a slow pair ($nodes)" '! heavy_slow'
# the best plan on the true links and the node speeds the controller measured (compute probes)
jq --slurpfile st "$T/run/controller.json" \
  '.nodes |= map(.name as $n | .gflops = ($st[0].nodes[] | select(.name == $n) | .gflops))' \
  "$T/truth.json" >"$T/truth-speeds.json"
true_tp=$("$SEIFER" plan "$T/m.onnx" "$T/truth-speeds.json" -o "$T/plan-true.json" >/dev/null 2>&1 &&
  jq -r '.throughput_per_s // .predicted_throughput_per_s // empty' "$T/plan-true.json")
tp=$(state .pipeline.predicted_throughput_per_s)
check "predicted throughput $tp/s within 10% of the best plan's on the true links and measured speeds (${true_tp:-none}/s)" \
  'within "$tp" "${true_tp:-0}" 0.10'
check "a request is answered" \
  'netns_exec gw "$SEIFER" request --url "http://$gwa:8000" --model tiny --input "$T/in.npy" -o "$T/out.npy" >/dev/null 2>&1'

# a returning node: only its pairs are probed again
victim=n3
before=$(pair n1 n2 .measured_at)
t_kill=$(date +%s.%N)
kill -9 "$(state ".nodes[] | select(.name == \"$victim\") | .pid")"
check "$victim comes back" "wait_until 20 '[ \"\$(state \".nodes[] | select(.name == \\\"$victim\\\") | .up\")\" = true ] && grep -q \"links re-probed\" \"$T/controller.log\"'" || show_logs
check "its pairs measured again" \
  '[ "$(state "[.links.pairs[] | select((.from == \"$victim\" or .to == \"$victim\") and .measured_at > $t_kill)] | length")" = 6 ]'
check "the other pairs not probed again" '[ "$(pair n1 n2 .measured_at)" = "$before" ]'
check "n2 -> $victim still measured slow" 'within "$(pair n2 "$victim" .mbps)" 19.13 0.10'
nodes=$(state '[.pipeline.stages[].node] | join(" ")')
check "the pipeline still sends no activation of 4 KB or more over a slow pair ($nodes)" '! heavy_slow'
check "a request is answered after the return" \
  'netns_exec gw "$SEIFER" request --url "http://$gwa:8000" --model tiny --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1'

# a restarted controller adopts the pipeline and keeps the measured links
cpid=$(state .controller_pid)
kill "$cpid"
wait_until 10 "! kill -0 $cpid" || echo "FAIL: the controller did not stop"
mv "$T/controller.log" "$T/controller-1.log"
netns_exec gw "$SEIFER" controller --cluster "$T/wrong.json" --model "$T/m.onnx" --name tiny --dir "$T/run" \
  --listen "$gwa:8000" --wrap "$T/wrap.sh" --probe-seconds 0.3 --restart-ms 300 >"$T/controller.log" 2>&1 &
check "restarted controller adopts the pipeline" 'wait_until 20 "grep -q \"adopted pipeline\" \"$T/controller.log\""' || show_logs
check "restarted controller probes nothing: 12 pairs kept from the state file" \
  'grep -q "links: 12 pairs measured earlier kept from the state file, none to probe" "$T/controller.log"'
measured() { state '[.links.pairs[] | select(.source == "measured")] | length'; }
check "the measured links stay in controller.json" \
  'wait_until 5 "[ \"\$(measured)\" = 12 ]" && [ "$(pair n1 n2 .measured_at)" = "$before" ]'
check "a request is answered after the restart" \
  'netns_exec gw "$SEIFER" request --url "http://$gwa:8000" --model tiny --input "$T/in.npy" -o "$T/out3.npy" >/dev/null 2>&1'
[ $fail = 0 ] || show_logs
exit $fail
