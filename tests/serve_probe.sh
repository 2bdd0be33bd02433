#!/usr/bin/env bash
# Link probes on real links: one network namespace per node on a bridge, every pair's bandwidth
# shaped with tc (htb + u32 per destination, one asymmetric pair) from a cluster file, a worker in
# every namespace, `seifer probe links` run from one namespace (the probe bytes go worker to
# worker). Every measured bandwidth must be within 10% of the goodput the tc rate allows and, for
# two pairs, within 10% of iperf3 on the same pair; the written cluster file must plan. A wrong
# secret and a dead worker fail cleanly. Needs root (skipped otherwise).
#
# htb meters whole Ethernet frames, the probe counts its frame bytes (TCP payload): with MTU 1500
# and TCP timestamps a segment carries 1448 payload bytes in 1448 + 32 (TCP) + 20 (IP) + 14
# (Ethernet) = 1514 metered bytes, so the goodput a rate of R Mbit/s allows is R * 1448 / 1514
# (0.956 R). iperf3 reports goodput too, so it is compared directly.
set -u
SEIFER=$(readlink -f "$1")
source "$(dirname "$0")/tools/netns.sh"
netns_can_run || exit 77
command -v iperf3 >/dev/null || { echo "needs iperf3"; exit 77; }
T=$(mktemp -d)
fail=0
declare -A PID=()
trap 'kill "${PID[@]}" 2>/dev/null; wait 2>/dev/null; netns_down; rm -rf "$T"' EXIT
source "$(dirname "$0")/tools/testlib.sh"

cat >"$T/cluster.json" <<'JSON'
{"nodes": [{"name": "n1", "memory_mb": 64, "gflops": 5},
           {"name": "n2", "memory_mb": 64, "gflops": 5},
           {"name": "n3", "memory_mb": 64, "gflops": 5},
           {"name": "n4", "memory_mb": 64, "gflops": 5}],
 "default_link": {"mbps": 150},
 "links": [{"from": "n1", "to": "n2", "mbps": 20, "symmetric": false},
           {"from": "n2", "to": "n1", "mbps": 50, "symmetric": false},
           {"from": "n1", "to": "n3", "mbps": 100},
           {"from": "n2", "to": "n3", "mbps": 50},
           {"from": "n3", "to": "n4", "mbps": 30}]}
JSON
netns_up "$T/cluster.json" || { echo "FAIL: namespaces"; exit 1; }
"$SEIFER" keygen -o "$T/secret" >/dev/null
"$SEIFER" keygen -o "$T/other" >/dev/null
for n in "${NETNS_NODES[@]}"; do
  ip netns exec "${NETNS_NS[$n]}" "$SEIFER" worker --listen "${NETNS_ADDR[$n]}:7000" --secret "$T/secret" --name "$n" \
    --cache "$T/cache-$n" --port-file "$T/$n.port" >"$T/$n.log" 2>&1 &
  PID[$n]=$!
done
for n in "${NETNS_NODES[@]}"; do
  for _ in $(seq 100); do [ -s "$T/$n.port" ] && break; sleep 0.05; done
  check "$n listening" '[ -s "$T/$n.port" ]'
done
netns_addresses "$T/cluster.json" "$T/cluster-addr.json"

