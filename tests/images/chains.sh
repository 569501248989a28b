#!/bin/bash
# Differencing chains, read and made by vhdtool. Compared against:
#   - chains/tap-fat12 (vhd-util's files): expected-child.raw.gz and expected-parent.raw.gz,
#     the exact raw images (MANIFEST.tsv, NOTES.md), and the sector bitmaps of both files
#     parsed here (map: allocated exactly where one of them holds the sector);
#   - chains/dfvfs-fat-parent-missing: the locators NOTES.md lists (W2ru .\fat-parent.vhd,
#     W2ku C:\Projects\dfvfs\test_data\fat-parent.vhd): the error must list the paths tried;
#   - chains/dfvfs-ext2-crafted: both footer copies have a bad checksum; the library's
#     documented choice (tests/images/fixtures.sh) is to refuse with exit 2 naming it;
#   - chains we make: a raw model file written with dd at the same offsets (every level),
#     and specchain, an independent reader written here from VHD-FORMAT.md 3 and 5
#     (BAT, MSB-first sector bitmaps, the W2ru locator, parent UUID);
#   - qemu-img 7.2: reads our base exactly; reads our differencing disk WRONGLY, as a
#     plain dynamic disk without its parent (VHD-FORMAT.md pitfall 7b), i.e. exactly the
#     sectors the child file holds and zeros elsewhere.
# The fixtures are read in place or copied into $TMPDIR, never into the tree.
set -u
. "$(dirname "$0")/../lib.sh"
# lib.sh's fail, with the reason flattened to one line (RESULTS holds one line a test)
fail() { local why; why=$(printf '%s' "${2:-}" | tr '\n\t' '  ' | head -c 600); echo "FAIL $SUITE $1 $why" >>"$RESULTS"; echo "  FAIL $1: $why"; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
V=$VHDTOOL
T=$TMPDIR
F=${FIXTURES:-}

if [ ! -x "$V" ]; then fail "vhdtool-present" "$V not built"; exit 0; fi

run() { timeout -k 2 120 "$@" >"$T/out" 2>"$T/err"; RC=$?; }
crashed() { [ "$RC" -ge 124 ] || grep -qE 'Sanitizer|runtime error:' "$T/err"; }
errline() { head -c 400 "$T/err" | tr '\n' '|'; }
same() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "got '$2', wanted '$3'"; fi; }
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
# samefile A B: both name one file
samefile() { python3 -c 'import os,sys; sys.exit(0 if os.path.samefile(sys.argv[1], sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null; }
# refused NAME REGEX CMD...: exit 2, one stderr line matching REGEX, no crash
refused() {
	local name=$1 re=$2; shift 2
	run "$@"
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 2 ]; then fail "$name" "exit $RC, wanted 2: $(errline)"
	elif [ "$(grep -c . "$T/err")" != 1 ]; then fail "$name" "wanted one stderr line: $(errline)"
	elif ! grep -qiE -- "$re" "$T/err"; then fail "$name" "stderr does not match /$re/: $(errline)"
	else ok "$name"; fi
}
# reads_as NAME DISK RAW [vhdtool read options]: vhdtool read DISK == RAW
reads_as() {
	local name=$1 disk=$2 raw=$3; shift 3
	rm -f "$T/read.raw"
	timeout -k 2 120 "$V" read "$@" "$disk" >"$T/read.raw" 2>"$T/err"; RC=$?
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 0 ]; then fail "$name" "read: exit $RC $(errline)"
	elif cmp -s "$T/read.raw" "$raw"; then ok "$name"
	else fail "$name" "$(cmp "$T/read.raw" "$raw" 2>&1 | head -n 1)"; fi
}
# put RAW OFFSET SRC: the model write
put() { dd if="$3" of="$1" bs=1M conv=notrunc oflag=seek_bytes seek="$2" status=none; }

