# make bench in its tiny mode (BENCH_SMOKE=1: 8 MiB files, one run), so the
# benchmark cannot rot: every figure and plot must still be produced. No figure
# is judged: timing belongs to `make bench`, not to tests.
. "$TOP/tests/lib.sh"

for tool in fio qemu-io qemu-img gnuplot bc /usr/bin/time; do
	if ! command -v "$tool" >/dev/null; then
		skip bench-smoke "$tool is not installed (scripts/install-deps.sh installs it)"
		exit 0
	fi
done
b=$BUILD
if ! make -s -C "$TOP" B="$b" "$b/bench/vdbench" >"$TMPDIR/make.log" 2>&1; then
	fail bench-builds "$(tail -n 3 "$TMPDIR/make.log" | tr '\n' ' ')"
	exit 0
fi
ok bench-builds
out=$TMPDIR/out
if BENCH_SMOKE=1 BENCH_OUT="$out" BENCH_DIR="$TMPDIR" B="$b" "$TOP/bench/run.sh" >"$TMPDIR/bench.log" 2>"$TMPDIR/bench.err"; then
	ok bench-runs
else
	fail bench-runs "$(tail -n 3 "$TMPDIR/bench.err" | tr '\n' ' ')"
fi
if grep -q FAILED "$TMPDIR/bench.err"; then
	fail bench-commands-succeed "$(grep FAILED "$TMPDIR/bench.err" | head -n 2 | tr '\n' ' ')"
else
	ok bench-commands-succeed
fi
# All 32 rows (13 I/O, 9 convert, 6 merge, 4 RSS), each with a number where a figure belongs.
rows=$(grep -cE '^\| (api|convert|merge|rss)-[0-9]+ ' "$out/RESULTS.md" 2>/dev/null)
empty=$(grep -E '^\| (api|convert|merge|rss)-[0-9]+ ' "$out/RESULTS.md" 2>/dev/null |
	awk -F'|' '$4 !~ /[0-9]/ && $5 !~ /[0-9]/ || $0 ~ /nan/' | head -n 3)
if [ "${rows:-0}" = 32 ] && [ -z "$empty" ]; then
	ok bench-figures-produced
else
	fail bench-figures-produced "$rows rows; without a figure: $empty"
fi
for png in relative.png merge.png; do
	if head -c 4 "$out/$png" 2>/dev/null | grep -q PNG; then
		ok "bench-plot-$png"
	else
		fail "bench-plot-$png" "no PNG at $out/$png"
	fi
done
