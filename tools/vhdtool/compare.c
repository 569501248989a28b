/*
 * vhdtool compare: do two images hold the same virtual content? Walks both maps
 * so ranges both know to be zero are never read, and reports the first
 * differing byte.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CMD "compare"

enum { OPT_CHECKPOINT = 256, OPT_CHECKPOINT_B };

struct side {
	const char *path;
	const char *checkpoint; /* NULL: the active state */
	struct vd_disk *disk;
	struct vd_info info;
	int zero;	  /* the current run reads as zeros */
	uint64_t run_end; /* where the current run ends */
	unsigned char *buf;
};

static void usage(void)
{
	printf("Usage: vhdtool compare [--checkpoint NAME] [--checkpoint-b NAME] [-p] A B\n\n"
	       "Compare the virtual content of two images (any formats vhdtool reads;\n"
	       "a differencing disk with its whole chain, a disk with checkpoints in\n"
	       "its active state). Prints \"Images are identical.\" and exits 0, or\n"
	       "prints where they first differ and exits 1. Images of different sizes\n"
	       "differ.\n\n"
	       "      --checkpoint NAME    compare checkpoint NAME's state of A\n"
	       "      --checkpoint-b NAME  compare checkpoint NAME's state of B\n"
	       "  -p, --progress           show progress on a terminal\n"
	       "  -h, --help               show this help\n");
}

/* Moves S's map cursor to the run that holds POS. */
static int refresh(struct side *s, uint64_t pos)
{
	uint64_t run;
	int kind;

	if (pos < s->run_end)
		return 0;
	if (vt_map_step(s->disk, s->path, pos, s->info.virtual_size - pos, &kind, &run))
		return VT_EXIT_ERROR;
	s->zero = vt_run_is_zero(kind);
	s->run_end = pos + run;
	return 0;
}

/* Fills S's buffer with N bytes at POS, from the disk or, for a zero run, memset. */
static int load(struct side *s, size_t n, uint64_t pos)
{
	int rc;

	if (s->zero) {
		memset(s->buf, 0, n);
		return 0;
	}
	rc = vd_pread(s->disk, s->buf, n, pos);
	return rc < 0 ? vt_disk_error(s->disk, s->path, rc) : 0;
}

/* Compares [pos, end); sets *diff to the first differing offset, or UINT64_MAX. */
static int compare_range(struct side *a, struct side *b, uint64_t pos, uint64_t end, uint64_t *diff,
			 struct vt_progress *bar)
{
	while (pos < end) {
		size_t n = end - pos < VT_CHUNK ? (size_t)(end - pos) : VT_CHUNK, i;

		if (load(a, n, pos) || load(b, n, pos))
			return VT_EXIT_ERROR;
		if (memcmp(a->buf, b->buf, n) != 0) {
			for (i = 0; a->buf[i] == b->buf[i]; i++)
				;
			*diff = pos + i;
			return 0;
		}
		vt_progress_add(bar, n);
		pos += n;
	}
	return 0;
}

static int compare_sides(struct side *a, struct side *b, int progress, uint64_t *diff)
{
	uint64_t pos = 0, size = a->info.virtual_size, end;
	struct vt_progress bar;

	*diff = UINT64_MAX;
	vt_progress_start(&bar, progress, size);
	for (; pos < size && *diff == UINT64_MAX; pos = end) {
		if (refresh(a, pos) || refresh(b, pos))
			return VT_EXIT_ERROR;
		end = a->run_end < b->run_end ? a->run_end : b->run_end;
		if (a->zero && b->zero)
			vt_progress_add(&bar, end - pos);
		else if (compare_range(a, b, pos, end, diff, &bar))
			return VT_EXIT_ERROR;
	}
	vt_progress_end(&bar);
	return 0;
}

static int parse_args(int argc, char **argv, int *progress, struct side *a, struct side *b)
{
	static const struct option longopts[] = {
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"checkpoint-b", required_argument, NULL, OPT_CHECKPOINT_B},
		{"progress", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		}
		if (opt == 'p')
			*progress = 1;
		else if (opt == OPT_CHECKPOINT)
			a->checkpoint = optarg;
		else if (opt == OPT_CHECKPOINT_B)
			b->checkpoint = optarg;
		else
			return vt_getopt_error(CMD, opt, argv);
	}
	if (argc - optind != 2)
		return vt_usage_error(CMD, argc - optind < 2 ? "needs two images, A and B"
							     : "too many arguments");
	a->path = argv[optind];
	b->path = argv[optind + 1];
	return 0;
}

static int run_compare(struct side *a, struct side *b, int progress)
{
	uint64_t diff;

	if (a->info.virtual_size != b->info.virtual_size) {
		printf("size differs: %s %llu bytes, %s %llu bytes\n", a->path,
		       (unsigned long long)a->info.virtual_size, b->path,
		       (unsigned long long)b->info.virtual_size);
		return VT_EXIT_DIFF;
	}
	a->buf = malloc(VT_CHUNK);
	b->buf = malloc(VT_CHUNK);
	if (!a->buf || !b->buf)
		return vt_error("out of memory");
	if (compare_sides(a, b, progress, &diff))
		return VT_EXIT_ERROR;
	if (diff != UINT64_MAX) {
		printf("Content mismatch at offset %llu\n", (unsigned long long)diff);
		return VT_EXIT_DIFF;
	}
	printf("Images are identical.\n");
	return VT_EXIT_OK;
}

int vt_cmd_compare(int argc, char **argv)
{
	struct side a = {0}, b = {0};
	int progress = 0, rc;

	rc = parse_args(argc, argv, &progress, &a, &b);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (vt_open_state(a.path, a.checkpoint, &a.disk, &a.info))
		return VT_EXIT_ERROR;
	if (vt_open_state(b.path, b.checkpoint, &b.disk, &b.info)) {
		vd_close(a.disk);
		return VT_EXIT_ERROR;
	}
	rc = run_compare(&a, &b, progress);
	free(a.buf);
	free(b.buf);
	vd_close(a.disk);
	vd_close(b.disk);
	return rc;
}