# specchain VHD OUT: the content of VHD from the spec: per sector, the first image of
# the chain whose BAT entry is allocated and whose bitmap bit (MSB-first) is set; a
# differencing disk's parent found through its W2ru locator, its UUID checked.
# held VHD: the sectors VHD's own bitmaps mark present, one a line.
# spec.py qemu VHD QEMU-RAW OURS-RAW: qemu's view is VHD alone (pitfall 7b).
cat >"$T/spec.py" <<'EOF'
import os, struct, sys

def image(path):
    with open(path, "rb") as fh:
        fh.seek(-512, 2); ft = fh.read(512)
        size, dtype = struct.unpack(">Q", ft[48:56])[0], struct.unpack(">I", ft[60:64])[0]
        img = {"path": path, "size": size, "type": dtype, "uuid": ft[68:84], "held": {}}
        if dtype == 2:
            return img
        fh.seek(struct.unpack(">Q", ft[16:24])[0]); h = fh.read(1024)
        table = struct.unpack(">Q", h[16:24])[0]; entries, bs = struct.unpack(">II", h[28:36])
        fh.seek(table); bat = struct.unpack(">%dI" % entries, fh.read(4 * entries))
        spb = bs // 512; bm_bytes = ((spb + 7) // 8 + 511) // 512 * 512
        img.update(bs=bs, spb=spb, bm=bm_bytes, bat=bat, parent_uuid=h[40:56], loc={})
        for i in range(8):
            e = h[576 + 24 * i: 600 + 24 * i]
            code, space, length, _, off = struct.unpack(">4sIIIQ", e)
            if code in (b"W2ru", b"W2ku"):
                fh.seek(off); img["loc"][code] = fh.read(length).decode("utf-16-le").rstrip("\0")
        for b, e in enumerate(bat):
            if e == 0xFFFFFFFF:
                continue
            fh.seek(e * 512); bm = fh.read(bm_bytes)
            for k in range(spb):
                if bm[k >> 3] & (0x80 >> (k & 7)):
                    img["held"][b * spb + k] = e * 512 + bm_bytes + k * 512
    return img

def chain(path, alone):
    imgs = [image(path)]
    while imgs[-1]["type"] == 4 and not alone:
        rel = imgs[-1]["loc"][b"W2ru"].replace("\\", "/")
        p = os.path.join(os.path.dirname(imgs[-1]["path"]), rel)
        parent = image(p)
        if parent["uuid"] != imgs[-1]["parent_uuid"]:
            sys.exit("%s: parent UUID mismatch" % p)
        imgs.append(parent)
    return imgs

