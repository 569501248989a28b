#!/bin/bash
# Checkpoints and doctor as a user drives them through vhdtool. Oracles: raw model files
# written with dd at the same offsets (one per state: each checkpoint and "Now"), the
# tree the story builds (names, parents, current), and sha256 of files that a refused or
# "never fixed" operation must leave alone. JSON is parsed with python3.
#  - checkpoint create/list --json/apply/delete on a dynamic base with writes between;
#    read/compare/convert/info --checkpoint NAME give that state; DISK gives "Now";
#    info --image describes the base file itself;
#  - a frozen checkpoint image and a parent take no write (exit 2, one line), --force does;
#  - doctor: a healthy chain (exit 0, merge order), a renamed parent (broken link, exit 1;
#    --fix relinks it, exit 0, the chain reads again), an orphan (reported, not fixed),
#    two copies of one parent (duplicate UUID: reported, never fixed).
set -u
. "$(dirname "$0")/../lib.sh"
# lib.sh's fail, with the reason flattened to one line (RESULTS holds one line a test)
fail() { local why; why=$(printf '%s' "${2:-}" | tr '\n\t' '  ' | head -c 600); echo "FAIL $SUITE $1 $why" >>"$RESULTS"; echo "  FAIL $1: $why"; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
V=$VHDTOOL
T=$TMPDIR

if [ ! -x "$V" ]; then fail "vhdtool-present" "$V not built"; exit 0; fi

run() { timeout -k 2 60 "$@" >"$T/out" 2>"$T/err"; RC=$?; }
crashed() { [ "$RC" -ge 124 ] || grep -qE 'Sanitizer|runtime error:' "$T/err"; }
errline() { head -c 400 "$T/err" | tr '\n' '|'; }
same() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1" "got '$2', wanted '$3'"; fi; }
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
samefile() { python3 -c 'import os,sys; sys.exit(0 if os.path.samefile(sys.argv[1], sys.argv[2]) else 1)' "$1" "$2" 2>/dev/null; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
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
# succeeds NAME CMD...: exit 0, no crash (output in $T/out)
succeeds() {
	local name=$1; shift
	run "$@"
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 0 ]; then fail "$name" "exit $RC $(errline)"
	else ok "$name"; fi
}
# reads_as NAME RAW [read options] DISK: vhdtool read == RAW
reads_as() {
	local name=$1 raw=$2; shift 2
	rm -f "$T/read.raw"
	timeout -k 2 60 "$V" read "$@" >"$T/read.raw" 2>"$T/err"; RC=$?
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 0 ]; then fail "$name" "read: exit $RC $(errline)"
	elif cmp -s "$T/read.raw" "$raw"; then ok "$name"
	else fail "$name" "$(cmp "$T/read.raw" "$raw" 2>&1 | head -n 1)"; fi
}
put() { dd if="$3" of="$1" bs=1M conv=notrunc oflag=seek_bytes seek="$2" status=none; }
n=0
# wr DISK OFFSET LEN MODEL...: random bytes into DISK through vhdtool, and into each MODEL
wr() {
	local disk=$1 off=$2 len=$3; shift 3
	n=$((n + 1))
	head -c "$len" /dev/urandom >"$T/piece.$n"
	run "$V" write --offset "$off" "$disk" "$T/piece.$n"
	if [ "$RC" != 0 ]; then fail "write $len bytes at $off" "exit $RC $(errline)"; fi
	for m in "$@"; do put "$m" "$off" "$T/piece.$n"; done
}
# tree_is NAME EXPECTED: list --json as "current|name:parent:image-is-disk ..." equals EXPECTED
tree_summary() {
	python3 - "$T/list.json" <<'EOF'
import json, os, sys
j = json.load(open(sys.argv[1]))
ck = " ".join("%s:%s:%s" % (c["name"], c["parent"] if c["parent"] is not None else "-",
                            "disk" if os.path.samefile(c["image"], j["disk"]) else "avhd")
              for c in j["checkpoints"])
print("%s|%s" % (j["current"] if j["current"] is not None else "-", ck))
EOF
}
tree_is() {
	run "$V" checkpoint list --json "$DISK"
	cp "$T/out" "$T/list.json"
	if [ "$RC" != 0 ]; then fail "$1" "list: exit $RC $(errline)"; return; fi
	same "$1" "$(tree_summary 2>&1)" "$2"
}

