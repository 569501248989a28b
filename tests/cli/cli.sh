#!/bin/bash
# vhdtool as a user drives it: help and version, usage errors (exit 2, one stderr line),
# size suffixes, info (human and JSON), map coverage against what was written, read and
# write bounds, create refusing to overwrite, compare exit codes, check and its Azure
# profile, convert refusing a destination without room. The contract is the one in
# man/vhdtool.1: exit 0 success, 1 when check found problems or compare found a
# difference, 2 on any error with one stderr line naming the file.
set -u
. "$(dirname "$0")/../lib.sh"
# lib.sh's fail, with the reason flattened to one line (RESULTS holds one line a test)
fail() { local why; why=$(printf '%s' "${2:-}" | tr '\n\t' '  ' | head -c 600); echo "FAIL $SUITE $1 $why" >>"$RESULTS"; echo "  FAIL $1: $why"; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
TOP=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
V=$VHDTOOL
T=$TMPDIR

if [ ! -x "$V" ]; then fail "vhdtool-present" "$V not built"; exit 0; fi

# run CMD...: stdout to $T/out, stderr to $T/err, exit code in RC (timeout 60 s).
run() { timeout -k 2 60 "$@" >"$T/out" 2>"$T/err"; RC=$?; }
errline() { head -c 300 "$T/err" | tr '\n' '|'; }
# crashed: the last run died (signal, timeout) or a sanitizer spoke.
crashed() { [ "$RC" -ge 124 ] || grep -qE 'Sanitizer|runtime error:' "$T/err"; }
# usage_error NAME REGEX CMD...: exit 2, exactly one stderr line, matching REGEX (ERE, any case).
usage_error() {
	local name=$1 word=$2; shift 2
	run "$@"
	local n; n=$(grep -c . "$T/err")
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 2 ]; then fail "$name" "exit $RC, wanted 2: $(errline)"
	elif [ "$n" != 1 ]; then fail "$name" "wanted one stderr line, got $n: $(errline)"
	elif ! grep -qiE -- "$word" "$T/err"; then fail "$name" "stderr does not match /$word/: $(errline)"
	else ok "$name"; fi
}
# jget FILE EXPR: evaluate a Python expression on the JSON in FILE (bound to j).
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
info_field() { # DISK KEY
	"$V" info --json "$1" >"$T/info.json" 2>/dev/null && jget "$T/info.json" "j[\"$2\"]"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- help and version
run "$V" --help
if [ "$RC" = 0 ] && [ -s "$T/out" ]; then ok "--help"; else fail "--help" "exit $RC, $(wc -c <"$T/out") bytes on stdout"; fi
for sub in create info convert read write compare check map; do
	run "$V" "$sub" --help
	if [ "$RC" = 0 ] && grep -qi -- "$sub" "$T/out"; then ok "$sub --help"
	else fail "$sub --help" "exit $RC; stdout $(head -c 100 "$T/out" | tr '\n' ' ') $(errline)"; fi
done
want_version=$(sed -n 's/^#define VD_VERSION_STRING "\(.*\)"/\1/p' "$TOP/include/vdisk/vdisk.h")
run "$V" --version
if [ "$RC" = 0 ] && grep -qF "$want_version" "$T/out"; then ok "--version"; else fail "--version" "exit $RC, wanted $want_version in: $(head -c 100 "$T/out")"; fi
run "$V"
if [ "$RC" = 2 ] && ! crashed; then ok "no arguments exits 2"; else fail "no arguments exits 2" "exit $RC"; fi

# ---- usage errors: exit 2, one line, no file left behind
usage_error "unknown subcommand" frobnicate "$V" frobnicate x.vhd
usage_error "unknown option" --bogus "$V" info --bogus "$T/none.vhd"
usage_error "info without a file" info "$V" info
usage_error "create without -s" create "$V" create "$T/u1.vhd"
usage_error "create -s 12Q" 12Q "$V" create -s 12Q "$T/u2.vhd"
usage_error "create -s abc" abc "$V" create -s abc "$T/u3.vhd"
usage_error "create -s -1M" -1M "$V" create -s -1M "$T/u4.vhd"
usage_error "create -s 0" size "$V" create -s 0 "$T/u5.vhd"
usage_error "create -s 3T (over 2040 GiB)" "size|2040|3T" "$V" create -s 3T "$T/u6.vhd"
usage_error "create -s 99999999999T (overflow)" "size|99999999999T" "$V" create -s 99999999999T "$T/u7.vhd"
usage_error "create -t weird" weird "$V" create -t weird -s 1M "$T/u8.vhd"
usage_error "create --compat foo" foo "$V" create --compat foo -s 1M "$T/u9.vhd"
usage_error "create --block-size 3000" "block" "$V" create --block-size 3000 -s 16M "$T/u10.vhd"
usage_error "create --block-size 1G" "block" "$V" create --block-size 1G -s 16M "$T/u11.vhd"
usage_error "create --block-size 256" "block" "$V" create --block-size 256 -s 16M "$T/u12.vhd"
usage_error "convert -O qcow2" qcow2 "$V" convert -O qcow2 "$T/none.vhd" "$T/u13.vhd"
usage_error "check --profile nope" nope "$V" check --profile nope "$T/none.vhd"
usage_error "info on a missing file" "$T/none.vhd" "$V" info "$T/none.vhd"
mkdir -p "$T/adir"
usage_error "info on a directory" "$T/adir" "$V" info "$T/adir"
left=$(ls "$T" | grep -E '^u[0-9]+\.vhd$' | tr '\n' ' ')
if [ -z "$left" ]; then ok "failed creates leave no file"; else fail "failed creates leave no file" "left: $left"; fi

# ---- size suffixes (and plain bytes)
for spec in 1048576:1048576 512K:524288 3M:3145728 2G:2147483648 1T:1099511627776 2040G:2190433320960; do
	arg=${spec%%:*}; want=${spec#*:}
	f=$T/size-$arg.vhd
	run "$V" create -s "$arg" "$f"
	got=$(info_field "$f" virtual_size)
	if [ "$RC" = 0 ] && [ "$got" = "$want" ]; then ok "create -s $arg is $want bytes"
	else fail "create -s $arg is $want bytes" "exit $RC, virtual_size '$got' $(errline)"; fi
done
fsz=$(stat -c %s "$T/size-1T.vhd" 2>/dev/null || echo 0)
if [ "$fsz" -gt 0 ] && [ "$fsz" -lt $((8 << 20)) ]; then ok "1T dynamic disk is small ($fsz bytes)"; else fail "1T dynamic disk is small" "file is $fsz bytes"; fi
run "$V" create --block-size 512K -s 16M "$T/bs512k.vhd"
got=$(info_field "$T/bs512k.vhd" block_size)
if [ "$RC" = 0 ] && [ "$got" = 524288 ]; then ok "--block-size 512K"; else fail "--block-size 512K" "exit $RC, block_size '$got' $(errline)"; fi
run "$V" create -t fixed -s 1M "$T/fixed1m.vhd"
fsz=$(stat -c %s "$T/fixed1m.vhd" 2>/dev/null)
if [ "$RC" = 0 ] && [ "$fsz" = $((1048576 + 512)) ]; then ok "create -t fixed -s 1M: file is size + 512"; else fail "create -t fixed -s 1M: file is size + 512" "exit $RC, file $fsz"; fi

# ---- info, human and JSON
D=$T/d16.vhd
run "$V" create -s 16M "$D"
if [ "$RC" = 0 ]; then ok "create -s 16M"; else fail "create -s 16M" "exit $RC $(errline)"; fi
run "$V" info "$D"
if [ "$RC" = 0 ] && grep -qi dynamic "$T/out" && grep -qE '16777216|16(\.0)? ?Mi?B' "$T/out"; then ok "info (human) names the type and size"
else fail "info (human) names the type and size" "exit $RC: $(head -c 300 "$T/out" | tr '\n' '|')"; fi
run "$V" info --json "$D"
cp "$T/out" "$T/d16.json"
res=$(python3 - "$T/d16.json" "$D" <<'EOF' 2>&1
import json, os, sys
j = json.load(open(sys.argv[1]))
want = {"format", "type", "virtual_size", "block_size", "allocated_bytes", "file_size", "uuid",
        "creator_app", "geometry", "parent", "warnings"}
missing = want - set(j)
if missing:
    sys.exit("missing keys: %s" % sorted(missing))
errs = []
def expect(k, got, exp):
    if got != exp:
        errs.append("%s=%r want %r" % (k, got, exp))
expect("format", j["format"], "vhd")
expect("type", j["type"], "dynamic")
expect("virtual_size", j["virtual_size"], 16777216)
expect("block_size", j["block_size"], 2097152)
expect("allocated_bytes", j["allocated_bytes"], 0)
expect("file_size", j["file_size"], os.path.getsize(sys.argv[2]))
expect("creator_app", j["creator_app"], "qem2")
expect("geometry", {k: j["geometry"].get(k) for k in ("cylinders", "heads", "sectors")},
       {"cylinders": 481, "heads": 4, "sectors": 17})   # spec CHS of 16 MiB
expect("parent", j["parent"], None)
expect("warnings", j["warnings"], [])
u = str(j["uuid"]).replace("-", "")
if len(u) != 32 or int(u, 16) == 0:
    errs.append("uuid %r" % j["uuid"])
raw = open(sys.argv[2], "rb").read()[-512:][68:84].hex()
if u.lower() != raw:
    errs.append("uuid %s is not the footer's %s" % (u, raw))
print("; ".join(errs))
EOF
)
if [ "$RC" = 0 ] && [ -z "$res" ]; then ok "info --json keys and values"; else fail "info --json keys and values" "exit $RC: $res"; fi

# ---- write and read
head -c 10000 /dev/urandom >"$T/r10k"
run "$V" write --offset 1000000 "$D" "$T/r10k"
w=$RC
run "$V" read --offset 1000000 --length 10000 "$D"
if [ "$w" = 0 ] && [ "$RC" = 0 ] && cmp -s "$T/out" "$T/r10k"; then ok "write then read back at an odd offset"
else fail "write then read back at an odd offset" "write exit $w, read exit $RC $(errline)"; fi
printf 'hello from stdin' | "$V" write --offset 4194299 "$D" 2>"$T/err"; w=$?
run "$V" read --offset 4194299 --length 16 "$D"
if [ "$w" = 0 ] && [ "$RC" = 0 ] && [ "$(cat "$T/out")" = "hello from stdin" ]; then ok "write from stdin across a block boundary"
else fail "write from stdin across a block boundary" "write exit $w, read exit $RC: '$(head -c 40 "$T/out")' $(errline)"; fi
run "$V" read "$D"
if [ "$RC" = 0 ] && [ "$(stat -c %s "$T/out")" = 16777216 ]; then ok "read without --length reads the whole disk"
else fail "read without --length reads the whole disk" "exit $RC, $(stat -c %s "$T/out") bytes"; fi

# ---- out-of-range reads and writes: exit 2, the disk untouched
before=$(sha "$D")
usage_error "read at the end" "$D" "$V" read --offset 16777216 --length 1 "$D"
usage_error "read across the end" "$D" "$V" read --offset 16777200 --length 17 "$D"
usage_error "read far past the end" "$D|offset|18446744073709551000" "$V" read --offset 18446744073709551000 --length 1000 "$D"
head -c 20 /dev/urandom >"$T/r20"
usage_error "write across the end" "$D" "$V" write --offset 16777210 "$D" "$T/r20"
usage_error "write past the end" "$D" "$V" write --offset 17000000 "$D" "$T/r20"
usage_error "write offset near 2^64" "$D|offset|18446744073709551610" "$V" write --offset 18446744073709551610 "$D" "$T/r20"
if [ "$(sha "$D")" = "$before" ]; then ok "refused writes leave the disk unchanged"; else fail "refused writes leave the disk unchanged" "file changed"; fi
run "$V" read --offset 16777200 --length 16 "$D"
if [ "$RC" = 0 ] && [ "$(stat -c %s "$T/out")" = 16 ]; then ok "read up to the last byte"; else fail "read up to the last byte" "exit $RC $(errline)"; fi

# ---- create over an existing file
echo "precious" >"$T/exists.vhd"
usage_error "create over an existing file" "$T/exists.vhd" "$V" create -s 1M "$T/exists.vhd"
if [ "$(cat "$T/exists.vhd")" = precious ]; then ok "existing file kept"; else fail "existing file kept" "overwritten"; fi
usage_error "create over an existing VHD" "$D" "$V" create -s 1M "$D"
if [ "$(sha "$D")" = "$before" ]; then ok "existing VHD kept"; else fail "existing VHD kept" "changed"; fi

# ---- --compat edge cases
usage_error "create --compat vpc -s 8K (CHS rounds it to 0)" "vpc|CHS|geometry|round" "$V" create --compat vpc -s 8K "$T/tiny8k.vhd"
run "$V" create --compat azure -t dynamic -s 5M "$T/azdyn.vhd"
if [ "$RC" = 2 ] && [ "$(grep -c . "$T/err")" = 1 ] && grep -qi fixed "$T/err" && [ ! -e "$T/azdyn.vhd" ]; then ok "create --compat azure -t dynamic refused naming 'fixed'"
elif [ "$RC" = 0 ] && [ "$(info_field "$T/azdyn.vhd" type)" = fixed ]; then ok "create --compat azure -t dynamic makes a fixed disk"
else fail "create --compat azure -t dynamic: refused or fixed" "exit $RC: $(errline)"; fi

# ---- one writer at a time; convert never destroys its source
before=$(sha "$D")
run flock -x "$D" "$V" write --offset 0 "$D" "$T/r20"
if [ "$RC" = 2 ] && [ "$(grep -c . "$T/err")" = 1 ] && grep -qiE 'lock|busy|another process|in use' "$T/err"; then ok "write refused while another writer holds the image"
else fail "write refused while another writer holds the image" "exit $RC: $(errline)"; fi
usage_error "convert onto its own source" "$D" "$V" convert -O dynamic "$D" "$D"
ln -sf "$D" "$T/link-to-d16.vhd"
usage_error "convert onto a symlink to its source" "link-to-d16" "$V" convert -O raw "$D" "$T/link-to-d16.vhd"
if [ "$(sha "$D")" = "$before" ]; then ok "source intact after refused converts and writes"; else fail "source intact after refused converts and writes" "changed"; fi

# ---- map: ranges cover the disk, allocated ranges agree with the writes
M=$T/map.vhd
"$V" create -s 16M "$M" >/dev/null 2>&1
wr_ok=1
for w in 0:4096 5242883:1 8388558:100 16776704:512; do
	off=${w%%:*}; len=${w#*:}
	head -c "$len" /dev/urandom >"$T/piece"
	"$V" write --offset "$off" "$M" "$T/piece" 2>/dev/null || wr_ok=0
done
run "$V" map --json "$M"
map_rc=$RC
cp "$T/out" "$T/map.json"
"$V" read "$M" >"$T/map.raw" 2>/dev/null
# shape-tolerant reader of the extent list: a list, or a dict holding one; offset from
# start/offset, length from length/len/size (or end), kind from type/kind/state or
# qemu-img-map style data/zero booleans.
cat >"$T/extents.py" <<'EOF'
import json, sys

def extents(doc):
    if isinstance(doc, dict):
        lists = [v for k, v in doc.items() if isinstance(v, list) and k != "warnings"]
        if len(lists) != 1:
            raise SystemExit("map JSON: no single list of extents in keys %s" % list(doc))
        doc = lists[0]
    out = []
    for e in doc:
        start = e.get("start", e.get("offset", e.get("guest_offset")))
        length = e.get("length", e.get("len", e.get("size")))
        if length is None and "end" in e:
            length = e["end"] - start
        kind = e.get("type", e.get("kind", e.get("state", e.get("status"))))
        if kind is None and isinstance(e.get("data"), bool):
            kind = "allocated" if e["data"] else ("zero" if e.get("zero") else "unallocated")
        if kind is None and isinstance(e.get("allocated"), bool):
            kind = "allocated" if e["allocated"] else "unallocated"
        k = str(kind).lower()
        if "unalloc" in k or k in ("hole", "absent", "none"):
            k = "unallocated"
        elif "alloc" in k or k in ("data", "present"):
            k = "allocated"
        elif "zero" in k:
            k = "zero"
        if start is None or length is None:
            raise SystemExit("map JSON: extent without start/length: %r" % e)
        out.append((int(start), int(length), k))
    return out

def coverage(ext, size):
    pos = 0
    for start, length, kind in ext:
        if start != pos:
            return "gap or overlap at %d (extent starts %d)" % (pos, start)
        if length <= 0:
            return "empty extent at %d" % start
        if kind not in ("allocated", "unallocated", "zero"):
            return "unknown kind %r" % kind
        pos += length
    if pos != size:
        return "extents end at %d, disk is %d" % (pos, size)
    return ""
EOF
res=$(python3 - "$T/map.json" "$T/map.raw" "$T" <<'EOF' 2>&1
import sys
sys.path.insert(0, sys.argv[3])
from extents import extents, coverage
import json
ext = extents(json.load(open(sys.argv[1])))
raw = open(sys.argv[2], "rb").read()
size = 16 << 20
errs = []
c = coverage(ext, size)
if c:
    errs.append(c)
bs = 2 << 20
writes = [(0, 4096), (5242883, 1), (8388558, 100), (16776704, 512)]
touched = set()
for off, ln in writes:
    touched.update(range(off // bs, (off + ln - 1) // bs + 1))
alloc = [(s, l) for s, l, k in ext if k == "allocated"]
for off, ln in writes:
    for b in (off, off + ln - 1):
        if not any(s <= b < s + l for s, l in alloc):
            errs.append("written byte %d not in an allocated extent" % b)
for s, l in alloc:
    if not all(x // bs in touched for x in (s, s + l - 1)):
        errs.append("allocated extent %d+%d outside the written blocks %s" % (s, l, sorted(touched)))
for s, l, k in ext:
    if k != "allocated" and raw[s:s + l].count(0) != l:
        errs.append("%s extent %d+%d does not read as zeros" % (k, s, l))
print("; ".join(errs[:5]))
EOF
)
if [ "$wr_ok" = 1 ] && [ "$map_rc" = 0 ] && [ -z "$res" ]; then ok "map --json covers the disk and matches the writes"
else fail "map --json covers the disk and matches the writes" "writes ok=$wr_ok, map exit $map_rc: $res"; fi
run "$V" map "$M"
if [ "$RC" = 0 ] && [ -s "$T/out" ]; then ok "map (human)"; else fail "map (human)" "exit $RC $(errline)"; fi
run "$V" map --json "$T/fixed1m.vhd"
cp "$T/out" "$T/mapf.json"
res=$(python3 - "$T/mapf.json" "$T" <<'EOF' 2>&1
import sys, json
sys.path.insert(0, sys.argv[2])
from extents import extents, coverage
print(coverage(extents(json.load(open(sys.argv[1]))), 1 << 20))
EOF
)
if [ "$RC" = 0 ] && [ -z "$res" ]; then ok "map --json of a fixed disk covers it"; else fail "map --json of a fixed disk covers it" "exit $RC: $res"; fi

# ---- compare
cp "$M" "$T/map-copy.vhd"
expect_exit "compare identical copies exits 0" 0 "$V" compare "$M" "$T/map-copy.vhd"
expect_exit "compare a VHD with its raw content exits 0" 0 "$V" compare "$M" "$T/map.raw"
printf '\x5a' | "$V" write --offset 12345678 "$T/map-copy.vhd" 2>/dev/null
expect_exit "compare after a one-byte change exits 1" 1 "$V" compare "$M" "$T/map-copy.vhd"
"$V" create -s 16M "$T/empty16.vhd" >/dev/null 2>&1
head -c $((16 << 20)) /dev/zero >"$T/zero16.raw"
expect_exit "compare an empty dynamic disk with zeros exits 0" 0 "$V" compare "$T/empty16.vhd" "$T/zero16.raw"
"$V" create -s 17M "$T/empty17.vhd" >/dev/null 2>&1
expect_exit "compare disks of different sizes exits 1" 1 "$V" compare "$T/empty16.vhd" "$T/empty17.vhd"
usage_error "compare with a missing file exits 2" "$T/none.vhd" "$V" compare "$M" "$T/none.vhd"

# ---- check
expect_exit "check a good dynamic disk exits 0" 0 "$V" check "$M"
expect_exit "check a good fixed disk exits 0" 0 "$V" check "$T/fixed1m.vhd"
run "$V" check --json "$M"
if [ "$RC" = 0 ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/out" 2>/dev/null; then ok "check --json is JSON"
else fail "check --json is JSON" "exit $RC: $(head -c 200 "$T/out")"; fi
run "$V" check --profile azure "$M"
if [ "$RC" = 1 ] && grep -qi fixed "$T/out" "$T/err"; then ok "check --profile azure on a dynamic disk exits 1 naming 'fixed'"
else fail "check --profile azure on a dynamic disk exits 1 naming 'fixed'" "exit $RC: $(head -c 300 "$T/out" | tr '\n' '|') $(errline)"; fi
"$V" create -t fixed -s 1000K "$T/fixed1000k.vhd" >/dev/null 2>&1
run "$V" check --profile azure "$T/fixed1000k.vhd"
if [ "$RC" = 1 ] && grep -qiE 'MiB|multiple|size' "$T/out" "$T/err"; then ok "check --profile azure on a 1000 KiB fixed disk exits 1 naming the size"
else fail "check --profile azure on a 1000 KiB fixed disk exits 1 naming the size" "exit $RC: $(head -c 300 "$T/out" | tr '\n' '|')"; fi
run "$V" create --compat azure -t fixed -s 1000K "$T/azure.vhd"
az_rc=$RC
run "$V" check --profile azure "$T/azure.vhd"
if [ "$az_rc" = 0 ] && [ "$RC" = 0 ]; then ok "a --compat azure disk passes check --profile azure"
else fail "a --compat azure disk passes check --profile azure" "create exit $az_rc, check exit $RC: $(head -c 300 "$T/out" | tr '\n' '|')"; fi

# ---- convert: progress, and a destination without room
head -c $((16 << 20)) /dev/urandom >"$T/rand16.raw"
run "$V" convert -O dynamic "$T/rand16.raw" "$T/rand16.vhd"
run "$V" convert -p -O raw "$T/rand16.vhd" "$T/rand16-back.raw"
if [ "$RC" = 0 ] && cmp -s "$T/rand16.raw" "$T/rand16-back.raw"; then ok "convert -p round trip"; else fail "convert -p round trip" "exit $RC $(errline)"; fi
MNT=$T/small
mkdir -p "$MNT"
if mount -t tmpfs -o size=2M tmpfs "$MNT" 2>"$T/mount.err"; then
	for fmt in raw dynamic fixed; do
		run "$V" convert -O "$fmt" "$T/rand16.vhd" "$MNT/out-$fmt"
		n=$(grep -c . "$T/err")
		if ! crashed && [ "$RC" = 2 ] && [ "$n" = 1 ] && grep -qiE 'space|room|ENOSPC' "$T/err"; then ok "convert -O $fmt into 2 MiB tmpfs exits 2 naming the space"
		else fail "convert -O $fmt into 2 MiB tmpfs exits 2 naming the space" "exit $RC, $n stderr lines: $(errline)"; fi
		if [ ! -e "$MNT/out-$fmt" ]; then ok "convert -O $fmt without room leaves no partial file"
		else fail "convert -O $fmt without room leaves no partial file" "$(stat -c %s "$MNT/out-$fmt") bytes left"; fi
		rm -f "$MNT/out-$fmt"
	done
	umount "$MNT" || umount -l "$MNT"
else
	skip "convert without room" "cannot mount a tmpfs: $(head -c 100 "$T/mount.err")"
fi
