/*
 * vhdmount: a FUSE3 file system showing a virtual disk (any checkpoint's state)
 * as disk, partitions/pN (+ pN.info) and files/pN/..., read through libvdisk
 * and vdfs; with --rw OVERLAY, writes to disk and partitions go to a new
 * differencing disk and never into the source chain.
 */
#define FUSE_USE_VERSION 31

#include "vdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Big reads: the kernel sends up to this much per request (FUSE's max_pages). */
#define VM_MAX_IO (1u << 20)

struct mount_state {
	struct vd_disk *disk;
	struct vdfs *fs;
	int rw;
	uid_t uid;
	gid_t gid;
	struct timespec when; /* times of disk, partitions and the folders */
};

static struct mount_state M;

enum node_kind {
	N_ROOT,
	N_DISK,
	N_PARTS_DIR,
	N_PART,
	N_PART_INFO,
	N_FILES_DIR,
	N_FILES,
};

struct node {
	enum node_kind kind;
	int part;
	const char *rest; /* N_FILES: the path inside the file system ("/" for its root) */
};

/* An open file: what it is and the state reads need. */
struct handle {
	enum node_kind kind;
	int part;
	struct vdfs_file *file; /* N_FILES */
	char *text;		/* N_PART_INFO */
	size_t text_len;
};

/* "p2" at the start of S (up to '/', '.' or the end): the partition index, or -ENOENT. */
static int part_prefix(const char *s, const char **after)
{
	size_t len = strcspn(s, "/.");
	char name[16];
	int index;

	if (len == 0 || len >= sizeof(name))
		return -ENOENT;
	memcpy(name, s, len);
	name[len] = '\0';
	index = vdfs_part_find(M.fs, name);
	*after = s + len;
	return index;
}

static int classify_partitions(const char *rest, struct node *n)
{
	const char *after;

	if (*rest == '\0') {
		n->kind = N_PARTS_DIR;
		return 0;
	}
	n->part = part_prefix(rest + 1, &after);
	if (n->part < 0)
		return -ENOENT;
	if (*after == '\0')
		n->kind = N_PART;
	else if (strcmp(after, ".info") == 0)
		n->kind = N_PART_INFO;
	else
		return -ENOENT;
	return 0;
}

static int classify_files(const char *rest, struct node *n)
{
	const char *after;

	if (*rest == '\0') {
		n->kind = N_FILES_DIR;
		return 0;
	}
	n->part = part_prefix(rest + 1, &after);
	if (n->part < 0 || (*after != '\0' && *after != '/') || !vdfs_part(M.fs, n->part)->fs_type)
		return -ENOENT;
	n->kind = N_FILES;
	n->rest = *after ? after : "/";
	return 0;
}

static int classify(const char *path, struct node *n)
{
	memset(n, 0, sizeof(*n));
	n->part = -1;
	if (strcmp(path, "/") == 0) {
		n->kind = N_ROOT;
		return 0;
	}
	if (strcmp(path, "/disk") == 0) {
		n->kind = N_DISK;
		return 0;
	}
	if (strncmp(path, "/partitions", 11) == 0 && (path[11] == '\0' || path[11] == '/'))
		return classify_partitions(path + 11, n);
	if (strncmp(path, "/files", 6) == 0 && (path[6] == '\0' || path[6] == '/'))
		return classify_files(path + 6, n);
	return -ENOENT;
}

static char *info_text(int part, size_t *len)
{
	const struct vdfs_part_info *p = vdfs_part(M.fs, part);
	char *text = NULL;
	int n;

	n = asprintf(&text,
		     "name: %s\ntype: %s\nlabel: %s\nstart: %llu\nsize: %llu\nsegments: %d\n"
		     "filesystem: %s\nfilesystem label: %s\n%s%s%s",
		     p->name, p->type, p->label, (unsigned long long)p->start,
		     (unsigned long long)p->size, p->segments, p->fs_type ? p->fs_type : "none",
		     p->fs_label ? p->fs_label : "", p->fs_error ? "note: " : "",
		     p->fs_error ? p->fs_error : "", p->fs_error ? "\n" : "");
	if (n < 0)
		return NULL;
	*len = (size_t)n;
	return text;
}

