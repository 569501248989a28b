/*
 * The disk handle: open (format probing), close, byte-granular read and write,
 * flush, info, map and create. Drivers see only ranges inside the virtual size.
 */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "vdisk_int.h"

static const struct vd_driver *const drivers[] = {
	&vd_vhd_driver,
	&vd_raw_driver,
};

static const struct vd_driver *driver_find(const char *name)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (strcmp(drivers[i]->name, name) == 0)
			return drivers[i];
	return NULL;
}

static struct vd_disk *disk_new(const char *path, unsigned flags)
{
	struct vd_disk *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->path = strdup(path ? path : "");
	if (!d->path) {
		free(d);
		return NULL;
	}
	d->flags = flags;
	d->file.fd = -1;
	vd_lock_init_(d);
	return d;
}

/*
 * One mutex per handle serializes its calls, so a mirror (or a FUSE thread)
 * may use a handle that another thread writes. Recursive: the library calls
 * its own public functions on a handle it already holds.
 */
void vd_lock_init_(struct vd_disk *d)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&d->lock, &a);
	pthread_mutexattr_destroy(&a);
}

/* Open the image file and its engine; a writer takes an exclusive lock. */
/* The pid holding a flock on the file (from /proc/locks), or 0 when unknown. */
static long lock_holder(const struct stat *st)
{
	FILE *fp = fopen("/proc/locks", "re");
	char line[256], type[16];
	unsigned maj, min;
	unsigned long ino;
	long pid, found = 0;

	while (fp && !found && fgets(line, sizeof(line), fp))
		if (sscanf(line, "%*s %15s %*s %*s %ld %x:%x:%lu", type, &pid, &maj, &min, &ino) ==
			    5 &&
		    strcmp(type, "FLOCK") == 0 && ino == (unsigned long)st->st_ino &&
		    maj == major(st->st_dev) && min == minor(st->st_dev) && pid != (long)getpid())
			found = pid;
	if (fp)
		fclose(fp);
	return found;
}

static int busy(struct vd_disk *d, const struct stat *st, const char *what)
{
	long pid = lock_holder(st);

	if (pid > 0)
		return vd_error(d, -EBUSY, "", UINT64_MAX,
				"%s by process %ld; close it there first", what, pid);
	return vd_error(d, -EBUSY, "", UINT64_MAX, "%s; close it there first", what);
}

/*
 * A writer holds an exclusive lock; a parent held open under a child a shared
 * one, so nobody writes a parent while a child reads through it. Read-only
 * opens of an image take no lock: reading a parent in use is allowed.
 */
static int take_lock(struct vd_disk *d, int oflags, const struct stat *st)
{
	if ((oflags & O_ACCMODE) == O_RDWR && !(d->flags & VD_OPEN_NOLOCK_) &&
	    flock(d->file.fd, LOCK_EX | LOCK_NB) < 0)
		return errno == EWOULDBLOCK
			       ? busy(d, st,
				      "image is locked: open for writing, or read through a child")
			       : vd_error(d, -errno, "", UINT64_MAX, "cannot lock: %s",
					  strerror(errno));
	if (d->child && flock(d->file.fd, LOCK_SH | LOCK_NB) < 0)
		return errno == EWOULDBLOCK
			       ? busy(d, st, "parent image is locked: open for writing")
			       : vd_error(d, -errno, "", UINT64_MAX, "cannot lock: %s",
					  strerror(errno));
	return 0;
}

