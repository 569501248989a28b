/*
 * The VHD format driver: opens fixed and dynamic disks (validating every field it
 * uses against the file), reads and writes them, allocates blocks crash-safely.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"
#include "vhd/vhd_int.h"

#define ALIGN_UP(v, a) (((v) + (a)-1) / (a) * (a))

static uint8_t bitmap_full_marker;
#define BITMAP_FULL (&bitmap_full_marker) /* every valid sector of the block present */

struct vhd {
	struct vd_disk *disk;
	struct vd_file *file;
	struct vd_footer footer;
	struct vd_dynhdr hdr;
	uint64_t hdr_offset;
	uint64_t footer_offset; /* where the end footer is (or goes) */
	int end_footer_ok;
	int dynamic;
	int failed;   /* sticky: metadata may be inconsistent after a failed write */
	int checking; /* vd_check_path: report every bad entry, not only the first */
	uint64_t virtual_size;
	uint32_t *bat;
	uint32_t entries;
	uint32_t block_size;
	uint32_t spb; /* sectors per block */
	uint32_t bitmap_bytes;
	uint8_t **bitmaps; /* per block: NULL (not loaded), BITMAP_FULL or a copy */
	uint64_t data_end; /* end of the last metadata structure or block */
	uint64_t allocated;
};

static int has_cookie(const uint8_t *p, size_t len)
{
	return len >= 8 && memcmp(p, "conectix", 8) == 0;
}

static int vhd_probe(const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len,
		     uint64_t file_size)
{
	if (tail_len >= 512 && has_cookie(tail + tail_len - 512, 8))
		return 100;
	if (tail_len >= 511 && file_size % 512 == 511 && has_cookie(tail + tail_len - 511, 8))
		return 90; /* Virtual PC before 2004 wrote 511-byte footers */
	if (has_cookie(head, head_len))
		return 80; /* dynamic disk whose end footer was lost */
	return 0;
}

/* ---- opening: footer ---- */

static int read_end_footer(struct vhd *v, uint8_t buf[512], struct vd_footer *f)
{
	uint64_t size = v->file->size;
	int rc;

	memset(buf, 0, 512);
	v->footer_offset = size - 512;
	if (size >= 512 && vd_file_pread(v->file, buf, 512, size - 512) == 0) {
		rc = vd_footer_decode(buf, f);
		if (rc != VD_DECODE_BAD_COOKIE || size % 512 != 511)
			return rc;
	}
	if (size % 512 != 511)
		return VD_DECODE_BAD_COOKIE;
	/* A 511-byte footer: the missing last reserved byte is zero (blktap). */
	memset(buf, 0, 512);
	v->footer_offset = size - 511;
	if (vd_file_pread(v->file, buf, 511, size - 511) < 0)
		return VD_DECODE_BAD_COOKIE;
	rc = vd_footer_decode(buf, f);
	if (rc == 0)
		vd_warn(v->disk, "footer", size - 511,
			"511-byte footer of an old Virtual PC image");
	return rc;
}

static int is_sparse_type(uint32_t t)
{
	return t == VD_TYPE_DYNAMIC || t == VD_TYPE_DIFFERENCING;
}

/* Use the valid copy, report the other (spec: Virtual PC falls back to the copy at 0). */
static int choose_footer(struct vhd *v, int re, const uint8_t *end, const struct vd_footer *fe,
			 int r0, const uint8_t *copy, const struct vd_footer *f0)
{
	struct vd_disk *d = v->disk;

	if (re == 0) {
		v->footer = *fe;
		v->end_footer_ok = 1;
		if (!is_sparse_type(fe->disk_type))
			return 0;
		if (r0 == 0 && memcmp(end, copy, 512) != 0)
			vd_warn(d, "footer", 0,
				"footer copy at offset 0 differs from the footer at the "
				"end; using the one at the end");
		else if (r0 == VD_DECODE_BAD_CHECKSUM)
			vd_warn(d, "footer.checksum", 64,
				"footer copy at offset 0 has a bad checksum; "
				"using the footer at the end");
		else if (r0 == VD_DECODE_BAD_COOKIE)
			vd_warn(d, "footer", 0, "footer copy at offset 0 is missing");
		return 0;
	}
	if (r0 == 0 && is_sparse_type(f0->disk_type)) {
		v->footer = *f0;
		v->end_footer_ok = 0;
		vd_warn(d, "footer", v->footer_offset,
			"footer at the end of the file is %s; using the copy at offset 0",
			re == VD_DECODE_BAD_CHECKSUM ? "damaged (bad checksum)" : "missing");
		return 0;
	}
	if (re == VD_DECODE_BAD_CHECKSUM)
		return vd_error(
			d, -EBADMSG, "footer.checksum", v->footer_offset + 64,
			"footer checksum mismatch (stored 0x%08x, computed 0x%08x) at offset "
			"%llu, and no valid footer copy at offset 0",
			fe->checksum, vd_vhd_checksum(end, 512, 64),
			(unsigned long long)v->footer_offset + 64);
	if (r0 == VD_DECODE_BAD_CHECKSUM)
		return vd_error(
			d, -EBADMSG, "footer.checksum", 64,
			"footer copy at offset 0 has a bad checksum and there is no footer at "
			"the end");
	return vd_error(d, -EUCLEAN, "footer.cookie", v->footer_offset,
			"not a VHD: no footer cookie \"conectix\" at the end (offset %llu) or at "
			"offset 0",
			(unsigned long long)v->footer_offset);
}

