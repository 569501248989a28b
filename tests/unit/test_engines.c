/*
 * The I/O engines (psync, io_uring, libaio) driven through the engine table as
 * the file layer (and later the async API) drives them: data round trips,
 * hundreds of requests in flight, short reads at the end of a file, flush as a
 * barrier, errors, the wrapping engines; then O_DIRECT through the file layer
 * and the public API with unaligned buffers, offsets and lengths.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk_int.h"

#define NREQ 256

/* A scratch directory on a disk file system: tmpfs may refuse O_DIRECT. */
static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/var/tmp/vdisk-engines.XXXXXX");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		cr_log_warn("could not remove %s", dir);
}

static void path_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", dir, name);
}

/* io_uring and libaio may be forbidden here (seccomp, sysctl): that is a skip with the reason. */
static struct vd_io_engine *start(const char *spec, const char *path)
{
	struct vd_io_engine *eng = NULL;
	char err[256] = "";
	int rc = vd_io_engine_start(spec, path, &eng, err, sizeof(err));

	if (rc < 0 && strcmp(spec, "psync") != 0)
		cr_skip_test("engine %s cannot start on this machine: %s", spec, err);
	cr_assert_eq(rc, 0, "engine %s: %s", spec, err);
	return eng;
}

struct tio {
	struct vd_io_req req;
	int id;
	int ndone; /* how many times done ran: must end at exactly 1 */
	ssize_t res;
	int *order; /* completion order log, shared by a batch */
	int *norder;
};

static void tio_done(struct vd_io_req *req, ssize_t res)
{
	struct tio *t = req->opaque;

	t->ndone++;
	t->res = res;
	if (t->order)
		t->order[(*t->norder)++] = t->id;
}

static void tio_prep(struct tio *t, int id, enum vd_io_op op, int fd, void *buf, size_t len,
		     uint64_t offset)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->req = (struct vd_io_req){.op = op, .fd = fd, .buf = buf, .len = len, .offset = offset};
	t->req.done = tio_done;
	t->req.opaque = t;
}

/* Reap until every one of the N requests has completed. */
static void reap_all(struct vd_io_engine *eng, struct tio *t, int n)
{
	for (int spins = 0; spins < 100000; spins++) {
		int pending = 0;

		for (int i = 0; i < n; i++)
			pending += t[i].ndone == 0;
		if (!pending)
			return;
		cr_assert_geq(eng->ops->reap(eng->state, 1), 0, "reap failed");
	}
	cr_assert_fail("requests never completed");
}

static int open_file(const char *name, int extra)
{
	char path[128];
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_RDWR | O_CREAT | extra, 0644);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	return fd;
}

static void fill(uint8_t *buf, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 9)) & 0xff);
}

static ssize_t run1(struct vd_io_engine *eng, enum vd_io_op op, int fd, void *buf, size_t len,
		    uint64_t offset)
{
	struct vd_io_req req = {.op = op, .fd = fd, .buf = buf, .len = len, .offset = offset};

	return vd_io_run(eng, &req);
}

/* ---- what every engine must do ---- */

static void t_rw_fsync(const char *spec)
{
	size_t len = 1u << 20;
	uint8_t *out = malloc(len), *in = calloc(1, len);
	int fd = open_file("rw", 0);
	struct vd_io_engine *eng = start(spec, "rw");

	fill(out, len, 1);
	cr_assert_eq(run1(eng, VD_IO_WRITE, fd, out, len, 12345), (ssize_t)len);
	cr_assert_eq(run1(eng, VD_IO_FSYNC, fd, NULL, 0, 0), 0, "fsync");
	cr_assert_eq(run1(eng, VD_IO_READ, fd, in, len, 12345), (ssize_t)len);
	cr_assert_eq(memcmp(in, out, len), 0, "%s: data read back differs", spec);
	vd_io_engine_stop(eng);
	close(fd);
	free(out);
	free(in);
}

