#!/bin/bash
# `make demo`: round-trips a real ext4 file system through a dynamic VHD with
# vhdtool and checks the result with independent tools (cmp, qemu-img, e2fsck,
# debugfs), then tells the checkpoint story: a checkpoint before an "upgrade",
# changed data, the checkpoint applied and the old data back.
# Usage: scripts/demo.sh PATH/TO/vhdtool. Exits non-zero on any failure.
set -euo pipefail

VHDTOOL=${1:?usage: demo.sh PATH/TO/vhdtool}
VHDTOOL=$(cd "$(dirname "$VHDTOOL")" && pwd)/$(basename "$VHDTOOL")
PATH=$PATH:/sbin:/usr/sbin # mkfs.ext4, e2fsck and debugfs live here on Debian

# /var/tmp, not /tmp: the demo should run on a disk-backed file system, where
# sparse files and free-space checks behave as they will for users.
WORK=$(mktemp -d "${DEMO_TMPDIR:-/var/tmp}/vhdtool-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'echo "demo: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$WORK"

fail() {
	echo "demo: FAILED: $*" >&2
	exit 1
}

need() {
	command -v "$1" >/dev/null 2>&1 || fail "$1 is not installed (run 'make deps')"
}

# json_num KEY: a number from `vhdtool info --json` on stdin.
json_num() {
	sed -n "s/^ *\"$1\": \([0-9]*\),\{0,1\}\$/\1/p"
}

mib() {
	awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

need mkfs.ext4
need e2fsck
need debugfs

# 1. A directory tree turned into an ext4 image, as a build system would make one.
mkdir -p tree/docs/notes
printf 'hello from vhdtool\n' >tree/hello.txt
printf 'the quick brown fox\njumps over the lazy dog\n' >tree/docs/readme.txt
seq 1 1000 >tree/docs/notes/numbers.txt
head -c 3M /dev/urandom >tree/random.bin
truncate -s 64M img.raw
mkfs.ext4 -q -F -d tree img.raw 64M
echo "1. built a 64 MiB ext4 image (img.raw) from a tree with text files, a 3 MiB"
echo "   random file and a subdirectory; it occupies $(du -k img.raw | cut -f1) KiB on disk"

# 2. Raw to dynamic VHD: only blocks with data are stored.
"$VHDTOOL" convert img.raw disk.vhd >/dev/null
info=$("$VHDTOOL" info --json disk.vhd)
virtual=$(json_num virtual_size <<<"$info")
allocated=$(json_num allocated_bytes <<<"$info")
[ "$virtual" = 67108864 ] || fail "disk.vhd has virtual size $virtual, expected 67108864"
echo "2. converted it to a dynamic VHD: $(mib "$virtual") virtual, $(mib "$allocated")" \
	"allocated, file $(mib "$(stat -c %s disk.vhd)")"

echo "3. vhdtool info disk.vhd:"
"$VHDTOOL" info disk.vhd | sed 's/^/     /'

# Captured first: with pipefail, head closing the pipe early would fail the demo.
map=$("$VHDTOOL" map disk.vhd)
echo "4. vhdtool map disk.vhd (first of $(($(wc -l <<<"$map") - 1)) ranges):"
head -n 8 <<<"$map" | sed 's/^/     /'

# 5. And back: the raw file must come back byte for byte.
"$VHDTOOL" convert -O raw disk.vhd back.raw >/dev/null
echo "5. converted the VHD back to raw (back.raw, $(du -k back.raw | cut -f1) KiB on disk)"

out=$("$VHDTOOL" compare img.raw disk.vhd) || fail "vhdtool compare: $out"
echo "6. vhdtool compare img.raw disk.vhd: $out"
cmp img.raw back.raw || fail "img.raw and back.raw differ"
echo "7. cmp img.raw back.raw: identical"

# 8. An independent reader of the VHD. -F vpc: qemu takes some VHDs for raw.
if command -v qemu-img >/dev/null 2>&1; then
	out=$(qemu-img compare -f raw -F vpc img.raw disk.vhd) || fail "qemu-img compare: $out"
	echo "8. qemu-img compare -f raw -F vpc img.raw disk.vhd: $out"
else
	echo "8. qemu-img not installed: skipped the QEMU cross-check"
fi

# 9. The file system inside must still be consistent and its files readable.
e2fsck -fn back.raw >e2fsck.log 2>&1 || fail "e2fsck -fn back.raw: $(tail -n 3 e2fsck.log)"
echo "9. e2fsck -fn back.raw: clean ($(tail -n 1 e2fsck.log))"
debugfs -R 'cat /docs/readme.txt' back.raw 2>/dev/null >readme.out
cmp -s readme.out tree/docs/readme.txt || fail "debugfs read a different /docs/readme.txt"
debugfs -R 'cat /random.bin' back.raw 2>/dev/null >random.out
cmp -s random.out tree/random.bin || fail "debugfs read a different /random.bin"
echo "10. debugfs -R 'cat /docs/readme.txt' back.raw gives back the file:"
sed 's/^/     /' readme.out
echo "    and /random.bin (3 MiB) matches the original byte for byte"

# The checkpoint story (Hyper-V's): checkpoint, change, apply, old data back.
# range_hash: SHA-256 of the 1 MiB at 8 MiB of a state of disk.vhd.
range_hash() {
	"$VHDTOOL" read --offset 8M --length 1M "$@" disk.vhd | sha256sum | cut -c1-16
}
indent() {
	sed 's/^/     /'
}

before=$(range_hash)
base_sum=$(sha256sum disk.vhd | cut -c1-16)
echo "11. vhdtool checkpoint create disk.vhd before-upgrade (the 1 MiB at 8 MiB hashes"
echo "    to $before):"
"$VHDTOOL" checkpoint create disk.vhd before-upgrade | indent

# A known 1 MiB pattern stands in for what an upgrade writes. (Not `yes | head`:
# with pipefail, yes dying of SIGPIPE would fail the demo.)
head -c 1M /dev/zero | tr '\0' 'U' >upgrade.bin
"$VHDTOOL" write --offset 8M disk.vhd upgrade.bin
after=$(range_hash)
[ "$after" != "$before" ] || fail "the write at 8 MiB changed nothing"
[ "$after" = "$(sha256sum <upgrade.bin | cut -c1-16)" ] || fail "read back $after, not the pattern"
[ "$(sha256sum disk.vhd | cut -c1-16)" = "$base_sum" ] ||
	fail "the write changed disk.vhd itself, not its active image"
echo "12. vhdtool write --offset 8M disk.vhd upgrade.bin: the range now hashes to"
echo "    $after; the file disk.vhd is unchanged (the write went to the active image)"

echo "13. vhdtool checkpoint list disk.vhd:"
"$VHDTOOL" checkpoint list disk.vhd | indent

saved=$(range_hash --checkpoint before-upgrade)
[ "$saved" = "$before" ] || fail "checkpoint before-upgrade reads $saved, expected $before"
echo "14. vhdtool read --checkpoint before-upgrade still gives the old data: $saved"

echo "15. the upgrade failed: vhdtool checkpoint apply disk.vhd before-upgrade"
"$VHDTOOL" checkpoint apply disk.vhd before-upgrade | indent
back=$(range_hash)
[ "$back" = "$before" ] || fail "after apply the range hashes to $back, expected $before"
out=$("$VHDTOOL" compare img.raw disk.vhd) || fail "after apply, vhdtool compare: $out"
echo "    the range hashes to $back again, and vhdtool compare img.raw disk.vhd:"
echo "    $out"

echo "16. vhdtool checkpoint delete disk.vhd before-upgrade, then list again:"
"$VHDTOOL" checkpoint delete disk.vhd before-upgrade | indent
"$VHDTOOL" checkpoint list disk.vhd | indent
[ "$(range_hash)" = "$before" ] || fail "deleting the checkpoint changed the active state"
out=$("$VHDTOOL" compare img.raw disk.vhd) || fail "after delete, vhdtool compare: $out"
echo "    the active state is unchanged: $out"

# Item-level recovery without a VM: the files inside the disk, read through TSK.
echo "17. vhdtool ls disk.vhd:p1 /docs (the ext4 inside, without mounting it):"
"$VHDTOOL" ls disk.vhd:p1 /docs | indent
"$VHDTOOL" extract disk.vhd:p1 /docs/readme.txt restored.txt >/dev/null ||
	fail "vhdtool extract /docs/readme.txt failed"
cmp -s restored.txt tree/docs/readme.txt || fail "the extracted readme.txt differs from the tree's"
echo "    vhdtool extract disk.vhd:p1 /docs/readme.txt restored.txt: same bytes as the tree's"

# Copy (same disk, UUID kept) and compact after a discard.
"$VHDTOOL" copy disk.vhd copy.vhd >/dev/null || fail "vhdtool copy failed"
out=$("$VHDTOOL" compare disk.vhd copy.vhd) || fail "the copy differs: $out"
echo "18. vhdtool copy disk.vhd copy.vhd (same UUID): $out"
size_before=$(stat -c %s copy.vhd)
"$VHDTOOL" discard --offset 32M --length 32M copy.vhd >/dev/null || fail "vhdtool discard failed"
"$VHDTOOL" compact copy.vhd | indent
"$VHDTOOL" check copy.vhd >/dev/null || fail "the compacted copy does not check clean"
echo "19. after discarding its second half and compacting, copy.vhd went from"
echo "    $(mib "$size_before") to $(mib "$(stat -c %s copy.vhd)") and checks clean"
echo "demo: all steps passed"
