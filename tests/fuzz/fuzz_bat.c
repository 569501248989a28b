/*
 * libFuzzer target: the block allocation table. A dynamic or differencing disk
 * (a child of the scratch parent) is generated around fuzzed BAT entries, block
 * size, entry count and disk size, with valid footers and header, then opened
 * and read through the public API; every byte read is compared with what the
 * file holds (an oracle that reads the BAT, bitmaps and blocks itself). With
 * FLAG_WRITE the disk is also written, flushed, reopened and read back. The
 * sector bitmap helpers are checked against a naive model on the same bytes.
 *
 * Input: flags, block size shift, entries (2 bytes), size mode, 8 bytes of raw
 * size, then one code a BAT entry (ENTRY_*), then bitmap bytes.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_util.h"

#define FLAG_DIFFERENCING 0x01u /* a child of parent.vhd (else dynamic) */
#define FLAG_VPC 0x02u		/* creator "vpc ": the disk is sized by its CHS */
#define FLAG_NO_END 0x04u	/* no footer at the end: the copy at 0 is used */
#define FLAG_WRITE 0x08u	/* write, flush, reopen and read back */
#define FLAG_BATMAP 0x10u	/* blktap's "tdbatmap" after the BAT */
#define FLAG_FAR_END 0x20u	/* zeros up to about 2 TiB, then the end footer (sparse) */

/* FLAG_FAR_END: the footer lands near the 2 TiB a BAT entry (32-bit sectors) can address. */
#define FAR_END ((1ull << 41) - 8 * VD_SECTOR)

#define SIZE_EXACT 0u /* entries x block size */
#define SIZE_SHORT 1u /* that, less up to 63 sectors (a cut last block) */
#define SIZE_RAW 2u   /* the raw size, 512-aligned */
#define SIZE_ANY 3u   /* the raw size as it is */

#define ENTRY_UNUSED 0xFFu /* 0xFFFFFFFF */
#define ENTRY_RAW 0xFEu	   /* the next 4 bytes, any sector number */
#define MAX_SLOTS 16u	   /* other codes: block slot CODE % MAX_SLOTS of the data area */
#define MAX_ENTRIES 4096u
#define HEADER_BYTES 13u

struct layout {
	unsigned flags;
	uint32_t block_size, bitmap_bytes, entries;
	uint64_t size;
	uint32_t *bat;
	uint32_t *slot;	     /* per entry: its slot in the data area, or UINT32_MAX */
	uint64_t data_start; /* slot 0 */
	uint64_t file_end;   /* where the end footer goes */
	const uint8_t *bits; /* bitmap material */
	size_t bits_len;
};

/* ---- the bitmap helpers against a naive model ---- */

static int model_test(const uint8_t *bm, uint32_t k)
{
	return bm[k / 8] & (0x80 >> (k % 8)) ? 1 : 0;
}

static void bitmap_properties(const uint8_t *material, size_t len, uint32_t pick)
{
	uint32_t nbits, first, count, n = 0;
	uint8_t *bm, *model;

	if (len == 0 || len > 4096)
		return;
	nbits = (uint32_t)len * 8;
	first = pick % nbits;
	count = (pick >> 12) % (nbits - first + 1);
	bm = malloc(len);
	model = malloc(len);
	if (!bm || !model)
		abort();
	memcpy(bm, material, len);
	while (n < count && model_test(bm, first + n) == model_test(bm, first))
		n++;
	FZ_ASSERT(vd_bitmap_run(bm, first, count) == n, "bitmap run at %u (max %u): %u, want %u",
		  first, count, vd_bitmap_run(bm, first, count), n);
	FZ_ASSERT(vd_bitmap_test(bm, first) == model_test(bm, first), "bitmap test of bit %u",
		  first);
	FZ_ASSERT(vd_bitmap_all_set(bm, first, count) ==
			  (count == 0 || (n == count && model_test(bm, first))),
		  "bitmap all_set of %u+%u", first, count);
	memcpy(model, bm, len);
	for (uint32_t k = first; k < first + count; k++)
		model[k / 8] |= (uint8_t)(0x80 >> (k % 8));
	vd_bitmap_set_range(bm, first, count);
	FZ_ASSERT(memcmp(bm, model, len) == 0, "bitmap set_range of %u+%u", first, count);
	FZ_ASSERT(vd_bitmap_all_set(bm, first, count), "bits just set are not all set");
	free(bm);
	free(model);
}

/* ---- the image ---- */

static uint64_t slot_offset(const struct layout *l, uint32_t slot)
{
	return l->data_start + (uint64_t)slot * (l->bitmap_bytes + l->block_size);
}

