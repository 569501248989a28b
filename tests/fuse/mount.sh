#!/bin/bash
# vhdmount as a restore operator uses it: the disk, partitions and files of each
# checkpoint's state, equal to the trees the disks were made from; the kernel's
# ext4 (loop mount of partitions/pN) and ntfs-3g seeing the same files; sparse
# disk (SEEK_DATA/SEEK_HOLE, st_blocks) against vhdtool map; many readers at
# once; damaged file systems left out; an ordinary user mounting; usage errors.
set -u
. "$(dirname "$0")/../lib.sh"
T=$TMPDIR
V=$VHDTOOL
M=${BUILD:?}/vhdmount
. "$(dirname "$0")/images.inc"

if [ ! -x "$M" ]; then fail "vhdmount-present" "$M not built"; exit 0; fi
if [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; then skip "mount suite" "no /dev/fuse or fusermount3 here"; exit 0; fi
for tool in sfdisk mkfs.ext4 mkfs.vfat mcopy; do
	command -v "$tool" >/dev/null || { skip "mount suite" "$tool missing (scripts/install-deps.sh installs it)"; exit 0; }
done
command -v mkntfs >/dev/null && command -v ntfs-3g >/dev/null && [ "$(id -u)" = 0 ] || NO_NTFS="mkntfs/ntfs-3g missing or not root"

MOUNTS=()
cleanup() {
	for m in "${MOUNTS[@]}"; do umount "$m/kx" 2>/dev/null; umount "$m/nx" 2>/dev/null; fusermount3 -u "$m" 2>/dev/null; done
}
trap cleanup EXIT
# vmount DIR ARGS...: mount in the background (the default), stderr kept in DIR.err.
vmount() {
	local dir=$1; shift
	mkdir -p "$dir"
	timeout 30 "$M" "$@" "$dir" 2>"$dir.err" && MOUNTS+=("$dir")
}
vumount() { fusermount3 -u "$1"; }

if ! build_mbr; then fail "build MBR test disk" "see $T"; exit 0; fi
build_gpt || fail "build GPT test disk"

vmount "$T/mA" --checkpoint A "$T/mbr.vhd" || fail "mount checkpoint A" "$(cat "$T/mA.err")"
vmount "$T/mB" --checkpoint B "$T/mbr.vhd" || fail "mount checkpoint B" "$(cat "$T/mB.err")"
vmount "$T/mC" "$T/mbr.vhd" || fail "mount the active state" "$(cat "$T/mC.err")"
vmount "$T/mG" "$T/gpt.vhd" -o allow_other || fail "mount the GPT disk with -o allow_other" "$(cat "$T/mG.err")"

# ---- the tree
got=$(ls "$T/mC" | tr '\n' ' ')
if [ "$got" = "disk files partitions " ]; then ok "top level: disk files partitions"; else fail "top level: disk files partitions" "got '$got'"; fi
got=$(ls "$T/mC/partitions" | tr '\n' ' ')
if [ "$got" = "p1 p1.info p2 p2.info p5 p5.info p6 p6.info " ]; then ok "partitions/ lists pN and pN.info"; else fail "partitions/ lists pN and pN.info" "got '$got'"; fi
want="p1 p2 p5 "; [ -n "${NO_NTFS:-}" ] && want="p1 p2 "
got=$(ls "$T/mC/files" | tr '\n' ' ')
if [ "$got" = "$want" ]; then ok "files/ holds the readable file systems only (garbage p6 left out)"; else fail "files/ holds the readable file systems only (garbage p6 left out)" "got '$got' want '$want'"; fi
if grep -q "p6" "$T/mC.err"; then ok "the left-out partition is named in the log"; else fail "the left-out partition is named in the log" "$(cat "$T/mC.err")"; fi
info=$(cat "$T/mC/partitions/p5.info" 2>&1)
if printf '%s' "$info" | grep -q "^start: $MBR_P5$" && printf '%s' "$info" | grep -q "^size: $MBR_P5_LEN$" &&
	printf '%s' "$info" | grep -qi "^type: .*0x07"; then ok "p5.info: type, start, size"; else fail "p5.info: type, start, size" "$info"; fi
if grep -q "^filesystem: none" "$T/mC/partitions/p6.info"; then ok "p6.info says no file system"; else fail "p6.info says no file system" "$(cat "$T/mC/partitions/p6.info")"; fi
if grep -q "^label: fat data" "$T/mG/partitions/p2.info" && grep -q "^filesystem: fat16" "$T/mG/partitions/p2.info"; then ok "GPT p2.info: name and file system"; else fail "GPT p2.info: name and file system" "$(cat "$T/mG/partitions/p2.info")"; fi

# ---- bytes: disk and partitions equal what was written
if cmp -s "$T/mA/disk" "$T/mbr.raw"; then ok "disk at checkpoint A equals the raw image it came from"; else fail "disk at checkpoint A equals the raw image it came from"; fi
if cmp -s "$T/mC/disk" <("$V" read "$T/mbr.vhd"); then ok "disk of the active state equals vhdtool read"; else fail "disk of the active state equals vhdtool read"; fi
for s in A B C; do
	if cmp -s "$T/m$s/partitions/p1" "$T/ext-$s.img"; then ok "partitions/p1 at $s equals the ext4 image written"; else fail "partitions/p1 at $s equals the ext4 image written"; fi
done
if cmp -s "$T/mB/partitions/p2" "$T/fat-B.img"; then ok "partitions/p2 at B equals the FAT image written"; else fail "partitions/p2 at B equals the FAT image written"; fi

# ---- files of every state equal their trees
for s in A B C; do
	for pair in p1:ext p2:fat p5:ntfs; do
		p=${pair%%:*} fs=${pair#*:}
		if [ "$fs" = ntfs ] && [ -n "${NO_NTFS:-}" ]; then skip "files/$p at $s" "$NO_NTFS"; continue; fi
		same_tree "files/$p ($fs) at state $s: listing and sha256 equal the tree" "$T/m$s/files/$p" "$T/tree/$s/$fs"
	done
done
same_tree "GPT files/p1 (ext4) equals the tree" "$T/mG/files/p1" "$T/tree/gpt/ext"
same_tree "GPT files/p2 (FAT16) equals the tree" "$T/mG/files/p2" "$T/tree/gpt/fat"
if cp "$T/mB/files/p1/docs/reports/report.docx" "$T/restored.docx" && [ "$(cat "$T/restored.docx")" = "report B" ]; then ok "cp of one file out of checkpoint B"; else fail "cp of one file out of checkpoint B"; fi
want=$(stat -c '%Y %s' "$T/tree/A/ext/docs/reports/1m+123.bin")
got=$(stat -c '%Y %s' "$T/mA/files/p1/docs/reports/1m+123.bin")
if [ "$got" = "$want" ]; then ok "file size and mtime as in the guest"; else fail "file size and mtime as in the guest" "got $got want $want"; fi
if [ "$(readlink "$T/mC/files/p1/link-to-report")" = "docs/reports/report.docx" ]; then ok "ext4 symlink reads its target"; else fail "ext4 symlink reads its target"; fi
if touch "$T/mC/files/p1/new" 2>/dev/null || dd if=/dev/zero of="$T/mC/disk" bs=512 count=1 conv=notrunc 2>/dev/null; then fail "read-only mount refuses writes"; else ok "read-only mount refuses writes"; fi

# ---- the kernel and ntfs-3g see the same files in partitions/pN
if [ "$(id -u)" = 0 ]; then
	mkdir -p "$T/kx"
	if mount -o ro,loop -t ext4 "$T/mC/partitions/p1" "$T/kx" 2>"$T/kerr"; then
		same_tree "kernel ext4 on partitions/p1 shows the files files/p1 shows" "$T/kx" "$T/mC/files/p1"
		umount "$T/kx"
	else
		skip "kernel ext4 on partitions/p1" "loop mount refused: $(head -c 200 "$T/kerr")"
	fi
else
	skip "kernel ext4 on partitions/p1" "needs root for a loop mount"
fi
if [ -z "${NO_NTFS:-}" ]; then
	mkdir -p "$T/nx"
	if ntfs-3g -o ro "$T/mA/partitions/p5" "$T/nx" 2>"$T/nerr"; then
		same_tree "ntfs-3g on partitions/p5 shows the files files/p5 shows" "$T/nx" "$T/mA/files/p5"
		umount "$T/nx"
	else
		fail "ntfs-3g on partitions/p5" "$(head -c 200 "$T/nerr")"
	fi
else
	skip "ntfs-3g on partitions/p5" "$NO_NTFS"
fi

# ---- sparse disk: SEEK_DATA/SEEK_HOLE and st_blocks agree with vhdtool map
"$V" map --json "$T/gpt.vhd" >"$T/map.json"
python3 - "$T/mG/disk" "$T/map.json" >"$T/seek.out" 2>&1 <<'EOF'
import json, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
want = []
for e in json.load(open(sys.argv[2])):
    if e["kind"] == "allocated":
        if want and want[-1][1] == e["offset"]: want[-1][1] += e["length"]
        else: want.append([e["offset"], e["offset"] + e["length"]])
got, pos = [], 0
while pos < size:
    try: d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError: break
    h = os.lseek(fd, d, os.SEEK_HOLE)
    got.append([d, h]); pos = h
alloc = sum(b - a for a, b in want)
blocks = os.fstat(fd).st_blocks * 512
print("runs", "same" if got == want else "differ", len(got), len(want))
print("blocks", "same" if blocks == alloc else "differ", blocks, alloc)
EOF
if grep -q "^runs same" "$T/seek.out" && [ "$(grep -c . "$T/seek.out")" = 2 ]; then ok "SEEK_DATA/SEEK_HOLE on disk give vhdtool map's allocated runs"; else fail "SEEK_DATA/SEEK_HOLE on disk give vhdtool map's allocated runs" "$(cat "$T/seek.out")"; fi
if grep -q "^blocks same" "$T/seek.out"; then ok "st_blocks of disk is the allocated size"; else fail "st_blocks of disk is the allocated size" "$(cat "$T/seek.out")"; fi
if cp --sparse=always "$T/mG/disk" "$T/gcopy.raw" && cmp -s "$T/gcopy.raw" "$T/gpt.raw"; then ok "cp of the sparse disk equals the raw image"; else fail "cp of the sparse disk equals the raw image"; fi

# ---- many readers at once (FUSE is multithreaded; libvdisk handles are not)
pids=()
for s in A B C; do
	(manifest "$T/m$s/files/p1" >"$T/par-$s.1") & pids+=($!)
	(manifest "$T/m$s/files/p2" >"$T/par-$s.2") & pids+=($!)
done
(sha256sum <"$T/mC/disk" >"$T/par-disk") & pids+=($!)
(sha256sum <"$T/mA/partitions/p1" >"$T/par-p1") & pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
bad=""
for s in A B C; do
	cmp -s "$T/par-$s.1" <(manifest "$T/tree/$s/ext") || bad="$bad $s/p1"
	cmp -s "$T/par-$s.2" <(manifest "$T/tree/$s/fat") || bad="$bad $s/p2"
done
[ "$(cut -d' ' -f1 "$T/par-disk")" = "$("$V" read "$T/mbr.vhd" | sha256sum | cut -d' ' -f1)" ] || bad="$bad disk"
[ "$(cut -d' ' -f1 "$T/par-p1")" = "$(sha256sum <"$T/ext-A.img" | cut -d' ' -f1)" ] || bad="$bad partitions/p1"
if [ -z "$bad" ]; then ok "eight parallel readers over three mounts read correct data"; else fail "eight parallel readers over three mounts read correct data" "wrong:$bad"; fi

# ---- unmount
for m in mA mB mG; do vumount "$T/$m"; done
if vumount "$T/mC" && [ -z "$(ls -A "$T/mC")" ]; then ok "fusermount3 -u unmounts"; else fail "fusermount3 -u unmounts"; fi
MOUNTS=()

# ---- an ordinary user mounts a copy they own
asnobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null || ! id nobody >/dev/null 2>&1; then
	skip "an ordinary user mounts" "needs root (to become nobody) and setpriv"
elif ! asnobody test -r /dev/fuse -a -w /dev/fuse; then
	skip "an ordinary user mounts" "/dev/fuse is not open to other users here ($(stat -c %A /dev/fuse))"
else
	mkdir -p "$T/user" "$T/user/m"
	cp "$T/gpt.vhd" "$T/user/"
	chown -R nobody "$T/user"
	chmod 755 "$T"
	if setpriv --reuid=nobody --regid=nogroup --clear-groups "$M" "$T/user/gpt.vhd" "$T/user/m" 2>"$T/user.err"; then
		if setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$T/user/m/files/p1/docs/reports/report.docx" 2>/dev/null | grep -q "report v1"; then
			ok "an ordinary user mounts and reads a file"
		else
			fail "an ordinary user mounts and reads a file" "read failed"
		fi
		setpriv --reuid=nobody --regid=nogroup --clear-groups fusermount3 -u "$T/user/m"
	else
		fail "an ordinary user mounts and reads a file" "$(head -c 300 "$T/user.err")"
	fi
fi

# ---- usage errors: exit 2, one stderr line
usage() {
	local name=$1 word=$2 out rc n; shift 2
	out=$(timeout 20 "$M" "$@" 2>&1 >/dev/null); rc=$?
	n=$(printf '%s' "$out" | grep -c .)
	if [ "$rc" = 2 ] && [ "$n" = 1 ] && printf '%s' "$out" | grep -qiE -- "$word"; then ok "$name"
	else fail "$name" "exit $rc, $n lines: $out"; fi
}
mkdir -p "$T/mp"
usage "vhdmount without a mount point" "MOUNTPOINT" "$T/gpt.vhd"
usage "vhdmount of a missing disk" "missing.vhd" "$T/missing.vhd" "$T/mp"
usage "vhdmount of a missing checkpoint" "nosuch" --checkpoint nosuch "$T/mbr.vhd" "$T/mp"
usage "vhdmount on a mount point that is not a folder" "mkdir" "$T/gpt.vhd" "$T/gpt.raw"
usage "vhdmount --checkpoint with --image" "give one" --checkpoint A --image "$T/mbr.vhd" "$T/mp"
usage "vhdmount with an unknown option" "bogus" --bogus "$T/gpt.vhd" "$T/mp"
if "$M" --help | grep -q "partitions/pN"; then ok "vhdmount --help"; else fail "vhdmount --help"; fi
