#!/usr/bin/env bash
# End to end on one machine: `seifer up` splits a model over emulated nodes, the gateway answers
# the KServe v2 API, pipeline outputs equal single-process `seifer infer` of the same stage files
# chained (bit for bit for raw and lz4, within the codec's tolerance for fp16 and zfp) and the
# whole model within 1e-5, bad requests get 4xx with a JSON error, garbage on a worker port is
# refused without taking the worker down, loadgen loses nothing, `seifer down` stops everything.
set -u
SEIFER=$1
NPYTOOL=$2
T=$(mktemp -d)
fail=0
cleanup() {
  for d in "$T"/run-*; do [ -d "$d" ] && "$SEIFER" down --dir "$d" >/dev/null 2>&1; done
  [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
source "$(dirname "$0")/tools/testlib.sh"
# a process that exited but was not reaped yet (zombie) is not running
running() { [ -r "/proc/$1/stat" ] && ! sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 5},
           {"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5},
           {"name": "n3", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 200, "rtt_ms": 1},
 "gateway": "gw"}
JSON
"$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null || { echo "FAIL: zoo"; exit 1; }
shape=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].resolved_shape | map(tostring) | join(",")')
input=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.inputs[0].name')
output=$("$SEIFER" inspect "$T/m.onnx" --json | jq -r '.outputs[0].name')
"$NPYTOOL" image "$T/in.npy" "$shape"
"$SEIFER" infer "$T/m.onnx" -i "$input=$T/in.npy" -o "$T/ref" >/dev/null || { echo "FAIL: infer"; exit 1; }
source "$(dirname "$0")/tools/stages.sh"
safe() { stages_safe "$1"; }
ref="$T/ref/$(safe "$output").npy"
chain() { mkdir -p "$2" && cp "$T/in.npy" "$2/$(safe "$input").npy" && stages_chain "$SEIFER" "$1" "$2"; }

for codec in raw lz4 fp16 zfp; do
  run="$T/run-$codec"
  if ! "$SEIFER" up --model "$T/m.onnx" --cluster "$T/cluster.json" --dir "$run" --listen 127.0.0.1:0 \
       --codec "$codec" --name tiny --timeout 8 >"$T/up.log" 2>&1; then
    echo "FAIL: up ($codec):"; cat "$T/up.log"; cat "$run"/logs/*.log 2>/dev/null | tail -20; fail=1; continue
  fi
  url=$(jq -r .url "$run/up.json")
  nst=$(jq '.stages | length' "$run/up.json")
  check "$codec: plan has >= 2 stages (got $nst)" '[ "$nst" -ge 2 ]'
  if ! "$SEIFER" request --url "$url" --model tiny --input "$T/in.npy" -o "$T/out-$codec.npy" >"$T/req.log" 2>&1; then
    echo "FAIL: request ($codec):"; cat "$T/req.log"; tail -n 5 "$run"/logs/*.log; fail=1
  else
    case $codec in
      raw|lz4) tol=0 ;;
      fp16) tol=2e-3 ;;
      zfp) tol=5e-2 ;;
    esac
    chain "$run/stages" "$T/chain-$codec" || { echo "FAIL: chaining the stages with seifer infer"; fail=1; }
    check "$codec: pipeline output equals the chained stages (tol $tol)" '"$NPYTOOL" cmp "$T/out-$codec.npy" "$T/chain-$codec/$(safe "$output").npy" $tol >/dev/null'
    check "$codec: pipeline output equals the whole model (tol max($tol, 1e-5))" '"$NPYTOOL" cmp "$T/out-$codec.npy" "$ref" $(awk -v t=$tol "BEGIN{print (t > 1e-5 ? t : 1e-5)}") >/dev/null'
  fi
  if [ "$codec" = raw ]; then
    code() { curl -s -o "$T/body" -w '%{http_code}' "$@"; }
    check "live" '[ "$(code "$url/v2/health/live")" = 200 ]'
    check "ready" '[ "$(code "$url/v2/health/ready")" = 200 ]'
    check "model ready" '[ "$(code "$url/v2/models/tiny/ready")" = 200 ]'
    check "metadata" '[ "$(code "$url/v2/models/tiny")" = 200 ] && jq -e ".inputs[0].name == \"$input\"" "$T/body" >/dev/null'
    check "unknown model 404" '[ "$(code "$url/v2/models/nope")" = 404 ] && jq -e .error "$T/body" >/dev/null'
    check "bad JSON 400" '[ "$(code -X POST -d "{oops" "$url/v2/models/tiny/infer")" = 400 ] && jq -e .error "$T/body" >/dev/null'
    check "wrong shape 400" '[ "$(code -X POST -d "{\"inputs\":[{\"name\":\"$input\",\"datatype\":\"FP32\",\"shape\":[1],\"data\":[1]}]}" "$url/v2/models/tiny/infer")" = 400 ] && jq -e ".error | test(\"shape\")" "$T/body" >/dev/null'
    check "missing input 400" '[ "$(code -X POST -d "{\"inputs\":[]}" "$url/v2/models/tiny/infer")" = 400 ]'
    check "unknown path 404" '[ "$(code "$url/v3/x")" = 404 ]'
    # garbage and an unauthenticated peer on a worker port: refused and logged, worker keeps serving
    wport=$(jq -r '.stages[0].port' "$run/up.json")
    head -c 5000 /dev/urandom >"/dev/tcp/127.0.0.1/$wport" 2>/dev/null
    printf 'GET / HTTP/1.0\r\n\r\n' >"/dev/tcp/127.0.0.1/$wport" 2>/dev/null
    sleep 0.5
    check "worker logged the refused peer" 'grep -q refused "$run/logs/$(jq -r ".stages[0].node" "$run/up.json").log"'
    check "request after garbage" '"$SEIFER" request --url "$url" --model tiny --input "$T/in.npy" -o "$T/again.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/again.npy" "$T/out-raw.npy" 0 >/dev/null'
    if "$SEIFER" loadgen --url "$url" --model tiny --input "$T/in.npy" --count 60 --concurrency 4 --json >"$T/lg.json" 2>"$T/lg.err"; then
      check "loadgen: 60 requests, none failed" 'jq -e ".requests == 60 and .failed == 0" "$T/lg.json" >/dev/null'
    else
      echo "FAIL: loadgen"; cat "$T/lg.err" "$T/lg.json"; fail=1
    fi
    check "metrics count the requests" 'curl -s "$url/metrics" | grep -Eq "^seifer_requests_total(\{[^}]*\})? [0-9]+"'
    # a client that disconnects mid-request: the gateway drops the answer and keeps serving
    head -c 3000000 /dev/zero | tr '\0' '1' >"$T/bigbody"
    curl -s -m 0.05 -X POST --data-binary @"$T/bigbody" "$url/v2/models/tiny/infer" >/dev/null 2>&1
    (curl -s -m 2 -X POST -H 'Content-Type: application/json' -d "{\"inputs\":[{\"name\":\"$input\",\"datatype\":\"FP32\",\"shape\":[$shape],\"data\":[$(seq -s, 1 $((${shape//,/*})))]}]}" "$url/v2/models/tiny/infer" >/dev/null 2>&1 &
     sleep 0.01; kill -9 $! ) 2>/dev/null
    check "serving after clients vanished mid-request" '"$SEIFER" request --url "$url" --model tiny --input "$T/in.npy" -o "$T/again2.npy" >/dev/null 2>&1'
    check "up refuses a second start in the same dir" '! "$SEIFER" up --model "$T/m.onnx" --cluster "$T/cluster.json" --dir "$run" --listen 127.0.0.1:0 >/dev/null 2>&1'
  fi
  if [ "$codec" = lz4 ]; then
    # a worker that goes away: requests fail with a 5xx within the gateway's timeout, nothing hangs
    kill -9 "$(jq '.stages[1].pid' "$run/up.json")"
    start=$(date +%s)
    code=$(curl -s -o "$T/gone" -w '%{http_code}' -m 60 -X POST -H 'Content-Type: application/octet-stream' \
      --data-binary "{\"inputs\":[{\"name\":\"$input\",\"datatype\":\"FP32\",\"shape\":[$shape],\"data\":[$(seq -s, 1 $((${shape//,/*})))]}]}" \
      "$url/v2/models/tiny/infer")
    took=$(($(date +%s) - start))
    check "worker gone: 5xx with a JSON error (got $code after ${took}s)" '[ "${code:0:1}" = 5 ] && jq -e .error "$T/gone" >/dev/null'
    check "worker gone: answered within the 8 s timeout (+2 s)" '[ "$took" -le 10 ]'
    check "worker gone: gateway still answers health" '[ "$(curl -s -o /dev/null -w "%{http_code}" "$url/v2/health/live")" = 200 ]'
  fi
  pids=$(jq -r '.pids[]' "$run/up.json")
  check "$codec: down" '"$SEIFER" down --dir "$run" >/dev/null'
  for p in $pids; do check "$codec: process $p stopped" '! running $p'; done
done
# several pipelines: the gateway balances requests across them
cat >"$T/c8.json" <<'JSON'
{"nodes": [{"name": "gw", "memory_mb": 64, "gflops": 1}, {"name": "a", "memory_mb": 64, "gflops": 1},
           {"name": "b", "memory_mb": 64, "gflops": 1}, {"name": "c", "memory_mb": 64, "gflops": 1}],
 "default_link": {"mbps": 100, "rtt_ms": 1}, "gateway": "gw"}
JSON
run="$T/run-multi"
if "$SEIFER" up --model "$T/m.onnx" --cluster "$T/c8.json" --dir "$run" --listen 127.0.0.1:0 --pipelines auto \
     --name tiny >"$T/up.log" 2>&1; then
  url=$(jq -r .url "$run/up.json")
  np=$(jq .pipelines "$run/up.json")
  check "multi: >= 2 pipelines (got $np)" '[ "$np" -ge 2 ]'
  check "multi: 100 requests, none failed" '"$SEIFER" loadgen --url "$url" --model tiny --input "$T/in.npy" --count 100 --concurrency 8 --binary --json 2>/dev/null | jq -e ".failed == 0 and .ok == 100" >/dev/null'
  sleep 1.5
  busy=$(curl -s "$url/metrics" | grep -E '^seifer_stage_requests_total\{pipeline="[0-9]+",stage="1"' | awk '$2 > 0' | wc -l)
  check "multi: every pipeline served requests ($busy of $np)" '[ "$busy" -eq "$np" ]'
  check "multi: output equals the whole model" '"$SEIFER" request --url "$url" --model tiny --input "$T/in.npy" -o "$T/multi.npy" >/dev/null 2>&1 && "$NPYTOOL" cmp "$T/multi.npy" "$ref" 1e-5 >/dev/null'
  "$SEIFER" down --dir "$run" >/dev/null
else
  echo "FAIL: up --pipelines auto:"; cat "$T/up.log"; fail=1
fi
check "down without up fails clearly" '! "$SEIFER" down --dir "$T/none" 2>"$T/down.err" && grep -q "nothing was started" "$T/down.err"'
exit $fail
