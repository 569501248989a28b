/*
 * vhdtool read and write: move bytes between the virtual disk and stdout, stdin
 * or a file. Owns the range checks that turn "past the end" into exit 2 before
 * any byte moves, and the refusal to write an image others are built on.
 */
#include "vhdtool.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RW_CHUNK (1u << 20)

enum { OPT_OFFSET = 256, OPT_LENGTH, OPT_CHECKPOINT, OPT_FORCE };

struct rw_args {
	const char *path;
	const char *input;	/* write: SRC, NULL for stdin */
	const char *checkpoint; /* read: --checkpoint NAME */
	int force;		/* write: --force */
	uint64_t offset;
	uint64_t length;
	int length_given;
	int progress;
};

static void read_usage(void)
{
	printf("Usage: vhdtool read [--offset N] [--length N] [--checkpoint NAME] [-p] FILE\n\n"
	       "Write the virtual disk's bytes to stdout, from --offset (default 0) for\n"
	       "--length bytes (default: to the end of the disk). A differencing disk\n"
	       "reads through its whole chain; a disk with checkpoints reads its active\n"
	       "state.\n\n"
	       "      --offset N         first byte (bytes, or K, M, G, T)\n"
	       "      --length N         number of bytes\n"
	       "      --checkpoint NAME  read checkpoint NAME's state instead\n"
	       "  -p, --progress         show progress on a terminal\n"
	       "  -h, --help             show this help\n");
}

static void write_usage(void)
{
	printf("Usage: vhdtool write [--offset N] [--force] [-p] FILE [SRC]\n\n"
	       "Write the bytes of SRC (default: stdin) into the virtual disk FILE at\n"
	       "--offset (default 0), then flush. Data that would go past the end of\n"
	       "the disk is an error. A disk with checkpoints takes the write in its\n"
	       "active state; a differencing disk stores it in FILE, never in a parent.\n"
	       "An image that a differencing disk or a checkpoint is built on is refused.\n"
	       "With --force it is written anyway, and then\n"
	       "children and checkpoints built on this image will read corrupted data:\n"
	       "their unchanged sectors now come from the new bytes. There is no undo.\n\n"
	       "      --offset N   first byte (bytes, or K, M, G, T)\n"
	       "      --force      write even into an image others are built on (the risk\n"
	       "                   is above)\n"
	       "  -p, --progress   show progress on a terminal\n"
	       "  -h, --help       show this help\n");
}

/* Shared option loop; returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, const char *cmd, struct rw_args *a)
{
	static const struct option longopts[] = {
		{"offset", required_argument, NULL, OPT_OFFSET},
		{"length", required_argument, NULL, OPT_LENGTH},
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"force", no_argument, NULL, OPT_FORCE},
		{"progress", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int reading = strcmp(cmd, "read") == 0, opt;

	while ((opt = getopt_long(argc, argv, ":ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			reading ? read_usage() : write_usage();
			return -1;
		} else if (opt == 'p') {
			a->progress = 1;
		} else if (opt == OPT_OFFSET) {
			if (vt_size_arg(cmd, "offset", optarg, &a->offset))
				return VT_EXIT_ERROR;
		} else if (opt == OPT_LENGTH && reading) {
			if (vt_size_arg(cmd, "length", optarg, &a->length))
				return VT_EXIT_ERROR;
			a->length_given = 1;
		} else if (opt == OPT_CHECKPOINT && reading) {
			a->checkpoint = optarg;
		} else if (opt == OPT_FORCE && !reading) {
			a->force = 1;
		} else {
			return vt_getopt_error(cmd, opt, argv);
		}
	}
	if (optind >= argc)
		return vt_usage_error(cmd, "missing FILE");
	if (argc - optind > (reading ? 1 : 2))
		return vt_usage_error(cmd, "too many arguments");
	a->path = argv[optind];
	a->input = optind + 1 < argc ? argv[optind + 1] : NULL;
	return 0;
}

/* OFFSET + LENGTH must lie inside SIZE; phrased so overflow cannot wrap. */
static int check_range(const char *path, uint64_t offset, uint64_t length, uint64_t size)
{
	if (offset > size)
		return vt_error("%s: offset %llu is past the end of the disk (%llu bytes)", path,
				(unsigned long long)offset, (unsigned long long)size);
	if (length > size - offset)
		return vt_error("%s: %llu bytes from offset %llu go past the end of the disk "
				"(%llu bytes)",
				path, (unsigned long long)length, (unsigned long long)offset,
				(unsigned long long)size);
	return 0;
}

static int copy_out(struct vd_disk *disk, const struct rw_args *a, unsigned char *buf)
{
	uint64_t pos = a->offset, end = a->offset + a->length;
	struct vt_progress bar;
	int rc;

	vt_progress_start(&bar, a->progress, a->length);
	while (pos < end) {
		size_t n = end - pos < RW_CHUNK ? (size_t)(end - pos) : RW_CHUNK;

		rc = vd_pread(disk, buf, n, pos);
		if (rc < 0)
			return vt_disk_error(disk, a->path, rc);
		rc = vt_write_full(STDOUT_FILENO, buf, n);
		if (rc < 0)
			return vt_error("stdout: %s", strerror(-rc));
		vt_progress_add(&bar, n);
		pos += n;
	}
	vt_progress_end(&bar);
	return 0;
}

