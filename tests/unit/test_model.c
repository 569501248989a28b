/*
 * Model-based test: random writes, reads, flushes and reopens of a VHD checked
 * after every step against a plain in-memory copy of the disk. Fixed seeds, so
 * a failure (its message names the seed and step) reproduces exactly.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk/vdisk.h"

#define MiB (1ull << 20)
#define KiB (1ull << 10)
#define OPS 2000
#define REOPEN_EVERY 100

/* xorshift64*: small, fast and the same on every platform */
struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ull;
}

/* Uniform enough in [lo, hi] for a test. */
static uint64_t rnd_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rnd(r) % (hi - lo + 1);
}

static void rnd_fill(struct rng *r, uint8_t *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rnd(r);
		memcpy(p + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rnd(r);
		memcpy(p + i, &v, len - i);
	}
}

struct model {
	uint64_t seed;
	enum vd_disk_type type;
	uint64_t size;
	uint32_t block;
	const char *path;
	uint8_t *disk; /* the model: what every byte must read as */
	uint8_t *buf;  /* data to write */
	uint8_t *back; /* data read back */
	struct vd_disk *d;
	int step;
};

/*
 * One model a test process (Criterion forks each test), static so the suite's
 * fini can release the handle, buffers and files even after a failed assertion.
 */
static struct model the_model;
static char model_dir[PATH_MAX], model_path[PATH_MAX + 32];

static void release_model(void)
{
	if (the_model.d)
		vd_close(the_model.d);
	free(the_model.disk);
	free(the_model.buf);
	free(the_model.back);
	memset(&the_model, 0, sizeof(the_model));
	if (model_path[0])
		unlink(model_path);
	if (model_dir[0])
		rmdir(model_dir);
}

TestSuite(model, .fini = release_model);

static const char *msg(const struct vd_disk *d)
{
	const char *m = d ? vd_errmsg(d) : NULL;
	return m ? m : "(no message)";
}

static void model_open(struct model *m, unsigned flags)
{
	struct vd_open_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = flags;
	m->d = NULL;
	int rc = vd_open(m->path, &o, &m->d);
	cr_assert_eq(rc, 0, "seed %llu step %d: reopen: %d: %s", (unsigned long long)m->seed,
		     m->step, rc, msg(m->d));
}

static void model_close(struct model *m)
{
	int rc = vd_close(m->d);
	m->d = NULL;
	cr_assert_eq(rc, 0, "seed %llu step %d: close: %d", (unsigned long long)m->seed, m->step,
		     rc);
}

/* Read [off, off+len) from the disk and compare it with the model. */
static void model_check(struct model *m, uint64_t off, size_t len, const char *what)
{
	memset(m->back, 0xE5, len);
	int rc = vd_pread(m->d, m->back, len, off);
	cr_assert_eq(rc, 0, "seed %llu step %d: %s: read %zu at %llu: %d: %s",
		     (unsigned long long)m->seed, m->step, what, len, (unsigned long long)off, rc,
		     msg(m->d));
	if (memcmp(m->back, m->disk + off, len) == 0)
		return;
	size_t i = 0;
	while (m->back[i] == m->disk[off + i])
		i++;
	cr_assert_fail("seed %llu step %d (%s, size %llu, block %u): %s: byte %llu reads 0x%02x, "
		       "model has 0x%02x",
		       (unsigned long long)m->seed, m->step,
		       m->type == VD_TYPE_FIXED ? "fixed" : "dynamic", (unsigned long long)m->size,
		       m->block, what, (unsigned long long)(off + i), m->back[i], m->disk[off + i]);
}

static void model_check_all(struct model *m, const char *what)
{
	for (uint64_t off = 0; off < m->size; off += 4 * MiB) {
		size_t n = (size_t)(m->size - off < 4 * MiB ? m->size - off : 4 * MiB);
		model_check(m, off, n, what);
	}
}

/* Lengths: mostly small, some up to 64 KiB, a few up to 300 KiB. */
static size_t pick_len(struct rng *r, uint64_t size)
{
	uint64_t p = rnd(r) % 10, len;
	if (p < 5)
		len = rnd_range(r, 1, 4096);
	else if (p < 8)
		len = rnd_range(r, 1, 64 * KiB);
	else
		len = rnd_range(r, 1, 300 * KiB);
	return (size_t)(len > size ? size : len);
}

/* Offsets: uniform, or near a block boundary (where allocation edges are). */
static uint64_t pick_off(struct rng *r, const struct model *m, size_t len)
{
	uint64_t max = m->size - len, off;
	if (rnd(r) % 3 == 0) {
		uint64_t blocks = m->size / m->block;
		uint64_t b = rnd_range(r, 0, blocks) * m->block;
		uint64_t delta = rnd_range(r, 0, 1200);
		off = rnd(r) % 2 && b >= delta ? b - delta : b + delta;
	} else {
		off = rnd_range(r, 0, max);
	}
	return off > max ? max : off;
}

