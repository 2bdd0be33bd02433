#!/usr/bin/env bash
# Model versions and controller restarts under load (`seifer controller --repo`, local driver):
# a new version pushed with `seifer deploy` and one dropped into the watched repository roll out
# with no failed request, and once the switch is recorded no answer comes from the old version
# (the gateway's per-version answer counters); a corrupt version and one whose inputs differ are
# rejected with the reason while the serving one keeps answering; with no free nodes beside the
# serving pipeline the switch pauses requests instead of failing them; a restarted controller
# (SIGTERM or kill -9) adopts the running workers and gateway without failing a request.
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
state() { jq -r "$1" "$RUN/controller.json" 2>/dev/null; }
answers() { curl -s "$URL/metrics" | awk -v v="version=\"$1\"" '/^seifer_responses_total\{/ && index($1, v) {s += $2} END {printf "%d\n", s}'; }
show_logs() { tail -n 15 "$RUN/logs/controller.log"; tail -n 3 "$RUN"/logs/*.log; }
load() { "$SEIFER" loadgen --url "$URL" --model tiny --input "$T/in.npy" --duration "$2" --concurrency 8 --binary \
           --json >"$T/lg-$1.json" 2>"$T/lg-$1.err" & LG=$!; }
no_failures() { jq -e ".failed == 0 and .requests == .ok and .requests > 50" "$T/lg-$1.json" >/dev/null; }
lg_summary() { jq -c '{requests, failed, errors}' "$T/lg-$1.json" 2>/dev/null; }
start_controller() { # DIR CLUSTER
  mkdir -p "$1/logs"
  ("$SEIFER" controller --cluster "$2" --repo "$T/repo" --dir "$1" --listen 127.0.0.1:0 \
    >>"$1/logs/controller.log" 2>&1 &) # not a job of this shell: no "Killed" notice
}
# add a version to the repository the way a person would: copy beside, then rename into place
drop_version() { mkdir -p "$T/repo/tiny/.new" && cp "$1" "$T/repo/tiny/.new/model.onnx" && mv "$T/repo/tiny/.new" "$T/repo/tiny/$2"; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5}, {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5}, {"name": "n3", "memory_mb": 64, "gflops": 5},
           {"name": "n4", "memory_mb": 64, "gflops": 5}, {"name": "n5", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
"$SEIFER" zoo tiny-inception -o "$T/v1.onnx" >/dev/null || { echo "FAIL: zoo"; exit 1; }
"$SEIFER" zoo tiny-inception --seed 7 -o "$T/v2.onnx" >/dev/null
"$SEIFER" zoo tiny-cnn -o "$T/v3.onnx" >/dev/null
printf 'not an onnx model' >"$T/bad.onnx"
input=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.outputs[0].name')
shape=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"
source "$(dirname "$0")/tools/stages.sh"
for v in 1 2 3; do "$SEIFER" infer "$T/v$v.onnx" -i "$input=$T/in.npy" -o "$T/ref$v" >/dev/null; done
ref() { echo "$T/ref$1/$(stages_safe "$output").npy"; }
same_as() { "$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out.npy" >"$T/req.txt" 2>&1 &&
              grep -q "version $1:" "$T/req.txt" && "$NPYTOOL" cmp "$T/out.npy" "$(ref "$2")" 1e-5 >/dev/null; }
mkdir -p "$T/repo/tiny/1" && cp "$T/v1.onnx" "$T/repo/tiny/1/model.onnx"

RUN=$T/run
start_controller "$RUN" "$T/cluster.json"
if ! wait_until 30 '[ "$(state .status)" = serving ]'; then echo "FAIL: controller did not start serving"; show_logs; exit 1; fi
URL=$(state .url)
check "version 1 serves the model" 'same_as 1 1'

# ---- seifer deploy under load ------------------------------------------------------------------
load v2 7
sleep 1.5
if "$SEIFER" deploy --model "$T/v2.onnx" --version 2 --dir "$RUN" --timeout 30 >"$T/deploy.txt" 2>&1; then
  at_switch=$(answers 1)
  wait $LG
  check "rollout to version 2 under load: no request failed ($(lg_summary v2))" 'no_failures v2'
  check "no answer from version 1 after the switch ($at_switch at the switch, $(answers 1) at the end)" '[ "$(answers 1)" = "$at_switch" ]'
  check "version 2 answered" '[ "$(answers 2)" -gt 0 ]'
  check "version 2 computes the new model, and says so" 'same_as 2 2'
  echo "rollout: version 2 $(state '[.records[] | select(.kind == "rollout")] | last | "\(.mode) the serving pipeline, \(.seconds * 1000 | round) ms from validation to the switch"')"
else
  echo "FAIL: deploy version 2:"; cat "$T/deploy.txt"; show_logs; fail=1; wait $LG
fi

# ---- a version dropped into the watched repository (another architecture) -----------------------
load v3 6
sleep 1
drop_version "$T/v3.onnx" 3
check "version 3 from the repository serves" 'wait_until 20 "[ \"\$(state .version)\" = 3 ]"'
at_switch=$(answers 2)
wait $LG
check "rollout to version 3 under load: no request failed ($(lg_summary v3))" 'no_failures v3'
check "no answer from version 2 after the switch" '[ "$(answers 2)" = "$at_switch" ]'
check "version 3 computes its model" 'same_as 3 3'

# ---- bad versions are rejected; the serving one stays --------------------------------------------
load bad 5
sleep 0.5
check "a corrupt version is rejected by deploy with the reason" \
  '! "$SEIFER" deploy --model "$T/bad.onnx" --version 4 --dir "$RUN" --timeout 30 >/dev/null 2>"$T/deploy.err" && grep -q "rejected: does not load" "$T/deploy.err"'
check "the rejection is in the state file" 'state ".rejected[] | select(.version == \"4\") | .reason" | grep -q "does not load"'
relu=/usr/share/libonnx-testdata/data/node/test_relu/model.onnx
if [ -r "$relu" ]; then
  check "a version with other inputs is rejected" \
    '! "$SEIFER" deploy --model "$relu" --version 5 --dir "$RUN" --timeout 30 >/dev/null 2>"$T/deploy.err" && grep -q "inputs differ" "$T/deploy.err"'
fi
wait $LG
check "rejections under load: no request failed ($(lg_summary bad))" 'no_failures bad'
check "version 3 still serves" '[ "$(state .version)" = 3 ] && same_as 3 3'

# ---- controller restart: adoption without failing a request --------------------------------------
for sig in TERM KILL; do
  pids_before=$(state '[.nodes[].pid, .gateway.pid] | map(tostring) | join(" ")')
  cpid=$(state .controller_pid)
  load "restart-$sig" 6
  sleep 1.5
  kill -$sig "$cpid"
  wait_until 10 '! kill -0 $cpid'
  sleep 0.5
  start_controller "$RUN" "$T/cluster.json"
  check "restarted controller ($sig) is serving" 'wait_until 20 "[ \"\$(state .controller_pid)\" != $cpid ] && [ \"\$(state .status)\" = serving ]"'
  wait $LG
  check "controller restart ($sig) under load: no request failed ($(lg_summary "restart-$sig"))" "no_failures restart-$sig"
  check "the workers and the gateway were adopted, not restarted" '[ "$(state '"'"'[.nodes[].pid, .gateway.pid] | map(tostring) | join(" ")'"'"')" = "$pids_before" ]'
  check "nothing needed reconfiguring" '[ "$(grep -c "adopted pipeline .*: 0 of [0-9]* stages\? reconfigured, 0 shipped" "$RUN/logs/controller.log")" -ge 1 ]'
done
check "version 3 serves after the restarts" 'same_as 3 3'

# ---- no free nodes beside the serving pipeline: hold and switch ---------------------------------
cat >"$T/c2.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 1, "gflops": 5}, {"name": "big", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1}, "gateway": "gw"}
JSON
rm -rf "$T/repo"
mkdir -p "$T/repo/tiny/1" && cp "$T/v1.onnx" "$T/repo/tiny/1/model.onnx"
RUN=$T/run2
start_controller "$RUN" "$T/c2.json"
if wait_until 30 '[ "$(state .status)" = serving ]'; then
  URL=$(state .url)
  load switch 6
  sleep 1.5
  check "deploy onto the same node (switch)" '"$SEIFER" deploy --model "$T/v2.onnx" --version 2 --dir "$RUN" --timeout 30 >/dev/null 2>&1'
  at_switch=$(answers 1)
  wait $LG
  check "switch recorded as such" '[ "$(state "[.records[] | select(.kind == \"rollout\")] | last | .mode")" = switch ]'
  check "switch under load: no request failed ($(lg_summary switch))" 'no_failures switch'
  check "no answer from version 1 after the switch" '[ "$(answers 1)" = "$at_switch" ]'
  check "version 2 computes its model" 'same_as 2 2'
else
  echo "FAIL: second controller did not start serving"; show_logs; fail=1
fi
[ $fail = 0 ] || { RUN=$T/run; show_logs; }
exit $fail
