# vhdtool discard against a plain-file model: ranges read as zeros afterwards;
# whole blocks of a dynamic disk are released (allocated bytes and the file's
# blocks shrink); a differencing disk hides its parent's data with zeros.
. "$TOP/tests/lib.sh"
V=$VHDTOOL
T=$TMPDIR
alloc() { "$V" info --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["allocated_bytes"])'; }
zero_model() { # file offset length
	python3 - "$@" <<'PY'
import sys
f, off, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(f, "r+b") as fp:
    fp.seek(off); fp.write(b"\0" * n)
PY
}

for type in dynamic fixed; do
	d=$T/$type.vhd
	"$V" create -t $type -s 16M --block-size 1M "$d" >/dev/null 2>&1 || "$V" create -t $type -s 16M "$d" >/dev/null
	head -c 12M /dev/urandom >"$T/$type.raw"; truncate -s 16M "$T/$type.raw"
	"$V" write "$d" "$T/$type.raw"
	before=$(alloc "$d")
	# An unaligned range over whole and partial blocks, then one exact block.
	check "$type: discard an unaligned range" "$V" discard --offset 1000001 --length 5000000 "$d"
	zero_model "$T/$type.raw" 1000001 5000000
	check "$type: discard one exact block" "$V" discard --offset 8M --length 1M "$d"
	zero_model "$T/$type.raw" 8388608 1048576
	check "$type: the disk reads as the model (qemu-img)" qemu-img compare -f vpc -F raw "$d" "$T/$type.raw"
	[ "$("$V" read "$d" | sha256sum)" = "$(sha256sum <"$T/$type.raw")" ] && ok "$type: the disk reads as the model (vhdtool)" || fail "$type: the disk reads as the model (vhdtool)"
	check "$type: check is clean after discards" "$V" check "$d"
	if [ $type = dynamic ]; then
		after=$(alloc "$d")
		[ "$after" -lt "$before" ] && ok "dynamic: released blocks leave allocated bytes ($before -> $after)" || fail "dynamic: released blocks leave allocated bytes" "$before -> $after"
	fi
done

"$V" create -s 8M "$T/p.vhd" >/dev/null && head -c 8M /dev/urandom >"$T/p.raw" && "$V" write "$T/p.vhd" "$T/p.raw"
"$V" create -t diff -b "$T/p.vhd" "$T/c.vhd" >/dev/null
check "differencing: discard over parent data" "$V" discard --offset 2M --length 3000000 "$T/c.vhd"
zero_model "$T/p.raw" 2097152 3000000
[ "$("$V" read "$T/c.vhd" | sha256sum)" = "$(sha256sum <"$T/p.raw")" ] && ok "differencing: the range reads zeros, not the parent's data" || fail "differencing: the range reads zeros, not the parent's data"
expect_exit "discard past the end" 2 "$V" discard --offset 9M --length 1 "$T/c.vhd"
