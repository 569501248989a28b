# Two writers never share an image, across processes: a second read-write open
# fails (exit 2) naming the process that holds the image; reading is allowed.
. "$TOP/tests/lib.sh"
V=$VHDTOOL
D=$TMPDIR/locked.vhd
"$V" create -s 16M "$D" >/dev/null
mkfifo "$TMPDIR/fifo"
# The first writer blocks reading the fifo while it holds the image open.
"$V" write --offset 0 "$D" "$TMPDIR/fifo" 2>"$TMPDIR/w1.err" &
holder=$!
exec 9>"$TMPDIR/fifo"   # open the write end: the writer's open of the fifo returns
printf 'first writer ' >&9
for _ in $(seq 1 50); do grep -q "FLOCK.* $holder " /proc/locks && break; sleep 0.1; done
out=$("$V" write --offset 4096 "$D" /etc/hostname 2>&1); rc=$?
if [ "$rc" = 2 ] && printf '%s' "$out" | grep -q "locked" && printf '%s' "$out" | grep -q "process $holder"; then
	ok "second writer refused, naming the holder's pid"
else
	fail "second writer refused, naming the holder's pid" "exit $rc: $out (holder $holder)"
fi
if "$V" read --offset 0 --length 16 "$D" >/dev/null 2>"$TMPDIR/r.err"; then
	ok "a reader may open the image while it is written"
else
	fail "a reader may open the image while it is written" "$(cat "$TMPDIR/r.err")"
fi
exec 9>&-
wait "$holder"; rc=$?
[ "$rc" = 0 ] && ok "the first writer finishes" || fail "the first writer finishes" "exit $rc: $(cat "$TMPDIR/w1.err")"
got=$("$V" read --offset 0 --length 13 "$D")
[ "$got" = "first writer " ] && ok "the first writer's data is there" || fail "the first writer's data is there" "read '$got'"
check "a writer may open it once the first is gone" "$V" write --offset 4096 "$D" /etc/hostname
