/*
 * vdfs: the file-level view of a virtual disk that vhdmount and vhdtool ls/extract
 * share. It reads a disk through libvdisk's public API only, finds its partitions
 * (The Sleuth Kit's volume-system code: MBR with logical partitions, GPT), the
 * logical volumes of LVM2 physical volumes inside them, and their file systems
 * (TSK: NTFS, FAT, exFAT, ext2/3/4).
 *
 * Partition names: MBR slots are p1..p4 and logical partitions p5, p6... as Linux
 * names them; GPT entry N is pN+1; a disk without a partition table whose whole
 * extent holds a file system or a PV is p1. LVM logical volumes follow as further
 * names after the highest partition number, in metadata order; their info names
 * the VG and LV.
 *
 * Every call is safe from many threads: one lock serialises the libvdisk handle
 * (not thread-safe) and TSK's per-file-system state.
 */
#ifndef VDFS_H
#define VDFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vdisk/vdisk.h>

/* Receives one log line (no newline): a partition or file system left out, and why. */
typedef void (*vdfs_log_fn)(void *ctx, const char *msg);

struct vdfs;
struct vdfs_file;

struct vdfs_part_info {
	const char *name;     /* "p1" */
	const char *type;     /* "Linux (0x83)", "GPT partition", "LVM2 logical volume" */
	const char *label;    /* GPT name, "VG/LV", or "" */
	uint64_t start;	      /* byte offset on the disk (first segment for an LV) */
	uint64_t size;	      /* bytes */
	const char *fs_type;  /* "ext4", "ntfs", "fat32", ... or NULL when none was opened */
	const char *fs_error; /* why no file system was opened, or NULL */
	const char *fs_label; /* the file system's own label (FAT), or NULL */
	int segments;	      /* 1, or the LV's segment count */
};

enum vdfs_kind {
	VDFS_REG = 1,
	VDFS_DIR = 2,
	VDFS_LNK = 3,
	VDFS_OTHER = 4,
};

struct vdfs_stat {
	uint64_t ino;
	enum vdfs_kind kind;
	uint32_t mode; /* permission bits (0 when the file system has none) */
	uint32_t nlink;
	uint64_t size;
	int64_t mtime, atime, ctime, crtime; /* seconds since 1970 */
	uint32_t mtime_ns, atime_ns, ctime_ns, crtime_ns;
};

/*
 * Open the file-level view of DISK (kept open by the caller until vdfs_close).
 * Partitions or file systems that cannot be read are reported through LOG and
 * left out; only a disk that cannot be read at all fails (-errno, message in
 * *errmsg, free()).
 */
int vdfs_open(struct vd_disk *disk, vdfs_log_fn log, void *log_ctx, struct vdfs **out,
	      char **errmsg);
void vdfs_close(struct vdfs *fs);

/* The whole disk, under the lock. */
uint64_t vdfs_disk_size(const struct vdfs *fs);
int vdfs_disk_pread(struct vdfs *fs, void *buf, size_t len, uint64_t offset);
int vdfs_disk_pwrite(struct vdfs *fs, const void *buf, size_t len, uint64_t offset);
int vdfs_disk_map(struct vdfs *fs, uint64_t offset, uint64_t len, uint64_t *run_len);
int vdfs_disk_flush(struct vdfs *fs);

int vdfs_part_count(const struct vdfs *fs);
const struct vdfs_part_info *vdfs_part(const struct vdfs *fs, int index);
/* Index of the partition named NAME ("p2"), or -ENOENT. */
int vdfs_part_find(const struct vdfs *fs, const char *name);
/* Bytes of partition INDEX (LVs through their segments); the range must be inside. */
int vdfs_part_pread(struct vdfs *fs, int index, void *buf, size_t len, uint64_t offset);
int vdfs_part_pwrite(struct vdfs *fs, int index, const void *buf, size_t len, uint64_t offset);
/* vd_map for a partition: the run at OFFSET (cut at a segment's end), as vd_map answers. */
int vdfs_part_map(struct vdfs *fs, int index, uint64_t offset, uint64_t len, uint64_t *run_len);

/*
 * Paths inside a partition's file system are absolute ("/", "/Users/a.txt").
 * -ENOENT, -ENOTDIR, -ENODEV (no file system opened), -EIO (damaged).
 */
int vdfs_stat(struct vdfs *fs, int part, const char *path, struct vdfs_stat *st);
/* Calls FN for each entry of directory PATH (without . and ..); FN returns 0 to go on. */
typedef int (*vdfs_dirent_fn)(void *ctx, const char *name, const struct vdfs_stat *st);
int vdfs_readdir(struct vdfs *fs, int part, const char *path, vdfs_dirent_fn fn, void *ctx);
/* Symbolic link target into BUF (NUL-terminated, truncated to LEN-1). */
int vdfs_readlink(struct vdfs *fs, int part, const char *path, char *buf, size_t len);

int vdfs_file_open(struct vdfs *fs, int part, const char *path, struct vdfs_file **out);
/* Bytes read (0 at or past the end) or -errno. */
ssize_t vdfs_file_read(struct vdfs_file *file, void *buf, size_t len, uint64_t offset);
void vdfs_file_close(struct vdfs_file *file);

/*
 * The byte ranges (relative to the partition) that the guest file system marks
 * free, in ascending order, adjacent ranges merged; for a compact that knows the
 * guest file system. FN returns 0 to go on. -ENODEV without a file system.
 */
typedef int (*vdfs_range_fn)(void *ctx, uint64_t offset, uint64_t len);
int vdfs_free_ranges(struct vdfs *fs, int part, vdfs_range_fn fn, void *ctx);

/*
 * Split "DISK:pN" into DISK and "pN" (*part NULL when ARG has no such suffix; a
 * file name may itself contain ':'). Both are malloc'd; -ENOMEM or 0.
 */
int vdfs_split_spec(const char *arg, char **disk, char **part);

#endif /* VDFS_H */
