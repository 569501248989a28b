/*
 * VHD reads and writes: sector bitmaps, block allocation and the flush that
 * publishes new metadata. Differencing disks get the parent's bytes through
 * the core (vd_backing_pread); the driver never opens a parent itself.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vhd/vhd_drv.h"

uint8_t vd_vhd_bitmap_full;

/* Sectors of block BLK that lie inside the disk (the last block may be cut short). */
uint32_t vd_vhd_valid_sectors(const struct vhd *v, uint32_t blk)
{
	uint64_t start = (uint64_t)blk * v->block_size;
	uint64_t left = v->footer.current_size > start ? v->footer.current_size - start : 0;

	return left >= v->block_size ? v->spb : (uint32_t)(left / VD_SECTOR);
}

int vd_vhd_load_bitmap(struct vhd *v, uint32_t blk, uint8_t **out)
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
	if (vd_bitmap_all_set(bm, 0, vd_vhd_valid_sectors(v, blk))) {
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

/* Bytes this image does not hold: zeros (dynamic) or the parent's (differencing). */
static int absent_read(struct vhd *v, uint8_t *buf, size_t len, uint64_t disk_off)
{
	if (!v->diff) {
		memset(buf, 0, len);
		return 0;
	}
	return vd_backing_pread(v->disk, buf, len, disk_off);
}

static int read_in_block(struct vhd *v, uint32_t blk, uint32_t boff, uint8_t *buf, uint32_t n)
{
	uint64_t base, blk_off = (uint64_t)blk * v->block_size;
	uint32_t pos = boff, end = boff + n;
	uint8_t *bm;
	int rc;

	if (v->bat[blk] == VD_BAT_UNUSED)
		return absent_read(v, buf, n, blk_off + boff);
	rc = vd_vhd_load_bitmap(v, blk, &bm);
	if (rc < 0)
		return rc;
	base = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	if (bm == BITMAP_FULL)
		return data_read(v, buf, n, base + boff);
	/* A clear bit: the spec's "not here" (zeros in a dynamic disk, parent otherwise). */
	while (pos < end && rc == 0) {
		uint32_t k = pos / VD_SECTOR;
		uint32_t run = vd_bitmap_run(bm, k, v->spb - k);
		uint32_t stop = (k + run) * VD_SECTOR < end ? (k + run) * VD_SECTOR : end;

		if (vd_bitmap_test(bm, k))
			rc = data_read(v, buf + (pos - boff), stop - pos, base + pos);
		else
			rc = absent_read(v, buf + (pos - boff), stop - pos, blk_off + pos);
		pos = stop;
	}
	return rc;
}

/* Open guarantees the BAT covers the disk; this keeps a future size bug from memory. */
static int past_bat(struct vhd *v, uint64_t off, size_t len)
{
	if (len == 0 || (off + len - 1) / v->block_size < v->entries)
		return 0;
	return vd_error(v->disk, -EUCLEAN, "header.max_table_entries", v->hdr_offset + 28,
			"offset %llu lies past the BAT's %u entries", (unsigned long long)off,
			v->entries);
}

typedef int (*block_fn)(struct vhd *v, uint32_t blk, uint32_t boff, uint8_t *buf, uint32_t n);

/* Split a range at block boundaries (the checks above keep it inside the BAT). */
static int each_block(struct vhd *v, uint8_t *p, size_t len, uint64_t off, block_fn fn)
{
	if (past_bat(v, off, len))
		return -EUCLEAN;
	while (len) {
		uint32_t blk = (uint32_t)(off / v->block_size);
		uint32_t boff = (uint32_t)(off % v->block_size);
		uint32_t n = len < v->block_size - boff ? (uint32_t)len : v->block_size - boff;
		int rc = fn(v, blk, boff, p, n);

		if (rc < 0)
			return rc;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int vd_vhd_pread(void *state, void *buf, size_t len, uint64_t off)
{
	struct vhd *v = state;
	uint8_t *p = buf;

	if (!v->dynamic)
		return data_read(v, buf, len, off);
	return each_block(v, p, len, off, read_in_block);
}

/* ---- planning asynchronous I/O (see aio.c) ---- */

/*
 * Data already in place is moved by the engine without the driver: a fixed
 * disk, or sectors of an allocated block whose bits are set. Anything that
 * needs metadata (allocation, new bits, the parent's bytes) takes the slow,
 * synchronous path; zeros of a dynamic disk need no I/O at all.
 */
int vd_vhd_plan(void *state, int write, uint64_t off, uint64_t len, uint64_t *file_off,
		uint64_t *run)
{
	struct vhd *v = state;
	uint32_t blk, boff, k, r;
	uint64_t n, base;
	uint8_t *bm;

	if (!v->dynamic) {
		*file_off = off;
		*run = len;
		return VD_PLAN_FILE;
	}
	blk = (uint32_t)(off / v->block_size);
	boff = (uint32_t)(off % v->block_size);
	n = len < v->block_size - boff ? len : v->block_size - boff;
	*run = n;
	if ((write && v->failed) || blk >= v->entries)
		return VD_PLAN_SLOW; /* the slow path says what is wrong */
	if (v->bat[blk] == VD_BAT_UNUSED)
		return write || v->diff ? VD_PLAN_SLOW : VD_PLAN_ZERO;
	if (vd_vhd_load_bitmap(v, blk, &bm) < 0)
		return VD_PLAN_SLOW;
	base = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	*file_off = base + boff;
	if (bm == BITMAP_FULL)
		return VD_PLAN_FILE;
	k = boff / VD_SECTOR;
	r = vd_bitmap_run(bm, k, v->spb - k);
	if ((uint64_t)(k + r) * VD_SECTOR - boff < n)
		*run = (uint64_t)(k + r) * VD_SECTOR - boff;
	if (vd_bitmap_test(bm, k))
		return VD_PLAN_FILE;
	return write || v->diff ? VD_PLAN_SLOW : VD_PLAN_ZERO;
}

/* ---- writing ---- */

static int fail_write(struct vhd *v, int rc, const char *field, uint64_t off, const char *what)
{
	v->failed = 1;
	if (off == UINT64_MAX)
		return vd_error(v->disk, rc, field, off,
				"%s failed: %s; the image refuses further writes until reopened",
				what, vd_strerror(rc));
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

void vd_vhd_mark_dirty(struct vhd *v, uint32_t blk, uint8_t what)
{
	if (!v->dirty[blk])
		v->dirty_list[v->ndirty++] = blk;
	v->dirty[blk] |= what;
}

/*
 * Data starts on a 4 KiB boundary, as blktap and Windows do (O_DIRECT and 4Kn
 * drives want it), for blocks of 512 KiB and up; for smaller blocks the gap
 * (up to 3.5 KiB a block) would cost more than it saves, so 512 bytes.
 */
uint64_t vd_vhd_place_block(const struct vhd *v)
{
	uint64_t start = v->data_end;
	uint64_t align = v->block_size >= (512u << 10) ? 4096 : VD_SECTOR;

	if (v->end_footer_ok && v->footer_offset > start)
		start = v->footer_offset; /* never write over unknown bytes before the footer */
	if (!v->end_footer_ok && ALIGN_UP(v->file->size, VD_SECTOR) > start)
		start = ALIGN_UP(v->file->size, VD_SECTOR);
	return ALIGN_UP(start + v->bitmap_bytes, align) - v->bitmap_bytes;
}

/*
 * The footer is never changed, only moved or restored: write the valid copy
 * byte for byte (reserved bytes a writer set included), so both copies stay
 * identical and a repair converges.
 */
int vd_vhd_write_footer_at(struct vhd *v, uint64_t off)
{
	return vd_file_pwrite(v->file, v->footer_raw, sizeof(v->footer_raw), off);
}

/*
 * A new block at the end of the file: the footer moves past it and the bitmap
 * is written as it must read if the BAT entry became durable before anything
 * else of this block (all ones over zeros in a dynamic disk: zeros; empty in a
 * differencing disk: the parent's data). The BAT entry itself waits for the
 * flush, after an fdatasync of the data (see vd_vhd_flush), so a crash at any
 * point leaves an openable image that at worst leaks this block.
 */
static int allocate_block(struct vhd *v, uint32_t blk)
{
	uint64_t bm_off = vd_vhd_place_block(v);
	uint64_t end = bm_off + v->bitmap_bytes + v->block_size;
	uint8_t *bm;
	int rc;

	/* A BAT entry is a 32-bit sector number: the file cannot grow past 2 TiB. */
	if (bm_off / VD_SECTOR >= VD_BAT_UNUSED)
		return vd_error(
			v->disk, -EFBIG, "bat", UINT64_MAX,
			"a new block would start at offset %llu, past the 2 TiB a VHD's BAT "
			"can address; convert to a disk with larger blocks",
			(unsigned long long)bm_off);
	bm = calloc(1, v->bitmap_bytes);
	if (!bm)
		return vd_error(v->disk, -ENOMEM, "bitmap", bm_off, "out of memory");
	if (!v->diff) /* never bits for sectors past the disk's end */
		vd_bitmap_set_range(bm, 0, vd_vhd_valid_sectors(v, blk));
	rc = vd_vhd_write_footer_at(v, end);
	if (rc == 0)
		rc = vd_file_pwrite(v->file, bm, v->bitmap_bytes, bm_off);
	if (rc < 0) { /* nothing points at the new space: the image is unchanged */
		free(bm);
		return vd_error(v->disk, rc, "data", bm_off,
				"allocating block %u at offset %llu failed: %s", blk,
				(unsigned long long)bm_off, vd_strerror(rc));
	}
	v->footer_offset = end;
	v->end_footer_ok = 1;
	v->data_end = end;
	v->bat[blk] = (uint32_t)(bm_off / VD_SECTOR);
	vd_vhd_mark_dirty(v, blk, DIRTY_BAT);
	if (v->diff) {
		v->bitmaps[blk] = bm;
	} else {
		free(bm);
		v->bitmaps[blk] = BITMAP_FULL;
	}
	v->allocated += (uint64_t)vd_vhd_valid_sectors(v, blk) * VD_SECTOR;
	return 0;
}

/*
 * A write over sectors whose bits are clear: whole sectors, with the bytes
 * around the caller's taken from what the sector reads as now (zeros, or the
 * parent's data), then the bits, which the next flush writes after the data
 * is durable, so a crash never shows a sector as present before its data is.
 */
static int write_partial(struct vhd *v, uint32_t blk, uint8_t *bm, uint32_t boff,
			 const uint8_t *buf, uint32_t n)
{
	uint32_t s0 = boff / VD_SECTOR, s1 = (boff + n + VD_SECTOR - 1) / VD_SECTOR;
	uint32_t alen = (s1 - s0) * VD_SECTOR;
	uint64_t base = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	uint8_t *abuf;
	int rc = 0;

	if (boff % VD_SECTOR == 0 && n % VD_SECTOR == 0) {
		rc = data_write(v, buf, n, base + boff);
	} else {
		abuf = malloc(alen);
		if (!abuf)
			return vd_error(v->disk, -ENOMEM, "", UINT64_MAX, "out of memory");
		if (boff % VD_SECTOR)
			rc = read_in_block(v, blk, s0 * VD_SECTOR, abuf, VD_SECTOR);
		if (rc == 0 && (boff + n) % VD_SECTOR)
			rc = read_in_block(v, blk, (s1 - 1) * VD_SECTOR, abuf + alen - VD_SECTOR,
					   VD_SECTOR);
		if (rc == 0) {
			memcpy(abuf + (boff - s0 * VD_SECTOR), buf, n);
			rc = data_write(v, abuf, alen, base + s0 * VD_SECTOR);
		}
		free(abuf);
	}
	if (rc < 0)
		return rc;
	vd_bitmap_set_range(bm, s0, s1 - s0);
	vd_vhd_mark_dirty(v, blk, DIRTY_BITMAP);
	return 0;
}

static int write_in_block(struct vhd *v, uint32_t blk, uint32_t boff, const uint8_t *buf,
			  uint32_t n)
{
	uint32_t s0 = boff / VD_SECTOR, s1 = (boff + n + VD_SECTOR - 1) / VD_SECTOR;
	uint8_t *bm;
	int rc;

	if (v->bat[blk] == VD_BAT_UNUSED && (rc = allocate_block(v, blk)) < 0)
		return rc;
	rc = vd_vhd_load_bitmap(v, blk, &bm);
	if (rc < 0)
		return rc;
	if (bm == BITMAP_FULL || vd_bitmap_all_set(bm, s0, s1 - s0))
		return data_write(v, buf, n,
				  (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes + boff);
	return write_partial(v, blk, bm, boff, buf, n);
}

static int write_block(struct vhd *v, uint32_t blk, uint32_t boff, uint8_t *buf, uint32_t n)
{
	return write_in_block(v, blk, boff, buf, n);
}

int vd_vhd_pwrite(void *state, const void *buf, size_t len, uint64_t off)
{
	struct vhd *v = state;
	const uint8_t *p = buf;

	if (v->failed)
		return vd_error(v->disk, -EIO, "", UINT64_MAX,
				"an earlier write failed and may have left metadata inconsistent; "
				"reopen the image");
	if (!v->dynamic)
		return data_write(v, buf, len, off);
	/* The loop only passes the pointer along; write_in_block never writes through it. */
	return each_block(v, (uint8_t *)p, len, off, write_block);
}

/* ---- flush: publish bitmaps and BAT entries after their data ---- */

static int write_bitmap(struct vhd *v, uint32_t blk)
{
	uint64_t at = (uint64_t)v->bat[blk] * VD_SECTOR;
	uint8_t *bm = v->bitmaps[blk], *full = NULL;
	int rc;

	if (bm == BITMAP_FULL) {
		full = calloc(1, v->bitmap_bytes);
		if (!full)
			return vd_error(v->disk, -ENOMEM, "", UINT64_MAX, "out of memory");
		vd_bitmap_set_range(full, 0, vd_vhd_valid_sectors(v, blk));
		bm = full;
	}
	rc = vd_file_pwrite(v->file, bm, v->bitmap_bytes, at);
	free(full);
	if (rc < 0)
		return fail_write(v, rc, "bitmap", at, "writing the sector bitmap");
	if (v->bitmaps[blk] != BITMAP_FULL &&
	    vd_bitmap_all_set(v->bitmaps[blk], 0, vd_vhd_valid_sectors(v, blk))) {
		free(v->bitmaps[blk]);
		v->bitmaps[blk] = BITMAP_FULL;
	}
	return 0;
}

static int write_bat_entry(struct vhd *v, uint32_t blk)
{
	uint64_t at = v->hdr.table_offset + 4ull * blk;
	uint8_t be[4];
	int rc;

	put_be32(be, v->bat[blk]);
	rc = vd_file_pwrite(v->file, be, sizeof(be), at);
	return rc < 0 ? fail_write(v, rc, "bat", at, "writing the BAT entry") : 0;
}

static int sync_file(struct vhd *v)
{
	int rc = vd_file_sync(v->file);

	return rc < 0 ? fail_write(v, rc, "", UINT64_MAX, "fdatasync") : 0;
}

/*
 * 1. fdatasync: every data sector written so far (and each new block's footer
 *    and initial bitmap) is durable;
 * 2. the bitmaps with new bits and the new BAT entries, then fdatasync.
 * A bit or a BAT entry thus never reaches the disk before the data it stands
 * for, without a sync on every write: allocation costs nothing until a flush.
 */
int vd_vhd_flush(void *state)
{
	struct vhd *v = state;
	int rc;

	if (v->failed)
		return vd_error(v->disk, -EIO, "", UINT64_MAX,
				"an earlier write failed; the image must be reopened");
	rc = sync_file(v);
	if (rc < 0 || v->ndirty == 0)
		return rc;
	for (uint32_t i = 0; i < v->ndirty && rc == 0; i++)
		if ((v->dirty[v->dirty_list[i]] & DIRTY_BITMAP) &&
		    v->bat[v->dirty_list[i]] != VD_BAT_UNUSED)
			rc = write_bitmap(v, v->dirty_list[i]);
	for (uint32_t i = 0; i < v->ndirty && rc == 0; i++)
		if (v->dirty[v->dirty_list[i]] & DIRTY_BAT)
			rc = write_bat_entry(v, v->dirty_list[i]);
	if (rc == 0)
		rc = sync_file(v);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < v->ndirty; i++)
		v->dirty[v->dirty_list[i]] = 0;
	v->ndirty = 0;
	return 0;
}

/* ---- discard ---- */

static int write_zeros(struct vhd *v, uint64_t off, uint64_t len)
{
	size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
	uint8_t *zeros = calloc(1, chunk ? chunk : 1);
	int rc = zeros ? 0 : vd_error(v->disk, -ENOMEM, "", UINT64_MAX, "out of memory");

	while (rc == 0 && len) {
		size_t n = len < chunk ? (size_t)len : chunk;

		rc = vd_vhd_pwrite(v, zeros, n, off);
		off += n;
		len -= n;
	}
	free(zeros);
	return rc;
}

/*
 * A whole block of a dynamic disk: the entry is cleared (published at the next
 * flush) and its space punched. Either order is safe: a durable entry over a
 * punched block reads zeros through its zeroed bitmap.
 */
void vd_vhd_release_block(struct vhd *v, uint32_t blk)
{
	uint64_t at = (uint64_t)v->bat[blk] * VD_SECTOR;

	if (v->bat[blk] == VD_BAT_UNUSED)
		return;
	vd_file_punch(v->file, at, (uint64_t)v->bitmap_bytes + v->block_size);
	if (v->bitmaps[blk] != BITMAP_FULL)
		free(v->bitmaps[blk]);
	v->bitmaps[blk] = NULL;
	v->bat[blk] = VD_BAT_UNUSED;
	v->allocated -= (uint64_t)vd_vhd_valid_sectors(v, blk) * VD_SECTOR;
	vd_vhd_mark_dirty(v, blk, DIRTY_BAT);
	v->dirty[blk] &= (uint8_t)~DIRTY_BITMAP; /* no bitmap to write for a released block */
}

int vd_vhd_discard(void *state, uint64_t off, uint64_t len)
{
	struct vhd *v = state;
	int rc = 0;

	if (v->failed)
		return vd_error(v->disk, -EIO, "", UINT64_MAX,
				"an earlier write failed; the image must be reopened");
	/* Fixed: a hole reads as zeros. Differencing: zeros must hide the parent. */
	if (!v->dynamic && vd_file_punch(v->file, off, len) == 0)
		return 0;
	if (!v->dynamic || v->diff)
		return write_zeros(v, off, len);
	if (past_bat(v, off, (size_t)len))
		return -EUCLEAN;
	while (rc == 0 && len) {
		uint32_t blk = (uint32_t)(off / v->block_size);
		uint32_t boff = (uint32_t)(off % v->block_size);
		uint64_t n = len < v->block_size - boff ? len : v->block_size - boff;
		uint64_t valid = (uint64_t)vd_vhd_valid_sectors(v, blk) * VD_SECTOR;

		if (boff == 0 && n >= valid)
			vd_vhd_release_block(v, blk);
		else if (v->bat[blk] != VD_BAT_UNUSED)
			rc = write_zeros(v, off, n); /* part of a block: zeros where it was */
		off += n;
		len -= n;
	}
	return rc;
}
