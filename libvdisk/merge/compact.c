/*
 * Compacting a dynamic or differencing VHD, as Hyper-V's Optimize-VHD does:
 *
 * 1. Drop: a block that reads as zeros (dynamic), or whose sectors all equal
 *    the parent's (differencing), loses its BAT entry; in a differencing disk
 *    the bits of sectors equal to the parent's are cleared. Each change reads
 *    the same before and after, so it is safe in any order and at any crash.
 * 2. Pack: the last blocks of the file move into the holes below them, in
 *    batches: copy, fdatasync, then the BAT entries, fdatasync. Until an entry
 *    is durable the old copy is the one read, and nothing refers to a hole, so
 *    a crash at any point leaves an image that reads the same.
 * 3. Cut: the footer is written after the last structure still in use, made
 *    durable, and the file is truncated after it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhd/vhd_drv.h"

#define BATCH_BYTES (64u << 20) /* blocks copied between two syncs */

struct extent {
	uint64_t start, end;
	uint32_t blk; /* UINT32_MAX for metadata */
};

struct packer {
	struct vhd *v;
	struct vd_compact_result *res;
	const struct vd_compact_opts *opts;
	uint64_t done, total; /* progress, in bytes of blocks looked at or moved */
	uint8_t *buf, *pbuf;
	struct vd_range *free; /* the caller's free ranges, sorted */
	size_t nfree;
};

static void progress(struct packer *p, uint64_t add)
{
	p->done += add;
	if (p->opts->progress)
		p->opts->progress(p->opts->ctx, p->done, p->total);
}

/* ---- 1. drop ---- */

