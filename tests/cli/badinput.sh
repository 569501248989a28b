#!/bin/bash
# Malformed VHDs: scripts/gen-malformed.py builds valid disks from the spec and writes
# about a hundred broken variants (truncations, cookies, checksums, BAT, header, footer
# fields, locators, parents) into $TMPDIR, each with the behaviour it must get
# (cases.tsv; classes are listed at the top of the generator). For every image,
# `vhdtool info --json`, `vhdtool read` and `vhdtool check` must:
#   - never crash: an exit code >= 124 (signal or timeout) or a sanitizer report fails;
#   - finish within 10 s (timeout 10);
#   - never modify the file (SHA-256 before and after);
#   - refuse with exit 2 and ONE stderr line naming the file and the field (a keyword
#     per case), or open with a warning where the spec tolerates the damage.
# Tolerated by the spec, so they must open (class W, with a warning):
#   trunc-nofooter, trunc-partfooter (end footer missing/cut: the copy at 0 is used),
#   cookie-footer-end, csum-footer-end, csum-footer-copy0 (one bad footer copy),
#   footer-copies-differ (the two copies disagree).
# Must open, but check must report it (class C): geometry-too-big (spec 8: geometry <=
#   the spec CHS of the size; the 65535/16/255 marker excepted).
# Must open, a warning allowed (class T): trunc-511footer (pre-2004 511-byte footer),
#   entries-extra, hdr-dataoff-32bit, version-1.1, features-temporary, dyn-locator-junk.
# Either refused or opened with a warning (class EW): csum-footer-both, csum-fixed,
#   grown-garbage, size-unaligned, features-zero, saved-state-2, uuid-null, loc-*.
# The valid controls (class ok) must open with no warning and read exactly; the
# generator's controls are also checked against qemu-img and vhdiinfo, so a bug in the
# generator shows up as a failing control rather than as a false pass.
set -u
. "$(dirname "$0")/../lib.sh"
# lib.sh's fail, with the reason flattened to one line (RESULTS holds one line a test)
fail() { local why; why=$(printf '%s' "${2:-}" | tr '\n\t' '  ' | head -c 600); echo "FAIL $SUITE $1 $why" >>"$RESULTS"; echo "  FAIL $1: $why"; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
TOP=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}

if [ ! -x "$VHDTOOL" ]; then fail "vhdtool-present" "$VHDTOOL not built"; exit 0; fi

D=$TMPDIR/malformed
if ! python3 "$TOP/scripts/gen-malformed.py" "$D" >"$TMPDIR/gen.log" 2>&1; then
	fail "generate" "$(tail -n 3 "$TMPDIR/gen.log" | tr '\n' ' ')"
	exit 0
fi
ncases=$(($(wc -l <"$D/cases.tsv") - 1))
if [ "$ncases" -ge 50 ]; then ok "generate ($ncases images)"; else fail "generate" "only $ncases images"; fi

# ---- the generator's valid images, read by the two oracles
for c in ok-dyn4k ok-dyn2m ok-fixed; do
	sz=$(stat -c %s "$D/$c.raw")
	q=$(qemu-img info -f vpc --output=json "$D/$c.vhd" 2>&1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])' 2>&1)
	v=$(vhdiinfo "$D/$c.vhd" 2>&1 | sed -n 's/.*Media size.*(\([0-9]*\) bytes).*/\1/p')
	if out=$(qemu-img compare -f vpc -F raw "$D/$c.vhd" "$D/$c.raw" 2>&1) && [ "$q" = "$sz" ] && [ "$v" = "$sz" ]; then
		ok "generator $c agrees with qemu-img and vhdiinfo"
	else
		fail "generator $c agrees with qemu-img and vhdiinfo" "qemu size $q, vhdiinfo $v, want $sz; $out"
	fi
done