/* The file system holding FD, by name where we know it, for O_DIRECT messages. */
static void fs_name(int fd, const char *path, char *out, size_t len)
{
	static const struct {
		unsigned long magic;
		const char *name;
	} known[] = {{0x01021994, "tmpfs"}, {0xEF53, "ext2/ext3/ext4"},
		     {0x58465342, "xfs"},   {0x9123683E, "btrfs"},
		     {0x6969, "nfs"},	    {0x794c7630, "overlayfs"},
		     {0x65735546, "fuse"},  {0x2FC12FC1, "zfs"},
		     {0xF2F52010, "f2fs"},  {0x4d44, "vfat"},
		     {0x5346544e, "ntfs"},  {0x858458f6, "ramfs"}};
	struct statfs sf;
	int ok = fd >= 0 ? fstatfs(fd, &sf) == 0 : statfs(path, &sf) == 0;

	snprintf(out, len, "%s", "unknown");
	for (size_t i = 0; ok && i < sizeof(known) / sizeof(known[0]); i++)
		if ((unsigned long)sf.f_type == known[i].magic)
			snprintf(out, len, "%s", known[i].name);
	if (ok && strcmp(out, "unknown") == 0)
		snprintf(out, len, "type 0x%lx", (unsigned long)sf.f_type);
}

/*
 * VD_OPEN_DIRECT where the file system refuses O_DIRECT (tmpfs before Linux 6.6,
 * some FUSE file systems) fails the open: a caller who asked for direct I/O
 * (benchmarks, no double caching under a guest) should not silently get the
 * page cache. Some refuse at open, others only at the first read: try one.
 */
static int direct_refused(struct vd_disk *d, int fd, int err)
{
	char fs[32];
	void *probe = NULL;

	if (fd >= 0 && err == 0) {
		probe = aligned_alloc(VD_DIRECT_ALIGN, VD_DIRECT_ALIGN);
		if (probe && pread(fd, probe, VD_DIRECT_ALIGN, 0) < 0)
			err = errno;
		free(probe);
		if (err != EINVAL)
			return 0;
	}
	fs_name(fd, d->path, fs, sizeof(fs));
	return vd_error(d, -EINVAL, "", UINT64_MAX,
			"the file system (%s) refuses O_DIRECT: open without VD_OPEN_DIRECT", fs);
}

static int file_open(struct vd_disk *d, int oflags, mode_t mode, const char *engine)
{
	char err[200];
	struct stat st;
	int rc;

	if (d->flags & VD_OPEN_DIRECT)
		oflags |= O_DIRECT;
	d->file.fd = open(d->path, oflags | O_CLOEXEC, mode);
	if (d->file.fd < 0 && errno == EINVAL && (oflags & O_DIRECT))
		return direct_refused(d, -1, EINVAL);
	if (d->file.fd < 0)
		return vd_error(d, -errno, "", UINT64_MAX, "cannot %s: %s",
				(oflags & O_CREAT) ? "create" : "open", strerror(errno));
	d->file.direct = (oflags & O_DIRECT) != 0;
	if (d->file.direct && (rc = direct_refused(d, d->file.fd, 0)) < 0)
		return rc;
	if (fstat(d->file.fd, &st) < 0)
		return vd_error(d, -errno, "", UINT64_MAX, "cannot stat: %s", strerror(errno));
	if (S_ISDIR(st.st_mode))
		return vd_error(d, -EISDIR, "", UINT64_MAX, "is a directory, not a disk image");
	d->file.size = (uint64_t)st.st_size;
	d->file.path = d->path;
	d->dev = st.st_dev;
	d->ino = st.st_ino;
	rc = take_lock(d, oflags, &st);
	if (rc < 0)
		return rc;
	rc = vd_io_engine_start(engine, d->path, &d->file.eng, err, sizeof(err));
	if (rc < 0)
		return vd_error(d, rc, "", UINT64_MAX, "%s", err);
	d->file_open = 1;
	/* The parents of a chain are read through the engine the caller chose. */
	if (engine && *engine && !(d->engine = strdup(engine)))
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	return 0;
}