int vt_cmd_read(int argc, char **argv)
{
	struct rw_args a = {0};
	struct vd_disk *disk;
	struct vd_info info;
	unsigned char *buf;
	int rc;

	rc = parse_args(argc, argv, "read", &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (vt_open_state(a.path, a.checkpoint, &disk, &info))
		return VT_EXIT_ERROR;
	if (!a.length_given)
		a.length = a.offset <= info.virtual_size ? info.virtual_size - a.offset : 0;
	rc = check_range(a.path, a.offset, a.length, info.virtual_size);
	buf = rc ? NULL : malloc(RW_CHUNK);
	if (!rc && !buf)
		rc = vt_error("out of memory");
	if (!rc)
		rc = copy_out(disk, &a, buf);
	free(buf);
	vd_close(disk);
	return rc ? VT_EXIT_ERROR : VT_EXIT_OK;
}

/* Opens SRC (or takes stdin); a regular file's size is checked before writing. */
static int open_input(const struct rw_args *a, uint64_t disk_size, int *fd, uint64_t *known)
{
	struct stat st;

	*fd = STDIN_FILENO;
	*known = UINT64_MAX;
	if (a->input && strcmp(a->input, "-") != 0) {
		*fd = open(a->input, O_RDONLY | O_CLOEXEC);
		if (*fd < 0)
			return vt_error("%s: %s", a->input, strerror(errno));
	}
	if (fstat(*fd, &st) == 0 && S_ISREG(st.st_mode)) {
		/* Refuse up front rather than leave the disk half written. */
		*known = (uint64_t)st.st_size;
		if (check_range(a->path, a->offset, *known, disk_size))
			return VT_EXIT_ERROR;
	}
	return 0;
}

static int copy_in(struct vd_disk *disk, const struct rw_args *a, int fd, uint64_t size,
		   uint64_t known, unsigned char *buf)
{
	const char *name = a->input ? a->input : "stdin";
	uint64_t pos = a->offset;
	struct vt_progress bar;
	ssize_t n;
	int rc;

	vt_progress_start(&bar, a->progress, known != UINT64_MAX ? known : 0);
	while ((n = vt_read_full(fd, buf, RW_CHUNK)) > 0) {
		if ((uint64_t)n > size - pos)
			return vt_error("%s: input goes past the end of the disk (%llu bytes); "
					"%llu bytes were written from offset %llu",
					a->path, (unsigned long long)size,
					(unsigned long long)(pos - a->offset),
					(unsigned long long)a->offset);
		rc = vd_pwrite(disk, buf, (size_t)n, pos);
		if (rc < 0)
			return vt_disk_error(disk, a->path, rc);
		vt_progress_add(&bar, (uint64_t)n);
		pos += (uint64_t)n;
	}
	if (n < 0)
		return vt_error("%s: %s", name, strerror((int)-n));
	vt_progress_end(&bar);
	rc = vd_flush(disk);
	return rc < 0 ? vt_disk_error(disk, a->path, rc) : 0;
}

/* Like vt_open, but a refusal to write a parent names the way past it. */
static int open_for_writing(const struct rw_args *a, struct vd_disk **diskp, struct vd_info *info)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDWR | (a->force ? VD_OPEN_FORCE : 0)};
	struct vd_disk *disk = NULL;
	int rc = vd_open(a->path, &opts, &disk);

	if (rc == 0)
		rc = vd_get_info(disk, info);
	/* A lock held by another process is not what --force is for; dependents are. */
	if (rc == -EBUSY && !a->force && !strstr(vd_errmsg(disk), "locked")) {
		const char *why = disk && *vd_errmsg(disk) ? vd_errmsg(disk) : vd_strerror(rc);
		char msg[1024];

		snprintf(msg, sizeof(msg),
			 "%s; --force overrides this, but children and checkpoints built on "
			 "this image then read corrupted data",
			 why);
		vt_path_error(a->path, msg);
	} else if (rc < 0) {
		vt_disk_error(disk, a->path, rc);
	}
	if (rc < 0) {
		if (disk)
			vd_close(disk);
		return VT_EXIT_ERROR;
	}
	*diskp = disk;
	return 0;
}

int vt_cmd_write(int argc, char **argv)
{
	struct rw_args a = {0};
	struct vd_disk *disk;
	struct vd_info info;
	unsigned char *buf = NULL;
	uint64_t known;
	int rc, close_rc, fd = -1;

	rc = parse_args(argc, argv, "write", &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (open_for_writing(&a, &disk, &info))
		return VT_EXIT_ERROR;
	rc = check_range(a.path, a.offset, 0, info.virtual_size);
	if (!rc)
		rc = open_input(&a, info.virtual_size, &fd, &known);
	if (!rc && !(buf = malloc(RW_CHUNK)))
		rc = vt_error("out of memory");
	if (!rc)
		rc = copy_in(disk, &a, fd, info.virtual_size, known, buf);
	if (fd > STDIN_FILENO)
		close(fd);
	free(buf);
	close_rc = vd_close(disk);
	if (close_rc < 0 && !rc)
		rc = vt_error("%s: %s", a.path, vd_strerror(close_rc));
	return rc ? VT_EXIT_ERROR : VT_EXIT_OK;
}
