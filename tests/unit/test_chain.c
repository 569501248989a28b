/*
 * Differencing disks and chains through the public API, on temporary directories.
 * Oracles: a plain in-memory model of every level (a level's state is its parent's
 * state overlaid with the writes made to that level), the paths and UUIDs the test
 * itself created, and docs/VHD-FORMAT.md sections 2, 3 and 5 for the fields read
 * and edited by hand in the files (parent UUID, parent name, locators, checksums).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vdisk/vdisk.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define SECTOR 512u

/* ---- temporary directory and the resources a test holds ---------------- */

static char tmp_dir[PATH_MAX];

/*
 * Buffers and handles a test holds, released by the suite's fini even after a
 * failed assertion, so LeakSanitizer reports only the library's own leaks.
 */
#define MAX_HELD 64
static void *held_mem[MAX_HELD];
static struct vd_disk *held_disk[MAX_HELD];

static void make_tmp_dir(void)
{
	char made[PATH_MAX];
	const char *base = getenv("TMPDIR");
	snprintf(made, sizeof(made), "%s/vdisk-chain-XXXXXX", base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(made), "mkdtemp %s: %s", made, strerror(errno));
	/* the canonical path, so the paths the library resolves compare as strings */
	cr_assert_not_null(realpath(made, tmp_dir), "realpath %s: %s", made, strerror(errno));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tmp_dir(void)
{
	for (int i = 0; i < MAX_HELD; i++) {
		if (held_disk[i])
			vd_close(held_disk[i]);
		free(held_mem[i]);
		held_disk[i] = NULL;
		held_mem[i] = NULL;
	}
	if (tmp_dir[0])
		nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(chain, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 120);

static void *hold(void *p)
{
	cr_assert_not_null(p, "out of memory");
	for (int i = 0; i < MAX_HELD; i++)
		if (!held_mem[i])
			return held_mem[i] = p;
	cr_assert_fail("more than %d buffers held", MAX_HELD);
	return NULL;
}

static void release(void *p)
{
	for (int i = 0; i < MAX_HELD; i++)
		if (held_mem[i] == p)
			held_mem[i] = NULL;
	free(p);
}

static void hold_disk(struct vd_disk *d)
{
	for (int i = 0; d && i < MAX_HELD; i++)
		if (!held_disk[i]) {
			held_disk[i] = d;
			return;
		}
}

static int release_disk(struct vd_disk *d)
{
	for (int i = 0; i < MAX_HELD; i++)
		if (held_disk[i] == d)
			held_disk[i] = NULL;
	return vd_close(d);
}

/* A path under the test's directory; a few stay valid at once (rotating buffers). */
static const char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tpath(const char *fmt, ...)
{
	static char paths[16][PATH_MAX + 300];
	static unsigned next;
	char *p = paths[next++ % 16];
	char name[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(p, sizeof(paths[0]), "%s/%s", tmp_dir, name);
	return p;
}

static void make_dir(const char *path)
{
	cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s: %s", path, strerror(errno));
}

static void rename_path(const char *from, const char *to)
{
	cr_assert_eq(rename(from, to), 0, "rename %s -> %s: %s", from, to, strerror(errno));
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* ---- the library, with every failure reported ---------------------------- */

static const char *errmsg(const struct vd_disk *d)
{
	const char *m = d ? vd_errmsg(d) : NULL;
	return m ? m : "(no message)";
}

static struct vd_create_opts base_opts(enum vd_disk_type type, uint64_t size, uint32_t block)
{
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "vhd";
	o.type = type;
	o.size = size;
	o.block_size = type == VD_TYPE_DYNAMIC ? block : 0;
	return o;
}

static struct vd_disk *create_base(const char *path, enum vd_disk_type type, uint64_t size,
				   uint32_t block)
{
	struct vd_create_opts o = base_opts(type, size, block);
	struct vd_disk *d = NULL;
	int rc = vd_create(path, &o, &d);
	hold_disk(d);
	cr_assert_eq(rc, 0, "vd_create %s (%s, size %llu, block %u): %d %s: %s", path,
		     type == VD_TYPE_FIXED ? "fixed" : "dynamic", (unsigned long long)size, block,
		     rc, strerror(-rc), errmsg(d));
	return d;
}

/* vd_create of a differencing disk; returns the code, the handle held in *dp. */
static int try_create_child(const char *path, const char *parent, uint32_t block,
			    struct vd_disk **dp)
{
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "vhd";
	o.type = VD_TYPE_DIFFERENCING;
	o.parent = parent;
	o.block_size = block;
	*dp = NULL;
	int rc = vd_create(path, &o, dp);
	hold_disk(*dp);
	return rc;
}

static struct vd_disk *create_child(const char *path, const char *parent, uint32_t block)
{
	struct vd_disk *d;
	int rc = try_create_child(path, parent, block, &d);
	cr_assert_eq(rc, 0, "vd_create differencing %s on %s (block %u): %d %s: %s", path, parent,
		     block, rc, strerror(-rc), errmsg(d));
	return d;
}

static int try_open(const char *path, unsigned flags, struct vd_disk **dp)
{
	struct vd_open_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = flags;
	*dp = NULL;
	int rc = vd_open(path, &o, dp);
	hold_disk(*dp);
	return rc;
}

static struct vd_disk *open_disk(const char *path, unsigned flags)
{
	struct vd_disk *d;
	int rc = try_open(path, flags, &d);
	cr_assert_eq(rc, 0, "vd_open %s (flags 0x%x): %d %s: %s", path, flags, rc, strerror(-rc),
		     errmsg(d));
	return d;
}

static void close_disk(struct vd_disk *d)
{
	int rc = release_disk(d);
	cr_assert_eq(rc, 0, "vd_close: %d %s", rc, strerror(-rc));
}

/* A handle that failed to open: its message, then close it. */
static void drop_failed(struct vd_disk *d)
{
	if (d)
		release_disk(d);
}

static struct vd_info get_info(struct vd_disk *d)
{
	struct vd_info info;
	memset(&info, 0, sizeof(info));
	int rc = vd_get_info(d, &info);
	cr_assert_eq(rc, 0, "vd_get_info: %d: %s", rc, errmsg(d));
	return info;
}

static void disk_write(struct vd_disk *d, const void *buf, size_t len, uint64_t off,
		       const char *what)
{
	int rc = vd_pwrite(d, buf, len, off);
	cr_assert_eq(rc, 0, "%s: vd_pwrite %zu at %llu: %d: %s", what, len, (unsigned long long)off,
		     rc, errmsg(d));
}

static void disk_read(struct vd_disk *d, void *buf, size_t len, uint64_t off, const char *what)
{
	int rc = vd_pread(d, buf, len, off);
	cr_assert_eq(rc, 0, "%s: vd_pread %zu at %llu: %d: %s", what, len, (unsigned long long)off,
		     rc, errmsg(d));
}

static void compare_disk(struct vd_disk *d, const uint8_t *model, uint64_t size, const char *what)
{
	/* one read of the whole disk, as a guest's dd would do */
	uint8_t *all = hold(malloc(size));
	memset(all, 0xE5, size);
	disk_read(d, all, size, 0, what);
	if (memcmp(all, model, size)) {
		size_t i = 0;
		while (all[i] == model[i])
			i++;
		cr_assert_fail("%s: byte %zu reads 0x%02x, the model has 0x%02x", what, i, all[i],
			       model[i]);
	}
	release(all);
}

static void same_path(const char *got, const char *want, const char *what)
{
	char a[PATH_MAX], b[PATH_MAX];
	cr_assert_not_null(got, "%s: no path (wanted %s)", what, want);
	cr_assert_not_null(realpath(got, a), "%s: %s does not exist: %s", what, got,
			   strerror(errno));
	cr_assert_not_null(realpath(want, b), "%s: %s: %s", what, want, strerror(errno));
	cr_assert_str_eq(a, b, "%s: %s is not %s", what, got, want);
}

/* CHAIN (leaf first) must be exactly PATHS[0..n). */
static void expect_chain(struct vd_disk *d, const char *const *paths, int n, const char *what)
{
	struct vd_info info = get_info(d);
	cr_assert_eq(info.chain_length, n, "%s: chain of %d images, wanted %d", what,
		     info.chain_length, n);
	cr_assert_not_null(info.chain, "%s: no chain list", what);
	for (int i = 0; i < n; i++) {
		char label[128];
		snprintf(label, sizeof(label), "%s: chain[%d]", what, i);
		same_path(info.chain[i], paths[i], label);
	}
	if (n > 1)
		same_path(info.parent, paths[1], what);
	else
		cr_assert_null(info.parent, "%s: a lone image has parent %s", what, info.parent);
}

/* ---- data: a reproducible generator ------------------------------------- */

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

static uint64_t rnd_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rnd(r) % (hi - lo + 1);
}

/* Bytes that are never zero, so a lost write or a zero-filled hole shows. */
static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (uint8_t)(seed >> 56) | 1;
	}
}

/* ---- the files, read and edited by hand (VHD-FORMAT.md 2 and 3) ---------- */

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t field)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < field || i >= field + 4)
			sum += buf[i];
	return ~sum;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	ssize_t got = pread(fd, buf, len, (off_t)off);
	close(fd);
	cr_assert_eq(got, (ssize_t)len, "pread %s at %llu: %zd", path, (unsigned long long)off,
		     got);
}

