#!/bin/bash
# Runs every suite of `make check` and prints one summary line at the end:
#   N passed, N failed, N skipped
# Unit tests (Criterion) run from the normal and the ASan+UBSan build; the shell
# suites under tests/images and tests/cli run against both vhdtool builds too,
# and (normal build) once more on each asynchronous engine: io_uring, libaio.
cd "$(dirname "$0")/.." || exit 2
TOP=$PWD
# The shared sample disks are read in place (some are copyleft: never copied here).
# They sit beside the checkout; a clone elsewhere finds them at the workspace path.
if [ -z "${FIXTURES:-}" ]; then
	for dir in "$TOP/../shared/fixtures/vhd" /work/shared/fixtures/vhd; do
		if [ -f "$dir/MANIFEST.tsv" ]; then FIXTURES=$(cd "$dir" && pwd); break; fi
	done
fi
export FIXTURES=${FIXTURES:-}
RESULTS=$(mktemp /tmp/vdisk-results.XXXXXX)
export RESULTS
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Criterion itself leaks a 48-byte allocation under -j2; our code gets no suppression.
export LSAN_OPTIONS=suppressions=$TOP/tests/lsan.supp

run_unit() { # build-dir [test names...]
	local dir=$1; shift
	for bin in "$dir"/tests/unit/*; do
		[ -x "$bin" ] || continue
		[ $# = 0 ] || [[ " $* " == *" $(basename "$bin") "* ]] || continue
		name="${RESULT_PREFIX:-}$(basename "$dir")/unit/$(basename "$bin")"
		echo "== $name"
		start=$SECONDS
		tap=$("$bin" --tap=- -j2 2>/tmp/vdisk-unit-err.$$)
		rc=$?
		echo "   ($name: $((SECONDS - start)) s)"
		printf '%s\n' "$tap" | grep -E '^(not )?ok ' | while read -r line; do
			case $line in
			"not ok"*) echo "FAIL $name ${line#not ok }" >>"$RESULTS"; echo "  FAIL ${line#not ok }";;
			*"# SKIP"*) echo "SKIP $name ${line#ok }" >>"$RESULTS";;
			*) echo "PASS $name ${line#ok }" >>"$RESULTS";;
			esac
		done
		if [ "$rc" != 0 ] && ! printf '%s\n' "$tap" | grep -q '^not ok'; then
			echo "FAIL $name exited $rc: $(tail -n 3 /tmp/vdisk-unit-err.$$ | tr '\n' ' ')" >>"$RESULTS"
			echo "  FAIL exited $rc"; tail -n 20 /tmp/vdisk-unit-err.$$
		fi
		rm -f /tmp/vdisk-unit-err.$$
	done
}

run_shell() { # build-dir suite-dir
	for t in "$2"/*.sh; do
		[ -f "$t" ] || continue
		suite="${RESULT_PREFIX:-}$(basename "$1")/$(basename "$2")/$(basename "$t" .sh)"
		echo "== $suite"
		scratch=$(mktemp -d /tmp/vdisk-test.XXXXXX)
		start=$SECONDS
		SUITE=$suite VHDTOOL="$TOP/$1/vhdtool" BUILD="$TOP/$1" TMPDIR=$scratch TOP=$TOP \
			bash "$t" </dev/null
		echo "   ($suite: $((SECONDS - start)) s)"
		rm -rf "$scratch"
	done
}

run_unit build
run_shell build tests/images
run_shell build tests/cli
run_shell build tests/fuse
run_shell build tests/build
run_shell build tests/crash
# Every integration suite again on the asynchronous engines (issue 7), results
# prefixed uring/ and libaio/; the unit suites that open disks honour VDISK_ENGINE.
for engine in io_uring:uring libaio:libaio; do
	export VDISK_ENGINE=${engine%%:*} RESULT_PREFIX=${engine#*:}/
	probe=$(mktemp -d /tmp/vdisk-engine.XXXXXX)
	if ! why=$(build/vhdtool create -s 1M "$probe/p.vhd" 2>&1 >/dev/null); then
		echo "SKIP ${RESULT_PREFIX}all the engine cannot start here: $why" >>"$RESULTS"
		rm -rf "$probe"; unset VDISK_ENGINE RESULT_PREFIX; continue
	fi
	rm -rf "$probe"
	run_unit build test_api test_model
	run_shell build tests/images
	run_shell build tests/cli
	unset VDISK_ENGINE RESULT_PREFIX
done
run_unit build-asan
run_shell build-asan tests/images
run_shell build-asan tests/cli
run_shell build-asan tests/crash
# libFuzzer targets, a fixed number of runs each (fixed seed: repeatable).
echo "== fuzz"
FUZZ_RUNS=${FUZZ_RUNS:-3000} ./tests/fuzz/run.sh

p=$(grep -c '^PASS' "$RESULTS"); f=$(grep -c '^FAIL' "$RESULTS"); s=$(grep -c '^SKIP' "$RESULTS")
if [ "$s" -gt 0 ]; then echo "-- skipped:"; grep '^SKIP' "$RESULTS" | sed 's/^SKIP /   /'; fi
if [ "$f" -gt 0 ]; then echo "-- failed:"; grep '^FAIL' "$RESULTS" | sed 's/^FAIL /   /'; fi
rm -f "$RESULTS"
echo "$p passed, $f failed, $s skipped"
[ "$f" = 0 ]
