/*
 * vhdtool create: a new, empty fixed or dynamic VHD, or a differencing VHD on a
 * parent. Owns the choice of disk type for each --compat profile, the options a
 * differencing disk refuses, and the one-line report of what was made.
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
	int size_given;
	int compat_given;
};

static void usage(void)
{
	printf("Usage: vhdtool create [-t fixed|dynamic] -s SIZE [--block-size SIZE]\n"
	       "                      [--compat hyperv|vpc|azure] FILE\n"
	       "       vhdtool create -t diff -b PARENT [--block-size SIZE] FILE\n\n"
	       "Create an empty VHD. FILE must not exist. A differencing disk (diff) starts\n"
	       "out reading exactly as PARENT (any VHD, itself possibly differencing) and\n"
	       "takes every write; its size is PARENT's. It records PARENT's UUID, time\n"
	       "stamp, name and relative and absolute paths. PARENT must not change while\n"
	       "the child exists.\n\n"
	       "  -t, --type TYPE       fixed, dynamic or diff (also 'differencing');\n"
	       "                        default dynamic, fixed for azure, diff with -b\n"
	       "  -b, --parent PARENT   the parent of a differencing disk\n"
	       "  -s, --size SIZE       virtual size: bytes or K, M, G, T (powers of 1024);\n"
	       "                        not with diff\n"
	       "      --block-size SIZE dynamic or diff block size, a power of two\n"
	       "                        (default 2M)\n"
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
	else if (strcmp(text, "diff") == 0 || strcmp(text, "differencing") == 0)
		*type = VD_TYPE_DIFFERENCING;
	else
		return -1;
	return 0;
}

static int parse_option(int opt, struct create_args *a, char **argv)
{
	uint64_t v;

	switch (opt) {
	case 't':
		if (parse_type(optarg, &a->opts.type) < 0)
			return vt_usage_error(CMD, "type '%s' is not fixed, dynamic or diff",
					      optarg);
		a->type_given = 1;
		return 0;
	case 'b':
		a->opts.parent = optarg;
		return 0;
	case 's':
		a->size_given = 1;
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
		a->compat_given = 1;
		return 0;
	}
	return vt_getopt_error(CMD, opt, argv);
}

/* Fills A from argv; returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, struct create_args *a)
{
	static const struct option longopts[] = {
		{"type", required_argument, NULL, 't'},
		{"parent", required_argument, NULL, 'b'},
		{"size", required_argument, NULL, 's'},
		{"block-size", required_argument, NULL, OPT_BLOCK_SIZE},
		{"compat", required_argument, NULL, OPT_COMPAT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":t:b:s:h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		}
		if (parse_option(opt, a, argv))
			return VT_EXIT_ERROR;
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	a->path = argv[optind];
	return 0;
}

/* A differencing disk takes its size and layout from its parent. */
static int settle_differencing(struct create_args *a)
{
	if (!a->type_given)
		a->opts.type = VD_TYPE_DIFFERENCING;
	if (a->opts.type != VD_TYPE_DIFFERENCING)
		return vt_usage_error(CMD, "-b PARENT makes a differencing disk; drop -t %s",
				      vt_type_name(a->opts.type));
	if (a->size_given)
		return vt_usage_error(CMD, "a differencing disk has its parent's size; drop -s");
	if (a->compat_given)
		return vt_usage_error(CMD, "a differencing disk has its parent's size; drop "
					   "--compat");
	return 0;
}

/* Fills in the type each profile implies and rejects combinations it refuses. */
static int settle_type(struct create_args *a)
{
	if (a->opts.parent)
		return settle_differencing(a);
	if (a->opts.type == VD_TYPE_DIFFERENCING)
		return vt_usage_error(CMD, "a differencing disk needs -b PARENT");
	if (!a->size_given)
		return vt_usage_error(CMD, "missing -s SIZE");
	if (a->opts.size == 0)
		return vt_usage_error(CMD, "size must be more than 0 bytes");
	if (!a->type_given)
		a->opts.type = a->opts.compat == VD_COMPAT_AZURE ? VD_TYPE_FIXED : VD_TYPE_DYNAMIC;
	if (a->opts.compat == VD_COMPAT_AZURE && a->opts.type != VD_TYPE_FIXED)
		return vt_usage_error(CMD,
				      "--compat azure makes fixed disks (Azure refuses dynamic "
				      "VHDs); drop -t dynamic");
	if (a->block_given && a->opts.type != VD_TYPE_DYNAMIC)
		return vt_usage_error(CMD, "--block-size applies only to dynamic and "
					   "differencing disks");
	return 0;
}

static void report(const char *path, struct vd_disk *disk, const struct create_args *a)
{
	struct vd_info info;
	char size[64], block[32];

	if (vd_get_info(disk, &info) < 0)
		return;
	printf("created %s: %s VHD", path, vt_type_name(info.type));
	if (a->opts.parent)
		printf(" on %s", info.parent ? info.parent : a->opts.parent);
	printf(", %s", vt_size_and_bytes(info.virtual_size, size, sizeof(size)));
	if (info.block_size)
		printf(", %s blocks", vt_human_size(info.block_size, block, sizeof(block)));
	if (!a->opts.parent && info.virtual_size != a->opts.size)
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