# ==== the story ========================================================================
S=$T/vm
mkdir -p "$S"
DISK=$S/disk.vhd
SIZE=$((4 * 1024 * 1024))
for m in base one two now; do head -c $SIZE /dev/zero >"$T/$m.raw"; done
succeeds "create the base" "$V" create -s 4M --block-size 64K "$DISK"
wr "$DISK" 1000 70000 "$T/base.raw" "$T/one.raw" "$T/two.raw" "$T/now.raw"
tree_is "no checkpoint: list is empty" "-|"
same "no checkpoint: active is the disk" "$(samefile "$(jget "$T/list.json" 'j["active"]')" "$DISK" && echo yes)" yes

# one = base content
succeeds "checkpoint create one" "$V" checkpoint create "$DISK" one
tree_is "after create one" "one|one:-:disk"
active1=$(jget "$T/list.json" 'j["active"]')
if [ -f "$active1" ] && ! samefile "$active1" "$DISK"; then ok "a new active image takes the writes"; else fail "a new active image takes the writes" "active '$active1'"; fi
same "list --json: disk is the absolute path of DISK" "$(jget "$T/list.json" 'j["disk"]')" "$(cd "$S" && pwd -P)/disk.vhd"
wr "$DISK" 100001 5000 "$T/two.raw" "$T/now.raw"
wr "$DISK" $((64 * 1024 - 10)) 20 "$T/two.raw" "$T/now.raw"
reads_as "read DISK gives Now" "$T/now.raw" "$DISK"
reads_as "read --checkpoint one gives one" "$T/one.raw" --checkpoint one "$DISK"
if cmp -s "$T/one.raw" "$T/now.raw"; then fail "the story's states differ" "test bug"; fi

# two = one + the writes since
succeeds "checkpoint create 'two' (a name with a space)" "$V" checkpoint create "$DISK" "two"
wr "$DISK" 3000000 100000 "$T/now.raw"
tree_is "after create two" "two|one:-:disk two:one:avhd"
reads_as "Now after a write past two" "$T/now.raw" "$DISK"
reads_as "two is frozen" "$T/two.raw" --checkpoint two "$DISK"
reads_as "one is frozen" "$T/one.raw" --checkpoint one "$DISK"

# info: DISK is Now; --checkpoint a state; --image the base file itself
run "$V" info --json "$DISK"
cp "$T/out" "$T/info.json"
if [ "$RC" = 0 ]; then
	same "info DISK: the active state is differencing" "$(jget "$T/info.json" 'j["type"]')" differencing
	active=$(jget "$T/list.json" 'j["active"]')
	if samefile "$(jget "$T/info.json" 'j["chain"][0]')" "$active"; then ok "info DISK: chain starts at the active image"
	else fail "info DISK: chain starts at the active image" "chain $(jget "$T/info.json" 'j["chain"]'), active $active"; fi
	if samefile "$(jget "$T/info.json" 'j["chain"][-1]')" "$DISK"; then ok "info DISK: chain ends at the base"
	else fail "info DISK: chain ends at the base" "$(jget "$T/info.json" 'j["chain"]')"; fi
else fail "info --json DISK" "exit $RC $(errline)"; fi
run "$V" info --json --image "$DISK"
same "info --image DISK: the base itself (dynamic, no parent)" "$(jget "$T/out" 'j["type"], j["parent"]')" "('dynamic', None)"
run "$V" info --json --checkpoint two "$DISK"
two_image=$(jget "$T/list.json" '[c["image"] for c in j["checkpoints"] if c["name"] == "two"][0]')
if [ "$RC" = 0 ] && samefile "$(jget "$T/out" 'j["chain"][0]')" "$two_image"; then ok "info --checkpoint two: the chain of two's image"
else fail "info --checkpoint two: the chain of two's image" "exit $RC $(jget "$T/out" 'j["chain"]') $(errline)"; fi
reads_as "the image listed for two reads as two" "$T/two.raw" "$two_image"

# compare and convert on states
run "$V" compare --checkpoint two "$DISK" "$T/two.raw"
same "compare --checkpoint two with its model: identical" "$RC" 0
run "$V" compare "$DISK" "$T/two.raw"
same "compare DISK (Now) with two's model: different" "$RC" 1
run "$V" convert -O raw --checkpoint one "$DISK" "$T/conv-one.raw"
if [ "$RC" = 0 ] && cmp -s "$T/conv-one.raw" "$T/one.raw"; then ok "convert --checkpoint one == one"; else fail "convert --checkpoint one == one" "exit $RC $(errline)"; fi
run "$V" convert -O dynamic "$DISK" "$T/conv-now.vhd"
if [ "$RC" = 0 ]; then reads_as "convert DISK flattens Now into one disk" "$T/now.raw" "$T/conv-now.vhd"; else fail "convert DISK" "exit $RC $(errline)"; fi