static void file_write(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	ssize_t put = pwrite(fd, buf, len, (off_t)off);
	close(fd);
	cr_assert_eq(put, (ssize_t)len, "pwrite %s at %llu: %zd", path, (unsigned long long)off,
		     put);
}

/* The end footer of PATH (VHD-FORMAT.md 2). */
static void read_footer(const char *path, uint8_t footer[512])
{
	uint64_t size = file_size(path);
	cr_assert_geq(size, 512u, "%s is too small for a VHD", path);
	file_read(path, size - 512, footer, 512);
	cr_assert_eq(memcmp(footer, "conectix", 8), 0, "%s: no footer cookie at the end", path);
	cr_assert_eq(get_be(footer + 64, 4), vhd_checksum(footer, 512, 64), "%s: footer checksum",
		     path);
}

static void footer_uuid(const char *path, uint8_t uuid[16])
{
	uint8_t f[512];
	read_footer(path, f);
	memcpy(uuid, f + 68, 16);
}

/* The dynamic header of a dynamic or differencing PATH and its offset. */
static uint64_t read_header(const char *path, uint8_t h[1024])
{
	uint8_t f[512];
	read_footer(path, f);
	uint64_t at = get_be(f + 16, 8);
	cr_assert_leq(at + 1024, file_size(path), "%s: header offset %llu", path,
		      (unsigned long long)at);
	file_read(path, at, h, 1024);
	cr_assert_eq(memcmp(h, "cxsparse", 8), 0, "%s: header cookie", path);
	cr_assert_eq(get_be(h + 36, 4), vhd_checksum(h, 1024, 36), "%s: header checksum", path);
	return at;
}

/* Rewrite the header at AT with a fresh checksum, as a hex editor plus care would. */
static void write_header(const char *path, uint64_t at, uint8_t h[1024])
{
	put_be32(h + 36, vhd_checksum(h, 1024, 36));
	file_write(path, at, h, 1024);
}

/* Point the differencing disk PATH at a parent of UUID (header bytes 40..55). */
static void set_parent_uuid_raw(const char *path, const uint8_t uuid[16])
{
	uint8_t h[1024];
	uint64_t at = read_header(path, h);
	memcpy(h + 40, uuid, 16);
	write_header(path, at, h);
}

/* A locator's path as ASCII (UTF-16LE, or UTF-8 for MacX); "" if none of CODE. */
static void locator_path(const uint8_t h[1024], const char *path, const char *code, char *out,
			 size_t outlen)
{
	out[0] = 0;
	for (int i = 0; i < 8; i++) {
		const uint8_t *e = h + 576 + 24 * i;
		if (memcmp(e, code, 4))
			continue;
		uint32_t len = (uint32_t)get_be(e + 8, 4);
		uint64_t off = get_be(e + 16, 8);
		cr_assert(len > 0 && len < 4096, "%s: locator %s length %u", path, code, len);
		uint8_t raw[4096];
		file_read(path, off, raw, len);
		size_t n = 0;
		if (!memcmp(code, "MacX", 4)) {
			for (uint32_t k = 0; k < len && raw[k] && n + 1 < outlen; k++)
				out[n++] = (char)raw[k];
		} else {
			for (uint32_t k = 0; k + 1 < len && n + 1 < outlen; k += 2) {
				if (!raw[k] && !raw[k + 1])
					break;
				cr_assert_eq(raw[k + 1], 0, "%s: %s is not UTF-16LE ASCII", path,
					     code);
				out[n++] = (char)raw[k];
			}
		}
		out[n] = 0;
		return;
	}
}

/* ---- a chain and its model ------------------------------------------------ */

struct level {
	char path[PATH_MAX + 64];
	enum vd_disk_type type;
	uint32_t block;
	uint8_t *state; /* what every byte of this level's disk reads as */
	uint8_t *own;	/* per sector: 1 when a write to this level touched it */
};

#define MAX_LEVELS 10

static const char *type_name(enum vd_disk_type t)
{
	return t == VD_TYPE_FIXED ? "fixed" : t == VD_TYPE_DYNAMIC ? "dynamic" : "differencing";
}

/* Write LEN bytes (zeros when ZERO) at OFF into level L through D, model included. */
static void level_write(struct vd_disk *d, struct level *l, uint64_t off, size_t len, uint8_t *buf,
			uint64_t seed, int zero, const char *what)
{
	if (zero)
		memset(buf, 0, len);
	else
		fill_pattern(buf, len, seed);
	disk_write(d, buf, len, off, what);
	memcpy(l->state + off, buf, len);
	for (uint64_t s = off / SECTOR; s <= (off + len - 1) / SECTOR; s++)
		l->own[s] = 1;
}

/* ---- differencing disks on each kind of parent ---------------------------- */

/*
 * Create CHILD on PARENT (whose content is MODEL, SIZE bytes) and check what a
 * child must be: type, size, parent path, chain, parent UUID, parent name and the
 * three locators as the file stores them, and the parent's bytes on every read.
 */