/* An I/O error while probing fails the open: guessing "raw" would hide it. */
static const struct vd_driver *probe(struct vd_disk *d, int *rc)
{
	uint8_t head[1024] = {0}, tail[1024] = {0};
	size_t hl = d->file.size < sizeof(head) ? (size_t)d->file.size : sizeof(head);
	size_t tl = hl;
	const struct vd_driver *best = &vd_raw_driver;
	int best_score = 0;

	*rc = vd_file_pread(&d->file, head, hl, 0);
	if (*rc == 0)
		*rc = vd_file_pread(&d->file, tail, tl, d->file.size - tl);
	if (*rc < 0) {
		vd_error(d, *rc, "", UINT64_MAX, "cannot read the image to tell its format: %s",
			 vd_strerror(*rc));
		return NULL;
	}
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		int score = drivers[i]->probe(head, hl, tail, tl, d->file.size);
		if (score > best_score) {
			best_score = score;
			best = drivers[i];
		}
	}
	return best;
}

static int attach_driver(struct vd_disk *d, const struct vd_driver *drv)
{
	d->drv = drv;
	d->state = calloc(1, drv->state_size);
	if (!d->state)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	return 0;
}

/* Opens PATH, or for a base with checkpoints the state OPTS asks for. */
static int open_image(const char *path, const struct vd_open_opts *opts, struct vd_disk *child,
		      struct vd_disk **diskp)
{
	struct vd_open_opts none = {0};
	unsigned flags = (opts ? opts : &none)->flags;
	const struct vd_driver *drv;
	struct vd_disk *d;
	char *image = NULL;
	int rc;

	if (!opts)
		opts = &none;
	*diskp = d = disk_new(path, flags);
	if (!d)
		return -ENOMEM;
	if (!path || !*path)
		return vd_error(d, -EINVAL, "", UINT64_MAX, "no image path given");
	d->child = child;
	d->depth = child ? child->depth + 1 : 0;
	if (!child && !(flags & VD_OPEN_IMAGE_ONLY)) {
		rc = vd_ckpt_resolve(d, opts->checkpoint, &flags, &image);
		if (rc < 0)
			return rc;
		if (image) {
			free(d->path);
			d->path = image;
			d->flags = flags;
		}
	}
	rc = file_open(d, (flags & VD_OPEN_RDWR) ? O_RDWR : O_RDONLY, 0, opts->engine);
	if (rc < 0)
		return rc;
	if (opts->format) {
		drv = driver_find(opts->format);
		if (!drv)
			return vd_error(d, -EINVAL, "", UINT64_MAX,
					"unknown format '%s' (vhd, raw)", opts->format);
	} else if (!(drv = probe(d, &rc))) {
		return rc;
	}
	rc = attach_driver(d, drv);
	if (rc < 0)
		return rc;
	rc = drv->open(d, d->state, &d->file, flags);
	if (rc == 0)
		rc = vd_chain_open_parent(d, flags);
	if (rc == 0 && (flags & VD_OPEN_RDWR) && !(flags & VD_OPEN_FORCE))
		rc = vd_chain_check_dependents(d);
	if (rc < 0) {
		vd_chain_close(d);
		drv->close(d->state);
		free(d->state);
		d->state = NULL;
		d->drv = NULL;
	}
	return rc;
}

int vd_open(const char *path, const struct vd_open_opts *opts, struct vd_disk **diskp)
{
	return open_image(path, opts, NULL, diskp);
}

int vd_open_child_parent(const char *path, const struct vd_open_opts *opts, struct vd_disk *child,
			 struct vd_disk **diskp)
{
	return open_image(path, opts, child, diskp);
}

const char *vd_version(void)
{
	return VD_VERSION_STRING;
}

int vd_close(struct vd_disk *d)
{
	int rc = 0;

	if (!d)
		return 0;
	if (d->mirror)
		vd_mirror_cancel(d->mirror); /* a mirror never outlives its source */
	if (d->drv && (d->flags & VD_OPEN_RDWR))
		rc = vd_flush(d); /* waits for every request in flight first */
	else if (d->drv && d->file_open)
		vd_aio_drain_(d);
	vd_chain_close(d);
	if (d->drv)
		d->drv->close(d->state);
	free(d->state);
	if (d->file_open)
		vd_io_engine_stop(d->file.eng);
	if (d->file.fd >= 0)
		close(d->file.fd);
	for (int i = 0; i < d->nwarnings; i++) {
		free(d->warnings[i].field);
		free(d->warnings[i].message);
	}
	free(d->warnings);
	free(d->final_path);
	free(d->switched_to);
	free(d->engine);
	free(d->path);
	pthread_mutex_destroy(&d->lock);
	free(d);
	return rc;
}

