/*
 * The raw format driver: the file is the disk. Holes found with SEEK_HOLE are
 * reported as known-zero so convert and compare can skip them.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vdisk_int.h"

struct raw {
	struct vd_disk *disk;
	struct vd_file *file;
};

static int raw_probe(const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len,
		     uint64_t file_size)
{
	(void)head;
	(void)head_len;
	(void)tail;
	(void)tail_len;
	(void)file_size;
	return 1; /* anything is a raw disk, the weakest claim */
}

static int raw_open(struct vd_disk *disk, void *state, struct vd_file *file, unsigned flags)
{
	struct raw *r = state;

	(void)flags;
	r->disk = disk;
	r->file = file;
	disk->virtual_size = file->size;
	return 0;
}

static void raw_close(void *state)
{
	(void)state;
}

static int raw_info(void *state, struct vd_info *info)
{
	struct raw *r = state;

	info->format = "raw";
	info->type = VD_TYPE_FIXED;
	info->virtual_size = info->current_size = r->file->size;
	info->allocated_bytes = r->file->size;
	return 0;
}

int vd_file_map_holes(struct vd_file *f, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	off_t data = lseek(f->fd, (off_t)offset, SEEK_DATA);
	off_t hole;

	if (data < 0 && errno == ENXIO) { /* only a hole up to the end */
		*run_len = len;
		return VD_EXTENT_ZERO;
	}
	if (data < 0) { /* no SEEK_DATA here: say data, which is always true */
		*run_len = len;
		return VD_EXTENT_ALLOCATED;
	}
	if ((uint64_t)data > offset) {
		*run_len = (uint64_t)data - offset < len ? (uint64_t)data - offset : len;
		return VD_EXTENT_ZERO;
	}
	hole = lseek(f->fd, (off_t)offset, SEEK_HOLE);
	if (hole < 0 || (uint64_t)hole <= offset)
		hole = (off_t)(offset + len);
	*run_len = (uint64_t)hole - offset < len ? (uint64_t)hole - offset : len;
	return VD_EXTENT_ALLOCATED;
}

static int raw_map(void *state, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	struct raw *r = state;

	return vd_file_map_holes(r->file, offset, len, run_len);
}

static int raw_pread(void *state, void *buf, size_t len, uint64_t offset)
{
	struct raw *r = state;
	int rc = vd_file_pread(r->file, buf, len, offset);

	if (rc < 0)
		return vd_error(r->disk, rc, "data", offset,
				"read of %zu bytes at offset %llu failed: %s", len,
				(unsigned long long)offset, vd_strerror(rc));
	return 0;
}

static int raw_pwrite(void *state, const void *buf, size_t len, uint64_t offset)
{
	struct raw *r = state;
	int rc = vd_file_pwrite(r->file, buf, len, offset);

	if (rc < 0)
		return vd_error(r->disk, rc, "data", offset,
				"write of %zu bytes at offset %llu failed: %s", len,
				(unsigned long long)offset, vd_strerror(rc));
	return 0;
}

/* Every byte of a raw image is where the disk says: the engine moves it. */
static int raw_plan(void *state, int write, uint64_t off, uint64_t len, uint64_t *file_off,
		    uint64_t *run)
{
	(void)state;
	(void)write;
	*file_off = off;
	*run = len;
	return VD_PLAN_FILE;
}

static int raw_flush(void *state)
{
	struct raw *r = state;
	int rc = vd_file_sync(r->file);

	return rc < 0 ? vd_error(r->disk, rc, "", UINT64_MAX, "flush failed: %s", vd_strerror(rc))
		      : 0;
}

static int raw_create(struct vd_disk *disk, struct vd_file *file, const struct vd_create_opts *o)
{
	if (ftruncate(file->fd, (off_t)o->size) < 0)
		return vd_error(disk, -errno, "", UINT64_MAX, "cannot size the new image: %s",
				strerror(errno));
	file->size = o->size;
	return 0;
}

static int raw_discard(void *state, uint64_t offset, uint64_t len)
{
	struct raw *r = state;
	int rc = vd_file_punch(r->file, offset, len);

	if (rc == -EOPNOTSUPP) { /* no holes here: zeros it is */
		uint8_t zeros[4096] = {0};

		for (rc = 0; rc == 0 && len;) {
			size_t n = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);

			rc = vd_file_pwrite(r->file, zeros, n, offset);
			offset += n;
			len -= n;
		}
	}
	return rc < 0 ? vd_error(r->disk, rc, "data", offset, "discard failed: %s", vd_strerror(rc))
		      : 0;
}

const struct vd_driver vd_raw_driver = {
	.name = "raw",
	.state_size = sizeof(struct raw),
	.probe = raw_probe,
	.open = raw_open,
	.close = raw_close,
	.info = raw_info,
	.map = raw_map,
	.pread = raw_pread,
	.pwrite = raw_pwrite,
	.flush = raw_flush,
	.discard = raw_discard,
	.plan = raw_plan,
	.create = raw_create,
	.check = NULL,
};
