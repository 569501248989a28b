/*
 * Unit tests of the public API (include/vdisk/vdisk.h) on temporary files:
 * create, open, info, read/write, map, the fixed footer and raw images.
 * The oracles are docs/VHD-FORMAT.md (the file is read back directly and parsed
 * with the codecs and by hand) and a plain in-memory copy of the written data.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vdisk/vdisk.h"
#include "vhd/vhd_int.h"

#define MiB (1ull << 20)

/* ---- temporary directory --------------------------------------------- */

static char tmp_dir[PATH_MAX];

static void make_tmp_dir(void)
{
	const char *base = getenv("TMPDIR");
	snprintf(tmp_dir, sizeof(tmp_dir), "%s/vdisk-api-XXXXXX", base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp %s: %s", tmp_dir, strerror(errno));
}

/*
 * Buffers and handles a test holds, released by the suite's fini even after a
 * failed assertion, so LeakSanitizer reports only the library's own leaks.
 */
#define MAX_HELD 32
static void *held_mem[MAX_HELD];
static struct vd_disk *held_disk[MAX_HELD];

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

static void remove_tmp_dir(void)
{
	for (int i = 0; i < MAX_HELD; i++) {
		if (held_disk[i])
			vd_close(held_disk[i]);
		free(held_mem[i]);
		held_disk[i] = NULL;
		held_mem[i] = NULL;
	}

	DIR *dir = opendir(tmp_dir);
	if (!dir)
		return;
	struct dirent *e;
	char path[PATH_MAX + 300];
	while ((e = readdir(dir)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmp_dir, e->d_name);
		unlink(path);
	}
	closedir(dir);
	rmdir(tmp_dir);
}

TestSuite(api, .init = make_tmp_dir, .fini = remove_tmp_dir);

/* A path in the test's directory; a few stay valid at once (rotating buffers). */
static const char *tpath(const char *name)
{
	static char paths[8][PATH_MAX + 64];
	static unsigned next;
	char *p = paths[next++ % 8];
	snprintf(p, sizeof(paths[0]), "%s/%s", tmp_dir, name);
	return p;
}

/* ---- small helpers ---------------------------------------------------- */

static const char *errmsg(const struct vd_disk *d)
{
	const char *m = d ? vd_errmsg(d) : NULL;
	return m ? m : "(no message)";
}

static struct vd_disk *create_disk(const char *path, const struct vd_create_opts *o)
{
	struct vd_disk *d = NULL;
	int rc = vd_create(path, o, &d);
	hold_disk(d);
	cr_assert_eq(rc, 0, "vd_create %s (size %llu, block %u): %d %s: %s", path,
		     (unsigned long long)o->size, o->block_size, rc, strerror(-rc), errmsg(d));
	cr_assert_not_null(d);
	return d;
}

static struct vd_create_opts vhd_opts(enum vd_disk_type type, uint64_t size, uint32_t block,
				      enum vd_compat compat)
{
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "vhd";
	o.type = type;
	o.size = size;
	o.block_size = block;
	o.compat = compat;
	return o;
}

static struct vd_disk *open_disk(const char *path, unsigned flags, const char *format)
{
	struct vd_open_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = flags;
	o.format = format;
	struct vd_disk *d = NULL;
	int rc = vd_open(path, &o, &d);
	hold_disk(d);
	cr_assert_eq(rc, 0, "vd_open %s: %d %s: %s", path, rc, strerror(-rc), errmsg(d));
	cr_assert_not_null(d);
	return d;
}

static void close_disk(struct vd_disk *d)
{
	int rc = release_disk(d);
	cr_assert_eq(rc, 0, "vd_close: %d %s", rc, strerror(-rc));
}

static struct vd_info get_info(struct vd_disk *d)
{
	struct vd_info info;
	memset(&info, 0, sizeof(info));
	int rc = vd_get_info(d, &info);
	cr_assert_eq(rc, 0, "vd_get_info: %d: %s", rc, errmsg(d));
	return info;
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s: %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

static int file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static void read_file_at(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	ssize_t got = pread(fd, buf, len, (off_t)off);
	close(fd);
	cr_assert_eq(got, (ssize_t)len, "pread %s at %llu: %zd", path, (unsigned long long)off,
		     got);
}

static int is_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

static void fill_pattern(uint8_t *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (uint8_t)(seed >> 56) | 1; /* never zero: a lost write shows */
	}
}

static void disk_write(struct vd_disk *d, const void *buf, size_t len, uint64_t off)
{
	int rc = vd_pwrite(d, buf, len, off);
	cr_assert_eq(rc, 0, "vd_pwrite %zu at %llu: %d: %s", len, (unsigned long long)off, rc,
		     errmsg(d));
}

static void disk_read(struct vd_disk *d, void *buf, size_t len, uint64_t off)
{
	int rc = vd_pread(d, buf, len, off);
	cr_assert_eq(rc, 0, "vd_pread %zu at %llu: %d: %s", len, (unsigned long long)off, rc,
		     errmsg(d));
}

/* Compare the whole disk with MODEL in 1 MiB pieces. */
static void compare_disk(struct vd_disk *d, const uint8_t *model, uint64_t size, const char *what)
{
	uint8_t *buf = hold(malloc(MiB));
	cr_assert_not_null(buf);
	for (uint64_t off = 0; off < size; off += MiB) {
		size_t n = (size_t)(size - off < MiB ? size - off : MiB);
		memset(buf, 0xAA, n);
		disk_read(d, buf, n, off);
		if (memcmp(buf, model + off, n)) {
			size_t i = 0;
			while (buf[i] == model[off + i])
				i++;
			cr_assert_fail("%s: byte %llu is 0x%02x, expected 0x%02x", what,
				       (unsigned long long)(off + i), buf[i], model[off + i]);
		}
	}
	release(buf);
}

static void expect_chs(const struct vd_geometry *g, uint64_t size)
{
	uint16_t c;
	uint8_t h, s;
	vd_chs_from_size(size, &c, &h, &s);
	cr_assert(g->cylinders == c && g->heads == h && g->sectors == s,
		  "geometry %u/%u/%u, spec CHS of %llu is %u/%u/%u", g->cylinders, g->heads,
		  g->sectors, (unsigned long long)size, c, h, s);
}

static uint32_t vhd_now(void)
{
	return (uint32_t)(time(NULL) - VD_VHD_EPOCH);
}

/* ---- the file as written, parsed with the spec's layout --------------- */

struct parsed_vhd {
	struct vd_footer footer;
	struct vd_dynhdr hdr;
	uint64_t file_size;
	uint32_t *bat; /* dynamic only; release() */
};

static void parse_footer_at_end(const char *path, struct parsed_vhd *p)
{
	uint8_t buf[512];
	p->file_size = file_size(path);
	cr_assert_geq(p->file_size, 512u);
	read_file_at(path, p->file_size - 512, buf, 512);
	cr_assert_eq(vd_footer_decode(buf, &p->footer), 0, "%s: footer at the end", path);
	cr_assert_eq(p->footer.features & VD_FEATURE_RESERVED, VD_FEATURE_RESERVED);
	cr_assert_eq(p->footer.version, VD_VHD_VERSION);
}

static void parse_dynamic(const char *path, uint64_t size, uint32_t block, struct parsed_vhd *p)
{
	parse_footer_at_end(path, p);
	uint8_t first[512], last[512];
	read_file_at(path, 0, first, 512);
	read_file_at(path, p->file_size - 512, last, 512);
	cr_assert_arr_eq(first, last, 512, "%s: the footer copy at 0 differs from the end footer",
			 path);
	cr_assert_eq(p->footer.disk_type, (uint32_t)VD_TYPE_DYNAMIC);
	cr_assert_eq(p->footer.current_size, size);
	cr_assert_eq(p->footer.data_offset % 512, 0u);
	cr_assert_leq(p->footer.data_offset + 1024, p->file_size);

	uint8_t hbuf[1024];
	read_file_at(path, p->footer.data_offset, hbuf, 1024);
	cr_assert_eq(vd_dynhdr_decode(hbuf, &p->hdr), 0, "%s: dynamic header", path);
	cr_assert_eq(p->hdr.data_offset, VD_ALL_ONES);
	cr_assert_eq(p->hdr.version, VD_VHD_VERSION);
	cr_assert_eq(p->hdr.block_size, block);
	uint64_t entries = (size + block - 1) / block;
	cr_assert_eq(p->hdr.max_table_entries, entries,
		     "BAT entries must be ceil(size/block): QEMU rejects fewer, Azure more");
	cr_assert_eq(p->hdr.table_offset % 512, 0u);
	for (int i = 0; i < 8; i++)
		cr_assert_eq(p->hdr.loc[i].code, 0u, "a dynamic disk has no locators");
	cr_assert(is_zero(p->hdr.parent_name, 512), "a dynamic disk has no parent name");

	uint64_t bat_bytes = (entries * 4 + 511) / 512 * 512;
	cr_assert_leq(p->hdr.table_offset + bat_bytes, p->file_size);
	uint8_t *raw = hold(malloc(bat_bytes));
	cr_assert_not_null(raw);
	read_file_at(path, p->hdr.table_offset, raw, bat_bytes);
	p->bat = hold(malloc(entries * 4));
	cr_assert_not_null(p->bat);
	for (uint64_t i = 0; i < entries; i++)
		p->bat[i] = get_be32(raw + 4 * i);
	for (uint64_t i = entries * 4; i < bat_bytes; i++)
		cr_assert_eq(raw[i], 0xFF, "BAT padding byte %llu must be 0xFF",
			     (unsigned long long)i);
	release(raw);
}

/* ---- create: dynamic, fixed, profiles --------------------------------- */

static void check_dynamic_created(const char *path, uint64_t size, uint32_t block_opt)
{
	uint32_t block = block_opt ? block_opt : VD_DEFAULT_BLOCK;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, size, block_opt, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	struct vd_info info = get_info(d);
	cr_assert_str_eq(info.format, "vhd");
	cr_assert_eq(info.type, VD_TYPE_DYNAMIC);
	cr_assert_eq(info.virtual_size, size, "hyperv compat keeps the exact size");
	cr_assert_eq(info.current_size, size);
	cr_assert_eq(info.block_size, block);
	cr_assert_eq(info.allocated_bytes, 0u);
	cr_assert_str_eq(info.creator_app, "qem2");
	expect_chs(&info.geometry, size);
	cr_assert_eq(info.size_from_chs, 0);
	cr_assert_null(info.parent);
	cr_assert_str_eq(info.path, path);
	uint8_t uuid[16];
	memcpy(uuid, info.uuid, 16);
	cr_assert(!is_zero(uuid, 16), "UUID must not be null");
	cr_assert_leq(info.timestamp > vhd_now() ? info.timestamp - vhd_now()
						 : vhd_now() - info.timestamp,
		      600u, "timestamp %u is not now (%u)", info.timestamp, vhd_now());
	cr_assert_eq(vd_warning_count(d), 0);
	close_disk(d);

	struct parsed_vhd p;
	parse_dynamic(path, size, block, &p);
	cr_assert_arr_eq(p.footer.creator_app, "qem2", 4);
	cr_assert_eq(p.footer.original_size, size);
	cr_assert_eq(p.footer.cylinders, info.geometry.cylinders);
	cr_assert_eq(p.footer.heads, info.geometry.heads);
	cr_assert_eq(p.footer.sectors, info.geometry.sectors);
	cr_assert_arr_eq(p.footer.uuid, uuid, 16);
	cr_assert_eq(vd_footer_virtual_size(&p.footer), size, "readers must see the exact size");
	for (uint32_t i = 0; i < p.hdr.max_table_entries; i++)
		cr_assert_eq(p.bat[i], VD_BAT_UNUSED, "BAT[%u] of a new disk", i);
	release(p.bat);

	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	struct vd_info again = get_info(d);
	cr_assert_str_eq(again.format, "vhd");
	cr_assert_eq(again.type, VD_TYPE_DYNAMIC);
	cr_assert_eq(again.virtual_size, size);
	cr_assert_eq(again.block_size, block);
	cr_assert_eq(again.file_size, file_size(path));
	cr_assert_arr_eq(again.uuid, uuid, 16);
	cr_assert_eq(vd_warning_count(d), 0, "warning on a fresh disk: %s", vd_warning(d, 0));
	close_disk(d);
}

Test(api, create_dynamic_sizes_and_block_sizes)
{
	static const uint64_t sizes[] = {1 * MiB, 16 * MiB, 100 * MiB + 512};
	static const uint32_t blocks[] = {0,	    512,       4096,	  512u << 10,
					  2u << 20, 32u << 20, 256u << 20};
	for (size_t i = 0; i < 3; i++) {
		for (size_t j = 0; j < sizeof(blocks) / sizeof(blocks[0]); j++) {
			char name[64];
			snprintf(name, sizeof(name), "dyn-%zu-%zu.vhd", i, j);
			check_dynamic_created(tpath(name), sizes[i], blocks[j]);
		}
	}
}

Test(api, create_fixed_sizes)
{
	static const uint64_t sizes[] = {1 * MiB, 16 * MiB, 100 * MiB + 512};
	uint8_t *buf = hold(malloc(MiB));
	cr_assert_not_null(buf);
	for (size_t i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "fixed-%zu.vhd", i);
		const char *path = tpath(name);
		uint64_t size = sizes[i];
		struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, size, 0, VD_COMPAT_HYPERV);
		struct vd_disk *d = create_disk(path, &o);
		struct vd_info info = get_info(d);
		cr_assert_eq(info.type, VD_TYPE_FIXED);
		cr_assert_eq(info.virtual_size, size);
		cr_assert_eq(info.current_size, size);
		cr_assert_eq(info.block_size, 0u);
		cr_assert_eq(info.allocated_bytes, size);
		cr_assert_eq(info.file_size, size + 512);
		cr_assert_str_eq(info.creator_app, "qem2");
		expect_chs(&info.geometry, size);
		for (uint64_t off = 0; off < size; off += MiB) {
			size_t n = (size_t)(size - off < MiB ? size - off : MiB);
			memset(buf, 0xAA, n);
			disk_read(d, buf, n, off);
			cr_assert(is_zero(buf, n), "new fixed disk not zero near %llu",
				  (unsigned long long)off);
		}
		close_disk(d);

		cr_assert_eq(file_size(path), size + 512, "fixed: data then one footer");
		struct parsed_vhd p;
		parse_footer_at_end(path, &p);
		cr_assert_eq(p.footer.disk_type, (uint32_t)VD_TYPE_FIXED);
		cr_assert_eq(p.footer.data_offset, VD_ALL_ONES);
		cr_assert_eq(p.footer.current_size, size);
		cr_assert_eq(vd_footer_virtual_size(&p.footer), size);

		d = open_disk(path, VD_OPEN_RDONLY, NULL);
		info = get_info(d);
		cr_assert_eq(info.type, VD_TYPE_FIXED);
		cr_assert_eq(info.virtual_size, size);
		cr_assert_eq(vd_warning_count(d), 0);
		close_disk(d);
	}
	release(buf);
}

