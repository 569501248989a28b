# vhdtool merge against a plain-file model: into the parent, --into an
# ancestor, --keep, refusals; then 100 trials of a real `vhdtool merge` process
# killed at its Nth I/O (the fault engine's err=kill, what kill -9 does there),
# each followed by the checks that the chain still reads right and that
# running the merge again completes it.
. "$TOP/tests/lib.sh"
V=$VHDTOOL
T=$TMPDIR
sha() { sha256sum | cut -c1-64; }

# A 3-level chain: base (dynamic, 64 KiB blocks) <- c1 <- c2, data at odd offsets.
mkchain() { # dir
	mkdir -p "$1"
	"$V" create -s 8M --block-size 64K "$1/base.vhd" >/dev/null &&
	head -c 1500000 /dev/urandom | "$V" write --offset 12345 "$1/base.vhd" &&
	"$V" create -t diff -b "$1/base.vhd" "$1/c1.vhd" >/dev/null &&
	head -c 300001 /dev/urandom | "$V" write --offset 700001 "$1/c1.vhd" &&
	"$V" create -t diff -b "$1/c1.vhd" "$1/c2.vhd" >/dev/null &&
	head -c 99999 /dev/urandom | "$V" write --offset 3 "$1/c2.vhd" &&
	head -c 4097 /dev/urandom | "$V" write --offset 5000000 "$1/c2.vhd"
}

mkchain "$T/tpl" || { fail setup "cannot build the chain"; exit 0; }
# Copies keep the files' times (cp -a): a child records its parent's modification
# time, and check rightly warns when a plain cp has moved it to another second.
leaf_sha=$("$V" read "$T/tpl/c2.vhd" | sha)
c1_sha=$("$V" read "$T/tpl/c1.vhd" | sha)

cp -a "$T/tpl" "$T/a"
check "merge c2 into its parent" "$V" merge "$T/a/c2.vhd"
[ "$("$V" read "$T/a/c1.vhd" | sha)" = "$leaf_sha" ] && ok "the parent now reads as the child did" || fail "the parent now reads as the child did"
[ ! -e "$T/a/c2.vhd" ] && ok "the merged child is removed" || fail "the merged child is removed"
check "the parent checks clean" "$V" check "$T/a/c1.vhd"

cp -a "$T/tpl" "$T/b"
check "merge --into the base across two levels" "$V" merge --into "$T/b/base.vhd" "$T/b/c2.vhd"
[ "$("$V" read "$T/b/base.vhd" | sha)" = "$leaf_sha" ] && ok "the base reads as the leaf did" || fail "the base reads as the leaf did"
[ ! -e "$T/b/c1.vhd" ] && [ ! -e "$T/b/c2.vhd" ] && ok "both merged levels are removed" || fail "both merged levels are removed"
if command -v qemu-img >/dev/null; then
	"$V" read "$T/b/base.vhd" >"$T/b.raw"
	check "qemu-img reads the merged base as the model" qemu-img compare -f vpc -F raw "$T/b/base.vhd" "$T/b.raw"
fi

cp -a "$T/tpl" "$T/c"
check "merge --keep" "$V" merge --keep "$T/c/c2.vhd"
[ "$("$V" read "$T/c/c2.vhd" | sha)" = "$leaf_sha" ] && ok "a kept child reads the same" || fail "a kept child reads the same"

cp -a "$T/tpl" "$T/d"
"$V" create -t diff -b "$T/d/c1.vhd" "$T/d/sibling.vhd" >/dev/null
expect_exit "merge refused while a sibling depends on the parent" 2 "$V" merge "$T/d/c2.vhd"
[ "$("$V" read "$T/d/sibling.vhd" | sha)" = "$c1_sha" ] && ok "the sibling is untouched" || fail "the sibling is untouched"
expect_exit "merge of a disk without a parent" 2 "$V" merge "$T/d/base.vhd"
expect_exit "merge --into an image outside the chain" 2 "$V" merge --into "$T/d/sibling.vhd" "$T/d/c2.vhd"
"$V" merge --help | grep -q "vhdtool convert CHILD NEW" && ok "merge --help names the merge into a new disk" || fail "merge --help names the merge into a new disk"

# Kill a real merge at its Nth I/O, for N = 1..100; then resume.
killed=0 bad=0 done_first=0
for n in $(seq 1 100); do
	rm -rf "$T/k"; cp -a "$T/tpl" "$T/k"
	VDISK_ENGINE="fault:nth=$n,op=any,err=kill" "$V" merge "$T/k/c2.vhd" >/dev/null 2>&1
	rc=$?
	if [ "$rc" = 137 ]; then
		killed=$((killed + 1))
		# Interrupted: the child still reads right, and merging again finishes.
		[ "$("$V" read "$T/k/c2.vhd" 2>/dev/null | sha)" = "$leaf_sha" ] || { bad=$((bad + 1)); echo "  trial $n: the chain reads wrong after the kill"; continue; }
		"$V" merge "$T/k/c2.vhd" >/dev/null 2>&1 || { bad=$((bad + 1)); echo "  trial $n: resuming failed"; continue; }
	elif [ "$rc" = 0 ]; then
		done_first=$((done_first + 1))
	else
		bad=$((bad + 1)); echo "  trial $n: merge exited $rc"; continue
	fi
	[ "$("$V" read "$T/k/c1.vhd" | sha)" = "$leaf_sha" ] && "$V" check "$T/k/c1.vhd" >/dev/null ||
		{ bad=$((bad + 1)); echo "  trial $n: the merged parent is wrong"; }
done
if [ "$bad" = 0 ] && [ "$killed" -gt 0 ]; then
	ok "100 merge trials: $killed killed at an I/O and resumed, $done_first finished before the kill point, all correct"
else
	fail "100 merge trials" "$bad wrong ($killed killed, $done_first finished)"
fi