/* Bytes backed by data in [0, size) of the disk or a partition, for st_blocks. */
static uint64_t allocated_bytes(int part, uint64_t size)
{
	uint64_t pos = 0, run, total = 0;

	while (pos < size) {
		int kind = part < 0 ? vdfs_disk_map(M.fs, pos, size - pos, &run)
				    : vdfs_part_map(M.fs, part, pos, size - pos, &run);

		if (kind < 0 || run == 0 || run > size - pos)
			return size; /* cannot tell: claim it all rather than loop */
		if (kind == VD_EXTENT_ALLOCATED)
			total += run;
		pos += run;
	}
	return total;
}

static void fill_common(struct stat *st)
{
	st->st_uid = M.uid;
	st->st_gid = M.gid;
	st->st_mtim = st->st_ctim = st->st_atim = M.when;
}

static void fill_dir(struct stat *st)
{
	fill_common(st);
	st->st_mode = S_IFDIR | 0555;
	st->st_nlink = 2;
}

static void fill_image(struct stat *st, int part)
{
	uint64_t size = part < 0 ? vdfs_disk_size(M.fs) : vdfs_part(M.fs, part)->size;

	fill_common(st);
	st->st_mode = S_IFREG | (M.rw ? 0644 : 0444);
	st->st_nlink = 1;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((allocated_bytes(part, size) + 511) / 512);
	st->st_blksize = 65536;
}

static void fill_from_vdfs(struct stat *st, const struct vdfs_stat *vs)
{
	fill_common(st);
	st->st_ino = (ino_t)vs->ino;
	st->st_nlink = vs->nlink;
	st->st_size = (off_t)vs->size;
	st->st_blocks = (blkcnt_t)((vs->size + 511) / 512);
	st->st_mtim = (struct timespec){.tv_sec = vs->mtime, .tv_nsec = vs->mtime_ns};
	st->st_atim = (struct timespec){.tv_sec = vs->atime, .tv_nsec = vs->atime_ns};
	st->st_ctim = (struct timespec){.tv_sec = vs->ctime, .tv_nsec = vs->ctime_ns};
	/* files/ is read-only whatever the guest's permissions: a recovery view for its user. */
	if (vs->kind == VDFS_DIR)
		st->st_mode = S_IFDIR | 0555;
	else if (vs->kind == VDFS_LNK)
		st->st_mode = S_IFLNK | 0777;
	else
		st->st_mode = S_IFREG | 0444;
}

static int vm_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct node n;
	struct vdfs_stat vs;
	size_t len;
	char *text;
	int rc;

	(void)fi;
	memset(st, 0, sizeof(*st));
	rc = classify(path, &n);
	if (rc < 0)
		return rc;
	switch (n.kind) {
	case N_ROOT:
	case N_PARTS_DIR:
	case N_FILES_DIR:
		fill_dir(st);
		return 0;
	case N_DISK:
	case N_PART:
		fill_image(st, n.part);
		return 0;
	case N_PART_INFO:
		text = info_text(n.part, &len);
		if (!text)
			return -ENOMEM;
		free(text);
		fill_common(st);
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)len;
		return 0;
	case N_FILES:
		rc = vdfs_stat(M.fs, n.part, n.rest, &vs);
		if (rc == 0)
			fill_from_vdfs(st, &vs);
		return rc == -ENODEV || rc == -EIO ? -ENOENT : rc;
	}
	return -ENOENT;
}

struct fill_ctx {
	void *buf;
	fuse_fill_dir_t filler;
};

static int fill_vdfs(void *ctx, const char *name, const struct vdfs_stat *vs)
{
	struct fill_ctx *f = ctx;
	struct stat st;

	memset(&st, 0, sizeof(st));
	fill_from_vdfs(&st, vs);
	return f->filler(f->buf, name, &st, 0, 0);
}