/*
 * The synchronous paths (aio.c splits each request and sends the pieces that
 * need metadata here; the public vd_pread and friends are wrappers there).
 */
int vd_disk_check_range_(struct vd_disk *d, size_t len, uint64_t offset, const char *what)
{
	if (!d->drv)
		return vd_error(d, -EBADF, "", UINT64_MAX, "disk is not open");
	if (offset > d->virtual_size || len > d->virtual_size - offset)
		return vd_error(
			d, -EINVAL, "", offset,
			"%s of %zu bytes at offset %llu is past the end of the disk (%llu bytes)",
			what, len, (unsigned long long)offset, (unsigned long long)d->virtual_size);
	return 0;
}

/* Through a chain: each layer's map says whether it holds a run or its parent does. */
static int chain_pread(struct vd_disk *d, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		uint64_t run;
		int kind = d->drv->map(d->state, off, len, &run), rc;

		if (kind < 0)
			return kind;
		if (run == 0 || run > len)
			run = len;
		if (kind == VD_EXTENT_ALLOCATED)
			rc = d->drv->pread(d->state, buf, (size_t)run, off);
		else if (kind == VD_EXTENT_ZERO)
			rc = (memset(buf, 0, (size_t)run), 0);
		else
			rc = vd_backing_pread(d, buf, (size_t)run, off);
		if (rc < 0)
			return rc;
		buf += run;
		off += run;
		len -= (size_t)run;
	}
	return 0;
}

int vd_disk_slow_pread_(struct vd_disk *d, void *buf, size_t len, uint64_t offset)
{
	if (d->parent)
		return chain_pread(d, buf, len, offset);
	return d->drv->pread(d->state, buf, len, offset);
}

/* After a mirror's switch-over the source takes no more writes: they belong to the copy. */
int vd_disk_writable_(struct vd_disk *d)
{
	if (!(d->flags & VD_OPEN_RDWR))
		return vd_error(d, -EROFS, "", UINT64_MAX, "image is open read-only");
	if (d->switched_to)
		return vd_error(d, -EROFS, "", UINT64_MAX,
				"mirrored to %s and switched over; write through the new handle",
				d->switched_to);
	return 0;
}

/* Writing zeros is the fallback where nothing can be released. */
static int zero_range(struct vd_disk *d, uint64_t off, uint64_t len)
{
	size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
	uint8_t *zeros = calloc(1, chunk ? chunk : 1);
	int rc = zeros ? 0 : -ENOMEM;

	while (rc == 0 && len) {
		size_t n = len < chunk ? (size_t)len : chunk;

		rc = d->drv->pwrite(d->state, zeros, n, off);
		off += n;
		len -= n;
	}
	free(zeros);
	return rc;
}

int vd_disk_discard_(struct vd_disk *d, uint64_t offset, uint64_t len)
{
	if (len == 0)
		return 0;
	if (d->drv->discard)
		return d->drv->discard(d->state, offset, len);
	return zero_range(d, offset, len);
}

int vd_disk_flush_(struct vd_disk *d)
{
	if (!d->drv)
		return vd_error(d, -EBADF, "", UINT64_MAX, "disk is not open");
	if (!(d->flags & VD_OPEN_RDWR))
		return 0;
	return d->drv->flush(d->state);
}

static int build_chain(struct vd_disk *d)
{
	int n = 0;

	for (struct vd_disk *p = d; p; p = p->parent)
		n++;
	d->chain = calloc((size_t)n, sizeof(char *));
	if (!d->chain)
		return -ENOMEM;
	for (struct vd_disk *p = d; p; p = p->parent) {
		d->chain[d->chain_length] = strdup(p->path);
		if (!d->chain[d->chain_length])
			return -ENOMEM;
		d->chain_length++;
	}
	return 0;
}

