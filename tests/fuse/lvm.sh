#!/bin/bash
# LVM2 inside a VHD: two PVs in MBR partitions, made by lvm2's own tools; a
# linear LV of three segments spanning both PVs (Debian's libvslvm cannot read
# it) and a one-segment LV show up as partitions with their files; a striped LV
# is left out with a message; malformed metadata is a message, never a crash.
# The kernel here may lack device-mapper, so LVs are never activated: lvm2 lays
# them out, `lvs --segments` says where each piece lives, and the file system
# images are written there with dd.
set -u
. "$(dirname "$0")/../lib.sh"
T=$TMPDIR
V=$VHDTOOL
M=${BUILD:?}/vhdmount
. "$(dirname "$0")/images.inc"

for tool in sfdisk pvcreate vgcreate lvcreate losetup mkfs.ext4 mkfs.vfat mcopy; do
	command -v "$tool" >/dev/null || { skip "lvm suite" "$tool missing (scripts/install-deps.sh installs lvm2)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { skip "lvm suite" "lvm2 needs root and loop devices to lay out the volumes"; exit 0; }
export LVM_SUPPRESS_FD_WARNINGS=1
VG=vdfst$$
L=(--driverloaded n) # no device-mapper interaction: nothing is activated
LOOPS=()
cleanup() {
	vgremove "${L[@]}" -ff -y "$VG" >/dev/null 2>&1
	for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null; done
	fusermount3 -u "$T/m" 2>/dev/null
}
trap cleanup EXIT

P2=$((16384 * 512)) P2_LEN=$((81920 * 512)) P3=$((98304 * 512)) P3_LEN=$((40960 * 512))
truncate -s 72M "$T/lvm.raw"
sfdisk -q "$T/lvm.raw" >/dev/null <<-EOF
	label: dos
	start=2048, size=14336, type=83
	start=16384, size=81920, type=8e
	start=98304, size=40960, type=8e
EOF
setup() {
	local a b
	a=$(losetup -f --show -o "$P2" --sizelimit "$P2_LEN" "$T/lvm.raw") || return 1
	LOOPS+=("$a")
	b=$(losetup -f --show -o "$P3" --sizelimit "$P3_LEN" "$T/lvm.raw") || return 1
	LOOPS+=("$b")
	printf '%s %s\n%s %s\n' "$a" "$P2" "$b" "$P3" >"$T/pvmap"
	pvcreate -ff -y "$a" "$b" &&
		vgcreate "${L[@]}" -s 1M "$VG" "$a" "$b" &&
		lvcreate "${L[@]}" -an -Zn -L 8M -n data "$VG" "$a" &&
		lvcreate "${L[@]}" -an -Zn -L 6M -n other "$VG" "$a" &&
		lvextend "${L[@]}" -L +10M "$VG/data" "$a" &&
		lvextend "${L[@]}" -L +6M "$VG/data" "$b" &&
		lvcreate "${L[@]}" -an -Zn -i 2 -I 64k -L 4M -n striped "$VG" "$a" "$b" &&
		lvs "${L[@]}" --noheadings --units b --nosuffix --separator ' ' --segments \
			-o lv_name,seg_start_pe,seg_size_pe,seg_pe_ranges "$VG" >"$T/segs" &&
		pvs "${L[@]}" --noheadings --units b --nosuffix -o pv_name,pe_start >"$T/pvs"
}
if ! setup >"$T/lvm.log" 2>&1; then skip "lvm suite" "lvm2 could not lay out the volumes here: $(tail -n 2 "$T/lvm.log" | tr '\n' ' ')"; exit 0; fi
for l in "${LOOPS[@]}"; do losetup -d "$l"; done
LOOPS=()

# Place each LV's file system image piece by piece where lvm2 says its extents are.
place() { # LV IMG
	local lv=$1 img=$2 name start size ranges dev pe0 pe1 pvstart
	while read -r name start size ranges; do
		[ "$name" = "$lv" ] || continue
		dev=${ranges%%:*} pe0=${ranges#*:} pe0=${pe0%-*} pe1=${ranges##*-}
		pvstart=$(awk -v d="$dev" '$1 == d {print $2}' "$T/pvs")
		base=$(awk -v d="$dev" '$1 == d {print $2}' "$T/pvmap")
		dd if="$img" of="$T/lvm.raw" bs=1M skip="$start" count="$size" \
			seek=$(((base + pvstart) / 1048576 + pe0)) conv=notrunc status=none
	done <"$T/segs"
}
make_tree "$T/tree/data"
fat_tree "$T/tree/data" "$T/tree/other"
rm -rf "$T/tree/other/big 3m.bin" "$T/tree/other/docs/reports/1m+123.bin"
mk_ext4 "$T/tree/data" "$T/data.img" $((24 * 1048576))
mk_fat "$T/tree/other" "$T/other.img" $((6 * 1048576)) 16
place data "$T/data.img"
place other "$T/other.img"
"$V" convert -O dynamic "$T/lvm.raw" "$T/lvm.vhd" >/dev/null

nseg=$(awk '$1 == "data"' "$T/segs" | wc -l)
if [ "$nseg" -ge 3 ]; then ok "lvm2 made LV data of $nseg segments over two PVs"; else fail "lvm2 made LV data of $nseg segments over two PVs" "$(cat "$T/segs")"; fi
"$V" ls --json "$T/lvm.vhd" >"$T/parts.json" 2>"$T/notes"
got=$(python3 -c 'import json,sys; print(" ".join("%s=%s=%s=%s" % (p["name"],p["label"],p["filesystem"],p["segments"]) for p in json.load(open(sys.argv[1]))["partitions"]))' "$T/parts.json" 2>&1)
want="p1==None=1 p2==None=1 p3==None=1 p4=$VG/data=ext4=$nseg p5=$VG/other=fat16=1"
if [ "$got" = "$want" ]; then ok "LVs follow the partitions as p4, p5 with VG/LV names and file systems"; else fail "LVs follow the partitions as p4, p5 with VG/LV names and file systems" "got '$got' want '$want'"; fi
if grep -q "striped.*left out" "$T/notes"; then ok "the striped LV is left out with a message"; else fail "the striped LV is left out with a message" "$(cat "$T/notes")"; fi
rm -rf "$T/x"
"$V" extract "$T/lvm.vhd:p4" / "$T/x" >/dev/null 2>&1
same_tree "extract of the multi-segment LV equals its tree" "$T/x" "$T/tree/data"

if [ -e /dev/fuse ] && [ -x "$M" ]; then
	mkdir -p "$T/m"
	if timeout 30 "$M" "$T/lvm.vhd" "$T/m" 2>"$T/merr"; then
		same_tree "files/p4 (multi-segment LV) equals its tree" "$T/m/files/p4" "$T/tree/data"
		same_tree "files/p5 (FAT16 in an LV) equals its tree" "$T/m/files/p5" "$T/tree/other"
		if cmp -s "$T/m/partitions/p4" "$T/data.img"; then ok "partitions/p4 reads the LV's bytes across its segments"; else fail "partitions/p4 reads the LV's bytes across its segments"; fi
		grep -q "^label: $VG/data" "$T/m/partitions/p4.info" && grep -q "^segments: $nseg" "$T/m/partitions/p4.info" &&
			ok "p4.info names the VG and LV" || fail "p4.info names the VG and LV" "$(cat "$T/m/partitions/p4.info")"
		fusermount3 -u "$T/m"
	else
		fail "mount of the LVM disk" "$(cat "$T/merr")"
	fi
else
	skip "LVs through vhdmount" "no /dev/fuse or vhdmount"
fi

# Malformed metadata: every copy of the text (lvm2 keeps old ones in its ring)
# gets an unparsable extent_size; the partitions still list, the LVs are left out.
python3 - "$T/lvm.raw" "$T/bad.raw" >/dev/null <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
key, n, i = b"extent_size = ", 0, 0
while True:
    i = data.find(key, i)
    if i < 0: break
    data[i:i + len(key) + 4] = b"extent_size = [[[["; n += 1; i += 1
open(sys.argv[2], "wb").write(data)
print(n)
EOF
"$V" convert -O dynamic "$T/bad.raw" "$T/bad.vhd" >/dev/null
out=$(timeout 20 "$V" ls "$T/bad.vhd" 2>&1); rc=$?
if [ "$rc" = 0 ] && printf '%s' "$out" | grep -qi "LVM2 metadata: line [0-9]*:.*left out" && ! printf '%s' "$out" | grep -q "$VG/"; then
	ok "malformed LVM metadata: the line is named, the LVs left out, no crash"
else
	fail "malformed LVM metadata: the line is named, the LVs left out, no crash" "exit $rc: $out"
fi
