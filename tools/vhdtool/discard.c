/*
 * vhdtool discard: TRIM a range of a disk (vd_discard): it reads as zeros
 * afterwards; whole blocks of a dynamic disk are released.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "discard"

static void usage(void)
{
	printf("Usage: vhdtool discard [--offset N] [--length N] FILE\n\n"
	       "Discard (TRIM) a range of the disk: afterwards it reads as zeros. Whole\n"
	       "blocks of a dynamic disk are released (their BAT entries cleared and the\n"
	       "host space punched where the file system allows); parts of blocks are\n"
	       "zeroed. In a differencing disk the range is written as zeros over the\n"
	       "parent. A base with checkpoints: the active state.\n\n"
	       "  -o, --offset N   first byte (default 0)\n"
	       "  -l, --length N   bytes (default: to the end of the disk)\n"
	       "  -h, --help       show this help\n");
}

int vt_cmd_discard(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"offset", required_argument, NULL, 'o'},
		{"length", required_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	uint64_t off = 0, len = 0;
	int opt, have_len = 0, rc;
	struct vd_disk *d = NULL;
	struct vd_info info;

	while ((opt = getopt_long(argc, argv, ":o:l:h", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 'o') {
			if (vt_size_arg(CMD, "--offset", optarg, &off))
				return VT_EXIT_ERROR;
		} else if (opt == 'l') {
			if (vt_size_arg(CMD, "--length", optarg, &len))
				return VT_EXIT_ERROR;
			have_len = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	rc = vt_open(argv[optind], VD_OPEN_RDWR, &d, &info);
	if (rc)
		return rc;
	if (!have_len)
		len = off < info.virtual_size ? info.virtual_size - off : 0;
	rc = vd_discard(d, off, len);
	if (rc == 0)
		rc = vd_flush(d);
	if (rc < 0) {
		rc = vt_disk_error(d, argv[optind], rc);
		vd_close(d);
		return rc;
	}
	if (vd_close(d) < 0)
		return vt_error("%s: flushing after the discard failed", argv[optind]);
	return VT_EXIT_OK;
}
