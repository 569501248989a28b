/*
 * vhdtool copy: an offline copy of a disk that stays the same disk (same UUID,
 * so its children can be re-linked to the copy), sparse-aware, through vd_copy.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "copy"

static void usage(void)
{
	printf("Usage: vhdtool copy [-O fixed|dynamic] [--block-size SIZE] [--checkpoint NAME]\n"
	       "                    [-p] [--json] SRC DST\n\n"
	       "Copy the disk SRC to the new file DST, keeping its UUID: DST is the same\n"
	       "disk, so differencing disks made on SRC can be re-linked to DST with\n"
	       "'vhdtool set-parent'. Only data is read and written (unallocated blocks,\n"
	       "holes and zeros are skipped); reading overlaps writing. Free space is\n"
	       "checked first; DST appears only once the copy is complete and durable.\n"
	       "A differencing SRC is copied with its chain flattened into a dynamic DST.\n"
	       "The output type is SRC's unless -O says otherwise. For a new, separate\n"
	       "disk (a new UUID, raw output, --compat) use 'vhdtool convert'.\n\n"
	       "  -O, --output-format F   fixed or dynamic (default: as SRC)\n"
	       "      --block-size SIZE   block size of a dynamic DST (default: SRC's, or 2M)\n"
	       "      --checkpoint NAME   copy checkpoint NAME's state of SRC\n"
	       "      --image             copy exactly SRC, not the active state of its\n"
	       "                          checkpoints (the base under a checkpoint)\n"
	       "  -p, --progress          show a progress bar on a terminal\n"
	       "      --json              print the result as JSON\n"
	       "  -h, --help              show this help\n");
}

static int parse_type(const char *text, enum vd_disk_type *type)
{
	if (strcmp(text, "fixed") == 0)
		*type = VD_TYPE_FIXED;
	else if (strcmp(text, "dynamic") == 0)
		*type = VD_TYPE_DYNAMIC;
	else
		return vt_usage_error(CMD, "output format '%s' is not fixed or dynamic", text);
	return 0;
}

static int report(const char *src, const char *dst, const struct vd_copy_result *r, int json)
{
	char size[64], data[32], written[32];

	if (json) {
		json_t *o = json_object();

		json_object_set_new(o, "source", json_string(src));
		json_object_set_new(o, "destination", json_string(dst));
		json_object_set_new(o, "virtual_size", json_integer((json_int_t)r->size));
		json_object_set_new(o, "data_bytes", json_integer((json_int_t)r->data_bytes));
		json_object_set_new(o, "written_bytes", json_integer((json_int_t)r->written_bytes));
		json_object_set_new(o, "chain_length", json_integer(r->chain_length));
		return vt_json_print(o);
	}
	printf("copied %s to %s: %s, %s read, %s written\n", src, dst,
	       vt_size_and_bytes(r->size, size, sizeof(size)),
	       vt_human_size(r->data_bytes, data, sizeof(data)),
	       vt_human_size(r->written_bytes, written, sizeof(written)));
	return VT_EXIT_OK;
}

int vt_cmd_copy(int argc, char **argv)
{
	enum { OPT_BLOCK = 256, OPT_CHECKPOINT, OPT_IMAGE, OPT_JSON };
	static const struct option longopts[] = {
		{"output-format", required_argument, NULL, 'O'},
		{"block-size", required_argument, NULL, OPT_BLOCK},
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"image", no_argument, NULL, OPT_IMAGE},
		{"progress", no_argument, NULL, 'p'},
		{"json", no_argument, NULL, OPT_JSON},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vd_copy_opts co = {.keep_uuid = 1};
	struct vd_copy_result r;
	struct vt_progress bar;
	char *errmsg = NULL;
	int opt, progress = 0, json = 0, rc;
	uint64_t v;

	while ((opt = getopt_long(argc, argv, ":O:ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 'O') {
			if (parse_type(optarg, &co.type))
				return VT_EXIT_ERROR;
		} else if (opt == OPT_BLOCK) {
			if (vt_size_arg(CMD, "block size", optarg, &v))
				return VT_EXIT_ERROR;
			if (v == 0 || v > UINT32_MAX)
				return vt_usage_error(CMD, "block size '%s' is out of range",
						      optarg);
			co.block_size = (uint32_t)v;
		} else if (opt == OPT_CHECKPOINT) {
			co.checkpoint = optarg;
		} else if (opt == OPT_IMAGE) {
			co.image_only = 1;
		} else if (opt == 'p') {
			progress = 1;
		} else if (opt == OPT_JSON) {
			json = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (argc - optind != 2)
		return vt_usage_error(CMD, argc - optind < 2 ? "needs SRC and DST"
							     : "too many arguments");
	vt_catch_signals();
	vt_progress_start(&bar, progress, 0);
	co.progress = vt_progress_cb;
	co.ctx = &bar;
	co.cancel = (const volatile int *)&vt_interrupted;
	rc = vd_copy(argv[optind], argv[optind + 1], &co, &r, &errmsg);
	vt_progress_end(&bar);
	if (rc < 0) {
		vt_error("%s", errmsg ? errmsg : vd_strerror(rc));
		vd_free_string(errmsg);
		return VT_EXIT_ERROR;
	}
	return report(argv[optind], argv[optind + 1], &r, json);
}
