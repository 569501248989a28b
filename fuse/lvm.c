/*
 * LVM2 physical volumes inside partitions and their linear logical volumes,
 * including LVs made of several segments (Debian 12's libvslvm cannot read
 * those). Label and metadata-area codecs are pure; the scan reads through vdfs.
 * Striped, mirrored, thin and other segment types are left out with a message.
 */
#include "vdfs_int.h"
#include "lvm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LVM_SECTOR 512
/* Metadata text bigger than this is not what lvm2 writes (its default area is 1 MiB). */
#define LVM_MAX_TEXT (64u << 20)
#define LVM_RAW_LOCN_IGNORED 1u

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* Skip the data-area list, then read the metadata-area list (each ends with a zero entry). */
static int decode_locns(const uint8_t *sector, size_t pos, struct lvm_pv_label *label, char *err,
			size_t errlen)
{
	int list = 0;

	for (;;) {
		uint64_t off, size;

		if (pos + 16 > LVM_SECTOR) {
			snprintf(err, errlen, "pv_header: area list runs past the label sector");
			return -EUCLEAN;
		}
		off = get_le64(sector + pos);
		size = get_le64(sector + pos + 8);
		pos += 16;
		if (off == 0) {
			if (++list == 2)
				return 0;
			continue;
		}
		if (list == 1 && label->mdas < LVM_MAX_MDAS) {
			label->mda_offset[label->mdas] = off;
			label->mda_size[label->mdas++] = size;
		}
	}
}

int lvm_label_decode(const uint8_t sector[512], uint64_t sector_no, struct lvm_pv_label *label,
		     char *err, size_t errlen)
{
	uint32_t hdr_off;

	if (memcmp(sector, "LABELONE", 8) != 0 || memcmp(sector + 24, "LVM2 001", 8) != 0)
		return 0;
	memset(label, 0, sizeof(*label));
	if (get_le64(sector + 8) != sector_no) {
		snprintf(err, errlen, "label_header.sector_xl is %llu in sector %llu",
			 (unsigned long long)get_le64(sector + 8), (unsigned long long)sector_no);
		return -EUCLEAN;
	}
	hdr_off = get_le32(sector + 20);
	if (hdr_off < 32 || hdr_off > LVM_SECTOR - LVM_UUID_LEN - 8) {
		snprintf(err, errlen, "label_header.offset_xl %u is outside the label sector",
			 hdr_off);
		return -EUCLEAN;
	}
	memcpy(label->uuid, sector + hdr_off, LVM_UUID_LEN);
	label->uuid[LVM_UUID_LEN] = '\0';
	if (decode_locns(sector, hdr_off + LVM_UUID_LEN + 8, label, err, errlen) < 0)
		return -EUCLEAN;
	return 1;
}

int lvm_mda_decode(const uint8_t hdr[512], uint64_t mda_size, struct lvm_text_locn *locn, char *err,
		   size_t errlen)
{
	static const char magic[16] = " LVM2 x[5A%r0N*>";
	uint64_t off, size;

	if (memcmp(hdr + 4, magic, 16) != 0) {
		snprintf(err, errlen, "mda_header.magic is not LVM2's");
		return -EUCLEAN;
	}
	if (get_le32(hdr + 20) != 1) {
		snprintf(err, errlen, "mda_header.version %u is not 1", get_le32(hdr + 20));
		return -EOPNOTSUPP;
	}
	off = get_le64(hdr + 40);
	size = get_le64(hdr + 48);
	if (off == 0 || size == 0 || (get_le32(hdr + 60) & LVM_RAW_LOCN_IGNORED)) {
		snprintf(err, errlen, "mda_header.raw_locn[0] holds no metadata");
		return -ENOENT;
	}
	if (off < LVM_SECTOR || off >= mda_size || size > mda_size - LVM_SECTOR ||
	    size > LVM_MAX_TEXT) {
		snprintf(err, errlen,
			 "mda_header.raw_locn[0] (offset %llu, size %llu) is outside "
			 "the %llu-byte metadata area",
			 (unsigned long long)off, (unsigned long long)size,
			 (unsigned long long)mda_size);
		return -EUCLEAN;
	}
	locn->offset = off;
	locn->size = size;
	return 0;
}

/* A PV found in a partition. */
struct pv {
	int part;
	struct lvm_pv_label label;
	char *text; /* its metadata */
	size_t text_len;
};

