/*
 * The partition table, read by The Sleuth Kit's volume-system code (MBR with
 * extended/logical partitions, GPT behind its protective MBR, BSD, Sun, Mac),
 * and the Linux-style numbering users know from the guest (sda5 is p5).
 */
#include "vdfs_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/*
 * Linux numbers MBR primary slots 1-4 and logical partitions from 5 in the
 * order of the EBR chain (TSK's table_num grows along the chain); GPT entry i
 * is i+1. Other tables get their TSK order.
 */
static int part_number(const TSK_VS_INFO *vs, const TSK_VS_PART_INFO *p, int logical_rank, int seq)
{
	if (vs->vstype == TSK_VS_TYPE_DOS)
		return p->table_num == 0 ? p->slot_num + 1 : 5 + logical_rank;
	if (vs->vstype == TSK_VS_TYPE_GPT && p->slot_num >= 0)
		return p->slot_num + 1;
	return seq;
}

static const char *part_type(const TSK_VS_INFO *vs, const TSK_VS_PART_INFO *p, char *buf,
			     size_t len)
{
	if (vs->vstype == TSK_VS_TYPE_GPT)
		return "GPT partition";
	snprintf(buf, len, "%s%s%s", tsk_vs_type_toname(vs->vstype), p->desc ? ": " : "",
		 p->desc ? p->desc : "");
	return buf;
}

static int add_vs_part(struct vdfs *fs, const TSK_VS_INFO *vs, const TSK_VS_PART_INFO *p,
		       int number)
{
	uint64_t start = (uint64_t)p->start * vs->block_size;
	uint64_t len = (uint64_t)p->len * vs->block_size;
	char type[128];
	struct vdfs_seg seg;

	if (start >= fs->size || len == 0) {
		vdfs_log(fs, "p%d: starts at byte %llu, past the end of the disk: left out", number,
			 (unsigned long long)start);
		return 0;
	}
	if (len > fs->size - start) {
		vdfs_log(fs, "p%d: ends past the end of the disk: cut to the disk's size", number);
		len = fs->size - start;
	}
	seg = (struct vdfs_seg){.part_off = 0, .len = len, .disk_off = start};
	return vdfs_add_part(fs, number, part_type(vs, p, type, sizeof(type)),
			     vs->vstype == TSK_VS_TYPE_GPT && p->desc ? p->desc : "", &seg, 1);
}

static int logical_rank(const TSK_VS_INFO *vs, const TSK_VS_PART_INFO *p)
{
	int rank = 0;

	for (TSK_PNUM_T i = 0; i < vs->part_count; i++) {
		const TSK_VS_PART_INFO *q = tsk_vs_part_get(vs, i);

		if (q && (q->flags & TSK_VS_PART_FLAG_ALLOC) && q->table_num > 0 &&
		    q->table_num < p->table_num)
			rank++;
	}
	return rank;
}

static int add_vs_parts(struct vdfs *fs, const TSK_VS_INFO *vs)
{
	int seq = 0;

	for (TSK_PNUM_T i = 0; i < vs->part_count; i++) {
		const TSK_VS_PART_INFO *p = tsk_vs_part_get(vs, i);
		int number, rc;

		if (!p || !(p->flags & TSK_VS_PART_FLAG_ALLOC))
			continue;
		number = part_number(vs, p, logical_rank(vs, p), ++seq);
		for (int j = 0; j < fs->nparts; j++)
			if (fs->parts[j]->number == number)
				number = 0;
		if (number <= 0) {
			vdfs_log(fs, "partition at sector %llu has no usable number: left out",
				 (unsigned long long)p->start);
			continue;
		}
		rc = add_vs_part(fs, vs, p, number);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int vdfs_scan_partitions(struct vdfs *fs)
{
	TSK_IMG_INFO *img;
	TSK_VS_INFO *vs;
	struct vdfs_seg whole = {.part_off = 0, .len = fs->size, .disk_off = 0};
	int rc = 0, have_table = 0;

	if (fs->size == 0)
		return 0;
	img = vdfs_tskimg_open(fs, -1, fs->size);
	if (!img)
		return -ENOMEM;
	/*
	 * GPT first: TSK's detection also opens the protective MBR as a DOS table and
	 * leaks it when it then prefers GPT (libtsk 4.11, seen under LeakSanitizer).
	 */
	vs = tsk_vs_open(img, 0, TSK_VS_TYPE_GPT);
	if (!vs) {
		tsk_error_reset();
		vs = tsk_vs_open(img, 0, TSK_VS_TYPE_DETECT);
	}
	tsk_error_reset();
	if (vs) {
		have_table = 1;
		rc = add_vs_parts(fs, vs);
		tsk_vs_close(vs);
	}
	tsk_img_close(img);
	/* A "superfloppy" (file system or PV on the whole disk) is shown as p1. */
	if (rc == 0 && !have_table)
		rc = vdfs_add_part(fs, 1, "whole disk (no partition table)", "", &whole, 1);
	return rc < 0 ? rc : 0;
}
