/*
 * vdfs handle: opening the view of a disk (partitions, LVs, file systems), the one
 * lock that serialises libvdisk and TSK, and byte access to the disk and to each
 * partition through its segments.
 */
#include "vdfs_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void vdfs_log(struct vdfs *fs, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!fs->log)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fs->log(fs->log_ctx, msg);
}

static uint64_t segs_size(const struct vdfs_seg *segs, int nsegs)
{
	uint64_t total = 0;

	for (int i = 0; i < nsegs; i++)
		total += segs[i].len;
	return total;
}

int vdfs_add_part(struct vdfs *fs, int number, const char *type, const char *label,
		  const struct vdfs_seg *segs, int nsegs)
{
	struct vdfs_part **grown, *part;

	grown = realloc(fs->parts, sizeof(*grown) * (size_t)(fs->nparts + 1));
	if (!grown)
		return -ENOMEM;
	fs->parts = grown;
	part = calloc(1, sizeof(*part));
	if (!part)
		return -ENOMEM;
	part->type = strdup(type);
	part->label = strdup(label ? label : "");
	part->segs = malloc(sizeof(*segs) * (size_t)nsegs);
	if (!part->type || !part->label || !part->segs) {
		free(part->type);
		free(part->label);
		free(part->segs);
		free(part);
		return -ENOMEM;
	}
	memcpy(part->segs, segs, sizeof(*segs) * (size_t)nsegs);
	part->nsegs = nsegs;
	part->number = number;
	snprintf(part->name, sizeof(part->name), "p%d", number);
	part->info = (struct vdfs_part_info){
		.name = part->name,
		.type = part->type,
		.label = part->label,
		.start = segs[0].disk_off,
		.size = segs_size(segs, nsegs),
		.segments = nsegs,
	};
	fs->parts[fs->nparts] = part;
	return fs->nparts++;
}

static void free_part(struct vdfs_part *part)
{
	vdfs_part_free_fs(part);
	free(part->type);
	free(part->label);
	free(part->fs_error);
	free(part->fs_label);
	free(part->segs);
	free(part);
}