# frozen images take no writes; --force does (checked on a copy of the folder)
sum_two=$(sha "$two_image") sum_disk=$(sha "$DISK")
refused "write into two's frozen image refused" "checkpoint|depend|child|differencing|force" "$V" write --offset 0 "$two_image" "$T/piece.1"
same "the refused write left two's image unchanged" "$(sha "$two_image")" "$sum_two"
same "writes to DISK never reached the base file" "$(sha "$DISK")" "$sum_disk"
reads_as "two still reads as two" "$T/two.raw" --checkpoint two "$DISK"
# --force, on a copy of the folder: the bytes land in that very file, so two's state shows them
cp -a "$S" "$T/vm-copy"
cp "$T/two.raw" "$T/two-forced.raw"
put "$T/two-forced.raw" 0 "$T/piece.1"
run "$V" write --force --offset 0 "$T/vm-copy/$(basename "$two_image")" "$T/piece.1"
same "write --force into a frozen image (a copy) is accepted" "$RC" 0
reads_as "write --force went into that image: the copy's two shows it" "$T/two-forced.raw" --checkpoint two "$T/vm-copy/disk.vhd"
reads_as "... and the original folder is untouched" "$T/two.raw" --checkpoint two "$DISK"

# errors: duplicate name, unknown names, bad names
refused "create a duplicate name refused" "two" "$V" checkpoint create "$DISK" two
refused "apply an unknown name refused" "nosuch" "$V" checkpoint apply "$DISK" nosuch
refused "delete an unknown name refused" "nosuch" "$V" checkpoint delete "$DISK" nosuch
refused "read --checkpoint of an unknown name refused" "nosuch" "$V" read --checkpoint nosuch "$DISK"
refused "create an empty name refused" "name" "$V" checkpoint create "$DISK" ""
tree_is "refusals changed nothing" "two|one:-:disk two:one:avhd"

# apply one: Now = one; two untouched
cp "$T/one.raw" "$T/now.raw"
succeeds "checkpoint apply one" "$V" checkpoint apply "$DISK" one
tree_is "after apply one" "one|one:-:disk two:one:avhd"
reads_as "apply one: Now reads as one" "$T/now.raw" "$DISK"
reads_as "apply one: two untouched" "$T/two.raw" --checkpoint two "$DISK"
wr "$DISK" 2000000 3333 "$T/now.raw"
reads_as "a write after apply goes to Now" "$T/now.raw" "$DISK"
reads_as "... and not into one" "$T/one.raw" --checkpoint one "$DISK"

# delete one (two hangs from nothing now; Now came from one: current becomes none)
succeeds "checkpoint delete one" "$V" checkpoint delete "$DISK" one
tree_is "after delete one" "-|two:-:avhd"
reads_as "delete one: Now unchanged" "$T/now.raw" "$DISK"
reads_as "delete one: two unchanged" "$T/two.raw" --checkpoint two "$DISK"
refused "delete one: one no longer reads" "one" "$V" read --checkpoint one "$DISK"

run "$V" checkpoint list "$DISK"
if [ "$RC" = 0 ] && grep -q two "$T/out"; then ok "checkpoint list (text) names two"; else fail "checkpoint list (text)" "exit $RC $(errline)"; fi
run "$V" doctor --json "$S"
if [ "$RC" = 0 ] && [ -n "$(jget "$T/out" 'len(j["images"])')" ]; then ok "doctor on a checkpoint folder: healthy, JSON parses"
else fail "doctor on a checkpoint folder: healthy, JSON parses" "exit $RC $(head -c 300 "$T/out" | tr '\n' ' ') $(errline)"; fi

# the whole folder moves (manifest and locators are relative)
mv "$S" "$T/vm-moved"
S=$T/vm-moved DISK=$T/vm-moved/disk.vhd
reads_as "moved folder: Now" "$T/now.raw" "$DISK"
reads_as "moved folder: two" "$T/two.raw" --checkpoint two "$DISK"

succeeds "checkpoint delete two" "$V" checkpoint delete "$DISK" two
tree_is "after delete two: no checkpoint" "-|"
reads_as "delete two: Now unchanged" "$T/now.raw" "$DISK"
# the header: deleting the last checkpoint folds Now back into the base
if samefile "$(jget "$T/list.json" 'j["active"]')" "$DISK"; then ok "after the last delete the base is active again"
else fail "after the last delete the base is active again" "active $(jget "$T/list.json" 'j["active"]')"; fi
left=$(cd "$S" && ls | grep -vxE 'disk\.vhd|disk\.vhd\.checkpoints' | tr '\n' ' ')
same "no stray files: only the base (and its manifest) are left" "$left" ""
run "$V" info --json "$DISK"
same "info DISK: the base, dynamic again" "$(jget "$T/out" 'j["type"], j["parent"]')" "('dynamic', None)"

