/*
 * A scratch directory per test (under $TMPDIR), removed by the suite's fini, for
 * the unit tests that make files: TestSuite(x, .init = scratch_init, .fini =
 * scratch_fini), then scratch_path(buf, "a.vhd").
 */
#ifndef VD_TESTS_SCRATCH_H
#define VD_TESTS_SCRATCH_H

#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char scratch_dir[PATH_MAX / 2];

static int scratch_rm(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

static void scratch_init(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(scratch_dir, sizeof(scratch_dir), "%s/vdisk-unit-XXXXXX",
		 base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(scratch_dir), "mkdtemp: %s", strerror(errno));
}

static void scratch_fini(void)
{
	nftw(scratch_dir, scratch_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* OUT (PATH_MAX bytes) = the scratch directory's NAME. */
static void scratch_path(char *out, const char *name)
{
	snprintf(out, PATH_MAX, "%s/%s", scratch_dir, name);
}

#endif
