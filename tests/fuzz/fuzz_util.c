/*
 * Shared by the fuzz targets: the scratch directory and its parent image, VHD
 * structure builders with fixed UUIDs and times (targets must be deterministic),
 * and fz_exercise, the read-only walk whose properties hold for any image.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"

void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n==fuzz== property violated at %s:%d: %s\n==fuzz== ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

/* ---- the scratch directory ---- */

static char scratch[256];

static void remove_scratch(void)
{
	static const char *const names[] = {FZ_PARENT_NAME, "img.vhd", "child.vhd"};
	char path[512];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		fz_path(names[i], path, sizeof(path));
		unlink(path);
	}
	rmdir(scratch);
}

static void make_parent(void);

const char *fz_dir(void)
{
	const char *base = getenv("FUZZ_SCRATCH");

	if (scratch[0])
		return scratch;
	if (!base || !*base)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(scratch, sizeof(scratch), "%s/vdisk-fuzz.XXXXXX", base);
	if (!mkdtemp(scratch)) {
		fprintf(stderr, "fuzz: cannot create a scratch directory in %s: %s\n", base,
			strerror(errno));
		abort();
	}
	atexit(remove_scratch);
	/* The engine is psync whatever the environment says (vd_check_path reads it). */
	unsetenv("VDISK_ENGINE");
	make_parent();
	return scratch;
}

void fz_path(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", fz_dir(), name);
}

int fz_file_create(const char *name)
{
	char path[512];
	int fd;

	fz_path(name, path, sizeof(path));
	/* A new file, not a truncated one: ext4 flushes a file truncated to 0 on close. */
	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "fuzz: cannot create %s: %s\n", path, strerror(errno));
		abort();
	}
	return fd;
}

void fz_file_put(int fd, const void *buf, size_t len, uint64_t off)
{
	if (len && pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
		fprintf(stderr, "fuzz: cannot write the scratch image: %s\n", strerror(errno));
		abort();
	}
}

void fz_file_finish(int fd, uint64_t size)
{
	if (ftruncate(fd, (off_t)size) < 0) {
		fprintf(stderr, "fuzz: cannot size the scratch image: %s\n", strerror(errno));
		abort();
	}
	close(fd);
}

void fz_file_write(const char *name, const uint8_t *data, size_t len)
{
	int fd = fz_file_create(name);

	fz_file_put(fd, data, len, 0);
	fz_file_finish(fd, len);
}

uint32_t fz_hash(const uint8_t *data, size_t len)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ data[i]) * 16777619u;
	return h;
}

/* ---- structure builders ---- */

void fz_footer_init(struct vd_footer *f, uint32_t disk_type, uint64_t size, uint64_t data_offset)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = VD_FEATURE_RESERVED;
	f->version = VD_VHD_VERSION;
	f->data_offset = data_offset;
	f->timestamp = 0x2a000000;
	memcpy(f->creator_app, "fuzz", 4);
	f->creator_version = 0x00010000;
	f->creator_os = VD_LOC_WI2K;
	f->original_size = size;
	f->current_size = size;
	vd_chs_from_size(size, &f->cylinders, &f->heads, &f->sectors);
	f->disk_type = disk_type;
	memcpy(f->uuid, "fuzz.image.uuid.", 16);
}

void fz_dynhdr_init(struct vd_dynhdr *h, uint64_t table_offset, uint32_t entries,
		    uint32_t block_size)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->cookie, "cxsparse", 8);
	h->data_offset = VD_ALL_ONES;
	h->table_offset = table_offset;
	h->version = VD_VHD_VERSION;
	h->max_table_entries = entries;
	h->block_size = block_size;
}

void fz_dynhdr_link_parent(struct vd_dynhdr *h, uint64_t loc_offset, uint8_t loc[64],
			   uint32_t *loc_len)
{
	int n;

	memcpy(h->parent_uuid, FZ_PARENT_UUID, 16);
	h->parent_timestamp = 0;
	memset(h->parent_name, 0, sizeof(h->parent_name));
	if (vd_utf8_to_utf16(FZ_PARENT_NAME, h->parent_name, sizeof(h->parent_name), 1) < 0)
		abort();
	memset(loc, 0, 64);
	n = vd_utf8_to_utf16(".\\" FZ_PARENT_NAME, loc, 64, 0);
	if (n < 0)
		abort();
	*loc_len = (uint32_t)n;
	h->loc[0] = (struct vd_locator){VD_LOC_W2RU, VD_SECTOR, (uint32_t)n, 0, loc_offset};
}