/*
 * Reads the BAT codes from IN; returns the bytes used. Unlisted entries are
 * unused; a slot code leaves the entry to build_image (the data area's start is
 * not known yet) and records the slot.
 */
static size_t parse_bat(struct layout *l, const uint8_t *in, size_t len, uint32_t *slots)
{
	size_t at = 0;

	*slots = 0;
	for (uint32_t i = 0; i < l->entries; i++) {
		uint8_t code = at < len ? in[at++] : ENTRY_UNUSED;

		l->slot[i] = UINT32_MAX;
		if (code == ENTRY_UNUSED) {
			l->bat[i] = VD_BAT_UNUSED;
		} else if (code == ENTRY_RAW) {
			uint8_t raw[4] = {0xFF, 0xFF, 0xFF, 0xFF};
			size_t n = len - at < 4 ? len - at : 4;

			memcpy(raw, in + at, n);
			at += n;
			l->bat[i] = get_be32(raw);
		} else {
			l->slot[i] = code % MAX_SLOTS;
			if (l->slot[i] + 1 > *slots)
				*slots = l->slot[i] + 1;
		}
	}
	return at;
}

static uint64_t disk_size(uint8_t mode, const uint8_t raw[8], uint32_t entries, uint32_t bs)
{
	uint64_t exact = (uint64_t)entries * bs, cut = (uint64_t)(mode >> 2) * VD_SECTOR;

	switch (mode & 3) {
	case SIZE_EXACT:
		return exact;
	case SIZE_SHORT:
		return exact > cut ? exact - cut : 0;
	case SIZE_RAW:
		return get_be64(raw) / VD_SECTOR * VD_SECTOR;
	default:
		return get_be64(raw);
	}
}

/* The bitmap of slot S: the material from byte 61 S on, repeated (all ones without). */
static void slot_bitmap(const struct layout *l, uint32_t s, uint8_t *bm)
{
	size_t at = 0, from;

	if (!l->bits_len) {
		memset(bm, 0xFF, l->bitmap_bytes);
		return;
	}
	from = (size_t)s * 61 % l->bits_len;
	while (at < l->bitmap_bytes) {
		size_t n = l->bits_len - from < l->bitmap_bytes - at ? l->bits_len - from
								     : l->bitmap_bytes - at;

		memcpy(bm + at, l->bits + from, n);
		at += n;
		from = 0;
	}
}

/* Sectors a block's data starts and ends with (the rest is a hole: zeros). */
static void slot_data(uint32_t s, uint32_t sector, uint8_t buf[VD_SECTOR])
{
	for (uint32_t i = 0; i < VD_SECTOR; i++)
		buf[i] = (uint8_t)((s * 16 + sector * 3 + i) | 0x80);
}

static void write_blocks(const struct layout *l, int fd, uint32_t slots)
{
	uint8_t *bm = malloc(l->bitmap_bytes), sector[VD_SECTOR];
	uint32_t last = l->block_size / VD_SECTOR - 1;

	if (!bm)
		abort();
	for (uint32_t s = 0; s < slots; s++) {
		uint64_t at = slot_offset(l, s);

		slot_bitmap(l, s, bm);
		fz_file_put(fd, bm, l->bitmap_bytes, at);
		slot_data(s, 0, sector);
		fz_file_put(fd, sector, VD_SECTOR, at + l->bitmap_bytes);
		slot_data(s, last, sector);
		fz_file_put(fd, sector, VD_SECTOR, at + l->bitmap_bytes + (uint64_t)last * 512);
	}
	free(bm);
}