def content(path, out, alone):
    imgs = chain(path, alone)
    size = imgs[0]["size"]
    files = [open(i["path"], "rb") for i in imgs]
    with open(out, "wb") as o:
        for s in range(size // 512):
            data = b"\0" * 512
            for img, fh in zip(imgs, files):
                if img["type"] == 2:
                    if s * 512 < img["size"]:
                        fh.seek(s * 512); data = fh.read(512)
                    break
                if s in img["held"]:
                    fh.seek(img["held"][s]); data = fh.read(512)
                    break
            o.write(data)

def qemu_view(path, qemu, ours):
    # qemu shows the child alone: its own sectors as ours, zeros in blocks it lacks
    # (sectors of its allocated blocks without a bitmap bit: whatever the file has)
    img = image(path)
    q, o = open(qemu, "rb").read(), open(ours, "rb").read()
    if len(q) != len(o):
        sys.exit("qemu read %d bytes, we read %d" % (len(q), len(o)))
    if q == o:
        sys.exit("qemu read the whole chain right: pitfall 7b is gone, update this test")
    for s in range(len(o) // 512):
        a, b = q[s * 512:(s + 1) * 512], o[s * 512:(s + 1) * 512]
        if s in img["held"] and a != b:
            sys.exit("sector %d: the child holds it, qemu reads other bytes" % s)
        if img["bat"][s // img["spb"]] == 0xFFFFFFFF and a != bytes(512):
            sys.exit("sector %d: the child has no block there, qemu reads non-zero" % s)
    print("ok")

if sys.argv[1] == "qemu":
    qemu_view(sys.argv[2], sys.argv[3], sys.argv[4])
elif sys.argv[1] == "read":
    content(sys.argv[2], sys.argv[3], len(sys.argv) > 4)
elif sys.argv[1] == "held":
    for s in sorted(image(sys.argv[2])["held"]):
        print(s)
EOF
specchain() { python3 "$T/spec.py" read "$@"; }
held() { python3 "$T/spec.py" held "$1"; }

# mapcheck NAME DISK SECTORS-FILE: map --json of DISK is allocated exactly on the sectors
# listed (a chain-wide map: a sector some image of the chain holds), unallocated elsewhere
mapcheck() {
	local name=$1 disk=$2 list=$3
	run "$V" map --json "$disk"
	if [ "$RC" != 0 ]; then fail "$name" "map: exit $RC $(errline)"; return; fi
	res=$(python3 - "$T/out" "$list" <<'EOF' 2>&1
import json, sys
doc = json.load(open(sys.argv[1]))
want = set(int(l) for l in open(sys.argv[2]) if l.strip())
pos = 0
for e in doc:
    s, l, k = e["offset"], e["length"], str(e["kind"]).lower()
    if s != pos:
        sys.exit("gap or overlap at %d" % pos)
    if s % 512 or l % 512:
        sys.exit("extent %d+%d is not whole sectors" % (s, l))
    for sec in range(s // 512, (s + l) // 512):
        if (k == "allocated") != (sec in want):
            sys.exit("sector %d maps as %s, %s" % (sec, k, "held by the chain" if sec in want else "held by no image"))
    pos += l
print("ok %d" % pos)
EOF
)
	case $res in ok*) ok "$name";; *) fail "$name" "$res";; esac
}

# ==== the fixtures ======================================================================
if [ -z "$F" ] || [ ! -f "$F/MANIFEST.tsv" ]; then
	skip "fixtures" "no fixtures at '${F:-}' (../shared/fixtures/vhd)"
else
	TAP=$F/chains/tap-fat12
	child=$TAP/tap-differencing-fat12-child.vhd parent=$TAP/tap-dynamic-fat12-parent.vhd
	zcat "$TAP/expected-child.raw.gz" >"$T/expected-child.raw"
	zcat "$TAP/expected-parent.raw.gz" >"$T/expected-parent.raw"
	reads_as "tap-fat12: child chain == gunzip(expected-child.raw.gz)" "$child" "$T/expected-child.raw"
	reads_as "tap-fat12: parent == gunzip(expected-parent.raw.gz)" "$parent" "$T/expected-parent.raw"
	specchain "$child" "$T/spec-child.raw"
	if cmp -s "$T/spec-child.raw" "$T/expected-child.raw"; then ok "tap-fat12: the spec reader agrees with the oracle"
	else fail "tap-fat12: the spec reader agrees with the oracle" "specchain differs (test bug)"; fi

	run "$V" info --json "$child"
	cp "$T/out" "$T/tap.json"
	if [ "$RC" = 0 ]; then
		same "tap-fat12: info type" "$(jget "$T/tap.json" 'j["type"]')" differencing
		same "tap-fat12: info virtual_size" "$(jget "$T/tap.json" 'j["virtual_size"]')" 4194304
		same "tap-fat12: info parent_uuid" "$(jget "$T/tap.json" 'j["parent_uuid"]')" 5b1e17ff-1a0d-4657-99ff-7fc530607a7b
		same "tap-fat12: info parent_name" "$(jget "$T/tap.json" 'j["parent_name"]')" tap-dynamic-fat12-parent.vhd
		if samefile "$(jget "$T/tap.json" 'j["parent"]')" "$parent"; then ok "tap-fat12: info parent is the parent file"
		else fail "tap-fat12: info parent is the parent file" "parent: $(jget "$T/tap.json" 'j["parent"]')"; fi
		c0=$(jget "$T/tap.json" 'j["chain"][0]'); c1=$(jget "$T/tap.json" 'j["chain"][1]')
		if [ "$(jget "$T/tap.json" 'len(j["chain"])')" = 2 ] && samefile "$c0" "$child" && samefile "$c1" "$parent"; then
			ok "tap-fat12: info chain is [child, parent]"
		else fail "tap-fat12: info chain is [child, parent]" "chain: $(jget "$T/tap.json" 'j["chain"]')"; fi
		# vhd-util records the parent file's mtime, which the copy into the store changed:
		# a time stamp warning is allowed, nothing else
		w=$(jget "$T/tap.json" '"|".join(j["warnings"])')
		if [ -z "$w" ] || ! printf '%s' "$w" | tr '|' '\n' | grep -qviE 'time ?stamp'; then ok "tap-fat12: no warning but a time stamp one (${w:-none})"
		else fail "tap-fat12: no warning but a time stamp one" "$w"; fi
	else fail "tap-fat12: info --json" "exit $RC $(errline)"; fi

	# map: allocated where the child (5 sectors) or the parent (135) holds the sector
	{ held "$child"; held "$parent"; } | sort -un >"$T/tap-held.txt"
	same "tap-fat12: the bitmaps hold 5 + 135 sectors (MANIFEST)" "$(held "$child" | wc -l)+$(held "$parent" | wc -l)" "5+135"
	mapcheck "tap-fat12: map of the chain == union of the two bitmaps" "$child" "$T/tap-held.txt"

	# relocated: the pair copied elsewhere opens through its relative locators
	mkdir -p "$T/reloc/a/b"
	cp "$child" "$parent" "$T/reloc/a/b/"
	reads_as "tap-fat12: the pair copied to another directory reads the same" "$T/reloc/a/b/$(basename "$child")" "$T/expected-child.raw"
	mkdir -p "$T/reloc/lonely"
	cp "$child" "$T/reloc/lonely/"
	refused "tap-fat12: the child copied alone is refused naming the paths tried" "tap-dynamic-fat12-parent\.vhd.*tried|tried.*tap-dynamic-fat12-parent\.vhd" \
		"$V" read "$T/reloc/lonely/$(basename "$child")"
	# qemu-img shows the child without its parent (NOTES.md 3: 131 sectors differ)
	if command -v qemu-img >/dev/null; then
		rm -f "$T/q.raw"
		if qemu-img convert -f vpc -O raw "$child" "$T/q.raw" 2>"$T/err"; then
			n=$(cmp -l "$T/q.raw" "$T/expected-child.raw" | awk '{print int(($1-1)/512)}' | sort -u | wc -l)
			same "tap-fat12: qemu-img reads the child without its parent (131 sectors differ, NOTES.md)" "$n" 131
		else fail "tap-fat12: qemu-img convert" "$(errline)"; fi
	else skip "tap-fat12: qemu-img" "qemu-img not installed"; fi

	# the parent is missing: every path tried is listed
	miss=$F/chains/dfvfs-fat-parent-missing/fat-differential.vhd
	refused "dfvfs-fat-parent-missing: read refused (exit 2)" "fat-parent\.vhd" "$V" read "$miss"
	refused "dfvfs-fat-parent-missing: info refused (exit 2)" "fat-parent\.vhd" "$V" info --json "$miss"
	msg=$(cat "$T/err")
	case $msg in
	*"$F/chains/dfvfs-fat-parent-missing/fat-parent.vhd"* | *"$F/chains/dfvfs-fat-parent-missing/./fat-parent.vhd"*)
		ok "dfvfs-fat-parent-missing: lists the W2ru path beside the child" ;;
	*) fail "dfvfs-fat-parent-missing: lists the W2ru path beside the child" "$msg" ;;
	esac
	if printf '%s' "$msg" | grep -qF 'C:\Projects\dfvfs\test_data\fat-parent.vhd'; then ok "dfvfs-fat-parent-missing: lists the W2ku Windows path"
	else fail "dfvfs-fat-parent-missing: lists the W2ku Windows path" "$msg"; fi
	if printf '%s' "$msg" | grep -qi 'tried'; then ok "dfvfs-fat-parent-missing: says which paths were tried"
	else fail "dfvfs-fat-parent-missing: says which paths were tried" "$msg"; fi
	# info --no-parent (VD_OPEN_NO_PARENT): what the child records, without the parent
	if "$V" info --help 2>&1 | grep -qiE 'no-parent'; then
		run "$V" info --json --no-parent "$miss"
		if [ "$RC" = 0 ] && [ "$(jget "$T/out" 'j["type"], j["parent_uuid"]')" = "('differencing', '5fa21a55-f394-aa4d-9958-1951a67d5540')" ]; then ok "dfvfs-fat-parent-missing: info --no-parent shows the recorded parent UUID"
		else fail "dfvfs-fat-parent-missing: info --no-parent" "exit $RC $(errline)"; fi
	else skip "dfvfs-fat-parent-missing: info without the parent" "vhdtool has no option for VD_OPEN_NO_PARENT (the library's flag is tested in tests/unit/test_chain.c)"; fi

	# bad footer checksums in both copies: refused naming the checksum (fixtures.sh)
	refused "dfvfs-ext2-crafted: base with bad footer checksums refused naming it" "checksum" "$V" info "$F/chains/dfvfs-ext2-crafted/image.vhd"
	refused "dfvfs-ext2-crafted: child with bad checksums refused naming them" "checksum" "$V" read "$F/chains/dfvfs-ext2-crafted/image-differential.vhd"