/* The parent's bytes: never zero where allocated, so a read of the wrong layer shows. */
static uint8_t parent_byte(uint64_t off)
{
	return (uint8_t)((off * 31 + 7) | 1);
}

/* Blocks 0, 3 and 10 present, block 20 only its first 4 sectors, the rest absent. */
static void make_parent(void)
{
	static const uint32_t present[] = {0, 3, 10, 20};
	const uint32_t entries = FZ_PARENT_SIZE / FZ_PARENT_BLOCK, bs = FZ_PARENT_BLOCK;
	uint64_t data = FZ_ALIGN512(1536 + entries * 4);
	uint8_t foot[VD_FOOTER_SIZE], head[VD_DYNHDR_SIZE], bat[4 * 64], bitmap[512], block[4096];
	struct vd_footer f;
	struct vd_dynhdr h;
	int fd = fz_file_create(FZ_PARENT_NAME);

	fz_footer_init(&f, VD_TYPE_DYNAMIC, FZ_PARENT_SIZE, VD_FOOTER_SIZE);
	memcpy(f.uuid, FZ_PARENT_UUID, 16);
	vd_footer_encode(&f, foot);
	fz_dynhdr_init(&h, 1536, entries, bs);
	vd_dynhdr_encode(&h, head);
	memset(bat, 0xFF, sizeof(bat));
	for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++) {
		uint64_t at = data + i * (512 + bs);

		put_be32(bat + 4 * present[i], (uint32_t)(at / VD_SECTOR));
		memset(bitmap, 0, sizeof(bitmap));
		vd_bitmap_set_range(bitmap, 0, present[i] == 20 ? 4 : bs / VD_SECTOR);
		for (uint32_t k = 0; k < bs; k++)
			block[k] = parent_byte((uint64_t)present[i] * bs + k);
		fz_file_put(fd, bitmap, sizeof(bitmap), at);
		fz_file_put(fd, block, sizeof(block), at + 512);
	}
	fz_file_put(fd, foot, sizeof(foot), 0);
	fz_file_put(fd, head, sizeof(head), 512);
	fz_file_put(fd, bat, entries * 4, 1536);
	data += sizeof(present) / sizeof(present[0]) * (512 + bs);
	fz_file_put(fd, foot, sizeof(foot), data);
	fz_file_finish(fd, data + VD_FOOTER_SIZE);
}

/* ---- the walk ---- */

#define WALK_STEPS 48
#define SAMPLE_MAX 4096u
#define RANGE_MAX (16u * 1024)

struct walk {
	struct vd_disk *disk;
	struct vd_info info;
	uint64_t size;
	int lone_child; /* a differencing disk opened without its parent */
	const struct fz_expect *expect;
	uint32_t pick;
};

/* memcmp, not a loop: a loop of compares here would be traced for every byte. */
static int all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Where A and B first differ (they do). */
static size_t first_difference(const uint8_t *a, const uint8_t *b, size_t n)
{
	size_t lo = 0;

	while (n > 1) {
		size_t half = n / 2;

		if (memcmp(a + lo, b + lo, half) == 0)
			lo += half, n -= half;
		else
			n = half;
	}
	return lo;
}

static void check_info(struct walk *w)
{
	const struct vd_info *in = &w->info;
	int vhd;

	FZ_ASSERT(in->format && in->path && in->chain_length >= 1 && in->chain && in->chain[0],
		  "info: format %p path %p chain %d", (const void *)in->format,
		  (const void *)in->path, in->chain_length);
	vhd = strcmp(in->format, "vhd") == 0;
	FZ_ASSERT(vhd || strcmp(in->format, "raw") == 0, "info: format '%s'", in->format);
	if (!vhd)
		return;
	FZ_ASSERT(in->type == VD_TYPE_FIXED || in->type == VD_TYPE_DYNAMIC ||
			  in->type == VD_TYPE_DIFFERENCING,
		  "info: type %d", (int)in->type);
	FZ_ASSERT(in->virtual_size <= in->current_size && in->virtual_size % VD_SECTOR == 0,
		  "info: virtual size %llu, current size %llu",
		  (unsigned long long)in->virtual_size, (unsigned long long)in->current_size);
	FZ_ASSERT(in->allocated_bytes <= in->current_size, "info: allocated %llu of %llu",
		  (unsigned long long)in->allocated_bytes, (unsigned long long)in->current_size);
	if (in->type == VD_TYPE_FIXED)
		FZ_ASSERT(in->block_size == 0, "info: fixed disk with block size %u",
			  in->block_size);
	else
		FZ_ASSERT(in->block_size >= VD_MIN_BLOCK && in->block_size <= VD_MAX_BLOCK &&
				  !(in->block_size & (in->block_size - 1)),
			  "info: block size %u", in->block_size);
}

