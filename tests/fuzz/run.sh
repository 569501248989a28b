#!/bin/bash
# Builds the libFuzzer targets of tests/fuzz against the library sources (compiled
# with the same instrumentation; build/libvdisk.a has none) into build-fuzz/, then
# runs each on a scratch copy of its seed corpus (the committed corpus never grows
# here) and reports one line a target into $RESULTS:
#   PASS fuzz/<target> <runs> runs, <execs> execs
#   FAIL fuzz/<target> <crash file>: <first lines of the report>
# Settings (environment):
#   FUZZ_RUNS=N        runs per target (default 3000: `make check`, all targets ~30 s)
#   FUZZ_SECONDS=S     run each target S seconds instead (`make fuzz`)
#   FUZZ_TARGETS="footer image"   a subset (default: every tests/fuzz/fuzz_*.c)
#   FUZZ_SEED=N        libFuzzer -seed (default 1 with FUZZ_RUNS; random with FUZZ_SECONDS)
#   FUZZ_MERGE=1       with FUZZ_SECONDS: merge inputs with new coverage into the corpus
#   FUZZ_ARGS="..."    extra libFuzzer options; FUZZ_LIBS extra link libraries
#   RESULTS            set by tests/run.sh; standalone, a summary is printed instead
cd "$(dirname "$0")/../.." || exit 2
TOP=$PWD
B=${FUZZ_BUILD:-build-fuzz}
FUZZ_CC=${FUZZ_CC:-clang}
FLAGS="-std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
	-fno-sanitize-recover=undefined -D_GNU_SOURCE -Iinclude -Ilibvdisk"
WARN="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
# The targets' size limits: an input is a footer, a header, a BAT or a whole image.
declare -A MAX_LEN=([footer]=8192 [dynhdr]=16384 [bat]=8192 [locator]=2048 [image]=65536)

STANDALONE=0
if [ -z "${RESULTS:-}" ]; then
	RESULTS=$(mktemp /tmp/vdisk-fuzz-results.XXXXXX)
	STANDALONE=1
fi
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
unset LSAN_OPTIONS VDISK_ENGINE
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && command -v llvm-symbolizer >/dev/null; then
	export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi

result() { echo "$*" >>"$RESULTS"; echo "  $*"; }

# Is OUT older than any of the other files?
stale() {
	local out=$1 f
	shift
	[ -e "$out" ] || return 0
	for f in "$@"; do [ "$f" -nt "$out" ] && return 0; done
	return 1
}

