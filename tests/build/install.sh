# `make install` into a private prefix, then build and run a program against the
# installed library the way a user would: through pkg-config, shared and static.
. "$TOP/tests/lib.sh"

prefix=$TMPDIR/prefix
if ! make -s -C "$TOP" install PREFIX="$prefix" >"$TMPDIR/install.log" 2>&1; then
	fail make-install "$(tail -n 3 "$TMPDIR/install.log" | tr '\n' ' ')"
	exit 0
fi
ok make-install
for f in lib/libvdisk.so.0 lib/libvdisk.so lib/libvdisk.a include/vdisk/vdisk.h \
	lib/pkgconfig/libvdisk.pc bin/vhdtool share/man/man1/vhdtool.1; do
	if [ -e "$prefix/$f" ]; then ok "installed-$f"; else fail "installed-$f" "missing after make install"; fi
done

# Only the public API is exported from the shared library.
others=$(nm -D --defined-only "$prefix/lib/libvdisk.so.0" | awk '{print $3}' | grep -v '^vd_' | grep -v '^LIBVDISK_')
if [ -z "$others" ]; then ok exports-only-vd; else fail exports-only-vd "also exports: $others"; fi
soname=$(objdump -p "$prefix/lib/libvdisk.so.0" | awk '/SONAME/ {print $2}')
[ "$soname" = libvdisk.so.0 ] && ok soname || fail soname "SONAME is '$soname'"

cat >"$TMPDIR/prog.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <vdisk/vdisk.h>
int main(int argc, char **argv)
{
	struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = 8u << 20};
	struct vd_disk *d;
	char buf[6] = {0};
	(void)argc;
	if (vd_create(argv[1], &o, &d) < 0 || vd_pwrite(d, "hello", 5, 12345) < 0 ||
	    vd_pread(d, buf, 5, 12345) < 0) {
		fprintf(stderr, "%s\n", vd_errmsg(d));
		return 1;
	}
	vd_close(d);
	return strcmp(buf, "hello") != 0;
}
C
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
if cc -std=c11 -Wall -Werror $(pkg-config --cflags libvdisk) "$TMPDIR/prog.c" -o "$TMPDIR/prog" \
	$(pkg-config --libs libvdisk) 2>"$TMPDIR/cc.log"; then
	check pkg-config-shared-runs env LD_LIBRARY_PATH="$prefix/lib" "$TMPDIR/prog" "$TMPDIR/a.vhd"
	check pkg-config-shared-qemu-reads qemu-img info -f vpc "$TMPDIR/a.vhd"
else
	fail pkg-config-shared-build "$(tail -n 3 "$TMPDIR/cc.log" | tr '\n' ' ')"
fi
if cc -std=c11 $(pkg-config --cflags libvdisk) "$TMPDIR/prog.c" -o "$TMPDIR/prog-static" \
	"$prefix/lib/libvdisk.a" $(pkg-config --static --libs-only-l libvdisk | sed 's/-lvdisk//') \
	2>"$TMPDIR/cc2.log"; then
	check static-runs "$TMPDIR/prog-static" "$TMPDIR/b.vhd"
else
	fail static-build "$(tail -n 3 "$TMPDIR/cc2.log" | tr '\n' ' ')"
fi
check man-page-renders sh -c "MANWIDTH=80 man -l '$prefix/share/man/man1/vhdtool.1' >/dev/null 2>&1 || groff -man -Tutf8 '$prefix/share/man/man1/vhdtool.1' >/dev/null"
