#!/bin/bash
# vhdmount --rw OVERLAY: writes through disk and partitions/pN (a kernel loop
# mount of an ext4 partition, read-write) land in the new differencing disk
# OVERLAY; the source chain's files keep their sha256; files/ stays read-only.
set -u
. "$(dirname "$0")/../lib.sh"
T=$TMPDIR
V=$VHDTOOL
M=${BUILD:?}/vhdmount
. "$(dirname "$0")/images.inc"

if [ ! -x "$M" ]; then fail "vhdmount-present" "$M not built"; exit 0; fi
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then skip "rw suite" "no /dev/fuse or fusermount3 here"; exit 0; fi
NO_NTFS="not needed here"
trap 'umount "$T/k" 2>/dev/null; fusermount3 -u "$T/m" 2>/dev/null' EXIT
if ! build_mbr; then fail "build MBR test disk" "see $T"; exit 0; fi

chain_sums() { (cd "$T" && sha256sum mbr.vhd mbr*.avhd mbr.vhd.checkpoints); }
chain_sums >"$T/before"
mkdir -p "$T/m" "$T/k"
if ! timeout 30 "$M" --rw "$T/over.vhd" --checkpoint A "$T/mbr.vhd" "$T/m" 2>"$T/err"; then
	fail "mount checkpoint A with --rw" "$(cat "$T/err")"; exit 0
fi
ok "mount checkpoint A with --rw"

head -c 65536 /dev/urandom >"$T/pattern"
off=$((70 * 1048576)) # inside p6, the partition of random bytes
if dd if="$T/pattern" of="$T/m/disk" bs=65536 seek=$((off / 65536)) conv=notrunc,fsync status=none &&
	cmp -s "$T/pattern" <(dd if="$T/m/disk" bs=65536 skip=$((off / 65536)) count=1 status=none); then
	ok "a write to disk reads back through the mount"
else
	fail "a write to disk reads back through the mount"
fi
if touch "$T/m/files/p1/x" 2>/dev/null; then fail "files/ stays read-only under --rw"; else ok "files/ stays read-only under --rw"; fi

if [ "$(id -u)" = 0 ] && mount -o loop -t ext4 "$T/m/partitions/p1" "$T/k" 2>"$T/kerr"; then
	echo "repaired offline" >"$T/k/docs/fixed.txt"
	rm -f "$T/k/one.bin"
	umount "$T/k"
	ok "kernel mounts partitions/p1 read-write and writes a file"
	if e2fsck -fn "$T/m/partitions/p1" >"$T/fsck" 2>&1; then ok "e2fsck finds the written partition clean"; else fail "e2fsck finds the written partition clean" "$(tail -3 "$T/fsck")"; fi
	KERNEL_WROTE=1
else
	skip "kernel read-write loop mount of partitions/p1" "needs root and loop devices: $(head -c 200 "$T/kerr" 2>/dev/null)"
fi
fusermount3 -u "$T/m"

if chain_sums | diff -q - "$T/before" >/dev/null; then ok "the source chain is byte-identical after the writes"; else fail "the source chain is byte-identical after the writes" "$(chain_sums | diff - "$T/before" | head -3)"; fi
info=$("$V" info --json "$T/over.vhd" 2>&1)
if printf '%s' "$info" | grep -q '"differencing"'; then ok "OVERLAY is a differencing disk"; else fail "OVERLAY is a differencing disk" "$info"; fi
if cmp -s "$T/pattern" <("$V" read --offset "$off" --length 65536 "$T/over.vhd"); then ok "OVERLAY holds the write to disk"; else fail "OVERLAY holds the write to disk"; fi
if [ -n "${KERNEL_WROTE:-}" ]; then
	got=$("$V" ls "$T/over.vhd:p1" /docs/fixed.txt 2>&1 && "$V" extract "$T/over.vhd:p1" /docs/fixed.txt "$T/fixed.txt" && cat "$T/fixed.txt")
	if printf '%s' "$got" | grep -q "repaired offline"; then ok "OVERLAY holds the file written through the loop mount"; else fail "OVERLAY holds the file written through the loop mount" "$got"; fi
	"$V" extract "$T/over.vhd:p1" /docs/reports/report.docx "$T/over-report" >/dev/null 2>&1
	if [ "$(cat "$T/over-report" 2>/dev/null)" = "report v1" ]; then ok "OVERLAY sits on checkpoint A's state, not the active one"; else fail "OVERLAY sits on checkpoint A's state, not the active one" "report reads '$(cat "$T/over-report" 2>/dev/null)'"; fi
	rm -rf "$T/x"
	"$V" extract --checkpoint A "$T/mbr.vhd:p1" / "$T/x" >/dev/null 2>&1
	same_tree "checkpoint A's files are unchanged" "$T/x" "$T/tree/A/ext"
fi
expect_exit "--rw refuses an existing OVERLAY" 2 "$M" --rw "$T/over.vhd" "$T/mbr.vhd" "$T/m"
if [ -z "$(ls -A "$T/m")" ]; then ok "a refused --rw mount leaves nothing mounted"; else fail "a refused --rw mount leaves nothing mounted"; fi