fi

# ==== chains made by vhdtool ===========================================================
D=$T/vm
mkdir -p "$D"
SIZE=$((6 * 1024 * 1024 + 7 * 512))
head -c $SIZE /dev/zero >"$T/model0.raw"
# write LEVEL DISK OFFSET LEN: random bytes into DISK through vhdtool and into the model
n=0
wr() {
	n=$((n + 1))
	head -c "$4" /dev/urandom >"$T/piece.$n"
	if ! "$V" write --offset "$3" "$2" "$T/piece.$n" >/dev/null 2>"$T/err"; then fail "write $4 bytes at $3 into $(basename "$2")" "$(errline)"; fi
	put "$T/model$1.raw" "$3" "$T/piece.$n"
}
check "create the base (dynamic, 256 KiB blocks)" "$V" create -s $SIZE --block-size 256K "$D/base.vhd"
wr 0 "$D/base.vhd" 0 70000
wr 0 "$D/base.vhd" $((3 * 1024 * 1024 - 5)) 300000
wr 0 "$D/base.vhd" $((SIZE - 1000)) 1000
cp "$T/model0.raw" "$T/model1.raw"
check "create mid (diff on base)" "$V" create -t diff -b "$D/base.vhd" "$D/mid.avhd"
wr 1 "$D/mid.avhd" 1 1
wr 1 "$D/mid.avhd" 65535 513
wr 1 "$D/mid.avhd" $((3 * 1024 * 1024 + 100)) 5000
wr 1 "$D/mid.avhd" $((5 * 1024 * 1024 - 3)) 777777
cp "$T/model1.raw" "$T/model2.raw"
check "create leaf (diff on mid, 2 MiB blocks)" "$V" create -t diff -b "$D/mid.avhd" --block-size 2M "$D/leaf.avhd"
wr 2 "$D/leaf.avhd" 511 2
wr 2 "$D/leaf.avhd" $((2 * 1024 * 1024 - 100)) 200
wr 2 "$D/leaf.avhd" 4096 1000000
wr 2 "$D/leaf.avhd" $((SIZE - 1)) 1