static void check_new_child(const char *child, const char *const *chain, int n,
			    const uint8_t *model, uint64_t size, uint32_t parent_block)
{
	const char *parent = chain[1];
	uint8_t puuid[16];
	footer_uuid(parent, puuid);

	struct vd_disk *d = create_child(child, parent, 0);
	for (int pass = 0; pass < 2; pass++) {
		const char *when = pass ? "after reopen" : "as created";
		struct vd_info info = get_info(d);
		cr_assert_eq(info.type, VD_TYPE_DIFFERENCING, "%s: type %d", when, info.type);
		cr_assert_str_eq(info.format, "vhd");
		cr_assert_eq(info.virtual_size, size, "%s: the size comes from the parent (%llu)",
			     when, (unsigned long long)info.virtual_size);
		cr_assert(info.block_size == parent_block || info.block_size == 2 * MiB,
			  "%s: block %u: a child inherits its parent's block size (%u) or uses 2 "
			  "MiB",
			  when, info.block_size, parent_block);
		cr_assert_arr_eq(info.parent_uuid, puuid, 16,
				 "%s: parent_uuid is not the "
				 "parent's footer UUID",
				 when);
		cr_assert(memcmp(info.uuid, puuid, 16) != 0, "%s: the child reuses the UUID", when);
		cr_assert_eq(vd_warning_count(d), 0, "%s: warning %s", when, vd_warning(d, 0));
		expect_chain(d, chain, n, when);
		compare_disk(d, model, size, when);
		close_disk(d);
		d = open_disk(child, VD_OPEN_RDONLY);
	}
	close_disk(d);

	/* the file as the spec lays it out (VHD-FORMAT.md 2, 3) */
	uint8_t f[512], h[1024];
	read_footer(child, f);
	cr_assert_eq(get_be(f + 60, 4), 4u, "footer disk type of a differencing disk");
	cr_assert_eq(get_be(f + 48, 8), size, "footer current size");
	uint8_t first[512];
	file_read(child, 0, first, 512);
	cr_assert_arr_eq(first, f, 512, "the footer copy at 0 differs from the end footer");
	read_header(child, h);
	cr_assert_arr_eq(h + 40, puuid, 16, "header parent UUID");
	/* parent name: UTF-16BE, the parent's file name */
	const char *base = strrchr(parent, '/') + 1;
	char name[256];
	size_t k = 0;
	for (; k < 255 && (h[64 + 2 * k] || h[65 + 2 * k]); k++) {
		cr_assert_eq(h[64 + 2 * k], 0, "parent name is not UTF-16BE ASCII");
		name[k] = (char)h[65 + 2 * k];
	}
	name[k] = 0;
	cr_assert(!strcmp(name, base) || !strcmp(name, parent),
		  "parent name '%s': wanted the parent's file name %s", name, base);
	char w2ru[PATH_MAX], w2ku[PATH_MAX], macx[PATH_MAX], want[PATH_MAX + 16];
	locator_path(h, child, "W2ru", w2ru, sizeof(w2ru));
	locator_path(h, child, "W2ku", w2ku, sizeof(w2ku));
	locator_path(h, child, "MacX", macx, sizeof(macx));
	snprintf(want, sizeof(want), ".\\%s", base);
	cr_assert_str_eq(w2ru, want, "W2ru locator (relative, backslashes)");
	/* W2ku: the absolute path; Windows form or the POSIX one, each ends in the name */
	cr_assert(strlen(w2ku) > strlen(base) && (w2ku[0] == '/' || w2ku[1] == ':') &&
			  !strcmp(w2ku + strlen(w2ku) - strlen(base), base),
		  "W2ku locator '%s' is not an absolute path to %s", w2ku, base);
	cr_assert_eq(strncmp(macx, "file://", 7), 0, "MacX locator '%s' is not a file URL", macx);
	cr_assert(strstr(macx, base) != NULL, "MacX locator '%s' does not name %s", macx, base);
}

static uint8_t *fill_base(struct vd_disk *d, uint64_t size, uint64_t seed)
{
	uint8_t *model = hold(calloc(1, size));
	/* data in some places, zeros in others: both must show through the child */
	for (uint64_t off = 0; off < size; off += 192 * KiB) {
		size_t n = (size_t)(size - off < 64 * KiB ? size - off : 64 * KiB);
		fill_pattern(model + off, n, seed + off);
		disk_write(d, model + off, n, off, "parent data");
	}
	return model;
}

Test(chain, child_of_fixed)
{
	const uint64_t size = 3 * MiB + 7 * SECTOR;
	const char *parent = tpath("fixed.vhd"), *child = tpath("child.vhd");
	struct vd_disk *p = create_base(parent, VD_TYPE_FIXED, size, 0);
	uint8_t *model = fill_base(p, size, 1);
	close_disk(p);
	const char *chain[] = {child, parent};
	check_new_child(child, chain, 2, model, size, 0);
}

Test(chain, child_of_dynamic)
{
	const uint64_t size = 5 * MiB + 3 * SECTOR;
	const char *parent = tpath("dynamic.vhd"), *child = tpath("child.vhd");
	struct vd_disk *p = create_base(parent, VD_TYPE_DYNAMIC, size, 512 * KiB);
	uint8_t *model = fill_base(p, size, 2);
	close_disk(p);
	const char *chain[] = {child, parent};
	check_new_child(child, chain, 2, model, size, 512 * KiB);
}

Test(chain, child_of_differencing)
{
	const uint64_t size = 4 * MiB;
	const char *base = tpath("base.vhd"), *mid = tpath("mid.vhd"), *leaf = tpath("leaf.vhd");
	struct vd_disk *p = create_base(base, VD_TYPE_DYNAMIC, size, 64 * KiB);
	uint8_t *model = fill_base(p, size, 3);
	close_disk(p);
	struct vd_disk *m = create_child(mid, base, 0);
	uint8_t buf[3000];
	fill_pattern(buf, sizeof(buf), 33);
	disk_write(m, buf, sizeof(buf), 1 * MiB + 77, "mid data");
	memcpy(model + 1 * MiB + 77, buf, sizeof(buf));
	uint32_t mid_block = get_info(m).block_size;
	close_disk(m);
	const char *chain[] = {leaf, mid, base};
	check_new_child(leaf, chain, 3, model, size, mid_block);
}

Test(chain, child_on_missing_parent_refused_without_leaving_a_file)
{
	const char *child = tpath("orphan.vhd");
	struct vd_disk *d;
	int rc = try_create_child(child, tpath("nothing-here.vhd"), 0, &d);
	cr_assert_eq(rc, -ENOENT, "differencing on a missing parent: %d (%s)", rc, errmsg(d));
	cr_assert_not_null(strstr(errmsg(d), "nothing-here.vhd"), "message: %s", errmsg(d));
	drop_failed(d);
	cr_assert(!file_exists(child), "a failed create left %s behind", child);
}

/* ---- random chains against the model --------------------------------------- */

/* Lengths: mostly small, some to 64 KiB, a few to 300 KiB; small on tiny blocks. */
static size_t pick_len(struct rng *r, uint64_t size, uint32_t base_block, int is_base)
{
	uint64_t p = rnd(r) % 10, len;
	if (is_base && base_block <= 4 * KiB) /* every new block costs the library a sync */
		len = rnd_range(r, 1, 8 * KiB);
	else if (p < 5)
		len = rnd_range(r, 1, 4096);
	else if (p < 8)
		len = rnd_range(r, 1, 64 * KiB);
	else
		len = rnd_range(r, 1, 300 * KiB);
	return (size_t)(len > size ? size : len);
}

/* Offsets: uniform, or near a boundary of the base's or a child's (2 MiB) blocks. */
static uint64_t pick_off(struct rng *r, uint64_t size, uint32_t block, size_t len)
{
	uint64_t max = size - len, off;
	uint64_t p = rnd(r) % 3;
	if (p == 0) {
		uint64_t b = rnd_range(r, 0, size / block) * block;
		uint64_t delta = rnd_range(r, 0, 1200);
		off = rnd(r) % 2 && b >= delta ? b - delta : b + delta;
	} else if (p == 1) {
		uint64_t b = rnd_range(r, 0, size / (2 * MiB)) * 2 * MiB;
		uint64_t delta = rnd_range(r, 0, 700);
		off = rnd(r) % 2 && b >= delta ? b - delta : b + delta;
	} else {
		off = rnd_range(r, 0, max);
	}
	return off > max ? max : off;
}

struct chain_run {
	uint64_t seed;
	int depth; /* differencing levels on the base */
	uint64_t size;
	struct level lv[MAX_LEVELS];
	uint8_t *buf;
};