Test(api, fixed_layout_is_data_then_footer)
{
	const char *path = tpath("layout.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, 4 * MiB, 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint8_t data[1000], back[1000];
	fill_pattern(data, sizeof(data), 7);
	disk_write(d, data, sizeof(data), 0);
	disk_write(d, data, sizeof(data), 4 * MiB - sizeof(data));
	disk_write(d, data, 3, 1234567);
	close_disk(d);
	read_file_at(path, 0, back, sizeof(back));
	cr_assert_arr_eq(back, data, sizeof(data), "disk byte X is file byte X");
	read_file_at(path, 4 * MiB - sizeof(data), back, sizeof(back));
	cr_assert_arr_eq(back, data, sizeof(data));
	read_file_at(path, 1234567, back, 3);
	cr_assert_arr_eq(back, data, 3);
	struct parsed_vhd p;
	parse_footer_at_end(path, &p);
	cr_assert_eq(p.footer.current_size, 4 * MiB);
}

Test(api, uuids_differ_between_disks)
{
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, MiB, 0, VD_COMPAT_HYPERV);
	struct vd_disk *a = create_disk(tpath("a.vhd"), &o);
	struct vd_disk *b = create_disk(tpath("b.vhd"), &o);
	struct vd_info ia = get_info(a), ib = get_info(b);
	cr_assert(memcmp(ia.uuid, ib.uuid, 16) != 0, "two new disks share a UUID");
	close_disk(a);
	close_disk(b);
}