static int set_error(char **errmsg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_error(char **errmsg, const char *fmt, ...)
{
	va_list ap;

	if (!errmsg)
		return 0;
	va_start(ap, fmt);
	if (vasprintf(errmsg, fmt, ap) < 0)
		*errmsg = NULL;
	va_end(ap);
	return 0;
}

int vdfs_open(struct vd_disk *disk, vdfs_log_fn log, void *log_ctx, struct vdfs **out,
	      char **errmsg)
{
	struct vd_info info;
	struct vdfs *fs;
	int rc;

	*out = NULL;
	if (errmsg)
		*errmsg = NULL;
	rc = vd_get_info(disk, &info);
	if (rc < 0) {
		set_error(errmsg, "%s", vd_errmsg(disk));
		return rc;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->disk = disk;
	fs->size = info.virtual_size;
	fs->log = log;
	fs->log_ctx = log_ctx;
	pthread_mutex_init(&fs->lock, NULL);
	rc = vdfs_scan_partitions(fs);
	if (rc == 0)
		rc = vdfs_scan_lvm(fs);
	if (rc < 0) {
		set_error(errmsg, "reading the partition table failed: %s", strerror(-rc));
		vdfs_close(fs);
		return rc;
	}
	vdfs_open_filesystems(fs);
	*out = fs;
	return 0;
}

void vdfs_close(struct vdfs *fs)
{
	if (!fs)
		return;
	for (int i = 0; i < fs->nparts; i++)
		free_part(fs->parts[i]);
	free(fs->parts);
	pthread_mutex_destroy(&fs->lock);
	free(fs);
}

uint64_t vdfs_disk_size(const struct vdfs *fs)
{
	return fs->size;
}

int vdfs_disk_read_unlocked(struct vdfs *fs, void *buf, size_t len, uint64_t offset)
{
	if (offset > fs->size || len > fs->size - offset)
		return -EINVAL;
	return vd_pread(fs->disk, buf, len, offset);
}

int vdfs_disk_pread(struct vdfs *fs, void *buf, size_t len, uint64_t offset)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = vdfs_disk_read_unlocked(fs, buf, len, offset);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_disk_pwrite(struct vdfs *fs, const void *buf, size_t len, uint64_t offset)
{
	int rc;

	if (offset > fs->size || len > fs->size - offset)
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	rc = vd_pwrite(fs->disk, buf, len, offset);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_disk_map(struct vdfs *fs, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = vd_map(fs->disk, offset, len, run_len);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_disk_flush(struct vdfs *fs)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = vd_flush(fs->disk);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_part_count(const struct vdfs *fs)
{
	return fs->nparts;
}

const struct vdfs_part_info *vdfs_part(const struct vdfs *fs, int index)
{
	if (index < 0 || index >= fs->nparts)
		return NULL;
	return &fs->parts[index]->info;
}

int vdfs_part_find(const struct vdfs *fs, const char *name)
{
	for (int i = 0; i < fs->nparts; i++)
		if (strcmp(fs->parts[i]->name, name) == 0)
			return i;
	return -ENOENT;
}

/*
 * Walk the segments covering [OFFSET, OFFSET+LEN) of partition INDEX and call
 * the disk read or write for each piece.
 */
static int part_io(struct vdfs *fs, int index, char *buf, size_t len, uint64_t offset, int write)
{
	const struct vdfs_part *part;

	if (index < 0 || index >= fs->nparts)
		return -EINVAL;
	part = fs->parts[index];
	if (offset > part->info.size || len > part->info.size - offset)
		return -EINVAL;
	for (int i = 0; i < part->nsegs && len > 0; i++) {
		const struct vdfs_seg *seg = &part->segs[i];
		uint64_t in_seg, n;
		int rc;

		if (offset >= seg->part_off + seg->len || offset < seg->part_off)
			continue;
		in_seg = offset - seg->part_off;
		n = seg->len - in_seg < len ? seg->len - in_seg : len;
		if (write)
			rc = vd_pwrite(fs->disk, buf, n, seg->disk_off + in_seg);
		else
			rc = vdfs_disk_read_unlocked(fs, buf, n, seg->disk_off + in_seg);
		if (rc < 0)
			return rc;
		buf += n;
		len -= n;
		offset += n;
	}
	return len == 0 ? 0 : -EIO;
}

int vdfs_part_map(struct vdfs *fs, int index, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	const struct vdfs_part *part;
	int rc = -EINVAL;

	if (index < 0 || index >= fs->nparts)
		return -EINVAL;
	part = fs->parts[index];
	if (offset >= part->info.size || len == 0)
		return -EINVAL;
	if (len > part->info.size - offset)
		len = part->info.size - offset;
	pthread_mutex_lock(&fs->lock);
	for (int i = 0; i < part->nsegs; i++) {
		const struct vdfs_seg *seg = &part->segs[i];
		uint64_t in_seg;

		if (offset < seg->part_off || offset >= seg->part_off + seg->len)
			continue;
		in_seg = offset - seg->part_off;
		if (len > seg->len - in_seg)
			len = seg->len - in_seg;
		rc = vd_map(fs->disk, seg->disk_off + in_seg, len, run_len);
		break;
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_part_read_unlocked(struct vdfs *fs, int index, void *buf, size_t len, uint64_t offset)
{
	return part_io(fs, index, buf, len, offset, 0);
}

int vdfs_part_pread(struct vdfs *fs, int index, void *buf, size_t len, uint64_t offset)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = part_io(fs, index, buf, len, offset, 0);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_part_pwrite(struct vdfs *fs, int index, const void *buf, size_t len, uint64_t offset)
{
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = part_io(fs, index, (char *)buf, len, offset, 1);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* A suffix ":p" followed by digits only names a partition. */
int vdfs_split_spec(const char *arg, char **disk, char **part)
{
	const char *colon = strrchr(arg, ':');

	*part = NULL;
	if (colon && colon[1] == 'p' && colon[2] &&
	    strspn(colon + 2, "0123456789") == strlen(colon + 2)) {
		*disk = strndup(arg, (size_t)(colon - arg));
		*part = strdup(colon + 1);
		if (!*disk || !*part) {
			free(*disk);
			free(*part);
			return -ENOMEM;
		}
		return 0;
	}
	*disk = strdup(arg);
	return *disk ? 0 : -ENOMEM;
}
