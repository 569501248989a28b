# Power-cut and fault simulation (tests/crash/crashsim.c): for each workload,
# every crash point (prefixes of the writes and reorderings since the last
# flush) and every I/O failing with ENOSPC/EIO or killed there, over image
# creation and writes, checkpoint create/apply/delete and set-parent; and over
# the operations that must not change what a disk reads (compact of dynamic and
# differencing disks, merge, expand with blocks moved out of the BAT's way, and
# copy/convert), where every state must read as before and running the
# operation again must complete it. Each line reports how many crash points and
# states were checked.
. "$TOP/tests/lib.sh"
SIM=$BUILD/tests/crash/crashsim
[ -x "$SIM" ] || { fail crashsim "not built: $SIM"; exit 0; }

for mode in power fault; do
	for w in dynamic dynamic-2m fixed diff discard ckpt setparent compact compact-diff merge expand copy; do
		if [ "$mode/$w" = power/ckpt ]; then
			skip "power ckpt" "the crash log holds image writes, not the manifest's rename; checkpoint steps are killed at every I/O in fault mode instead"
			continue
		fi
		# The simulator models durability itself (the log and its replays), so a
		# tmpfs serves as well as a disk and spares thousands of real fsyncs.
		base=$TMPDIR
		[ -d /dev/shm ] && [ -w /dev/shm ] && base=/dev/shm
		d=$(mktemp -d "$base/vdsim.XXXXXX")
		out=$("$SIM" "$mode" "$w" "$d" 2>&1)
		rc=$?
		summary=$(printf '%s\n' "$out" | grep '^crashsim ' | tail -n 1)
		echo "$out" | grep -E 'FAIL' | head -n 5
		if [ "$rc" = 0 ] && [ -n "$summary" ]; then
			ok "$mode $w: ${summary#*: }"
		else
			fail "$mode $w" "exit $rc: $(printf '%s\n' "$out" | grep -E 'FAIL|crashsim' | head -n 3 | tr '\n' ' ')"
		fi
		rm -rf "$d"
	done
done
