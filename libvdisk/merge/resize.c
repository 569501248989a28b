/*
 * Expanding (and, on request, shrinking) fixed and dynamic VHDs: the new size in
 * both footers with its geometry, and for dynamic disks a BAT that grows into
 * the free space after it. Each step leaves an image that opens.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhd/vhd_drv.h"

/* The footer for SIZE, same identity; the chosen copy's raw bytes follow it. */
static void set_size(struct vhd *v, uint64_t size)
{
	/* Original size too: libvhdi (20210425) reports that field as the disk's size. */
	v->footer.current_size = v->footer.original_size = size;
	vd_chs_from_size(size, &v->footer.cylinders, &v->footer.heads, &v->footer.sectors);
	vd_footer_encode(&v->footer, v->footer_raw);
}

/* First byte after the BAT that something else uses: blocks, locators, batmap, footer. */
static uint64_t bat_room_end(const struct vhd *v)
{
	uint64_t end = v->end_footer_ok ? v->footer_offset : v->file->size;

	for (uint32_t i = 0; i < v->entries; i++)
		if (v->bat[i] != VD_BAT_UNUSED && (uint64_t)v->bat[i] * VD_SECTOR < end)
			end = (uint64_t)v->bat[i] * VD_SECTOR;
	for (int i = 0; i < 8; i++)
		if (v->hdr.loc[i].code != VD_LOC_NONE &&
		    v->hdr.loc[i].data_offset > v->hdr.table_offset &&
		    v->hdr.loc[i].data_offset < end)
			end = v->hdr.loc[i].data_offset;
	return end;
}

/* Locators and blktap's batmap stay where they are: refuse to grow over them. */
static uint64_t fixed_room_end(const struct vhd *v)
{
	uint64_t end = UINT64_MAX, bat_end = ALIGN_UP(v->hdr.table_offset + 4ull * v->entries, 512);
	uint8_t sig[8];

	for (int i = 0; i < 8; i++)
		if (v->hdr.loc[i].code != VD_LOC_NONE &&
		    v->hdr.loc[i].data_offset > v->hdr.table_offset &&
		    v->hdr.loc[i].data_offset < end)
			end = v->hdr.loc[i].data_offset;
	if (bat_end + 8 <= v->file->size && vd_file_pread(v->file, sig, 8, bat_end) == 0 &&
	    memcmp(sig, "tdbatmap", 8) == 0 && bat_end < end)
		end = bat_end;
	return end;
}

/*
 * Blocks lying where the BAT must grow move to the end of the file, as new
 * blocks are placed: the footer first (past the new place), then bitmap and
 * data, fdatasync; only then the BAT entries, fdatasync. Until an entry is
 * durable the old copy is the one read, so a crash leaves at worst a leaked
 * copy at the end.
 */
static int move_blocks_from(struct vhd *v, uint64_t from, uint64_t to)
{
	size_t len = (size_t)v->bitmap_bytes + v->block_size;
	uint8_t *buf = malloc(len);
	uint32_t moved = 0, *list = calloc(v->entries ? v->entries : 1, sizeof(uint32_t));
	int rc = buf && list ? 0 : -ENOMEM;

	for (uint32_t blk = 0; rc == 0 && blk < v->entries; blk++) {
		uint64_t at = (uint64_t)v->bat[blk] * VD_SECTOR, dest, end;

		if (v->bat[blk] == VD_BAT_UNUSED || at + len <= from || at >= to)
			continue;
		dest = vd_vhd_place_block(v);
		end = dest + len;
		rc = vd_vhd_write_footer_at(v, end);
		if (rc == 0 && (rc = vd_file_pread(v->file, buf, len, at)) == 0)
			rc = vd_file_pwrite(v->file, buf, len, dest);
		if (rc < 0)
			break;
		v->footer_offset = v->data_end = end;
		v->end_footer_ok = 1;
		v->bat[blk] = (uint32_t)(dest / VD_SECTOR);
		list[moved++] = blk;
	}
	if (rc == 0 && moved)
		rc = vd_file_sync(v->file);
	for (uint32_t i = 0; rc == 0 && i < moved; i++) {
		uint8_t be[4];

		put_be32(be, v->bat[list[i]]);
		rc = vd_file_pwrite(v->file, be, 4, v->hdr.table_offset + 4ull * list[i]);
	}
	if (rc == 0 && moved)
		rc = vd_file_sync(v->file);
	free(buf);
	free(list);
	if (rc < 0)
		return vd_error(v->disk, rc, "bat", UINT64_MAX,
				"moving the blocks in the way of the larger BAT failed: %s",
				vd_strerror(rc));
	return 0;
}

/* No block in the way, but the end footer is: it moves past the new BAT first. */
static int footer_past(struct vhd *v, uint64_t end)
{
	uint64_t at = v->end_footer_ok ? v->footer_offset : ALIGN_UP(v->file->size, VD_SECTOR);
	int rc;

	if (at >= end)
		return 0;
	rc = vd_vhd_write_footer_at(v, end);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc < 0)
		return vd_error(v->disk, rc, "footer", end, "moving the footer failed: %s",
				vd_strerror(rc));
	v->footer_offset = end;
	v->end_footer_ok = 1;
	return 0;
}

