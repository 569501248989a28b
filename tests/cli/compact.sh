# vhdtool compact against a plain-file model, qemu-img and the fixtures: the
# disk reads the same afterwards (vhdtool compare, qemu-img compare), check is
# clean, the file is smaller by what was dropped, and a second run finds
# nothing more. Disks come from our tool, from qemu-img/qemu-io and from
# Disk2vhd and Windows (fixtures, copied to the scratch directory first).
. "$TOP/tests/lib.sh"
V=$VHDTOOL
T=$TMPDIR

size_of() { stat -c %s "$1"; }

# same NAME IMAGE RAW: the compacted image reads as RAW, by us and by qemu-img.
same() {
	check "$1: reads the same afterwards" "$V" compare "$2" "$3"
	check "$1: qemu-img compare agrees" qemu-img compare -q -f vpc -F raw "$2" "$3"
	check "$1: check is clean" "$V" check "$2"
}

# 1. Our dynamic disk: data, whole zero blocks, a discarded range, a partly zero block.
head -c 32M /dev/urandom >"$T/m.raw"
dd if=/dev/zero of="$T/m.raw" bs=1M seek=4 count=6 conv=notrunc 2>/dev/null
dd if=/dev/zero of="$T/m.raw" bs=1k seek=20480 count=100 conv=notrunc 2>/dev/null
"$V" create -s 32M "$T/d.vhd" >/dev/null && "$V" write "$T/d.vhd" "$T/m.raw" >/dev/null
"$V" discard --offset 24M --length 4M "$T/d.vhd" >/dev/null
dd if=/dev/zero of="$T/m.raw" bs=1M seek=24 count=4 conv=notrunc 2>/dev/null
before=$(size_of "$T/d.vhd")
out=$("$V" compact --json "$T/d.vhd")
check "dynamic: compact succeeds" test $? = 0
after=$(size_of "$T/d.vhd")
dropped=$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["blocks_dropped"])')
[ "$dropped" = 3 ] && ok "dynamic: the 3 all-zero 2 MiB blocks are dropped (json)" || fail "dynamic: the 3 all-zero 2 MiB blocks are dropped (json)" "$out"
# 16 blocks of 2 MiB: 3 zero + 2 discarded go; 11 stay, each 2 MiB + bitmap.
[ "$after" -lt $((12 * 2 * 1048576)) ] && [ "$after" -lt "$before" ] && ok "dynamic: the file shrinks to the blocks kept ($before -> $after)" || fail "dynamic: the file shrinks to the blocks kept" "$before -> $after"
same dynamic "$T/d.vhd" "$T/m.raw"
printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["bytes_after"] == int(sys.argv[1])' "$after" && ok "dynamic: --json reports the new file size" || fail "dynamic: --json reports the new file size" "$out"
out=$("$V" compact --json "$T/d.vhd")
printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["blocks_dropped"] == 0 and d["blocks_moved"] == 0 and d["bytes_after"] == d["bytes_before"]' && ok "dynamic: a second compact finds nothing" || fail "dynamic: a second compact finds nothing" "$out"
vhdiinfo "$T/d.vhd" >/dev/null 2>&1 && ok "dynamic: vhdiinfo opens the compacted disk" || fail "dynamic: vhdiinfo opens the compacted disk"

# 2. Small blocks: many moves (64 KiB blocks, every other one zero).
python3 - "$T/s.raw" <<'EOF'
import os, sys
with open(sys.argv[1], "wb") as f:
    for i in range(256):
        f.write(os.urandom(65536) if i % 3 else bytes(65536))
EOF
"$V" create -s 16M --block-size 64K "$T/s.vhd" >/dev/null
python3 - "$T/s.raw" "$V" "$T/s.vhd" <<'EOF'
import subprocess, sys
raw, v, img = sys.argv[1:]
data = open(raw, "rb").read()
# allocate every block, zeros included, in reverse order so the moves matter
for i in reversed(range(256)):
    subprocess.run([v, "write", "--offset", str(i * 65536), img, "-"], input=data[i*65536:(i+1)*65536] or b"\0", check=True, stdout=subprocess.DEVNULL)
EOF
"$V" info --json "$T/s.vhd" | grep -q '"allocated_bytes": 16777216' && ok "64K blocks: every block allocated before" || fail "64K blocks: every block allocated before" "$("$V" info "$T/s.vhd" | grep -i alloc)"
check "64K blocks: compact" "$V" compact "$T/s.vhd"
same "64K blocks" "$T/s.vhd" "$T/s.raw"
[ "$(size_of "$T/s.vhd")" -lt $((172 * 66048)) ] && ok "64K blocks: 86 zero blocks reclaimed" || fail "64K blocks: 86 zero blocks reclaimed" "$(size_of "$T/s.vhd")"

