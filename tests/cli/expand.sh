# vhdtool expand against qemu-img and vhdiinfo: fixed and dynamic disks grow
# with their data intact and zeros after; shrinking only with --shrink over an
# empty tail; a BAT that runs over blocks moves them out of its way; a
# differencing disk is refused.
. "$TOP/tests/lib.sh"
V=$VHDTOOL
T=$TMPDIR
head -c 3000001 /dev/urandom >"$T/data"

for type in dynamic fixed; do
	d=$T/$type.vhd
	"$V" create -t $type -s 16M "$d" >/dev/null && "$V" write --offset 1001 "$d" "$T/data"
	"$V" read "$d" >"$T/$type.raw"
	check "$type: expand 16M -> 200M" "$V" expand -s 200M "$d"
	truncate -s 200M "$T/$type.raw"
	check "$type: qemu-img compares the grown disk with the data and zeros" qemu-img compare -f vpc -F raw "$d" "$T/$type.raw"
	size=$(qemu-img info -f vpc --output=json "$d" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
	[ "$size" = 209715200 ] && ok "$type: qemu-img sees 200 MiB" || fail "$type: qemu-img sees 200 MiB" "$size"
	vhdiinfo "$d" | grep -q "209715200 bytes" && ok "$type: vhdiinfo sees 200 MiB" || fail "$type: vhdiinfo sees 200 MiB" "$(vhdiinfo "$d" | grep Media)"
	check "$type: check is clean after expand" "$V" check "$d"
	expect_exit "$type: a smaller size without --shrink" 2 "$V" expand -s 100M "$d"
	expect_exit "$type: --shrink over data is refused" 2 "$V" expand --shrink -s 2M "$d"
	check "$type: --shrink over an empty tail" "$V" expand --shrink -s 8M "$d"
	truncate -s 8M "$T/$type.raw"
	check "$type: the shrunk disk keeps its data" qemu-img compare -f vpc -F raw "$d" "$T/$type.raw"
done
# A 2 MiB-block disk: the BAT at 1536 has room up to its first block at 3584
# (512 entries, 1 GiB), so 1 GiB is reached in place; 2 GiB needs the blocks in
# the way moved to the end first (then the BAT grows over their old place).
"$V" create -s 16M "$T/tight.vhd" >/dev/null && "$V" write --offset 0 "$T/tight.vhd" "$T/data"
check "dynamic: the BAT grows in place up to its free room" "$V" expand -s 1G "$T/tight.vhd"
check "dynamic: a BAT that runs over blocks moves them and grows" "$V" expand -s 100G "$T/tight.vhd"
cp "$T/data" "$T/tight.raw" && truncate -s 100G "$T/tight.raw"
check "dynamic: after the move qemu-img reads the data and zeros" qemu-img compare -f vpc -F raw "$T/tight.vhd" "$T/tight.raw"
vhdiinfo "$T/tight.vhd" | grep -q "107374182400 bytes" && ok "dynamic: vhdiinfo sees 100 GiB after the move" || fail "dynamic: vhdiinfo sees 100 GiB after the move" "$(vhdiinfo "$T/tight.vhd" | grep Media)"
check "dynamic: check is clean after the move" "$V" check "$T/tight.vhd"
first=$("$V" map "$T/tight.vhd" | awk 'NR==2 {print $NF}')
[ "$first" = allocated ] && ok "dynamic: the moved blocks still map as allocated" || fail "dynamic: the moved blocks still map as allocated" "$("$V" map "$T/tight.vhd" | head -3)"
# A parent locator cannot move: a differencing disk is refused anyway (below).
"$V" create -t diff -b "$T/tight.vhd" "$T/child.vhd" >/dev/null
expect_exit "a differencing disk is refused" 2 "$V" expand -s 512M "$T/child.vhd"

# A qemu-made dynamic disk (its own BAT layout): grown far enough that the BAT
# runs over its first blocks; qemu-img then reads the data and the zeros.
qemu-img create -q -f vpc -o subformat=dynamic,force_size=on "$T/q.vhd" 16M
qemu-io -f vpc -c "write -P 0x5a 0 3M" -c "write -P 0x11 12M 1M" "$T/q.vhd" >/dev/null
qemu-img convert -f vpc -O raw "$T/q.vhd" "$T/q.raw"
check "qemu-img disk: expand to 500 GiB (blocks moved)" "$V" expand -s 500G "$T/q.vhd"
truncate -s 500G "$T/q.raw"
check "qemu-img disk: qemu-img reads the grown disk" qemu-img compare -q -f vpc -F raw "$T/q.vhd" "$T/q.raw"
check "qemu-img disk: check is clean after the move" "$V" check "$T/q.vhd"