/* The metadata text is a ring buffer after the 512-byte header: it may wrap. */
static int read_text(struct vdfs *fs, struct pv *pv, uint64_t mda_off, uint64_t mda_size,
		     const struct lvm_text_locn *locn)
{
	uint64_t first = locn->size;
	int rc;

	pv->text = malloc(locn->size + 1);
	if (!pv->text)
		return -ENOMEM;
	if (locn->offset + first > mda_size)
		first = mda_size - locn->offset;
	rc = vdfs_part_read_unlocked(fs, pv->part, pv->text, first, mda_off + locn->offset);
	if (rc == 0 && first < locn->size)
		rc = vdfs_part_read_unlocked(fs, pv->part, pv->text + first, locn->size - first,
					     mda_off + LVM_SECTOR);
	pv->text[locn->size] = '\0';
	pv->text_len = strlen(pv->text);
	return rc;
}

static int read_metadata(struct vdfs *fs, struct pv *pv, char *err, size_t errlen)
{
	uint64_t psize = fs->parts[pv->part]->info.size;
	uint8_t hdr[LVM_SECTOR];
	int rc = -ENOENT;

	for (int i = 0; i < pv->label.mdas; i++) {
		uint64_t off = pv->label.mda_offset[i], size = pv->label.mda_size[i];
		struct lvm_text_locn locn;

		if (off > psize || size > psize - off || size < 2 * LVM_SECTOR) {
			snprintf(err, errlen,
				 "pv_header metadata area %d (offset %llu, size %llu) "
				 "is outside the partition",
				 i, (unsigned long long)off, (unsigned long long)size);
			rc = -EUCLEAN;
			continue;
		}
		rc = vdfs_part_read_unlocked(fs, pv->part, hdr, sizeof(hdr), off);
		if (rc == 0)
			rc = lvm_mda_decode(hdr, size, &locn, err, errlen);
		if (rc == 0)
			return read_text(fs, pv, off, size, &locn);
	}
	return rc;
}

/* 1 and PV filled when partition INDEX starts with an LVM2 label, 0 when not. */
static int probe_pv(struct vdfs *fs, int index, struct pv *pv)
{
	uint8_t sector[LVM_SECTOR];
	char err[256];

	if (fs->parts[index]->info.size < 4 * LVM_SECTOR)
		return 0;
	for (uint64_t s = 0; s < 4; s++) {
		int rc = vdfs_part_read_unlocked(fs, index, sector, sizeof(sector), s * LVM_SECTOR);

		if (rc == 0)
			rc = lvm_label_decode(sector, s, &pv->label, err, sizeof(err));
		if (rc < 0) {
			vdfs_log(fs, "%s: LVM2 label: %s: not read as a PV", fs->parts[index]->name,
				 rc == -EUCLEAN ? err : strerror(-rc));
			return 0;
		}
		if (rc == 1) {
			pv->part = index;
			rc = read_metadata(fs, pv, err, sizeof(err));
			if (rc < 0)
				vdfs_log(fs,
					 "%s: LVM2 physical volume without readable metadata "
					 "(%s): its LVs are left out",
					 fs->parts[index]->name, err);
			return 1;
		}
	}
	return 0;
}

/* Compare an LVM id ("xxxxxx-xxxx-...") with a label UUID (the same without dashes). */
static int same_uuid(const char *id, const char *uuid)
{
	size_t n = 0;

	for (; *id; id++) {
		if (*id == '-')
			continue;
		if (n >= LVM_UUID_LEN || *id != uuid[n])
			return 0;
		n++;
	}
	return n == LVM_UUID_LEN;
}

struct vg {
	struct vdfs *fs;
	const char *name;
	const struct lvm_node *section;
	uint64_t extent_bytes;
	struct pv *pvs;
	int npvs;
};

/* The partition and first byte of the data of the PV the VG calls PV_KEY ("pv0"). */
static int find_pv(const struct vg *vg, const char *pv_key, int *part, uint64_t *pe_start,
		   char *err, size_t errlen)
{
	const struct lvm_node *pv = lvm_get(lvm_get(vg->section, "physical_volumes"), pv_key);
	const char *id = lvm_get_str(pv, "id");
	long long start;

	if (!pv || !id || lvm_get_num(pv, "pe_start", &start) < 0 || start < 0 ||
	    (unsigned long long)start > UINT64_MAX / LVM_SECTOR) {
		snprintf(err, errlen, "physical_volumes.%s: id or pe_start missing or invalid",
			 pv_key);
		return -EUCLEAN;
	}
	for (int i = 0; i < vg->npvs; i++)
		if (same_uuid(id, vg->pvs[i].label.uuid)) {
			*part = vg->pvs[i].part;
			*pe_start = (uint64_t)start * LVM_SECTOR;
			return 0;
		}
	snprintf(err, errlen, "its PV %s (%s) is not on this disk", pv_key, id);
	return -ENOENT;
}