static int vm_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fill_ctx ctx = {buf, filler};
	struct node n;
	int rc = classify(path, &n);

	(void)off, (void)fi, (void)flags;
	if (rc < 0)
		return rc;
	filler(buf, ".", NULL, 0, 0);
	filler(buf, "..", NULL, 0, 0);
	switch (n.kind) {
	case N_ROOT:
		filler(buf, "disk", NULL, 0, 0);
		filler(buf, "partitions", NULL, 0, 0);
		filler(buf, "files", NULL, 0, 0);
		return 0;
	case N_PARTS_DIR:
	case N_FILES_DIR:
		for (int i = 0; i < vdfs_part_count(M.fs); i++) {
			const struct vdfs_part_info *p = vdfs_part(M.fs, i);
			char info[32];

			if (n.kind == N_FILES_DIR) {
				if (p->fs_type)
					filler(buf, p->name, NULL, 0, 0);
				continue;
			}
			snprintf(info, sizeof(info), "%s.info", p->name);
			filler(buf, p->name, NULL, 0, 0);
			filler(buf, info, NULL, 0, 0);
		}
		return 0;
	case N_FILES:
		return vdfs_readdir(M.fs, n.part, n.rest, fill_vdfs, &ctx);
	default:
		return -ENOTDIR;
	}
}

static int open_node(const struct node *n, struct handle *h, int writing)
{
	if (n->kind == N_ROOT || n->kind == N_PARTS_DIR || n->kind == N_FILES_DIR)
		return -EISDIR;
	if (writing && (!M.rw || (n->kind != N_DISK && n->kind != N_PART)))
		return -EROFS;
	if (n->kind == N_PART_INFO) {
		h->text = info_text(n->part, &h->text_len);
		return h->text ? 0 : -ENOMEM;
	}
	if (n->kind == N_FILES)
		return vdfs_file_open(M.fs, n->part, n->rest, &h->file);
	return 0;
}

static int vm_open(const char *path, struct fuse_file_info *fi)
{
	struct node n;
	struct handle *h;
	int rc = classify(path, &n);

	if (rc < 0)
		return rc;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->kind = n.kind;
	h->part = n.part;
	rc = open_node(&n, h, (fi->flags & O_ACCMODE) != O_RDONLY);
	if (rc < 0) {
		free(h);
		return rc;
	}
	/* Nothing changes under a read-only mount: let the kernel keep its page cache. */
	fi->keep_cache = !M.rw;
	fi->fh = (uintptr_t)h;
	return 0;
}

static int vm_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)path;
	if (h->file)
		vdfs_file_close(h->file);
	free(h->text);
	free(h);
	return 0;
}

/* FUSE wants the whole request unless the end of the file comes first. */
static int read_file(struct vdfs_file *file, char *buf, size_t len, off_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = vdfs_file_read(file, buf + done, len - done, (uint64_t)off + done);

		if (n < 0)
			return (int)n;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int)done;
}

static int read_image(int part, char *buf, size_t len, off_t off)
{
	uint64_t size = part < 0 ? vdfs_disk_size(M.fs) : vdfs_part(M.fs, part)->size;
	int rc;

	if (off < 0 || (uint64_t)off >= size)
		return 0;
	if (len > size - (uint64_t)off)
		len = (size_t)(size - (uint64_t)off);
	rc = part < 0 ? vdfs_disk_pread(M.fs, buf, len, (uint64_t)off)
		      : vdfs_part_pread(M.fs, part, buf, len, (uint64_t)off);
	return rc < 0 ? rc : (int)len;
}

static int vm_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)path;
	switch (h->kind) {
	case N_DISK:
		return read_image(-1, buf, len, off);
	case N_PART:
		return read_image(h->part, buf, len, off);
	case N_PART_INFO:
		if (off < 0 || (size_t)off >= h->text_len)
			return 0;
		if (len > h->text_len - (size_t)off)
			len = h->text_len - (size_t)off;
		memcpy(buf, h->text + off, len);
		return (int)len;
	case N_FILES:
		return read_file(h->file, buf, len, off);
	default:
		return -EISDIR;
	}
}

static int vm_write(const char *path, const char *buf, size_t len, off_t off,
		    struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;
	uint64_t size;
	int rc;

	(void)path;
	if (!M.rw || (h->kind != N_DISK && h->kind != N_PART))
		return -EROFS;
	size = h->kind == N_DISK ? vdfs_disk_size(M.fs) : vdfs_part(M.fs, h->part)->size;
	/* Disks do not grow: a write past the end is "no space", as on a block device. */
	if (off < 0 || (uint64_t)off >= size)
		return -ENOSPC;
	if (len > size - (uint64_t)off)
		len = (size_t)(size - (uint64_t)off);
	rc = h->kind == N_DISK ? vdfs_disk_pwrite(M.fs, buf, len, (uint64_t)off)
			       : vdfs_part_pwrite(M.fs, h->part, buf, len, (uint64_t)off);
	return rc < 0 ? rc : (int)len;
}

