/*
 * Differencing disks' links to their parents: reading the parent UUID, name and
 * locators; laying out a new child; re-linking a child (set-parent).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vhd/vhd_drv.h"

/* Space we reserve per locator, in bytes: Windows uses 4 KiB for W2ku too. */
#define LOC_SPACE_MIN 4096u
#define LOC_DATA_MAX (64u << 10) /* longer locator data is not a path */

static int is_path_locator(uint32_t code)
{
	return code == VD_LOC_W2KU || code == VD_LOC_W2RU || code == VD_LOC_WI2K ||
	       code == VD_LOC_WI2R || code == VD_LOC_MACX;
}

/* Read and decode one locator; a damaged locator is a warning, never fatal. */
static void read_locator(struct vhd *v, int i, struct vd_parent_ref *ref)
{
	const struct vd_locator *l = &v->hdr.loc[i];
	uint64_t entry = v->hdr_offset + 576 + 24 * (uint64_t)i;
	int64_t space = vd_locator_space_bytes(l->data_space);
	uint8_t *data;

	if (l->code == VD_LOC_NONE || l->code == VD_LOC_MAC)
		return; /* empty, or a classic Mac OS alias we cannot follow */
	if (!is_path_locator(l->code)) {
		vd_warn(v->disk, "header.locator", entry,
			"parent locator %d has unknown code 0x%08x; ignored", i, l->code);
		return;
	}
	if (space < 0 || l->data_length > LOC_DATA_MAX || l->data_offset > v->file->size ||
	    l->data_length > v->file->size - l->data_offset ||
	    (space > 0 && l->data_length > (uint64_t)space)) {
		vd_warn(v->disk, "header.locator", entry,
			"parent locator %d (offset 0x%llx, %u bytes) is damaged; ignored", i,
			(unsigned long long)l->data_offset, l->data_length);
		return;
	}
	data = malloc(l->data_length + 1);
	if (!data)
		return;
	if (vd_file_pread(v->file, data, l->data_length, l->data_offset) == 0 &&
	    vd_locator_decode_path(l->code, data, l->data_length, ref->loc[ref->nloc].path,
				   sizeof(ref->loc[ref->nloc].path)) > 0) {
		ref->loc[ref->nloc].code = l->code;
		ref->nloc++;
	} else {
		vd_warn(v->disk, "header.locator", entry,
			"parent locator %d does not hold a readable path; ignored", i);
	}
	free(data);
}

int vd_vhd_get_parent(void *state, struct vd_parent_ref *ref)
{
	struct vhd *v = state;

	memset(ref, 0, sizeof(*ref));
	if (!v->diff)
		return 0;
	memcpy(ref->uuid, v->hdr.parent_uuid, 16);
	ref->timestamp = v->hdr.parent_timestamp;
	if (vd_parent_name_decode(v->hdr.parent_name, ref->name, sizeof(ref->name)) < 0)
		ref->name[0] = '\0';
	for (int i = 0; i < 8; i++)
		read_locator(v, i, ref);
	return 1;
}

/* ---- writing a parent record ---- */

struct loc_blob {
	uint32_t code;
	uint8_t data[2 * VD_PATH_MAX + 32];
	int len;
};

static void to_backslashes(char *s)
{
	for (; *s; s++)
		if (*s == '/')
			*s = '\\';
}

/* W2ru (relative, backslashes, UTF-16LE), W2ku (absolute), MacX (file URL, UTF-8). */
static int encode_locators(const struct vd_parent_link *link, struct loc_blob out[3])
{
	char rel[VD_PATH_MAX + 4], url[VD_PATH_MAX + 32];

	if (snprintf(rel, sizeof(rel), "%s%s", link->rel_path[0] == '.' ? "" : ".\\",
		     link->rel_path) >= (int)sizeof(rel) ||
	    snprintf(url, sizeof(url), "file://localhost%s", link->abs_path) >= (int)sizeof(url))
		return -ENAMETOOLONG;
	to_backslashes(rel);
	out[0].code = VD_LOC_W2RU;
	out[0].len = vd_utf8_to_utf16(rel, out[0].data, sizeof(out[0].data), 0);
	out[1].code = VD_LOC_W2KU;
	out[1].len = vd_utf8_to_utf16(link->abs_path, out[1].data, sizeof(out[1].data), 0);
	out[2].code = VD_LOC_MACX;
	out[2].len = (int)strlen(url);
	memcpy(out[2].data, url, (size_t)out[2].len);
	for (int i = 0; i < 3; i++)
		if (out[i].len <= 0)
			return -EINVAL;
	return 0;
}