reads_as "made: base == model" "$D/base.vhd" "$T/model0.raw"
reads_as "made: mid (2 levels) == model" "$D/mid.avhd" "$T/model1.raw"
reads_as "made: leaf (3 levels) == model" "$D/leaf.avhd" "$T/model2.raw"
specchain "$D/leaf.avhd" "$T/spec-leaf.raw"
if cmp -s "$T/spec-leaf.raw" "$T/model2.raw"; then ok "made: the spec reader reads the leaf as the model (bitmaps, locators, UUIDs)"
else fail "made: the spec reader reads the leaf as the model (bitmaps, locators, UUIDs)" "$(cmp "$T/spec-leaf.raw" "$T/model2.raw" 2>&1 | head -n 1)"; fi
reads_as "made: read --offset/--length inside the chain" "$D/leaf.avhd" <(head -c 1300000 "$T/model2.raw" | tail -c 1000) --offset 1299000 --length 1000

run "$V" info --json "$D/leaf.avhd"
cp "$T/out" "$T/leaf.json"
if [ "$RC" = 0 ]; then
	same "made: leaf type" "$(jget "$T/leaf.json" 'j["type"]')" differencing
	same "made: leaf size from the base" "$(jget "$T/leaf.json" 'j["virtual_size"]')" $SIZE
	same "made: leaf chain length" "$(jget "$T/leaf.json" 'len(j["chain"])')" 3
	good=1
	for i in 0 1 2; do
		want=$(echo "$D/leaf.avhd $D/mid.avhd $D/base.vhd" | cut -d' ' -f$((i + 1)))
		samefile "$(jget "$T/leaf.json" "j['chain'][$i]")" "$want" || good=0
	done
	if [ $good = 1 ]; then ok "made: leaf chain is [leaf, mid, base]"; else fail "made: leaf chain is [leaf, mid, base]" "$(jget "$T/leaf.json" 'j["chain"]')"; fi
	if samefile "$(jget "$T/leaf.json" 'j["parent"]')" "$D/mid.avhd"; then ok "made: leaf parent is mid"; else fail "made: leaf parent is mid" "$(jget "$T/leaf.json" 'j["parent"]')"; fi
	"$V" info --json "$D/mid.avhd" >"$T/mid.json" 2>/dev/null
	same "made: leaf parent_uuid == mid's uuid" "$(jget "$T/leaf.json" 'j["parent_uuid"]')" "$(jget "$T/mid.json" 'j["uuid"]')"
	same "made: no warnings" "$(jget "$T/leaf.json" 'len(j["warnings"])')" 0
