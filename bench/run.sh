#!/bin/bash
# make bench: our figures beside the anchors (fio on the raw file, qemu-io and
# qemu-img on a vpc image, cp) on the same files in the same run, each the
# median of 3 runs with the page cache dropped before each, written to
# bench/RESULTS.md with the exact commands, plus PNG plots (gnuplot).
# Not a test: nothing asserts a figure.
#
# BENCH_SMOKE=1: 8 MiB files, one run, small counts, results and plots in a
# scratch directory (BENCH_OUT), for tests/build/bench-smoke.sh: it only shows
# that every figure is still produced.
set -u
cd "$(dirname "$0")/.." || exit 2
TOP=$PWD
B=${B:-build}
case $B in /*) BD=$B ;; *) BD=$TOP/$B ;; esac
VT=$BD/vhdtool
VB=$BD/bench/vdbench
DIR=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vdbench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
	SIZE_MIB=8 RUNS=1 NQD1=200 NQD32=640 NWRITE=100 MERGE_MIB="1 2 4" PARENT_GIB="8M 16M"
	BIG_GIB=1 BIG_BLOCKS=100 BIG_TIMEOUT=10 BIG_READ_MIB=8 OUTDIR=${BENCH_OUT:-$DIR/out}
else
	SIZE_MIB=${BENCH_SIZE_MIB:-1024} RUNS=3 NQD1=20000 NQD32=100000 NWRITE=10000
	MERGE_MIB="64 128 256" PARENT_GIB="1G 16G" BIG_GIB=1954 BIG_BLOCKS=1000000 BIG_TIMEOUT=60 BIG_READ_MIB=4096
	OUTDIR=${BENCH_OUT:-$TOP/bench}
fi
mkdir -p "$OUTDIR"
OUT=$OUTDIR/RESULTS.md
ROWS=$DIR/rows.tsv # section, workload, ours, anchor, unit, our command, anchor command
: >"$ROWS"

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
# Cold cache: root drops the page cache (not in smoke runs: other work shares the machine).
drop() { [ "${BENCH_SMOKE:-0}" = 1 ] || { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }; }
# secs CMD...: wall seconds of CMD (stdin from $DIR/stdin when it exists)
secs() {
	local t0 t1 in=/dev/null
	[ -f "$DIR/stdin" ] && in=$DIR/stdin
	t0=$(date +%s.%N)
	"$@" <"$in" >/dev/null 2>"$DIR/err" || echo "bench: FAILED: $* ($(tail -n 1 "$DIR/err"))" >&2
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}
# runs SETUP MEASURE...: median over RUNS of MEASURE's figure, SETUP and a cache drop before each
runs() {
	local setup=$1 i; shift
	for ((i = 0; i < RUNS; i++)); do $setup; drop; "$@"; done | median
}
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }
nothing() { :; }
# fio_iops / fio_mibs ARGS...: the IOPS or MiB/s that fio reports for its job
fio_fig() {
	local kind=$1; shift
	fio --output-format=json "$@" >"$DIR/fio.json" 2>"$DIR/err" ||
		{ echo "bench: FAILED: fio $* ($(tail -n 1 "$DIR/err"))" >&2; echo nan; return; }
	python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; rw=j["write"] if j["write"]["io_bytes"] else j["read"]
print(rw["bw"]/1024 if sys.argv[2]=="bw" else rw["iops"])' "$DIR/fio.json" "$kind"
}
fio_iops() { fio_fig iops "$@"; }
fio_mibs() { fio_fig bw "$@"; }
# qemu_io_rate N UNIT_BYTES ARGS...: commands from $DIR/stdin; N ops/s (or MiB/s when UNIT_BYTES>0)
qemu_io_rate() {
	local n=$1 unit=$2 s; shift 2
	s=$(secs qemu-io "$@")
	if [ "$unit" = 0 ]; then echo "$n / $s" | bc -l; else echo "$n * $unit / 1048576 / $s" | bc -l; fi
}

# ---- images ----
SIZE=$((SIZE_MIB << 20))
# A raw source: first half random data, second half zeros (a hole), for convert.
head -c $((SIZE / 2)) /dev/urandom >"$DIR/half.raw"
truncate -s "$SIZE" "$DIR/half.raw"
"$VT" convert -O dynamic "$DIR/half.raw" "$DIR/half.vhd" >/dev/null
"$VT" convert -O fixed "$DIR/half.raw" "$DIR/half-fixed.vhd" >/dev/null
# Fully allocated: random data everywhere, as a raw file and as a dynamic VHD.
head -c "$SIZE" /dev/urandom >"$DIR/full.raw"
"$VT" convert -O dynamic "$DIR/full.raw" "$DIR/full.vhd" >/dev/null

FIO="--name=b --filename=$DIR/full.raw --direct=1 --bs=4k --size=$SIZE --randrepeat=1 --norandommap"

# ---- 4 KiB random reads, QD1 and QD32 ----
for eng in io_uring libaio; do
	o=$(runs nothing "$VB" -e "$eng" -D -n "$NQD1" randread "$DIR/full.vhd" | cut -d' ' -f1)
	a=$(runs nothing fio_iops $FIO --rw=randread --ioengine="$eng" --iodepth=1 --number_ios="$NQD1")
	row api "4k rand read QD1, $eng" "$o" "$a" IOPS \
		"vdbench -e $eng -D -n $NQD1 randread full.vhd" \
		"fio --rw=randread --bs=4k --direct=1 --ioengine=$eng --iodepth=1 --number_ios=$NQD1 full.raw"
	o=$(runs nothing "$VB" -e "$eng" -D -q 32 -n "$NQD32" randread "$DIR/full.vhd" | cut -d' ' -f1)
	a=$(runs nothing fio_iops $FIO --rw=randread --ioengine="$eng" --iodepth=32 --number_ios="$NQD32")
	row api "4k rand read QD32, $eng" "$o" "$a" IOPS \
		"vdbench -e $eng -D -q 32 -n $NQD32 randread full.vhd (one thread, 32 in flight via vd_aio)" \
		"fio --rw=randread --bs=4k --direct=1 --ioengine=$eng --iodepth=32 --number_ios=$NQD32 full.raw"
done

# ---- 4 KiB random writes into allocated blocks (QD1, O_DIRECT, flush at the end) ----
awk -v n="$NWRITE" -v slots=$((SIZE / 4096)) 'BEGIN {srand(7); for (i = 0; i < n; i++) printf "write -P 0xa5 %d 4k\n", int(rand() * slots) * 4096; print "flush"}' >"$DIR/qemu-rand.cmds"
qemu_alloc() { cp "$DIR/qemu-rand.cmds" "$DIR/stdin"; qemu_io_rate "$NWRITE" 0 -f vpc -t none "$DIR/full.vhd"; rm -f "$DIR/stdin"; }
qa=$(runs nothing qemu_alloc)
for eng in io_uring libaio; do
	o=$(runs nothing "$VB" -e "$eng" -D -n "$NWRITE" randwrite "$DIR/full.vhd" | cut -d' ' -f1)
	[ "$eng" = io_uring ] && ou=$o
	a=$(runs nothing fio_iops $FIO --rw=randwrite --ioengine="$eng" --iodepth=1 --number_ios="$NWRITE" --end_fsync=1)
	row api "4k rand write allocated, $eng" "$o" "$a" IOPS \
		"vdbench -e $eng -D -n $NWRITE randwrite full.vhd" \
		"fio --rw=randwrite --bs=4k --direct=1 --ioengine=$eng --iodepth=1 --number_ios=$NWRITE --end_fsync=1 full.raw"
done
row api "4k rand write allocated, io_uring vs qemu-io" "$ou" "$qa" IOPS \
	"vdbench -e io_uring -D -n $NWRITE randwrite full.vhd" \
	"qemu-io -f vpc -t none full.vhd < $NWRITE x 'write -P 0xa5 OFF 4k', flush"

# ---- 4 KiB random writes into a fresh disk: one per 2 MiB block, each allocates ----
NBLK=$((SIZE >> 21))
awk -v n="$NBLK" 'BEGIN {srand(11); for (i = 0; i < n; i++) p[i] = i; for (i = n - 1; i > 0; i--) {j = int(rand() * (i + 1)); t = p[i]; p[i] = p[j]; p[j] = t}
	for (i = 0; i < n; i++) print p[i] * 2097152 + int(rand() * 512) * 4096}' >"$DIR/fresh.offsets"
awk '{printf "write -P 0xa5 %d 4k\n", $1} END {print "flush"}' "$DIR/fresh.offsets" >"$DIR/qemu-fresh.cmds"
fresh_vhd() { rm -f "$DIR/fresh.vhd"; "$VT" create -s "$SIZE" "$DIR/fresh.vhd" >/dev/null; }
fresh_raw() { rm -f "$DIR/fresh.raw"; truncate -s "$SIZE" "$DIR/fresh.raw"; }
qemu_fresh() { cp "$DIR/qemu-fresh.cmds" "$DIR/stdin"; qemu_io_rate "$NBLK" 0 -f vpc -t none "$DIR/fresh.vhd"; rm -f "$DIR/stdin"; }
FIOF="--name=b --filename=$DIR/fresh.raw --direct=1 --size=$SIZE"
a=$(runs fresh_raw fio_iops $FIOF --bs=4k --rw=randwrite --randrepeat=1 --norandommap --ioengine=io_uring --iodepth=1 --number_ios="$NBLK" --end_fsync=1)
qa=$(runs fresh_vhd qemu_fresh)
for eng in io_uring libaio; do
	o=$(runs fresh_vhd "$VB" -e "$eng" -D -O "$DIR/fresh.offsets" offwrite "$DIR/fresh.vhd" | cut -d' ' -f1)
	[ "$eng" = io_uring ] && ou=$o
	row api "4k rand write fresh disk, $eng" "$o" "$a" IOPS \
		"vhdtool create -s $SIZE fresh.vhd; vdbench -e $eng -D -O fresh.offsets offwrite fresh.vhd ($NBLK writes, one per block)" \
		"truncate -s $SIZE fresh.raw; fio --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=1 --number_ios=$NBLK --end_fsync=1 fresh.raw"
done
row api "4k rand write fresh disk, io_uring vs qemu-io" "$ou" "$qa" IOPS \
	"vdbench -e io_uring -D -O fresh.offsets offwrite fresh.vhd" \
	"qemu-io -f vpc -t none fresh.vhd < the same $NBLK writes, flush"

# ---- sequential 1 MiB writes into a fresh disk ----
awk -v n="$SIZE_MIB" 'BEGIN {for (i = 0; i < n; i++) printf "write -P 0xa5 %dM 1M\n", i; print "flush"}' >"$DIR/qemu-seq.cmds"
qemu_seq() { cp "$DIR/qemu-seq.cmds" "$DIR/stdin"; qemu_io_rate "$SIZE_MIB" 1048576 -f vpc -t none "$DIR/fresh.vhd"; rm -f "$DIR/stdin"; }
a=$(runs fresh_raw fio_mibs $FIOF --bs=1M --rw=write --ioengine=io_uring --iodepth=1 --end_fsync=1)
qa=$(runs fresh_vhd qemu_seq)
for eng in io_uring libaio; do
	o=$(runs fresh_vhd "$VB" -e "$eng" -D -b 1048576 seqwrite "$DIR/fresh.vhd" | cut -d' ' -f1)
	[ "$eng" = io_uring ] && ou=$o
	row api "1M seq write fresh disk, $eng" "$o" "$a" MiB/s \
		"vhdtool create -s $SIZE fresh.vhd; vdbench -e $eng -D -b 1048576 seqwrite fresh.vhd" \
		"truncate -s $SIZE fresh.raw; fio --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=1 --end_fsync=1 fresh.raw"
done
row api "1M seq write fresh disk, io_uring vs qemu-io" "$ou" "$qa" MiB/s \
	"vdbench -e io_uring -D -b 1048576 seqwrite fresh.vhd" "qemu-io -f vpc -t none fresh.vhd < $SIZE_MIB x 'write -P 0xa5 OFF 1M', flush"

# ---- convert (seconds; cp is the ceiling: it reads everything and writes only data) ----
rm_out() { rm -f "$DIR/out"; }
convert_row() { # name src ours-args qemu-args
	local o q c cs
	o=$(runs rm_out secs "$VT" convert $3 "$DIR/$2" "$DIR/out")
	q=$(runs rm_out secs qemu-img convert $4 "$DIR/$2" "$DIR/out")
	c=$(runs rm_out secs cp --sparse=always "$DIR/$2" "$DIR/out")
	cs=$(runs rm_out secs sh -c 'cp --sparse=always "$1" "$2" && sync "$2"' sh "$DIR/$2" "$DIR/out")
	row convert "$1, vs cp" "$o" "$c" s "vhdtool convert $3 $2 out" "cp --sparse=always $2 out"
	# vhdtool makes its output durable before naming it (crash safety); so does this anchor.
	row convert "$1, vs cp + sync" "$o" "$cs" s "vhdtool convert $3 $2 out" "cp --sparse=always $2 out && sync out"
	row convert "$1, vs qemu-img" "$o" "$q" s "vhdtool convert $3 $2 out" "qemu-img convert $4 $2 out"
}
convert_row "raw (50% data) -> dynamic" half.raw "-O dynamic" "-f raw -O vpc"
convert_row "dynamic -> raw" half.vhd "-O raw" "-f vpc -O raw"
convert_row "fixed -> dynamic" half-fixed.vhd "-O dynamic" "-f vpc -O vpc"

# ---- merge: a child with M MiB of data into a parent of P ----
for p in $PARENT_GIB; do
	for m in $MERGE_MIB; do
		head -c "${m}M" /dev/urandom >"$DIR/child.data"
		merge_setup() {
			rm -f "$DIR/parent.vhd" "$DIR/child.vhd"
			"$VT" create -s "$p" "$DIR/parent.vhd" >/dev/null
			"$VT" create -t diff -b "$DIR/parent.vhd" "$DIR/child.vhd" >/dev/null
			"$VT" write --offset 0 "$DIR/child.vhd" "$DIR/child.data" >/dev/null
		}
		o=$(runs merge_setup secs "$VT" merge "$DIR/child.vhd")
		row merge "child with $m MiB into a $p parent" "$o" "" s \
			"vhdtool create -s $p parent.vhd; create -t diff -b parent.vhd child.vhd; write child.vhd (${m} MiB at 0); merge child.vhd" ""
	done
done

# ---- peak RSS on a sparse ${BIG_GIB} GiB dynamic disk with $BIG_BLOCKS allocated blocks ----
python3 bench/make-big-dynamic.py "$DIR/big.vhd" "$BIG_GIB" "$BIG_BLOCKS" || echo "bench: FAILED: make-big-dynamic.py" >&2
rss() { # label timeout cmd...: peak RSS in KiB of cmd (stopped after timeout seconds)
	local label=$1 limit=$2; shift 2
	drop
	/usr/bin/time -f "%M" -o "$DIR/rss" timeout "$limit" "$@" >/dev/null 2>"$DIR/rss.err"
	local rc=$? fig
	fig=$(tail -n 1 "$DIR/rss")
	[ "$rc" = 124 ] && label="$label (stopped after ${limit} s)"
	if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then
		echo "bench: FAILED: $* (exit $rc)" >&2
		fig=nan label="$label (failed: $(tail -n 1 "$DIR/rss.err" | sed "s|$DIR/||g"))"
	fi
	row rss "$label" "$fig" "" KiB \
		"/usr/bin/time -f %M timeout $limit $(echo "$*" | sed "s|$VT|vhdtool|; s|$DIR/||g")" ""
}
rss "vhdtool check" 600 "$VT" check "$DIR/big.vhd"
# To a pipe (no 1.9 TiB output file: the free-space check would rightly refuse it).
rss "vhdtool convert -O raw to a pipe" "$BIG_TIMEOUT" "$VT" convert -O raw "$DIR/big.vhd" -
"$VT" create -t diff -b "$DIR/big.vhd" "$DIR/big-child.vhd" >/dev/null
head -c 64M /dev/urandom >"$DIR/c64"
"$VT" write --offset 0 "$DIR/big-child.vhd" "$DIR/c64" >/dev/null
rss "vhdtool merge (64 MiB child)" 600 "$VT" merge "$DIR/big-child.vhd"
# vhdmount: mounted in the foreground, its disk read for a while, peak RSS from /proc.
if [ -x "$BD/vhdmount" ] && [ -e /dev/fuse ]; then
	mkdir -p "$DIR/mnt"
	"$BD/vhdmount" -f "$DIR/big.vhd" "$DIR/mnt" 2>"$DIR/mount.err" &
	mpid=$!
	for _ in $(seq 50); do [ -e "$DIR/mnt/disk" ] && break; sleep 0.1; done
	timeout "$BIG_TIMEOUT" dd if="$DIR/mnt/disk" of=/dev/null bs=1M count=$((BIG_READ_MIB)) 2>/dev/null
	ls -R "$DIR/mnt" >/dev/null 2>&1
	fig=$(awk '/VmHWM/ {print $2}' "/proc/$mpid/status" 2>/dev/null)
	fusermount3 -u "$DIR/mnt" 2>/dev/null || umount "$DIR/mnt" 2>/dev/null
	wait "$mpid" 2>/dev/null
	row rss "vhdmount (reading ${BIG_READ_MIB} MiB of disk)" "${fig:-nan}" "" KiB \
		"vhdmount -f big.vhd mnt & dd if=mnt/disk of=/dev/null bs=1M count=$BIG_READ_MIB; VmHWM" ""
else
	echo "bench: FAILED: vhdmount not built or no /dev/fuse" >&2
fi

. bench/report.sh
