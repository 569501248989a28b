/*
 * The VHD driver's private state, shared by vhd.c (open, info, map, check),
 * vhd_io.c (read, write, allocation, flush) and parent.c (differencing links).
 */
#ifndef VD_VHD_DRV_H
#define VD_VHD_DRV_H

#include "vdisk_int.h"
#include "vhd/vhd_int.h"

#define ALIGN_UP(v, a) (((v) + (a)-1) / (a) * (a))

extern uint8_t vd_vhd_bitmap_full;
#define BITMAP_FULL (&vd_vhd_bitmap_full) /* every valid sector of the block present */

/* Per-block flags for metadata written at the next flush (see vhd_io.c). */
#define DIRTY_BAT 0x1u
#define DIRTY_BITMAP 0x2u

struct vhd {
	struct vd_disk *disk;
	struct vd_file *file;
	struct vd_footer footer;
	uint8_t footer_raw[512]; /* the chosen copy as read: rewritten byte for byte */
	struct vd_dynhdr hdr;
	uint64_t hdr_offset;
	uint64_t footer_offset; /* where the end footer is (or goes) */
	int end_footer_ok;
	int dynamic;  /* dynamic or differencing: has a header and a BAT */
	int diff;     /* differencing: clear bits mean "the parent's data" */
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
	int copy0_bad;	   /* dynamic: the footer copy at 0 is missing, damaged or differs */
	uint32_t *dropped; /* check mode: BAT entries dropped for pointing outside the file */
	uint32_t ndropped;
	int overlap;	      /* check mode: two blocks overlap */
	uint8_t *dirty;	      /* per block: DIRTY_* */
	uint32_t *dirty_list; /* blocks with a dirty flag, in first-dirtied order */
	uint32_t ndirty;
};

uint32_t vd_vhd_valid_sectors(const struct vhd *v, uint32_t blk);
int vd_vhd_load_bitmap(struct vhd *v, uint32_t blk, uint8_t **out);
int vd_vhd_pread(void *state, void *buf, size_t len, uint64_t off);
int vd_vhd_pwrite(void *state, const void *buf, size_t len, uint64_t off);
int vd_vhd_flush(void *state);
int vd_vhd_plan(void *state, int write, uint64_t off, uint64_t len, uint64_t *file_off,
		uint64_t *run);
int vd_vhd_discard(void *state, uint64_t off, uint64_t len);
int vd_vhd_write_footer_at(struct vhd *v, uint64_t off);
/* Where the next new block's bitmap goes: past everything, data aligned. */
uint64_t vd_vhd_place_block(const struct vhd *v);
/* Note metadata of block BLK (DIRTY_*) for the next flush to publish. */
void vd_vhd_mark_dirty(struct vhd *v, uint32_t blk, uint8_t what);
/* Free block BLK of a dynamic disk: entry cleared at the next flush, space punched. */
void vd_vhd_release_block(struct vhd *v, uint32_t blk);
int vd_vhd_get_parent(void *state, struct vd_parent_ref *ref);
int vd_vhd_set_parent(void *state, const struct vd_parent_link *link);
int vd_vhd_create_child(struct vd_disk *d, struct vd_file *file, uint64_t size, uint32_t block_size,
			const struct vd_parent_link *link);
/* Header offsets in messages are absolute. */
uint64_t vd_vhd_footer_field(const struct vhd *v, unsigned off);

#endif /* VD_VHD_DRV_H */