/*
 * What vd_map must say of sector S of level I: ALLOCATED where a differencing level
 * at or below I wrote (at sector granularity), or inside a block of a dynamic base
 * that was written (a dynamic disk allocates whole blocks, every bit set);
 * UNALLOCATED elsewhere. A fixed base stores every sector: -1, no exact answer.
 */
static int expected_kind(const struct chain_run *c, int i, uint64_t s)
{
	for (int k = 1; k <= i; k++)
		if (c->lv[k].own[s])
			return VD_EXTENT_ALLOCATED;
	if (c->lv[0].type == VD_TYPE_FIXED)
		return -1;
	uint64_t spb = c->lv[0].block / SECTOR, first = s / spb * spb;
	for (uint64_t t = first; t < first + spb && t < c->size / SECTOR; t++)
		if (c->lv[0].own[t])
			return VD_EXTENT_ALLOCATED;
	return VD_EXTENT_UNALLOCATED;
}

static void check_chain_map(const struct chain_run *c, int i, struct vd_disk *d)
{
	const struct level *l = &c->lv[i];
	uint64_t off = 0, run;
	while (off < c->size) {
		run = 0;
		int kind = vd_map(d, off, c->size - off, &run);
		cr_assert(kind > 0 && run > 0 && run <= c->size - off,
			  "seed %llu level %d: vd_map at %llu: %d run %llu: %s",
			  (unsigned long long)c->seed, i, (unsigned long long)off, kind,
			  (unsigned long long)run, errmsg(d));
		cr_assert(off % SECTOR == 0 && run % SECTOR == 0,
			  "seed %llu level %d: run %llu+%llu is not whole sectors",
			  (unsigned long long)c->seed, i, (unsigned long long)off,
			  (unsigned long long)run);
		for (uint64_t s = off / SECTOR; s < (off + run) / SECTOR; s++) {
			int want = expected_kind(c, i, s);
			if (want > 0)
				cr_assert_eq(
					kind, want,
					"seed %llu level %d (%s base): sector %llu maps as %d, "
					"wanted %d (%s)",
					(unsigned long long)c->seed, i, type_name(c->lv[0].type),
					(unsigned long long)s, kind, want,
					want == VD_EXTENT_ALLOCATED ? "a level wrote it"
								    : "no level wrote it");
			if (kind != VD_EXTENT_ALLOCATED)
				for (uint64_t b = s * SECTOR; b < (s + 1) * SECTOR; b++)
					cr_assert_eq(l->state[b], 0,
						     "seed %llu level %d: byte %llu is data but "
						     "vd_map says %d",
						     (unsigned long long)c->seed, i,
						     (unsigned long long)b, kind);
		}
		off += run;
	}
}

static void chain_check_level(struct chain_run *c, int i, const char *when)
{
	char what[200];
	snprintf(what, sizeof(what), "seed %llu depth %d: level %d (%s, block %u) %s",
		 (unsigned long long)c->seed, c->depth, i, type_name(c->lv[i].type), c->lv[i].block,
		 when);
	struct vd_disk *d = open_disk(c->lv[i].path, VD_OPEN_RDONLY);
	compare_disk(d, c->lv[i].state, c->size, what);
	const char *paths[MAX_LEVELS];
	for (int k = 0; k <= i; k++)
		paths[k] = c->lv[i - k].path;
	expect_chain(d, paths, i + 1, what);
	check_chain_map(c, i, d);
	close_disk(d);
}

static void chain_writes(struct chain_run *c, struct rng *r, struct vd_disk *d, int i, int n)
{
	struct level *l = &c->lv[i];
	char what[200];
	for (int w = 0; w < n; w++) {
		size_t len = pick_len(r, c->size, c->lv[0].block, i == 0);
		uint64_t off =
			pick_off(r, c->size, c->lv[0].block ? c->lv[0].block : 64 * KiB, len);
		int zero = rnd(r) % 5 == 0;
		snprintf(what, sizeof(what),
			 "seed %llu depth %d: level %d write %d (%zu bytes at %llu%s)",
			 (unsigned long long)c->seed, c->depth, i, w, len, (unsigned long long)off,
			 zero ? ", zeros" : "");
		level_write(d, l, off, len, c->buf, rnd(r), zero, what);
		compare_disk(d, l->state, c->size, what);
	}
}

static void run_chain(uint64_t seed, int depth)
{
	static const uint32_t blocks[] = {512, 4 * KiB, 64 * KiB, 512 * KiB, 2 * MiB};
	struct chain_run *c = hold(calloc(1, sizeof(*c)));
	struct rng r = {seed * 0x9E3779B97F4A7C15ull + 7};
	c->seed = seed;
	c->depth = depth;
	c->buf = hold(malloc(300 * KiB));

	struct level *b = &c->lv[0];
	b->type = rnd(&r) % 2 ? VD_TYPE_DYNAMIC : VD_TYPE_FIXED;
	b->block = b->type == VD_TYPE_DYNAMIC ? blocks[rnd(&r) % 5] : 0;
	/* 512-byte blocks: at most 1 MiB (2048 blocks); the rest up to 5 MiB, unaligned */
	uint64_t max_sectors = b->block == 512 ? 2048 : 10240;
	c->size = rnd_range(&r, 1024, max_sectors) * SECTOR;
	cr_log_info("seed %llu: %s base of %llu bytes, block %u, %d levels on it",
		    (unsigned long long)seed, type_name(b->type), (unsigned long long)c->size,
		    b->block, depth);

	for (int i = 0; i <= depth; i++) {
		struct level *l = &c->lv[i];
		snprintf(l->path, sizeof(l->path), "%s/level%d.vhd", tmp_dir, i);
		l->state = hold(calloc(1, c->size));
		l->own = hold(calloc(1, c->size / SECTOR));
		struct vd_disk *d;
		if (i == 0) {
			d = create_base(l->path, b->type, c->size, b->block);
		} else {
			memcpy(l->state, c->lv[i - 1].state, c->size);
			uint32_t want = rnd(&r) % 2 ? 2 * MiB : 0; /* explicit 2 MiB, or inherit */
			d = create_child(l->path, c->lv[i - 1].path, want);
			struct vd_info info = get_info(d);
			l->type = VD_TYPE_DIFFERENCING;
			l->block = info.block_size;
			cr_assert(want ? l->block == want
				       : l->block == (c->lv[i - 1].block ? c->lv[i - 1].block
									 : 2 * MiB) ||
						  l->block == 2 * MiB,
				  "seed %llu level %d: block %u (asked %u, parent %u)",
				  (unsigned long long)seed, i, l->block, want, c->lv[i - 1].block);
			char what[100];
			snprintf(what, sizeof(what), "seed %llu: new level %d",
				 (unsigned long long)seed, i);
			compare_disk(d, l->state, c->size, what);
		}
		chain_writes(c, &r, d, i, i == 0 ? 6 : 10);
		close_disk(d);
		chain_check_level(c, i, "after close and reopen");
	}

	/* every level kept its own state while the levels above it were written */
	for (int i = 0; i <= depth; i++)
		chain_check_level(c, i, "with the whole chain built");

	/* more writes to the leaf, reopened read-write: still nothing below changes */
	struct vd_disk *d = open_disk(c->lv[depth].path, VD_OPEN_RDWR);
	chain_writes(c, &r, d, depth, 5);
	close_disk(d);
	for (int i = 0; i <= depth; i++)
		chain_check_level(c, i, "after more writes to the leaf");
}

