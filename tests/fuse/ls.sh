#!/bin/bash
# vhdtool ls and extract, the recovery path without FUSE: partitions of MBR (with
# a logical partition) and GPT disks made by sfdisk, ext4/FAT/NTFS made by their
# own mkfs tools, every checkpoint's files equal to the tree they were made from
# (listing and sha256), the free ranges against dumpe2fs, the Windows-made NTFS
# fixtures against ntfs-3g, and the errors a user meets (exit 2, one line).
set -u
. "$(dirname "$0")/../lib.sh"
T=$TMPDIR
V=$VHDTOOL
. "$(dirname "$0")/images.inc"

if [ ! -x "$V" ]; then fail "vhdtool-present" "$V not built"; exit 0; fi
for tool in sfdisk mkfs.ext4 mkfs.vfat mcopy; do
	command -v "$tool" >/dev/null || { skip "ls suite" "$tool missing (scripts/install-deps.sh installs it)"; exit 0; }
done
command -v mkntfs >/dev/null && command -v ntfs-3g >/dev/null && [ "$(id -u)" = 0 ] || NO_NTFS="mkntfs/ntfs-3g missing or not root"

run() { timeout -k 2 120 "$@" >"$T/out" 2>"$T/err"; RC=$?; }
errline() { head -c 300 "$T/err" | tr '\n' '|'; }
crashed() { [ "$RC" -ge 124 ] || grep -qE 'Sanitizer|runtime error:' "$T/err"; }
jget() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
# error_case NAME REGEX CMD...: exit 2, one stderr line matching REGEX.
error_case() {
	local name=$1 word=$2 n; shift 2
	run "$@"
	n=$(grep -c . "$T/err")
	if crashed; then fail "$name" "crashed: exit $RC $(errline)"
	elif [ "$RC" != 2 ] || [ "$n" != 1 ]; then fail "$name" "exit $RC, $n stderr lines: $(errline)"
	elif ! grep -qiE -- "$word" "$T/err"; then fail "$name" "stderr does not match /$word/: $(errline)"
	else ok "$name"; fi
}

if ! build_mbr; then fail "build MBR test disk" "see $T"; exit 0; fi
build_gpt || fail "build GPT test disk"

# ---- partitions
run "$V" ls --json "$T/mbr.vhd"
cp "$T/out" "$T/parts.json"
got=$(jget "$T/parts.json" "' '.join(p['name']+'='+str(p['filesystem']) for p in j['partitions'])")
want="p1=ext4 p2=fat32 p5=ntfs p6=None"
[ -n "${NO_NTFS:-}" ] && want="p1=ext4 p2=fat32 p5=None p6=None"
if [ "$RC" = 0 ] && [ "$got" = "$want" ]; then ok "MBR partitions, logical p5/p6 numbered as Linux does, file systems"
else fail "MBR partitions, logical p5/p6 numbered as Linux does, file systems" "got '$got' want '$want' $(errline)"; fi
got=$(jget "$T/parts.json" "[(p['start'],p['size']) for p in j['partitions'] if p['name']=='p5'][0]")
if [ "$got" = "($MBR_P5, $MBR_P5_LEN)" ]; then ok "logical partition start and size"; else fail "logical partition start and size" "$got"; fi
run "$V" ls "$T/mbr.vhd"
if [ "$RC" = 0 ] && grep -q '^p2 .*fat32' "$T/out" && grep -q 'VDFSFAT' "$T/out"; then ok "ls table shows FAT label"; else fail "ls table shows FAT label" "$(head -c 300 "$T/out")"; fi

run "$V" ls --json "$T/gpt.vhd"
got=$(jget "$T/out" "' '.join(p['name']+'='+str(p['filesystem'])+'='+p['label'] for p in j['partitions'])")
if [ "$got" = "p1=ext4=linux data p2=fat16=fat data" ]; then ok "GPT partitions behind the protective MBR, with names"
else fail "GPT partitions behind the protective MBR, with names" "got '$got' $(errline)"; fi