static int seg_cmp(const void *a, const void *b)
{
	const struct vdfs_seg *x = a, *y = b;

	return x->part_off < y->part_off ? -1 : x->part_off > y->part_off;
}

/* One "segmentN { start_extent, extent_count, type = "striped", stripes = [pv, pe] }". */
static int decode_segment(const struct vg *vg, const struct lvm_node *seg, struct vdfs_seg *out,
			  char *err, size_t errlen)
{
	const char *type = lvm_get_str(seg, "type");
	const struct lvm_node *stripes = lvm_get(seg, "stripes");
	long long start, count, nstripes, pe;
	uint64_t pe_start, max_extents = UINT64_MAX / vg->extent_bytes;
	int part, rc;

	if (!type || strcmp(type, "striped") != 0 ||
	    lvm_get_num(seg, "stripe_count", &nstripes) < 0 || nstripes != 1) {
		snprintf(err, errlen, "%s is of type %s (only linear segments are supported)",
			 seg->key, type ? type : "(none)");
		return -EOPNOTSUPP;
	}
	if (lvm_get_num(seg, "start_extent", &start) < 0 ||
	    lvm_get_num(seg, "extent_count", &count) < 0 || start < 0 || count <= 0 ||
	    (uint64_t)start > max_extents || (uint64_t)count > max_extents - (uint64_t)start ||
	    !stripes || stripes->kind != LVM_ARRAY || !stripes->child ||
	    stripes->child->kind != LVM_STR || !stripes->child->next ||
	    stripes->child->next->kind != LVM_NUM || (pe = stripes->child->next->num) < 0 ||
	    (uint64_t)pe > max_extents - (uint64_t)count) {
		snprintf(err, errlen,
			 "%s: start_extent, extent_count or stripes missing or invalid", seg->key);
		return -EUCLEAN;
	}
	rc = find_pv(vg, stripes->child->str, &part, &pe_start, err, errlen);
	if (rc < 0)
		return rc;
	out->part_off = (uint64_t)start * vg->extent_bytes;
	out->len = (uint64_t)count * vg->extent_bytes;
	out->disk_off = (uint64_t)pe * vg->extent_bytes;
	if (pe_start > vg->fs->parts[part]->info.size ||
	    out->disk_off > vg->fs->parts[part]->info.size - pe_start ||
	    out->len > vg->fs->parts[part]->info.size - pe_start - out->disk_off) {
		snprintf(err, errlen, "%s lies past the end of its PV %s", seg->key,
			 vg->fs->parts[part]->name);
		return -EUCLEAN;
	}
	/* Partitions have one segment, so the PV's disk offset is its start. */
	out->disk_off += vg->fs->parts[part]->segs[0].disk_off + pe_start;
	return 0;
}

static int collect_segments(const struct vg *vg, const struct lvm_node *lv, struct vdfs_seg **out,
			    int *nout, char *err, size_t errlen)
{
	struct vdfs_seg *segs;
	long long count;
	int n = 0, rc = 0;
	uint64_t next = 0;

	if (lvm_get_num(lv, "segment_count", &count) < 0 || count <= 0 || count > 65536) {
		snprintf(err, errlen, "segment_count missing or invalid");
		return -EUCLEAN;
	}
	segs = calloc((size_t)count, sizeof(*segs));
	if (!segs)
		return -ENOMEM;
	for (const struct lvm_node *s = lv->child; s && rc == 0; s = s->next)
		if (s->kind == LVM_SECTION && strncmp(s->key, "segment", 7) == 0) {
			if (n >= count) {
				snprintf(err, errlen, "more segments than segment_count %lld",
					 count);
				rc = -EUCLEAN;
			} else {
				rc = decode_segment(vg, s, &segs[n++], err, errlen);
			}
		}
	qsort(segs, (size_t)n, sizeof(*segs), seg_cmp);
	for (int i = 0; i < n && rc == 0; i++, next += segs[i - 1].len)
		if (segs[i].part_off != next) {
			snprintf(err, errlen, "segments leave a gap or overlap at extent %llu",
				 (unsigned long long)(next / vg->extent_bytes));
			rc = -EUCLEAN;
		}
	if (rc == 0 && n != count) {
		snprintf(err, errlen, "segment_count is %lld but %d segments are present", count,
			 n);
		rc = -EUCLEAN;
	}
	if (rc < 0)
		free(segs);
	else
		*out = segs, *nout = n;
	return rc;
}