/* LEN bytes at OFF read as one call; returns the vd_pread result (BUF filled on 0). */
static int read_once(struct walk *w, uint8_t *buf, size_t len, uint64_t off)
{
	int rc = vd_pread(w->disk, buf, len, off);

	FZ_ASSERT(rc <= 0, "pread returned %d", rc);
	if (rc < 0)
		FZ_ASSERT(strcmp(vd_errmsg(w->disk), "no error") != 0,
			  "pread at %llu failed (%d) without a message", (unsigned long long)off,
			  rc);
	return rc;
}

static void compare_oracle(struct walk *w, const uint8_t *got, size_t len, uint64_t off)
{
	uint8_t *want;

	if (!w->expect || !w->expect->oracle)
		return;
	want = malloc(len);
	if (!want)
		abort();
	if (w->expect->oracle(w->expect->ctx, want, len, off) == 0 && memcmp(got, want, len)) {
		size_t i = first_difference(got, want, len);

		fz_fail(__FILE__, __LINE__, "got == want",
			"byte %llu of the disk reads 0x%02x, the image holds 0x%02x",
			(unsigned long long)(off + i), got[i], want[i]);
	}
	free(want);
}

/* What a map run of KIND promises about the bytes it covers. */
static void check_run(struct walk *w, int kind, uint64_t off, uint64_t run)
{
	size_t n = run < SAMPLE_MAX ? (size_t)run : SAMPLE_MAX;
	uint8_t *buf = malloc(n);
	int rc;

	if (!buf)
		abort();
	rc = read_once(w, buf, n, off);
	if (kind == VD_EXTENT_UNALLOCATED && w->lone_child)
		FZ_ASSERT(rc == -ENOENT,
			  "unallocated run at %llu of a child without its parent read %d "
			  "(want -ENOENT)",
			  (unsigned long long)off, rc);
	else
		FZ_ASSERT(rc == 0, "run of kind %d at %llu (%llu bytes) does not read: %d %s", kind,
			  (unsigned long long)off, (unsigned long long)run, rc, vd_errmsg(w->disk));
	if (rc == 0 && kind != VD_EXTENT_ALLOCATED)
		FZ_ASSERT(all_zero(buf, n), "run of kind %d at %llu reads non-zero bytes", kind,
			  (unsigned long long)off);
	if (rc == 0)
		compare_oracle(w, buf, n, off);
	free(buf);
}

/* Map at OFF: a kind and a run inside the disk, then what the run promises. */
static uint64_t map_at(struct walk *w, uint64_t off)
{
	uint64_t run = 0, left = w->size - off;
	int kind = vd_map(w->disk, off, left, &run);

	FZ_ASSERT(kind > 0, "map at %llu of an open image failed: %d %s", (unsigned long long)off,
		  kind, kind < 0 ? vd_errmsg(w->disk) : "");
	FZ_ASSERT(kind == VD_EXTENT_ALLOCATED || kind == VD_EXTENT_UNALLOCATED ||
			  kind == VD_EXTENT_ZERO,
		  "map kind %d", kind);
	FZ_ASSERT(run > 0 && run <= left, "map run %llu at %llu, %llu bytes left",
		  (unsigned long long)run, (unsigned long long)off, (unsigned long long)left);
	check_run(w, kind, off, run);
	return run;
}

/* One read of [OFF, OFF+LEN) equals the same range read in uneven pieces. */
static void check_pieces(struct walk *w, uint64_t off, size_t len)
{
	static const size_t sizes[] = {1, 511, 513, 4096, 700, 3};
	uint8_t *whole = malloc(len), *piece = malloc(len);
	int rc = read_once(w, whole, len, off), failed = 0;
	size_t at = 0;

	if (!whole || !piece)
		abort();
	for (unsigned i = w->pick; at < len; i++) {
		size_t n = sizes[i % 6] < len - at ? sizes[i % 6] : len - at;

		if (read_once(w, piece + at, n, off + at) < 0)
			failed = 1;
		at += n;
	}
	FZ_ASSERT(!(rc == 0 && failed), "range at %llu+%zu reads whole but not in pieces",
		  (unsigned long long)off, len);
	FZ_ASSERT(!(rc < 0 && !failed), "range at %llu+%zu reads in pieces but not whole (%d)",
		  (unsigned long long)off, len, rc);
	if (rc == 0) {
		FZ_ASSERT(memcmp(whole, piece, len) == 0,
			  "range at %llu+%zu reads differently whole and in pieces",
			  (unsigned long long)off, len);
		compare_oracle(w, whole, len, off);
	}
	free(whole);
	free(piece);
}