#define CHAIN_TEST(seed, depth)                                                                    \
	Test(chain, random_chain_depth_##depth##_seed_##seed)                                      \
	{                                                                                          \
		run_chain(seed, depth);                                                            \
	}

CHAIN_TEST(1, 1)
CHAIN_TEST(2, 2)
CHAIN_TEST(3, 3)
CHAIN_TEST(4, 4)
CHAIN_TEST(5, 5)
CHAIN_TEST(6, 6)
CHAIN_TEST(7, 7)
CHAIN_TEST(8, 8)
CHAIN_TEST(9, 1)
CHAIN_TEST(10, 3)
CHAIN_TEST(11, 8)
CHAIN_TEST(12, 5)

/* ---- partial sectors and blocks: the parent's bytes stay around a child's write ---- */

Test(chain, partial_sector_writes_keep_parent_bytes)
{
	const uint64_t size = 6 * MiB;
	const char *base = tpath("base.vhd"), *child = tpath("child.vhd");
	struct vd_disk *p = create_base(base, VD_TYPE_FIXED, size, 0);
	uint8_t *model = hold(malloc(size));
	fill_pattern(model, size, 11); /* every byte of the parent is data */
	disk_write(p, model, size, 0, "parent");
	close_disk(p);

	static const struct {
		uint64_t off;
		size_t len;
	} ops[] = {
		{1000, 1},		      /* inside one sector */
		{511, 2},		      /* across a sector boundary */
		{4 * KiB + 1, 510},	      /* a sector less its first and last byte */
		{2 * MiB - 1, 1},	      /* last byte of the child's first block */
		{2 * MiB - 3, 6},	      /* across the child's block boundary */
		{3 * MiB + 77, 100},	      /* a block the child never touched */
		{3 * MiB + 600, 5},	      /* the same block, another sector */
		{3 * MiB + 100, 300},	      /* rewrite part of the sector written above */
		{size - 513, 513},	      /* up to the last byte */
		{5 * MiB - 700, 2 * KiB + 3}, /* several sectors, partial at both ends */
	};
	uint8_t buf[4096], back[8192];
	struct vd_disk *d = create_child(child, base, 0);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		char what[100];
		snprintf(what, sizeof(what), "write %zu (%zu bytes at %llu)", i, ops[i].len,
			 (unsigned long long)ops[i].off);
		fill_pattern(buf, ops[i].len, 100 + i);
		disk_write(d, buf, ops[i].len, ops[i].off, what);
		memcpy(model + ops[i].off, buf, ops[i].len);
		/* the sectors around it, then the whole disk */
		uint64_t lo = ops[i].off / SECTOR * SECTOR;
		lo = lo >= SECTOR ? lo - SECTOR : 0;
		uint64_t hi = (ops[i].off + ops[i].len + 2 * SECTOR - 1) / SECTOR * SECTOR;
		hi = hi > size ? size : hi;
		memset(back, 0xE5, sizeof(back));
		disk_read(d, back, (size_t)(hi - lo), lo, what);
		cr_assert_arr_eq(back, model + lo, (size_t)(hi - lo),
				 "%s: the parent's bytes around it are not kept", what);
		compare_disk(d, model, size, what);
	}
	close_disk(d);
	d = open_disk(child, VD_OPEN_RDONLY);
	compare_disk(d, model, size, "after reopen");
	close_disk(d);
	/* the parent is untouched */
	fill_pattern(model, size, 11);
	d = open_disk(base, VD_OPEN_RDONLY);
	compare_disk(d, model, size, "the parent after the child's writes");
	close_disk(d);
}

/* ---- vd_map on a chain, at sector granularity ----------------------------- */

static int sector_in(const uint8_t *own, uint64_t s)
{
	return own[s] != 0;
}

Test(chain, map_is_allocated_exactly_where_a_level_wrote)
{
	const uint64_t size = 4 * MiB + 5 * SECTOR;
	const uint32_t block = 64 * KiB;
	uint64_t sectors = size / SECTOR;
	uint8_t *own = hold(calloc(1, sectors));
	uint8_t *model = hold(calloc(1, size));
	uint8_t buf[200 * 1024];
	struct rng r = {12345};
	const char *paths[4];
	for (int i = 0; i < 4; i++)
		paths[i] = tpath("map%d.vhd", i);

	/* the base: whole blocks, so every level's writes are sector-exact */
	struct vd_disk *d = create_base(paths[0], VD_TYPE_DYNAMIC, size, block);
	static const uint64_t base_blocks[] = {0, 5, 17, 64};
	for (size_t i = 0; i < sizeof(base_blocks) / sizeof(base_blocks[0]); i++) {
		uint64_t off = base_blocks[i] * block;
		size_t len = (size_t)(off + block > size ? size - off : block);
		fill_pattern(buf, len, i + 1);
		disk_write(d, buf, len, off, "base block");
		memcpy(model + off, buf, len);
		memset(own + off / SECTOR, 1, len / SECTOR);
	}
	close_disk(d);

	/* three children, each with unaligned writes of random lengths */
	for (int level = 1; level < 4; level++) {
		d = create_child(paths[level], paths[level - 1], 0);
		for (int w = 0; w < 12; w++) {
			size_t len = (size_t)rnd_range(&r, 1, w % 3 ? 3000 : sizeof(buf));
			uint64_t off = rnd_range(&r, 0, size - len);
			fill_pattern(buf, len, rnd(&r));
			disk_write(d, buf, len, off, "child write");
			memcpy(model + off, buf, len);
			memset(own + off / SECTOR, 1, (off + len - 1) / SECTOR - off / SECTOR + 1);
		}
		compare_disk(d, model, size, "child");
		close_disk(d);
	}

	/* the leaf's map, run by run, against the sectors written */
	d = open_disk(paths[3], VD_OPEN_RDONLY);
	uint64_t off = 0, run;
	int runs = 0;
	while (off < size) {
		int kind = vd_map(d, off, size - off, &run);
		cr_assert(kind > 0 && run > 0 && run <= size - off && run % SECTOR == 0,
			  "vd_map at %llu: %d run %llu: %s", (unsigned long long)off, kind,
			  (unsigned long long)run, errmsg(d));
		for (uint64_t s = off / SECTOR; s < (off + run) / SECTOR; s++)
			cr_assert_eq(kind,
				     sector_in(own, s) ? VD_EXTENT_ALLOCATED
						       : VD_EXTENT_UNALLOCATED,
				     "sector %llu (in run %llu+%llu) maps as %d but was %s",
				     (unsigned long long)s, (unsigned long long)off,
				     (unsigned long long)run, kind,
				     sector_in(own, s) ? "written" : "never written");
		off += run;
		runs++;
	}
	/* a query inside a run answers for at most the length asked */
	for (int i = 0; i < 200; i++) {
		uint64_t s = rnd_range(&r, 0, sectors - 1), len = rnd_range(&r, 1, 9) * SECTOR;
		if (s * SECTOR + len > size)
			len = size - s * SECTOR;
		int kind = vd_map(d, s * SECTOR, len, &run);
		cr_assert_eq(kind, sector_in(own, s) ? VD_EXTENT_ALLOCATED : VD_EXTENT_UNALLOCATED,
			     "vd_map of sector %llu alone", (unsigned long long)s);
		cr_assert(run > 0 && run <= len, "run %llu for a query of %llu",
			  (unsigned long long)run, (unsigned long long)len);
	}
	cr_log_info("%d runs", runs);
	compare_disk(d, model, size, "leaf");
	close_disk(d);
}

/* ---- locating the parent: moves, renames, set-parent ------------------------ */