else fail "made: info --json leaf" "exit $RC $(errline)"; fi
# the map: allocated where some image holds the sector
{ held "$D/leaf.avhd"; held "$D/mid.avhd"; held "$D/base.vhd"; } | sort -un >"$T/made-held.txt"
mapcheck "made: map of the leaf == union of the chain's bitmaps" "$D/leaf.avhd" "$T/made-held.txt"

# flatten: convert reads the whole chain into one standalone disk
for fmt in dynamic fixed raw; do
	run "$V" convert -O $fmt "$D/leaf.avhd" "$T/flat.$fmt"
	if [ "$RC" = 0 ]; then reads_as "made: convert -O $fmt of the 3-level chain == model" "$T/flat.$fmt" "$T/model2.raw"
	else fail "made: convert -O $fmt of the chain" "exit $RC $(errline)"; fi
done
same "made: the flattened disk has no parent" "$("$V" info --json "$T/flat.dynamic" 2>/dev/null | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["type"], j["parent"])' 2>/dev/null)" "dynamic None"
if cmp -s "$T/flat.raw" "$T/model2.raw"; then ok "made: convert -O raw file == model"; else fail "made: convert -O raw file == model" "differs"; fi
run "$V" compare "$D/leaf.avhd" "$T/model2.raw"
same "made: compare chain vs model: identical (exit 0)" "$RC" 0
run "$V" compare "$D/leaf.avhd" "$T/model1.raw"
same "made: compare chain vs its parent's model: different (exit 1)" "$RC" 1

