# A node slower than its cluster file says: a cgroup (v1 cpu controller) capping the processes
# of one node at a share of one core. Sourced by tests and benchmarks; needs root.
#   cpucap_up 5 || skip        # CPUCAP_DIR: a new cgroup capped at 5% of a core
#   cpucap_wrap wrap.sh n1     # --wrap program: node n1's processes start inside the cgroup
#   cpucap_set max             # lift the cap (or another percentage)
#   cpucap_down                # processes back to the root cgroup, cgroup removed
CPUCAP_ROOT=/sys/fs/cgroup/cpu
CPUCAP_DIR=

cpucap_up() {
  [ "$(id -u)" = 0 ] || { echo "cpucap: needs root"; return 1; }
  CPUCAP_DIR="$CPUCAP_ROOT/seifer-cap-$$"
  mkdir "$CPUCAP_DIR" 2>/dev/null && [ -w "$CPUCAP_DIR/cpu.cfs_quota_us" ] ||
    { echo "cpucap: no cgroup v1 cpu controller at $CPUCAP_ROOT"; rmdir "$CPUCAP_DIR" 2>/dev/null; CPUCAP_DIR=; return 1; }
  echo 20000 >"$CPUCAP_DIR/cpu.cfs_period_us"
  cpucap_set "$1"
}

cpucap_set() {
  if [ "$1" = max ]; then echo -1; else echo $((20000 * $1 / 100)); fi >"$CPUCAP_DIR/cpu.cfs_quota_us"
}

cpucap_wrap() {
  cat >"$1" <<WRAP
#!/usr/bin/env bash
node=\$1; shift
[ "\$node" = "$2" ] && echo \$\$ >"$CPUCAP_DIR/cgroup.procs"
exec "\$@"
WRAP
  chmod +x "$1"
}

cpucap_down() {
  [ -n "$CPUCAP_DIR" ] || return 0
  local p
  for p in $(cat "$CPUCAP_DIR/cgroup.procs" 2>/dev/null); do echo "$p" >"$CPUCAP_ROOT/cgroup.procs" 2>/dev/null; done
  rmdir "$CPUCAP_DIR" 2>/dev/null
}