/* A base and two levels in DIR, with data at each level; returns the leaf's model. */
static uint8_t *make_small_chain(const char *dir, uint64_t size, const char *names[3])
{
	uint8_t *model = hold(calloc(1, size));
	uint8_t buf[5000];
	char path[3][PATH_MAX + 64];
	for (int i = 0; i < 3; i++)
		snprintf(path[i], sizeof(path[i]), "%s/%s", dir, names[i]);
	struct vd_disk *d = create_base(path[0], VD_TYPE_DYNAMIC, size, 256 * KiB);
	for (int i = 0; i < 3; i++) {
		if (i)
			d = create_child(path[i], path[i - 1], 0);
		uint64_t off = (uint64_t)i * 700 * KiB + 333 * (uint64_t)(i + 1);
		fill_pattern(buf, sizeof(buf), 77 + i);
		disk_write(d, buf, sizeof(buf), off, "chain data");
		memcpy(model + off, buf, sizeof(buf));
		close_disk(d);
	}
	return model;
}

static const char *chain_names[3] = {"base.vhd", "mid.avhd", "leaf.avhd"};

Test(chain, moving_the_chain_directory_keeps_it_openable)
{
	const uint64_t size = 3 * MiB;
	const char *from = tpath("vm"), *parent_dir = tpath("moved"),
		   *to = tpath("moved/deeper-vm");
	make_dir(from);
	uint8_t *model = make_small_chain(from, size, chain_names);
	make_dir(parent_dir);
	rename_path(from, to); /* the absolute locators now name files that are gone */
	cr_assert(!file_exists(from));

	const char *paths[3];
	for (int i = 0; i < 3; i++)
		paths[2 - i] = tpath("moved/deeper-vm/%s", chain_names[i]);
	struct vd_disk *d = open_disk(paths[0], VD_OPEN_RDONLY);
	expect_chain(d, paths, 3, "the moved chain");
	compare_disk(d, model, size, "the moved chain");
	cr_assert_eq(vd_warning_count(d), 0, "warning: %s", vd_warning(d, 0));
	close_disk(d);
	d = open_disk(paths[0], VD_OPEN_RDWR);
	uint8_t b[3] = {1, 2, 3};
	disk_write(d, b, 3, 12345, "the moved leaf");
	memcpy(model + 12345, b, 3);
	close_disk(d);
	d = open_disk(paths[0], VD_OPEN_RDONLY);
	compare_disk(d, model, size, "the moved chain written");
	close_disk(d);
}

/*
 * The child moves one directory deeper and the parent is renamed: the relative
 * locator, the absolute one and the parent name beside the child all miss.
 */
Test(chain, renamed_parent_is_enoent_listing_every_path_tried)
{
	const uint64_t size = 2 * MiB;
	make_dir(tpath("p"));
	make_dir(tpath("c"));
	make_dir(tpath("e"));
	const char *base = tpath("p/base.vhd"), *child = tpath("c/child.vhd");
	struct vd_disk *d = create_base(base, VD_TYPE_DYNAMIC, size, 0);
	close_disk(d);
	d = create_child(child, base, 0);
	close_disk(d);
	rename_path(tpath("c"), tpath("e/c"));
	rename_path(base, tpath("p/renamed.vhd"));

	int rc = try_open(tpath("e/c/child.vhd"), VD_OPEN_RDONLY, &d);
	const char *m = errmsg(d);
	cr_assert_eq(rc, -ENOENT, "open with the parent gone: %d %s: %s", rc, strerror(-rc), m);
	cr_log_info("message: %s", m);
	/* W2ku and MacX: the absolute path where the parent was */
	cr_assert_not_null(strstr(m, tpath("p/base.vhd")), "the absolute path is not listed: %s",
			   m);
	/* W2ru: ..\p\base.vhd from the child's new directory, normalised or not */
	cr_assert(strstr(m, tpath("e/p/base.vhd")) || strstr(m, tpath("e/c/../p/base.vhd")),
		  "the relative locator's path (%s) is not listed: %s", tpath("e/p/base.vhd"), m);
	/* the parent name beside the child */
	cr_assert_not_null(strstr(m, tpath("e/c/base.vhd")),
			   "the parent name beside the child (%s) is not listed: %s",
			   tpath("e/c/base.vhd"), m);
	drop_failed(d);
}

Test(chain, set_parent_relinks_a_renamed_parent)
{
	const uint64_t size = 3 * MiB;
	uint8_t *model = make_small_chain(tmp_dir, size, chain_names);
	const char *base = tpath("base.vhd"), *mid = tpath("mid.avhd"), *leaf = tpath("leaf.avhd");
	const char *renamed = tpath("renamed-base.vhd");
	rename_path(base, renamed);
	struct vd_disk *d;
	int rc = try_open(leaf, VD_OPEN_RDONLY, &d);
	cr_assert_eq(rc, -ENOENT, "the parent's parent is gone: %d: %s", rc, errmsg(d));
	drop_failed(d);

	char *msg = NULL;
	rc = vd_set_parent(mid, renamed, &msg);
	cr_assert_eq(rc, 0, "vd_set_parent: %d: %s", rc, msg ? msg : "(no message)");
	vd_free_string(msg);

	d = open_disk(leaf, VD_OPEN_RDONLY);
	const char *paths[] = {leaf, mid, renamed};
	expect_chain(d, paths, 3, "after set-parent");
	compare_disk(d, model, size, "after set-parent");
	cr_assert_eq(vd_warning_count(d), 0, "warning after set-parent: %s", vd_warning(d, 0));
	close_disk(d);

	/* the new locators are relative too: the directory can move again */
	make_dir(tpath("away"));
	const char *names[] = {"renamed-base.vhd", "mid.avhd", "leaf.avhd"};
	for (int i = 0; i < 3; i++)
		rename_path(tpath("%s", names[i]), tpath("away/%s", names[i]));
	const char *moved[] = {tpath("away/leaf.avhd"), tpath("away/mid.avhd"),
			       tpath("away/renamed-base.vhd")};
	d = open_disk(moved[0], VD_OPEN_RDONLY);
	expect_chain(d, moved, 3, "moved after set-parent");
	compare_disk(d, model, size, "moved after set-parent");
	close_disk(d);
}

Test(chain, set_parent_to_a_copy_with_the_same_uuid)
{
	const uint64_t size = 3 * MiB;
	uint8_t *model = make_small_chain(tmp_dir, size, chain_names);
	const char *base = tpath("base.vhd"), *copy = tpath("copy-of-base.vhd");
	uint64_t n = file_size(base);
	uint8_t *bytes = hold(malloc(n));
	file_read(base, 0, bytes, n);
	int fd = open(copy, O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, bytes, n), (ssize_t)n);
	close(fd);

	char *msg = NULL;
	int rc = vd_set_parent(tpath("mid.avhd"), copy, &msg);
	cr_assert_eq(rc, 0, "vd_set_parent to a copy: %d: %s", rc, msg ? msg : "(no message)");
	vd_free_string(msg);
	cr_assert_eq(unlink(base), 0);
	struct vd_disk *d = open_disk(tpath("leaf.avhd"), VD_OPEN_RDONLY);
	const char *paths[] = {tpath("leaf.avhd"), tpath("mid.avhd"), copy};
	expect_chain(d, paths, 3, "on the copy");
	compare_disk(d, model, size, "on the copy");
	close_disk(d);
}

Test(chain, set_parent_refuses_a_disk_of_another_uuid)
{
	const uint64_t size = 3 * MiB;
	uint8_t *model = make_small_chain(tmp_dir, size, chain_names);
	const char *mid = tpath("mid.avhd"), *other = tpath("other.vhd");
	struct vd_disk *d = create_base(other, VD_TYPE_DYNAMIC, size, 256 * KiB);
	close_disk(d);
	uint64_t n = file_size(mid);
	uint8_t *before = hold(malloc(n)), *after = hold(malloc(n));
	file_read(mid, 0, before, n);

	char *msg = NULL;
	int rc = vd_set_parent(mid, other, &msg);
	cr_assert_lt(rc, 0, "set-parent to a disk of another UUID was accepted");
	cr_assert(msg && strcasestr(msg, "uuid"), "the message should name the UUID mismatch: %s",
		  msg ? msg : "(none)");
	vd_free_string(msg);
	cr_assert_eq(file_size(mid), n, "a refused set-parent changed the child's size");
	file_read(mid, 0, after, n);
	cr_assert(memcmp(before, after, n) == 0, "a refused set-parent changed the child");

	d = open_disk(tpath("leaf.avhd"), VD_OPEN_RDONLY);
	compare_disk(d, model, size, "after a refused set-parent");
	close_disk(d);
}