# qemu-img: reads our base exactly; reads our differencing disk wrongly (pitfall 7b)
if command -v qemu-img >/dev/null; then
	rm -f "$T/qbase.raw" "$T/qleaf.raw"
	if qemu-img convert -f vpc -O raw "$D/base.vhd" "$T/qbase.raw" 2>"$T/err" && cmp -s "$T/qbase.raw" "$T/model0.raw"; then
		ok "qemu-img convert -f vpc of our base == our read of it"
	else fail "qemu-img convert -f vpc of our base == our read of it" "$(errline) $(cmp "$T/qbase.raw" "$T/model0.raw" 2>&1 | head -n 1)"; fi
	if qemu-img convert -f vpc -O raw "$D/leaf.avhd" "$T/qleaf.raw" 2>"$T/err"; then
		res=$(python3 "$T/spec.py" qemu "$D/leaf.avhd" "$T/qleaf.raw" "$T/model2.raw" 2>&1)
		if [ "$res" = ok ]; then ok "qemu-img reads our leaf without its parent (pitfall 7b): the child's sectors, zeros where it has no block"
		else fail "qemu-img reads our leaf without its parent (pitfall 7b)" "$res"; fi
	else fail "qemu-img convert of our leaf" "$(errline)"; fi
else skip "qemu-img" "qemu-img not installed"; fi

# a parent takes no writes while a child depends on it; --force does
cp "$D/mid.avhd" "$T/mid.before"
refused "made: write into mid (the leaf's parent) refused" "leaf|depend|child|differencing|force" "$V" write --offset 0 "$D/mid.avhd" "$T/piece.1"
if cmp -s "$D/mid.avhd" "$T/mid.before"; then ok "made: the refused write left mid unchanged"; else fail "made: the refused write left mid unchanged" "mid.avhd changed"; fi
refused "made: create -t diff on a missing parent refused" "nothere\.vhd" "$V" create -t diff -b "$D/nothere.vhd" "$D/orphan.avhd"
if [ ! -e "$D/orphan.avhd" ]; then ok "made: the refused create left no file"; else fail "made: the refused create left no file" "orphan.avhd exists"; fi

# moving the chain directory keeps it working (relative locators)
mkdir -p "$T/elsewhere/deeper"
mv "$D" "$T/elsewhere/deeper/vm2"
D=$T/elsewhere/deeper/vm2
reads_as "moved: the chain in another directory == model" "$D/leaf.avhd" "$T/model2.raw"
run "$V" info --json "$D/leaf.avhd"
if [ "$RC" = 0 ] && samefile "$(jget "$T/out" 'j["chain"][2]')" "$D/base.vhd"; then ok "moved: info chain names the moved base"
else fail "moved: info chain names the moved base" "exit $RC $(jget "$T/out" 'j["chain"]') $(errline)"; fi

# set-parent: rename the base, then re-link mid to the new name
mv "$D/base.vhd" "$D/renamed-base.vhd"
refused "renamed base: read refused listing the paths tried" "tried.*/base\.vhd" "$V" read "$D/leaf.avhd"
"$V" info --json "$D/renamed-base.vhd" >"$T/other.json" 2>/dev/null
check "set-parent mid renamed-base.vhd" "$V" set-parent "$D/mid.avhd" "$D/renamed-base.vhd"
reads_as "set-parent: the chain reads again == model" "$D/leaf.avhd" "$T/model2.raw"

# set-parent refuses a disk of another UUID and leaves the child as it was
"$V" create -s $SIZE "$D/stranger.vhd" >/dev/null 2>&1
sum=$(sha256sum "$D/mid.avhd" | cut -d' ' -f1)
refused "set-parent to a disk of another UUID refused" "uuid" "$V" set-parent "$D/mid.avhd" "$D/stranger.vhd"
same "set-parent refused: mid unchanged" "$(sha256sum "$D/mid.avhd" | cut -d' ' -f1)" "$sum"