static int vm_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path, (void)datasync, (void)fi;
	return M.rw ? vdfs_disk_flush(M.fs) : 0;
}

/* Loop mounts and dd open with O_TRUNC or truncate to the same size: allow only that. */
static int vm_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct stat st;
	int rc = vm_getattr(path, &st, fi);

	if (rc < 0)
		return rc;
	if (!M.rw)
		return -EROFS;
	return size == st.st_size ? 0 : -EPERM;
}

/* SEEK_DATA / SEEK_HOLE from vd_map: allocated runs are data, the rest reads as zeros. */
static off_t seek_image(int part, off_t off, int whence)
{
	uint64_t size = part < 0 ? vdfs_disk_size(M.fs) : vdfs_part(M.fs, part)->size;
	uint64_t pos = (uint64_t)off, run;

	if (off < 0 || pos >= size)
		return -ENXIO;
	while (pos < size) {
		int kind = part < 0 ? vdfs_disk_map(M.fs, pos, size - pos, &run)
				    : vdfs_part_map(M.fs, part, pos, size - pos, &run);

		if (kind < 0)
			return kind;
		if (run == 0 || run > size - pos)
			return -EIO;
		if ((kind == VD_EXTENT_ALLOCATED) == (whence == SEEK_DATA))
			return (off_t)pos;
		pos += run;
	}
	return whence == SEEK_HOLE ? (off_t)size : -ENXIO;
}

static off_t vm_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;

	(void)path;
	if (!h || (whence != SEEK_DATA && whence != SEEK_HOLE))
		return -EINVAL;
	if (h->kind == N_DISK)
		return seek_image(-1, off, whence);
	if (h->kind == N_PART)
		return seek_image(h->part, off, whence);
	/* Other files: all data (the SEEK_DATA/SEEK_HOLE fallback every file system has). */
	if (whence == SEEK_DATA)
		return off;
	return -EINVAL;
}

static int vm_readlink(const char *path, char *buf, size_t len)
{
	struct node n;
	int rc = classify(path, &n);

	if (rc < 0)
		return rc;
	if (n.kind != N_FILES)
		return -EINVAL;
	return vdfs_readlink(M.fs, n.part, n.rest, buf, len);
}

static int vm_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = sv->f_frsize = 512;
	sv->f_blocks = vdfs_disk_size(M.fs) / 512;
	sv->f_namemax = 255;
	return 0;
}

static void *vm_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Large requests: max_write also sets FUSE's max_pages, which bounds reads. */
	conn->max_write = VM_MAX_IO;
	conn->max_read = VM_MAX_IO; /* must equal the max_read mount option */
	conn->max_readahead = VM_MAX_IO;
	/* A read-only mount never changes: cache names and attributes for long. */
	cfg->entry_timeout = cfg->attr_timeout = cfg->negative_timeout = M.rw ? 1.0 : 3600.0;
	cfg->kernel_cache = !M.rw;
	cfg->use_ino = 0;
	return NULL;
}

static void vm_destroy(void *data)
{
	(void)data;
	vdfs_close(M.fs);
	M.fs = NULL;
	if (vd_close(M.disk) < 0)
		fprintf(stderr, "vhdmount: flushing the overlay failed: %s\n", vd_errmsg(M.disk));
	M.disk = NULL;
}

static const struct fuse_operations vm_ops = {
	.getattr = vm_getattr,
	.readdir = vm_readdir,
	.open = vm_open,
	.release = vm_release,
	.read = vm_read,
	.write = vm_write,
	.fsync = vm_fsync,
	.truncate = vm_truncate,
	.lseek = vm_lseek,
	.readlink = vm_readlink,
	.statfs = vm_statfs,
	.init = vm_init,
	.destroy = vm_destroy,
};