/* NREQ writes, then NREQ reads, all submitted before the first reap. */
static void t_many_in_flight(const char *spec)
{
	static struct tio t[NREQ];
	uint8_t *bufs = malloc((size_t)NREQ * 4096), *back = malloc((size_t)NREQ * 4096);
	int fd = open_file("many", 0);
	struct vd_io_engine *eng = start(spec, "many");
	int got;

	for (int i = 0; i < NREQ; i++) {
		fill(bufs + (size_t)i * 4096, 4096, (unsigned)i);
		/* Scattered offsets: request i lands in slot (i * 97) % NREQ. */
		tio_prep(&t[i], i, VD_IO_WRITE, fd, bufs + (size_t)i * 4096, 4096,
			 (uint64_t)((i * 97) % NREQ) * 4096);
		cr_assert_eq(eng->ops->submit(eng->state, &t[i].req), 0);
	}
	got = eng->ops->reap(eng->state, NREQ / 2);
	cr_assert_geq(got, NREQ / 2, "reap(%d) completed only %d", NREQ / 2, got);
	reap_all(eng, t, NREQ);
	for (int i = 0; i < NREQ; i++) {
		cr_assert_eq(t[i].ndone, 1, "write %d completed %d times", i, t[i].ndone);
		cr_assert_eq(t[i].res, 4096, "write %d: %zd", i, t[i].res);
		tio_prep(&t[i], i, VD_IO_READ, fd, back + (size_t)i * 4096, 4096,
			 (uint64_t)((i * 97) % NREQ) * 4096);
		cr_assert_eq(eng->ops->submit(eng->state, &t[i].req), 0);
	}
	reap_all(eng, t, NREQ);
	for (int i = 0; i < NREQ; i++)
		cr_assert_eq(t[i].res, 4096, "read %d: %zd", i, t[i].res);
	cr_assert_eq(memcmp(bufs, back, (size_t)NREQ * 4096), 0, "%s: data differs", spec);
	cr_assert_eq(eng->ops->reap(eng->state, 1), 0, "reap with nothing in flight must return");
	vd_io_engine_stop(eng);
	close(fd);
	free(bufs);
	free(back);
}