static uint32_t blob_space(const struct loc_blob *b)
{
	uint32_t need = ALIGN_UP((uint32_t)b->len, VD_SECTOR);

	return need > LOC_SPACE_MIN ? need : LOC_SPACE_MIN;
}

static int fill_parent_fields(struct vd_dynhdr *h, const struct vd_parent_link *link)
{
	memcpy(h->parent_uuid, link->uuid, 16);
	h->parent_timestamp = link->timestamp;
	memset(h->parent_name, 0, sizeof(h->parent_name));
	/* UTF-16BE, as blktap, VirtualBox and libvhdi read it; cut to the field's size. */
	if (vd_utf8_to_utf16(link->name, h->parent_name, sizeof(h->parent_name) - 2, 1) < 0)
		return -ENAMETOOLONG;
	return 0;
}

/*
 * Footer copy, header, BAT, then the three locators (4 KiB-aligned slots), then
 * the end footer: the layout VirtualBox and vhd-util use (locators after the BAT).
 */
int vd_vhd_create_child(struct vd_disk *d, struct vd_file *file, uint64_t size, uint32_t block_size,
			const struct vd_parent_link *link)
{
	uint32_t entries = (uint32_t)((size + block_size - 1) / block_size);
	uint64_t table = VD_FOOTER_SIZE + VD_DYNHDR_SIZE;
	uint64_t at = ALIGN_UP(table + (uint64_t)entries * 4, VD_SECTOR);
	uint8_t fbuf[VD_FOOTER_SIZE], hbuf[VD_DYNHDR_SIZE], *bat;
	struct loc_blob *blobs = calloc(3, sizeof(*blobs));
	struct vd_footer f;
	struct vd_dynhdr h;
	int rc = blobs ? encode_locators(link, blobs) : -ENOMEM;

	if (rc < 0) {
		free(blobs);
		return vd_error(d, rc, "", UINT64_MAX, "cannot encode the parent path '%s'",
				link->abs_path);
	}
	vd_footer_new(&f, VD_TYPE_DIFFERENCING, size);
	vd_footer_encode(&f, fbuf);
	memset(&h, 0, sizeof(h));
	memcpy(h.cookie, "cxsparse", 8);
	h.data_offset = VD_ALL_ONES;
	h.table_offset = table;
	h.version = VD_VHD_VERSION;
	h.max_table_entries = entries;
	h.block_size = block_size;
	rc = fill_parent_fields(&h, link);
	bat = malloc(at - table);
	if (!bat)
		rc = -ENOMEM;
	else
		memset(bat, 0xFF, at - table);
	for (int i = 0; i < 3 && rc == 0; i++) {
		h.loc[i] = (struct vd_locator){blobs[i].code, blob_space(&blobs[i]),
					       (uint32_t)blobs[i].len, 0, at};
		rc = vd_file_pwrite(file, blobs[i].data, (size_t)blobs[i].len, at);
		at += blob_space(&blobs[i]);
	}
	vd_dynhdr_encode(&h, hbuf);
	if (rc == 0)
		rc = vd_file_pwrite(file, fbuf, sizeof(fbuf), 0);
	if (rc == 0)
		rc = vd_file_pwrite(file, hbuf, sizeof(hbuf), VD_FOOTER_SIZE);
	if (rc == 0)
		rc = vd_file_pwrite(file, bat, ALIGN_UP((uint64_t)entries * 4, VD_SECTOR), table);
	if (rc == 0)
		rc = vd_file_pwrite(file, fbuf, sizeof(fbuf), at);
	free(bat);
	free(blobs);
	return rc;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

/*
 * A slot may be rewritten only when it touches nothing else: not the footer
 * copy, the header, the BAT, a block or another slot (a crafted or damaged
 * header could point a locator anywhere; fuzz finding).
 */
static int slot_is_free(const struct vhd *v, int i, uint64_t len)
{
	uint64_t off = v->hdr.loc[i].data_offset;
	uint64_t block = (uint64_t)v->bitmap_bytes + v->block_size;

	if (off > v->file->size || len > v->file->size - off || overlaps(off, len, 0, 512) ||
	    overlaps(off, len, v->hdr_offset, VD_DYNHDR_SIZE) ||
	    overlaps(off, len, v->hdr.table_offset, (uint64_t)v->entries * 4))
		return 0;
	for (uint32_t b = 0; b < v->entries; b++)
		if (v->bat[b] != VD_BAT_UNUSED &&
		    overlaps(off, len, (uint64_t)v->bat[b] * 512, block))
			return 0;
	for (int k = 0; k < 8; k++) {
		int64_t sp = vd_locator_space_bytes(v->hdr.loc[k].data_space);

		if (k != i && v->hdr.loc[k].code != VD_LOC_NONE && sp > 0 &&
		    overlaps(off, len, v->hdr.loc[k].data_offset, (uint64_t)sp))
			return 0;
	}
	return 1;
}

/* The locator slots in use can hold BLOBS in place (the usual set-parent). */
static int fits_in_place(const struct vhd *v, const struct loc_blob *blobs)
{
	for (int i = 0; i < 3; i++) {
		int64_t space = vd_locator_space_bytes(v->hdr.loc[i].data_space);

		if (v->hdr.loc[i].code == VD_LOC_NONE || space < blobs[i].len ||
		    !slot_is_free(v, i, (uint64_t)space))
			return 0;
	}
	return 1;
}

/* New slots past the last block; the end footer moves after them. */
static int place_at_end(struct vhd *v, const struct loc_blob *blobs, struct vd_locator loc[3])
{
	uint64_t at = ALIGN_UP(v->end_footer_ok ? v->footer_offset : v->file->size, VD_SECTOR);
	int rc = 0;

	if (at < v->data_end)
		at = v->data_end;
	for (int i = 0; i < 3 && rc == 0; i++) {
		loc[i] = (struct vd_locator){blobs[i].code, blob_space(&blobs[i]),
					     (uint32_t)blobs[i].len, 0, at};
		rc = vd_file_pwrite(v->file, blobs[i].data, (size_t)blobs[i].len, at);
		at += blob_space(&blobs[i]);
	}
	if (rc == 0)
		rc = vd_vhd_write_footer_at(v, at);
	if (rc == 0) {
		v->data_end = at;
		v->footer_offset = at;
		v->end_footer_ok = 1;
	}
	return rc;
}

/*
 * Locator data first (in the old slots when it fits, else in new space at the
 * end), fdatasync, then the header in one write. The old header stays valid
 * until that write; a torn 1024-byte write is the one window, as for Hyper-V.
 */
int vd_vhd_set_parent(void *state, const struct vd_parent_link *link)
{
	struct vhd *v = state;
	struct loc_blob *blobs = calloc(3, sizeof(*blobs));
	struct vd_dynhdr h = v->hdr;
	struct vd_locator loc[3];
	uint8_t hbuf[VD_DYNHDR_SIZE];
	int rc = blobs ? encode_locators(link, blobs) : -ENOMEM;

	if (rc == 0 && !v->diff)
		rc = -EINVAL;
	if (rc == 0 && fits_in_place(v, blobs)) {
		for (int i = 0; i < 3 && rc == 0; i++) {
			loc[i] = v->hdr.loc[i];
			loc[i].code = blobs[i].code;
			loc[i].data_length = (uint32_t)blobs[i].len;
			rc = vd_file_pwrite(v->file, blobs[i].data, (size_t)blobs[i].len,
					    loc[i].data_offset);
		}
	} else if (rc == 0) {
		rc = place_at_end(v, blobs, loc);
	}
	if (rc == 0)
		rc = vd_file_sync(v->file);
	if (rc == 0)
		rc = fill_parent_fields(&h, link);
	if (rc == 0) {
		memset(h.loc, 0, sizeof(h.loc));
		memcpy(h.loc, loc, sizeof(loc));
		vd_dynhdr_encode(&h, hbuf);
		rc = vd_file_pwrite(v->file, hbuf, sizeof(hbuf), v->hdr_offset);
		if (rc == 0)
			rc = vd_file_sync(v->file);
		if (rc == 0)
			v->hdr = h;
	}
	free(blobs);
	if (rc < 0)
		return vd_error(v->disk, rc, "header", v->hdr_offset,
				"cannot rewrite the parent link: %s", vd_strerror(rc));
	return 0;
}