static void do_write(struct model *m, struct rng *r)
{
	size_t len = pick_len(r, m->size);
	uint64_t off = pick_off(r, m, len);
	int zero = rnd(r) % 4 == 0;
	if (zero)
		memset(m->buf, 0, len);
	else
		rnd_fill(r, m->buf, len);
	int rc = vd_pwrite(m->d, m->buf, len, off);
	cr_assert_eq(rc, 0, "seed %llu step %d: write %zu at %llu: %d: %s",
		     (unsigned long long)m->seed, m->step, len, (unsigned long long)off, rc,
		     msg(m->d));
	memcpy(m->disk + off, m->buf, len);
	/* read back the written range with a margin on both sides */
	uint64_t lo = off > 700 ? off - 700 : 0;
	uint64_t hi = off + len + 700 < m->size ? off + len + 700 : m->size;
	model_check(m, lo, (size_t)(hi - lo), zero ? "after a zero write" : "after a write");
}

static void do_read(struct model *m, struct rng *r)
{
	size_t len = pick_len(r, m->size);
	uint64_t off = pick_off(r, m, len);
	model_check(m, off, len, "random read");
}

/* Every UNALLOCATED or ZERO run of a dynamic or fixed disk must be zeros in the model. */
static void check_map(struct model *m)
{
	uint64_t off = 0, run;
	while (off < m->size) {
		run = 0;
		int kind = vd_map(m->d, off, m->size - off, &run);
		cr_assert(kind > 0 && run > 0 && run <= m->size - off,
			  "seed %llu: vd_map at %llu: %d run %llu: %s", (unsigned long long)m->seed,
			  (unsigned long long)off, kind, (unsigned long long)run, msg(m->d));
		if (kind != VD_EXTENT_ALLOCATED) {
			for (uint64_t i = off; i < off + run; i++)
				cr_assert_eq(m->disk[i], 0,
					     "seed %llu: byte %llu is data but vd_map says %d",
					     (unsigned long long)m->seed, (unsigned long long)i,
					     kind);
		}
		off += run;
	}
}

static void run_model(uint64_t seed, enum vd_disk_type type)
{
	static const uint32_t blocks[] = {512, 4 * KiB, 64 * KiB, 2 * MiB};
	struct model *m = &the_model;
	struct rng r = {seed * 0x9E3779B97F4A7C15ull + 1};
	m->seed = seed;
	m->type = type;
	/*
	 * Each block size twice over the eight seeds. Every new block costs the
	 * library an fdatasync, so 512-byte blocks get at most 8 MiB (16384
	 * blocks) to keep the run short; the others 1 MiB .. 64 MiB.
	 */
	m->block = blocks[seed % 4];
	m->size = rnd_range(&r, 2 * 1024, (m->block == 512 ? 16 : 128) * 1024) * 512;

	cr_log_info("seed %llu: %s disk of %llu bytes, block %u", (unsigned long long)seed,
		    type == VD_TYPE_FIXED ? "fixed" : "dynamic", (unsigned long long)m->size,
		    m->block);
	const char *base = getenv("TMPDIR");
	snprintf(model_dir, sizeof(model_dir), "%s/vdisk-model-XXXXXX",
		 base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(model_dir), "mkdtemp: %s", strerror(errno));
	snprintf(model_path, sizeof(model_path), "%s/model.vhd", model_dir);
	m->path = model_path;

	m->disk = calloc(1, m->size);
	m->buf = malloc(300 * KiB);
	m->back = malloc(4 * MiB);
	cr_assert(m->disk && m->buf && m->back);

	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "vhd";
	o.type = type;
	o.size = m->size;
	o.block_size = type == VD_TYPE_DYNAMIC ? m->block : 0;
	int rc = vd_create(m->path, &o, &m->d);
	cr_assert_eq(rc, 0, "seed %llu: create size %llu block %u: %d: %s",
		     (unsigned long long)seed, (unsigned long long)m->size, m->block, rc,
		     msg(m->d));

	for (m->step = 0; m->step < OPS; m->step++) {
		uint64_t p = rnd(&r) % 100;
		if (p < 50)
			do_write(m, &r);
		else if (p < 97)
			do_read(m, &r);
		else {
			rc = vd_flush(m->d);
			cr_assert_eq(rc, 0, "seed %llu step %d: flush: %d: %s",
				     (unsigned long long)seed, m->step, rc, msg(m->d));
		}
		if (m->step % REOPEN_EVERY == REOPEN_EVERY - 1) {
			model_close(m);
			model_open(m, VD_OPEN_RDWR);
			do_read(m, &r);
		}
	}
	model_check_all(m, "whole disk at the end");
	check_map(m);
	model_close(m);
	model_open(m, VD_OPEN_RDONLY);
	model_check_all(m, "whole disk after the last reopen");
	struct vd_info info;
	cr_assert_eq(vd_get_info(m->d, &info), 0);
	cr_assert_eq(info.virtual_size, m->size, "seed %llu", (unsigned long long)seed);
	cr_assert_eq(vd_warning_count(m->d), 0, "seed %llu: warning %s", (unsigned long long)seed,
		     vd_warning(m->d, 0));
	model_close(m);
}

#define MODEL_TESTS(seed)                                                                          \
	Test(model, dynamic_seed_##seed)                                                           \
	{                                                                                          \
		run_model(seed, VD_TYPE_DYNAMIC);                                                  \
	}                                                                                          \
	Test(model, fixed_seed_##seed)                                                             \
	{                                                                                          \
		run_model(seed, VD_TYPE_FIXED);                                                    \
	}

MODEL_TESTS(1)
MODEL_TESTS(2)
MODEL_TESTS(3)
MODEL_TESTS(4)
MODEL_TESTS(5)
MODEL_TESTS(6)
MODEL_TESTS(7)
MODEL_TESTS(8)
