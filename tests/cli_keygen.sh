#!/usr/bin/env bash
# seifer keygen: writes a 0600 file of 64 hex digits, never overwrites, and bad arguments give a
# clear error with a nonzero exit status (never a crash).
set -u
SEIFER=${1:?usage: cli_keygen.sh SEIFER}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0

# expect_error DESCRIPTION PATTERN -- COMMAND...
expect_error() {
  local desc=$1 pat=$2
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -eq 0 ]; then
    echo "FAIL $desc: exit 0"; fail=1
  elif [ $rc -ge 128 ]; then
    echo "FAIL $desc: crashed (status $rc)"; cat "$T/err"; fail=1
  elif ! grep -qiE -- "$pat" "$T/err"; then
    echo "FAIL $desc: message does not match /$pat/:"; cat "$T/err"; fail=1
  else
    echo "ok   $desc: $(head -n1 "$T/err")"
  fi
}

if "$SEIFER" keygen -o "$T/key" >"$T/out" 2>"$T/err"; then
  mode=$(stat -c %a "$T/key")
  if [ "$mode" != 600 ]; then echo "FAIL mode is $mode, expected 600"; fail=1; fi
  if ! grep -qE '^[0-9a-f]{64}$' "$T/key" || [ "$(wc -l <"$T/key")" -ne 1 ] ||
     [ "$(wc -c <"$T/key")" -ne 65 ]; then
    echo "FAIL key file is not 64 hex digits and a newline:"; od -c "$T/key" | head; fail=1
  else
    echo "ok   keygen wrote a 0600 file of 64 hex digits"
  fi
else
  echo "FAIL keygen -o: $(cat "$T/err")"; fail=1
fi
cp "$T/key" "$T/key.orig"
"$SEIFER" keygen --output "$T/key2" >/dev/null 2>&1 || { echo "FAIL keygen --output"; fail=1; }
if cmp -s "$T/key" "$T/key2"; then echo "FAIL two keys are equal"; fail=1; fi

expect_error "refuses to overwrite" "exists" -- "$SEIFER" keygen -o "$T/key"
if ! cmp -s "$T/key" "$T/key.orig"; then echo "FAIL existing key was modified"; fail=1; fi
expect_error "no output" "no output file" -- "$SEIFER" keygen
expect_error "-o without value" "needs a value" -- "$SEIFER" keygen -o
expect_error "unknown option" "unknown option" -- "$SEIFER" keygen -o "$T/k3" --frob
expect_error "stray argument" "unexpected argument" -- "$SEIFER" keygen "$T/k4"
expect_error "directory missing" "cannot create" -- "$SEIFER" keygen -o "$T/no/such/dir/key"
"$SEIFER" keygen --help >"$T/out" 2>&1 && grep -q "usage: seifer keygen" "$T/out" ||
  { echo "FAIL keygen --help"; fail=1; }
[ -e "$T/k3" ] && { echo "FAIL a key was written despite the bad option"; fail=1; }
exit $fail
