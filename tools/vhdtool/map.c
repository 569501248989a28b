/*
 * vhdtool map: the disk as ranges that are allocated, unallocated or known zero,
 * adjacent runs of one kind merged, as a table or a JSON array.
 */
#include "vhdtool.h"

#include <getopt.h>

#define CMD "map"

struct extent {
	uint64_t offset;
	uint64_t length;
	int kind;
};

static void usage(void)
{
	printf("Usage: vhdtool map [--json] FILE\n\n"
	       "List the ranges of the virtual disk and what backs them: allocated (data\n"
	       "stored in FILE), unallocated (not stored: zeros, or a parent's data) or\n"
	       "zero (known to read as zeros).\n\n"
	       "  -j, --json   print a JSON array of {offset, length, kind}\n"
	       "  -h, --help   show this help\n");
}

static void emit(const struct extent *e, json_t *array)
{
	char offset[24], length[32];

	if (array) {
		json_array_append_new(array,
				      json_pack("{s:I, s:I, s:s}", "offset", (json_int_t)e->offset,
						"length", (json_int_t)e->length, "kind",
						vt_extent_name(e->kind)));
		return;
	}
	snprintf(offset, sizeof(offset), "0x%llx", (unsigned long long)e->offset);
	printf("%-18s  %-12s  %s\n", offset, vt_human_size(e->length, length, sizeof(length)),
	       vt_extent_name(e->kind));
}

/* Walks the whole disk, emitting each maximal run of one kind. */
static int walk(struct vd_disk *disk, const char *path, uint64_t size, json_t *array)
{
	struct extent cur = {0, 0, 0};
	uint64_t pos = 0, run;
	int kind;

	for (; pos < size; pos += run) {
		if (vt_map_step(disk, path, pos, size - pos, &kind, &run))
			return VT_EXIT_ERROR;
		if (kind == cur.kind) {
			cur.length += run;
			continue;
		}
		if (cur.length)
			emit(&cur, array);
		cur = (struct extent){pos, run, kind};
	}
	if (cur.length)
		emit(&cur, array);
	return 0;
}

int vt_cmd_map(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vd_disk *disk;
	struct vd_info info;
	json_t *array = NULL;
	int opt, json = 0, rc;

	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		}
		if (opt != 'j')
			return vt_getopt_error(CMD, opt, argv);
		json = 1;
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	if (vt_open(argv[optind], VD_OPEN_RDONLY, &disk, &info))
		return VT_EXIT_ERROR;
	if (json && !(array = json_array())) {
		vd_close(disk);
		return vt_error("out of memory");
	}
	if (!json)
		printf("%-18s  %-12s  %s\n", "Offset", "Length", "Kind");
	rc = walk(disk, argv[optind], info.virtual_size, array);
	vd_close(disk);
	if (rc) {
		json_decref(array);
		return VT_EXIT_ERROR;
	}
	return json ? vt_json_print(array) : VT_EXIT_OK;
}