static int read_footer(struct vhd *v)
{
	uint8_t end[512], copy[512] = {0};
	struct vd_footer fe, f0;
	int re, r0 = VD_DECODE_BAD_COOKIE;

	if (v->file->size < 511)
		return vd_error(v->disk, -EUCLEAN, "footer", 0,
				"file is %llu bytes, too small to hold a VHD footer (512 bytes)",
				(unsigned long long)v->file->size);
	re = read_end_footer(v, end, &fe);
	if (v->file->size >= 512 && vd_file_pread(v->file, copy, 512, 0) == 0)
		r0 = vd_footer_decode(copy, &f0);
	return choose_footer(v, re, end, &fe, r0, copy, &f0);
}

/* Offsets in messages are absolute: the footer fields of the copy in use. */
static uint64_t footer_field(const struct vhd *v, unsigned off)
{
	return (v->end_footer_ok ? v->footer_offset : 0) + off;
}

/* Oddities a reader survives but a user should hear about (VHD-FORMAT.md section 8). */
static void footer_warnings(struct vhd *v)
{
	static const uint8_t null_uuid[16];
	const struct vd_footer *f = &v->footer;
	int max_chs = f->cylinders == 65535 && f->heads == 16 && f->sectors == 255;

	if (memcmp(f->uuid, null_uuid, 16) == 0)
		vd_warn(v->disk, "footer.uuid", footer_field(v, 68),
			"unique ID (UUID) is all zeros; a differencing disk could not name this "
			"parent");
	if (!max_chs && vd_chs_bytes(f->cylinders, f->heads, f->sectors) > f->current_size)
		vd_warn(v->disk, "footer.geometry", footer_field(v, 56),
			"geometry %u/%u/%u (%llu bytes) is larger than the current size %llu",
			f->cylinders, f->heads, f->sectors,
			(unsigned long long)vd_chs_bytes(f->cylinders, f->heads, f->sectors),
			(unsigned long long)f->current_size);
}

static int validate_footer(struct vhd *v)
{
	const struct vd_footer *f = &v->footer;
	struct vd_disk *d = v->disk;

	if (f->version >> 16 != 1)
		return vd_error(d, -EOPNOTSUPP, "footer.version", footer_field(v, 12),
				"unsupported VHD version %u.%u (only 1.x exists)", f->version >> 16,
				f->version & 0xFFFF);
	if (f->disk_type == VD_TYPE_DIFFERENCING)
		return vd_error(d, -EOPNOTSUPP, "footer.disk_type", footer_field(v, 60),
				"differencing disk: parent chains are not supported yet");
	if (f->disk_type != VD_TYPE_FIXED && f->disk_type != VD_TYPE_DYNAMIC)
		return vd_error(
			d, -EUCLEAN, "footer.disk_type", footer_field(v, 60),
			"unknown disk type %u (expected 2 fixed, 3 dynamic, 4 differencing)",
			f->disk_type);
	if (f->current_size % VD_SECTOR)
		return vd_error(d, -EUCLEAN, "footer.current_size", footer_field(v, 48),
				"current size %llu is not a multiple of 512",
				(unsigned long long)f->current_size);
	if (!(f->features & VD_FEATURE_RESERVED))
		vd_warn(d, "footer.features", footer_field(v, 8),
			"reserved feature bit 0x2 is not set (features 0x%08x)", f->features);
	if (f->saved_state > 1)
		vd_warn(d, "footer.saved_state", footer_field(v, 84),
			"saved state is %u (not 0 or 1)", f->saved_state);
	footer_warnings(v);
	v->virtual_size = vd_footer_virtual_size(f);
	return 0;
}

static int open_fixed(struct vhd *v)
{
	if (!v->end_footer_ok || v->footer.current_size > v->footer_offset)
		return vd_error(
			v->disk, -EUCLEAN, "footer.current_size", footer_field(v, 48),
			"fixed disk of %llu bytes needs a file of at least %llu bytes, but the "
			"file is %llu bytes",
			(unsigned long long)v->footer.current_size,
			(unsigned long long)v->footer.current_size + 512,
			(unsigned long long)v->file->size);
	v->allocated = v->virtual_size;
	return 0;
}

/* ---- opening: dynamic header and BAT ---- */

