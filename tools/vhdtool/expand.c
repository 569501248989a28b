/*
 * vhdtool expand: change a fixed or dynamic VHD's virtual size (vd_resize), as
 * Hyper-V's Edit Disk does; shrinking only with --shrink over an empty tail.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "expand"

static void usage(void)
{
	printf("Usage: vhdtool expand -s SIZE [--shrink] FILE\n\n"
	       "Give the fixed or dynamic VHD FILE the virtual size SIZE (K, M, G, T\n"
	       "suffixes, a multiple of 512 bytes). Both footers and the geometry are\n"
	       "updated; a dynamic disk's BAT grows into the free space after it. The\n"
	       "new space reads as zeros. A differencing disk is refused: its size is\n"
	       "its parent's. A smaller SIZE is refused unless --shrink, and then only\n"
	       "when the part cut off holds no data.\n\n"
	       "  -s, --size SIZE   the new virtual size\n"
	       "      --shrink      allow a smaller size (the cut-off part must be empty)\n"
	       "  -h, --help        show this help\n");
}

int vt_cmd_expand(int argc, char **argv)
{
	enum { OPT_SHRINK = 256 };
	static const struct option longopts[] = {
		{"size", required_argument, NULL, 's'},
		{"shrink", no_argument, NULL, OPT_SHRINK},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t size = 0;
	int opt, shrink = 0, have_size = 0, rc;
	char *errmsg = NULL, human[64];

	while ((opt = getopt_long(argc, argv, ":s:h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 's') {
			if (vt_size_arg(CMD, "-s", optarg, &size))
				return VT_EXIT_ERROR;
			have_size = 1;
		} else if (opt == OPT_SHRINK) {
			shrink = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (!have_size)
		return vt_usage_error(CMD, "missing -s SIZE");
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	rc = vd_resize(argv[optind], size, shrink, &errmsg);
	if (rc < 0)
		return vt_errmsg_error(argv[optind], rc, errmsg);
	printf("%s: virtual size is now %s\n", argv[optind],
	       vt_size_and_bytes(size, human, sizeof(human)));
	return VT_EXIT_OK;
}