Test(api, create_size_profiles)
{
	uint64_t got = 0;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, 100 * MiB + 512, 0, VD_COMPAT_HYPERV);
	cr_assert_eq(vd_create_size(&o, &got), 0);
	cr_assert_eq(got, 100 * MiB + 512);

	o.compat = VD_COMPAT_VPC;
	cr_assert_eq(vd_create_size(&o, &got), 0);
	uint16_t c;
	uint8_t h, s;
	vd_chs_from_size(100 * MiB + 512, &c, &h, &s);
	cr_assert_eq(got, vd_chs_bytes(c, h, s), "VPC: rounded down to the CHS geometry");

	o.compat = VD_COMPAT_AZURE;
	o.type = VD_TYPE_FIXED;
	cr_assert_eq(vd_create_size(&o, &got), 0);
	cr_assert_eq(got, 101 * MiB, "Azure: rounded up to a whole MiB");
	o.size = 16 * MiB;
	cr_assert_eq(vd_create_size(&o, &got), 0);
	cr_assert_eq(got, 16 * MiB);

	o = vhd_opts(VD_TYPE_DYNAMIC, VD_VHD_MAX_SIZE, 0, VD_COMPAT_HYPERV);
	cr_assert_eq(vd_create_size(&o, &got), 0);
	cr_assert_eq(got, VD_VHD_MAX_SIZE);
	o.size = VD_VHD_MAX_SIZE + 512;
	cr_assert_eq(vd_create_size(&o, &got), -EINVAL, "above the 2040 GiB cap");
	o.size = MiB + 1;
	cr_assert_eq(vd_create_size(&o, &got), -EINVAL, "hyperv keeps the size: not sectors");
}

Test(api, compat_vpc_size_is_its_chs_product)
{
	static const uint64_t sizes[] = {3 * MiB, 16 * MiB, 100 * MiB + 512, 200 * MiB,
					 1024 * MiB + 12345 * 512};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "vpc-%zu.vhd", i);
		const char *path = tpath(name);
		struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, sizes[i], 0, VD_COMPAT_VPC);
		struct vd_disk *d = create_disk(path, &o);
		struct vd_info info = get_info(d);
		const struct vd_geometry *g = &info.geometry;
		uint64_t product = (uint64_t)g->cylinders * g->heads * g->sectors * 512;
		cr_assert_eq(info.virtual_size, product, "size %llu: %llu is not C*H*S*512 (%llu)",
			     (unsigned long long)sizes[i], (unsigned long long)info.virtual_size,
			     (unsigned long long)product);
		cr_assert_leq(info.virtual_size, sizes[i]);
		cr_assert_eq(info.current_size, info.virtual_size,
			     "current size and CHS must agree so every reader sees one size");
		expect_chs(g, info.virtual_size);
		uint16_t c;
		uint8_t h, s;
		vd_chs_from_size(sizes[i], &c, &h, &s);
		cr_assert_eq(info.virtual_size, vd_chs_bytes(c, h, s));
		uint64_t predicted = 0;
		cr_assert_eq(vd_create_size(&o, &predicted), 0);
		cr_assert_eq(predicted, info.virtual_size);
		close_disk(d);

		struct parsed_vhd p;
		parse_dynamic(path, info.virtual_size, VD_DEFAULT_BLOCK, &p);
		release(p.bat);
		cr_assert_eq(vd_footer_virtual_size(&p.footer), info.virtual_size);
		d = open_disk(path, VD_OPEN_RDONLY, NULL);
		cr_assert_eq(get_info(d).virtual_size, product);
		close_disk(d);
	}
}

Test(api, compat_azure_is_fixed_whole_mib)
{
	static const uint64_t sizes[] = {512, 16 * MiB, 100 * MiB + 512, 7 * MiB - 512};
	static const uint64_t want[] = {MiB, 16 * MiB, 101 * MiB, 7 * MiB};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char name[64];
		snprintf(name, sizeof(name), "azure-%zu.vhd", i);
		const char *path = tpath(name);
		/* default type, and explicitly fixed */
		struct vd_create_opts o = vhd_opts(i % 2 ? VD_TYPE_FIXED : VD_TYPE_NONE, sizes[i],
						   0, VD_COMPAT_AZURE);
		struct vd_disk *d = create_disk(path, &o);
		struct vd_info info = get_info(d);
		cr_assert_eq(info.type, VD_TYPE_FIXED, "Azure takes fixed disks only");
		cr_assert_eq(info.virtual_size % MiB, 0u);
		cr_assert_geq(info.virtual_size, sizes[i]);
		cr_assert_eq(info.virtual_size, want[i], "size %llu -> %llu",
			     (unsigned long long)sizes[i], (unsigned long long)info.virtual_size);
		cr_assert_eq(info.current_size, info.virtual_size);
		close_disk(d);
		cr_assert_eq(file_size(path), want[i] + 512);
		struct parsed_vhd p;
		parse_footer_at_end(path, &p);
		cr_assert_eq(p.footer.disk_type, (uint32_t)VD_TYPE_FIXED);
		cr_assert_eq(p.footer.current_size, want[i]);
		cr_assert_eq(vd_footer_virtual_size(&p.footer), want[i]);
	}
}

Test(api, invalid_block_sizes_rejected)
{
	static const uint32_t bad[] = {3000, 1u << 30, 256, 768, 512u << 20, 3u << 20, 1};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *path = tpath("bad-block.vhd");
		struct vd_create_opts o =
			vhd_opts(VD_TYPE_DYNAMIC, 16 * MiB, bad[i], VD_COMPAT_HYPERV);
		uint64_t size;
		cr_assert_eq(vd_create_size(&o, &size), -EINVAL, "block %u", bad[i]);
		struct vd_disk *d = NULL;
		int rc = vd_create(path, &o, &d);
		hold_disk(d);
		cr_assert_eq(rc, -EINVAL, "block %u: %d", bad[i], rc);
		cr_assert_not_null(d, "a failed create still returns a handle with the message");
		const char *m = vd_errmsg(d);
		cr_assert(m && *m, "block %u: empty message", bad[i]);
		cr_assert_not_null(strcasestr(m, "block"), "message should name the field: %s", m);
		release_disk(d);
		cr_assert(!file_exists(path), "block %u: a refused create left a file", bad[i]);
	}
}