static int read_header(struct vhd *v)
{
	struct vd_disk *d = v->disk;
	uint8_t buf[VD_DYNHDR_SIZE];
	uint64_t off = v->footer.data_offset;
	int rc;

	if (off % VD_SECTOR || off < 512 || off > v->file->size ||
	    v->file->size - off < VD_DYNHDR_SIZE)
		return vd_error(d, -EUCLEAN, "footer.data_offset", footer_field(v, 16),
				"dynamic header offset 0x%llx is %s (file is %llu bytes)",
				(unsigned long long)off,
				off % VD_SECTOR ? "not 512-aligned" : "outside the file",
				(unsigned long long)v->file->size);
	rc = vd_file_pread(v->file, buf, sizeof(buf), off);
	if (rc < 0)
		return vd_error(d, rc, "header", off, "cannot read the dynamic header: %s",
				vd_strerror(rc));
	rc = vd_dynhdr_decode(buf, &v->hdr);
	if (rc == VD_DECODE_BAD_COOKIE)
		return vd_error(d, -EUCLEAN, "header.cookie", off,
				"dynamic header cookie \"cxsparse\" not found at offset %llu",
				(unsigned long long)off);
	if (rc == VD_DECODE_BAD_CHECKSUM)
		return vd_error(d, -EBADMSG, "header.checksum", off + 36,
				"dynamic header checksum mismatch (stored 0x%08x, computed 0x%08x) "
				"at offset %llu",
				v->hdr.checksum, vd_vhd_checksum(buf, sizeof(buf), 36),
				(unsigned long long)off + 36);
	v->hdr_offset = off;
	return 0;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static int validate_header(struct vhd *v)
{
	const struct vd_dynhdr *h = &v->hdr;
	struct vd_disk *d = v->disk;
	uint64_t ho = v->hdr_offset, need, bat_bytes;
	uint32_t bs = h->block_size;

	if (h->version >> 16 != 1)
		return vd_error(d, -EOPNOTSUPP, "header.version", ho + 24,
				"unsupported dynamic header version %u.%u", h->version >> 16,
				h->version & 0xFFFF);
	if (bs < VD_MIN_BLOCK || bs > VD_MAX_BLOCK || (bs & (bs - 1)))
		return vd_error(d, -EUCLEAN, "header.block_size", ho + 32,
				"block size %u is not a power of two from 512 bytes to 256 MiB",
				bs);
	need = (v->footer.current_size + bs - 1) / bs;
	if (h->max_table_entries < need)
		return vd_error(d, -EUCLEAN, "header.max_table_entries", ho + 28,
				"BAT has %u entries but the disk size needs %llu",
				h->max_table_entries, (unsigned long long)need);
	bat_bytes = (uint64_t)h->max_table_entries * 4;
	if (h->table_offset % VD_SECTOR || h->table_offset > v->file->size ||
	    v->file->size - h->table_offset < bat_bytes)
		return vd_error(d, -EUCLEAN, "header.table_offset", ho + 16,
				"BAT (%u entries at offset 0x%llx) %s the file of %llu bytes",
				h->max_table_entries, (unsigned long long)h->table_offset,
				h->table_offset % VD_SECTOR ? "is not 512-aligned in"
							    : "extends past",
				(unsigned long long)v->file->size);
	if (overlaps(h->table_offset, bat_bytes, ho, VD_DYNHDR_SIZE) ||
	    overlaps(h->table_offset, bat_bytes, 0, VD_FOOTER_SIZE))
		return vd_error(
			d, -EUCLEAN, "header.table_offset", ho + 16,
			"BAT at offset 0x%llx overlaps the %s", (unsigned long long)h->table_offset,
			overlaps(h->table_offset, bat_bytes, ho, VD_DYNHDR_SIZE) ? "dynamic header"
										 : "footer copy");
	v->entries = h->max_table_entries;
	v->block_size = bs;
	v->spb = bs / VD_SECTOR;
	v->bitmap_bytes = vd_bitmap_bytes(bs);
	v->data_end = ALIGN_UP(h->table_offset + bat_bytes, VD_SECTOR);
	if (v->data_end < ho + VD_DYNHDR_SIZE)
		v->data_end = ho + VD_DYNHDR_SIZE;
	return 0;
}

static int read_bat(struct vhd *v)
{
	uint8_t *raw;
	int rc;

	raw = malloc((size_t)v->entries * 4 + 1);
	v->bat = malloc((size_t)v->entries * sizeof(uint32_t) + 1);
	v->bitmaps = calloc((size_t)v->entries + 1, sizeof(*v->bitmaps));
	if (!raw || !v->bat || !v->bitmaps) {
		free(raw);
		return vd_error(v->disk, -ENOMEM, "header.max_table_entries", v->hdr_offset + 28,
				"out of memory for a BAT of %u entries", v->entries);
	}
	rc = vd_file_pread(v->file, raw, (size_t)v->entries * 4, v->hdr.table_offset);
	for (uint32_t i = 0; rc == 0 && i < v->entries; i++)
		v->bat[i] = get_be32(raw + 4 * (size_t)i);
	free(raw);
	if (rc < 0)
		return vd_error(v->disk, rc, "bat", v->hdr.table_offset, "cannot read the BAT: %s",
				vd_strerror(rc));
	return 0;
}

static uint32_t valid_sectors(const struct vhd *v, uint32_t blk);

/*
 * In check mode a bad BAT entry is recorded and dropped (so later reads never
 * follow it) and the scan goes on; otherwise the open fails with the error.
 */
static int soft_error(struct vhd *v, int rc, uint32_t blk)
{
	if (!v->checking || rc == -ENOMEM)
		return rc;
	vd_warn(v->disk, v->disk->err_field, v->disk->err_offset, "%s", vd_errmsg_bare(v->disk));
	if (blk != UINT32_MAX)
		v->bat[blk] = VD_BAT_UNUSED;
	return 0;
}

static int check_block_bounds(struct vhd *v, uint32_t i)
{
	uint64_t off = (uint64_t)v->bat[i] * VD_SECTOR;
	uint64_t len = (uint64_t)v->bitmap_bytes + v->block_size;
	uint64_t limit = v->end_footer_ok ? v->footer_offset : v->file->size;
	uint64_t at = v->hdr.table_offset + 4ull * i;
	const struct vd_dynhdr *h = &v->hdr;
	char field[32];
	int rc;

	snprintf(field, sizeof(field), "bat[%u]", i);
	if (off > limit || limit - off < len) {
		rc = vd_error(v->disk, -EUCLEAN, field, at,
			      "BAT entry %u points past end of file (block at 0x%llx + %llu bytes, "
			      "data ends at %llu) (offset 0x%llx)",
			      i, (unsigned long long)off, (unsigned long long)len,
			      (unsigned long long)limit, (unsigned long long)at);
		return soft_error(v, rc, i);
	}
	if (overlaps(off, len, 0, VD_FOOTER_SIZE) ||
	    overlaps(off, len, v->hdr_offset, VD_DYNHDR_SIZE) ||
	    overlaps(off, len, h->table_offset, (uint64_t)v->entries * 4)) {
		rc = vd_error(v->disk, -EUCLEAN, field, at,
			      "BAT entry %u (block at 0x%llx) overlaps the footer copy, the header "
			      "or the BAT (offset 0x%llx)",
			      i, (unsigned long long)off, (unsigned long long)at);
		return soft_error(v, rc, i);
	}
	if (off + len > v->data_end)
		v->data_end = off + len;
	v->allocated += (uint64_t)valid_sectors(v, i) * VD_SECTOR;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort blocks by offset and compare neighbours: linear after the sort, never pairwise. */
static int check_block_overlaps(struct vhd *v)
{
	uint64_t *key = malloc((size_t)v->entries * sizeof(uint64_t) + 1);
	uint64_t len = (uint64_t)v->bitmap_bytes + v->block_size;
	size_t n = 0;
	int rc = 0;

	if (!key)
		return vd_error(v->disk, -ENOMEM, "bat", v->hdr.table_offset, "out of memory");
	for (uint32_t i = 0; i < v->entries; i++)
		if (v->bat[i] != VD_BAT_UNUSED)
			key[n++] = (uint64_t)v->bat[i] << 32 | i;
	qsort(key, n, sizeof(*key), cmp_u64);
	for (size_t k = 1; k < n && rc == 0; k++) {
		uint64_t prev = (key[k - 1] >> 32) * VD_SECTOR, cur = (key[k] >> 32) * VD_SECTOR;
		uint32_t pi = (uint32_t)key[k - 1], ci = (uint32_t)key[k];

		if (prev + len > cur)
			rc = soft_error(
				v,
				vd_error(v->disk, -EUCLEAN, "bat", v->hdr.table_offset + 4ull * ci,
					 "BAT entries %u and %u overlap (blocks at 0x%llx and "
					 "0x%llx) "
					 "(offset 0x%llx)",
					 pi, ci, (unsigned long long)prev, (unsigned long long)cur,
					 (unsigned long long)(v->hdr.table_offset + 4ull * ci)),
				UINT32_MAX);
	}
	free(key);
	return rc;
}

/* Locators and blktap's batmap live in the data area: never allocate over them (7d). */
static void note_extra_metadata(struct vhd *v)
{
	uint64_t bat_end = ALIGN_UP(v->hdr.table_offset + (uint64_t)v->entries * 4, VD_SECTOR);
	uint8_t bm[512];

	for (int i = 0; i < 8; i++) {
		const struct vd_locator *l = &v->hdr.loc[i];
		int64_t space = vd_locator_space_bytes(l->data_space);
		uint64_t end;

		if (l->code == VD_LOC_NONE)
			continue;
		end = l->data_offset + (space > 0 ? (uint64_t)space : l->data_length);
		if (space < 0 || l->data_offset > v->file->size || end > v->file->size) {
			vd_warn(v->disk, "header.locator", v->hdr_offset + 576 + 24 * (uint64_t)i,
				"parent locator %d (offset 0x%llx) lies outside the file", i,
				(unsigned long long)l->data_offset);
			continue;
		}
		if (end > v->data_end)
			v->data_end = end;
	}
	if (v->file->size >= bat_end + 512 && vd_file_pread(v->file, bm, 512, bat_end) == 0 &&
	    memcmp(bm, "tdbatmap", 8) == 0) {
		uint64_t off = get_be64(bm + 8), len = (uint64_t)get_be32(bm + 16) * VD_SECTOR;

		if (off <= v->file->size && len <= v->file->size - off && off + len > v->data_end)
			v->data_end = off + len;
		if (bat_end + 512 > v->data_end)
			v->data_end = bat_end + 512;
	}
}

static int open_dynamic(struct vhd *v)
{
	int rc = read_header(v);

	if (rc == 0)
		rc = validate_header(v);
	if (rc == 0)
		rc = read_bat(v);
	for (uint32_t i = 0; rc == 0 && i < v->entries; i++)
		if (v->bat[i] != VD_BAT_UNUSED)
			rc = check_block_bounds(v, i);
	if (rc == 0)
		rc = check_block_overlaps(v);
	if (rc == 0) {
		note_extra_metadata(v);
		v->dynamic = 1;
	}
	return rc;
}

static void vhd_close(void *state)
{
	struct vhd *v = state;

	if (v->bitmaps)
		for (uint32_t i = 0; i < v->entries; i++)
			if (v->bitmaps[i] != BITMAP_FULL)
				free(v->bitmaps[i]);
	free(v->bitmaps);
	free(v->bat);
}

static int vhd_open(struct vd_disk *disk, void *state, struct vd_file *file, unsigned flags)
{
	struct vhd *v = state;
	int rc;

	v->disk = disk;
	v->file = file;
	v->checking = !!(flags & VD_OPEN_CHECK_);
	rc = read_footer(v);
	if (rc == 0)
		rc = validate_footer(v);
	if (rc == 0)
		rc = v->footer.disk_type == VD_TYPE_FIXED ? open_fixed(v) : open_dynamic(v);
	if (rc == 0)
		disk->virtual_size = v->virtual_size;
	return rc;
}

static int vhd_info(void *state, struct vd_info *info)
{
	struct vhd *v = state;
	const struct vd_footer *f = &v->footer;

	info->format = "vhd";
	info->type = (enum vd_disk_type)f->disk_type;
	info->virtual_size = v->virtual_size;
	info->current_size = f->current_size;
	info->block_size = v->dynamic ? v->block_size : 0;
	info->allocated_bytes = v->allocated;
	memcpy(info->uuid, f->uuid, 16);
	memcpy(info->creator_app, f->creator_app, 4);
	info->creator_app[4] = '\0';
	info->creator_version = f->creator_version;
	info->creator_os = f->creator_os;
	info->timestamp = f->timestamp;
	info->geometry.cylinders = f->cylinders;
	info->geometry.heads = f->heads;
	info->geometry.sectors = f->sectors;
	info->size_from_chs = vd_footer_uses_chs(f) &&
			      vd_chs_bytes(f->cylinders, f->heads, f->sectors) <= f->current_size;
	return 0;
}

/* ---- sector bitmaps ---- */

/* Sectors of block BLK that lie inside the disk (the last block may be cut short). */
static uint32_t valid_sectors(const struct vhd *v, uint32_t blk)
{
	uint64_t start = (uint64_t)blk * v->block_size;
	uint64_t left = v->footer.current_size > start ? v->footer.current_size - start : 0;

	return left >= v->block_size ? v->spb : (uint32_t)(left / VD_SECTOR);
}

static int load_bitmap(struct vhd *v, uint32_t blk, uint8_t **out)
{
	uint64_t off = (uint64_t)v->bat[blk] * VD_SECTOR;
	uint8_t *bm;
	int rc;

	if (v->bitmaps[blk]) {
		*out = v->bitmaps[blk];
		return 0;
	}
	bm = malloc(v->bitmap_bytes);
	if (!bm)
		return vd_error(v->disk, -ENOMEM, "bitmap", off, "out of memory");
	rc = vd_file_pread(v->file, bm, v->bitmap_bytes, off);
	if (rc < 0) {
		free(bm);
		return vd_error(v->disk, rc, "bitmap", off,
				"cannot read the sector bitmap of block %u at offset %llu: %s", blk,
				(unsigned long long)off, vd_strerror(rc));
	}
	if (vd_bitmap_all_set(bm, 0, valid_sectors(v, blk))) {
		free(bm);
		bm = BITMAP_FULL;
	}
	*out = v->bitmaps[blk] = bm;
	return 0;
}

/* ---- reading ---- */

static int data_read(struct vhd *v, void *buf, size_t len, uint64_t off)
{
	int rc = vd_file_pread(v->file, buf, len, off);

	if (rc < 0)
		return vd_error(v->disk, rc, "data", off,
				"read of %zu bytes at offset %llu failed: %s", len,
				(unsigned long long)off, vd_strerror(rc));
	return 0;
}

/* A dynamic disk honours its bitmap: a sector whose bit is clear reads as zeros. */
static int read_in_block(struct vhd *v, uint32_t blk, uint32_t boff, uint8_t *buf, uint32_t n)
{
	uint64_t base;
	uint8_t *bm;
	uint32_t pos = boff, end = boff + n;
	int rc;

	if (v->bat[blk] == VD_BAT_UNUSED) {
		memset(buf, 0, n);
		return 0;
	}
	rc = load_bitmap(v, blk, &bm);
	if (rc < 0)
		return rc;
	base = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	if (bm == BITMAP_FULL)
		return data_read(v, buf, n, base + boff);
	while (pos < end && rc == 0) {
		uint32_t k = pos / VD_SECTOR;
		uint32_t run = vd_bitmap_run(bm, k, v->spb - k);
		uint32_t stop = (k + run) * VD_SECTOR < end ? (k + run) * VD_SECTOR : end;

		if (vd_bitmap_test(bm, k))
			rc = data_read(v, buf + (pos - boff), stop - pos, base + pos);
		else
			memset(buf + (pos - boff), 0, stop - pos);
		pos = stop;
	}
	return rc;
}

static int vhd_pread(void *state, void *buf, size_t len, uint64_t off)
{
	struct vhd *v = state;
	uint8_t *p = buf;

	if (!v->dynamic)
		return data_read(v, buf, len, off);
	while (len) {
		uint32_t blk = (uint32_t)(off / v->block_size);
		uint32_t boff = (uint32_t)(off % v->block_size);
		uint32_t n = len < v->block_size - boff ? (uint32_t)len : v->block_size - boff;
		int rc = read_in_block(v, blk, boff, p, n);

		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

/* ---- writing ---- */

static int fail_write(struct vhd *v, int rc, const char *field, uint64_t off, const char *what)
{
	v->failed = 1;
	return vd_error(v->disk, rc, field, off,
			"%s failed at offset %llu: %s; the image refuses further writes until "
			"reopened",
			what, (unsigned long long)off, vd_strerror(rc));
}

static int data_write(struct vhd *v, const void *buf, size_t len, uint64_t off)
{
	int rc = vd_file_pwrite(v->file, buf, len, off);

	if (rc < 0)
		return vd_error(v->disk, rc, "data", off,
				"write of %zu bytes at offset %llu failed: %s", len,
				(unsigned long long)off, vd_strerror(rc));
	return 0;
}

static int write_bat_entry(struct vhd *v, uint32_t blk, uint32_t sector)
{
	uint8_t be[4];
	uint64_t at = v->hdr.table_offset + 4ull * blk;
	int rc;

	put_be32(be, sector);
	rc = vd_file_pwrite(v->file, be, sizeof(be), at);
	if (rc < 0)
		return fail_write(v, rc, "bat", at, "writing the BAT entry");
	v->bat[blk] = sector;
	return 0;
}

/*
 * Data starts on a 4 KiB boundary, as blktap and Windows do (O_DIRECT and 4Kn
 * drives want it), for blocks of 512 KiB and up; for smaller blocks the gap
 * (up to 3.5 KiB a block) would cost more than it saves, so 512 bytes.
 */
static uint64_t place_block(const struct vhd *v)
{
	uint64_t start = v->data_end, align = v->block_size >= (512u << 10) ? 4096 : VD_SECTOR;

	if (v->end_footer_ok && v->footer_offset > start)
		start = v->footer_offset; /* never write over unknown bytes before the footer */
	if (!v->end_footer_ok && ALIGN_UP(v->file->size, VD_SECTOR) > start)
		start = ALIGN_UP(v->file->size, VD_SECTOR);
	return ALIGN_UP(start + v->bitmap_bytes, align) - v->bitmap_bytes;
}

static int write_footer_at(struct vhd *v, uint64_t off)
{
	uint8_t buf[VD_FOOTER_SIZE];
	struct vd_footer f = v->footer;

	vd_footer_encode(&f, buf);
	return vd_file_pwrite(v->file, buf, sizeof(buf), off);
}

/*
 * Crash-safe allocation, the order VHD-FORMAT.md section 6 asks for:
 *  1. the footer at the new end of file, the bitmap and the data, all past the
 *     BAT's view of the file (a crash here leaks space at most; a lost end
 *     footer is found again through the copy at offset 0);
 *  2. fdatasync, so the block is durable before anything points to it;
 *  3. the BAT entry, made durable by the caller's next vd_flush (until then a
 *     crash loses only this unflushed write, never earlier data).
 */
static int allocate_block(struct vhd *v, uint32_t blk, uint32_t boff, const uint8_t *buf,
			  uint32_t n)
{
	uint64_t bm_off = place_block(v);
	uint64_t end = bm_off + v->bitmap_bytes + v->block_size;
	uint32_t valid = valid_sectors(v, blk);
	uint8_t *bm = calloc(1, v->bitmap_bytes);
	int rc;

	if (!bm)
		return vd_error(v->disk, -ENOMEM, "bitmap", bm_off, "out of memory");
	vd_bitmap_set_range(bm, 0, valid); /* never bits for sectors past the disk's end */
	rc = write_footer_at(v, end);
	if (rc == 0)
		rc = vd_file_pwrite(v->file, bm, v->bitmap_bytes, bm_off);
	if (rc == 0)
		rc = vd_file_pwrite(v->file, buf, n, bm_off + v->bitmap_bytes + boff);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	free(bm);
	if (rc < 0) /* nothing points at the new space yet: the image is unchanged */
		return vd_error(v->disk, rc, "data", bm_off,
				"allocating block %u at offset %llu failed: %s", blk,
				(unsigned long long)bm_off, vd_strerror(rc));
	v->footer_offset = end;
	v->end_footer_ok = 1;
	v->data_end = end;
	rc = write_bat_entry(v, blk, (uint32_t)(bm_off / VD_SECTOR));
	if (rc < 0)
		return rc;
	v->bitmaps[blk] = BITMAP_FULL;
	v->allocated += (uint64_t)valid * VD_SECTOR;
	return 0;
}

static int write_bitmap_range(struct vhd *v, uint32_t blk, const uint8_t *bm, uint32_t s0,
			      uint32_t s1)
{
	uint32_t first = s0 / 8 / VD_SECTOR * VD_SECTOR;
	uint32_t last = ALIGN_UP((s1 + 7) / 8, VD_SECTOR);
	uint64_t at = (uint64_t)v->bat[blk] * VD_SECTOR + first;
	int rc = vd_file_pwrite(v->file, bm + first, last - first, at);

	return rc < 0 ? fail_write(v, rc, "bitmap", at, "writing the sector bitmap") : 0;
}

/*
 * A write into sectors whose bits are clear (blocks written by other tools):
 * whole sectors, with zeros around the caller's bytes, then the bits. The data
 * is synced before the bits so a crash never shows stale bytes as written.
 */
static int write_partial(struct vhd *v, uint32_t blk, uint8_t *bm, uint32_t boff,
			 const uint8_t *buf, uint32_t n)
{
	uint32_t s0 = boff / VD_SECTOR, s1 = (boff + n + VD_SECTOR - 1) / VD_SECTOR;
	uint32_t alen = (s1 - s0) * VD_SECTOR;
	uint64_t base = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	uint8_t *abuf = malloc(alen);
	int rc = abuf ? 0 : -ENOMEM;

	if (rc == 0 && boff % VD_SECTOR)
		rc = read_in_block(v, blk, s0 * VD_SECTOR, abuf, VD_SECTOR);
	if (rc == 0 && (boff + n) % VD_SECTOR)
		rc = read_in_block(v, blk, (s1 - 1) * VD_SECTOR, abuf + alen - VD_SECTOR,
				   VD_SECTOR);
	if (rc == 0) {
		memcpy(abuf + (boff - s0 * VD_SECTOR), buf, n);
		rc = data_write(v, abuf, alen, base + s0 * VD_SECTOR);
	}
	if (rc == 0 && (rc = vd_file_sync(v->file)) < 0)
		rc = fail_write(v, rc, "data", base, "syncing data");
	free(abuf);
	if (rc < 0)
		return rc == -ENOMEM ? vd_error(v->disk, rc, "", UINT64_MAX, "out of memory") : rc;
	vd_bitmap_set_range(bm, s0, s1 - s0);
	rc = write_bitmap_range(v, blk, bm, s0, s1);
	if (rc == 0 && vd_bitmap_all_set(bm, 0, valid_sectors(v, blk))) {
		free(bm);
		v->bitmaps[blk] = BITMAP_FULL;
	}
	return rc;
}

static int write_in_block(struct vhd *v, uint32_t blk, uint32_t boff, const uint8_t *buf,
			  uint32_t n)
{
	uint32_t s0 = boff / VD_SECTOR, s1 = (boff + n + VD_SECTOR - 1) / VD_SECTOR;
	uint8_t *bm;
	int rc;

	if (v->bat[blk] == VD_BAT_UNUSED)
		return allocate_block(v, blk, boff, buf, n);
	rc = load_bitmap(v, blk, &bm);
	if (rc < 0)
		return rc;
	if (bm == BITMAP_FULL || vd_bitmap_all_set(bm, s0, s1 - s0))
		return data_write(v, buf, n,
				  (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes + boff);
	return write_partial(v, blk, bm, boff, buf, n);
}

static int vhd_pwrite(void *state, const void *buf, size_t len, uint64_t off)
{
	struct vhd *v = state;
	const uint8_t *p = buf;

	if (v->failed)
		return vd_error(v->disk, -EIO, "", UINT64_MAX,
				"an earlier write failed and may have left metadata inconsistent; "
				"reopen the image");
	if (!v->dynamic)
		return data_write(v, buf, len, off);
	while (len) {
		uint32_t blk = (uint32_t)(off / v->block_size);
		uint32_t boff = (uint32_t)(off % v->block_size);
		uint32_t n = len < v->block_size - boff ? (uint32_t)len : v->block_size - boff;
		int rc = write_in_block(v, blk, boff, p, n);

		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

static int vhd_flush(void *state)
{
	struct vhd *v = state;
	int rc = vd_file_sync(v->file);

	if (rc < 0)
		return fail_write(v, rc, "", UINT64_MAX, "flush");
	return 0;
}

/* ---- map ---- */

static int map_dynamic(struct vhd *v, uint64_t off, uint64_t len, uint64_t *run_len)
{
	uint32_t blk = (uint32_t)(off / v->block_size);
	uint32_t boff = (uint32_t)(off % v->block_size);
	uint64_t n = len < v->block_size - boff ? len : v->block_size - boff;
	uint8_t *bm;
	uint32_t k, run;
	int rc;

	if (v->bat[blk] == VD_BAT_UNUSED) {
		while (n < len && blk + 1 < v->entries && v->bat[blk + 1] == VD_BAT_UNUSED) {
			blk++;
			n += len - n < v->block_size ? len - n : v->block_size;
		}
		*run_len = n;
		return VD_EXTENT_UNALLOCATED;
	}
	rc = load_bitmap(v, blk, &bm);
	if (rc < 0)
		return rc;
	if (bm == BITMAP_FULL) {
		*run_len = n;
		return VD_EXTENT_ALLOCATED;
	}
	k = boff / VD_SECTOR;
	run = vd_bitmap_run(bm, k, v->spb - k);
	*run_len = (uint64_t)(k + run) * VD_SECTOR - boff;
	if (*run_len > n)
		*run_len = n;
	return vd_bitmap_test(bm, k) ? VD_EXTENT_ALLOCATED : VD_EXTENT_UNALLOCATED;
}

static int vhd_map(void *state, uint64_t off, uint64_t len, uint64_t *run_len)
{
	struct vhd *v = state;

	if (!v->dynamic)
		return vd_file_map_holes(v->file, off, len, run_len);
	return map_dynamic(v, off, len, run_len);
}

/* ---- check: what open tolerates but a user should still hear about ---- */

static void check_azure(struct vhd *v, struct vd_disk *d)
{
	const struct vd_footer *f = &v->footer;
	uint64_t mib = 1024 * 1024;

	if (f->disk_type != VD_TYPE_FIXED)
		vd_warn(d, "footer.disk_type", footer_field(v, 60),
			"azure: the disk is %s; Azure accepts only fixed VHDs (vhdtool convert -O "
			"fixed)",
			f->disk_type == VD_TYPE_DYNAMIC ? "dynamic" : "not fixed");
	if (f->current_size % mib)
		vd_warn(d, "footer.current_size", footer_field(v, 48),
			"azure: virtual size %llu bytes is not a whole number of MiB",
			(unsigned long long)f->current_size);
	if (f->disk_type == VD_TYPE_FIXED && v->file->size != f->current_size + 512)
		vd_warn(d, "file_size", UINT64_MAX,
			"azure: file size %llu is not the virtual size plus the 512-byte footer",
			(unsigned long long)v->file->size);
	if (f->saved_state)
		vd_warn(d, "footer.saved_state", footer_field(v, 84),
			"azure: the saved-state flag is set");
	if (v->virtual_size != f->current_size)
		vd_warn(d, "footer.geometry", footer_field(v, 56),
			"azure: readers disagree on the size (CHS %llu, current size %llu)",
			(unsigned long long)v->virtual_size, (unsigned long long)f->current_size);
}

/* Bits for sectors past the end of the disk in the last block (vhd-util checks this). */
static void check_tail_bits(struct vhd *v, struct vd_disk *d)
{
	uint32_t last;
	uint32_t valid;
	uint8_t *bm;

	if (!v->dynamic || v->entries == 0)
		return;
	for (last = 0; last < v->entries; last++) {
		if (v->bat[last] == VD_BAT_UNUSED)
			continue;
		valid = valid_sectors(v, last);
		if (valid == v->spb || load_bitmap(v, last, &bm) < 0 || bm == BITMAP_FULL)
			continue;
		for (uint32_t k = valid; k < v->spb; k++)
			if (vd_bitmap_test(bm, k)) {
				vd_warn(d, "bitmap", (uint64_t)v->bat[last] * VD_SECTOR + k / 8,
					"block %u has bitmap bits set for sectors past the end of "
					"the disk (sector %u of the block)",
					last, k);
				break;
			}
	}
}

static void vhd_check(void *state, enum vd_check_profile profile, struct vd_disk *d)
{
	struct vhd *v = state;

	check_tail_bits(v, d);
	if (profile == VD_CHECK_AZURE)
		check_azure(v, d);
}

const struct vd_driver vd_vhd_driver = {
	.name = "vhd",
	.state_size = sizeof(struct vhd),
	.probe = vhd_probe,
	.open = vhd_open,
	.close = vhd_close,
	.info = vhd_info,
	.map = vhd_map,
	.pread = vhd_pread,
	.pwrite = vhd_pwrite,
	.flush = vhd_flush,
	.create = vd_vhd_create,
	.check = vhd_check,
};
