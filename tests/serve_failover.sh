#!/usr/bin/env bash
# Failover under load (`seifer controller`, local driver, emulated links): a worker killed with
# kill -9 mid-stream and a worker that stops answering (SIGSTOP: missed heartbeats) lose no
# request and answer none twice (loadgen: failed 0; the gateway's request and answer counters
# match the load exactly); the time from the kill to the first answer of the new pipeline is
# printed. A returning node that brings no gain leaves the plan alone; a fast node that dies and
# returns moves the pipeline off it and back (gain above --replan-gain), again losing nothing. A
# cluster whose survivors cannot hold the model turns ready false and answers 503 with the
# reason, then serves again by itself when the node returns. `seifer down` stops everything.
set -u
SEIFER=$(readlink -f "$1")
NPYTOOL=$(readlink -f "$2")
T=$(mktemp -d)
fail=0
cleanup() {
  for d in "$T"/run*; do [ -d "$d" ] && "$SEIFER" down --dir "$d" >/dev/null 2>&1; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/tools/testlib.sh"
running() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
# wait_until SECONDS CONDITION
state() { jq -r "$1" "$RUN/controller.json" 2>/dev/null; }
metric_sum() { curl -s "$URL/metrics" | awk -v m="$1" 'index($1, m) == 1 && (length($1) == length(m) || substr($1, length(m) + 1, 1) == "{") {s += $2} END {printf "%d\n", s}'; }
node_pid() { state ".nodes[] | select(.name == \"$1\") | .pid"; }
records() { state "[.records[] | select(.kind == \"$1\")] | length"; }
record_what() { state "[.records[] | select(.kind == \"$1\")] | last | .what"; }
show_logs() { tail -n 12 "$RUN/logs/controller.log"; tail -n 3 "$RUN"/logs/*.log; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5}, {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5}, {"name": "n3", "memory_mb": 64, "gflops": 5},
           {"name": "n4", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
"$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null || { echo "FAIL: zoo"; exit 1; }
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null || { echo "FAIL: infer"; exit 1; }
source "$(dirname "$0")/tools/stages.sh"
ref="$T/ref/$(stages_safe "$output").npy"

start_controller() { # DIR CLUSTER extra args...
  local dir=$1 cluster=$2
  shift 2
  mkdir -p "$dir/logs"
  "$SEIFER" controller --cluster "$cluster" --model "$T/m.onnx" --name tiny --dir "$dir" --listen 127.0.0.1:0 \
    "$@" >>"$dir/logs/controller.log" 2>&1 &
}

# load LABEL SECONDS: loadgen in the background into $T/lg-LABEL.json
load() { "$SEIFER" loadgen --url "$URL" --model tiny --input "$T/in.npy" --duration "$2" --concurrency 8 --binary \
           --json >"$T/lg-$1.json" 2>"$T/lg-$1.err" & LG=$!; }

# ---- kill -9 of a stage's worker under load ----------------------------------------------------
RUN=$T/run
start_controller "$RUN" "$T/cluster.json"
if ! wait_until 30 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
URL=$(state .url)
nst=$(state '.pipeline.stages | length')
check "plan has >= 2 stages and leaves a spare node (stages: $nst of 5 nodes)" '[ "$nst" -ge 2 ] && [ "$nst" -lt 5 ]'
check "output through the pipeline equals the whole model" '"$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out.npy" "$ref" 1e-5 >/dev/null'

req0=$(metric_sum seifer_requests_total); ans0=$(metric_sum seifer_responses_total)
victim=$(state '.pipeline.stages[1].node')
vpid=$(node_pid "$victim")
load kill 8
sleep 2
t_kill=$(date +%s.%N)
kill -9 "$vpid"
wait $LG
check "kill -9: loadgen ran (exit 0)" '[ -s "$T/lg-kill.json" ]'
check "kill -9 of $victim under load: no request failed ($(jq -c '{requests, failed, errors}' "$T/lg-kill.json" 2>/dev/null))" \
  'jq -e ".failed == 0 and .requests == .ok and .requests > 100" "$T/lg-kill.json" >/dev/null'
req1=$(metric_sum seifer_requests_total); ans1=$(metric_sum seifer_responses_total)
n=$(jq .requests "$T/lg-kill.json" 2>/dev/null)
check "every request reached the gateway once and was answered once ($((req1 - req0)) requests, $((ans1 - ans0)) answers, loadgen $n)" \
  '[ $((req1 - req0)) = "$n" ] && [ $((ans1 - ans0)) = "$n" ]'
pipe=$(state '[.records[] | select(.kind == "failover")] | last | .pipeline')
check "a failover was recorded" '[ -n "$pipe" ] && [ "$pipe" != null ]'
check "the new pipeline avoids $victim" '! state ".pipeline.stages[].node" | grep -qx "$victim"'
first=$(curl -s "$URL/metrics" | awk -v p="pipeline=\"$pipe\"" '/^seifer_pipeline_first_answer_timestamp_seconds/ && index($1, p) {print $2}')
if [ -n "$first" ]; then
  echo "recovery: kill -9 of $victim -> first answer from pipeline $pipe in $(awk -v a="$t_kill" -v b="$first" 'BEGIN {printf "%.3f", b - a}') s" \
       "(controller: detected and switched in $(state '[.records[] | select(.kind == "failover")] | last | .seconds * 1000 | round') ms)"
else
  echo "FAIL: no first answer recorded for pipeline $pipe"; fail=1
fi
check "the killed worker is restarted (back-off) and rejoins as a spare" \
  'wait_until 15 "[ \"\$(state \".nodes[] | select(.name == \\\"$victim\\\") | .up\")\" = true ]"'
pipe_now=$(state .pipeline.id)
sleep 1
check "its return gains nothing: the plan stays (pipeline $pipe_now)" '[ "$(state .pipeline.id)" = "$pipe_now" ] && [ "$(records replan)" = 0 ]'
check "output after the failover equals the whole model" '"$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out2.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out2.npy" "$ref" 1e-5 >/dev/null'

# ---- a worker that stops answering (missed heartbeats) -------------------------------------------
victim=$(state '.pipeline.stages[0].node')
vpid=$(node_pid "$victim")
nrec=$(state '[.records[] | select(.kind == "failover")] | length')
load stop 6
sleep 1.5
kill -STOP "$vpid"
check "SIGSTOP of $victim: failover after missed heartbeats" \
  "wait_until 10 '[ \"\$(state \"[.records[] | select(.kind == \\\"failover\\\")] | length\")\" -gt $nrec ]'"
check "the controller saw the missed heartbeats" 'grep -q "node $victim down: no heartbeat" "$RUN/logs/controller.log"'
wait $LG
kill -CONT "$vpid"
check "SIGSTOP under load: no request failed ($(jq -c '{requests, failed, errors}' "$T/lg-stop.json" 2>/dev/null))" \
  'jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg-stop.json" >/dev/null'
check "the stopped worker, resumed, is adopted back (not restarted)" \
  "wait_until 10 '[ \"\$(state \".nodes[] | select(.name == \\\"$victim\\\") | .up\")\" = true ] && [ \"\$(node_pid $victim)\" = $vpid ]'"

# ---- a fast node dies and returns: the plan moves off it and back (gain above 10 %) --------------
cat >"$T/c3.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 2}, {"name": "fast", "memory_mb": 64, "gflops": 40},
           {"name": "s1", "memory_mb": 64, "gflops": 2}, {"name": "s2", "memory_mb": 64, "gflops": 2}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
RUN=$T/run3
start_controller "$RUN" "$T/c3.json"
if wait_until 30 '[ "$(state .status)" = serving ]'; then
  URL=$(state .url)
  check "the plan uses the fast node" 'state ".pipeline.stages[].node" | grep -qx fast'
  load fast 6
  sleep 1.5
  kill -9 "$(node_pid fast)"
  check "without it the pipeline moves to the slow nodes" 'wait_until 10 "[ \"\$(records failover)\" = 1 ]"'
  check "when it returns the plan moves back (a gain above --replan-gain)" 'wait_until 15 "[ \"\$(record_what replan)\" = fast ]"'
  wait $LG
  check "fast node lost and back under load: no request failed ($(jq -c '{requests, failed, errors}' "$T/lg-fast.json" 2>/dev/null))" \
    'jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg-fast.json" >/dev/null'
else
  echo "FAIL: third controller did not start serving"; show_logs; fail=1
fi

# ---- survivors cannot hold the model: 503 with the reason, then back by itself -------------------
cat >"$T/c2.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_bytes": 1000, "gflops": 5}, {"name": "big", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
RUN=$T/run2
start_controller "$RUN" "$T/c2.json" --restart-ms 3000
if wait_until 30 '[ "$(state .status)" = serving ]'; then
  URL=$(state .url)
  kill -9 "$(node_pid big)"
  check "ready turns false with the reason" 'wait_until 3 "curl -s \"$URL/v2/health/ready\" | jq -e \".ready == false and (.reason | test(\\\"does not fit\\\"))\" >/dev/null"'
  "$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" --timeout 5 >"$T/body" 2>&1
  check "infer answers 503 with the reason at once ($(head -c 300 "$T/body"))" 'grep -q "HTTP 503: model unavailable: the model does not fit" "$T/body"'
  check "state says unavailable" '[ "$(state .status)" = unavailable ]'
  check "serving again by itself when the node returns" 'wait_until 20 "curl -sf \"$URL/v2/health/ready\" >/dev/null"'
  check "output after the return equals the whole model" '"$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out3.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/out3.npy" "$ref" 1e-5 >/dev/null'
else
  echo "FAIL: second controller did not start serving"; show_logs; fail=1
fi

# ---- down stops the controller, the gateway and every worker -------------------------------------
for RUN in "$T/run" "$T/run2" "$T/run3"; do
  pids="$(state '.controller_pid, .gateway.pid, (.nodes[].pid // empty)')"
  check "down ($RUN)" '"$SEIFER" down --dir "$RUN" >/dev/null'
  for p in $pids; do check "process $p stopped" '! running $p'; done
done
[ $fail = 0 ] || { RUN=$T/run; show_logs; }
exit $fail