static void usage(void)
{
	printf("Usage: vhdmount [--checkpoint NAME | --image PATH] [--rw OVERLAY] [-o OPT,...]\n"
	       "                [-f] [-d] DISK MOUNTPOINT\n"
	       "       vhdmount --image PATH [...] MOUNTPOINT\n\n"
	       "Show a VHD (a chain, or a checkpoint's state) as files, without root:\n"
	       "  MOUNTPOINT/disk              the whole virtual disk\n"
	       "  MOUNTPOINT/partitions/pN     each partition and LVM logical volume\n"
	       "  MOUNTPOINT/partitions/pN.info  its type, label, start, size, file system\n"
	       "  MOUNTPOINT/files/pN/...      the files of NTFS, FAT, exFAT and ext2/3/4\n"
	       "MBR primary partitions are p1-p4, logical ones p5 on, GPT entry N is pN;\n"
	       "LVM logical volumes follow the highest partition number.\n\n"
	       "      --checkpoint NAME  mount checkpoint NAME's state (default: the active one)\n"
	       "      --image PATH       mount the state held by image PATH (an AVHD, a child)\n"
	       "      --rw OVERLAY       create the differencing disk OVERLAY on the state and\n"
	       "                         mount read-write: disk and partitions/ take writes\n"
	       "                         (into OVERLAY only), files/ stays read-only\n"
	       "  -o OPT[,OPT...]        FUSE mount options (allow_other, ...)\n"
	       "  -f                     stay in the foreground\n"
	       "  -d                     debug output (implies -f)\n"
	       "  -h, --help             show this help\n"
	       "  -V, --version          show the version\n\n"
	       "Unmount with 'fusermount3 -u MOUNTPOINT' (or Ctrl-C with -f). See vhdmount(1).\n");
}

struct mount_args {
	const char *checkpoint, *image, *overlay, *disk, *mountpoint;
	int foreground, debug;
	char *options; /* -o values joined with ',' */
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("vhdmount: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("; try 'vhdmount --help'\n", stderr);
	return 2;
}

static int add_option(struct mount_args *a, const char *opt)
{
	char *joined;

	if (asprintf(&joined, "%s%s%s", a->options ? a->options : "", a->options ? "," : "", opt) <
	    0)
		return -1;
	free(a->options);
	a->options = joined;
	return 0;
}

enum { OPT_CHECKPOINT = 256, OPT_IMAGE, OPT_RW };

static int parse_args(int argc, char **argv, struct mount_args *a)
{
	static const struct option longopts[] = {
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"image", required_argument, NULL, OPT_IMAGE},
		{"rw", required_argument, NULL, OPT_RW},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt, want;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:fdhV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage();
			return 1;
		case 'V':
			printf("vhdmount (libvdisk %s)\n", vd_version());
			return 1;
		case 'o':
			if (add_option(a, optarg) < 0)
				return usage_error("out of memory");
			break;
		case 'f':
			a->foreground = 1;
			break;
		case 'd':
			a->debug = a->foreground = 1;
			break;
		case OPT_CHECKPOINT:
			a->checkpoint = optarg;
			break;
		case OPT_IMAGE:
			a->image = optarg;
			break;
		case OPT_RW:
			a->overlay = optarg;
			break;
		case ':':
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (a->checkpoint && a->image)
		return usage_error("--checkpoint and --image name two different states; give one");
	want = a->image ? 1 : 2;
	if (argc - optind != want)
		return usage_error("wanted %s, got %d argument%s",
				   a->image ? "MOUNTPOINT" : "DISK MOUNTPOINT", argc - optind,
				   argc - optind == 1 ? "" : "s");
	a->disk = a->image ? a->image : argv[optind];
	a->mountpoint = argv[argc - 1];
	return 0;
}

static int open_error(struct vd_disk *disk, const char *path, int rc)
{
	const char *msg = disk ? vd_errmsg(disk) : NULL;

	fprintf(stderr, "vhdmount: %s\n", msg && *msg ? msg : vd_strerror(rc));
	(void)path;
	if (disk)
		vd_close(disk);
	return 2;
}

/* The image file that holds the chosen state, as the overlay's parent. */
static int state_image(const struct mount_args *a, char **image)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY, .checkpoint = a->checkpoint};
	struct vd_disk *disk = NULL;
	struct vd_info info;
	int rc;

	if (a->image)
		opts.flags |= VD_OPEN_IMAGE_ONLY;
	rc = vd_open(a->disk, &opts, &disk);
	if (rc == 0)
		rc = vd_get_info(disk, &info);
	if (rc < 0)
		return open_error(disk, a->disk, rc);
	*image = strdup(info.path);
	vd_close(disk);
	return *image ? 0 : 2;
}

