/*
 * vhdtool compact: give back the space of blocks a dynamic or differencing VHD
 * no longer needs (vd_compact), as Hyper-V's Optimize-VHD does.
 */
#include "vhdtool.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../../fuse/vdfs.h"

#define CMD "compact"

static void usage(void)
{
	printf("Usage: vhdtool compact [--fs-aware] [-p] [--json] FILE\n\n"
	       "Compact the dynamic or differencing VHD FILE in place: blocks that hold\n"
	       "only zeros (dynamic), or only what the parent holds (differencing), are\n"
	       "dropped; in a differencing disk, sectors equal to the parent's go back\n"
	       "to the parent. The last blocks then move into the holes and the file is\n"
	       "cut. Blocks released by 'vhdtool discard' are reclaimed here. The disk\n"
	       "reads the same before, during and after; an interrupted compact (crash,\n"
	       "kill, full disk) leaves it readable, and running it again finishes.\n"
	       "A fixed disk is refused: 'vhdtool convert -O dynamic' makes a compact copy.\n\n"
	       "With --fs-aware, blocks that the guest's file systems (NTFS, FAT, exFAT,\n"
	       "ext2/3/4, in any MBR or GPT partition) mark wholly free are dropped too,\n"
	       "even when they are not zero (deleted files): they then read as zeros, or\n"
	       "as the parent reads. Only for a disk no VM is using.\n\n"
	       "      --fs-aware   also drop blocks the guest file systems mark free\n"
	       "  -p, --progress   show a progress bar on a terminal\n"
	       "      --json       print the result as JSON\n"
	       "  -h, --help       show this help\n");
}

/* ---- --fs-aware: the free space of the guest's file systems ---- */

struct ranges {
	struct vd_range *r;
	size_t n, cap;
	uint64_t base; /* the partition's start on the disk */
	uint64_t bytes;
};

static int add_range(void *ctx, uint64_t offset, uint64_t len)
{
	struct ranges *rs = ctx;

	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 256;
		struct vd_range *r = realloc(rs->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		rs->r = r;
		rs->cap = cap;
	}
	rs->r[rs->n++] = (struct vd_range){rs->base + offset, len};
	rs->bytes += len;
	return 0;
}

static void log_line(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "vhdtool compact: note: %s\n", msg);
}

/*
 * Free ranges of every file system on partitions that lie in one piece on the
 * disk (an LVM volume's segments would need their own mapping: left out).
 */
static int collect(struct vdfs *fs, struct ranges *rs)
{
	int found = 0;

	for (int i = 0; i < vdfs_part_count(fs); i++) {
		const struct vdfs_part_info *pi = vdfs_part(fs, i);
		int rc;

		if (!pi->fs_type || pi->segments != 1)
			continue;
		rs->base = pi->start;
		rc = vdfs_free_ranges(fs, i, add_range, rs);
		if (rc < 0)
			return vt_error("%s: reading the free space of %s (%s): %s", "compact",
					pi->name, pi->fs_type, strerror(-rc));
		found++;
	}
	return found ? 0
		     : vt_error("compact: --fs-aware found no file system it can read on the "
				"disk; run without --fs-aware");
}

static int guest_free(const char *path, struct ranges *rs)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_disk *d;
	struct vdfs *fs = NULL;
	char *err = NULL, human[32];
	int rc = vd_open(path, &o, &d);

	if (rc < 0)
		rc = vt_disk_error(d, path, rc);
	else if (vdfs_open(d, log_line, NULL, &fs, &err) < 0)
		rc = vt_error("%s: %s", path, err ? err : "cannot read the disk");
	else
		rc = collect(fs, rs);
	if (rc == 0)
		fprintf(stderr, "vhdtool compact: the guest file systems mark %s free\n",
			vt_human_size(rs->bytes, human, sizeof(human)));
	vdfs_close(fs);
	vd_close(d);
	free(err);
	return rc;
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
	enum { OPT_JSON = 256, OPT_FS };
	static const struct option longopts[] = {
		{"progress", no_argument, NULL, 'p'},
		{"json", no_argument, NULL, OPT_JSON},
		{"fs-aware", no_argument, NULL, OPT_FS},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vd_compact_opts co = {0};
	struct vd_compact_result r;
	struct vt_progress bar;
	char *errmsg = NULL, before[32], after[32];
	int opt, progress = 0, json = 0, fs_aware = 0, rc;
	struct ranges fr = {0};

	while ((opt = getopt_long(argc, argv, ":ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 'p') {
			progress = 1;
		} else if (opt == OPT_JSON) {
			json = 1;
		} else if (opt == OPT_FS) {
			fs_aware = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	if (fs_aware && guest_free(argv[optind], &fr))
		return VT_EXIT_ERROR;
	co.free_ranges = fr.r;
	co.nfree = fr.n;
	vt_progress_start(&bar, progress, 0);
	co.progress = vt_progress_cb;
	co.ctx = &bar;
	rc = vd_compact(argv[optind], &co, &r, &errmsg);
	vt_progress_end(&bar);
	free(fr.r);
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
	if (r.bytes_after < r.bytes_before && !r.blocks_dropped && !r.blocks_moved)
		printf("; the space of blocks discarded earlier is given back");
	printf(")\n");
	return VT_EXIT_OK;
}
