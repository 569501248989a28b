/*
 * vdfs internals shared by its parts: the handle, the partition table it builds
 * (partitions, then LVM logical volumes), the TSK image adapter and the
 * per-file-system directory cache. Not installed; vhdmount and vhdtool use vdfs.h.
 */
#ifndef VDFS_INT_H
#define VDFS_INT_H

#include "vdfs.h"

#include <pthread.h>

#include <tsk/libtsk.h>

/* One linear piece of a partition: LVs have several, partitions one. */
struct vdfs_seg {
	uint64_t part_off; /* offset inside the partition */
	uint64_t len;
	uint64_t disk_off; /* where it lives on the virtual disk */
};

struct vdfs_dent {
	char *name;
	struct vdfs_stat st;
};

/* A directory's entries, sorted by name (bsearch), cached by inode number. */
struct vdfs_dir {
	uint64_t ino;
	size_t count;
	struct vdfs_dent *ents;
	struct vdfs_dir *next; /* hash chain */
};

#define VDFS_DIR_BUCKETS 4096
/* Past this many cached directories the cache starts over (bounded memory). */
#define VDFS_DIR_CACHE_MAX 200000

struct vdfs_part {
	struct vdfs_part_info info;
	int number; /* the N of pN */
	char name[16];
	char *type;
	char *label;
	char *fs_error;
	char *fs_label;
	struct vdfs_seg *segs;
	int nsegs;
	int is_pv; /* holds an LVM physical volume: no file system looked for */
	TSK_IMG_INFO *img;
	TSK_FS_INFO *tfs;
	struct vdfs_dir *dirs[VDFS_DIR_BUCKETS];
	size_t ndirs;
};

struct vdfs {
	struct vd_disk *disk;
	uint64_t size;
	pthread_mutex_t lock;
	vdfs_log_fn log;
	void *log_ctx;
	struct vdfs_part **parts;
	int nparts;
};

void vdfs_log(struct vdfs *fs, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Add a partition named pNUMBER (TYPE and LABEL copied) made of NSEGS segments
 * (copied); its size is the segments' total. Returns its index or -errno.
 */
int vdfs_add_part(struct vdfs *fs, int number, const char *type, const char *label,
		  const struct vdfs_seg *segs, int nsegs);

/* Reads without taking the lock (the caller holds it, or TSK calls back under it). */
int vdfs_disk_read_unlocked(struct vdfs *fs, void *buf, size_t len, uint64_t offset);
int vdfs_part_read_unlocked(struct vdfs *fs, int index, void *buf, size_t len, uint64_t offset);

/* A TSK image over the whole disk (PART < 0) or partition PART; tsk_img_close frees it. */
TSK_IMG_INFO *vdfs_tskimg_open(struct vdfs *fs, int part, uint64_t size);

/* part.c: the partition table, through TSK's volume-system code. */
int vdfs_scan_partitions(struct vdfs *fs);
/* lvm.c: LVM2 physical volumes in the partitions, and their linear LVs. */
int vdfs_scan_lvm(struct vdfs *fs);
/* fsread.c: open each partition's file system; free the caches. */
void vdfs_open_filesystems(struct vdfs *fs);
void vdfs_part_free_fs(struct vdfs_part *part);

#endif /* VDFS_INT_H */