# 3. A differencing disk: blocks and sectors equal to the parent go back to it.
head -c 8M /dev/urandom >"$T/p.raw"
"$V" create -s 8M "$T/p.vhd" >/dev/null && "$V" write "$T/p.vhd" "$T/p.raw" >/dev/null
"$V" create -t diff -b "$T/p.vhd" "$T/c.vhd" >/dev/null
cp "$T/p.raw" "$T/c.raw"
head -c 2M "$T/p.raw" | "$V" write "$T/c.vhd" - >/dev/null                    # block 0: same as the parent
head -c 5000 /dev/urandom >"$T/x" && "$V" write --offset 2100000 "$T/c.vhd" "$T/x" >/dev/null
dd if="$T/x" of="$T/c.raw" bs=1 seek=2100000 conv=notrunc 2>/dev/null
dd if="$T/p.raw" bs=1 skip=3000000 count=4096 2>/dev/null | "$V" write --offset 3000000 "$T/c.vhd" - >/dev/null
out=$("$V" compact --json "$T/c.vhd")
printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["blocks_dropped"] == 1 and d["sectors_cleared"] >= 8' && ok "diff: the block equal to the parent is dropped, equal sectors cleared" || fail "diff: the block equal to the parent is dropped, equal sectors cleared" "$out"
check "diff: reads the same afterwards" "$V" compare "$T/c.vhd" "$T/c.raw"
check "diff: check is clean" "$V" check "$T/c.vhd"
[ "$(size_of "$T/c.vhd")" -lt 3000000 ] && ok "diff: only the block with new data is kept" || fail "diff: only the block with new data is kept" "$(size_of "$T/c.vhd")"

# 4. qemu-made disks: qemu-io writes zeros into allocated blocks.
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/q.vhd" 16M
qemu-io -f vpc -c "write -P 0x5a 0 1M" -c "write -P 0 4M 2M" -c "write -P 0x33 9M 512k" "$T/q.vhd" >/dev/null
qemu-img convert -f vpc -O raw "$T/q.vhd" "$T/q.raw"
before=$(size_of "$T/q.vhd")
check "qemu-img disk: compact" "$V" compact "$T/q.vhd"
same "qemu-img disk" "$T/q.vhd" "$T/q.raw"
[ "$(size_of "$T/q.vhd")" -lt "$before" ] && ok "qemu-img disk: the zero block is reclaimed" || fail "qemu-img disk: the zero block is reclaimed" "$before -> $(size_of "$T/q.vhd")"

# 5. Fixtures made by Windows tools (copied to scratch; the originals are never written).
if [ -n "${FIXTURES:-}" ] && [ -f "$FIXTURES/single/disk2vhd-dynamic-251M-zerofilled.vhd.bz2" ]; then
	bzcat "$FIXTURES/single/disk2vhd-dynamic-251M-zerofilled.vhd.bz2" | cp --sparse=always /dev/stdin "$T/d2v.vhd"
	check "disk2vhd (all blocks allocated, all zero): compact" "$V" compact "$T/d2v.vhd"
	[ "$(size_of "$T/d2v.vhd")" -lt 65536 ] && ok "disk2vhd: 252 MiB of zeros become a file of headers only" || fail "disk2vhd: 252 MiB of zeros become a file of headers only" "$(size_of "$T/d2v.vhd")"
	check "disk2vhd: check is clean" "$V" check "$T/d2v.vhd"
	truncate -s 263454720 "$T/zero.raw"
	check "disk2vhd: qemu-img still reads zeros of the same size" qemu-img compare -q -f vpc -F raw "$T/d2v.vhd" "$T/zero.raw"
	zcat "$FIXTURES/single/win10-dynamic-10M-ntfs-mbr.vhd.gz" >"$T/w.vhd"
	"$V" read "$T/w.vhd" >"$T/w.raw"
	check "win10 NTFS (blocks out of order): compact" "$V" compact "$T/w.vhd"
	same "win10 NTFS" "$T/w.vhd" "$T/w.raw"
	cp "$FIXTURES/single/tap-dynamic-empty.vhd" "$T/tap.vhd"
	expect_exit "blktap disk with a batmap is refused (the batmap would go stale)" 2 "$V" compact "$T/tap.vhd"
	cmp -s "$T/tap.vhd" "$FIXTURES/single/tap-dynamic-empty.vhd" && ok "blktap: the refused disk is unchanged" || fail "blktap: the refused disk is unchanged"