# Library objects under $B/obj, rebuilt when a source, a header or the flags change.
build_library() {
	local hdrs flags_file=$B/flags src obj todo=()
	mkdir -p "$B/obj"
	hdrs=$(ls include/vdisk/*.h libvdisk/*.h libvdisk/*/*.h 2>/dev/null)
	if [ "$(cat "$flags_file" 2>/dev/null)" != "$FUZZ_CC $FLAGS" ]; then
		rm -rf "$B/obj" && mkdir -p "$B/obj"
		echo "$FUZZ_CC $FLAGS" >"$flags_file"
	fi
	LIB_OBJS=()
	for src in $(ls libvdisk/*.c libvdisk/*/*.c | sort); do
		obj=$B/obj/${src%.c}.o
		LIB_OBJS+=("$obj")
		# shellcheck disable=SC2086
		stale "$obj" "$src" $hdrs && todo+=("$src")
	done
	[ ${#todo[@]} = 0 ] && return 0
	echo "  CC      ${#todo[@]} library sources for fuzzing"
	# Warnings are the library build's job (its own -Werror); here only errors stop us.
	printf '%s\n' "${todo[@]}" | xargs -P "$(nproc)" -I{} sh -c \
		'mkdir -p "$(dirname "$1")" && '"$FUZZ_CC $(echo $FLAGS) -w"' -c "$2" -o "$1"' \
		sh "$B/obj/{}.o.tmp" {} || return 1
	for src in "${todo[@]}"; do mv "$B/obj/$src.o.tmp" "$B/obj/${src%.c}.o"; done
}

# Libraries the engines need (io_uring, libaio), judged from the sources as they are.
engine_libs() {
	grep -lq 'io_uring_queue_init' libvdisk/io/*.c 2>/dev/null && echo -n " -luring"
	grep -lq 'io_setup' libvdisk/io/*.c 2>/dev/null && echo -n " -laio"
	echo
}

# Can this compiler link a libFuzzer target at all (libclang-rt-*-dev installed)?
have_libfuzzer() {
	local probe
	probe=$(mktemp -d /tmp/vdisk-fuzz-probe.XXXXXX)
	printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
		'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
		>"$probe/probe.c"
	# shellcheck disable=SC2086
	$FUZZ_CC $FLAGS -o "$probe/probe" "$probe/probe.c" >/dev/null 2>&1
	local rc=$?
	rm -rf "$probe"
	return $rc
}

build_target() { # name
	local bin=$B/fuzz_$1 src=tests/fuzz/fuzz_$1.c
	# shellcheck disable=SC2086
	stale "$bin" "$src" tests/fuzz/fuzz_util.c tests/fuzz/fuzz_util.h "${LIB_OBJS[@]}" || return 0
	echo "  LD      $bin"
	# shellcheck disable=SC2086
	$FUZZ_CC $FLAGS $WARN -o "$bin" "$src" tests/fuzz/fuzz_util.c "${LIB_OBJS[@]}" \
		$(engine_libs) ${FUZZ_LIBS:-}
}

# The first lines of a libFuzzer report worth reading in a FAIL line.
report_head() {
	{
		grep -E '==fuzz==|ERROR: |runtime error' "$1" | head -n 2
		grep -E '^ +#[0-3] ' "$1" | grep -v -E 'fz_fail|abort|raise|libc|sanitizer|fuzzer::' |
			head -n 3
		grep -E '^SUMMARY' "$1" | head -n 1
	} | sed 's/^ *//; s/ (BuildId: [0-9a-f]*)//' | tr '\n' ' ' | cut -c1-700
}

TOTAL_EXECS=0
run_target() { # name
	local t=$1 bin=$B/fuzz_$1 work scratch log crashdir opts rc execs crash dict what
	work=$(mktemp -d /tmp/vdisk-fuzz.XXXXXX)
	log=$work/log
	# The targets' scratch images: in memory where possible (thousands of files a second).
	scratch=$(mktemp -d /dev/shm/vdisk-fuzz.XXXXXX 2>/dev/null || mktemp -d "$work/scratch.XXXXXX")
	crashdir=$TOP/$B/crashes/$t
	mkdir -p "$work/corpus" "$crashdir"
	[ -d "tests/fuzz/corpus/$t" ] && cp -r "tests/fuzz/corpus/$t/." "$work/corpus/"
	opts=(-max_len="${MAX_LEN[$t]:-8192}" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1
		-artifact_prefix="$crashdir/")
	dict=tests/fuzz/vhd.dict
	[ -f "$dict" ] && opts+=(-dict="$dict")
	if [ -n "${FUZZ_SECONDS:-}" ]; then
		opts+=(-max_total_time="$FUZZ_SECONDS")
		[ -n "${FUZZ_SEED:-}" ] && opts+=(-seed="$FUZZ_SEED")
		what="${FUZZ_SECONDS} s"
	else
		opts+=(-runs="${FUZZ_RUNS:-3000}" -seed="${FUZZ_SEED:-1}")
		what="${FUZZ_RUNS:-3000} runs"
	fi
	echo "== fuzz/$t ($what)"
	# shellcheck disable=SC2086
	FUZZ_SCRATCH=$scratch "$bin" "${opts[@]}" ${FUZZ_ARGS:-} "$work/corpus" >"$log" 2>&1 </dev/null
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	execs=${execs:-0}
	TOTAL_EXECS=$((TOTAL_EXECS + execs))
	if [ "$rc" = 0 ]; then
		result "PASS fuzz/$t $what, $execs execs"
		if [ -n "${FUZZ_SECONDS:-}" ] && [ "${FUZZ_MERGE:-0}" = 1 ]; then
			mkdir -p "tests/fuzz/corpus/$t"
			FUZZ_SCRATCH=$scratch "$bin" -merge=1 -max_len="${MAX_LEN[$t]:-8192}" \
				"tests/fuzz/corpus/$t" "$work/corpus" >"$work/merge.log" 2>&1 </dev/null
			tail -n 1 "$work/merge.log"
		fi
	else
		crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
		cp "$log" "$crashdir/last.log"
		result "FAIL fuzz/$t ${crash:-no crash file (exit $rc)}: $(report_head "$log") (log: $B/crashes/$t/last.log)"
		tail -n 40 "$log"
	fi
	rm -rf "$work" "$scratch"
}

if [ -n "${FUZZ_TARGETS:-}" ]; then
	TARGETS=$FUZZ_TARGETS
else
	TARGETS=$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | grep -v '^util$')
fi
start=$(date +%s)
if ! command -v "$FUZZ_CC" >/dev/null; then
	for t in $TARGETS; do result "SKIP fuzz/$t $FUZZ_CC is not installed"; done
elif ! have_libfuzzer; then
	for t in $TARGETS; do
		result "SKIP fuzz/$t $FUZZ_CC cannot link -fsanitize=fuzzer (install libclang-rt-dev)"
	done
elif ! build_library; then
	result "FAIL fuzz/build the library does not compile with $FUZZ_CC and the fuzzer flags"
else
	for t in $TARGETS; do
		if build_target "$t"; then
			run_target "$t"
		else
			result "FAIL fuzz/$t does not compile"
		fi
	done
fi
echo "fuzz: $TOTAL_EXECS executions in total, $(($(date +%s) - start)) s"

if [ "$STANDALONE" = 1 ]; then
	p=$(grep -c '^PASS' "$RESULTS"); f=$(grep -c '^FAIL' "$RESULTS"); s=$(grep -c '^SKIP' "$RESULTS")
	rm -f "$RESULTS"
	echo "$p passed, $f failed, $s skipped"
	[ "$f" = 0 ]
fi
