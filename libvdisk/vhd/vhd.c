/*
 * The VHD format driver: opens fixed, dynamic and differencing disks, validating
 * every field it uses against the file; info, map and the structural checks.
 * Reading and writing live in vhd_io.c, parent links in parent.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhd/vhd_drv.h"

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
	if (size >= 512 && (rc = vd_file_pread(v->file, buf, 512, size - 512)) < 0)
		return rc;
	if (size >= 512) {
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
		memcpy(v->footer_raw, end, 512);
		v->end_footer_ok = 1;
		if (!is_sparse_type(fe->disk_type))
			return 0;
		v->copy0_bad = r0 != 0 || memcmp(end, copy, 512) != 0;
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
		memcpy(v->footer_raw, copy, 512);
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
	if (re < VD_DECODE_BAD_CHECKSUM) /* an I/O error, not a decoding verdict */
		return vd_error(v->disk, re, "footer", v->footer_offset,
				"cannot read the footer: %s", vd_strerror(re));
	if (v->file->size >= 512 && (r0 = vd_file_pread(v->file, copy, 512, 0)) < 0)
		return vd_error(v->disk, r0, "footer", 0, "cannot read the footer copy: %s",
				vd_strerror(r0));
	if (v->file->size >= 512)
		r0 = vd_footer_decode(copy, &f0);
	return choose_footer(v, re, end, &fe, r0, copy, &f0);
}

/* Offsets in messages are absolute: the footer fields of the copy in use. */
uint64_t vd_vhd_footer_field(const struct vhd *v, unsigned off)
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
		vd_warn(v->disk, "footer.uuid", vd_vhd_footer_field(v, 68),
			"unique ID (UUID) is all zeros; a differencing disk could not name this "
			"parent");
	if (!max_chs && vd_chs_bytes(f->cylinders, f->heads, f->sectors) > f->current_size)
		vd_warn(v->disk, "footer.geometry", vd_vhd_footer_field(v, 56),
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
		return vd_error(d, -EOPNOTSUPP, "footer.version", vd_vhd_footer_field(v, 12),
				"unsupported VHD version %u.%u (only 1.x exists)", f->version >> 16,
				f->version & 0xFFFF);
	if (f->disk_type != VD_TYPE_FIXED && f->disk_type != VD_TYPE_DYNAMIC &&
	    f->disk_type != VD_TYPE_DIFFERENCING)
		return vd_error(
			d, -EUCLEAN, "footer.disk_type", vd_vhd_footer_field(v, 60),
			"unknown disk type %u (expected 2 fixed, 3 dynamic, 4 differencing)",
			f->disk_type);
	if (f->current_size % VD_SECTOR)
		return vd_error(d, -EUCLEAN, "footer.current_size", vd_vhd_footer_field(v, 48),
				"current size %llu is not a multiple of 512",
				(unsigned long long)f->current_size);
	if (!(f->features & VD_FEATURE_RESERVED))
		vd_warn(d, "footer.features", vd_vhd_footer_field(v, 8),
			"reserved feature bit 0x2 is not set (features 0x%08x)", f->features);
	if (f->saved_state > 1)
		vd_warn(d, "footer.saved_state", vd_vhd_footer_field(v, 84),
			"saved state is %u (not 0 or 1)", f->saved_state);
	footer_warnings(v);
	v->virtual_size = vd_footer_virtual_size(f);
	return 0;
}

