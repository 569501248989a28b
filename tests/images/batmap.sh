# blktap's batmap, checked as vhd-util check does: the fixtures made by vhd-util
# pass; a map whose checksum is wrong, or that calls a partial block full, fails.
. "$TOP/tests/lib.sh"
src=${FIXTURES:-}/chains/tap-fat12/tap-dynamic-fat12-parent.vhd
[ -f "$src" ] || { skip batmap "fixture $src not available"; exit 0; }
V=$VHDTOOL
check "vhd-util's dynamic disk with a batmap checks clean" "$V" check "$src"
cp "$src" "$TMPDIR/a.vhd"; cp "$src" "$TMPDIR/b.vhd"
python3 - "$TMPDIR/a.vhd" "$TMPDIR/b.vhd" <<'PY'
import struct, sys
def edit(path, fix_checksum):
    f = open(path, "r+b")
    f.seek(0x800); h = bytearray(f.read(512))
    assert h[:8] == b"tdbatmap"
    off, sectors = struct.unpack(">QI", h[8:20])
    f.seek(off); m = bytearray(f.read(sectors * 512))
    m[0] |= 0x80  # block 0 "full": it holds 135 of 4096 sectors only
    f.seek(off); f.write(m)
    if fix_checksum:
        struct.pack_into(">I", h, 24, (~sum(m)) & 0xFFFFFFFF)
        f.seek(0x800); f.write(h)
edit(sys.argv[1], False)
edit(sys.argv[2], True)
PY
out=$("$V" check "$TMPDIR/a.vhd"); rc=$?
[ "$rc" = 1 ] && printf '%s' "$out" | grep -q "batmap.checksum" && ok "a batmap with a wrong checksum is reported" || fail "a batmap with a wrong checksum is reported" "exit $rc: $out"
out=$("$V" check "$TMPDIR/b.vhd"); rc=$?
[ "$rc" = 1 ] && printf '%s' "$out" | grep -q "marks block 0 as full" && ok "a batmap calling a partial block full is reported" || fail "a batmap calling a partial block full is reported" "exit $rc: $out"
