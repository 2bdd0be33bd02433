# Helpers shared by the shell tests (sourced).
#   check "what" 'COMMAND'      run COMMAND; on failure print "FAIL: what", set fail=1, return 1
#   wait_until SECONDS 'COMMAND' poll COMMAND every 0.1 s until it succeeds or SECONDS pass
#   within A B TOL              A is within the relative tolerance TOL of B (> 0)
fail=${fail:-0}
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; return 1; fi; }
wait_until() { local end=$((SECONDS + $1)); while ! eval "$2" 2>/dev/null; do [ $SECONDS -ge $end ] && return 1; sleep 0.1; done; }
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { exit !(b > 0 && (a - b) / b <= t && (b - a) / b <= t) }'; }