# with no checkpoint left the base takes writes again, without --force
wr "$DISK" 777 4000 "$T/now.raw"
reads_as "the base takes writes after the last delete" "$T/now.raw" "$DISK"

# ==== doctor ===========================================================================
# mkchain DIR: base.vhd <- mid.avhd <- leaf.avhd, with data; DIR/model.raw is the leaf
mkchain() {
	mkdir -p "$1"
	head -c $SIZE /dev/zero >"$1.model"
	"$V" create -s 4M "$1/base.vhd" >/dev/null 2>&1
	wr "$1/base.vhd" 0 9000 "$1.model"
	"$V" create -t diff -b "$1/base.vhd" "$1/mid.avhd" >/dev/null 2>&1
	wr "$1/mid.avhd" 5000 9000 "$1.model"
	"$V" create -t diff -b "$1/mid.avhd" "$1/leaf.avhd" >/dev/null 2>&1
	wr "$1/leaf.avhd" 10001 9000 "$1.model"
}
# status DIR FILE: the status doctor --json gives FILE (after run "$V" doctor --json ...)
status() { jget "$T/out" "[i['status'] for i in j['images'] if i['path'].split('/')[-1] == '$2'][0]"; }
sums() { (cd "$1" && sha256sum * | sha256sum | cut -d' ' -f1); }

# (a) healthy
H=$T/healthy
mkchain "$H"
run "$V" doctor --json "$H"
same "doctor healthy: exit 0" "$RC" 0
same "doctor healthy: every image ok" "$(jget "$T/out" '" ".join(sorted(i["status"] for i in j["images"]))')" "ok ok ok"
same "doctor healthy: merge order deepest first" "$(jget "$T/out" '" ".join(">".join(p.split("/")[-1] for p in m) for m in j["merge_order"])')" "leaf.avhd>mid.avhd mid.avhd>base.vhd"
run "$V" doctor "$H"
same "doctor healthy (text): exit 0" "$RC" 0

# (b) renamed parent: a broken link, fixed by --fix
B=$T/broken
mkchain "$B"
mv "$B/base.vhd" "$B/base-renamed.vhd"
run "$V" doctor --json "$B"
same "doctor renamed parent: exit 1" "$RC" 1
same "doctor renamed parent: mid is a broken link" "$(status "$B" mid.avhd)" broken
run "$V" doctor --json --fix "$B"
same "doctor --fix: exit 0" "$RC" 0
same "doctor --fix: reports mid fixed" "$(jget "$T/out" '[i["fixed"] for i in j["images"] if i["path"].split("/")[-1] == "mid.avhd"][0]')" True
reads_as "doctor --fix: the chain reads again" "$B.model" "$B/leaf.avhd"
run "$V" doctor "$B"
same "doctor after --fix: healthy" "$RC" 0

# (c) orphan: the parent is gone; reported, nothing changed
O=$T/orphan
mkchain "$O"
rm "$O/base.vhd"
before=$(sums "$O")
run "$V" doctor --json --fix "$O"
same "doctor orphan: exit 1 even with --fix" "$RC" 1
same "doctor orphan: mid reported as an orphan" "$(status "$O" mid.avhd)" orphan
same "doctor orphan: --fix changed nothing" "$(sums "$O")" "$before"

# (d) two copies of one parent: duplicate UUIDs, never fixed automatically
P=$T/dup
mkchain "$P"
cp "$P/base.vhd" "$P/base-copy.vhd"
run "$V" doctor --json "$P"
same "doctor duplicate: exit 1" "$RC" 1
same "doctor duplicate: both copies reported" "$(status "$P" base.vhd) $(status "$P" base-copy.vhd)" "duplicate_uuid duplicate_uuid"
mv "$P/base.vhd" "$P/base-moved.vhd"   # now the link is broken and two files could fix it
before=$(sums "$P")
run "$V" doctor --json --fix "$P"
same "doctor duplicate + broken link: exit 1 after --fix" "$RC" 1
same "doctor duplicate + broken link: not fixed" "$(jget "$T/out" '[i["fixed"] for i in j["images"] if i["path"].split("/")[-1] == "mid.avhd"][0]')" False
same "doctor duplicate: --fix changed nothing" "$(sums "$P")" "$before"
refused "doctor on a missing folder: exit 2" "nosuchdir" "$V" doctor "$T/nosuchdir"