Test(api, oversize_rejected)
{
	const char *path = tpath("huge.vhd");
	struct vd_create_opts o =
		vhd_opts(VD_TYPE_DYNAMIC, VD_VHD_MAX_SIZE + MiB, 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = NULL;
	int rc = vd_create(path, &o, &d);
	hold_disk(d);
	cr_assert_eq(rc, -EINVAL);
	cr_assert_not_null(d);
	cr_assert(*vd_errmsg(d));
	release_disk(d);
	cr_assert(!file_exists(path));
}

Test(api, create_refuses_existing_file)
{
	const char *path = tpath("exists.vhd");
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("hello", f);
	fclose(f);
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, MiB, 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = NULL;
	int rc = vd_create(path, &o, &d);
	hold_disk(d);
	cr_assert_eq(rc, -EEXIST, "rc %d", rc);
	cr_assert_not_null(d);
	cr_assert(*vd_errmsg(d));
	release_disk(d);
	char back[16] = {0};
	cr_assert_eq(file_size(path), 5u);
	read_file_at(path, 0, back, 5);
	cr_assert_str_eq(back, "hello", "the existing file was changed");

	o.type = VD_TYPE_FIXED;
	d = NULL;
	rc = vd_create(path, &o, &d);
	hold_disk(d);
	cr_assert_eq(rc, -EEXIST);
	release_disk(d);
	cr_assert_eq(file_size(path), 5u);
}

Test(api, open_missing_file)
{
	const char *path = tpath("missing.vhd");
	struct vd_open_opts oo = {.flags = VD_OPEN_RDONLY};
	struct vd_disk *d = NULL;
	int rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_eq(rc, -ENOENT);
	cr_assert_not_null(d, "vd_open keeps a handle for the message");
	cr_assert_not_null(strstr(vd_errmsg(d), path), "message must name the path: %s",
			   vd_errmsg(d));
	release_disk(d);
	oo.flags = VD_OPEN_RDWR;
	d = NULL;
	rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_eq(rc, -ENOENT);
	release_disk(d);
}

/* ---- read and write --------------------------------------------------- */

struct io_op {
	uint64_t off;
	size_t len;
};

/* Writes at odd offsets and lengths around sectors and blocks, each checked at once. */
static void odd_writes(struct vd_disk *d, uint8_t *model, uint64_t size, uint32_t block)
{
	const struct io_op ops[] = {
		{0, 1},
		{511, 1},
		{511, 2},
		{1, 511},
		{513, 513},
		{block - 1, 2},
		{block - 256, 513},
		{(uint64_t)block * 3 - 511, 1026},
		{(uint64_t)block * 5 + 100, 511},
		{(uint64_t)block * 2 - 3, (size_t)block + 7}, /* spans three blocks */
		{size - 1, 1},
		{size - 513, 513},
		{size / 2 + 17, 4099},
		{(uint64_t)block * 3 - 200, 10}, /* rewrite inside an allocated block */
	};
	uint8_t *buf = hold(malloc(2 * (size_t)block + 8192));
	uint8_t *back = hold(malloc(2 * (size_t)block + 8192 + 1200));
	cr_assert(buf && back);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		fill_pattern(buf, ops[i].len, i + 1);
		disk_write(d, buf, ops[i].len, ops[i].off);
		memcpy(model + ops[i].off, buf, ops[i].len);
		memset(back, 0xAA, ops[i].len);
		disk_read(d, back, ops[i].len, ops[i].off);
		cr_assert_arr_eq(back, buf, ops[i].len, "op %zu: %zu bytes at %llu", i, ops[i].len,
				 (unsigned long long)ops[i].off);
		uint64_t lo = ops[i].off > 600 ? ops[i].off - 600 : 0;
		uint64_t hi = ops[i].off + ops[i].len + 600;
		hi = hi > size ? size : hi;
		disk_read(d, back, (size_t)(hi - lo), lo);
		cr_assert_arr_eq(back, model + lo, (size_t)(hi - lo), "op %zu: surroundings", i);
	}
	release(buf);
	release(back);
}