static int open_fixed(struct vhd *v)
{
	if (!v->end_footer_ok || v->footer.current_size > v->footer_offset)
		return vd_error(
			v->disk, -EUCLEAN, "footer.current_size", vd_vhd_footer_field(v, 48),
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
		return vd_error(d, -EUCLEAN, "footer.data_offset", vd_vhd_footer_field(v, 16),
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
	/* Without the (size + bs - 1) form: that wraps for sizes near 2^64 (fuzz finding). */
	need = v->footer.current_size / bs + (v->footer.current_size % bs != 0);
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
	if (v->end_footer_ok &&
	    (overlaps(h->table_offset, bat_bytes, v->footer_offset, VD_FOOTER_SIZE) ||
	     overlaps(ho, VD_DYNHDR_SIZE, v->footer_offset, VD_FOOTER_SIZE)))
		return vd_error(d, -EUCLEAN, "header.table_offset", ho + 16,
				"the BAT (offset 0x%llx, %u entries) or the header overlaps the "
				"footer at the end of the file",
				(unsigned long long)h->table_offset, h->max_table_entries);
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
	v->dirty = calloc((size_t)v->entries + 1, 1);
	v->dropped = v->checking ? malloc((size_t)v->entries * sizeof(uint32_t) + 1) : NULL;
	v->dirty_list = malloc((size_t)v->entries * sizeof(uint32_t) + 1);
	if (!raw || !v->bat || !v->bitmaps || !v->dirty || !v->dirty_list ||
	    (v->checking && !v->dropped)) {
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

/*
 * In check mode a bad BAT entry is recorded and dropped (so later reads never
 * follow it) and the scan goes on; otherwise the open fails with the error.
 */
static int soft_error(struct vhd *v, int rc, uint32_t blk)
{
	if (!v->checking || rc == -ENOMEM)
		return rc;
	vd_warn(v->disk, v->disk->err_field, v->disk->err_offset, "%s", vd_errmsg_bare(v->disk));
	if (blk != UINT32_MAX) {
		v->bat[blk] = VD_BAT_UNUSED;
		v->dropped[v->ndropped++] = blk; /* room for every entry: see read_bat */
	} else {
		v->overlap = 1;
	}
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
	v->allocated += (uint64_t)vd_vhd_valid_sectors(v, i) * VD_SECTOR;
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
		v->diff = v->footer.disk_type == VD_TYPE_DIFFERENCING;
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
	free(v->dirty);
	free(v->dirty_list);
	free(v->dropped);
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
	if (v->diff) {
		memcpy(info->parent_uuid, v->hdr.parent_uuid, 16);
		info->parent_timestamp = v->hdr.parent_timestamp;
	}
	info->size_from_chs = vd_footer_uses_chs(f) &&
			      vd_chs_bytes(f->cylinders, f->heads, f->sectors) <= f->current_size;
	return 0;
}

/* ---- map ---- */

static int map_dynamic(struct vhd *v, uint64_t off, uint64_t len, uint64_t *run_len)
{
	uint32_t blk = (uint32_t)(off / v->block_size);
	uint32_t boff = (uint32_t)(off % v->block_size);
	uint64_t n = len < v->block_size - boff ? len : v->block_size - boff;
	uint8_t *bm;

	if (off / v->block_size >= v->entries)
		return vd_error(v->disk, -EUCLEAN, "header.max_table_entries", v->hdr_offset + 28,
				"offset %llu lies past the BAT's %u entries",
				(unsigned long long)off, v->entries);
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
	rc = vd_vhd_load_bitmap(v, blk, &bm);
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
		vd_warn(d, "footer.disk_type", vd_vhd_footer_field(v, 60),
			"azure: the disk is %s; Azure accepts only fixed VHDs (vhdtool convert -O "
			"fixed)",
			f->disk_type == VD_TYPE_DYNAMIC ? "dynamic" : "not fixed");
	if (f->current_size % mib)
		vd_warn(d, "footer.current_size", vd_vhd_footer_field(v, 48),
			"azure: virtual size %llu bytes is not a whole number of MiB",
			(unsigned long long)f->current_size);
	if (f->disk_type == VD_TYPE_FIXED && v->file->size != f->current_size + 512)
		vd_warn(d, "file_size", UINT64_MAX,
			"azure: file size %llu is not the virtual size plus the 512-byte footer",
			(unsigned long long)v->file->size);
	if (f->saved_state)
		vd_warn(d, "footer.saved_state", vd_vhd_footer_field(v, 84),
			"azure: the saved-state flag is set");
	if (v->virtual_size != f->current_size)
		vd_warn(d, "footer.geometry", vd_vhd_footer_field(v, 56),
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
		valid = vd_vhd_valid_sectors(v, last);
		if (valid == v->spb || vd_vhd_load_bitmap(v, last, &bm) < 0 || bm == BITMAP_FULL)
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

/* Each block blktap's batmap calls full must be allocated with every bit set. */
static void check_batmap_bits(struct vhd *v, struct vd_disk *d, const uint8_t *map, uint64_t at)
{
	for (uint32_t i = 0; i < v->entries; i++) {
		uint8_t *bm;

		if (!vd_bitmap_test(map, i))
			continue;
		if (v->bat[i] == VD_BAT_UNUSED || vd_vhd_load_bitmap(v, i, &bm) < 0 ||
		    bm != BITMAP_FULL) {
			vd_warn(d, "batmap", at + i / 8,
				"blktap batmap marks block %u as full, but it is %s", i,
				v->bat[i] == VD_BAT_UNUSED ? "not allocated" : "not fully present");
			return; /* one is enough to say the batmap is stale */
		}
	}
}

/*
 * blktap's batmap (creator "tap", after the BAT): its checksum over the map and
 * its claims, as vhd-util check verifies them.
 */
static void check_batmap(struct vhd *v, struct vd_disk *d)
{
	uint64_t hdr = ALIGN_UP(v->hdr.table_offset + (uint64_t)v->entries * 4, VD_SECTOR);
	uint8_t bh[512], *map;
	uint64_t off, len;
	uint32_t sum = 0;

	if (!v->dynamic || v->file->size < hdr + 512 || vd_file_pread(v->file, bh, 512, hdr) < 0 ||
	    memcmp(bh, "tdbatmap", 8) != 0)
		return;
	off = get_be64(bh + 8);
	len = (uint64_t)get_be32(bh + 16) * VD_SECTOR;
	if (len < (v->entries + 7) / 8 || len > (64u << 20) || off > v->file->size ||
	    len > v->file->size - off) {
		vd_warn(d, "batmap", hdr + 8,
			"blktap batmap (offset 0x%llx, %llu bytes) lies "
			"outside the file or does not cover the BAT",
			(unsigned long long)off, (unsigned long long)len);
		return;
	}
	map = malloc(len);
	if (!map || vd_file_pread(v->file, map, len, off) < 0) {
		free(map);
		return;
	}
	for (uint64_t i = 0; i < len; i++)
		sum += map[i];
	if (~sum != get_be32(bh + 24))
		vd_warn(d, "batmap.checksum", hdr + 24,
			"blktap batmap checksum mismatch (stored 0x%08x, computed 0x%08x)",
			get_be32(bh + 24), ~sum);
	else
		check_batmap_bits(v, d, map, off);
	free(map);
}

static void vhd_check(void *state, enum vd_check_profile profile, struct vd_disk *d)
{
	struct vhd *v = state;

	check_tail_bits(v, d);
	check_batmap(v, d);
	if (profile == VD_CHECK_AZURE)
		check_azure(v, d);
}

/* ---- repair: only what loses nothing ---- */

static int repaired(struct vd_disk *d, int rc, const char *field, uint64_t off, const char *what)
{
	if (rc < 0)
		return vd_error(d, rc, field, off, "repair failed while %s: %s", what,
				vd_strerror(rc));
	vd_warn(d, field, off, "repaired: %s", what);
	return 0;
}

/*
 * The end footer from the copy at 0 (appended, so nothing is overwritten), the
 * copy at 0 from the end footer, and BAT entries pointing past the end of the
 * file cleared (their data is not in the file). Overlapping blocks are refused:
 * which of two entries holds the data cannot be known.
 */
static int vhd_repair(void *state, struct vd_disk *d)
{
	struct vhd *v = state;
	uint8_t be[4] = {0xFF, 0xFF, 0xFF, 0xFF};
	int rc = 0;

	if (v->overlap)
		return vd_error(d, -EUCLEAN, "bat", v->hdr.table_offset,
				"BAT entries overlap; which one holds the data cannot be told, so "
				"nothing was changed (copy the readable data out with vhdtool "
				"convert)");
	for (uint32_t i = 0; rc == 0 && i < v->ndropped; i++) {
		uint64_t at = v->hdr.table_offset + 4ull * v->dropped[i];

		rc = repaired(d, vd_file_pwrite(v->file, be, 4, at), "bat", at,
			      "cleared a BAT entry that pointed outside the file");
	}
	if (rc == 0 && v->dynamic && !v->end_footer_ok) {
		uint64_t at = ALIGN_UP(v->file->size, VD_SECTOR);

		if (at < v->data_end)
			at = v->data_end;
		rc = repaired(d, vd_vhd_write_footer_at(v, at), "footer", at,
			      "restored the end footer from the copy at offset 0");
	}
	if (rc == 0 && v->dynamic && v->copy0_bad)
		rc = repaired(d, vd_vhd_write_footer_at(v, 0), "footer", 0,
			      "rewrote the footer copy at offset 0 from the end footer");
	if (rc == 0)
		rc = vd_file_sync(v->file);
	return rc;
}

const struct vd_driver vd_vhd_driver = {
	.name = "vhd",
	.state_size = sizeof(struct vhd),
	.probe = vhd_probe,
	.open = vhd_open,
	.close = vhd_close,
	.info = vhd_info,
	.map = vhd_map,
	.pread = vd_vhd_pread,
	.pwrite = vd_vhd_pwrite,
	.flush = vd_vhd_flush,
	.discard = vd_vhd_discard,
	.plan = vd_vhd_plan,
	.create = vd_vhd_create,
	.get_parent = vd_vhd_get_parent,
	.set_parent = vd_vhd_set_parent,
	.create_child = vd_vhd_create_child,
	.check = vhd_check,
	.repair = vhd_repair,
};