/* ---- writing a parent ------------------------------------------------------ */

Test(chain, opening_a_parent_for_writing_is_busy_unless_forced)
{
	const uint64_t size = 3 * MiB;
	make_small_chain(tmp_dir, size, chain_names);
	const char *parents[] = {tpath("base.vhd"), tpath("mid.avhd")};
	for (int i = 0; i < 2; i++) {
		struct vd_disk *d;
		int rc = try_open(parents[i], VD_OPEN_RDWR, &d);
		cr_assert_eq(rc, -EBUSY, "%s has a child: open for writing gave %d (%s)",
			     parents[i], rc, errmsg(d));
		cr_assert(*errmsg(d), "no message for the refusal");
		cr_log_info("refusal: %s", errmsg(d));
		drop_failed(d);
		close_disk(open_disk(parents[i], VD_OPEN_RDONLY));
		d = open_disk(parents[i], VD_OPEN_RDWR | VD_OPEN_FORCE);
		close_disk(d);
	}
	/* the leaf has no child */
	close_disk(open_disk(tpath("leaf.avhd"), VD_OPEN_RDWR));
	/* once the child is gone its parent is writable again */
	cr_assert_eq(unlink(tpath("leaf.avhd")), 0);
	close_disk(open_disk(tpath("mid.avhd"), VD_OPEN_RDWR));
}

/* ---- a missing parent, opened on purpose ------------------------------------ */

Test(chain, no_parent_flag_opens_an_orphan)
{
	const uint64_t size = 2 * MiB;
	const char *base = tpath("base.vhd"), *child = tpath("child.vhd");
	struct vd_disk *d = create_base(base, VD_TYPE_DYNAMIC, size, 0);
	uint8_t data[4096], back[4096];
	fill_pattern(data, sizeof(data), 5);
	disk_write(d, data, sizeof(data), 0, "parent data");
	close_disk(d);
	uint8_t puuid[16];
	footer_uuid(base, puuid);
	d = create_child(child, base, 0);
	fill_pattern(data, sizeof(data), 6);
	disk_write(d, data, sizeof(data), 64 * KiB, "child data");
	close_disk(d);
	cr_assert_eq(unlink(base), 0);

	int rc = try_open(child, VD_OPEN_RDONLY, &d);
	cr_assert_eq(rc, -ENOENT, "the parent is gone: %d: %s", rc, errmsg(d));
	drop_failed(d);

	d = open_disk(child, VD_OPEN_RDONLY | VD_OPEN_NO_PARENT);
	struct vd_info info = get_info(d);
	cr_assert_eq(info.type, VD_TYPE_DIFFERENCING);
	cr_assert_eq(info.virtual_size, size);
	cr_assert_arr_eq(info.parent_uuid, puuid, 16, "parent_uuid of the orphan");
	cr_assert_null(info.parent, "no parent was opened, yet parent is %s", info.parent);
	/* what the child holds reads; what it would take from the parent does not */
	disk_read(d, back, sizeof(back), 64 * KiB, "the child's own data");
	cr_assert_arr_eq(back, data, sizeof(data));
	rc = vd_pread(d, back, 512, 0);
	cr_assert_eq(rc, -ENOENT, "a read of the parent's data without the parent: %d", rc);
	rc = vd_pread(d, back, 1024, 64 * KiB - 512);
	cr_assert_eq(rc, -ENOENT, "a read half in the parent's data: %d", rc);
	close_disk(d);
}

/* ---- damaged links: UUID mismatch, time stamp, loops, depth ------------------ */