static void check_bounds(struct walk *w)
{
	uint8_t byte = 0;
	uint64_t run;

	FZ_ASSERT(vd_pread(w->disk, &byte, 1, w->size) == -EINVAL, "read past the end accepted");
	FZ_ASSERT(vd_pread(w->disk, &byte, 1, UINT64_MAX) == -EINVAL, "read at 2^64-1 accepted");
	FZ_ASSERT(vd_pread(w->disk, &byte, 0, w->size) == 0, "empty read at the end refused");
	FZ_ASSERT(vd_map(w->disk, w->size, 1, &run) == -EINVAL, "map past the end accepted");
	FZ_ASSERT(vd_pwrite(w->disk, &byte, 1, 0) < 0, "write to a read-only image accepted");
}

/* Offsets worth a look: both ends, the middle, one from PICK, and block boundaries. */
static void probe_offsets(struct walk *w)
{
	uint64_t bs = w->info.block_size ? w->info.block_size : 65536;
	uint64_t probes[5] = {0, w->size / 2, w->size - 1, w->pick % w->size,
			      (w->size / 3) / bs * bs};

	for (int i = 0; i < 5; i++) {
		uint64_t off = probes[i] / VD_SECTOR * VD_SECTOR;
		uint64_t start = off >= bs / 2 ? off - bs / 2 + (w->pick % 7) : off;
		size_t len;

		map_at(w, off);
		if (start >= w->size)
			start = off;
		len = w->size - start < RANGE_MAX ? (size_t)(w->size - start) : RANGE_MAX;
		check_pieces(w, start, len);
	}
}

static void walk_map(struct walk *w)
{
	uint64_t off = 0;

	for (int step = 0; step < WALK_STEPS && off < w->size; step++)
		off += map_at(w, off);
}

/* FUZZ_VERBOSE: what the library says of an input (to see what a seed reaches). */
static void report(struct walk *w, int rc, unsigned flags)
{
	struct vd_info in;

	fprintf(stderr, "fuzz: open%s: %d %s\n", (flags & VD_OPEN_NO_PARENT) ? " (no parent)" : "",
		rc, rc < 0 ? vd_errmsg(w->disk) : "");
	if (rc == 0 && vd_get_info(w->disk, &in) == 0)
		fprintf(stderr,
			"fuzz:   %s type %d, %llu bytes, blocks of %u, %llu allocated, chain %d\n",
			in.format, (int)in.type, (unsigned long long)in.virtual_size, in.block_size,
			(unsigned long long)in.allocated_bytes, in.chain_length);
	for (int i = 0; rc == 0 && i < vd_warning_count(w->disk); i++)
		fprintf(stderr, "fuzz:   warning: %s\n", vd_warning(w->disk, i));
}

int fz_exercise(const char *path, unsigned flags, uint32_t pick, const struct fz_expect *expect)
{
	struct vd_open_opts opts = {.flags = flags, .engine = "psync"};
	struct walk w = {.expect = expect, .pick = pick};
	int rc = vd_open(path, &opts, &w.disk);

	if (getenv("FUZZ_VERBOSE"))
		report(&w, rc, flags);

	if (rc < 0) {
		FZ_ASSERT(w.disk != NULL, "open failed (%d) without a handle", rc);
		FZ_ASSERT(strcmp(vd_errmsg(w.disk), "no error") != 0,
			  "open failed (%d) without a message", rc);
		vd_strerror(rc);
		vd_close(w.disk);
		return rc;
	}
	FZ_ASSERT(rc == 0, "open returned %d", rc);
	for (int i = 0; i < vd_warning_count(w.disk); i++)
		FZ_ASSERT(vd_warning(w.disk, i) != NULL, "warning %d missing", i);
	FZ_ASSERT(vd_get_info(w.disk, &w.info) == 0, "info failed: %s", vd_errmsg(w.disk));
	check_info(&w);
	w.size = w.info.virtual_size;
	w.lone_child = w.info.type == VD_TYPE_DIFFERENCING && (flags & VD_OPEN_NO_PARENT) &&
		       strcmp(w.info.format, "vhd") == 0;
	check_bounds(&w);
	if (w.size > 0) {
		walk_map(&w);
		probe_offsets(&w);
	}
	FZ_ASSERT(vd_close(w.disk) == 0, "close of a read-only image failed");
	return 0;
}

struct problems {
	int count;
};

