#!/bin/bash
# exFAT (the fourth family the recovery mount reads): a GPT disk whose partition
# holds an exFAT volume made by mkfs.exfat and filled through exfat-fuse on a
# loop device; vhdtool ls/extract and vhdmount's files/p1 must give back every
# file with its sha256 and the listing.
set -u
. "$(dirname "$0")/../lib.sh"
T=$TMPDIR
V=$VHDTOOL
M=${BUILD:?}/vhdmount
for tool in sfdisk mkfs.exfat mount.exfat-fuse losetup; do
	command -v "$tool" >/dev/null || { skip "exfat suite" "$tool missing (scripts/install-deps.sh installs exfatprogs and exfat-fuse)"; exit 0; }
done
[ "$(id -u)" = 0 ] || { skip "exfat suite" "filling an exFAT volume needs a loop device (root)"; exit 0; }

# The source tree: sizes from 0 bytes to 3 MiB, nested folders, a non-ASCII name.
mkdir -p "$T/src/docs/deep/er" "$T/src/empty"
: >"$T/src/zero.txt"
echo "report" >"$T/src/docs/report.txt"
head -c 3000001 /dev/urandom >"$T/src/docs/deep/er/big.bin"
head -c 4097 /dev/urandom >"$T/src/Grüße.dat"

truncate -s 64M "$T/ex.raw"
printf 'label: gpt\nstart=2048, size=120832, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\n' | sfdisk -q "$T/ex.raw"
loop=$(losetup -f --show -o $((2048 * 512)) --sizelimit $((120832 * 512)) "$T/ex.raw") || { skip "exfat suite" "no loop device"; exit 0; }
mkfs.exfat -L EXTEST "$loop" >/dev/null 2>&1
mkdir -p "$T/mnt"
if mount.exfat-fuse "$loop" "$T/mnt" >/dev/null 2>&1 && sleep 0.3 && mountpoint -q "$T/mnt"; then
	cp -r "$T/src/." "$T/mnt/" && sync
	fusermount3 -u "$T/mnt" 2>/dev/null || umount "$T/mnt"
	losetup -d "$loop"
else
	losetup -d "$loop"
	skip "exfat suite" "exfat-fuse cannot mount here"
	exit 0
fi
"$V" convert "$T/ex.raw" "$T/ex.vhd" >/dev/null || { fail "convert the exFAT disk"; exit 0; }

fs=$("$V" ls --json "$T/ex.vhd" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["partitions"][0]["filesystem"])' 2>/dev/null)
[ "$fs" = exfat ] && ok "ls names p1's file system exfat" || fail "ls names p1's file system exfat" "$fs: $("$V" ls "$T/ex.vhd" 2>&1 | tr '\n' ' ')"
fails=0
while IFS= read -r f; do
	rel=${f#"$T/src"}
	rm -f "$T/x"
	if ! "$V" extract "$T/ex.vhd:p1" "$rel" "$T/x" >/dev/null 2>&1 || ! cmp -s "$T/x" "$f"; then
		fails=$((fails + 1)); echo "  differs: $rel"
	fi
done < <(find "$T/src" -type f)
[ "$fails" = 0 ] && ok "extract: every exFAT file equals the source (sha256)" || fail "extract: every exFAT file equals the source" "$fails differ"
"$V" ls "$T/ex.vhd:p1" /docs | grep -q "report.txt" && ok "ls lists an exFAT folder" || fail "ls lists an exFAT folder"
want=$(cd "$T/src" && ls -A | sort)
got=$("$V" ls --json "$T/ex.vhd:p1" / | python3 -c 'import json,sys; d=json.load(sys.stdin); e=d["entries"] if isinstance(d,dict) else d; print("\n".join(sorted(x["name"] for x in e)))' 2>&1)
[ "$want" = "$got" ] && ok "the exFAT root lists the user's names only (no allocation bitmap or up-case table)" || fail "the exFAT root lists the user's names only" "$got"

if [ -x "$M" ] && [ -e /dev/fuse ] && command -v fusermount3 >/dev/null; then
	mkdir -p "$T/vm"
	if "$M" "$T/ex.vhd" "$T/vm" 2>"$T/m.err"; then
		want=$(cd "$T/src" && find . -type f -exec sha256sum {} + | sort)
		got=$(cd "$T/vm/files/p1" && find . -type f -exec sha256sum {} + | sort)
		[ "$want" = "$got" ] && ok "vhdmount: files/p1 of exFAT equals the source tree" || fail "vhdmount: files/p1 of exFAT equals the source tree" "$(diff <(echo "$want") <(echo "$got") | head -3 | tr '\n' ' ')"
		fusermount3 -u "$T/vm"
	else
		fail "vhdmount mounts the exFAT disk" "$(head -c 300 "$T/m.err")"
	fi
else
	skip "vhdmount exFAT" "vhdmount not built or no FUSE here"
fi