int vd_get_info(struct vd_disk *d, struct vd_info *info)
{
	if (!d->drv)
		return vd_error(d, -EBADF, "", UINT64_MAX, "disk is not open");
	memset(info, 0, sizeof(*info));
	info->path = d->path;
	info->file_size = d->file.size;
	info->parent = d->parent ? d->parent->path : d->parent_hint;
	info->parent_name = d->parent_name;
	if (!d->chain && build_chain(d) < 0)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	info->chain = (const char *const *)d->chain;
	info->chain_length = d->chain_length;
	return d->drv->info(d->state, info);
}

static int disk_map(struct vd_disk *d, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	int rc;

	if (!d->drv)
		return vd_error(d, -EBADF, "", UINT64_MAX, "disk is not open");
	if (offset >= d->virtual_size || len == 0)
		return vd_error(d, -EINVAL, "", offset,
				"map at offset %llu is past the end of the disk",
				(unsigned long long)offset);
	if (len > d->virtual_size - offset)
		len = d->virtual_size - offset;
	rc = d->parent ? vd_chain_map(d, offset, len, run_len)
		       : d->drv->map(d->state, offset, len, run_len);
	if (rc > 0 && (*run_len == 0 || *run_len > len))
		*run_len = len; /* a driver must never stall the caller's walk */
	return rc;
}

int vd_map(struct vd_disk *d, uint64_t offset, uint64_t len, uint64_t *run_len)
{
	int rc;

	pthread_mutex_lock(&d->lock);
	rc = disk_map(d, offset, len, run_len);
	pthread_mutex_unlock(&d->lock);
	return rc;
}

/* Size, block size and parent link of a differencing disk on O->parent. */
static int child_layout(struct vd_disk *d, struct vd_create_opts *o, struct vd_parent_link *link,
			char *abs, char *rel, size_t len)
{
	struct vd_open_opts po = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_disk *p;
	struct vd_info pi;
	int rc;

	if (!o->parent || !*o->parent)
		return vd_error(d, -EINVAL, "", UINT64_MAX, "a differencing disk needs a parent");
	rc = vd_open(o->parent, &po, &p);
	if (rc < 0) {
		vd_error(d, rc, "", UINT64_MAX, "parent: %s", vd_errmsg(p));
		vd_close(p);
		return rc;
	}
	vd_get_info(p, &pi);
	if (pi.chain_length > VD_MAX_CHAIN_DEPTH) {
		vd_close(p);
		return vd_error(d, -ELOOP, "", UINT64_MAX,
				"the parent's chain already has %d images; a child would make it "
				"deeper than the "
				"limit of %d levels",
				pi.chain_length, VD_MAX_CHAIN_DEPTH);
	}
	o->size = pi.virtual_size;
	if (!o->block_size)
		o->block_size = pi.block_size ? pi.block_size : (2u << 20);
	memcpy(link->uuid, pi.uuid, 16);
	vd_close(p);
	if (strcmp(pi.format, "vhd") != 0)
		return vd_error(d, -EINVAL, "", UINT64_MAX,
				"parent %s is a raw image; a VHD child needs a VHD parent "
				"(vhdtool convert it first)",
				o->parent);
	rc = vd_parent_link_for(d->path, o->parent, link, abs, rel, len);
	if (rc < 0)
		return vd_error(d, rc, "", UINT64_MAX, "cannot resolve the parent path %s: %s",
				o->parent, strerror(-rc));
	return 0;
}

/*
 * A new image is laid out under a temporary name and renamed into place once
 * durable, so a crash or kill during creation leaves no half-made image under
 * the name (at worst a stray PATH.vdtmp-PID file).
 */
static int begin_temp(struct vd_disk *d)
{
	size_t n = strlen(d->path) + 32;
	char *tmp = malloc(n);

	if (!tmp)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	snprintf(tmp, n, "%s.vdtmp-%ld", d->path, (long)getpid());
	d->final_path = d->path;
	d->path = tmp;
	return 0;
}