static int grow_bat(struct vhd *v, uint32_t need)
{
	uint64_t from = v->hdr.table_offset + 4ull * v->entries,
		 to = v->hdr.table_offset + 4ull * need;
	uint8_t hbuf[VD_DYNHDR_SIZE], *ff;
	struct vd_dynhdr h = v->hdr;
	int rc;

	uint64_t to_end = ALIGN_UP(to, VD_SECTOR);

	if (to_end > fixed_room_end(v))
		return vd_error(v->disk, -ENOSPC, "header.max_table_entries", v->hdr_offset + 28,
				"the BAT would have to grow over a parent locator or blktap's "
				"batmap (%u entries needed); vhdtool convert to a new disk of the "
				"larger size instead",
				need);
	if (v->data_end < to_end)
		v->data_end = to_end; /* moved and new blocks go past the larger BAT */
	if (to_end > bat_room_end(v) && (rc = move_blocks_from(v, from, to_end)) < 0)
		return rc;
	if ((rc = footer_past(v, to_end)) < 0)
		return rc;
	ff = malloc(to_end - from);
	if (!ff)
		return -ENOMEM;
	memset(ff, 0xFF, to_end - from); /* the padding too, as vd_create writes it */
	/* New entries first (nothing reads them yet), then the header that counts them. */
	rc = vd_file_pwrite(v->file, ff, to_end - from, from);
	free(ff);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	h.max_table_entries = need;
	vd_dynhdr_encode(&h, hbuf);
	if (rc == 0)
		rc = vd_file_pwrite(v->file, hbuf, sizeof(hbuf), v->hdr_offset);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	return rc;
}

/* Shrinking cuts nothing that holds data. */
static int cut_is_empty(struct vd_disk *d, uint64_t from, uint64_t to)
{
	uint8_t *buf = malloc(1u << 20);
	int rc = buf ? 0 : -ENOMEM, empty = 1;

	for (uint64_t off = from; rc == 0 && empty && off < to;) {
		uint64_t run;
		int kind = vd_map(d, off, to - off, &run);

		if (kind < 0)
			rc = kind;
		else if (kind == VD_EXTENT_ALLOCATED)
			for (uint64_t o = off; rc == 0 && empty && o < off + run;) {
				size_t n = off + run - o < (1u << 20) ? (size_t)(off + run - o)
								      : (1u << 20);

				rc = vd_pread(d, buf, n, o);
				for (size_t i = 0; rc == 0 && i < n; i++)
					empty &= buf[i] == 0;
				o += n;
			}
		off += run;
	}
	free(buf);
	return rc < 0 ? rc : empty;
}

static int resize_fixed(struct vhd *v, uint64_t size)
{
	uint64_t old = v->footer.current_size;
	uint8_t zero[VD_FOOTER_SIZE] = {0};
	int rc = 0;

	if (size > old && fallocate(v->file->fd, 0, (off_t)old, (off_t)(size - old + 512)) < 0 &&
	    errno != EOPNOTSUPP)
		return vd_error(v->disk, -errno, "", UINT64_MAX, "cannot reserve the new space: %s",
				strerror(errno));
	set_size(v, size);
	/* The new footer, durable, before the old one (now disk data) is zeroed. */
	rc = vd_vhd_write_footer_at(v, size);
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc == 0 && size > old)
		rc = vd_file_pwrite(v->file, zero, sizeof(zero), old);
	if (rc == 0 && size < old && ftruncate(v->file->fd, (off_t)(size + 512)) < 0)
		rc = -errno;
	return rc == 0 ? vd_file_sync(v->file) : rc;
}

static int resize_dynamic(struct vhd *v, uint64_t size)
{
	uint32_t need = (uint32_t)(size / v->block_size + (size % v->block_size != 0));
	int rc = need > v->entries ? grow_bat(v, need) : 0;

	/* Then the size: the end footer first, the copy at 0 last (repair takes the end). */
	if (rc == 0) {
		set_size(v, size);
		rc = vd_vhd_write_footer_at(v, v->end_footer_ok
						       ? v->footer_offset
						       : ALIGN_UP(v->file->size, VD_SECTOR));
	}
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc == 0)
		rc = vd_vhd_write_footer_at(v, 0);
	return rc == 0 ? vd_file_sync(v->file) : rc;
}

int vd_resize(const char *path, uint64_t size, int allow_shrink, char **errmsg)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY, .format = "vhd"};
	struct vd_disk *d;
	struct vhd *v;
	int rc;

	if (errmsg)
		*errmsg = NULL;
	rc = vd_open(path, &o, &d);
	v = rc == 0 ? d->state : NULL;
	if (rc == 0 && v->diff)
		rc = vd_error(d, -EINVAL, "", UINT64_MAX,
			      "a differencing disk takes its size from its parent; expand the "
			      "base, then its children see the new space as zeros");
	if (rc == 0 && (size % VD_SECTOR || size == 0 || size > VD_VHD_MAX_SIZE))
		rc = vd_error(d, -EINVAL, "", UINT64_MAX,
			      "the new size must be a multiple of 512 bytes, at most 2040 GiB");
	if (rc == 0 && size < v->virtual_size && !allow_shrink)
		rc = vd_error(
			d, -EINVAL, "", UINT64_MAX,
			"%llu bytes is smaller than the disk (%llu); shrinking needs --shrink",
			(unsigned long long)size, (unsigned long long)v->virtual_size);
	if (rc == 0 && size < v->virtual_size && (rc = cut_is_empty(d, size, v->virtual_size)) >= 0)
		rc = rc ? 0
			: vd_error(d, -EBUSY, "", UINT64_MAX,
				   "the part beyond %llu bytes holds data; not shrinking",
				   (unsigned long long)size);
	if (rc == 0 && (rc = vd_flush(d)) == 0)
		rc = v->dynamic ? resize_dynamic(v, size) : resize_fixed(v, size);
	if (rc < 0 && errmsg)
		*errmsg = strdup(d && d->errmsg[0] ? vd_errmsg(d) : vd_strerror(rc));
	vd_close(d);
	return rc;
}
