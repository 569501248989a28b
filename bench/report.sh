# Sourced by bench/run.sh: turns $ROWS (section, workload, ours, anchor, unit,
# our command, anchor command) into $OUT (markdown) and PNG plots in $OUTDIR.
# "vs anchor" is how fast we are next to the anchor: ours/anchor for rates,
# anchor/ours for seconds; above 100% we are faster.

machine() {
	local cpu fs dev
	cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
	fs=$(stat -f -c %T "$DIR")
	dev=$(df --output=source "$DIR" | tail -n 1)
	echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- CPU: ${cpu:-unknown}, $(nproc) cores; $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM"
	echo "- Kernel: $(uname -sr); file system: $fs on $dev ($(dirname "$DIR"))"
	echo "- Tools: $(fio --version), $(qemu-img --version | head -n 1), $(cp --version | head -n 1)"
	echo "- Sizes: ${SIZE_MIB} MiB images; each figure the median of $RUNS run(s); page cache dropped before each run"
}

# One markdown row per $ROWS line of SECTION: number, workload, figures, unit, relative speed.
table() { # section title
	echo
	echo "## $2"
	echo
	echo "| # | workload | ours | anchor | unit | vs anchor |"
	echo "| --- | --- | --- | --- | --- | --- |"
	awk -F'\t' -v s="$1" '
	function fmt(v) { return v == "" ? "" : sprintf(v + 0 >= 100 ? "%.0f" : "%.2f", v) }
	$1 == s {
		rel = "—"
		if ($3 + 0 > 0 && $4 + 0 > 0)
			rel = sprintf("%.0f%%", ($5 == "s" ? $4 / $3 : $3 / $4) * 100)
		printf "| %s-%d | %s | %s | %s | %s | %s |\n", s, ++n, $2, fmt($3), fmt($4), $5, rel
	}' "$ROWS"
}

commands() {
	echo
	echo "## Commands"
	echo
	echo "Paths are relative to the scratch directory (\`${BENCH_DIR:-/var/tmp}/vdbench.*\`);"
	echo "\`vdbench\` is \`build/bench/vdbench\`, \`vhdtool\` is \`build/vhdtool\`."
	echo
	awk -F'\t' '{
		printf "- %s-%d: ours `%s`", $1, ++n[$1], $6
		if ($7 != "") printf "; anchor `%s`", $7
		print ""
	}' "$ROWS"
}

plots() {
	command -v gnuplot >/dev/null || { echo "(gnuplot missing: no plots)"; return; }
	# Speed next to the anchor, every row that has one.
	awk -F'\t' '$3 != "" && $4 != "" && $3 > 0 && $4 > 0 {
		r = ($5 == "s" ? $4 / $3 : $3 / $4) * 100; gsub(/ /, "_", $2); print $2, r}' "$ROWS" >"$DIR/rel.dat"
	# Merge seconds by data size, one line per parent size.
	awk -F'\t' '$1 == "merge" {split($2, w, " "); print w[7], w[3], $3}' "$ROWS" >"$DIR/merge.dat"
	gnuplot <<GP 2>"$DIR/gnuplot.err" || echo "(gnuplot failed: $(tail -n 1 "$DIR/gnuplot.err"))"
set terminal png size 1100,650 font ",9" noenhanced
set output "$OUTDIR/relative.png"
set title "libvdisk speed next to the anchor (100% = as fast; fio, qemu-io, qemu-img, cp)"
set style fill solid 0.6
set boxwidth 0.7
set yrange [0:*]
set ylabel "% of the anchor's speed"
set xtics rotate by -40 left font ",8"
set bmargin 14
set grid y
plot "$DIR/rel.dat" using 0:2:xtic(stringcolumn(1)) with boxes notitle, 100 with lines lw 2 title "anchor"
set output "$OUTDIR/merge.png"
set title "vhdtool merge: seconds by data in the child"
set xtics norotate
set bmargin 4
set xlabel "MiB of data in the child"
set ylabel "seconds"
set key left top
plot for [p in "$PARENT_GIB"] "$DIR/merge.dat" using (strcol(1) eq p ? \$2 : 1/0):3 with linespoints lw 2 title p." parent"
GP
}

{
	echo "# libvdisk benchmarks"
	echo
	echo "Produced by \`make bench\` (bench/run.sh). Not a test: nothing asserts a figure."
	echo "Anchors: \`fio\` on the raw file with the same settings, \`qemu-io\` and"
	echo "\`qemu-img\` on a vpc image, \`cp --sparse=always\`. \"vs anchor\" is our speed"
	echo "as a share of the anchor's (above 100%: faster)."
	echo
	machine
	table api "I/O through the library (bench/vdbench: O_DIRECT, cold cache, dynamic VHD; anchor on the raw file)"
	echo
	echo "QD32 for us is one thread keeping 32 requests in flight through the asynchronous"
	echo "API (vd_aio_submit/vd_aio_poll), as fio's iodepth=32 does. qemu-io (QD1,"
	echo "cache=none) is timed as a process, start included."
	table convert "Convert (${SIZE_MIB} MiB, half random data, half zeros), seconds"
	table merge "Merge (seconds; no anchor: qemu-img cannot commit vpc chains)"
	table rss "Peak RSS on a sparse ${BIG_GIB} GiB dynamic VHD with ${BIG_BLOCKS} allocated blocks (bench/make-big-dynamic.py)"
	echo
	echo "![speed next to the anchor](relative.png)"
	echo
	echo "![merge time by data size](merge.png)"
	commands
} >"$OUT.tmp"
plots
mv "$OUT.tmp" "$OUT"
cat "$OUT"