static int sync_parent_dir(const char *path)
{
	char *copy = strdup(path);
	int fd = copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1, rc = 0;

	if (fd >= 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

/* Rename without replacing (a file that appeared meanwhile is kept), then sync the folder. */
static int finish_temp(struct vd_disk *d, int rc)
{
	char *tmp = d->path;

	d->path = d->final_path;
	d->final_path = NULL;
	if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, d->path, RENAME_NOREPLACE) < 0) {
		rc = -errno;
		if (rc == -EINVAL ||
		    rc == -ENOSYS) /* no RENAME_NOREPLACE here: link is atomic too */
			rc = link(tmp, d->path) < 0 ? -errno : 0;
		if (rc == -EEXIST)
			vd_error(d, rc, "", UINT64_MAX,
				 "file exists; remove it or choose another name");
		else if (rc < 0)
			vd_error(d, rc, "", UINT64_MAX, "cannot rename %s into place: %s", tmp,
				 strerror(-rc));
	}
	if (rc == 0)
		rc = sync_parent_dir(d->path);
	unlink(tmp); /* gone after a rename; after a link or a failure, removed here */
	free(tmp);
	return rc;
}

/* Lay the new image out in D's (empty, exclusive) file. */
static int lay_out(struct vd_disk *d, const struct vd_driver *drv, struct vd_create_opts *o)
{
	char abs[VD_PATH_MAX], rel[VD_PATH_MAX], why[200];
	struct vd_parent_link link = {{0}, 0, NULL, NULL, NULL};
	int diff = o->type == VD_TYPE_DIFFERENCING;
	uint64_t size;
	int rc;

	if (diff && (rc = child_layout(d, o, &link, abs, rel, sizeof(rel))) < 0)
		return rc;
	rc = vd_create_size_msg(o, &size, why, sizeof(why));
	if (rc < 0)
		return vd_error(d, rc, "", UINT64_MAX, "%s", why);
	o->size = size;
	if (access(d->path, F_OK) == 0)
		return vd_error(d, -EEXIST, "", UINT64_MAX,
				"file exists; remove it or choose another name");
	rc = begin_temp(d);
	if (rc < 0)
		return rc;
	rc = file_open(d, O_RDWR | O_CREAT | O_EXCL, 0644, o->engine);
	if (rc == 0 && diff && !drv->create_child)
		rc = vd_error(d, -EOPNOTSUPP, "", UINT64_MAX, "format %s has no differencing disks",
			      drv->name);
	if (rc == 0)
		rc = diff ? drv->create_child(d, &d->file, o->size, o->block_size, &link)
			  : drv->create(d, &d->file, o);
	if (rc == 0)
		rc = vd_file_sync(&d->file);
	if (rc < 0 && !d->errmsg[0])
		vd_error(d, rc, "", UINT64_MAX, "cannot create: %s", vd_strerror(rc));
	return finish_temp(d, rc);
}

int vd_create(const char *path, const struct vd_create_opts *opts, struct vd_disk **diskp)
{
	struct vd_open_opts oo = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY};
	struct vd_create_opts o = *opts;
	const struct vd_driver *drv;
	struct vd_disk *d;
	int rc;

	*diskp = d = disk_new(path, VD_OPEN_RDWR);
	if (!d)
		return -ENOMEM;
	drv = driver_find(o.format ? o.format : "vhd");
	if (!drv || !drv->create)
		return vd_error(d, -EINVAL, "", UINT64_MAX, "cannot create images of format '%s'",
				o.format);
	rc = lay_out(d, drv, &o);
	if (rc < 0)
		return rc;
	/* Open it as any image (chain and all), keeping the creator's engine. */
	oo.format = drv->name;
	oo.engine = o.engine;
	vd_close(d);
	rc = vd_open(path, &oo, diskp);
	if (rc < 0)
		unlink(path); /* an image its creator cannot open helps nobody */
	return rc;
}
