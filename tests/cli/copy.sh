# vhdtool copy (offline, same disk) and convert through vd_copy: contents equal
# (vhdtool compare, qemu-img compare), UUID kept so children re-link, sparse
# output, round trips byte-identical, DST never present unless complete (also
# when the process is killed at random moments), and DST's free space checked.
. "$TOP/tests/lib.sh"
V=$VHDTOOL
T=$TMPDIR

uuid_of() { "$V" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["uuid"])'; }

head -c 24M /dev/urandom >"$T/a.raw"
dd if=/dev/zero of="$T/a.raw" bs=1M seek=6 count=10 conv=notrunc 2>/dev/null
"$V" create -s 24M "$T/a.vhd" >/dev/null && "$V" write "$T/a.vhd" "$T/a.raw" >/dev/null

# Same disk: UUID, type and block size kept; only data written.
check "copy a dynamic disk" "$V" copy "$T/a.vhd" "$T/b.vhd"
[ "$(uuid_of "$T/a.vhd")" = "$(uuid_of "$T/b.vhd")" ] && ok "copy keeps the UUID" || fail "copy keeps the UUID"
"$V" info "$T/b.vhd" | grep -q "type: *dynamic" && ok "copy of a dynamic disk is dynamic" || fail "copy of a dynamic disk is dynamic" "$("$V" info "$T/b.vhd" | grep type)"
check "copy reads the same" "$V" compare "$T/b.vhd" "$T/a.raw"
check "qemu-img compare agrees on the copy" qemu-img compare -q -f vpc -F raw "$T/b.vhd" "$T/a.raw"
check "the copy checks clean" "$V" check "$T/b.vhd"
[ "$(stat -c %s "$T/b.vhd")" -lt $((16 * 1048576)) ] && ok "zero blocks are not allocated in the copy" || fail "zero blocks are not allocated in the copy" "$(stat -c %s "$T/b.vhd")"
out=$("$V" copy --json -O fixed "$T/a.vhd" "$T/f.vhd")
printf '%s' "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["virtual_size"] == 25165824 and d["written_bytes"] <= 14 * 1048576' && ok "copy -O fixed --json reports size and bytes written" || fail "copy -O fixed --json reports size and bytes written" "$out"
check "fixed copy reads the same" qemu-img compare -q -f vpc -F raw "$T/f.vhd" "$T/a.raw"
vhdiinfo "$T/f.vhd" | grep -q "25165824 bytes" && ok "vhdiinfo reads the fixed copy's size" || fail "vhdiinfo reads the fixed copy's size"

# The point of keeping the UUID: a child of the original re-links to the copy.
mkdir -p "$T/moved"
"$V" create -t diff -b "$T/a.vhd" "$T/child.vhd" >/dev/null
printf 'child data' | "$V" write --offset 4096 "$T/child.vhd" - >/dev/null
"$V" read "$T/child.vhd" >"$T/child.raw"
check "copy the base elsewhere" "$V" copy "$T/a.vhd" "$T/moved/a.vhd"
mv "$T/child.vhd" "$T/moved/child.vhd"
check "set-parent re-links the child to the copy (UUIDs match)" "$V" set-parent "$T/moved/child.vhd" "$T/moved/a.vhd"
check "the re-linked child reads as before" "$V" compare "$T/moved/child.vhd" "$T/child.raw"
check "copy of a differencing disk flattens its chain" "$V" copy "$T/moved/child.vhd" "$T/flat.vhd"
check "the flattened copy reads as the chain" "$V" compare "$T/flat.vhd" "$T/child.raw"
"$V" info "$T/flat.vhd" | grep -q "type: *dynamic" && ok "the flattened copy is a standalone dynamic disk" || fail "the flattened copy is a standalone dynamic disk"

# Round trips through convert are byte-identical.
check "convert raw -> dynamic" "$V" convert "$T/a.raw" "$T/r1.vhd"
check "convert dynamic -> fixed" "$V" convert -O fixed "$T/r1.vhd" "$T/r2.vhd"
check "convert fixed -> raw" "$V" convert -O raw "$T/r2.vhd" "$T/r3.raw"
cmp -s "$T/a.raw" "$T/r3.raw" && ok "raw -> dynamic -> fixed -> raw is byte-identical" || fail "raw -> dynamic -> fixed -> raw is byte-identical"
[ "$(du -k "$T/r3.raw" | cut -f1)" -lt 16000 ] && ok "the raw output is sparse" || fail "the raw output is sparse" "$(du -k "$T/r3.raw")"
[ "$(uuid_of "$T/r1.vhd")" != "$(uuid_of "$T/r2.vhd")" ] && ok "convert makes a new disk (new UUID)" || fail "convert makes a new disk (new UUID)"

# Refusals leave everything as it was.
cp "$T/b.vhd" "$T/b.keep"
expect_exit "an existing DST is refused" 2 "$V" copy "$T/a.vhd" "$T/b.vhd"
cmp -s "$T/b.vhd" "$T/b.keep" && ok "the existing DST is unchanged" || fail "the existing DST is unchanged"
expect_exit "-O raw is for convert" 2 "$V" copy -O raw "$T/a.vhd" "$T/x.vhd"
MNT=$T/mnt && mkdir -p "$MNT"
if mount -t tmpfs -o size=2M tmpfs "$MNT" 2>"$T/mount.err"; then
	out=$("$V" copy "$T/a.vhd" "$MNT/c.vhd" 2>&1); rc=$?
	[ "$rc" = 2 ] && printf '%s' "$out" | grep -q "free on" && ok "copy without room: refused with the figures" || fail "copy without room: refused with the figures" "$rc: $out"
	[ -z "$(ls -A "$MNT")" ] && ok "copy without room leaves nothing behind" || fail "copy without room leaves nothing behind" "$(ls "$MNT")"
	umount "$MNT" || umount -l "$MNT"
else
	skip "copy without room" "cannot mount a tmpfs: $(head -c 100 "$T/mount.err")"
fi

# Killed at random moments: DST is absent or complete, never partial.
head -c 256M /dev/urandom >"$T/big.raw"
"$V" convert "$T/big.raw" "$T/big.vhd" >/dev/null
partial=0 complete=0
for i in 1 2 3 4 5 6 7 8; do
	rm -f "$T"/k.vhd*
	"$V" copy "$T/big.vhd" "$T/k.vhd" >/dev/null 2>&1 &
	pid=$!
	sleep "0.0$((RANDOM % 9 + 1))"
	kill -9 $pid 2>/dev/null
	wait $pid 2>/dev/null
	if [ -e "$T/k.vhd" ]; then
		if "$V" compare "$T/k.vhd" "$T/big.raw" >/dev/null 2>&1; then complete=$((complete + 1)); else partial=$((partial + 1)); fi
	fi
done
[ "$partial" = 0 ] && ok "copy killed 8 times: DST never partial ($complete complete)" || fail "copy killed 8 times: DST never partial" "$partial partial copies"