# ---- helpers
# run OUT ERR CMD...: CMD under `timeout 10`; sets RC.
run() { local o=$1 e=$2; shift 2; timeout -k 2 10 "$@" >"$o" 2>"$e"; RC=$?; }
# crash_reason ERR: prints why the last run counts as a crash, or nothing.
crash_reason() {
	if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then echo "timed out (10 s)"; return; fi
	if [ "$RC" -ge 128 ]; then echo "killed by signal $((RC - 128)): $(grep -m1 -E 'ERROR|runtime error' "$1")"; return; fi
	if grep -qE 'Sanitizer|runtime error:' "$1"; then echo "sanitizer: $(grep -m1 -E 'Sanitizer|runtime error:' "$1")"; fi
}
# refusal_problem ERR FILE KW: why a refusal's stderr is not one line naming FILE and KW.
refusal_problem() {
	local lines
	lines=$(grep -c . "$1")
	if [ "$lines" != 1 ]; then echo "stderr has $lines lines: $(head -c 300 "$1" | tr '\n' '|')"; return; fi
	if ! grep -qF "$(basename "$2")" "$1"; then echo "stderr does not name the file: $(cat "$1")"; return; fi
	# the keyword must be in the message, not in the file's own name
	local msg; msg=$(cat "$1"); msg=${msg//"$2"/FILE}
	if ! printf '%s' "$msg" | grep -qiE -- "$3"; then echo "stderr does not name the field (/$3/): $(cat "$1")"; return; fi
}
# json_info JSON KEY: prints one value of vhdtool info --json (warnings joined by |).
json_info() {
	python3 - "$1" "$2" <<'EOF' 2>/dev/null
import json, sys
j = json.load(open(sys.argv[1]))
v = j.get(sys.argv[2])
if isinstance(v, list):
    print("|".join(w if isinstance(w, str) else json.dumps(w) for w in v))
elif v is None:
    print("")
else:
    print(v)
EOF
}

# ---- differencing support decides how the diff family is judged
DIFF_UNSUPPORTED=
run "$TMPDIR/o" "$TMPDIR/e" "$VHDTOOL" info --json "$D/ok-diff.vhd"
if [ "$RC" = 2 ] && grep -qiE 'differenc|not supported|unsupported' "$TMPDIR/e"; then
	DIFF_UNSUPPORTED="differencing chains land with issue 4 ($(head -c 120 "$TMPDIR/e"))"
fi

# ---- each case
tail -n +2 "$D/cases.tsv" | while IFS=$'\t' read -r name cls kw sha size family what; do
	f=$D/$name
	case_name="${name%.vhd} [$cls]"
	before=$(sha256sum <"$f")
	kwcheck=1
	if [ -n "$DIFF_UNSUPPORTED" ] && [ "$family" = diff ]; then
		if [ "$cls" = ok ]; then skip "$case_name info" "$DIFF_UNSUPPORTED"; cls=E; else cls=E; fi
		kw=.; kwcheck=0
		skip "$case_name field named" "$DIFF_UNSUPPORTED"
	fi

	# info --json
	run "$TMPDIR/o" "$TMPDIR/e" "$VHDTOOL" info --json "$f"
	info_rc=$RC
	why=$(crash_reason "$TMPDIR/e")
	if [ -z "$why" ]; then
		warnings=""; vsize=""; fmt=""
		if [ "$RC" = 0 ]; then
			if ! python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$TMPDIR/o" 2>/dev/null; then
				why="exit 0 but stdout is not JSON: $(head -c 200 "$TMPDIR/o")"
			else
				warnings=$(json_info "$TMPDIR/o" warnings); vsize=$(json_info "$TMPDIR/o" virtual_size)
				fmt=$(json_info "$TMPDIR/o" format)
			fi
		fi
	fi
	if [ -z "$why" ]; then
		refused=$([ "$RC" = 2 ] && refusal_problem "$TMPDIR/e" "$f" "$kw")
		case $cls in
		ok)
			if [ "$RC" != 0 ]; then why="exit $RC, wanted 0: $(head -n1 "$TMPDIR/e")"
			elif [ -n "$warnings" ]; then why="unexpected warning on a valid disk: $warnings"
			elif [ "$vsize" != "$size" ]; then why="virtual_size $vsize, wanted $size"; fi ;;
		T | C)
			if [ "$RC" != 0 ]; then why="exit $RC, wanted 0 (the spec tolerates this): $(head -n1 "$TMPDIR/e")"
			elif [ "$size" != - ] && [ "$vsize" != "$size" ]; then why="virtual_size $vsize, wanted $size"; fi ;;
		W)
			if [ "$RC" != 0 ]; then why="exit $RC, wanted 0 with a warning (the spec tolerates this): $(head -n1 "$TMPDIR/e")"
			elif ! printf '%s' "$warnings" | grep -qiE -- "$kw"; then why="no warning matching /$kw/ (warnings: '$warnings')"
			elif [ "$vsize" != "$size" ]; then why="virtual_size $vsize, wanted $size"; fi ;;
		E)
			if [ "$RC" != 2 ]; then why="exit $RC, wanted 2 (format '$fmt' size '$vsize' warnings '$warnings')"
			else why=$refused; fi ;;
		EW)
			if [ "$RC" = 2 ]; then why=$refused
			elif [ "$RC" != 0 ]; then why="exit $RC, wanted 2 or 0 with a warning"
			elif ! printf '%s' "$warnings" | grep -qiE -- "$kw"; then why="opened without a warning matching /$kw/ (warnings: '$warnings')"; fi ;;
		R)
			if [ "$RC" = 2 ]; then why=$refused
			elif [ "$RC" != 0 ]; then why="exit $RC, wanted 2 or 0 as raw"
			elif [ "$fmt" != raw ]; then why="opened as '$fmt' although no VHD cookie is left"; fi ;;
		A)
			if [ "$RC" = 2 ]; then why=$(refusal_problem "$TMPDIR/e" "$f" .)
			elif [ "$RC" != 0 ]; then why="exit $RC, wanted 0 or 2"; fi ;;
		esac
	fi
	if [ -z "$why" ]; then ok "$case_name info"; else fail "$case_name info" "$what: $why"; fi

	# read (the whole virtual disk)
	run "$TMPDIR/o" "$TMPDIR/e" "$VHDTOOL" read "$f"
	why=$(crash_reason "$TMPDIR/e")
	if [ -z "$why" ]; then
		got=$(sha256sum <"$TMPDIR/o" | cut -d' ' -f1)
		case $cls in
		ok | T | W | EW | R | A | C)
			if [ "$info_rc" = 0 ]; then
				if [ "$RC" != 0 ]; then why="info opened it but read exits $RC: $(head -n1 "$TMPDIR/e")"
				elif [ "$sha" != - ] && [ "$got" != "$sha" ]; then why="content differs from the generator's ($(stat -c %s "$TMPDIR/o") bytes)"
				elif [ "$cls" = R ] && [ "$got" != "$(sha256sum <"$f" | cut -d' ' -f1)" ]; then why="opened as raw but does not read as the file's bytes"; fi
			elif [ "$RC" != 2 ]; then why="info refused it (exit $info_rc) but read exits $RC"
			else why=$(refusal_problem "$TMPDIR/e" "$f" "$kw"); fi ;;
		E)
			if [ "$RC" != 2 ]; then why="exit $RC, wanted 2"
			else why=$(refusal_problem "$TMPDIR/e" "$f" "$kw"); fi ;;
		esac
	fi
	if [ -z "$why" ]; then ok "$case_name read"; else fail "$case_name read" "$what: $why"; fi

	# check: a malformed image is a finding (1) or unreadable (2); valid ones pass
	run "$TMPDIR/o" "$TMPDIR/e" "$VHDTOOL" check "$f"
	why=$(crash_reason "$TMPDIR/e")
	if [ -z "$why" ]; then
		case $cls in
		ok) [ "$RC" = 0 ] || why="exit $RC on a valid disk: $(head -c 300 "$TMPDIR/o" "$TMPDIR/e" | tr '\n' ' ')" ;;
		T | A | R) case $RC in 0 | 1 | 2) ;; *) why="exit $RC, wanted 0, 1 or 2" ;; esac ;;
		C) [ "$RC" = 1 ] || why="exit $RC, wanted 1 (a problem found): $(head -c 200 "$TMPDIR/o" | tr '\n' ' ')" ;;
		*) case $RC in 1 | 2) ;; *) why="exit $RC, wanted 1 or 2: $(head -c 200 "$TMPDIR/o" | tr '\n' ' ')" ;; esac ;;
		esac
		# a finding names the field, as the refusal does
		case $cls in E | W | EW | C)
			report=$(cat "$TMPDIR/o" "$TMPDIR/e"); report=${report//"$f"/FILE}
			if [ -z "$why" ] && [ "$kwcheck" = 1 ] && ! printf '%s' "$report" | grep -qiE -- "$kw"; then
				why="the report does not name the field (/$kw/): $(head -c 200 "$TMPDIR/o" | tr '\n' ' ')"
			fi ;;
		esac
	fi
	if [ -z "$why" ]; then ok "$case_name check"; else fail "$case_name check" "$what: $why"; fi

	if [ "$(sha256sum <"$f")" = "$before" ]; then ok "$case_name unmodified"; else fail "$case_name unmodified" "$what: info/read/check changed the file"; fi
done

# check reports every problem, not only the first (vdisk.h: "every problem is reported")
run "$TMPDIR/o" "$TMPDIR/e" "$VHDTOOL" check --json "$D/multi-bat.vhd"
res=$(python3 - "$TMPDIR/o" <<'EOF' 2>&1
import json, sys
j = json.load(open(sys.argv[1]))
probs = j.get("problems", j if isinstance(j, list) else [])
text = json.dumps(probs)
missing = [e for e in ("17", "100") if e not in text]
if len(probs) < 2 or missing:
    print("%d problem(s) reported, entries %s not named: %s" % (len(probs), missing, text[:300]))
EOF
)
if [ -z "$(crash_reason "$TMPDIR/e")" ] && [ "$RC" = 1 ] && [ -z "$res" ]; then ok "check reports both bad BAT entries of multi-bat"
else fail "check reports both bad BAT entries of multi-bat" "exit $RC: $res"; fi

# the shared parent of the diff family must be untouched too
want=$(python3 - "$D" <<'EOF'
import hashlib, sys
print(hashlib.sha256(open(sys.argv[1] + "/ok-dyn4k.vhd", "rb").read()).hexdigest())
EOF
)
if [ "$(sha256sum <"$D/parent.vhd" | cut -d' ' -f1)" = "$want" ]; then ok "parent.vhd unmodified"; else fail "parent.vhd unmodified" "a child's open changed its parent"; fi
