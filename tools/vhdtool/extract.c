/*
 * vhdtool extract: copy a file or a directory tree out of a partition's file
 * system (read through fuse/vdfs), keeping sizes, holes and modification times.
 */
#include "vhdtool.h"
#include "../../fuse/vdfs.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "extract"

enum { OPT_CHECKPOINT = 256 };

/* Declared in main.c too (vhdtool.h is shared by many hands). */
int vt_cmd_extract(int argc, char **argv);

static void usage(void)
{
	printf("Usage: vhdtool extract [--checkpoint NAME] DISK:pN PATH DEST\n\n"
	       "Copy file PATH of partition pN's file system to DEST (a new file, or into an\n"
	       "existing directory), or directory PATH and everything below it to DEST (a\n"
	       "new directory). Existing files are never overwritten. Modification times\n"
	       "and holes are kept. 'vhdtool ls DISK' lists the partitions.\n\n"
	       "      --checkpoint NAME  read checkpoint NAME's state instead of the active one\n"
	       "  -h, --help             show this help\n");
}

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

struct job {
	struct vdfs *fs;
	int part;
	const char *spec;
	char *buf;
	int files;
};

static void set_mtime(int dirfd, const char *dest, const struct vdfs_stat *st)
{
	struct timespec ts[2] = {
		{.tv_sec = st->atime, .tv_nsec = st->atime_ns},
		{.tv_sec = st->mtime, .tv_nsec = st->mtime_ns},
	};

	utimensat(dirfd, dest, ts, AT_SYMLINK_NOFOLLOW);
}

/* Zero pieces of HOLE_GRAIN bytes become holes (seek past them): sparse stays sparse. */
#define HOLE_GRAIN 65536

static int write_sparse(int fd, const char *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < HOLE_GRAIN ? len - done : HOLE_GRAIN;

		if (vt_is_zero(buf + done, n)) {
			if (lseek(fd, (off_t)n, SEEK_CUR) < 0)
				return -1;
		} else if (vt_write_full(fd, buf + done, n) < 0) {
			return -1;
		}
		done += n;
	}
	return 0;
}

static int copy_data(struct job *j, struct vdfs_file *f, int fd, const char *path, uint64_t size)
{
	uint64_t off = 0;

	while (off < size) {
		size_t want = size - off < VT_CHUNK ? (size_t)(size - off) : VT_CHUNK;
		ssize_t n = vdfs_file_read(f, j->buf, want, off);

		if (n <= 0)
			return vt_error("%s: %s: read failed at byte %llu: %s", j->spec, path,
					(unsigned long long)off,
					n < 0 ? strerror((int)-n) : "short file");
		if (write_sparse(fd, j->buf, (size_t)n) < 0)
			return vt_error("writing failed: %s", strerror(errno));
		off += (uint64_t)n;
	}
	if (ftruncate(fd, (off_t)size) < 0)
		return vt_error("writing failed: %s", strerror(errno));
	return 0;
}

static int extract_file(struct job *j, const char *path, const char *dest,
			const struct vdfs_stat *st)
{
	struct vdfs_file *f;
	int fd, rc = vdfs_file_open(j->fs, j->part, path, &f);

	if (rc < 0)
		return vt_error("%s: %s: %s", j->spec, path, strerror(-rc));
	fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		vdfs_file_close(f);
		return vt_error("%s: %s%s", dest, strerror(errno),
				errno == EEXIST ? "; remove it or choose another DEST" : "");
	}
	rc = copy_data(j, f, fd, path, st->size);
	vdfs_file_close(f);
	if (close(fd) < 0 && rc == 0)
		rc = vt_error("%s: %s", dest, strerror(errno));
	if (rc == 0)
		set_mtime(AT_FDCWD, dest, st);
	j->files++;
	return rc;
}

static int extract_link(struct job *j, const char *path, const char *dest,
			const struct vdfs_stat *st)
{
	char target[PATH_MAX];
	int rc = vdfs_readlink(j->fs, j->part, path, target, sizeof(target));

	if (rc < 0)
		return vt_error("%s: %s: %s", j->spec, path, strerror(-rc));
	if (symlink(target, dest) < 0)
		return vt_error("%s: %s", dest, strerror(errno));
	set_mtime(AT_FDCWD, dest, st);
	j->files++;
	return 0;
}

static int extract_any(struct job *j, const char *path, const char *dest,
		       const struct vdfs_stat *st);

/*
 * readdir holds the vdfs lock while it calls back, so children are collected
 * first and extracted afterwards.
 */
struct child_list {
	char **names;
	struct vdfs_stat *sts;
	size_t count, cap;
};

static int collect(void *ctx, const char *name, const struct vdfs_stat *st)
{
	struct child_list *c = ctx;

	if (c->count == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		char **names = realloc(c->names, cap * sizeof(*names));
		struct vdfs_stat *sts;

		if (!names)
			return -1;
		c->names = names;
		sts = realloc(c->sts, cap * sizeof(*sts));
		if (!sts)
			return -1;
		c->sts = sts;
		c->cap = cap;
	}
	c->names[c->count] = strdup(name);
	if (!c->names[c->count])
		return -1;
	c->sts[c->count++] = *st;
	return 0;
}

