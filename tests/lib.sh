# Shared helpers for the shell suites. Each suite is run by tests/run.sh with:
#   VHDTOOL   path of the vhdtool binary under test
#   FIXTURES  ../shared/fixtures/vhd (read in place, never copied into the tree)
#   RESULTS   file that collects one "PASS|FAIL|SKIP <suite> <name> <why>" line a test
#   TMPDIR    a scratch directory private to this suite run
# Suites call ok/fail/skip; a suite's exit status is ignored, its lines count.
: "${VHDTOOL:?}" "${RESULTS:?}" "${TMPDIR:?}"
SUITE=${SUITE:-$(basename "$0" .sh)}

ok() { echo "PASS $SUITE $1" >>"$RESULTS"; echo "  ok   $1"; }
# The reason is kept on one line (and at most 600 bytes) so the results file stays one line a test.
fail() { local why; why=$(printf '%s' "${2:-}" | tr '\n\t' '  ' | head -c 600); echo "FAIL $SUITE $1 $why" >>"$RESULTS"; echo "  FAIL $1: $why"; }
skip() { echo "SKIP $SUITE $1 ${2:-}" >>"$RESULTS"; echo "  skip $1: ${2:-}"; }

# check NAME CMD...: pass when CMD succeeds.
check() {
	local name=$1 out; shift
	if out=$("$@" 2>&1); then ok "$name"; else fail "$name" "$(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"; fi
}

# expect_exit NAME CODE CMD...: pass when CMD exits with CODE.
expect_exit() {
	local name=$1 want=$2 out rc; shift 2
	out=$("$@" 2>&1); rc=$?
	if [ "$rc" = "$want" ]; then ok "$name"; else fail "$name" "exit $rc, wanted $want: $(printf '%s' "$out" | tail -n 2 | tr '\n' ' ')"; fi
}