static void rw_odd_case(const char *path, enum vd_disk_type type, uint64_t size, uint32_t block)
{
	uint8_t *model = hold(calloc(1, size));
	cr_assert_not_null(model);
	struct vd_create_opts o =
		vhd_opts(type, size, type == VD_TYPE_DYNAMIC ? block : 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	odd_writes(d, model, size, block);
	compare_disk(d, model, size, "before close");
	cr_assert_eq(vd_flush(d), 0);
	close_disk(d);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	compare_disk(d, model, size, "after reopen");
	close_disk(d);
	release(model);
}

Test(api, rw_odd_offsets_dynamic_4k_blocks)
{
	rw_odd_case(tpath("odd4k.vhd"), VD_TYPE_DYNAMIC, 4 * MiB + 512, 4096);
}

Test(api, rw_odd_offsets_dynamic_512b_blocks)
{
	rw_odd_case(tpath("odd512.vhd"), VD_TYPE_DYNAMIC, 2 * MiB, 512);
}

Test(api, rw_odd_offsets_dynamic_2m_blocks)
{
	rw_odd_case(tpath("odd2m.vhd"), VD_TYPE_DYNAMIC, 16 * MiB, 2u << 20);
}

Test(api, rw_odd_offsets_fixed)
{
	/* block only shapes the offsets here */
	rw_odd_case(tpath("oddfixed.vhd"), VD_TYPE_FIXED, 5 * MiB + 512, 64u << 10);
}

Test(api, never_written_ranges_read_zero)
{
	const char *path = tpath("zeros.vhd");
	const uint32_t block = 64u << 10;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, 16 * MiB, block, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint8_t *buf = hold(malloc(3 * block));
	cr_assert_not_null(buf);
	memset(buf, 0xAA, 3 * block);
	disk_read(d, buf, 3 * block, 4 * block);
	cr_assert(is_zero(buf, 3 * block), "an empty disk reads as zeros");

	uint8_t one = 0x5C;
	disk_write(d, &one, 1, 5 * block + 700);
	memset(buf, 0xAA, 3 * block);
	disk_read(d, buf, 3 * block, 4 * block); /* unallocated, allocated, unallocated */
	for (size_t i = 0; i < 3 * block; i++)
		cr_assert_eq(buf[i], i == block + 700 ? 0x5C : 0, "byte %zu of blocks 4..6", i);
	close_disk(d);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	memset(buf, 0xAA, 3 * block);
	disk_read(d, buf, 3 * block, 4 * block);
	for (size_t i = 0; i < 3 * block; i++)
		cr_assert_eq(buf[i], i == block + 700 ? 0x5C : 0, "after reopen: byte %zu", i);
	close_disk(d);
	release(buf);
}

static void past_end_case(struct vd_disk *d, uint64_t size)
{
	uint8_t buf[64] = {0};
	static const struct {
		uint64_t back; /* offset = size - back, or an absolute one when back == 0 */
		uint64_t abs;
		size_t len;
	} cases[] = {
		{0, 0, 1}, /* at size */
		{1, 0, 2}, /* straddles the end */
		{512, 0, 513},
		{0, UINT64_MAX, 1},
		{0, UINT64_MAX - 10, 20}, /* offset + len wraps around */
		{0, 1ull << 62, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t off = cases[i].abs ? cases[i].abs : size - cases[i].back;
		int rc = vd_pread(d, buf, cases[i].len, off);
		cr_assert_eq(rc, -EINVAL, "read %zu at %llu: %d", cases[i].len,
			     (unsigned long long)off, rc);
		rc = vd_pwrite(d, buf, cases[i].len, off);
		cr_assert_eq(rc, -EINVAL, "write %zu at %llu: %d", cases[i].len,
			     (unsigned long long)off, rc);
	}
	/* the last byte is still reachable, and the failed writes changed nothing */
	uint8_t last = 0xAA;
	disk_read(d, &last, 1, size - 1);
	cr_assert_eq(last, 0);
	uint8_t x = 0x77;
	disk_write(d, &x, 1, size - 1);
	disk_read(d, &last, 1, size - 1);
	cr_assert_eq(last, 0x77);
}

Test(api, past_end_is_einval)
{
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, 3 * MiB + 512, 4096, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(tpath("end-dyn.vhd"), &o);
	past_end_case(d, 3 * MiB + 512);
	close_disk(d);
	o = vhd_opts(VD_TYPE_FIXED, 3 * MiB, 0, VD_COMPAT_HYPERV);
	d = create_disk(tpath("end-fixed.vhd"), &o);
	past_end_case(d, 3 * MiB);
	close_disk(d);
	cr_assert_eq(file_size(tpath("end-fixed.vhd")), 3 * MiB + 512,
		     "a refused write must not grow a fixed disk");
}

Test(api, write_on_read_only_handle_fails)
{
	const char *path = tpath("ro.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, MiB, 4096, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint8_t a = 0x11;
	disk_write(d, &a, 1, 5000);
	close_disk(d);
	uint64_t before = file_size(path);

	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	uint8_t b[600];
	memset(b, 0x22, sizeof(b));
	int rc = vd_pwrite(d, b, sizeof(b), 4900);
	cr_assert(rc == -EBADF || rc == -EROFS, "write on a read-only handle: %d", rc);
	rc = vd_pwrite(d, b, 1, 100000); /* would allocate a block */
	cr_assert(rc == -EBADF || rc == -EROFS, "allocating write on a read-only handle: %d", rc);
	uint8_t back = 0;
	disk_read(d, &back, 1, 5000);
	cr_assert_eq(back, 0x11);
	disk_read(d, &back, 1, 100000);
	cr_assert_eq(back, 0);
	close_disk(d);
	cr_assert_eq(file_size(path), before);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	disk_read(d, &back, 1, 4900);
	cr_assert_eq(back, 0);
	close_disk(d);
}

/* ---- vd_map ----------------------------------------------------------- */

static int map_at(struct vd_disk *d, uint64_t off, uint64_t len, uint64_t *run)
{
	*run = 0;
	int kind = vd_map(d, off, len, run);
	cr_assert_gt(kind, 0, "vd_map(%llu, %llu): %d: %s", (unsigned long long)off,
		     (unsigned long long)len, kind, errmsg(d));
	cr_assert_gt(*run, 0u);
	cr_assert_leq(*run, len, "run longer than asked");
	return kind;
}

Test(api, map_fresh_dynamic_all_unallocated)
{
	const uint64_t size = 16 * MiB;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, size, 64u << 10, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(tpath("map0.vhd"), &o);
	uint64_t run;
	cr_assert_eq(map_at(d, 0, size, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, size, "one run for the whole empty disk");
	cr_assert_eq(map_at(d, 12345, 100, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, 100u, "capped at len");
	cr_assert_eq(map_at(d, size - 1, 1, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, 1u);
	cr_assert_lt(vd_map(d, size, 512, &run), 0, "map past the end");
	close_disk(d);
}

static void check_map_one_block(struct vd_disk *d, uint64_t size, uint64_t block)
{
	uint64_t run;
	cr_assert_eq(map_at(d, 0, size, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, 3 * block, "blocks 0..2 unallocated");
	cr_assert_eq(map_at(d, 3 * block, size - 3 * block, &run), VD_EXTENT_ALLOCATED);
	cr_assert_eq(run, block, "block 3 allocated");
	cr_assert_eq(map_at(d, 3 * block + 777, size, &run) == VD_EXTENT_ALLOCATED, 1);
	cr_assert_eq(run, block - 777);
	cr_assert_eq(map_at(d, 3 * block - 1, 2, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, 1u);
	cr_assert_eq(map_at(d, 4 * block, size - 4 * block, &run), VD_EXTENT_UNALLOCATED);
	cr_assert_eq(run, size - 4 * block, "the rest unallocated");
	/* walking the disk covers every byte exactly once */
	uint64_t off = 0, allocated = 0;
	while (off < size) {
		int kind = map_at(d, off, size - off, &run);
		cr_assert(kind == VD_EXTENT_ALLOCATED || kind == VD_EXTENT_UNALLOCATED);
		if (kind == VD_EXTENT_ALLOCATED)
			allocated += run;
		off += run;
	}
	cr_assert_eq(off, size);
	cr_assert_eq(allocated, block);
}

Test(api, map_after_one_byte_in_block_3)
{
	static const uint32_t blocks[] = {4096, 64u << 10, 2u << 20};
	for (size_t i = 0; i < 3; i++) {
		char name[64];
		snprintf(name, sizeof(name), "map1-%zu.vhd", i);
		const char *path = tpath(name);
		uint64_t block = blocks[i], size = 16 * MiB;
		struct vd_create_opts o =
			vhd_opts(VD_TYPE_DYNAMIC, size, blocks[i], VD_COMPAT_HYPERV);
		struct vd_disk *d = create_disk(path, &o);
		uint8_t one = 1;
		disk_write(d, &one, 1, 3 * block + 1000);
		check_map_one_block(d, size, block);
		close_disk(d);
		d = open_disk(path, VD_OPEN_RDONLY, NULL);
		check_map_one_block(d, size, block);
		close_disk(d);
	}
}

static void check_map_fixed(struct vd_disk *d, uint64_t size, uint64_t written_at)
{
	uint64_t off = 0, run;
	while (off < size) {
		int kind = map_at(d, off, size - off, &run);
		cr_assert(kind == VD_EXTENT_ALLOCATED || kind == VD_EXTENT_ZERO,
			  "fixed disk at %llu: kind %d", (unsigned long long)off, kind);
		if (kind == VD_EXTENT_ZERO)
			cr_assert(written_at < off || written_at >= off + run,
				  "written byte %llu reported ZERO",
				  (unsigned long long)written_at);
		off += run;
	}
	cr_assert_eq(off, size);
}

Test(api, map_fixed_allocated_or_zero)
{
	const uint64_t size = 8 * MiB;
	const char *path = tpath("mapfixed.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, size, 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint8_t one = 1;
	disk_write(d, &one, 1, 5 * MiB + 3);
	check_map_fixed(d, size, 5 * MiB + 3);
	close_disk(d);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	check_map_fixed(d, size, 5 * MiB + 3);
	close_disk(d);
}

/* ---- the dynamic file on disk ----------------------------------------- */

static void check_block_in_file(const char *path, uint64_t size, uint32_t block, uint32_t index,
				uint32_t in_block, uint8_t value)
{
	struct parsed_vhd p;
	parse_dynamic(path, size, block, &p);
	uint32_t sector = p.bat[index];
	cr_assert_neq(sector, VD_BAT_UNUSED, "BAT[%u] not set after a write", index);
	uint64_t bitmap_off = (uint64_t)sector * 512;
	uint64_t bat_end = p.hdr.table_offset + p.hdr.max_table_entries * 4ull;
	cr_assert_geq(bitmap_off, bat_end, "block %u overlaps the BAT", index);
	cr_assert_leq(bitmap_off + vd_bitmap_bytes(block) + block, p.file_size - 512,
		      "block %u runs into the footer", index);
	uint8_t bm[512];
	read_file_at(path, bitmap_off + (in_block / 512) / 8 / 512 * 512, bm, 512);
	uint32_t k = in_block / 512;
	cr_assert(bm[(k / 8) % 512] & (0x80 >> (k % 8)),
		  "bitmap bit of the written sector %u is clear (VirtualBox would read zeros)", k);
	uint8_t got = 0;
	read_file_at(path, bitmap_off + vd_bitmap_bytes(block) + in_block, &got, 1);
	cr_assert_eq(got, value, "data not at BAT[%u]*512 + bitmap + %u", index, in_block);
	release(p.bat);
}

/*
 * Each new block adds its bitmap and data, plus at most an alignment gap below
 * 4 KiB: Windows itself puts block data on 4 KiB boundaries (the win10 and
 * win-diskmgmt fixtures have their first bitmap at 0x1e00).
 */
static void expect_growth(const char *path, uint64_t before, uint32_t block, const char *what)
{
	uint64_t step = vd_bitmap_bytes(block) + (uint64_t)block;
	uint64_t now = file_size(path);
	cr_assert(now >= before + step && now < before + step + 4096 && now % 512 == 0,
		  "%s (block %u): file grew from %llu to %llu, expected bitmap + block = %llu "
		  "(+ alignment < 4096)",
		  what, block, (unsigned long long)before, (unsigned long long)now,
		  (unsigned long long)step);
}

static void growth_case(const char *path, uint32_t block)
{
	const uint64_t size = 4ull * block > 16 * MiB ? 4ull * block : 16 * MiB;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, size, block, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint64_t empty = file_size(path);
	cr_assert_eq(get_info(d).file_size, empty);

	uint8_t v = 0xA7;
	disk_write(d, &v, 1, 3ull * block + 1000 % block);
	cr_assert_eq(vd_flush(d), 0);
	expect_growth(path, empty, block, "first block");
	uint64_t one = file_size(path);
	struct vd_info info = get_info(d);
	cr_assert_eq(info.file_size, one);
	cr_assert_eq(info.allocated_bytes, block);
	check_block_in_file(path, size, block, 3, 1000 % block, 0xA7);

	uint8_t w = 0xB8;
	disk_write(d, &w, 1, 3ull * block + block - 1);
	cr_assert_eq(vd_flush(d), 0);
	cr_assert_eq(file_size(path), one, "a second write into the same block: no growth");

	disk_write(d, &w, 1, 0);
	cr_assert_eq(vd_flush(d), 0);
	expect_growth(path, one, block, "second block");
	uint64_t two = file_size(path);
	cr_assert_eq(get_info(d).allocated_bytes, 2ull * block);
	cr_assert_eq(get_info(d).file_size, two);
	close_disk(d);

	cr_assert_eq(file_size(path), two, "close adds nothing");
	check_block_in_file(path, size, block, 3, 1000 % block, 0xA7);
	check_block_in_file(path, size, block, 3, block - 1, 0xB8);
	check_block_in_file(path, size, block, 0, 0, 0xB8);
	struct parsed_vhd p;
	parse_dynamic(path, size, block, &p);
	for (uint32_t i = 0; i < p.hdr.max_table_entries; i++)
		if (i != 0 && i != 3)
			cr_assert_eq(p.bat[i], VD_BAT_UNUSED, "BAT[%u]", i);
	uint64_t b0 = (uint64_t)p.bat[0] * 512, b3 = (uint64_t)p.bat[3] * 512;
	uint64_t span = vd_bitmap_bytes(block) + (uint64_t)block;
	cr_assert(b0 + span <= b3 || b3 + span <= b0, "blocks 0 and 3 overlap");
	release(p.bat);
}

Test(api, dynamic_file_grows_by_bitmap_and_block)
{
	growth_case(tpath("grow512.vhd"), 512);
	growth_case(tpath("grow4k.vhd"), 4096);
	growth_case(tpath("grow2m.vhd"), 2u << 20);
	growth_case(tpath("grow32m.vhd"), 32u << 20);
}

/* ---- vd_fixed_footer -------------------------------------------------- */

Test(api, fixed_footer_is_a_valid_fixed_footer)
{
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, 16 * MiB, 0, VD_COMPAT_HYPERV);
	uint8_t buf[512], buf2[512];
	cr_assert_eq(vd_fixed_footer(&o, buf), 0);
	struct vd_footer f;
	cr_assert_eq(vd_footer_decode(buf, &f), 0);
	cr_assert_eq(f.disk_type, (uint32_t)VD_TYPE_FIXED);
	cr_assert_eq(f.current_size, 16 * MiB);
	cr_assert_eq(f.original_size, 16 * MiB);
	cr_assert_eq(f.data_offset, VD_ALL_ONES);
	cr_assert_eq(f.features & VD_FEATURE_RESERVED, VD_FEATURE_RESERVED);
	cr_assert_eq(f.version, VD_VHD_VERSION);
	cr_assert_arr_eq(f.creator_app, "qem2", 4);
	uint16_t c;
	uint8_t h, s;
	vd_chs_from_size(16 * MiB, &c, &h, &s);
	cr_assert(f.cylinders == c && f.heads == h && f.sectors == s);
	cr_assert_eq(vd_footer_virtual_size(&f), 16 * MiB);
	cr_assert(!is_zero(f.uuid, 16));

	cr_assert_eq(vd_fixed_footer(&o, buf2), 0);
	cr_assert(memcmp(buf + 68, buf2 + 68, 16) != 0, "each footer gets a new UUID");

	/* the same bytes as vd_create writes, apart from time, checksum and UUID */
	const char *path = tpath("ff.vhd");
	struct vd_disk *d = create_disk(path, &o);
	close_disk(d);
	uint8_t file_footer[512];
	read_file_at(path, 16 * MiB, file_footer, 512);
	cr_assert_arr_eq(buf, file_footer, 24);
	cr_assert_arr_eq(buf + 28, file_footer + 28, 64 - 28);
	cr_assert_arr_eq(buf + 84, file_footer + 84, 512 - 84);

	o = vhd_opts(VD_TYPE_FIXED, 100 * MiB + 512, 0, VD_COMPAT_AZURE);
	cr_assert_eq(vd_fixed_footer(&o, buf), 0);
	cr_assert_eq(vd_footer_decode(buf, &f), 0);
	cr_assert_eq(f.current_size, 101 * MiB, "compat rounding applies");
	cr_assert_eq(f.disk_type, (uint32_t)VD_TYPE_FIXED);

	o = vhd_opts(VD_TYPE_FIXED, VD_VHD_MAX_SIZE + MiB, 0, VD_COMPAT_HYPERV);
	cr_assert_eq(vd_fixed_footer(&o, buf), -EINVAL);
}

/* ---- vd_strerror ------------------------------------------------------ */

Test(api, strerror_describes_codes)
{
	static const int codes[] = {-EINVAL,	 -ENOENT, -EEXIST, -EUCLEAN, -EBADMSG,
				    -EOPNOTSUPP, -EBUSY,  -ENOSPC, -EIO,     -EROFS,
				    -EBADF,	 -ENOMEM, -99999,  0};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *s = vd_strerror(codes[i]);
		cr_assert_not_null(s, "code %d", codes[i]);
		cr_assert(*s, "code %d: empty", codes[i]);
	}
	cr_assert_str_neq(vd_strerror(-ENOENT), vd_strerror(-EINVAL));
	cr_assert_str_neq(vd_strerror(-EUCLEAN), vd_strerror(-EBADMSG));
}

/* ---- raw images ------------------------------------------------------- */

Test(api, raw_create_open_read_write)
{
	const char *path = tpath("disk.raw");
	const uint64_t size = 3 * MiB + 512;
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "raw";
	o.size = size;
	struct vd_disk *d = create_disk(path, &o);
	struct vd_info info = get_info(d);
	cr_assert_str_eq(info.format, "raw");
	cr_assert_eq(info.type, VD_TYPE_FIXED);
	cr_assert_eq(info.virtual_size, size);
	cr_assert_eq(file_size(path), size, "a raw image is exactly the disk");

	uint8_t data[1500], back[1500];
	fill_pattern(data, sizeof(data), 99);
	past_end_case(d, size);
	disk_write(d, data, sizeof(data), 1 * MiB - 700);
	close_disk(d);
	cr_assert_eq(file_size(path), size);
	read_file_at(path, 1 * MiB - 700, back, sizeof(back));
	cr_assert_arr_eq(back, data, sizeof(data), "raw: disk byte X is file byte X");

	static const char *formats[] = {"raw", NULL};
	for (int i = 0; i < 2; i++) {
		d = open_disk(path, VD_OPEN_RDONLY, formats[i]);
		info = get_info(d);
		cr_assert_str_eq(info.format, "raw", "format %s",
				 formats[i] ? formats[i] : "probe");
		cr_assert_eq(info.virtual_size, size);
		memset(back, 0, sizeof(back));
		disk_read(d, back, sizeof(back), 1 * MiB - 700);
		cr_assert_arr_eq(back, data, sizeof(data));
		uint64_t off = 0, run;
		while (off < size) {
			int kind = map_at(d, off, size - off, &run);
			cr_assert(kind == VD_EXTENT_ALLOCATED || kind == VD_EXTENT_ZERO);
			if (kind == VD_EXTENT_ZERO)
				cr_assert(off + run <= 1 * MiB - 700 || off >= 1 * MiB + 800,
					  "written data reported ZERO at %llu",
					  (unsigned long long)off);
			off += run;
		}
		cr_assert_eq(off, size);
		close_disk(d);
	}
}

Test(api, probe_finds_fixed_and_dynamic_vhd)
{
	/* QEMU's probe misses fixed VHDs (no cookie at 0); ours must not */
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, 2 * MiB, 0, VD_COMPAT_HYPERV);
	close_disk(create_disk(tpath("pf.vhd"), &o));
	o = vhd_opts(VD_TYPE_DYNAMIC, 2 * MiB, 0, VD_COMPAT_HYPERV);
	close_disk(create_disk(tpath("pd.vhd"), &o));
	struct vd_disk *d = open_disk(tpath("pf.vhd"), VD_OPEN_RDONLY, NULL);
	struct vd_info info = get_info(d);
	cr_assert_str_eq(info.format, "vhd");
	cr_assert_eq(info.type, VD_TYPE_FIXED);
	cr_assert_eq(info.virtual_size, 2 * MiB, "not the file size");
	close_disk(d);
	d = open_disk(tpath("pd.vhd"), VD_OPEN_RDONLY, NULL);
	info = get_info(d);
	cr_assert_str_eq(info.format, "vhd");
	cr_assert_eq(info.type, VD_TYPE_DYNAMIC);
	close_disk(d);
}

/* ---- defaults, damaged footers, streaming ------------------------------ */

Test(api, create_defaults_are_dynamic_vhd_2m_blocks)
{
	const char *path = tpath("defaults.vhd");
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o)); /* format NULL, type 0, block 0, compat hyperv */
	o.size = 8 * MiB;
	struct vd_disk *d = create_disk(path, &o);
	struct vd_info info = get_info(d);
	cr_assert_str_eq(info.format, "vhd");
	cr_assert_eq(info.type, VD_TYPE_DYNAMIC);
	cr_assert_eq(info.block_size, 2u << 20);
	cr_assert_eq(info.virtual_size, 8 * MiB);
	close_disk(d);
	struct parsed_vhd p;
	parse_dynamic(path, 8 * MiB, 2u << 20, &p);
	release(p.bat);
}

/* Flip one reserved byte of the footer at OFF and fix nothing: a bad checksum. */
static void damage_footer(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	uint8_t b = 0;
	cr_assert_eq(pread(fd, &b, 1, (off_t)(off + 300)), 1);
	b ^= 0x40;
	cr_assert_eq(pwrite(fd, &b, 1, (off_t)(off + 300)), 1);
	close(fd);
}

static void write_marker_disk(const char *path, uint8_t *marker, size_t len)
{
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, 8 * MiB, 64u << 10, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	fill_pattern(marker, len, 1234);
	disk_write(d, marker, len, 3 * MiB + 5);
	close_disk(d);
}

Test(api, damaged_end_footer_uses_copy_and_warns)
{
	const char *path = tpath("badend.vhd");
	uint8_t marker[777], back[777];
	write_marker_disk(path, marker, sizeof(marker));
	damage_footer(path, file_size(path) - 512);
	struct vd_disk *d = open_disk(path, VD_OPEN_RDONLY, NULL);
	cr_assert_geq(vd_warning_count(d), 1, "a bad end footer checksum must be reported");
	cr_assert_not_null(vd_warning(d, 0));
	struct vd_info info = get_info(d);
	cr_assert_eq(info.type, VD_TYPE_DYNAMIC);
	cr_assert_eq(info.virtual_size, 8 * MiB);
	disk_read(d, back, sizeof(back), 3 * MiB + 5);
	cr_assert_arr_eq(back, marker, sizeof(back));
	close_disk(d);
}

Test(api, damaged_footer_copy_warns)
{
	const char *path = tpath("badcopy.vhd");
	uint8_t marker[777], back[777];
	write_marker_disk(path, marker, sizeof(marker));
	damage_footer(path, 0);
	struct vd_disk *d = open_disk(path, VD_OPEN_RDONLY, NULL);
	cr_assert_geq(vd_warning_count(d), 1, "a bad footer copy at 0 must be reported");
	cr_assert_eq(get_info(d).virtual_size, 8 * MiB);
	disk_read(d, back, sizeof(back), 3 * MiB + 5);
	cr_assert_arr_eq(back, marker, sizeof(back));
	close_disk(d);
}

Test(api, streamed_fixed_disk_opens)
{
	/* what a tool streaming to a pipe produces: the data, then vd_fixed_footer */
	const char *path = tpath("stream.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, 3 * MiB + 512, 0, VD_COMPAT_HYPERV);
	uint8_t footer[512], data[4096];
	cr_assert_eq(vd_fixed_footer(&o, footer), 0);
	fill_pattern(data, sizeof(data), 5);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, data, sizeof(data), 8192), (ssize_t)sizeof(data));
	cr_assert_eq(pwrite(fd, footer, 512, 3 * MiB + 512), 512);
	close(fd);
	struct vd_disk *d = open_disk(path, VD_OPEN_RDONLY, NULL);
	struct vd_info info = get_info(d);
	cr_assert_str_eq(info.format, "vhd");
	cr_assert_eq(info.type, VD_TYPE_FIXED);
	cr_assert_eq(info.virtual_size, 3 * MiB + 512);
	cr_assert_eq(vd_warning_count(d), 0);
	uint8_t back[4096];
	disk_read(d, back, sizeof(back), 8192);
	cr_assert_arr_eq(back, data, sizeof(back));
	close_disk(d);
}

Test(api, non_vhd_opened_as_vhd_fails_with_message)
{
	const char *path = tpath("plain.img");
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 * MiB), 0);
	close(fd);
	struct vd_open_opts oo = {.flags = VD_OPEN_RDONLY, .format = "vhd"};
	struct vd_disk *d = NULL;
	int rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_lt(rc, 0, "a zero-filled file is no VHD");
	cr_assert_not_null(d);
	cr_assert_not_null(strstr(vd_errmsg(d), path), "message must name the path: %s",
			   vd_errmsg(d));
	release_disk(d);
}

Test(api, compat_vpc_fixed_file_is_product_plus_footer)
{
	const char *path = tpath("vpcfixed.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_FIXED, 100 * MiB + 512, 0, VD_COMPAT_VPC);
	struct vd_disk *d = create_disk(path, &o);
	struct vd_info info = get_info(d);
	uint16_t c;
	uint8_t h, s;
	vd_chs_from_size(100 * MiB + 512, &c, &h, &s);
	cr_assert_eq(info.type, VD_TYPE_FIXED);
	cr_assert_eq(info.virtual_size, vd_chs_bytes(c, h, s));
	close_disk(d);
	cr_assert_eq(file_size(path), vd_chs_bytes(c, h, s) + 512);
}

/* ---- blocks with a partial bitmap (as blktap and Windows leave them) --- */

static uint64_t block_bitmap_offset(const char *path, uint64_t size, uint32_t block, uint32_t idx)
{
	struct parsed_vhd p;
	parse_dynamic(path, size, block, &p);
	uint32_t sector = p.bat[idx];
	release(p.bat);
	cr_assert_neq(sector, VD_BAT_UNUSED, "BAT[%u]", idx);
	return (uint64_t)sector * 512;
}

static int file_bit(const char *path, uint64_t bitmap_off, uint32_t k)
{
	uint8_t byte;
	read_file_at(path, bitmap_off + k / 8, &byte, 1);
	return (byte >> (7 - k % 8)) & 1;
}

Test(api, partial_bitmap_block_read_write_map)
{
	const char *path = tpath("partial.vhd");
	const uint32_t block = 64u << 10; /* 128 sectors */
	const uint64_t size = 4 * MiB, base = 2ull * block;
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, size, block, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	uint8_t *model = hold(calloc(1, block));
	model[0] = 0x42;
	disk_write(d, model, 1, base);
	close_disk(d);

	/* keep bits 0..7, clear 8..127: the data under them is zero, a conforming file */
	uint64_t bm_off = block_bitmap_offset(path, size, block, 2);
	uint8_t bm[16] = {0xFF};
	int fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, bm, sizeof(bm), (off_t)bm_off), (ssize_t)sizeof(bm));
	close(fd);

	d = open_disk(path, VD_OPEN_RDWR, NULL);
	uint64_t run;
	cr_assert_eq(map_at(d, base, block, &run), VD_EXTENT_ALLOCATED);
	cr_assert_eq(run, 8 * 512u, "sectors 0..7 have their bits");
	cr_assert_eq(map_at(d, base + 8 * 512, block - 8 * 512, &run), VD_EXTENT_UNALLOCATED,
		     "a clear bit is not stored here");
	cr_assert_eq(run, block - 8 * 512u);

	uint8_t data[600];
	fill_pattern(data, sizeof(data), 3);
	const struct io_op ops[] = {
		{base + 20 * 512 + 100, 3},  /* inside a clear sector */
		{base + 7 * 512 + 500, 30},  /* set sector 7 into clear sector 8 */
		{base + 50 * 512, 512},	     /* one whole clear sector */
		{base + 127 * 512 + 511, 1}, /* last byte of the block */
		{base + 90 * 512 - 1, 2},    /* two clear sectors, one byte each */
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		disk_write(d, data, ops[i].len, ops[i].off);
		memcpy(model + (ops[i].off - base), data, ops[i].len);
		uint8_t *back = hold(malloc(block));
		disk_read(d, back, block, base);
		cr_assert_arr_eq(back, model, block, "block after partial write %zu", i);
		release(back);
	}
	cr_assert_eq(map_at(d, base + 20 * 512, 512, &run), VD_EXTENT_ALLOCATED);
	cr_assert_eq(map_at(d, base + 21 * 512, 512, &run), VD_EXTENT_UNALLOCATED);
	close_disk(d);

	static const uint32_t written[] = {0, 7, 8, 20, 50, 89, 90, 127};
	for (size_t i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		cr_assert_eq(file_bit(path, bm_off, written[i]), 1, "bit of written sector %u",
			     written[i]);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	uint8_t *back = hold(malloc(block));
	disk_read(d, back, block, base);
	cr_assert_arr_eq(back, model, block, "block after reopen");
	release(back);
	cr_assert_eq(vd_warning_count(d), 0);
	close_disk(d);
	release(model);
}

/* ---- 64-bit offsets and the size cap ----------------------------------- */

static void far_io_case(const char *path, enum vd_disk_type type, uint64_t size)
{
	struct vd_create_opts o = vhd_opts(type, size, 0, VD_COMPAT_HYPERV);
	struct vd_disk *d = create_disk(path, &o);
	const uint64_t far = (4ull << 30) + 8192 + 123; /* past 4 GiB: file offsets too (fixed) */
	const uint64_t offs[] = {size - 1000, far, (4ull << 30) - 300, 7};
	uint8_t data[4][1000], back[1000];
	for (int i = 0; i < 4; i++) {
		fill_pattern(data[i], sizeof(data[i]), 40 + (uint64_t)i);
		disk_write(d, data[i], sizeof(data[i]), offs[i]);
	}
	close_disk(d);
	d = open_disk(path, VD_OPEN_RDONLY, NULL);
	cr_assert_eq(get_info(d).virtual_size, size);
	for (int i = 0; i < 4; i++) {
		disk_read(d, back, sizeof(back), offs[i]);
		cr_assert_arr_eq(back, data[i], sizeof(back), "offset %llu",
				 (unsigned long long)offs[i]);
	}
	/* a neighbour of the far write that was never written */
	disk_read(d, back, sizeof(back), far + sizeof(back));
	cr_assert(is_zero(back, sizeof(back)));
	close_disk(d);
}

Test(api, offsets_beyond_4gib)
{
	/* small enough that a fixed disk's reserved space stays modest */
	far_io_case(tpath("far-fixed.vhd"), VD_TYPE_FIXED, (4ull << 30) + 4 * MiB);
	far_io_case(tpath("far-dyn.vhd"), VD_TYPE_DYNAMIC, 100ull << 30);
}

Test(api, largest_dynamic_disk)
{
	far_io_case(tpath("max.vhd"), VD_TYPE_DYNAMIC, VD_VHD_MAX_SIZE);
	struct parsed_vhd p;
	parse_dynamic(tpath("max.vhd"), VD_VHD_MAX_SIZE, VD_DEFAULT_BLOCK, &p);
	release(p.bat);
	cr_assert_eq(p.hdr.max_table_entries, 1044480u);
}

/* ---- engines and the writer lock --------------------------------------- */

Test(api, engine_by_name)
{
	const char *path = tpath("eng.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, MiB, 0, VD_COMPAT_HYPERV);
	o.engine = "psync";
	close_disk(create_disk(path, &o));
	struct vd_open_opts oo = {.flags = VD_OPEN_RDONLY, .engine = "psync"};
	struct vd_disk *d = NULL;
	int rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_eq(rc, 0, "engine psync: %d", rc);
	close_disk(d);

	oo.engine = "no-such-engine";
	d = NULL;
	rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_lt(rc, 0, "an unknown engine must fail, not fall back silently");
	cr_assert_not_null(d);
	cr_assert_not_null(strstr(vd_errmsg(d), "no-such-engine"), "message: %s", vd_errmsg(d));
	release_disk(d);
}

Test(api, second_writer_is_busy)
{
	const char *path = tpath("lock.vhd");
	struct vd_create_opts o = vhd_opts(VD_TYPE_DYNAMIC, MiB, 0, VD_COMPAT_HYPERV);
	struct vd_disk *w = create_disk(path, &o);
	struct vd_open_opts oo = {.flags = VD_OPEN_RDWR};
	struct vd_disk *d = NULL;
	int rc = vd_open(path, &oo, &d);
	hold_disk(d);
	cr_assert_eq(rc, -EBUSY, "two writers on one image: %d", rc);
	cr_assert(*vd_errmsg(d));
	release_disk(d);
	close_disk(w);
	close_disk(open_disk(path, VD_OPEN_RDWR, NULL)); /* free again after close */
}