static int cmp_range(const void *a, const void *b)
{
	const struct vd_range *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* 1 when the caller named every byte of block BLK as unused (guest free space). */
static int block_is_free(const struct packer *p, uint32_t blk)
{
	uint64_t start = (uint64_t)blk * p->v->block_size;
	uint64_t end = start + (uint64_t)vd_vhd_valid_sectors(p->v, blk) * VD_SECTOR;
	size_t lo = 0, hi = p->nfree;

	/* The last range starting at or before START (ranges sorted by offset). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (p->free[mid].offset <= start)
			lo = mid;
		else
			hi = mid;
	}
	return p->nfree && p->free[lo].offset <= start &&
	       p->free[lo].length >= end - p->free[lo].offset;
}

/* A private copy of block BLK's bitmap, to clear bits in. */
static int own_bitmap(struct vhd *v, uint32_t blk, uint8_t **out)
{
	int rc = vd_vhd_load_bitmap(v, blk, out);

	if (rc == 0 && *out == BITMAP_FULL) {
		uint8_t *bm = calloc(1, v->bitmap_bytes);

		if (!bm)
			return vd_error(v->disk, -ENOMEM, "", UINT64_MAX, "out of memory");
		vd_bitmap_set_range(bm, 0, vd_vhd_valid_sectors(v, blk));
		*out = v->bitmaps[blk] = bm;
	}
	return rc;
}

/*
 * Clear the bits of sectors that hold what the parent holds. Returns the
 * number of bits still set, or -errno.
 */
static int thin_diff_block(struct packer *p, uint32_t blk, uint32_t n)
{
	struct vhd *v = p->v;
	uint64_t boff = (uint64_t)blk * v->block_size;
	uint8_t *bm;
	int rc = own_bitmap(v, blk, &bm), left = 0, cleared = 0;

	if (rc == 0)
		rc = vd_backing_pread(v->disk, p->pbuf, (size_t)n * VD_SECTOR, boff);
	for (uint32_t k = 0; rc == 0 && k < n; k++) {
		if (!vd_bitmap_test(bm, k))
			continue;
		if (memcmp(p->buf + (size_t)k * VD_SECTOR, p->pbuf + (size_t)k * VD_SECTOR,
			   VD_SECTOR) != 0) {
			left++;
			continue;
		}
		bm[k >> 3] &= (uint8_t) ~(0x80u >> (k & 7));
		cleared++;
	}
	if (rc < 0)
		return rc;
	if (cleared) {
		vd_vhd_mark_dirty(v, blk, DIRTY_BITMAP);
		p->res->sectors_cleared += (uint64_t)cleared;
	}
	return left;
}

/* Does block BLK still hold anything its absence would not give back? */
static int block_needed(struct packer *p, uint32_t blk)
{
	struct vhd *v = p->v;
	uint32_t n = vd_vhd_valid_sectors(v, blk);
	uint64_t data = (uint64_t)v->bat[blk] * VD_SECTOR + v->bitmap_bytes;
	uint8_t *bm;
	int rc;

	if (block_is_free(p, blk))
		return 0;
	rc = vd_vhd_load_bitmap(v, blk, &bm);
	if (rc == 0 && (rc = vd_file_pread(v->file, p->buf, (size_t)n * VD_SECTOR, data)) < 0)
		rc = vd_error(v->disk, rc, "data", data, "cannot read block %u: %s", blk,
			      vd_strerror(rc));
	if (rc < 0)
		return rc;
	if (v->diff)
		return thin_diff_block(p, blk, n);
	for (uint32_t k = 0; k < n; k++)
		if ((bm == BITMAP_FULL || vd_bitmap_test(bm, k)) &&
		    !vd_is_zero(p->buf + (size_t)k * VD_SECTOR, VD_SECTOR))
			return 1; /* clear bits read as zeros whatever the sector holds */
	return 0;
}

static int drop_blocks(struct packer *p)
{
	struct vhd *v = p->v;
	int rc = 0;

	for (uint32_t blk = 0; blk < v->entries && rc == 0; blk++) {
		if (v->bat[blk] == VD_BAT_UNUSED)
			continue;
		rc = block_needed(p, blk);
		if (rc == 0) {
			vd_vhd_release_block(v, blk);
			p->res->blocks_dropped++;
		}
		rc = rc < 0 ? rc : 0;
		progress(p, v->block_size);
	}
	/* Bits and entries durable before any block moves into a freed hole. */
	return rc == 0 ? vd_vhd_flush(v) : rc;
}

/* ---- 2. pack ---- */

static int cmp_extent(const void *a, const void *b)
{
	const struct extent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Everything in the file that is in use: copy 0, header, BAT, locators, blocks. */
static struct extent *used_extents(struct vhd *v, size_t *count)
{
	struct extent *e = malloc(sizeof(*e) * ((size_t)v->entries + 11));
	size_t n = 0;

	if (!e)
		return NULL;
	e[n++] = (struct extent){0, VD_FOOTER_SIZE, UINT32_MAX};
	e[n++] = (struct extent){v->hdr_offset, v->hdr_offset + VD_DYNHDR_SIZE, UINT32_MAX};
	e[n++] = (struct extent){v->hdr.table_offset,
				 ALIGN_UP(v->hdr.table_offset + 4ull * v->entries, VD_SECTOR),
				 UINT32_MAX};
	for (int i = 0; i < 8; i++) {
		const struct vd_locator *l = &v->hdr.loc[i];
		int64_t space = vd_locator_space_bytes(l->data_space);

		if (l->code != VD_LOC_NONE)
			e[n++] = (struct extent){
				l->data_offset,
				l->data_offset + (space > 0 ? (uint64_t)space : l->data_length),
				UINT32_MAX};
	}
	for (uint32_t blk = 0; blk < v->entries; blk++)
		if (v->bat[blk] != VD_BAT_UNUSED) {
			uint64_t at = (uint64_t)v->bat[blk] * VD_SECTOR;

			e[n++] = (struct extent){at, at + v->bitmap_bytes + v->block_size, blk};
		}
	qsort(e, n, sizeof(*e), cmp_extent);
	*count = n;
	return e;
}

/* Where a block goes in [START, END): data 4 KiB-aligned when it fits, else packed. */
static uint64_t fit(const struct vhd *v, uint64_t start, uint64_t end)
{
	uint64_t need = (uint64_t)v->bitmap_bytes + v->block_size;
	uint64_t aligned = ALIGN_UP(start + v->bitmap_bytes, 4096) - v->bitmap_bytes;

	if (v->block_size >= (512u << 10) && aligned + need <= end)
		return aligned;
	return start + need <= end ? start : UINT64_MAX;
}

struct move {
	uint32_t blk;
	uint64_t to;
};

static int copy_block(struct packer *p, const struct move *m)
{
	struct vhd *v = p->v;
	uint64_t from = (uint64_t)v->bat[m->blk] * VD_SECTOR;
	size_t len = (size_t)v->bitmap_bytes + v->block_size;
	int rc = vd_file_pread(v->file, p->buf, len, from);

	if (rc == 0)
		rc = vd_file_pwrite(v->file, p->buf, len, m->to);
	if (rc < 0)
		return vd_error(v->disk, rc, "data", m->to, "moving block %u to offset %llu: %s",
				m->blk, (unsigned long long)m->to, vd_strerror(rc));
	progress(p, v->block_size);
	return 0;
}

/* The copies durable, then the entries that point at them, durable too. */
static int commit_moves(struct packer *p, const struct move *m, size_t n)
{
	struct vhd *v = p->v;
	int rc = vd_file_sync(v->file);

	for (size_t i = 0; i < n && rc == 0; i++) {
		v->bat[m[i].blk] = (uint32_t)(m[i].to / VD_SECTOR);
		vd_vhd_mark_dirty(v, m[i].blk, DIRTY_BAT);
		p->res->blocks_moved++;
	}
	if (rc == 0)
		rc = vd_vhd_flush(v);
	return rc;
}

/*
 * Walk the blocks from the end of the file down, each into the lowest hole
 * below it. Holes only shrink from the front, so one pass over both lists.
 */
static int pack(struct packer *p, struct extent *e, size_t n)
{
	struct vhd *v = p->v;
	size_t cap = BATCH_BYTES / (v->block_size + v->bitmap_bytes) + 1, nm = 0, g = 0;
	struct move *m = malloc(sizeof(*m) * cap);
	uint64_t hole = e[0].end;
	int rc = m ? 0 : -ENOMEM;

	for (size_t top = n; rc == 0 && top-- > 0;) {
		uint64_t to = UINT64_MAX;

		if (e[top].blk == UINT32_MAX)
			break; /* metadata cannot move: nothing below it is cut off either */
		/* Hole g runs from HOLE to the start of extent g + 1, at most the block. */
		while (g < top && (to = fit(v, hole, e[g + 1].start)) == UINT64_MAX)
			if (++g <= top && e[g].end > hole)
				hole = e[g].end;
		if (to == UINT64_MAX)
			break;
		m[nm++] = (struct move){e[top].blk, to};
		rc = copy_block(p, &m[nm - 1]);
		hole = to + v->bitmap_bytes + v->block_size;
		e[top].start = to;
		e[top].end = hole;
		if (rc == 0 && nm == cap) {
			rc = commit_moves(p, m, nm);
			nm = 0;
		}
	}
	if (rc == 0 && nm)
		rc = commit_moves(p, m, nm);
	free(m);
	return rc;
}

/* ---- 3. cut ---- */

static int cut(struct vhd *v, const struct extent *e, size_t n)
{
	uint64_t end = 0;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		end = e[i].end > end ? e[i].end : end;
	end = ALIGN_UP(end, VD_SECTOR);
	if (v->end_footer_ok && end >= v->footer_offset)
		return 0;
	/* Only space nothing durable refers to lies past END. */
	rc = vd_vhd_write_footer_at(v, end);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc == 0 && ftruncate(v->file->fd, (off_t)(end + VD_FOOTER_SIZE)) < 0)
		rc = -errno;
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc < 0)
		return vd_error(v->disk, rc, "footer", end,
				"cannot cut the file after offset %llu: %s",
				(unsigned long long)end, vd_strerror(rc));
	v->file->size = end + VD_FOOTER_SIZE;
	v->footer_offset = v->data_end = end;
	v->end_footer_ok = 1;
	return 0;
}

/* Holes left below the cut (dropped blocks nothing moved into) give their space back. */
static void punch_holes(struct vhd *v, const struct extent *e, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint64_t a = ALIGN_UP(e[i].end, 4096), b = e[i + 1].start / 4096 * 4096;

		if (b > a)
			vd_file_punch(v->file, a, b - a);
	}
}

