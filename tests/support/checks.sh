# Sourced by the shell tests that count their checks (cli_test.sh,
# router/router_cli_test.sh, train/train_test.sh): each check prints
# "ok: WHAT" or "FAIL: WHAT" and is counted in pass / fail; the script ends
# by printing the counts and exiting with [ "$fail" = 0 ].
# expect_rc needs W, the test's scratch directory, set when it runs.
pass=0; fail=0
ok() { echo "ok: $1"; pass=$((pass+1)); }
bad() { echo "FAIL: $1"; fail=$((fail+1)); }
expect_rc() { # expected-rc description cmd...: stdout in $W/out.txt, stderr in $W/err.txt
  local want=$1 what=$2; shift 2
  "$@" >"$W/out.txt" 2>"$W/err.txt"; local rc=$?
  if [ "$rc" = "$want" ]; then ok "$what (rc $rc)"; else bad "$what: rc $rc, want $want: $(head -c 2000 "$W/err.txt")"; fi
}
