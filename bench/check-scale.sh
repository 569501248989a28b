#!/bin/bash
# Times `vhdtool check` and `vhdtool info` on a sparse 2040 GiB dynamic VHD with
# 1,000,000 allocated 2 MiB blocks (about 4 GiB of real disk for the bitmaps),
# and writes bench/CHECK-SCALE.md. vhd-util's check compares blocks pairwise
# (quadratic); ours sorts by offset (n log n) and reads no bitmap but the last.
set -eu
cd "$(dirname "$0")/.."
VT=${VT:-build/vhdtool}
D=$(mktemp -d "${BENCH_DIR:-/var/tmp}/vdcheck.XXXXXX")
trap 'rm -rf "$D"' EXIT
python3 bench/make-big-dynamic.py "$D/big.vhd" 2040 1000000
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
{
echo "# vhdtool check on a 2040 GiB dynamic disk with 1,000,000 blocks"
echo
echo "Produced by \`bench/check-scale.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -sr); cold cache."
echo
echo "| command | wall seconds | peak RSS (KiB) |"
echo "| --- | --- | --- |"
for cmd in "check" "info"; do
	drop
	/usr/bin/time -f "%e %M" -o "$D/t" "$VT" $cmd "$D/big.vhd" >/dev/null
	read -r secs rss <"$D/t"
	echo "| vhdtool $cmd big.vhd | $secs | $rss |"
done
echo
echo "The image: \`python3 bench/make-big-dynamic.py big.vhd 2040 1000000\`."
} > bench/CHECK-SCALE.md
cat bench/CHECK-SCALE.md