static void uuid_text(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

/* The header: a parent whose UUID differs from the child's record is -EUCLEAN, naming both. */
Test(chain, parent_uuid_mismatch_is_an_error)
{
	const uint64_t size = 3 * MiB;
	make_small_chain(tmp_dir, size, chain_names);
	uint8_t wrong[16], real[16];
	char wrong_text[37], real_text[37];
	memset(wrong, 0x5A, sizeof(wrong));
	footer_uuid(tpath("base.vhd"), real);
	uuid_text(wrong, wrong_text);
	uuid_text(real, real_text);
	set_parent_uuid_raw(tpath("mid.avhd"), wrong);
	struct vd_disk *d;
	int rc = try_open(tpath("leaf.avhd"), VD_OPEN_RDONLY, &d);
	cr_assert_eq(rc, -EUCLEAN, "a parent whose UUID is not the one recorded: %d (%s)", rc,
		     errmsg(d));
	cr_assert(strcasestr(errmsg(d), wrong_text) && strcasestr(errmsg(d), real_text),
		  "the message should name both UUIDs (%s recorded, %s found): %s", wrong_text,
		  real_text, errmsg(d));
	drop_failed(d);
}

Test(chain, parent_time_stamp_mismatch_is_a_warning)
{
	const uint64_t size = 3 * MiB;
	uint8_t *model = make_small_chain(tmp_dir, size, chain_names);
	const char *mid = tpath("mid.avhd");
	struct vd_disk *d = open_disk(tpath("leaf.avhd"), VD_OPEN_RDONLY);
	cr_assert_eq(vd_warning_count(d), 0, "warning on a fresh chain: %s", vd_warning(d, 0));
	close_disk(d);
	uint8_t h[1024];
	uint64_t at = read_header(mid, h);
	uint32_t ts = (uint32_t)get_be(h + 56, 4);
	put_be32(h + 56, ts ^ 0x00F0F0F0u); /* months away from the real one */
	write_header(mid, at, h);

	d = open_disk(tpath("leaf.avhd"), VD_OPEN_RDONLY);
	int n = vd_warning_count(d), found = 0;
	for (int i = 0; i < n; i++) {
		cr_log_info("warning: %s", vd_warning(d, i));
		found |= strcasestr(vd_warning(d, i), "time") != NULL;
	}
	cr_assert(found, "no warning about the parent time stamp (%d warnings)", n);
	compare_disk(d, model, size, "with a time stamp mismatch");
	close_disk(d);

	/* set-parent records the parent's time stamp anew: the warning is gone */
	char *m = NULL;
	int rc = vd_set_parent(mid, tpath("base.vhd"), &m);
	cr_assert_eq(rc, 0, "vd_set_parent: %d: %s", rc, m ? m : "(no message)");
	vd_free_string(m);
	d = open_disk(tpath("leaf.avhd"), VD_OPEN_RDONLY);
	cr_assert_eq(vd_warning_count(d), 0, "after set-parent: %s", vd_warning(d, 0));
	compare_disk(d, model, size, "after set-parent");
	close_disk(d);
}

/*
 * A loop, made as a careless copy would make it: the disk named as the parent is
 * the child itself, or the child's child. UUIDs are edited so that every link
 * passes the UUID check; only loop detection can stop the walk.
 */
Test(chain, a_child_that_is_its_own_parent_is_an_error)
{
	const char *base = tpath("base.vhd"), *child = tpath("child.vhd");
	struct vd_disk *d = create_base(base, VD_TYPE_DYNAMIC, MiB, 0);
	close_disk(d);
	d = create_child(child, base, 0);
	close_disk(d);
	uint8_t uuid[16];
	footer_uuid(child, uuid);
	set_parent_uuid_raw(child, uuid);
	cr_assert_eq(unlink(base), 0);
	rename_path(child, base); /* base.vhd: a differencing disk whose parent is base.vhd */

	int rc = try_open(base, VD_OPEN_RDONLY, &d);
	cr_assert_eq(rc, -ELOOP, "a disk that is its own parent: %d (%s)", rc, errmsg(d));
	cr_log_info("self loop: %d: %s", rc, errmsg(d));
	cr_assert(strcasestr(errmsg(d), "loop"), "the message should say the chain loops: %s",
		  errmsg(d));
	drop_failed(d);
	rc = try_create_child(tpath("on-loop.vhd"), base, 0, &d);
	cr_assert_lt(rc, 0, "a child of a looping disk was created");
	drop_failed(d);
	cr_assert(!file_exists(tpath("on-loop.vhd")));
}

Test(chain, a_two_disk_loop_is_an_error)
{
	const char *x = tpath("x.vhd"), *a = tpath("a.vhd"), *b = tpath("b.vhd");
	struct vd_disk *d = create_base(x, VD_TYPE_DYNAMIC, MiB, 0);
	close_disk(d);
	d = create_child(a, x, 0); /* a -> x.vhd */
	close_disk(d);
	d = create_child(b, a, 0); /* b -> a.vhd */
	close_disk(d);
	uint8_t ub[16];
	footer_uuid(b, ub);
	set_parent_uuid_raw(a, ub);
	cr_assert_eq(unlink(x), 0);
	rename_path(b, x); /* now x.vhd (was b) -> a.vhd -> x.vhd: A -> B -> A */

	for (int i = 0; i < 2; i++) {
		const char *start = i ? a : x;
		int rc = try_open(start, VD_OPEN_RDONLY, &d);
		cr_assert_eq(rc, -ELOOP, "opening %s in a loop: %d (%s)", start, rc, errmsg(d));
		cr_log_info("two-disk loop from %s: %d: %s", start, rc, errmsg(d));
		cr_assert(strcasestr(errmsg(d), "loop"),
			  "the message should say the chain loops: %s", errmsg(d));
		drop_failed(d);
	}
}

/*
 * The header: "parent chains are followed up to VD_MAX_CHAIN_DEPTH levels above the
 * image opened". A leaf with that many ancestors (a base and 256 differencing disks
 * of 1 MiB) opens and reads through every level; one more level is an error,
 * whether vd_create refuses to make it or vd_open refuses to open it.
 */
/* The reason, not only the files: "deeper than", "depth" (file names hold numbers). */
static void depth_message(const char *m, int max)
{
	cr_assert(strcasestr(m, "deep") || strcasestr(m, "depth"),
		  "the message should say the chain is too deep (limit %d): %s", max, m);
}

Test(chain, chain_depth_limit)
{
	const int max = VD_MAX_CHAIN_DEPTH;
	cr_assert_geq(max, 256, "the issue asks for a limit of at least 256");
	char prev[PATH_MAX + 64], cur[PATH_MAX + 64];
	snprintf(prev, sizeof(prev), "%s/d000.vhd", tmp_dir);
	struct vd_disk *d = create_base(prev, VD_TYPE_DYNAMIC, MiB, 0);
	uint8_t byte = 1;
	disk_write(d, &byte, 1, 0, "base");
	close_disk(d);
	time_t t0 = time(NULL);
	for (int i = 1; i <= max; i++) {
		snprintf(cur, sizeof(cur), "%s/d%03d.vhd", tmp_dir, i);
		d = create_child(cur, prev, 0);
		byte = (uint8_t)(i + 1);
		disk_write(d, &byte, 1, (uint64_t)i * SECTOR, "level");
		close_disk(d);
		memcpy(prev, cur, sizeof(prev));
	}
	cr_log_info("%d images made in %ld s", max + 1, (long)(time(NULL) - t0));
	/* max levels above the leaf: open, and every level's byte reads through */
	d = open_disk(prev, VD_OPEN_RDONLY);
	struct vd_info info = get_info(d);
	cr_assert_eq(info.chain_length, max + 1);
	for (int i = 0; i <= max; i++) {
		uint8_t got = 0;
		disk_read(d, &got, 1, (uint64_t)i * SECTOR, "deep read");
		cr_assert_eq(got, (uint8_t)(i + 1), "level %d's byte", i);
	}
	close_disk(d);

	snprintf(cur, sizeof(cur), "%s/d%03d.vhd", tmp_dir, max + 1);
	int rc = try_create_child(cur, prev, 0, &d);
	if (rc < 0) {
		cr_log_info("create of level %d refused: %d: %s", max + 1, rc, errmsg(d));
		cr_assert_eq(rc, -ELOOP, "create of level %d: %d", max + 1, rc);
		cr_assert(!file_exists(cur), "a refused create left %s", cur);
		depth_message(errmsg(d), max);
		drop_failed(d);
		return;
	}
	close_disk(d);
	rc = try_open(cur, VD_OPEN_RDONLY, &d);
	cr_assert_eq(rc, -ELOOP, "a chain %d levels deep (limit %d): %d", max + 1, max, rc);
	cr_log_info("open of %d levels: %d: %s", max + 1, rc, errmsg(d));
	depth_message(errmsg(d), max);
	drop_failed(d);
}

/* With the parent present, NO_PARENT still leaves it closed: info.parent says where it is. */
Test(chain, no_parent_flag_with_the_parent_present)
{
	const uint64_t size = 2 * MiB;
	const char *base = tpath("base.vhd"), *child = tpath("child.vhd");
	struct vd_disk *d = create_base(base, VD_TYPE_DYNAMIC, size, 0);
	uint8_t data[512], back[512];
	fill_pattern(data, sizeof(data), 9);
	disk_write(d, data, sizeof(data), 0, "parent data");
	close_disk(d);
	close_disk(create_child(child, base, 0));

	d = open_disk(child, VD_OPEN_RDONLY | VD_OPEN_NO_PARENT);
	struct vd_info info = get_info(d);
	same_path(info.parent, base, "NO_PARENT: where the parent would be found");
	int rc = vd_pread(d, back, sizeof(back), 0);
	cr_assert_eq(rc, -ENOENT, "NO_PARENT: a read of the parent's data gave %d", rc);
	close_disk(d);
	d = open_disk(child, VD_OPEN_RDONLY);
	disk_read(d, back, sizeof(back), 0, "with the parent");
	cr_assert_arr_eq(back, data, sizeof(back));
	close_disk(d);
}

/*
 * A parent under an open child is locked: not even VD_OPEN_FORCE writes it then (the
 * force is for dependents on disk, not for a handle reading it now); once the child
 * is closed the forced open works.
 */
Test(chain, a_parent_under_an_open_child_is_locked_even_with_force)
{
	const uint64_t size = 2 * MiB;
	const char *base = tpath("base.vhd"), *child = tpath("child.vhd");
	close_disk(create_base(base, VD_TYPE_DYNAMIC, size, 0));
	close_disk(create_child(child, base, 0));
	for (int mode = 0; mode < 2; mode++) {
		struct vd_disk *c = open_disk(child, mode ? VD_OPEN_RDWR : VD_OPEN_RDONLY), *p;
		int rc = try_open(base, VD_OPEN_RDWR | VD_OPEN_FORCE, &p);
		cr_assert_eq(rc, -EBUSY,
			     "forced write open of a parent under an open child (%s): %d",
			     mode ? "read-write" : "read-only", rc);
		cr_log_info("locked: %s", errmsg(p));
		drop_failed(p);
		close_disk(c);
	}
	close_disk(open_disk(base, VD_OPEN_RDWR | VD_OPEN_FORCE));
}
