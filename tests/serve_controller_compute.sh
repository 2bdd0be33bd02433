#!/usr/bin/env bash
# The controller measures each node's compute speed on the model's own stages instead of trusting
# the cluster file. Four workers on loopback; the cluster file claims n1 is 10x faster than the
# others, while n1's worker really runs in a CPU cgroup capped at 5% of one core (about 20x
# slower than the others). After start DIR/controller.json must list every node's speed as
# measured, n1's far below the others, and the serving pipeline must give n1 a small share of the
# model's FLOPs (on the file's speeds the best plan gives it most of them). Then n1's worker is
# killed, its cap lifted while it is down: on its return its speed is measured again and the
# plan moves work onto it (the gain is far above --replan-gain); a restarted controller keeps the
# measured speeds instead of timing stages under the pipeline's traffic. Needs root and the
# cgroup v1 cpu controller (skipped otherwise).
set -u
SEIFER=$(readlink -f "$1")
NPYTOOL=$(readlink -f "$2")
[ "$(id -u)" = 0 ] || { echo "skip: needs root"; exit 77; }
command -v jq >/dev/null || { echo "skip: needs jq"; exit 77; }
source "$(dirname "$0")/tools/cpucap.sh"
cpucap_up 5 || exit 77 # n1 at 5% of one core
T=$(mktemp -d)
fail=0
cleanup() {
  [ -f "$T/run/controller.json" ] && "$SEIFER" down --dir "$T/run" >/dev/null 2>&1
  pkill -9 -f "$T/run" 2>/dev/null
  cpucap_down
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/tools/testlib.sh"
state() { jq -r "$1" "$T/run/controller.json" 2>/dev/null; }
node() { state ".nodes[] | select(.name == \"$1\") | $2"; }
show_logs() { tail -n 40 "$T/controller.log"; tail -n 3 "$T"/run/logs/*.log; }
# share of the model's FLOPs on node $2 in a list of "node compute_s gflops" lines ($1)
share() { awk -v n="$2" '{ f = $2 * $3; t += f; if ($1 == n) s += f } END { printf "%.3f", (t > 0 ? s / t : 0) }' <<<"$1"; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 512, "gflops": 10, "address": "127.0.0.1:0"},
           {"name": "n1", "memory_mb": 512, "gflops": 100, "address": "127.0.0.1:0"},
           {"name": "n2", "memory_mb": 512, "gflops": 10, "address": "127.0.0.1:0"},
           {"name": "n3", "memory_mb": 512, "gflops": 10, "address": "127.0.0.1:0"}],
 "default_link": {"mbps": 10000, "rtt_ms": 0.05}, "gateway": "gw"}
JSON
cpucap_wrap "$T/wrap.sh" n1

"$SEIFER" zoo mobilenetv2 -o "$T/m.onnx" >/dev/null
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null || { echo "FAIL: infer"; exit 1; }
source "$(dirname "$0")/tools/stages.sh"
ref="$T/ref/$(stages_safe "$output").npy"
"$SEIFER" plan "$T/m.onnx" "$T/cluster.json" -o "$T/plan-file.json" >/dev/null
file_share=$(share "$(jq -r '.stages[] | "\(.node) \(.compute_s)"' "$T/plan-file.json" | while read -r n s; do
  echo "$n $s $(jq -r ".nodes[] | select(.name == \"$n\") | .gflops" "$T/cluster.json")"; done)" n1)
check "on the file's speeds the best plan gives n1 most of the FLOPs ($file_share)" \
  'awk -v s="$file_share" "BEGIN { exit !(s > 0.5) }"'

port=$((20000 + RANDOM % 20000))
t_start=$(date +%s.%N)
"$SEIFER" controller --cluster "$T/cluster.json" --model "$T/m.onnx" --name mb --dir "$T/run" \
  --listen "127.0.0.1:$port" --wrap "$T/wrap.sh" --restart-ms 300 --probe-seconds 0.1 >"$T/controller.log" 2>&1 &
if ! wait_until 90 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
echo "serving $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s after start"
grep "compute (GFLOP/s)" "$T/controller.log" | sed 's/.*compute/compute/'
for n in gw n1 n2 n3; do
  check "$n: speed measured" '[ "$(node $n .speed_source)" = measured ]'
done
g1=$(node n1 .gflops)
g_other=$(state '[.nodes[] | select(.name != "n1") | .gflops] | sort | .[1]')
echo "measured GFLOP/s: n1 $g1, the others' median $g_other (file: 100 and 10)"
check "n1 measured far slower than the others ($g1 vs $g_other GFLOP/s)" \
  'awk -v a="$g1" -v b="$g_other" "BEGIN { exit !(a > 0 && b > 0 && a / b < 0.35) }"'
pipe() { state '.pipeline.stages[] | .node + " " + (.compute_s | tostring)' | while read -r n s; do echo "$n $s $(node "$n" .gflops)"; done; }
meas_share=$(share "$(pipe)" n1)
echo "n1's share of the FLOPs: $meas_share on the measured speeds, $file_share on the file's"
check "the pipeline gives the slow n1 a small share of the FLOPs ($meas_share)" \
  'awk -v s="$meas_share" "BEGIN { exit !(s < 0.2) }"'
check "a request is answered correctly" \
  '"$SEIFER" request --url "http://127.0.0.1:$port" --model mb --input "$T/in.npy" -o "$T/out.npy" >/dev/null 2>&1 &&
   "$NPYTOOL" cmp "$T/out.npy" "$ref" 1e-4 >/dev/null'

# n1 returns without its cap: its speed is measured again and the plan moves work onto it
t_kill=$(date +%s.%N)
cpucap_set max
kill -9 "$(node n1 .pid)"
check "n1 comes back and is timed again" \
  "wait_until 40 '[ \"\$(node n1 .up)\" = true ] && awk -v t=\"\$(node n1 .speed_measured_at)\" -v k=$t_kill \"BEGIN { exit !(t > k) }\"'" || show_logs
g1b=$(node n1 .gflops)
echo "n1 after its return: $g1b GFLOP/s"
check "n1 now measured much faster than with its cap ($g1b vs $g1; the others $g_other)" \
  'awk -v a="$g1b" -v c="$g1" -v b="$g_other" "BEGIN { exit !(a / b > 0.3 && a > 5 * c) }"'
check "the plan changed to use n1 (a replan record after the return)" \
  "wait_until 20 '[ \"\$(state \"[.records[] | select(.kind == \\\"replan\\\" and .started_at > $t_kill)] | length\")\" -ge 1 ]'" || show_logs
share2=$(share "$(pipe)" n1)
echo "n1's share of the FLOPs after the re-plan: $share2"
check "n1 carries a larger share now ($share2 > $meas_share)" 'awk -v a="$share2" -v b="$meas_share" "BEGIN { exit !(a > b + 0.05) }"'
check "a request is answered after the re-plan" \
  '"$SEIFER" request --url "http://127.0.0.1:$port" --model mb --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1 &&
   "$NPYTOOL" cmp "$T/out2.npy" "$ref" 1e-4 >/dev/null'

# a restarted controller keeps the measured speeds
at=$(node n2 .speed_measured_at)
cpid=$(state .controller_pid)
kill "$cpid"
wait_until 10 "! kill -0 $cpid" || echo "FAIL: the controller did not stop"
mv "$T/controller.log" "$T/controller-1.log"
"$SEIFER" controller --cluster "$T/cluster.json" --model "$T/m.onnx" --name mb --dir "$T/run" \
  --listen "127.0.0.1:$port" --wrap "$T/wrap.sh" --restart-ms 300 --probe-seconds 0.1 >"$T/controller.log" 2>&1 &
check "restarted controller adopts the pipeline" 'wait_until 20 "grep -q \"adopted pipeline\" \"$T/controller.log\""' || show_logs
check "restarted controller times no stage" '! grep -q "GFLOP/s measured" "$T/controller.log"'
check "the measured speeds stay in controller.json" \
  'wait_until 5 "[ \"\$(node n2 .speed_source)\" = measured ]" && [ "$(node n2 .speed_measured_at)" = "$at" ]'
[ $fail = 0 ] || show_logs
exit $fail
