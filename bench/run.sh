#!/bin/bash
# make bench: our figures beside the anchors on the same files, medians of 3 runs,
# written to bench/RESULTS.md with the exact commands. Not a test: nothing asserts.
set -u
cd "$(dirname "$0")/.." || exit 2
TOP=$PWD
B=${B:-build}
VT=$TOP/$B/vhdtool
SIZE_MIB=${BENCH_SIZE_MIB:-1024}
DIR=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vdbench.XXXXXX")
trap 'rm -rf "$DIR"' EXIT
OUT=bench/RESULTS.md

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
secs() { local t0 t1; drop; t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
time3() { for i in 1 2 3; do rm -f "$DIR/out"; secs "$@"; done | median; }

# Source: SIZE_MIB raw file, first half random data, second half zeros (a hole).
head -c $((SIZE_MIB / 2))M /dev/urandom >"$DIR/src.raw"
truncate -s ${SIZE_MIB}M "$DIR/src.raw"
"$VT" convert -O dynamic "$DIR/src.raw" "$DIR/src.vhd" >/dev/null
"$VT" convert -O fixed "$DIR/src.raw" "$DIR/src-fixed.vhd" >/dev/null

{
echo "# libvdisk benchmarks"
echo
echo "Produced by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d). Machine: $(nproc) cores,"
echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr), file system $(stat -f -c %T "$DIR") under $(dirname "$DIR")."
echo "Page cache dropped before every run; each figure is the median of 3 runs."
echo
echo "## Convert (${SIZE_MIB} MiB source, half random data, half zeros), seconds"
echo
echo "| workload | vhdtool | qemu-img convert | cp --sparse=always | vhdtool / cp |"
echo "| --- | --- | --- | --- | --- |"
} >"$OUT.tmp"

row() { # name ours qemu cp
	printf '| %s | %.2f | %.2f | %.2f | %.2f |\n' "$1" "$2" "$3" "$4" "$(echo "$2 / $4" | bc -l)" >>"$OUT.tmp"
}
a=$(time3 "$VT" convert -O dynamic "$DIR/src.raw" "$DIR/out")
q=$(time3 qemu-img convert -f raw -O vpc "$DIR/src.raw" "$DIR/out")
c=$(time3 cp --sparse=always "$DIR/src.raw" "$DIR/out")
row "raw → dynamic" "$a" "$q" "$c"
a=$(time3 "$VT" convert -O raw "$DIR/src.vhd" "$DIR/out")
q=$(time3 qemu-img convert -f vpc -O raw "$DIR/src.vhd" "$DIR/out")
row "dynamic → raw" "$a" "$q" "$c"
a=$(time3 "$VT" convert -O dynamic "$DIR/src-fixed.vhd" "$DIR/out")
q=$(time3 qemu-img convert -f vpc -O vpc "$DIR/src-fixed.vhd" "$DIR/out")
row "fixed → dynamic" "$a" "$q" "$c"

{
echo
echo "## Library API (bench/vdbench, ${SIZE_MIB} MiB images, psync engine, no O_DIRECT)"
echo
echo "| workload | dynamic VHD | raw file, same API | unit | ratio |"
echo "| --- | --- | --- | --- | --- |"
} >>"$OUT.tmp"
for i in 1 2 3; do "$TOP/$B/bench/vdbench" "$DIR" "$SIZE_MIB" | tail -n +2; done >"$DIR/api.tsv"
for w in $(cut -f1 "$DIR/api.tsv" | sort -u); do
	v=$(awk -F'\t' -v w="$w" '$1==w {print $2}' "$DIR/api.tsv" | median)
	r=$(awk -F'\t' -v w="$w" '$1==w {print $3}' "$DIR/api.tsv" | median)
	u=$(awk -F'\t' -v w="$w" '$1==w {print $4; exit}' "$DIR/api.tsv")
	printf '| %s | %s | %s | %s | %.2f |\n' "$w" "$v" "$r" "$u" "$(echo "$v / $r" | bc -l)" >>"$OUT.tmp"
done
{
echo
echo "## Commands"
echo
echo '```'
echo "vhdtool convert -O dynamic src.raw out       qemu-img convert -f raw -O vpc src.raw out"
echo "vhdtool convert -O raw src.vhd out           qemu-img convert -f vpc -O raw src.vhd out"
echo "vhdtool convert -O dynamic src-fixed.vhd out qemu-img convert -f vpc -O vpc src-fixed.vhd out"
echo "cp --sparse=always src.raw out"
echo "build/bench/vdbench DIR ${SIZE_MIB}"
echo '```'
echo
echo "Later work (issue 7) adds io_uring/libaio engines, fio and qemu-io anchors, queue depth 32 and plots."
} >>"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