# ---- every state's files equal its source tree
for s in A B C; do
	cp=(--checkpoint "$s"); [ "$s" = C ] && cp=()
	for pair in p1:ext p2:fat p5:ntfs; do
		p=${pair%%:*} fs=${pair#*:}
		if [ "$fs" = ntfs ] && [ -n "${NO_NTFS:-}" ]; then skip "extract $s $p ($fs)" "$NO_NTFS"; continue; fi
		rm -rf "$T/x"
		run "$V" extract "${cp[@]}" "$T/mbr.vhd:$p" / "$T/x"
		if [ "$RC" != 0 ] || crashed; then fail "extract state $s $p ($fs)" "exit $RC $(errline)"; continue; fi
		same_tree "extract state $s $p ($fs): listing and sha256 equal the tree" "$T/x" "$T/tree/$s/$fs"
	done
done
for pair in p1:ext p2:fat; do
	p=${pair%%:*} fs=${pair#*:}
	rm -rf "$T/x"
	run "$V" extract "$T/gpt.vhd:$p" / "$T/x"
	same_tree "GPT $p ($fs) extract equals the tree" "$T/x" "$T/tree/gpt/$fs"
done
rm -rf "$T/x"

# Holes stay holes: the 5 MiB sparse file extracts to far fewer blocks.
mkdir -p "$T/one"
run "$V" extract "$T/mbr.vhd:p1" /sparse.img "$T/one"
used=$(du -k "$T/one/sparse.img" 2>/dev/null | cut -f1)
if [ "$RC" = 0 ] && [ "${used:-9999}" -lt 1024 ]; then ok "extract keeps a sparse file sparse"; else fail "extract keeps a sparse file sparse" "exit $RC, ${used:-?} KiB used"; fi
want=$(stat -c %Y "$T/tree/C/ext/docs/reports/report.docx")
run "$V" extract "$T/mbr.vhd:p1" /docs/reports/report.docx "$T/one/r.docx"
if [ "$RC" = 0 ] && [ "$(stat -c %Y "$T/one/r.docx")" = "$want" ]; then ok "extract keeps the modification time"; else fail "extract keeps the modification time" "exit $RC $(errline)"; fi

# ---- listings
run "$V" ls --json "$T/mbr.vhd:p1" /docs/reports
got=$(jget "$T/out" "' '.join(sorted(e['name'] for e in j['entries']))")
want=$(cd "$T/tree/C/ext/docs/reports" && ls -A | LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//')
if [ "$RC" = 0 ] && [ "$got" = "$want" ]; then ok "ls --json of a folder equals ls -A of the tree"; else fail "ls --json of a folder equals ls -A of the tree" "got '$got' want '$want'"; fi
run "$V" ls --json --checkpoint A "$T/mbr.vhd:p1" /docs/reports/report.docx
got=$(jget "$T/out" "j['entries'][0]['size']")
if [ "$got" = "$(stat -c %s "$T/tree/A/ext/docs/reports/report.docx")" ]; then ok "ls of a file at checkpoint A gives its size then"; else fail "ls of a file at checkpoint A gives its size then" "got $got"; fi
run "$V" ls "$T/mbr.vhd:p2" "/Ünïcödé"
if [ "$RC" = 0 ] && grep -q "naïve café.txt" "$T/out"; then ok "non-ASCII names through FAT long names"; else fail "non-ASCII names through FAT long names" "$(head -c 200 "$T/out") $(errline)"; fi

# ---- free space the guest file system reports, against e2fsprogs' own view
dumpe2fs "$T/ext-C.img" 2>/dev/null | sed -n 's/^  Free blocks: //p' | tr ',' '\n' | sed '/^ *$/d' |
	python3 -c '
import sys
rs=[]
for t in sys.stdin:
    t=t.strip(); a,_,b=t.partition("-"); a=int(a); b=int(b or a)
    if rs and rs[-1][1]+1==a: rs[-1][1]=b
    else: rs.append([a,b])
for a,b in rs: print(a*1024,(b-a+1)*1024)' >"$T/free.want"
run "$V" ls --free "$T/mbr.vhd:p1"
if [ "$RC" = 0 ] && [ -s "$T/free.want" ] && diff -q "$T/out" "$T/free.want" >/dev/null; then ok "ls --free equals dumpe2fs's free blocks"
else fail "ls --free equals dumpe2fs's free blocks" "exit $RC $(diff "$T/out" "$T/free.want" | head -4 | tr '\n' ' ')"; fi

# ---- errors: exit 2, one line saying what to do
error_case "ls of a missing partition" "p9.*vhdtool ls" "$V" ls "$T/mbr.vhd:p9"
error_case "ls of a partition without a file system" "p6.*no file system" "$V" ls "$T/mbr.vhd:p6"
error_case "ls of a missing path" "nothere" "$V" ls "$T/mbr.vhd:p1" /nothere
error_case "ls of a missing checkpoint" "nosuch" "$V" ls --checkpoint nosuch "$T/mbr.vhd"
error_case "ls of a missing disk" "missing.vhd" "$V" ls "$T/missing.vhd"
error_case "extract without :pN" "pN" "$V" extract "$T/mbr.vhd" / "$T/y"
error_case "extract never overwrites" "exists" "$V" extract "$T/mbr.vhd:p1" /one.bin "$T/one/r.docx"
error_case "extract of a missing file" "nothere" "$V" extract "$T/mbr.vhd:p1" /nothere "$T/z"
expect_exit "ls --help" 0 "$V" ls --help
expect_exit "extract --help" 0 "$V" extract --help

# ---- Windows-made NTFS fixtures: list and extract, as ntfs-3g sees them
F=${FIXTURES:-}
for fx in win10-dynamic-10M-ntfs-mbr:p1 win10-fixed-10M-ntfs-mbr:p1 win7-dynamic-200M-ntfs-gpt:p2; do
	name=${fx%%:*} p=${fx#*:}
	if [ ! -f "$F/single/$name.vhd.gz" ]; then skip "fixture $name" "not found in FIXTURES=$F"; continue; fi
	gzip -dc "$F/single/$name.vhd.gz" >"$T/$name.vhd"
	run "$V" ls --json "$T/$name.vhd"
	fs=$(jget "$T/out" "[p['filesystem'] for p in j['partitions'] if p['name']=='$p'][0]")
	if [ "$fs" = ntfs ]; then ok "fixture $name: $p is NTFS"; else fail "fixture $name: $p is NTFS" "got '$fs' $(errline)"; fi
	rm -rf "$T/fx"
	run "$V" extract "$T/$name.vhd:$p" / "$T/fx"
	if [ "$RC" != 0 ]; then fail "fixture $name: extract /" "exit $RC $(errline)"; continue; fi
	ok "fixture $name: extract /"
	if [ -n "${NO_NTFS:-}" ]; then skip "fixture $name equals ntfs-3g" "$NO_NTFS"; continue; fi
	start=$("$V" ls --json "$T/$name.vhd" | python3 -c "import json,sys; print([p for p in json.load(sys.stdin)['partitions'] if p['name']=='$p'][0]['start'])")
	size=$("$V" ls --json "$T/$name.vhd" | python3 -c "import json,sys; print([p for p in json.load(sys.stdin)['partitions'] if p['name']=='$p'][0]['size'])")
	"$V" read --offset "$start" --length "$size" "$T/$name.vhd" >"$T/fxpart.img"
	mkdir -p "$T/fxm"
	if ntfs-3g -o ro "$T/fxpart.img" "$T/fxm" 2>/dev/null; then
		same_tree "fixture $name: files equal ntfs-3g's view" "$T/fx" "$T/fxm"
		umount "$T/fxm"
	else
		fail "fixture $name: files equal ntfs-3g's view" "ntfs-3g could not mount the partition"
	fi
done
# The FAT12 chain fixture: the child's files, with the parent's where the child has none.
if [ -f "$F/chains/tap-fat12/tap-differencing-fat12-child.vhd" ]; then
	gzip -dc "$F/chains/tap-fat12/expected-child.raw.gz" >"$T/child.raw"
	rm -rf "$T/fat12" "$T/fat12.want" && mkdir -p "$T/fat12.want"
	MTOOLS_SKIP_CHECK=1 mcopy -s -n -m -i "$T/child.raw" ::/HELLO.TXT ::/CHILD.TXT ::/DATA.BIN ::/DIR "$T/fat12.want/" 2>/dev/null
	run "$V" extract "$F/chains/tap-fat12/tap-differencing-fat12-child.vhd:p1" / "$T/fat12"
	same_tree "FAT12 differencing chain fixture equals mtools on the expected raw" "$T/fat12" "$T/fat12.want"
else
	skip "FAT12 chain fixture" "not found in FIXTURES=$F"
fi