static void write_metadata(struct layout *l, int fd, uint64_t bat_end)
{
	uint8_t foot[VD_FOOTER_SIZE], head[VD_DYNHDR_SIZE], loc[64], *bat;
	struct vd_footer f;
	struct vd_dynhdr h;
	uint32_t loc_len;

	fz_footer_init(&f, (l->flags & FLAG_DIFFERENCING) ? VD_TYPE_DIFFERENCING : VD_TYPE_DYNAMIC,
		       l->size, VD_FOOTER_SIZE);
	if (l->flags & FLAG_VPC)
		memcpy(f.creator_app, "vpc ", 4);
	vd_footer_encode(&f, foot);
	fz_dynhdr_init(&h, 1536, l->entries, l->block_size);
	if (l->flags & FLAG_DIFFERENCING) {
		fz_dynhdr_link_parent(&h, bat_end, loc, &loc_len);
		fz_file_put(fd, loc, loc_len, bat_end);
	}
	if (l->flags & FLAG_BATMAP) {
		uint8_t batmap[VD_SECTOR] = "tdbatmap";

		put_be64(batmap + 8, bat_end + 2 * VD_SECTOR);
		put_be32(batmap + 16, 1);
		fz_file_put(fd, batmap, sizeof(batmap), bat_end + VD_SECTOR);
	}
	vd_dynhdr_encode(&h, head);
	bat = malloc((size_t)l->entries * 4 + 1);
	if (!bat)
		abort();
	for (uint32_t i = 0; i < l->entries; i++)
		put_be32(bat + 4 * (size_t)i, l->bat[i]);
	fz_file_put(fd, foot, sizeof(foot), 0);
	fz_file_put(fd, head, sizeof(head), VD_FOOTER_SIZE);
	fz_file_put(fd, bat, (size_t)l->entries * 4, 1536);
	free(bat);
	if (!(l->flags & FLAG_NO_END))
		fz_file_put(fd, foot, sizeof(foot), l->file_end);
}

static void build_image(struct layout *l, uint32_t slots)
{
	uint64_t bat_end = FZ_ALIGN512(1536 + (uint64_t)l->entries * 4);
	int fd = fz_file_create("child.vhd");

	/* The locator sector, then two for the batmap, then the blocks. */
	l->data_start = bat_end + 3 * VD_SECTOR;
	for (uint32_t i = 0; i < l->entries; i++)
		if (l->slot[i] != UINT32_MAX)
			l->bat[i] = (uint32_t)(slot_offset(l, l->slot[i]) / VD_SECTOR);
	l->file_end = slot_offset(l, slots);
	if ((l->flags & FLAG_FAR_END) && l->file_end < FAR_END)
		l->file_end = FAR_END + (uint64_t)(l->entries % 16) * VD_SECTOR;
	write_blocks(l, fd, slots);
	write_metadata(l, fd, bat_end);
	fz_file_finish(fd, l->file_end + ((l->flags & FLAG_NO_END) ? 0 : VD_FOOTER_SIZE));
}

/* ---- the oracle: what each byte must read as, from the file itself ---- */

struct oracle {
	const struct layout *l;
	int fd;
	int has_parent;
};

static uint8_t parent_block_byte(uint64_t off)
{
	uint64_t blk = off / FZ_PARENT_BLOCK, sector = off % FZ_PARENT_BLOCK / VD_SECTOR;

	if (off >= FZ_PARENT_SIZE)
		return 0;
	if (blk == 0 || blk == 3 || blk == 10 || (blk == 20 && sector < 4))
		return (uint8_t)((off * 31 + 7) | 1);
	return 0;
}

/* The bytes of one sector (or less) at OFF: from its block, the parent or zeros. */
static int oracle_sector(struct oracle *o, uint8_t *buf, size_t n, uint64_t off)
{
	const struct layout *l = o->l;
	uint64_t blk = off / l->block_size, in = off % l->block_size, base;
	uint8_t bits;

	if (blk >= l->entries)
		return -1;
	if (l->bat[blk] != VD_BAT_UNUSED) {
		base = (uint64_t)l->bat[blk] * VD_SECTOR;
		if (pread(o->fd, &bits, 1, (off_t)(base + in / VD_SECTOR / 8)) != 1)
			return -1;
		if (bits & (0x80 >> (in / VD_SECTOR % 8)))
			return pread(o->fd, buf, n, (off_t)(base + l->bitmap_bytes + in)) ==
					       (ssize_t)n
				       ? 0
				       : -1;
	}
	if (!(l->flags & FLAG_DIFFERENCING)) {
		memset(buf, 0, n);
		return 0;
	}
	if (!o->has_parent)
		return -1;
	for (size_t i = 0; i < n; i++)
		buf[i] = parent_block_byte(off + i);
	return 0;
}

static int oracle_read(void *ctx, uint8_t *buf, size_t len, uint64_t off)
{
	size_t at = 0;

	while (at < len) {
		size_t n = VD_SECTOR - (off + at) % VD_SECTOR;

		if (n > len - at)
			n = len - at;
		if (oracle_sector(ctx, buf + at, n, off + at) < 0)
			return -1;
		at += n;
	}
	return 0;
}

/* ---- writing: what was written reads back, and nothing around it changed ---- */