# an absolute-only chain (as tools that write only W2ku make it): parent and child in
# sibling directories, the child's W2ru and MacX locators and its parent name erased
A=$T/abs
mkdir -p "$A/p" "$A/c"
"$V" create -s 4M "$A/p/parent.vhd" >/dev/null 2>&1
head -c $((4 * 1024 * 1024)) /dev/zero >"$T/abs.raw"
head -c 9000 /dev/urandom >"$T/abs.piece"
"$V" write --offset 12345 "$A/p/parent.vhd" "$T/abs.piece" >/dev/null 2>&1
put "$T/abs.raw" 12345 "$T/abs.piece"
"$V" create -t diff -b "$A/p/parent.vhd" "$A/c/child.avhd" >/dev/null 2>&1
"$V" write --offset 2000000 "$A/c/child.avhd" "$T/abs.piece" >/dev/null 2>&1
put "$T/abs.raw" 2000000 "$T/abs.piece"
python3 - "$A/c/child.avhd" <<'EOF'
import struct, sys
p = sys.argv[1]
with open(p, "r+b") as fh:
    fh.seek(-512, 2); ft = fh.read(512)
    at = struct.unpack(">Q", ft[16:24])[0]
    fh.seek(at); h = bytearray(fh.read(1024))
    h[64:576] = bytes(512)                     # no parent name
    for i in range(8):                         # keep only W2ku
        e = 576 + 24 * i
        if h[e:e + 4] in (b"W2ru", b"MacX", b"Wi2r"):
            h[e:e + 24] = bytes(24)
    h[36:40] = bytes(4)
    struct.pack_into(">I", h, 36, ~sum(h) & 0xFFFFFFFF)
    fh.seek(at); fh.write(h)
EOF
reads_as "absolute-only: the chain reads in place" "$A/c/child.avhd" "$T/abs.raw"
mv "$A" "$T/abs-moved"
A=$T/abs-moved
refused "absolute-only: moved, the chain is broken (listing the path tried)" "tried.*/p/parent\.vhd" "$V" read "$A/c/child.avhd"
check "absolute-only: set-parent to the moved parent" "$V" set-parent "$A/c/child.avhd" "$A/p/parent.vhd"
reads_as "absolute-only: set-parent fixed it" "$A/c/child.avhd" "$T/abs.raw"
mv "$A" "$T/abs-again"
reads_as "absolute-only: after set-parent the pair moves freely (relative locator written)" "$T/abs-again/c/child.avhd" "$T/abs.raw"

# a parent read through a child by another process is locked: not even --force writes
# it, and the message names that process (the reader blocks on a full pipe meanwhile)
rm -f "$T/fifo"; mkfifo "$T/fifo"
exec 3<>"$T/fifo"
"$V" read "$D/leaf.avhd" >"$T/fifo" 2>/dev/null 3>&- &
reader=$!
sleep 1
run "$V" write --force --offset 0 "$D/mid.avhd" "$T/piece.1"
if [ "$RC" = 2 ] && grep -qi 'locked' "$T/err" && grep -q "process $reader" "$T/err"; then ok "a parent in use by a reader is locked even with --force, naming the reader's pid"
else fail "a parent in use by a reader is locked even with --force, naming the reader's pid" "exit $RC (reader $reader): $(errline)"; fi
exec 3>&- # the reader's pipe closes: it ends (SIGPIPE); stopped by hand if it does not
for _ in $(seq 50); do kill -0 "$reader" 2>/dev/null || break; sleep 0.2; done
if kill -0 "$reader" 2>/dev/null; then kill "$reader"; fail "the reader ends when its pipe closes" "still running after 10 s"; fi
wait "$reader" 2>/dev/null

# --force writes into a parent (last: it changes what the children read)
run "$V" write --force --offset 0 "$D/mid.avhd" "$T/piece.1"
same "write --force into a parent is accepted (exit 0)" "$RC" 0
