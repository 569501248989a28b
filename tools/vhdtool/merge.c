/*
 * vhdtool merge: fold a differencing disk (or several levels) into an ancestor
 * with vd_merge, as Hyper-V's Merge-VHD does.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "merge"

static void usage(void)
{
	printf("Usage: vhdtool merge [--into ANCESTOR] [--keep] [--target COPY] [-p] CHILD\n\n"
	       "Merge the differencing disk CHILD into its parent (or, with --into, the\n"
	       "levels from CHILD up to the ancestor ANCESTOR), copying only the data\n"
	       "those levels hold. The merged images are removed afterwards, CHILD too\n"
	       "unless --keep (a kept CHILD reads the same as before). Refused when\n"
	       "another child or a checkpoint depends on an image that would change.\n"
	       "An interrupted merge (crash, kill, full disk) leaves every image\n"
	       "readable with the right content; run the same command again to finish.\n\n"
	       "Hyper-V's other merge, into a new disk that leaves the parent unchanged,\n"
	       "is 'vhdtool convert CHILD NEW' (it flattens the chain).\n\n"
	       "With --target COPY, the data goes into COPY, a copy of the ancestor made\n"
	       "with 'vhdtool copy' (same UUID), and the chain is left as it is: quick\n"
	       "storage migration copies the base while the VM writes to a checkpoint's\n"
	       "differencing disk, then merges that into the copy.\n\n"
	       "  -i, --into ANCESTOR  merge into this ancestor instead of the parent\n"
	       "  -k, --keep           keep CHILD after the merge\n"
	       "  -t, --target COPY    merge into COPY (a copy of the ancestor) instead\n"
	       "  -p, --progress       show a progress bar on a terminal\n"
	       "  -h, --help           show this help\n");
}

int vt_cmd_merge(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"into", required_argument, NULL, 'i'},	  {"keep", no_argument, NULL, 'k'},
		{"target", required_argument, NULL, 't'}, {"progress", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},	  {NULL, 0, NULL, 0},
	};
	struct vd_merge_opts mo = {0};
	struct vt_progress bar;
	char *errmsg = NULL;
	int opt, progress = 0, rc;

	while ((opt = getopt_long(argc, argv, ":i:kt:ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		} else if (opt == 'i') {
			mo.into = optarg;
		} else if (opt == 'k') {
			mo.keep = 1;
		} else if (opt == 't') {
			mo.target = optarg;
		} else if (opt == 'p') {
			progress = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing CHILD" : "too many arguments");
	vt_progress_start(&bar, progress, 0);
	mo.progress = vt_progress_cb;
	mo.ctx = &bar;
	rc = vd_merge(argv[optind], &mo, &errmsg);
	vt_progress_end(&bar);
	if (rc < 0)
		return vt_errmsg_error(argv[optind], rc, errmsg);
	if (mo.target)
		printf("merged %s into %s; the chain is unchanged\n", argv[optind], mo.target);
	else
		printf("merged %s into %s%s\n", argv[optind], mo.into ? mo.into : "its parent",
		       mo.keep ? " (kept the child)" : "; the merged images were removed");
	return VT_EXIT_OK;
}