/* Reads [LO, LO+SPAN) around a write of DATA at OFF, writes, reopens and compares. */
static void write_and_compare(struct vd_disk *d, const char *path, uint64_t lo, size_t span,
			      const uint8_t *data, size_t len, uint64_t off)
{
	struct vd_open_opts ro = {.flags = VD_OPEN_RDONLY, .engine = "psync"};
	uint8_t *want = malloc(span), *got = malloc(span);
	struct vd_disk *again;
	int rc;

	if (!want || !got)
		abort();
	FZ_ASSERT(vd_pread(d, want, span, lo) == 0, "read before writing: %s", vd_errmsg(d));
	rc = vd_pwrite(d, data, len, off);
	if (rc < 0) {
		/* Refusing is allowed (no room for a block the BAT can address): not corrupting. */
		FZ_ASSERT(strcmp(vd_errmsg(d), "no error") != 0, "write failed without a message");
		vd_close(d);
		FZ_ASSERT(vd_open(path, &ro, &again) == 0,
			  "after a refused write the image does not reopen: %s", vd_errmsg(again));
		vd_close(again);
		free(want);
		free(got);
		return;
	}
	memcpy(want + (off - lo), data, len);
	FZ_ASSERT(vd_flush(d) == 0, "flush: %s", vd_errmsg(d));
	FZ_ASSERT(vd_close(d) == 0, "close after writing");
	FZ_ASSERT(vd_open(path, &ro, &again) == 0, "the written image does not reopen: %s",
		  vd_errmsg(again));
	FZ_ASSERT(vd_pread(again, got, span, lo) == 0, "read back: %s", vd_errmsg(again));
	FZ_ASSERT(memcmp(got, want, span) == 0,
		  "after writing %zu bytes at %llu, [%llu, %llu) does not read back as expected",
		  len, (unsigned long long)off, (unsigned long long)lo,
		  (unsigned long long)(lo + span));
	vd_close(again);
	free(want);
	free(got);
}

/* Write a pattern where PICK says; it reads back and nothing around it changed. */
static void write_phase(const char *path, uint32_t pick)
{
	struct vd_open_opts rw = {.flags = VD_OPEN_RDWR, .engine = "psync"};
	struct vd_disk *d;
	struct vd_info info;
	uint64_t off, lo, hi;
	size_t len = 1 + (pick >> 8) % 8192;
	uint8_t *data;

	if (vd_open(path, &rw, &d) < 0 || vd_get_info(d, &info) < 0 || info.virtual_size == 0) {
		vd_close(d);
		return;
	}
	off = pick % info.virtual_size;
	if (len > info.virtual_size - off)
		len = (size_t)(info.virtual_size - off);
	lo = off > 4096 ? off - 4096 : 0;
	hi = info.virtual_size - (off + len) > 4096 ? off + len + 4096 : info.virtual_size;
	data = malloc(len);
	if (!data)
		abort();
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(0xA5 ^ (i * 7));
	write_and_compare(d, path, lo, (size_t)(hi - lo), data, len, off);
	free(data);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t head[HEADER_BYTES] = {0};
	struct layout l = {0};
	struct oracle o = {&l, -1, 0};
	struct fz_expect expect = {oracle_read, &o};
	uint32_t slots, pick = fz_hash(data, size);
	size_t used;
	char path[512];
	int rc;

	memcpy(head, data, size < sizeof(head) ? size : sizeof(head));
	data += size < sizeof(head) ? size : sizeof(head);
	size -= size < sizeof(head) ? size : sizeof(head);
	l.flags = head[0];
	l.block_size = 1u << (9 + head[1] % 20);
	l.bitmap_bytes = vd_bitmap_bytes(l.block_size);
	l.entries = get_be16(head + 2) % (MAX_ENTRIES + 1);
	l.size = disk_size(head[4], head + 5, l.entries, l.block_size);
	l.bat = malloc((size_t)l.entries * sizeof(uint32_t) + 1);
	l.slot = malloc((size_t)l.entries * sizeof(uint32_t) + 1);
	if (!l.bat || !l.slot)
		abort();
	used = parse_bat(&l, data, size, &slots);
	l.bits = data + used;
	l.bits_len = size - used;
	bitmap_properties(l.bits, l.bits_len, pick);
	build_image(&l, slots);
	fz_path("child.vhd", path, sizeof(path));
	o.fd = open(path, O_RDONLY | O_CLOEXEC);
	o.has_parent = 1;
	rc = fz_exercise(path, VD_OPEN_RDONLY, pick, &expect);
	o.has_parent = 0;
	fz_exercise(path, VD_OPEN_NO_PARENT, pick >> 4, &expect);
	close(o.fd);
	fz_check(path);
	if ((l.flags & FLAG_WRITE) && rc == 0)
		write_phase(path, pick);
	free(l.bat);
	free(l.slot);
	return 0;
}