static int extract_tree(struct job *j, const char *path, const char *dest,
			const struct vdfs_stat *st)
{
	struct child_list c = {0};
	int rc;

	if (mkdir(dest, 0755) < 0)
		return vt_error("%s: %s%s", dest, strerror(errno),
				errno == EEXIST ? "; choose a DEST that does not exist yet" : "");
	rc = vdfs_readdir(j->fs, j->part, path, collect, &c);
	if (rc < 0)
		rc = vt_error("%s: %s: %s", j->spec, path, strerror(-rc));
	for (size_t i = 0; i < c.count && rc == 0; i++) {
		char *child_path, *child_dest;

		if (asprintf(&child_path, "%s/%s", strcmp(path, "/") ? path : "", c.names[i]) < 0)
			return vt_error("out of memory");
		if (asprintf(&child_dest, "%s/%s", dest, c.names[i]) < 0) {
			free(child_path);
			return vt_error("out of memory");
		}
		rc = extract_any(j, child_path, child_dest, &c.sts[i]);
		free(child_path);
		free(child_dest);
	}
	for (size_t i = 0; i < c.count; i++)
		free(c.names[i]);
	free(c.names);
	free(c.sts);
	if (rc == 0)
		set_mtime(AT_FDCWD, dest, st);
	return rc;
}

static int extract_any(struct job *j, const char *path, const char *dest,
		       const struct vdfs_stat *st)
{
	switch (st->kind) {
	case VDFS_DIR:
		return extract_tree(j, path, dest, st);
	case VDFS_REG:
		return extract_file(j, path, dest, st);
	case VDFS_LNK:
		return extract_link(j, path, dest, st);
	case VDFS_OTHER:
		break;
	}
	fprintf(stderr, "vhdtool: note: %s: %s is a device, fifo or socket: skipped\n", j->spec,
		path);
	return 0;
}

struct extract_args {
	const char *checkpoint;
	const char *spec, *path, *dest;
};

static int parse_args(int argc, char **argv, struct extract_args *a)
{
	static const struct option longopts[] = {
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		} else if (opt == OPT_CHECKPOINT) {
			a->checkpoint = optarg;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (argc - optind != 3)
		return vt_usage_error(CMD, "wanted DISK:pN PATH DEST, got %d argument%s",
				      argc - optind, argc - optind == 1 ? "" : "s");
	a->spec = argv[optind];
	a->path = argv[optind + 1];
	a->dest = argv[optind + 2];
	return 0;
}

/* A file copied into an existing directory keeps its name, as cp does. */
static int run(struct job *j, const char *path, const char *dest)
{
	struct vdfs_stat st;
	struct stat dst;
	const char *base = strrchr(path, '/');
	char *into = NULL;
	int rc = vdfs_stat(j->fs, j->part, path, &st);

	if (rc == -ENODEV)
		return vt_error("%s: no file system that can be read (%s); 'vhdtool ls DISK' lists "
				"the partitions",
				j->spec, vdfs_part(j->fs, j->part)->fs_error);
	if (rc < 0)
		return vt_error("%s: %s: %s", j->spec, path, strerror(-rc));
	if (st.kind != VDFS_DIR && stat(dest, &dst) == 0 && S_ISDIR(dst.st_mode)) {
		if (asprintf(&into, "%s/%s", dest, base ? base + 1 : path) < 0)
			return vt_error("out of memory");
		dest = into;
	}
	rc = extract_any(j, path, dest, &st);
	free(into);
	return rc;
}

int vt_cmd_extract(int argc, char **argv)
{
	struct extract_args a = {0};
	struct job j = {0};
	struct vd_disk *disk;
	char *path, *pname, *err = NULL;
	int rc;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (vdfs_split_spec(a.spec, &path, &pname) < 0)
		return vt_error("out of memory");
	if (!pname) {
		rc = vt_usage_error(CMD,
				    "'%s' names no partition: write DISK:pN ('vhdtool ls %s' "
				    "lists them)",
				    a.spec, a.spec);
		free(path);
		return rc;
	}
	j.spec = a.spec;
	j.buf = malloc(VT_CHUNK);
	rc = j.buf ? vt_open_state(path, a.checkpoint, &disk, NULL) : vt_error("out of memory");
	if (rc == 0 && vdfs_open(disk, quiet, NULL, &j.fs, &err) < 0) {
		rc = vt_error("%s: %s", path, err ? err : "cannot read the disk");
		vd_close(disk);
	}
	if (rc == 0) {
		j.part = vdfs_part_find(j.fs, pname);
		if (j.part < 0)
			rc = vt_error("%s: no partition %s; 'vhdtool ls %s' lists them", path,
				      pname, path);
		else
			rc = run(&j, a.path, a.dest);
		vdfs_close(j.fs);
		vd_close(disk);
	}
	free(j.buf);
	free(err);
	free(path);
	free(pname);
	return rc;
}