static int open_disk(const struct mount_args *a)
{
	/*
	 * psync: fuse_main forks into the background after the disk is open, and a
	 * plain file descriptor is the one engine state that survives a fork.
	 */
	struct vd_open_opts opts = {
		.flags = VD_OPEN_RDONLY, .checkpoint = a->checkpoint, .engine = "psync"};
	struct vd_create_opts copts = {.type = VD_TYPE_DIFFERENCING, .engine = "psync"};
	char *parent = NULL;
	int rc;

	if (!a->overlay) {
		if (a->image)
			opts.flags |= VD_OPEN_IMAGE_ONLY;
		rc = vd_open(a->disk, &opts, &M.disk);
		return rc < 0 ? open_error(M.disk, a->disk, rc) : 0;
	}
	if (state_image(a, &parent))
		return 2;
	copts.parent = parent;
	rc = vd_create(a->overlay, &copts, &M.disk);
	free(parent);
	if (rc < 0)
		return open_error(M.disk, a->overlay, rc);
	M.rw = 1;
	return 0;
}

static void log_line(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "vhdmount: note: %s\n", msg);
}

static int open_view(const struct mount_args *a)
{
	struct stat st;
	char *err = NULL;
	int rc;

	if (open_disk(a))
		return 2;
	rc = vdfs_open(M.disk, log_line, NULL, &M.fs, &err);
	if (rc < 0) {
		fprintf(stderr, "vhdmount: %s: %s\n", a->disk, err ? err : strerror(-rc));
		free(err);
		vd_close(M.disk);
		return 2;
	}
	M.uid = getuid();
	M.gid = getgid();
	if (stat(a->disk, &st) == 0)
		M.when = st.st_mtim;
	return 0;
}

static int run_fuse(struct mount_args *a, const char *argv0)
{
	char *fsname = NULL, *opts = NULL;
	char *fargv[10];
	int fargc = 0, rc;

	/* max_read must be given at mount time; init() cannot raise it. */
	if (asprintf(&fsname, "fsname=vhdmount,subtype=vhd,max_read=%u,%s", VM_MAX_IO,
		     M.rw ? "rw" : "ro") < 0 ||
	    asprintf(&opts, "%s%s%s", fsname, a->options ? "," : "", a->options ? a->options : "") <
		    0) {
		free(fsname);
		return 2;
	}
	fargv[fargc++] = (char *)argv0;
	fargv[fargc++] = (char *)a->mountpoint;
	fargv[fargc++] = "-o";
	fargv[fargc++] = opts;
	if (a->foreground)
		fargv[fargc++] = "-f";
	if (a->debug)
		fargv[fargc++] = "-d";
	/* libfuse 3.14 warns about its own unset idle-thread default without a value. */
	fargv[fargc++] = "-omax_idle_threads=10";
	fargv[fargc] = NULL;
	rc = fuse_main(fargc, fargv, &vm_ops, NULL);
	free(fsname);
	free(opts);
	/* Never mounted (destroy did not run): an overlay made for it is not wanted either. */
	if (M.fs) {
		vdfs_close(M.fs);
		vd_close(M.disk);
		if (a->overlay)
			unlink(a->overlay);
	}
	return rc == 0 ? 0 : 2;
}

int main(int argc, char **argv)
{
	struct mount_args a = {0};
	struct stat st;
	int rc = parse_args(argc, argv, &a);

	if (rc) {
		free(a.options);
		return rc == 1 ? 0 : rc;
	}
	if (stat(a.mountpoint, &st) < 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "vhdmount: %s: not a directory; create it first (mkdir)\n",
			a.mountpoint);
		free(a.options);
		return 2;
	}
	rc = open_view(&a);
	if (rc == 0)
		rc = run_fuse(&a, argv[0]);
	free(a.options);
	return rc;
}
