# Namespaced edge cluster on one machine (needs root): one network namespace per node joined by a
# bridge that lives in its own namespace (nothing touches the host's network), each node's egress
# shaped per destination with tc htb classes + u32 filters from a cluster file's links.
#
#   source tests/tools/netns.sh
#   netns_up CLUSTER.json          # NETNS_NODES=(names), NETNS_ADDR[name]=10.x.y.z, ns "$NETNS_ID-<i>"
#   netns_exec NODE cmd ...        # run inside a node's namespace
#   netns_down                     # delete everything (also on EXIT if the caller traps it)
#
# Uses jq for the cluster file. Link rates: "links" entries (from -> to, mbps; "symmetric", default
# true, adds the reverse), else "default_link".mbps. tc's mbit is 10^6 bit/s like the cluster file's mbps.

NETNS_ID=${NETNS_ID:-sf$$}
declare -a NETNS_NODES=()
declare -A NETNS_ADDR=() NETNS_NS=()

netns_can_run() {
  [ "$(id -u)" = 0 ] || { echo "netns: needs root"; return 1; }
  command -v ip >/dev/null && command -v tc >/dev/null && command -v jq >/dev/null || { echo "netns: needs ip, tc, jq"; return 1; }
  ip netns add "$NETNS_ID-probe" 2>/dev/null || { echo "netns: cannot create network namespaces"; return 1; }
  ip netns del "$NETNS_ID-probe"
}

netns_rate() { # FROM TO -> mbps
  local r
  r=$(jq -r --arg f "$2" --arg t "$3" '
      [.links[]? | select((.from == $f and .to == $t) or (.symmetric != false and .from == $t and .to == $f)) | .mbps][0]
      // .default_link.mbps // empty' "$1")
  echo "${r:-1000}"
}

netns_up() {
  local cluster=$1 i=0 n name br="$NETNS_ID-br"
  mapfile -t NETNS_NODES < <(jq -r '.nodes[].name' "$cluster")
  ip netns add "$br"
  ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 up
  ip -n "$br" link set lo up
  for name in "${NETNS_NODES[@]}"; do
    i=$((i + 1))
    local ns="$NETNS_ID-$i"
    NETNS_NS[$name]=$ns
    NETNS_ADDR[$name]="10.213.$((i / 250)).$((i % 250 + 1))"
    ip netns add "$ns"
    ip link add "${NETNS_ID}a$i" type veth peer name "${NETNS_ID}b$i"
    ip link set "${NETNS_ID}a$i" netns "$ns"
    ip link set "${NETNS_ID}b$i" netns "$br"
    ip -n "$ns" link set "${NETNS_ID}a$i" name eth0
    ip -n "$ns" addr add "${NETNS_ADDR[$name]}/16" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$br" link set "${NETNS_ID}b$i" master br0
    ip -n "$br" link set "${NETNS_ID}b$i" up
  done
  # egress shaping: one htb class per destination node
  for name in "${NETNS_NODES[@]}"; do
    local ns=${NETNS_NS[$name]} j=0 other
    tc -n "$ns" qdisc add dev eth0 root handle 1: htb default 9999
    tc -n "$ns" class add dev eth0 parent 1: classid 1:9999 htb rate 10gbit quantum 60000
    for other in "${NETNS_NODES[@]}"; do
      j=$((j + 1))
      [ "$other" = "$name" ] && continue
      local mbps
      mbps=$(netns_rate "$cluster" "$name" "$other")
      tc -n "$ns" class add dev eth0 parent 1: classid "1:$((10 + j))" htb rate "${mbps}mbit" ceil "${mbps}mbit" quantum 60000
      tc -n "$ns" filter add dev eth0 protocol ip parent 1: prio 1 u32 match ip dst "${NETNS_ADDR[$other]}/32" flowid "1:$((10 + j))"
    done
  done
}

# netns_addresses IN OUT [FILTER]: cluster file IN with every node's "address" set to its
# namespace's IP and port 7000, then the jq FILTER (default: none) applied, written to OUT.
netns_addresses() {
  jq --argjson a "$(for n in "${NETNS_NODES[@]}"; do printf '{"%s":"%s:7000"}' "$n" "${NETNS_ADDR[$n]}"; done | jq -s add)" \
    ".nodes |= map(. + {address: \$a[.name]}) | ${3:-.}" "$1" >"$2"
}

# netns_wrap FILE: a --wrap program for `seifer controller`: `FILE NODE COMMAND...` runs COMMAND
# in NODE's namespace.
netns_wrap() {
  {
    echo '#!/usr/bin/env bash'
    echo 'node=$1; shift'
    echo 'case $node in'
    local n
    for n in "${NETNS_NODES[@]}"; do echo "  $n) exec ip netns exec ${NETNS_NS[$n]} \"\$@\" ;;"; done
    echo '  *) echo "wrap: unknown node $node" >&2; exit 1 ;;'
    echo 'esac'
  } >"$1"
  chmod +x "$1"
}

netns_exec() {
  local name=$1
  shift
  ip netns exec "${NETNS_NS[$name]}" "$@"
}

netns_down() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$NETNS_ID-"); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
}
