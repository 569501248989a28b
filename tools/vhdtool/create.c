/*
 * vhdtool create: a new, empty fixed or dynamic VHD. Owns the choice of disk type
 * for each --compat profile and the one-line report of what was made.
 */
#include "vhdtool.h"

#include <errno.h>
#include <getopt.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "create"

enum { OPT_BLOCK_SIZE = 256, OPT_COMPAT };

struct create_args {
	const char *path;
	struct vd_create_opts opts;
	int type_given;
	int block_given;
};

static void usage(void)
{
	printf("Usage: vhdtool create [-t fixed|dynamic] -s SIZE [--block-size SIZE]\n"
	       "                      [--compat hyperv|vpc|azure] FILE\n\n"
	       "Create an empty VHD. FILE must not exist.\n\n"
	       "  -t, --type TYPE       fixed or dynamic (default dynamic; fixed for azure)\n"
	       "  -s, --size SIZE       virtual size: bytes or K, M, G, T (powers of 1024)\n"
	       "      --block-size SIZE dynamic block size, a power of two (default 2M)\n"
	       "      --compat PROFILE  hyperv: exact size (default); vpc: size rounded\n"
	       "                        down to the CHS geometry; azure: fixed disk, size\n"
	       "                        rounded up to a whole MiB\n"
	       "  -h, --help            show this help\n");
}

static int parse_type(const char *text, enum vd_disk_type *type)
{
	if (strcmp(text, "fixed") == 0)
		*type = VD_TYPE_FIXED;
	else if (strcmp(text, "dynamic") == 0)
		*type = VD_TYPE_DYNAMIC;
	else
		return -1;
	return 0;
}

static int parse_option(int opt, struct create_args *a, char **argv, int *size_given)
{
	uint64_t v;

	switch (opt) {
	case 't':
		if (parse_type(optarg, &a->opts.type) < 0)
			return vt_usage_error(CMD, "type '%s' is not fixed or dynamic", optarg);
		a->type_given = 1;
		return 0;
	case 's':
		*size_given = 1;
		return vt_size_arg(CMD, "size", optarg, &a->opts.size);
	case OPT_BLOCK_SIZE:
		if (vt_size_arg(CMD, "block size", optarg, &v))
			return VT_EXIT_ERROR;
		if (v == 0 || v > UINT32_MAX)
			return vt_usage_error(CMD, "block size '%s' is out of range", optarg);
		a->opts.block_size = (uint32_t)v;
		a->block_given = 1;
		return 0;
	case OPT_COMPAT:
		if (vt_parse_compat(optarg, &a->opts.compat) < 0)
			return vt_usage_error(CMD, "compat '%s' is not hyperv, vpc or azure",
					      optarg);
		return 0;
	}
	return vt_getopt_error(CMD, opt, argv);
}

/* Fills A from argv; returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, struct create_args *a)
{
	static const struct option longopts[] = {
		{"type", required_argument, NULL, 't'},
		{"size", required_argument, NULL, 's'},
		{"block-size", required_argument, NULL, OPT_BLOCK_SIZE},
		{"compat", required_argument, NULL, OPT_COMPAT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt, size_given = 0;

	while ((opt = getopt_long(argc, argv, ":t:s:h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		}
		if (parse_option(opt, a, argv, &size_given))
			return VT_EXIT_ERROR;
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	if (!size_given)
		return vt_usage_error(CMD, "missing -s SIZE");
	if (a->opts.size == 0)
		return vt_usage_error(CMD, "size must be more than 0 bytes");
	a->path = argv[optind];
	return 0;
}

/* Fills in the type each profile implies and rejects combinations it refuses. */
static int settle_type(struct create_args *a)
{
	if (!a->type_given)
		a->opts.type = a->opts.compat == VD_COMPAT_AZURE ? VD_TYPE_FIXED : VD_TYPE_DYNAMIC;
	if (a->opts.compat == VD_COMPAT_AZURE && a->opts.type != VD_TYPE_FIXED)
		return vt_usage_error(CMD,
				      "--compat azure makes fixed disks (Azure refuses dynamic "
				      "VHDs); drop -t dynamic");
	if (a->block_given && a->opts.type != VD_TYPE_DYNAMIC)
		return vt_usage_error(CMD, "--block-size applies only to dynamic disks");
	return 0;
}

static void report(const char *path, struct vd_disk *disk, const struct create_args *a)
{
	struct vd_info info;
	char size[64], block[32];

	if (vd_get_info(disk, &info) < 0)
		return;
	printf("created %s: %s VHD, %s", path, vt_type_name(info.type),
	       vt_size_and_bytes(info.virtual_size, size, sizeof(size)));
	if (info.type == VD_TYPE_DYNAMIC)
		printf(", %s blocks", vt_human_size(info.block_size, block, sizeof(block)));
	if (info.virtual_size != a->opts.size)
		printf("; --compat %s rounded the %llu bytes asked for",
		       vt_compat_name(a->opts.compat), (unsigned long long)a->opts.size);
	printf("\n");
}

int vt_cmd_create(int argc, char **argv)
{
	struct create_args a = {
		.opts = {.format = "vhd", .compat = VD_COMPAT_HYPERV},
	};
	struct vd_disk *disk = NULL;
	struct stat st;
	int rc;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (settle_type(&a))
		return VT_EXIT_ERROR;
	if (lstat(a.path, &st) == 0)
		return vt_error("%s: file exists; remove it or choose another name", a.path);
	rc = vd_create(a.path, &a.opts, &disk);
	if (rc < 0) {
		vt_disk_error(disk, a.path, rc);
		if (disk)
			vd_close(disk);
		/* The file did not exist a moment ago: whatever is there is our debris. */
		if (rc != -EEXIST)
			unlink(a.path);
		return VT_EXIT_ERROR;
	}
	/* Flush before close so a failure still has the handle's message. */
	rc = vd_flush(disk);
	if (rc < 0) {
		vt_disk_error(disk, a.path, rc);
		vd_close(disk);
		unlink(a.path);
		return VT_EXIT_ERROR;
	}
	report(a.path, disk, &a);
	rc = vd_close(disk);
	if (rc < 0) {
		unlink(a.path);
		return vt_error("%s: %s", a.path, vd_strerror(rc));
	}
	return VT_EXIT_OK;
}
