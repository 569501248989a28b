/*
 * vhdtool set-parent: re-link a differencing disk to its moved or copied parent
 * through vd_set_parent, and say what the link was before and is now.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define CMD "set-parent"

static void usage(void)
{
	printf("Usage: vhdtool set-parent CHILD PARENT\n\n"
	       "Re-link the differencing disk CHILD to PARENT, after the parent was moved,\n"
	       "renamed or copied. PARENT's UUID must be the one CHILD records, so only\n"
	       "the right parent is accepted. Writes into CHILD the parent's name, its\n"
	       "time stamp and relative, absolute and MacX locators; PARENT is only read.\n"
	       "'vhdtool doctor --fix DIR' does this for every link it can prove.\n\n"
	       "  -h, --help   show this help\n");
}

/* What CHILD's link says now: its parent's path, or why it cannot be opened. */
static char *describe_link(const char *child, char **warning)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_disk *disk = NULL;
	struct vd_info info;
	char *text = NULL;
	int rc = vd_open(child, &opts, &disk);

	*warning = NULL;
	if (rc == 0)
		rc = vd_get_info(disk, &info);
	if (rc == 0) {
		text = strdup(info.parent ? info.parent : "(no parent)");
		if (vd_warning_count(disk) > 0)
			*warning = strdup(vd_warning(disk, 0));
	} else if (disk && *vd_errmsg(disk)) {
		const char *msg = vd_errmsg(disk);
		size_t n = strlen(child);

		/* The report names the child already. */
		text = strdup(strncmp(msg, child, n) == 0 && msg[n] == ':'
				      ? msg + n + 1 + (msg[n + 1] == ' ')
				      : msg);
	} else {
		text = strdup(vd_strerror(rc));
	}
	if (disk)
		vd_close(disk);
	return text;
}

/* CHILD must be a differencing disk; its own header is read, not its parent. */
static int read_child(const char *child, struct vd_info *info, char uuid[37])
{
	struct vd_disk *disk;

	if (vt_open(child, VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY | VD_OPEN_NO_PARENT, &disk, info))
		return VT_EXIT_ERROR;
	vt_uuid_text(info->parent_uuid, uuid);
	vd_close(disk);
	if (info->type != VD_TYPE_DIFFERENCING)
		return vt_error("%s: is a %s disk, not a differencing disk; it has no parent",
				child, vt_type_name(info->type));
	return 0;
}

static int relink(const char *child, const char *parent)
{
	struct vd_info info;
	char uuid[37], *before, *after, *warn_before, *warn_after, *errmsg = NULL;
	int rc;

	if (read_child(child, &info, uuid))
		return VT_EXIT_ERROR;
	before = describe_link(child, &warn_before);
	rc = vd_set_parent(child, parent, &errmsg);
	if (rc < 0) {
		free(before);
		free(warn_before);
		/* A message about PARENT ("p.vhd: UUID ... is not the parent ...") names it. */
		if (errmsg && strncmp(errmsg, parent, strlen(parent)) == 0 &&
		    errmsg[strlen(parent)] == ':')
			return vt_errmsg_error(parent, rc, errmsg);
		return vt_errmsg_error(child, rc, errmsg);
	}
	vd_free_string(errmsg);
	after = describe_link(child, &warn_after);
	printf("%s: parent set to %s (its UUID %s is the one %s records)\n", child,
	       after ? after : parent, uuid, child);
	printf("  before: %s\n", before ? before : "(unknown)");
	printf("  wrote:  parent name, parent time stamp, relative (W2ru), absolute (W2ku)"
	       " and MacX locators\n");
	if (warn_before)
		printf("  note:   before, opening it warned: %s\n"
		       "          the new time stamp hides that; if the parent was written after"
		       " the child\n          was made, the child's data may be inconsistent\n",
		       warn_before);
	if (warn_after)
		printf("  warning: %s\n", warn_after);
	free(before);
	free(after);
	free(warn_before);
	free(warn_after);
	return VT_EXIT_OK;
}

int vt_cmd_set_parent(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (opt != 'h')
			return vt_getopt_error(CMD, opt, argv);
		usage();
		return VT_EXIT_OK;
	}
	if (argc - optind != 2)
		return vt_usage_error(CMD, argc - optind < 2 ? "needs CHILD and PARENT"
							     : "too many arguments");
	return relink(argv[optind], argv[optind + 1]);
}