static int has_batmap(struct vhd *v)
{
	uint64_t at = ALIGN_UP(v->hdr.table_offset + 4ull * v->entries, VD_SECTOR);
	uint8_t sig[8];

	return at + 8 <= v->file->size && vd_file_pread(v->file, sig, 8, at) == 0 &&
	       memcmp(sig, "tdbatmap", 8) == 0;
}

static int compact_image(struct vd_disk *d, const struct vd_compact_opts *opts,
			 struct vd_compact_result *res)
{
	struct vhd *v = d->state;
	struct packer p = {.v = v, .res = res, .opts = opts};
	struct extent *e = NULL;
	size_t n = 0;
	int rc = 0;

	if (!v->dynamic)
		return vd_error(d, -EINVAL, "", UINT64_MAX,
				"a fixed disk has no blocks to drop; vhdtool convert -O dynamic "
				"makes a compact copy");
	if (has_batmap(v))
		return vd_error(d, -EINVAL, "batmap", UINT64_MAX,
				"a blktap disk with a batmap; compact it with vhd-util, or "
				"vhdtool convert it to a new dynamic disk");
	res->bytes_before = v->file->size;
	p.total = (v->allocated / v->block_size + 1) * 2 * v->block_size;
	p.buf = malloc((size_t)v->bitmap_bytes + v->block_size);
	p.pbuf = malloc(v->block_size);
	if (!p.buf || !p.pbuf)
		rc = vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	if (rc == 0 && opts->nfree && !(p.free = malloc(opts->nfree * sizeof(*p.free))))
		rc = vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	if (rc == 0 && opts->nfree) {
		memcpy(p.free, opts->free_ranges, opts->nfree * sizeof(*p.free));
		qsort(p.free, opts->nfree, sizeof(*p.free), cmp_range);
		p.nfree = opts->nfree;
	}
	if (rc == 0)
		rc = vd_flush(d); /* the walk trusts the durable BAT */
	if (rc == 0)
		rc = drop_blocks(&p);
	if (rc == 0 && !(e = used_extents(v, &n)))
		rc = vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	if (rc == 0)
		rc = pack(&p, e, n);
	if (rc == 0) {
		qsort(e, n, sizeof(*e), cmp_extent);
		rc = cut(v, e, n);
	}
	if (rc == 0)
		punch_holes(v, e, n);
	res->bytes_after = v->file->size;
	free(e);
	free(p.buf);
	free(p.pbuf);
	free(p.free);
	return rc;
}

int vd_compact(const char *path, const struct vd_compact_opts *opts,
	       struct vd_compact_result *result, char **errmsg)
{
	/*
	 * Exactly PATH (not a checkpoint's active state), and FORCE: an image that
	 * children depend on may be compacted, since it reads the same afterwards.
	 */
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_FORCE,
				 .format = "vhd"};
	struct vd_compact_opts none = {0};
	struct vd_compact_result res = {0};
	struct vd_disk *d = NULL;
	int rc;

	if (errmsg)
		*errmsg = NULL;
	if (!opts)
		opts = &none;
	rc = vd_open(path, &o, &d);
	if (rc == 0)
		rc = compact_image(d, opts, &res);
	if (rc < 0 && errmsg)
		*errmsg = strdup(d && d->errmsg[0] ? vd_errmsg(d) : vd_strerror(rc));
	if (vd_close(d) < 0 && rc == 0) {
		rc = -EIO;
		if (errmsg)
			*errmsg = strdup("closing the image failed");
	}
	if (result)
		*result = res;
	return rc;
}
