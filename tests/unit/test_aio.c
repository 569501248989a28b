/*
 * The asynchronous request API (vd_aio_submit / vd_aio_poll) on every engine
 * that starts here: many requests in flight, requests across blocks, writes
 * that allocate blocks mixed with writes into them, flush as a barrier, a
 * differencing chain read asynchronously. Oracle: an in-memory model of every
 * write, and the disk reopened by a fresh handle.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk/vdisk.h"
#include "scratch.h"

#define MiB (1ull << 20)
#define SIZE (32 * MiB)
#define NREQ 256

/* The engine under test, or a skip when this kernel or sandbox refuses it. */
static int engine_ok(const char *engine)
{
	struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = MiB, .engine = engine};
	struct vd_disk *d;
	char p[PATH_MAX];
	int rc;

	scratch_path(p, "probe.vhd");
	rc = vd_create(p, &o, &d);
	if (rc < 0)
		cr_log_warn("engine %s cannot start here: %s", engine, vd_errmsg(d));
	vd_close(d);
	unlink(p);
	return rc == 0;
}

static unsigned completions;

static void count_done(struct vd_aio *a, int res)
{
	(void)a;
	cr_assert_eq(res, 0, "a request failed: %d", res);
	completions++;
}

static void wait_all(struct vd_disk *d, struct vd_aio *a, int n)
{
	int left = n;

	while (left > 0) {
		int got = vd_aio_poll(d, 1);

		cr_assert_geq(got, 0, "poll: %s", vd_errmsg(d));
		left = 0;
		for (int i = 0; i < n; i++)
			left += !a[i].complete;
	}
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

static void assert_same(const uint8_t *got, const uint8_t *want, size_t n, const char *what)
{
	size_t i = 0;

	while (i < n && got[i] == want[i])
		i++;
	cr_assert_eq(i, n, "%s: byte %zu differs", what, i);
}

static struct vd_disk *open_with(const char *name, const char *engine, unsigned flags)
{
	struct vd_open_opts o = {.flags = flags, .engine = engine};
	struct vd_disk *d;
	char p[PATH_MAX];

	scratch_path(p, name);
	cr_assert_eq(vd_open(p, &o, &d), 0, "%s", vd_errmsg(d));
	return d;
}

/* Writes that allocate blocks, writes into them and reads, all in flight at once. */
static void writes_then_reads(const char *engine)
{
	struct vd_create_opts co = {
		.type = VD_TYPE_DYNAMIC, .size = SIZE, .block_size = 64u << 10, .engine = engine};
	uint8_t *model = calloc(1, SIZE), *bufs = malloc((size_t)NREQ * 20000), *got = malloc(SIZE);
	struct vd_aio *a = calloc(NREQ, sizeof(*a)), fl = {.op = VD_AIO_FLUSH};
	unsigned seed = 1;
	struct vd_disk *d;
	char p[PATH_MAX];

	if (!engine_ok(engine))
		cr_skip_test("engine %s cannot start here", engine);
	scratch_path(p, "a.vhd");
	cr_assert_eq(vd_create(p, &co, &d), 0, "%s", vd_errmsg(d));
	completions = 0;
	for (int i = 0; i < NREQ; i++) {
		size_t len = 1 + (size_t)(rand_r(&seed) % 20000); /* often across 2 blocks */
		uint64_t off = (uint64_t)rand_r(&seed) % (SIZE - len);

		fill(bufs + (size_t)i * 20000, len, (unsigned)i);
		a[i] = (struct vd_aio){.op = VD_AIO_WRITE,
				       .buf = bufs + (size_t)i * 20000,
				       .len = len,
				       .offset = off,
				       .done = count_done};
		memcpy(model + off, a[i].buf, len); /* in submission order: later wins on overlap */
	}
	/* Overlapping writes in flight have no defined order: submit them in waves. */
	for (int i = 0; i < NREQ; i++) {
		int overlap = 0;

		for (int j = 0; j < i && !overlap; j++)
			overlap = !a[j].complete && a[j].offset < a[i].offset + a[i].len &&
				  a[i].offset < a[j].offset + a[j].len;
		if (overlap)
			wait_all(d, a, i);
		cr_assert_eq(vd_aio_submit(d, &a[i]), 0, "%s", vd_errmsg(d));
	}
	wait_all(d, a, NREQ);
	cr_assert_eq(completions, NREQ);
	cr_assert_eq(vd_aio_submit(d, &fl), 0);
	wait_all(d, &fl, 1);
	cr_assert_eq(fl.res, 0, "%s", vd_errmsg(d));
	/* Reads of the whole disk in 128 KiB pieces, all in flight. */
	for (int i = 0; i < NREQ; i++)
		a[i] = (struct vd_aio){.op = VD_AIO_READ,
				       .buf = got + (size_t)i * (SIZE / NREQ),
				       .len = SIZE / NREQ,
				       .offset = (uint64_t)i * (SIZE / NREQ)};
	for (int i = 0; i < NREQ; i++)
		cr_assert_eq(vd_aio_submit(d, &a[i]), 0);
	wait_all(d, a, NREQ);
	for (int i = 0; i < NREQ; i++)
		cr_assert_eq(a[i].res, 0);
	assert_same(got, model, SIZE, "async reads after async writes");
	cr_assert_eq(vd_close(d), 0);
	/* A fresh handle (synchronous calls) sees the same: the flush published it all. */
	d = open_with("a.vhd", "psync", VD_OPEN_RDONLY);
	memset(got, 0, SIZE);
	cr_assert_eq(vd_pread(d, got, SIZE, 0), 0);
	assert_same(got, model, SIZE, "reopened");
	vd_close(d);
	free(model);
	free(bufs);
	free(got);
	free(a);
}

/* Many small reads in flight on an allocated disk, and a chain read the same way. */
static void random_reads(const char *engine)
{
	struct vd_create_opts co = {.type = VD_TYPE_DYNAMIC, .size = SIZE, .block_size = 2 * MiB};
	struct vd_create_opts cc = {.type = VD_TYPE_DIFFERENCING};
	uint8_t *model = malloc(SIZE), *got = calloc(NREQ, 4096);
	struct vd_aio *a = calloc(NREQ, sizeof(*a));
	char p[PATH_MAX], c[PATH_MAX];
	unsigned seed = 9;
	struct vd_disk *d;

	if (!engine_ok(engine))
		cr_skip_test("engine %s cannot start here", engine);
	scratch_path(p, "r.vhd");
	scratch_path(c, "r-child.vhd");
	fill(model, SIZE, 3);
	cr_assert_eq(vd_create(p, &co, &d), 0, "%s", vd_errmsg(d));
	cr_assert_eq(vd_pwrite(d, model, SIZE, 0), 0);
	cr_assert_eq(vd_close(d), 0);
	cc.parent = p;
	cr_assert_eq(vd_create(c, &cc, &d), 0, "%s", vd_errmsg(d));
	fill(model + 5 * MiB + 1000, 70000, 8); /* the child's own data, across a block edge */
	cr_assert_eq(vd_pwrite(d, model + 5 * MiB + 1000, 70000, 5 * MiB + 1000), 0);
	cr_assert_eq(vd_close(d), 0);
	for (int pass = 0; pass < 2; pass++) {
		d = open_with(pass ? "r-child.vhd" : "r.vhd", engine, VD_OPEN_RDONLY);
		for (int i = 0; i < NREQ; i++) {
			uint64_t off = (uint64_t)(rand_r(&seed) % (SIZE / 4096)) * 4096;

			if (pass && i % 4 == 0)
				off = 5 * MiB + (uint64_t)(i % 16) * 4096; /* the child's data */
			a[i] = (struct vd_aio){.op = VD_AIO_READ,
					       .buf = got + (size_t)i * 4096,
					       .len = 4096,
					       .offset = off};
			cr_assert_eq(vd_aio_submit(d, &a[i]), 0);
		}
		if (pass == 0) /* every read of an allocated disk goes to the engine at once */
			cr_assert_geq(vd_aio_inflight(d), 128, "only %u requests in flight",
				      vd_aio_inflight(d));
		wait_all(d, a, NREQ);
		cr_assert_eq(vd_aio_inflight(d), 0);
		for (int i = 0; i < NREQ; i++) {
			cr_assert_eq(a[i].res, 0, "%s", vd_errmsg(d));
			assert_same(got + (size_t)i * 4096, model + a[i].offset, 4096,
				    pass ? "chain read" : "read");
		}
		vd_close(d);
	}
	free(model);
	free(got);
	free(a);
}

/* A request that cannot start is refused at once; nothing is delivered for it. */
static void refusals(const char *engine)
{
	struct vd_create_opts co = {.type = VD_TYPE_DYNAMIC, .size = MiB};
	uint8_t buf[512] = {0};
	struct vd_aio a = {.op = VD_AIO_READ, .buf = buf, .len = 512, .offset = MiB};
	struct vd_disk *d;
	char p[PATH_MAX];

	if (!engine_ok(engine))
		cr_skip_test("engine %s cannot start here", engine);
	scratch_path(p, "x.vhd");
	cr_assert_eq(vd_create(p, &co, &d), 0);
	vd_close(d);
	d = open_with("x.vhd", engine, VD_OPEN_RDONLY);
	cr_assert_eq(vd_aio_submit(d, &a), -EINVAL, "a read past the end");
	a = (struct vd_aio){.op = VD_AIO_WRITE, .buf = buf, .len = 512, .offset = 0};
	cr_assert_eq(vd_aio_submit(d, &a), -EROFS, "a write to a read-only disk");
	cr_assert_eq(vd_aio_poll(d, 0), 0, "nothing to deliver");
	cr_assert_eq(vd_aio_inflight(d), 0);
	vd_close(d);
}

TestSuite(aio, .init = scratch_init, .fini = scratch_fini, .timeout = 120);

Test(aio, psync_writes_then_reads)
{
	writes_then_reads("psync");
}
Test(aio, io_uring_writes_then_reads)
{
	writes_then_reads("io_uring");
}
Test(aio, libaio_writes_then_reads)
{
	writes_then_reads("libaio");
}
Test(aio, psync_random_reads)
{
	random_reads("psync");
}
Test(aio, io_uring_random_reads)
{
	random_reads("io_uring");
}
Test(aio, libaio_random_reads)
{
	random_reads("libaio");
}
Test(aio, io_uring_refusals)
{
	refusals("io_uring");
}
Test(aio, psync_refusals)
{
	refusals("psync");
}

/* The engine chosen at open serves the whole chain: a fault aimed at the parent's file hits. */
Test(aio, chain_parents_use_the_callers_engine)
{
	struct vd_create_opts co = {.type = VD_TYPE_DYNAMIC, .size = MiB};
	struct vd_create_opts cc = {.type = VD_TYPE_DIFFERENCING};
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY, .engine = "fault:file=base.vhd,err=EIO"};
	char p[PATH_MAX], c[PATH_MAX];
	struct vd_disk *d;

	scratch_path(p, "base.vhd");
	scratch_path(c, "top.vhd");
	cr_assert_eq(vd_create(p, &co, &d), 0);
	vd_close(d);
	cc.parent = p;
	cr_assert_eq(vd_create(c, &cc, &d), 0, "%s", vd_errmsg(d));
	vd_close(d);
	cr_assert_eq(vd_open(c, &o, &d), -EIO, "the parent was opened with another engine");
	cr_assert(strstr(vd_errmsg(d), "base.vhd"), "%s", vd_errmsg(d));
	vd_close(d);
	o.engine = "psync";
	cr_assert_eq(vd_open(c, &o, &d), 0, "%s", vd_errmsg(d));
	vd_close(d);
}