static int next_number(const struct vdfs *fs)
{
	int max = 0;

	for (int i = 0; i < fs->nparts; i++)
		if (fs->parts[i]->number > max)
			max = fs->parts[i]->number;
	return max + 1;
}

static int add_lv(struct vg *vg, const struct lvm_node *lv)
{
	struct vdfs_seg *segs;
	char err[256], label[512];
	int nsegs, rc;

	/* Hidden LVs are the internals of thin pools, mirrors and caches. */
	if (!lvm_array_has(lv, "status", "VISIBLE"))
		return 0;
	rc = collect_segments(vg, lv, &segs, &nsegs, err, sizeof(err));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		vdfs_log(vg->fs, "LVM LV %s/%s: %s: left out", vg->name, lv->key, err);
		return 0;
	}
	snprintf(label, sizeof(label), "%s/%s", vg->name, lv->key);
	rc = vdfs_add_part(vg->fs, next_number(vg->fs), "LVM2 logical volume", label, segs, nsegs);
	free(segs);
	return rc < 0 ? rc : 0;
}

/* The VG section is the one top-level section (the rest is contents, version, ...). */
static const struct lvm_node *vg_section(const struct lvm_node *root)
{
	for (const struct lvm_node *n = root->child; n; n = n->next)
		if (n->kind == LVM_SECTION && lvm_get(n, "physical_volumes"))
			return n;
	return NULL;
}

static int add_vg(struct vdfs *fs, struct pv *pvs, int npvs, const struct pv *pv)
{
	struct lvm_node *root;
	struct vg vg = {.fs = fs, .pvs = pvs, .npvs = npvs};
	char err[256];
	long long extent;
	int rc;

	rc = lvm_parse(pv->text, pv->text_len, &root, err, sizeof(err));
	if (rc < 0) {
		vdfs_log(fs, "%s: LVM2 metadata: %s: its LVs are left out",
			 fs->parts[pv->part]->name, err);
		return rc == -ENOMEM ? rc : 0;
	}
	vg.section = vg_section(root);
	if (!vg.section || lvm_get_num(vg.section, "extent_size", &extent) < 0 || extent <= 0 ||
	    extent > (1ll << 32)) {
		vdfs_log(fs,
			 "%s: LVM2 metadata: VG extent_size missing or invalid: its LVs are "
			 "left out",
			 fs->parts[pv->part]->name);
		lvm_free(root);
		return 0;
	}
	vg.name = vg.section->key;
	vg.extent_bytes = (uint64_t)extent * LVM_SECTOR;
	rc = 0;
	for (const struct lvm_node *lv = lvm_get(vg.section, "logical_volumes")
						 ? lvm_get(vg.section, "logical_volumes")->child
						 : NULL;
	     lv && rc == 0; lv = lv->next)
		if (lv->kind == LVM_SECTION)
			rc = add_lv(&vg, lv);
	lvm_free(root);
	return rc;
}

/* The VG's name in PV's metadata, to read each VG once however many PVs it has. */
static int same_vg(const struct pv *a, const struct pv *b)
{
	const char *ea = a->text, *eb = b->text;
	size_t la = strcspn(ea, " {\n"), lb = strcspn(eb, " {\n");

	return la == lb && strncmp(ea, eb, la) == 0;
}

int vdfs_scan_lvm(struct vdfs *fs)
{
	int nparts = fs->nparts, npvs = 0, rc = 0;
	struct pv *pvs = calloc((size_t)nparts + 1, sizeof(*pvs));

	if (!pvs)
		return -ENOMEM;
	for (int i = 0; i < nparts; i++)
		if (probe_pv(fs, i, &pvs[npvs])) {
			fs->parts[i]->is_pv = 1;
			fs->parts[i]->fs_error = strdup("LVM2 physical volume");
			fs->parts[i]->info.fs_error = fs->parts[i]->fs_error;
			npvs++;
		}
	for (int i = 0; i < npvs && rc == 0; i++) {
		int seen = 0;

		for (int j = 0; j < i; j++)
			seen |= pvs[j].text && pvs[i].text && same_vg(&pvs[i], &pvs[j]);
		if (pvs[i].text && !seen)
			rc = add_vg(fs, pvs, npvs, &pvs[i]);
	}
	for (int i = 0; i < npvs; i++)
		free(pvs[i].text);
	free(pvs);
	return rc;
}
