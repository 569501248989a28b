/*
 * vhdtool compact: give back the space of blocks a dynamic or differencing VHD
 * no longer needs (vd_compact), as Hyper-V's Optimize-VHD does.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "compact"

static void usage(void)
{
	printf("Usage: vhdtool compact [-p] [--json] FILE\n\n"
	       "Compact the dynamic or differencing VHD FILE in place: blocks that hold\n"
	       "only zeros (dynamic), or only what the parent holds (differencing), are\n"
	       "dropped; in a differencing disk, sectors equal to the parent's go back\n"
	       "to the parent. The last blocks then move into the holes and the file is\n"
	       "cut. Blocks released by 'vhdtool discard' are reclaimed here. The disk\n"
	       "reads the same before, during and after; an interrupted compact (crash,\n"
	       "kill, full disk) leaves it readable, and running it again finishes.\n"
	       "A fixed disk is refused: 'vhdtool convert -O dynamic' makes a compact copy.\n\n"
	       "  -p, --progress   show a progress bar on a terminal\n"
	       "      --json       print the result as JSON\n"
	       "  -h, --help       show this help\n");
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
	struct vt_progress *p = ctx;

	p->total = total;
	vt_progress_add(p, done - p->done);
}

static int print_json(const char *path, const struct vd_compact_result *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "file", json_string(path));
	json_object_set_new(o, "blocks_dropped", json_integer((json_int_t)r->blocks_dropped));
	json_object_set_new(o, "sectors_cleared", json_integer((json_int_t)r->sectors_cleared));
	json_object_set_new(o, "blocks_moved", json_integer((json_int_t)r->blocks_moved));
	json_object_set_new(o, "bytes_before", json_integer((json_int_t)r->bytes_before));
	json_object_set_new(o, "bytes_after", json_integer((json_int_t)r->bytes_after));
	return vt_json_print(o);
}

int vt_cmd_compact(int argc, char **argv)
{
	enum { OPT_JSON = 256 };
	static const struct option longopts[] = {
		{"progress", no_argument, NULL, 'p'},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vd_compact_opts co = {0};
	struct vd_compact_result r;
	struct vt_progress bar;
	char *errmsg = NULL, before[32], after[32];
	int opt, progress = 0, json = 0, rc;

	while ((opt = getopt_long(argc, argv, ":ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 'p') {
			progress = 1;
		} else if (opt == OPT_JSON) {
			json = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	vt_progress_start(&bar, progress, 0);
	co.progress = on_progress;
	co.ctx = &bar;
	rc = vd_compact(argv[optind], &co, &r, &errmsg);
	vt_progress_end(&bar);
	if (rc < 0)
		return vt_errmsg_error(argv[optind], rc, errmsg);
	if (json)
		return print_json(argv[optind], &r);
	printf("%s: %s -> %s (%llu blocks dropped, %llu moved", argv[optind],
	       vt_human_size(r.bytes_before, before, sizeof(before)),
	       vt_human_size(r.bytes_after, after, sizeof(after)),
	       (unsigned long long)r.blocks_dropped, (unsigned long long)r.blocks_moved);
	if (r.sectors_cleared)
		printf(", %llu sectors back to the parent", (unsigned long long)r.sectors_cleared);
	printf(")\n");
	return VT_EXIT_OK;
}
