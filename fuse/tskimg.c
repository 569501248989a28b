/*
 * The Sleuth Kit's image-reader hook: a TSK_IMG_INFO whose reads go through
 * libvdisk (whole disk) or through a partition's segments (LVs), so TSK never
 * opens the image files itself and chains, checkpoints and LVs just work.
 */
#include "vdfs_int.h"

#include <stdlib.h>
#include <string.h>

/* TSK_IMG_INFO must come first: TSK casts the pointer back and forth. */
struct vdfs_tskimg {
	TSK_IMG_INFO tsk;
	struct vdfs *fs;
	int part; /* -1: the whole disk */
};

/* TSK calls this with the vdfs lock already held (every TSK call is under it). */
static ssize_t tskimg_read(TSK_IMG_INFO *img, TSK_OFF_T off, char *buf, size_t len)
{
	struct vdfs_tskimg *self = (struct vdfs_tskimg *)img;
	uint64_t size = (uint64_t)img->size;
	int rc;

	if (off < 0 || (uint64_t)off >= size)
		return -1;
	if (len > size - (uint64_t)off)
		len = (size_t)(size - (uint64_t)off);
	if (self->part < 0)
		rc = vdfs_disk_read_unlocked(self->fs, buf, len, (uint64_t)off);
	else
		rc = vdfs_part_read_unlocked(self->fs, self->part, buf, len, (uint64_t)off);
	if (rc < 0) {
		tsk_error_reset();
		tsk_error_set_errno(TSK_ERR_IMG_READ);
		tsk_error_set_errstr("virtual disk read at %lld failed: %s", (long long)off,
				     strerror(-rc));
		return -1;
	}
	return (ssize_t)len;
}

static void tskimg_close(TSK_IMG_INFO *img)
{
	free(img);
}

static void tskimg_stat(TSK_IMG_INFO *img, FILE *out)
{
	struct vdfs_tskimg *self = (struct vdfs_tskimg *)img;

	fprintf(out, "libvdisk %s\n", self->part < 0 ? "disk" : "partition");
}

TSK_IMG_INFO *vdfs_tskimg_open(struct vdfs *fs, int part, uint64_t size)
{
	struct vdfs_tskimg *self;
	TSK_IMG_INFO *img;

	if (size > (uint64_t)INT64_MAX)
		return NULL;
	/*
	 * tsk_img_malloc/tsk_img_free are not in TSK's installed headers; zeroed memory
	 * is all they provide (tsk_img_open_external sets the tag and the lock).
	 */
	self = calloc(1, sizeof(*self));
	if (!self)
		return NULL;
	self->fs = fs;
	self->part = part;
	img = tsk_img_open_external(self, (TSK_OFF_T)size, 512, tskimg_read, tskimg_close,
				    tskimg_stat);
	if (!img)
		free(self);
	return img;
}