static void t_short_read_at_eof(const char *spec)
{
	uint8_t data[10000], buf[8192];
	int fd = open_file("eof", 0);
	struct vd_io_engine *eng = start(spec, "eof");

	fill(data, sizeof(data), 3);
	cr_assert_eq(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	cr_assert_eq(run1(eng, VD_IO_READ, fd, buf, 8192, 4096), 10000 - 4096,
		     "a read across the end returns what the file holds");
	cr_assert_eq(memcmp(buf, data + 4096, 10000 - 4096), 0);
	cr_assert_eq(run1(eng, VD_IO_READ, fd, buf, 4096, 10000), 0, "a read at the end: 0");
	cr_assert_eq(run1(eng, VD_IO_READ, fd, buf, 4096, 1 << 20), 0, "a read past the end: 0");
	vd_io_engine_stop(eng);
	close(fd);
}

/* A flush completes after everything submitted before it, and before anything after it. */
static void t_flush_is_a_barrier(const char *spec)
{
	enum { N = 64 };
	static struct tio t[N + 2];
	static uint8_t buf[N + 1][4096];
	int order[N + 2], norder = 0, fd = open_file("barrier", 0), flush_at = -1;
	struct vd_io_engine *eng = start(spec, "barrier");

	for (int i = 0; i <= N + 1; i++) {
		if (i == N)
			tio_prep(&t[i], i, VD_IO_FSYNC, fd, NULL, 0, 0);
		else
			tio_prep(&t[i], i, VD_IO_WRITE, fd, buf[i < N ? i : N], 4096,
				 (uint64_t)i * 4096);
		t[i].order = order;
		t[i].norder = &norder;
		cr_assert_eq(eng->ops->submit(eng->state, &t[i].req), 0);
	}
	reap_all(eng, t, N + 2);
	for (int i = 0; i < norder; i++)
		if (order[i] == N)
			flush_at = i;
	cr_assert_eq(norder, N + 2);
	cr_assert_eq(t[N].res, 0, "fsync: %zd", t[N].res);
	cr_assert_eq(flush_at, N, "the flush completed at position %d, not after the %d writes",
		     flush_at, N);
	cr_assert_eq(order[N + 1], N + 1, "the write after the flush completed before it");
	vd_io_engine_stop(eng);
	close(fd);
}

/* A failing request reports -errno to its callback; the engine keeps working. */
static void t_error_completes(const char *spec)
{
	uint8_t buf[4096];
	char path[128];
	struct vd_io_engine *eng = start(spec, "err");
	int ro;

	close(open_file("err", 0));
	path_in(path, sizeof(path), "err");
	ro = open(path, O_RDONLY);
	cr_assert_eq(run1(eng, VD_IO_WRITE, ro, buf, sizeof(buf), 0), -EBADF,
		     "a write on a read-only descriptor");
	cr_assert_eq(run1(eng, VD_IO_READ, ro, buf, sizeof(buf), 0), 0, "the engine still works");
	vd_io_engine_stop(eng);
	close(ro);
}

/* fault: and crash: take this engine as inner=. */
static void t_wrapped(const char *spec)
{
	char fspec[128], cspec[256], log[128];
	uint8_t buf[4096] = {1};
	int fd = open_file("wrap", 0);
	struct vd_io_engine *probe = start(spec, "wrap"), *eng;
	struct stat st;

	vd_io_engine_stop(probe);
	snprintf(fspec, sizeof(fspec), "fault:nth=2,op=write,err=ENOSPC,inner=%s", spec);
	eng = start(fspec, "wrap");
	cr_assert_eq(run1(eng, VD_IO_WRITE, fd, buf, sizeof(buf), 0), 4096);
	cr_assert_eq(run1(eng, VD_IO_WRITE, fd, buf, sizeof(buf), 0), -ENOSPC, "2nd write fails");
	cr_assert_eq(run1(eng, VD_IO_WRITE, fd, buf, sizeof(buf), 0), 4096);
	vd_io_engine_stop(eng);
	path_in(log, sizeof(log), "crash.log");
	snprintf(cspec, sizeof(cspec), "crash:log=%s,inner=%s", log, spec);
	eng = start(cspec, "wrap");
	cr_assert_eq(run1(eng, VD_IO_WRITE, fd, buf, sizeof(buf), 8192), 4096);
	cr_assert_eq(run1(eng, VD_IO_FSYNC, fd, NULL, 0, 0), 0);
	vd_io_engine_stop(eng);
	cr_assert_eq(stat(log, &st), 0);
	cr_assert_gt(st.st_size, 4096, "the crash log holds the write");
	close(fd);
}

/* The whole library on this engine: create, unaligned writes, reopen with psync. */
static void t_public_api(const char *spec)
{
	struct vd_create_opts co = {.type = VD_TYPE_DYNAMIC, .size = 16u << 20, .engine = spec};
	struct vd_open_opts oo = {.flags = VD_OPEN_RDONLY, .engine = "psync"};
	uint8_t *model = calloc(1, co.size), *back = malloc(co.size);
	struct vd_disk *d;
	char path[128];

	vd_io_engine_stop(start(spec, "probe")); /* skip where the engine cannot start */
	path_in(path, sizeof(path), "api.vhd");
	cr_assert_eq(vd_create(path, &co, &d), 0, "%s", vd_errmsg(d));
	for (unsigned i = 0; i < 40; i++) {
		uint64_t off = ((uint64_t)i * 2654435761u) % (co.size - 70000);
		size_t len = 1 + (i * 7919) % 65536;

		fill(model + off, len, i);
		cr_assert_eq(vd_pwrite(d, model + off, len, off), 0, "%s", vd_errmsg(d));
	}
	cr_assert_eq(vd_close(d), 0);
	cr_assert_eq(vd_open(path, &oo, &d), 0, "%s", vd_errmsg(d));
	cr_assert_eq(vd_pread(d, back, co.size, 0), 0, "%s", vd_errmsg(d));
	cr_assert_eq(memcmp(back, model, co.size), 0, "%s: the disk differs from the model", spec);
	vd_close(d);
	free(model);
	free(back);
}

#define ENGINE_TESTS(suite, spec)                                                                  \
	Test(suite, rw_fsync, .init = setup, .fini = teardown)                                     \
	{                                                                                          \
		t_rw_fsync(spec);                                                                  \
	}                                                                                          \
	Test(suite, many_in_flight, .init = setup, .fini = teardown)                               \
	{                                                                                          \
		t_many_in_flight(spec);                                                            \
	}                                                                                          \
	Test(suite, short_read_at_eof, .init = setup, .fini = teardown)                            \
	{                                                                                          \
		t_short_read_at_eof(spec);                                                         \
	}                                                                                          \
	Test(suite, flush_is_a_barrier, .init = setup, .fini = teardown)                           \
	{                                                                                          \
		t_flush_is_a_barrier(spec);                                                        \
	}                                                                                          \
	Test(suite, error_completes, .init = setup, .fini = teardown)                              \
	{                                                                                          \
		t_error_completes(spec);                                                           \
	}                                                                                          \
	Test(suite, wrapped_by_fault_and_crash, .init = setup, .fini = teardown)                   \
	{                                                                                          \
		t_wrapped(spec);                                                                   \
	}                                                                                          \
	Test(suite, public_api, .init = setup, .fini = teardown)                                   \
	{                                                                                          \
		t_public_api(spec);                                                                \
	}

ENGINE_TESTS(psync, "psync")
ENGINE_TESTS(io_uring, "io_uring")
ENGINE_TESTS(libaio, "libaio")

/* ---- choosing an engine ---- */

Test(engines, auto_picks_the_best_that_starts, .init = setup, .fini = teardown)
{
	struct vd_io_engine *eng = NULL, *u = NULL;
	char err[256];
	int have_uring = vd_io_engine_start("io_uring", "x", &u, err, sizeof(err)) == 0;

	vd_io_engine_stop(u);
	cr_assert_eq(vd_io_engine_start("auto", "x", &eng, err, sizeof(err)), 0, "%s", err);
	if (have_uring)
		cr_assert_str_eq(eng->ops->name, "io_uring");
	else
		cr_assert(strcmp(eng->ops->name, "libaio") == 0 ||
			  strcmp(eng->ops->name, "psync") == 0);
	vd_io_engine_stop(eng);
}

Test(engines, bad_spec_says_why)
{
	struct vd_io_engine *eng = NULL;
	char err[256] = "";

	cr_assert_eq(vd_io_engine_start("io_uring:depth=0", "x", &eng, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "depth"), "message: %s", err);
	cr_assert_eq(vd_io_engine_start("libaio:depth=99999", "x", &eng, err, sizeof(err)),
		     -EINVAL);
	cr_assert_not_null(strstr(err, "libaio"), "message: %s", err);
	cr_assert_eq(vd_io_engine_start("uring", "x", &eng, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "io_uring"), "the message lists the engines: %s", err);
}

/* ---- O_DIRECT ---- */

/* An O_DIRECT descriptor, or a skip when this file system refuses direct I/O. */
static int open_direct(const char *name)
{
	char path[128];
	void *probe = aligned_alloc(4096, 4096);
	int fd;

	path_in(path, sizeof(path), name);
	fd = open(path, O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (fd < 0 && errno == EINVAL)
		cr_skip_test("%s refuses O_DIRECT (tmpfs before Linux 6.6?)", dir);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	if (pread(fd, probe, 4096, 0) < 0 && errno == EINVAL)
		cr_skip_test("%s refuses O_DIRECT reads", dir);
	free(probe);
	return fd;
}

/*
 * The file layer with O_DIRECT: unaligned buffers, offsets and lengths, writes
 * that extend a file to a size that is not a multiple of 4 KiB, reads of that
 * tail, all checked against a model and a buffered reader.
 */
static void direct_file_layer(const char *spec)
{
	enum { SIZE = 3 << 20 };
	uint8_t *model = calloc(1, SIZE), *back = malloc(SIZE + 1), *src = malloc(SIZE + 1);
	struct vd_file f = {.fd = open_direct("direct"), .path = "direct", .direct = 1};
	uint64_t end = 0;
	char path[128];
	int plain;

	f.eng = start(spec, "direct");
	fill(src, SIZE + 1, 9);
	for (unsigned i = 0; i < 300; i++) {
		uint64_t off = ((uint64_t)i * 2654435761u) % (SIZE - 300000);
		size_t len = i % 5 == 0 ? 4096 : 1 + (i * 7919) % 300000;
		const uint8_t *from = src + (i % 3); /* odd buffer addresses */

		if (i % 7 == 0)
			off = end; /* append: the file end moves to unaligned sizes */
		if (off + len > SIZE)
			len = SIZE - off;
		memcpy(model + off, from, len);
		cr_assert_eq(vd_file_pwrite(&f, from, len, off), 0, "write %u at %llu+%zu", i,
			     (unsigned long long)off, len);
		end = off + len > end ? off + len : end;
		cr_assert_eq(f.size, end);
	}
	cr_assert_eq(vd_file_sync(&f), 0);
	path_in(path, sizeof(path), "direct");
	plain = open(path, O_RDONLY);
	cr_assert_eq(pread(plain, back, end, 0), (ssize_t)end, "a buffered reader sees the file");
	cr_assert_eq(memcmp(back, model, end), 0, "a buffered reader sees other bytes");
	for (unsigned i = 0; i < 100; i++) {
		uint64_t off = ((uint64_t)i * 40503u * 97) % end;
		size_t len = 1 + (i * 104729) % (size_t)(end - off);

		cr_assert_eq(vd_file_pread(&f, back + 1, len, off), 0, "read at %llu+%zu",
			     (unsigned long long)off, len);
		cr_assert_eq(memcmp(back + 1, model + off, len), 0, "read at %llu+%zu differs",
			     (unsigned long long)off, len);
	}
	cr_assert_eq(vd_file_pread(&f, back, 10, end - 5), -EIO, "a read past the end");
	cr_assert_eq(fcntl(f.fd, F_GETFL) & O_DIRECT, O_DIRECT, "still O_DIRECT afterwards");
	vd_io_engine_stop(f.eng);
	close(f.fd);
	close(plain);
	free(model);
	free(back);
	free(src);
}

Test(direct, file_layer_psync, .init = setup, .fini = teardown)
{
	direct_file_layer("psync");
}

Test(direct, file_layer_io_uring, .init = setup, .fini = teardown)
{
	direct_file_layer("io_uring");
}

Test(direct, file_layer_libaio, .init = setup, .fini = teardown)
{
	direct_file_layer("libaio");
}

/* VD_OPEN_DIRECT on a dynamic VHD: what a user writes unaligned reads back, also buffered. */
static void direct_vhd(const char *spec)
{
	struct vd_create_opts co = {.type = VD_TYPE_DYNAMIC, .size = 32u << 20};
	struct vd_open_opts oo = {.flags = VD_OPEN_RDWR | VD_OPEN_DIRECT, .engine = spec};
	uint8_t *model = calloc(1, co.size), *back = malloc(co.size + 1);
	struct vd_disk *d;
	char path[128];
	int rc;

	close(open_direct("probe"));
	vd_io_engine_stop(start(spec, "probe"));
	path_in(path, sizeof(path), "d.vhd");
	cr_assert_eq(vd_create(path, &co, &d), 0, "%s", vd_errmsg(d));
	vd_close(d);
	rc = vd_open(path, &oo, &d);
	cr_assert_eq(rc, 0, "%s", vd_errmsg(d));
	for (unsigned i = 0; i < 60; i++) {
		uint64_t off = ((uint64_t)i * 2654435761u) % (co.size - 200000);
		size_t len = 1 + (i * 7919) % 200000;

		fill(back + 1, len, i);
		memcpy(model + off, back + 1, len);
		cr_assert_eq(vd_pwrite(d, back + 1, len, off), 0, "%s", vd_errmsg(d));
		if (i % 10 == 9)
			cr_assert_eq(vd_flush(d), 0, "%s", vd_errmsg(d));
	}
	cr_assert_eq(vd_pread(d, back + 1, co.size, 0), 0, "%s", vd_errmsg(d));
	cr_assert_eq(memcmp(back + 1, model, co.size), 0, "O_DIRECT reads differ from the model");
	cr_assert_eq(vd_close(d), 0);
	oo.flags = VD_OPEN_RDONLY;
	oo.engine = "psync";
	cr_assert_eq(vd_open(path, &oo, &d), 0, "%s", vd_errmsg(d));
	cr_assert_eq(vd_pread(d, back, co.size, 0), 0, "%s", vd_errmsg(d));
	cr_assert_eq(memcmp(back, model, co.size), 0, "buffered reads differ from the model");
	vd_close(d);
	free(model);
	free(back);
}

Test(direct, vhd_psync, .init = setup, .fini = teardown)
{
	direct_vhd("psync");
}

Test(direct, vhd_io_uring, .init = setup, .fini = teardown)
{
	direct_vhd("io_uring");
}

Test(direct, vhd_libaio, .init = setup, .fini = teardown)
{
	direct_vhd("libaio");
}

/* Where O_DIRECT is refused, vd_open fails and names the file system (no silent fallback). */
Test(direct, refused_names_the_file_system)
{
	const char *shm = "/dev/shm/vdisk-direct-probe.raw";
	struct vd_open_opts oo = {.flags = VD_OPEN_RDONLY | VD_OPEN_DIRECT, .format = "raw"};
	struct vd_disk *d;
	int fd = open(shm, O_RDWR | O_CREAT | O_TRUNC, 0644), rc;

	if (fd < 0)
		cr_skip_test("no /dev/shm here (%s)", strerror(errno));
	cr_assert_eq(ftruncate(fd, 1 << 20), 0);
	close(fd);
	fd = open(shm, O_RDONLY | O_DIRECT);
	if (fd >= 0) {
		close(fd);
		unlink(shm);
		cr_skip_test(
			"tmpfs accepts O_DIRECT on this kernel (Linux >= 6.6): nothing to refuse");
	}
	rc = vd_open(shm, &oo, &d);
	unlink(shm);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_not_null(strstr(vd_errmsg(d), "tmpfs"), "message: %s", vd_errmsg(d));
	vd_close(d);
}