static void on_problem(void *ctx, const struct vd_problem *p)
{
	struct problems *ps = ctx;

	FZ_ASSERT(p->field && p->message && p->message[0], "problem without field or message");
	ps->count++;
}

void fz_check(const char *path)
{
	for (int profile = VD_CHECK_DEFAULT; profile <= VD_CHECK_AZURE; profile++) {
		struct problems ps = {0};
		char *msg = NULL;
		int rc = vd_check_path(path, (enum vd_check_profile)profile, on_problem, &ps, &msg);

		if (rc >= 0)
			FZ_ASSERT(rc == ps.count, "check says %d problems, reported %d", rc,
				  ps.count);
		else
			FZ_ASSERT(ps.count == 0, "check failed (%d) after reporting", rc);
		vd_free_string(msg);
	}
}

/* ---- repair ---- */

#define SAMPLE 32768u	      /* bytes compared at each end of the disk around a repair */
#define REPAIR_MAX (4u << 20) /* files compared whole before and after */

/* The first and last bytes of the disk (without its parent); *OK says what read. */
struct sample {
	int opened;
	int ok[2];
	size_t len;
	uint8_t bytes[2][SAMPLE];
};

static void take_sample(const char *path, struct sample *s)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_NO_PARENT, .engine = "psync"};
	struct vd_info info;
	struct vd_disk *d;

	memset(s, 0, sizeof(*s));
	s->opened = vd_open(path, &opts, &d) == 0 && vd_get_info(d, &info) == 0;
	if (s->opened) {
		s->len = info.virtual_size < SAMPLE ? (size_t)info.virtual_size : SAMPLE;
		s->ok[0] = vd_pread(d, s->bytes[0], s->len, 0) == 0;
		s->ok[1] = vd_pread(d, s->bytes[1], s->len, info.virtual_size - s->len) == 0;
	}
	vd_close(d);
}

static void on_fix(void *ctx, const struct vd_problem *p)
{
	(void)ctx;
	FZ_ASSERT(p->repairable && p->field && p->message && p->message[0],
		  "a repair reported without field, message or the repairable mark");
}

/* The whole file into *DATA (malloc'd); its size, or -1 when larger than REPAIR_MAX. */
static ssize_t file_bytes(const char *path, uint8_t **data)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	off_t size = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);

	*data = NULL;
	if (fd < 0 || size < 0)
		abort();
	if (size > REPAIR_MAX) {
		close(fd);
		return -1;
	}
	*data = malloc((size_t)size + 1);
	if (!*data || pread(fd, *data, (size_t)size, 0) != size)
		abort();
	close(fd);
	return size;
}

/* The file is still exactly the SIZE bytes of DATA. */
static int unchanged(const char *path, const uint8_t *data, ssize_t size)
{
	uint8_t *now;
	ssize_t n = file_bytes(path, &now);
	int same = n == size && memcmp(now, data, (size_t)size) == 0;

	free(now);
	return same;
}

void fz_repair(const char *path)
{
	struct sample *before = malloc(sizeof(*before)), *after = malloc(sizeof(*after));
	uint8_t *data;
	ssize_t size = file_bytes(path, &data);
	char *msg = NULL;
	int fixes;

	if (!before || !after)
		abort();
	if (size < 0) { /* too large to compare whole: not repaired here */
		free(before);
		free(after);
		return;
	}
	take_sample(path, before);
	fixes = vd_repair_path(path, on_fix, NULL, &msg);
	if (fixes < 0) {
		FZ_ASSERT(msg && msg[0], "repair refused (%d) without a message", fixes);
		FZ_ASSERT(unchanged(path, data, size),
			  "repair refused (%d) but changed the file: %s", fixes, msg);
	} else {
		if (fixes == 0)
			FZ_ASSERT(unchanged(path, data, size),
				  "repair fixed nothing but changed the file");
		take_sample(path, after);
		FZ_ASSERT(!before->opened || after->opened,
			  "the image opened before repair, not after");
		for (int i = 0; i < 2 && before->opened; i++)
			FZ_ASSERT(!before->ok[i] || (after->ok[i] && after->len == before->len &&
						     memcmp(before->bytes[i], after->bytes[i],
							    before->len) == 0),
				  "repair changed what the disk reads at its %s",
				  i ? "end" : "start");
		vd_free_string(msg);
		msg = NULL;
		fixes = vd_repair_path(path, on_fix, NULL, &msg);
		FZ_ASSERT(fixes == 0, "a second repair returned %d: %s", fixes, msg ? msg : "");
	}
	vd_free_string(msg);
	free(data);
	free(before);
	free(after);
}
