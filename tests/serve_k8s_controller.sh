#!/usr/bin/env bash
# `seifer controller --kubernetes` against the API server emulator with its kubelet (tests/kube):
# four emulated Nodes on 127.0.0.x, a SeiferModel whose uri is a file:// zoo model, two controller
# replicas with short Lease timings. Checks: the first deployment (stage Deployments with the
# planned memory, the gateway answers with the model's output), a Node turned NotReady (new
# stage Deployments applied, the figure printed), version bumps in the SeiferModel (the new
# version serves), a refused digest (reason in the status), a watch expiry with compaction,
# token rotation, and leader failover (kill -9 of the leader: the standby takes over and acts).
#   serve_k8s_controller.sh SEIFER NPYTOOL   (kubeemu beside npytool, or $KUBEEMU)
set -u
SEIFER=$(readlink -f "$1")
NPYTOOL=$(readlink -f "$2")
KUBEEMU=${KUBEEMU:-$(dirname "$NPYTOOL")/kubeemu}
for t in jq curl; do command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }; done
[ -x "$KUBEEMU" ] || { echo "SKIP: no kubeemu at $KUBEEMU"; exit 77; }
T=$(mktemp -d)
fail=0
PIDS=()
any_alive() { local p; for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
cleanup() {
  local p end=$((SECONDS + 30))
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  # kubeemu stops its kubelet's processes one by one (each drains): wait for it
  while [ $SECONDS -lt $end ] && any_alive; do sleep 0.1; done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in /proc/[0-9]*; do # anything still running from this test's directory
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$T/" && kill -9 "${p#/proc/}" 2>/dev/null
  done
  [ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/tools/testlib.sh"
now() { date +%s.%N; }
api() { # METHOD PATH [BODY [CONTENT-TYPE]]
  curl -s -X "$1" -H "Authorization: Bearer $(cat "$T/token")" -H "Content-Type: ${4:-application/json}" \
    ${3:+--data-binary "$3"} "$SERVER$2"
}
state() { jq -r "$2" "$T/$1/controller.json" 2>/dev/null; }
sfm() { api GET /apis/seifer.dev/v1alpha1/namespaces/seifer/seifermodels/tiny | jq -r "$1"; }
deployments() { api GET "/apis/apps/v1/namespaces/seifer/deployments?labelSelector=seifer.dev/model%3Dtiny"; }
on_node() { # a Deployment of the model is pinned to Node $1
  deployments | jq -e --arg n "$1" '[.items[] | .spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[].matchExpressions[].values[]] | index($n) != null' >/dev/null
}
# wait until controller NAME's pipeline has not changed for 2 s (plans settle as probes measure)
settle() { local p="" c same=0 end=$((SECONDS + 40)); while [ $same -lt 20 ] && [ $SECONDS -lt $end ]; do
  c=$(state "$1" .pipeline.id); if [ "$c" = "$p" ]; then same=$((same + 1)); else same=0; p=$c; fi; sleep 0.1; done; }
show_logs() { echo "--- controller a"; tail -n 25 "$T/a.log"; echo "--- controller b"; tail -n 15 "$T/b.log"; echo "--- kubeemu"; tail -n 10 "$T/emu.log"; }

# ---- the emulated cluster ------------------------------------------------------------------------
echo "tok-1" >"$T/token"
cp "$T/token" "$T/emu-tokens"
"$KUBEEMU" --listen 127.0.0.1:0 --token-file "$T/emu-tokens" --url-file "$T/url" \
  --kubelet "$SEIFER" --kubelet-dir "$T/kubelet" >"$T/emu.log" 2>&1 &
PIDS+=($!)
wait_until 10 '[ -s "$T/url" ]' || { echo "FAIL: kubeemu did not start"; cat "$T/emu.log"; exit 1; }
SERVER=$(cat "$T/url")
cat >"$T/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: emu
  cluster:
    server: $SERVER
contexts:
- name: emu
  context:
    cluster: emu
    user: ctl
    namespace: seifer
current-context: emu
users:
- name: ctl
  user:
    tokenFile: $T/token
EOF
api POST /emu/namespaces/seifer >/dev/null
"$SEIFER" keygen -o "$T/secret" >/dev/null
api POST /api/v1/namespaces/seifer/secrets \
  "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"seifer-cluster-secret\"},\"stringData\":{\"secret\":\"$(head -n 1 "$T/secret")\"}}" >/dev/null
for i in 1 2 3 4; do
  api POST /emu/nodes "{\"name\":\"edge-$i\",\"memory\":\"64Mi\",\"cpu\":\"1\",\"address\":\"127.0.0.$((30 + i))\",\"labels\":{\"seifer.dev/edge\":\"true\"}}" >/dev/null
done
# a node the SeiferModel's nodeSelector leaves out
api POST /emu/nodes '{"name":"other","memory":"8Gi","address":"127.0.0.39"}' >/dev/null
check "5 Nodes registered" '[ "$(api GET /api/v1/nodes | jq ".items | length")" = 5 ]'

# ---- models, the gateway -------------------------------------------------------------------------
for v in 1 2 3; do "$SEIFER" zoo tiny-inception --seed $v -o "$T/v$v.onnx" >/dev/null || { echo "FAIL: zoo"; exit 1; }; done
input=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.outputs[0].name')
shape=$("$SEIFER" inspect "$T/v1.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
"$NPYTOOL" image "$T/in.npy" "$shape"
source "$(dirname "$0")/tools/stages.sh"
for v in 1 2 3; do "$SEIFER" infer "$T/v$v.onnx" -i "$input=$T/in.npy" -o "$T/ref$v" >/dev/null; done
sha() { sha256sum "$1" | cut -d' ' -f1; }
"$SEIFER" gateway --listen 127.0.0.1:0 --data 127.0.0.1:0 --secret "$T/secret" --port-file "$T/gw.port" \
  >"$T/gw.log" 2>&1 &
PIDS+=($!)
wait_until 10 '[ -s "$T/gw.port" ]' || { echo "FAIL: gateway did not start"; cat "$T/gw.log"; exit 1; }
read -r GW_HTTP GW_DATA <"$T/gw.port"
URL=http://127.0.0.1:$GW_HTTP
same_as() { "$SEIFER" request --url "$URL" --model tiny --input "$T/in.npy" -o "$T/out.npy" >"$T/req.txt" 2>&1 &&
              grep -q "version $1:" "$T/req.txt" && "$NPYTOOL" cmp "$T/out.npy" "$T/ref$1/$(stages_safe "$output").npy" 1e-5 >/dev/null; }
model_doc() { # VERSION FILE [SHA]
  printf '{"apiVersion":"seifer.dev/v1alpha1","kind":"SeiferModel","metadata":{"name":"tiny","namespace":"seifer"},"spec":{"model":{"uri":"file://%s","sha256":"%s","version":"%s"},"codec":"lz4","replanGain":0.1,"placement":{"nodeSelector":{"seifer.dev/edge":"true"}}}}' \
    "$2" "${3:-$(sha "$2")}" "$1"
}
set_version() { api PATCH /apis/seifer.dev/v1alpha1/namespaces/seifer/seifermodels/tiny "$(model_doc "$@")" application/merge-patch+json >/dev/null; }
api POST /apis/seifer.dev/v1alpha1/namespaces/seifer/seifermodels "$(model_doc 1 "$T/v1.onnx")" >/dev/null
check "SeiferModel created" '[ "$(sfm .spec.model.version)" = 1 ]'

# ---- argument errors -----------------------------------------------------------------------------
"$SEIFER" controller --kubernetes --cluster x.json >"$T/e1" 2>&1; rc1=$?
"$SEIFER" controller --kubeconfig "$T/kubeconfig" >"$T/e2" 2>&1; rc2=$?
"$SEIFER" controller --kubernetes --model Bad_Name >"$T/e3" 2>&1; rc3=$?
"$SEIFER" controller --kubernetes --lease-ms 1000 --renew-ms 2000 >"$T/e4" 2>&1; rc4=$?
check "argument errors are usage errors with a reason ($rc1 $rc2 $rc3 $rc4)" \
  '[ $rc1 = 2 ] && [ $rc2 = 2 ] && [ $rc3 = 2 ] && [ $rc4 = 2 ] && grep -q "no --cluster" "$T/e1" && grep -q "need --kubernetes" "$T/e2" && grep -q "SeiferModel name" "$T/e3" && grep -q "renew-ms" "$T/e4"'

# ---- two controller replicas ---------------------------------------------------------------------
WP=$((20000 + $$ % 20000))
controller() { # NAME
  mkdir -p "$T/$1"
  ("$SEIFER" controller --kubernetes --kubeconfig "$T/kubeconfig" --dir "$T/$1" --secret "$T/secret" \
     --image seifer:test --gateway "127.0.0.1:$GW_DATA" --gateway-url "$URL" --worker-port $WP --identity "$1" \
     --lease-ms 3000 --renew-ms 2000 --retry-ms 300 --probe-seconds 0.05 >>"$T/$1.log" 2>&1 & echo $! >"$T/$1.pid")
  PIDS+=($(cat "$T/$1.pid"))
}
t_start=$SECONDS
controller a
wait_until 10 'grep -q "leading" "$T/a.log"' || { echo "FAIL: controller a does not lead"; show_logs; exit 1; }
controller b
if ! wait_until 60 '[ "$(state a .status)" = serving ]'; then echo "FAIL: not serving"; show_logs; exit 1; fi
echo "first deployment: serving after $((SECONDS - t_start)) s"
check "the standby does not lead" 'grep -q "standby" "$T/b.log" && ! grep -q "leading" "$T/b.log"'
check "version 1 serves the model's output through the gateway" 'same_as 1'
check "the node outside the nodeSelector is left out" 'grep -q "node other left out" "$T/a.log"'
# stage Deployments with the planned memory
settle a
wait_until 10 '[ "$(sfm .status.conditions[0].status)" = True ] && [ "$(sfm .status.plan.pipeline)" = "$(state a .pipeline.id)" ]'
plan_ok() {
  local n s node mem want dep
  deployments >"$T/deps.json"
  n=$(sfm '.status.plan.stages | length')
  [ "$n" -ge 2 ] || return 1
  for ((s = 0; s < n; s++)); do
    node=$(sfm ".status.plan.stages[$s].node"); mem=$(sfm ".status.plan.stages[$s].memoryBytes")
    want="$(( (mem + 1048575) / 1048576 ))Mi"
    dep=$(jq -c --arg n "$node" '.items[] | select(.metadata.annotations["seifer.dev/node"] == $n)' "$T/deps.json")
    [ "$(jq -r '.spec.template.spec.containers[0].resources.requests.memory' <<<"$dep")" = "$want" ] || return 1
    [ "$(jq -r '.spec.template.spec.containers[0].resources.limits.memory' <<<"$dep")" = "$want" ] || return 1
    [ "$(jq -r '.metadata.labels["seifer.dev/stage"]' <<<"$dep")" = "$s" ] || return 1
  done
}
check "stage Deployments request the planned memory ($(sfm '[.status.plan.stages[] | "\(.node)=\(.memoryBytes)"] | join(" ")'))" 'wait_until 10 plan_ok' 
check "SeiferModel status: Ready, version 1, predicted throughput, 4 of 4 nodes ready" \
  '[ "$(sfm ".status.version") $(sfm ".status.readyNodes")/$(sfm ".status.nodes")" = "1 4/4" ] && [ "$(sfm ".status.predictedThroughput > 0")" = true ]'

# ---- a Node turns NotReady -----------------------------------------------------------------------
settle a
victim=$(state a '.pipeline.stages[0].node')
gen0=$(state a .pipeline.id)
n_applied=$(grep -c "Deployment applied" "$T/a.log")
t_flip=$(now)
api POST "/emu/nodes/$victim/ready?status=False" >/dev/null
if wait_until 30 '[ "$(grep -c "Deployment applied" "$T/a.log")" -gt "$n_applied" ]'; then
  wait_until 10 'grep -q "failover: pipeline" "$T/a.log"'
  applied_at() { grep "Deployment applied" "$T/a.log" | tail -n +$((n_applied + 1)) | sed 's/.* at \([0-9.]*\)$/\1/'; }
  dt=$(awk -v a="$(applied_at | head -n 1)" -v t="$t_flip" 'BEGIN {printf "%.3f", a - t}')
  dt_all=$(awk -v a="$(applied_at | sort -n | tail -n 1)" -v t="$t_flip" 'BEGIN {printf "%.3f", a - t}')
  echo "NotReady: $victim flipped; new stage Deployments applied $dt s (first) to $dt_all s (last of $(applied_at | wc -l)) later"
  check "new stage Deployments within 5 s of the flip ($dt_all s)" 'awk -v d="$dt_all" "BEGIN {exit !(d < 5)}"'
else
  echo "FAIL: no Deployment applied after $victim turned NotReady"; show_logs; fail=1
fi
wait_until 30 '[ "$(state a .status)" = serving ] && [ "$(state a .pipeline.id)" != "$gen0" ]'
check "failover recorded" 'grep -q "failover: pipeline" "$T/a.log"'
check "the new pipeline avoids $victim" '! sfm "[.status.plan.stages[].node] | join(\" \")" | grep -qw "$victim"'
check "version 1 still answers correctly after the failover" 'wait_until 10 same_as\ 1'
api POST "/emu/nodes/$victim/ready?status=True" >/dev/null

# ---- a refused digest, then a version bump ---------------------------------------------------------
set_version 2 "$T/v2.onnx" 0000000000000000000000000000000000000000000000000000000000000000
check "a wrong sha256 is refused with the reason in the status" \
  'wait_until 10 "[ \"\$(sfm ".status.conditions[1].reason")\" = DigestMismatch ]"'
set_version x2 "$T/v2.onnx"
check "a version that is not a positive integer is refused with the reason in the status" \
  'wait_until 10 "[ \"\$(sfm ".status.conditions[1].reason")\" = BadVersion ]"'
check "version 1 keeps serving" 'same_as 1'
t_bump=$SECONDS
set_version 2 "$T/v2.onnx"
if wait_until 60 '[ "$(state a .version)" = 2 ]'; then
  echo "version bump: version 2 serving $((SECONDS - t_bump)) s after the SeiferModel changed"
  check "version 2 answers (model_version 2, its output)" 'wait_until 10 same_as\ 2'
  check "status says version 2" 'wait_until 10 "[ \"\$(sfm .status.version)\" = 2 ]"'
else
  echo "FAIL: version 2 not serving"; show_logs; fail=1
fi

# ---- watch expiry and compaction, then token rotation ------------------------------------------------
lists0=$(api GET /emu/stats | jq .gone)
api POST /emu/expire >/dev/null
sleep 0.5
# version 3 over HTTP when python3 can serve it (the controller fetches it with libcurl)
uri3="$T/v3.onnx"
if command -v python3 >/dev/null; then
  mkdir -p "$T/http" && cp "$T/v3.onnx" "$T/http/"
  (cd "$T/http" && exec python3 -u -m http.server 0 --bind 127.0.0.1 >"$T/http.log" 2>&1) &
  PIDS+=($!)
  wait_until 10 'grep -q "port [0-9]" "$T/http.log"'
  HTTP_PORT=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$T/http.log" | head -n 1)
  [ -n "$HTTP_PORT" ] && uri3="http://127.0.0.1:$HTTP_PORT/v3.onnx"
fi
set_uri() { api PATCH /apis/seifer.dev/v1alpha1/namespaces/seifer/seifermodels/tiny \
  "{\"spec\":{\"model\":{\"uri\":\"$1\",\"sha256\":\"$2\",\"version\":\"$3\"}}}" application/merge-patch+json >/dev/null; }
set_uri "$uri3" "$(sha "$T/v3.onnx")" 3
check "after a watch expiry the SeiferModel change is seen: version 3 (from $uri3) serves" \
  'wait_until 60 "[ \"\$(state a .version)\" = 3 ]" && wait_until 10 same_as\ 3'
echo "watch expiry: $(( $(api GET /emu/stats | jq .gone) - lists0 )) 410 answers, the informers listed again"
printf 'tok-1\ntok-2\n' >"$T/emu-tokens.new" && mv "$T/emu-tokens.new" "$T/emu-tokens"
echo "tok-2" >"$T/token.new" && mv "$T/token.new" "$T/token"
echo "tok-2" >"$T/emu-tokens.new" && mv "$T/emu-tokens.new" "$T/emu-tokens"
settle a
victim2=$(state a '.pipeline.stages[0].node')
n_applied=$(grep -c "Deployment applied" "$T/a.log")
api POST "/emu/nodes/$victim2/ready?status=False" >/dev/null
check "after token rotation the controller still applies Deployments ($victim2 NotReady)" \
  'wait_until 30 "[ \$(grep -c \"Deployment applied\" \"$T/a.log\") -gt $n_applied ]"'
check "and serves again" 'wait_until 30 same_as\ 3'
echo "token rotation: $(api GET /emu/stats | jq .unauthorized) requests refused with 401 (the client re-reads a changed token file before its next request; a 401 would make it re-read and retry once)"
check "the lease is still held by a (no 401 lost it)" '[ "$(api GET /apis/coordination.k8s.io/v1/namespaces/seifer/leases/seifer-controller | jq -r .spec.holderIdentity)" = a ]'
api POST "/emu/nodes/$victim2/ready?status=True" >/dev/null

# ---- leader failover -------------------------------------------------------------------------------
kill -9 "$(cat "$T/a.pid")"
t_kill=$SECONDS
if wait_until 30 'grep -q "leading" "$T/b.log"'; then
  echo "leader failover: b leads $((SECONDS - t_kill)) s after a was killed"
  check "b serves version 3" 'wait_until 60 "[ \"\$(state b .status)\" = serving ] && [ \"\$(state b .version)\" = 3 ]" && wait_until 10 same_as\ 3'
  check "the Lease names b" '[ "$(api GET /apis/coordination.k8s.io/v1/namespaces/seifer/leases/seifer-controller | jq -r .spec.holderIdentity)" = b ]'
  settle b
  n_applied=$(grep -c "Deployment applied" "$T/b.log")
  victim3=$(state b '.pipeline.stages[0].node')
  check "a Deployment is pinned to $victim3" 'on_node $victim3'
  api DELETE "/emu/nodes/$victim3" >/dev/null
  check "b acts on a deleted Node ($victim3)" 'wait_until 30 "[ \$(grep -c \"Deployment applied\" \"$T/b.log\") -gt $n_applied ]" && wait_until 30 same_as\ 3'
  check "the deleted Node's Deployment is deleted" 'wait_until 10 "! on_node $victim3"'
else
  echo "FAIL: b did not take over"; show_logs; fail=1
fi
# SIGTERM releases the lease
kill -TERM "$(cat "$T/b.pid")"
check "a stopping leader releases the Lease" \
  'wait_until 10 "[ -z \"\$(api GET /apis/coordination.k8s.io/v1/namespaces/seifer/leases/seifer-controller | jq -r \".spec.holderIdentity // empty\")\" ]"'
# ---- a leader that loses its lease stops ------------------------------------------------------------
controller c
if wait_until 20 'grep -q "leading" "$T/c.log"'; then
  lease=$(api GET /apis/coordination.k8s.io/v1/namespaces/seifer/leases/seifer-controller)
  api PUT /apis/coordination.k8s.io/v1/namespaces/seifer/leases/seifer-controller \
    "$(jq -c --arg t "$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)" '.spec.holderIdentity = "intruder" | .spec.renewTime = $t | .spec.leaseDurationSeconds = 60' <<<"$lease")" >/dev/null
  check "a leader whose lease is taken stops acting and exits with status 1" \
    'wait_until 15 "! kill -0 $(cat "$T/c.pid") 2>/dev/null" && grep -q "not leading any more" "$T/c.log" && grep -q "lost the leader lease" "$T/c.log"'
else
  echo "FAIL: controller c did not lead after b released the lease"; fail=1
fi
echo "total: $((SECONDS - t_start)) s"
[ $fail = 0 ] || { show_logs; exit 1; }
echo "OK"