else
	skip "fixtures" "FIXTURES not found (../shared/fixtures/vhd)"
fi

# 6. Refusals.
"$V" create -t fixed -s 4M "$T/f.vhd" >/dev/null
out=$("$V" compact "$T/f.vhd" 2>&1); rc=$?
[ "$rc" = 2 ] && printf '%s' "$out" | grep -q "convert" && ok "fixed disk: refused, pointing to convert" || fail "fixed disk: refused, pointing to convert" "$rc: $out"
expect_exit "missing file: exit 2" 2 "$V" compact "$T/nope.vhd"
"$V" compact --help | grep -q "Optimize\|zeros" && ok "compact --help explains" || fail "compact --help explains"

# 7. --fs-aware: blocks the guest file systems mark free go, even when not zero
# (deleted files keep their bytes). An MBR disk: FAT32 in p1, ext4 in p2.
mkdir -p "$T/tree/sub" && head -c 100K /dev/urandom >"$T/tree/sub/keep.bin" && echo hello >"$T/tree/a.txt"
head -c 20M /dev/urandom >"$T/tree/big.bin"
truncate -s 96M "$T/fs.raw"
printf 'label: dos\nstart=2048, size=90112, type=c\nstart=92160, type=83\n' | sfdisk -q "$T/fs.raw"
mkfs.vfat -F 32 --offset 2048 "$T/fs.raw" 45056 >/dev/null 2>&1 # KiB
MTOOLS_SKIP_CHECK=1 mcopy -i "$T/fs.raw@@1048576" "$T/tree/big.bin" "$T/tree/a.txt" ::/
MTOOLS_SKIP_CHECK=1 mdel -i "$T/fs.raw@@1048576" ::/big.bin
mkfs.ext4 -q -F -d "$T/tree" -b 4096 "$T/p2.raw" $(((196608 - 92160) / 2))k >/dev/null
debugfs -w -R "rm big.bin" "$T/p2.raw" >/dev/null 2>&1
dd if="$T/p2.raw" of="$T/fs.raw" bs=512 seek=92160 conv=notrunc 2>/dev/null
"$V" create -s 96M "$T/fs.vhd" >/dev/null && "$V" write "$T/fs.vhd" "$T/fs.raw" >/dev/null
"$V" compact "$T/fs.vhd" >/dev/null
plain=$(size_of "$T/fs.vhd")
if out=$("$V" compact --fs-aware --json "$T/fs.vhd" 2>"$T/fs.err"); then
	ok "--fs-aware compact succeeds"
else
	fail "--fs-aware compact succeeds" "$(cat "$T/fs.err")"
fi
aware=$(size_of "$T/fs.vhd")
[ $((plain - aware)) -ge $((30 * 1048576)) ] && ok "--fs-aware drops the two deleted 20 MiB files' blocks ($plain -> $aware)" || fail "--fs-aware drops the two deleted 20 MiB files' blocks" "$plain -> $aware: $out"
check "--fs-aware: check is clean" "$V" check "$T/fs.vhd"
for p in p1 p2; do
	rm -f "$T/k.bin" "$T/a.out"
	"$V" extract "$T/fs.vhd:$p" /a.txt "$T/a.out" >/dev/null 2>&1 && cmp -s "$T/a.out" "$T/tree/a.txt" && ok "--fs-aware: $p's file reads as before" || fail "--fs-aware: $p's file reads as before"
done
"$V" extract "$T/fs.vhd:p2" /sub/keep.bin "$T/k.bin" >/dev/null 2>&1 && cmp -s "$T/k.bin" "$T/tree/sub/keep.bin" && ok "--fs-aware: ext4 keeps its other files" || fail "--fs-aware: ext4 keeps its other files"
"$V" read "$T/fs.vhd" >"$T/fs.back"
dd if="$T/fs.back" of="$T/p2.back" bs=512 skip=92160 2>/dev/null
check "--fs-aware: e2fsck finds the ext4 clean" e2fsck -fn "$T/p2.back"
check "--fs-aware: fsck.vfat finds the FAT32 clean" sh -c "dd if='$T/fs.back' of='$T/p1.back' bs=512 skip=2048 count=90112 2>/dev/null && fsck.vfat -n '$T/p1.back'"
"$V" create -s 4M "$T/nofs.vhd" >/dev/null
expect_exit "--fs-aware on a disk without a file system says so" 2 "$V" compact --fs-aware "$T/nofs.vhd"