# every ordered pair, one at a time (12 pairs, about 1.2 s each)
if netns_exec n1 "$SEIFER" probe links --cluster "$T/cluster-addr.json" --secret "$T/secret" \
     -o "$T/measured.json" >"$T/probe.out" 2>"$T/probe.err"; then
  cat "$T/probe.out"
  printf '%-4s %-4s %8s %9s %9s %7s\n' from to tc goodput measured ratio
  for a in "${NETNS_NODES[@]}"; do
    for b in "${NETNS_NODES[@]}"; do
      [ "$a" = "$b" ] && continue
      tc_mbps=$(netns_rate "$T/cluster.json" "$a" "$b")
      want=$(awk -v r="$tc_mbps" 'BEGIN { printf "%.3f", r * 1448 / 1514 }')
      got=$(jq -r --arg f "$a" --arg t "$b" '.links[] | select(.from == $f and .to == $t) | .mbps' "$T/measured.json")
      printf '%-4s %-4s %8s %9s %9s %7s\n' "$a" "$b" "$tc_mbps" "$want" "${got:-none}" \
        "$(awk -v g="${got:-0}" -v r="$tc_mbps" 'BEGIN { printf "%.3f", g / r }')"
      check "$a -> $b: measured ${got:-none} Mbit/s within 10% of the goodput $want of tc's $tc_mbps" \
        'within "${got:-0}" "$want" 0.10'
      check "$a -> $b: measured ${got:-none} Mbit/s within 10% of tc's $tc_mbps" 'within "${got:-0}" "$tc_mbps" 0.10'
    done
  done
  check "12 directed links, rtt_ms measured" \
    'jq -e "[.links[] | select(.symmetric == false and .rtt_ms > 0 and .rtt_ms < 50)] | length == 12" "$T/measured.json" >/dev/null'
  check "nodes kept (addresses, memory)" 'jq -e "[.nodes[] | select(.address and .memory_mb == 64)] | length == 4" "$T/measured.json" >/dev/null'
  "$SEIFER" zoo tiny-inception -o "$T/m.onnx" >/dev/null
  check "the measured cluster plans" '"$SEIFER" plan "$T/m.onnx" "$T/measured.json" >"$T/plan.out" 2>&1'
else
  echo "FAIL: probe links:"; cat "$T/probe.err"; tail -n 5 "$T"/n*.log; fail=1
fi

# iperf3 on two pairs (the slowest and the fastest shaped ones): goodput against goodput
for pair in "n1 n2" "n3 n1"; do
  set -- $pair
  netns_exec "$2" iperf3 -s -1 -B "${NETNS_ADDR[$2]}" -p 5201 >/dev/null 2>&1 &
  ip=$!
  sleep 0.3
  if netns_exec "$1" iperf3 -c "${NETNS_ADDR[$2]}" -p 5201 -t 2 -O 1 -J >"$T/iperf.json" 2>/dev/null; then
    ipf=$(jq '.end.sum_received.bits_per_second / 1e6' "$T/iperf.json")
    got=$(jq -r --arg f "$1" --arg t "$2" '.links[] | select(.from == $f and .to == $t) | .mbps' "$T/measured.json" 2>/dev/null)
    echo "$1 -> $2: iperf3 $(printf %.3f "$ipf") Mbit/s, probe ${got:-none} Mbit/s"
    check "$1 -> $2: probe ${got:-none} within 10% of iperf3's $ipf Mbit/s" 'within "${got:-0}" "$ipf" 0.10'
  else
    echo "FAIL: iperf3 $1 -> $2"; fail=1
  fi
  wait "$ip" 2>/dev/null
done

# a wrong secret is refused; a dead worker fails its pairs, the others are still measured
check "wrong secret refused" '! netns_exec n1 "$SEIFER" probe links --cluster "$T/cluster-addr.json" --secret "$T/other" --seconds 0.2 >/dev/null 2>"$T/bad.err"'
check "wrong secret: says so" 'grep -q "authentication\|proof\|secret" "$T/bad.err"'
kill "${PID[n4]}"
wait "${PID[n4]}" 2>/dev/null
netns_exec n1 "$SEIFER" probe links --cluster "$T/cluster-addr.json" --secret "$T/secret" --seconds 0.2 \
  -o "$T/partial.json" >"$T/partial.out" 2>"$T/partial.err"
st=$?
check "dead worker: exit 1 (got $st)" '[ "$st" = 1 ]' || { cat "$T/partial.out" "$T/partial.err"; tail -n 3 "$T/n4.log"; }
check "dead worker: its 6 pairs failed" '[ "$(grep -c failed "$T/partial.out")" = 6 ]'
check "dead worker: the other 6 measured" \
  'jq -e "[.links[] | select((.from == \"n4\" or .to == \"n4\") | not)] | length == 6" "$T/partial.json" >/dev/null'
check "dead worker: its pairs keep the file's links" \
  'jq -e "[.links[] | select(.from == \"n3\" and .to == \"n4\" and .mbps == 30)] | length == 1" "$T/partial.json" >/dev/null'
exit $fail
