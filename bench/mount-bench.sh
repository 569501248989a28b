#!/bin/bash
# Read benchmark of the recovery mount: sequential (1 MiB) and random (4 KiB and
# 64 KiB) reads of the whole virtual disk through vhdmount's `disk`, through
# libvhdi's vhdimount, and of the raw file, with the page cache dropped before
# each run (root). Prints a Markdown table; not a test (no timing assertions).
#   bench/mount-bench.sh [BUILD_DIR] [SIZE_MIB]
set -eu
B=${1:-build}
SIZE_MIB=${2:-1024}
V=$B/vhdtool
M=$B/vhdmount
W=$(mktemp -d /var/tmp/mount-bench.XXXXXX)
trap 'fusermount3 -u "$W/vm" 2>/dev/null; fusermount3 -u "$W/vi" 2>/dev/null; rm -rf "$W"' EXIT
drop() { sync; [ "$(id -u)" = 0 ] && echo 3 >/proc/sys/vm/drop_caches || true; }

# A dynamic disk 3/4 full of random data in 2 MiB blocks; a quarter never written.
head -c $((SIZE_MIB * 1048576)) /dev/zero >"$W/disk.raw"
python3 - "$W/disk.raw" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
size = os.fstat(fd).st_size
for off in range(0, size, 2 << 20):
    if (off >> 21) % 4 != 3:
        os.pwrite(fd, os.urandom(2 << 20), off)
os.close(fd)
PY
"$V" convert -O dynamic "$W/disk.raw" "$W/disk.vhd" >/dev/null
mkdir -p "$W/vm" "$W/vi"
"$M" "$W/disk.vhd" "$W/vm" 2>/dev/null # the random data is no file system: a note
vhdimount "$W/disk.vhd" "$W/vi" >/dev/null 2>&1
VI=$W/vi/vhdi1

seq_read() { # FILE -> MB/s
	drop
	python3 - "$1" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t = time.monotonic(); n = 0
while True:
    b = os.read(fd, 1 << 20)
    if not b: break
    n += len(b)
print("%.0f" % (n / (time.monotonic() - t) / 1e6))
PY
}
rand_read() { # FILE BS COUNT -> IOPS
	drop
	python3 - "$1" "$2" "$3" <<'PY'
import os, random, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
bs, count = int(sys.argv[2]), int(sys.argv[3])
size = os.fstat(fd).st_size
rng = random.Random(42)
offs = [rng.randrange(0, size // bs) * bs for _ in range(count)]
t = time.monotonic()
for o in offs: os.pread(fd, bs, o)
print("%.0f" % (count / (time.monotonic() - t)))
PY
}

# Same bytes everywhere, or the figures mean nothing.
cmp "$W/vm/disk" "$W/disk.raw"
cmp "$VI" "$W/disk.raw"

echo "| reader | seq 1 MiB (MB/s) | random 4 KiB (IOPS) | random 64 KiB (IOPS) |"
echo "|---|---|---|---|"
for r in raw vhdmount vhdimount; do
	case $r in raw) f=$W/disk.raw ;; vhdmount) f=$W/vm/disk ;; vhdimount) f=$VI ;; esac
	echo "| $r | $(seq_read "$f") | $(rand_read "$f" 4096 3000) | $(rand_read "$f" 65536 1500) |"
done
echo
echo "Disk: ${SIZE_MIB} MiB dynamic VHD (2 MiB blocks, 3/4 written with random data),"
echo "page cache dropped before each run; $(nproc) cores; $(uname -r)."
