/*
 * vhdtool checkpoint: create, apply, delete and list the checkpoints of a base
 * disk (Hyper-V's semantics, kept by the library in DISK.checkpoints). Owns the
 * tree drawing with its "Now" marker and the report of what each action did.
 */
#include "vhdtool.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "checkpoint"
#define NOW_LABEL "Now <- you are here"

/* One line of the drawn tree. */
struct tree_line {
	int depth;
	const char *label;
	const char *path;
	int is_now;
};

struct tree_drawing {
	struct tree_line *lines;
	int count;
};

static void usage(void)
{
	printf("Usage: vhdtool checkpoint create|apply|delete DISK NAME\n"
	       "       vhdtool checkpoint list [--json] DISK\n\n"
	       "Checkpoints of the base disk DISK, with Hyper-V's semantics. The state\n"
	       "that takes writes ('Now', the active state) is a differencing disk; each\n"
	       "checkpoint is a frozen state. read, write, compare, convert and info given\n"
	       "DISK act on the active state; --checkpoint NAME selects a checkpoint's.\n\n"
	       "  create  the current state becomes checkpoint NAME; a new differencing\n"
	       "          disk becomes active and takes every write from now on\n"
	       "  apply   discard every change made since the last checkpoint; a new\n"
	       "          active state starts from checkpoint NAME's state (other\n"
	       "          checkpoints are untouched)\n"
	       "  delete  NAME leaves the tree; every other checkpoint and the active\n"
	       "          state read exactly as before (data still needed is merged,\n"
	       "          files no longer needed are removed)\n"
	       "  list    the tree of checkpoints, their image files, the active image\n"
	       "          and where 'Now' is\n\n"
	       "  -j, --json   (list) print JSON instead of text\n"
	       "  -h, --help   show this help\n");
}

/*
 * The library gives absolute paths; people read them relative to where they
 * are. JSON keeps them absolute.
 */
static const char *shown(const char *path)
{
	static char cwd[4096];
	size_t n;

	if (!cwd[0] && !getcwd(cwd, sizeof(cwd) - 1))
		return path;
	n = strlen(cwd);
	if (strncmp(path, cwd, n) == 0 && path[n] == '/' && path[n + 1])
		return path + n + 1;
	return path;
}

static int get_tree(const char *disk, struct vd_checkpoint_tree **tree)
{
	char *errmsg = NULL;
	int rc;

	*tree = NULL;
	/* vd_checkpoint_list answers "no checkpoints" for a file that does not exist. */
	if (access(disk, F_OK) < 0)
		return vt_error("%s: %s", disk, strerror(errno));
	rc = vd_checkpoint_list(disk, tree, &errmsg);
	if (rc < 0) {
		*tree = NULL;
		return vt_errmsg_error(disk, rc, errmsg);
	}
	vd_free_string(errmsg);
	return 0;
}

static void free_tree(struct vd_checkpoint_tree *tree)
{
	if (tree)
		vd_checkpoint_tree_free(tree);
}

static int same(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* Appends NAME's subtree (children in creation order, Now last) at DEPTH. */
static void draw_node(const struct vd_checkpoint_tree *tree, const char *name, int depth,
		      struct tree_drawing *d)
{
	int i;

	/* Depth beyond the number of checkpoints means a loop: never recurse forever. */
	if (depth > tree->count)
		return;
	for (i = 0; i < tree->count; i++) {
		const struct vd_checkpoint *c = &tree->checkpoints[i];

		if (!(name ? same(c->parent, name) : c->parent == NULL))
			continue;
		d->lines[d->count++] = (struct tree_line){depth, c->name, c->image, 0};
		draw_node(tree, c->name, depth + 1, d);
	}
	if (name ? same(tree->current, name) : tree->current == NULL)
		d->lines[d->count++] = (struct tree_line){depth, NOW_LABEL, tree->active, 1};
}

static void print_drawing(const struct tree_drawing *d)
{
	int i, width = 0;

	for (i = 0; i < d->count; i++) {
		int w = 2 * d->lines[i].depth + (int)strlen(d->lines[i].label);

		width = w > width ? w : width;
	}
	for (i = 0; i < d->count; i++) {
		const struct tree_line *l = &d->lines[i];

		printf("  %*s%-*s  %s%s\n", 2 * l->depth, "", width - 2 * l->depth, l->label,
		       shown(l->path), l->is_now ? " (active image: takes the writes)" : "");
	}
}

static int print_list(const char *disk, const struct vd_checkpoint_tree *tree)
{
	struct tree_drawing d = {0};

	if (tree->count == 0) {
		if (same(tree->active, tree->disk))
			printf("%s has no checkpoints; writes go to %s itself\n", disk,
			       shown(tree->active));
		else
			printf("%s has no checkpoints; writes go to %s, a differencing disk on "
			       "it\n",
			       disk, shown(tree->active));
		return 0;
	}
	/* Every checkpoint once, plus Now; a loop in the records can only drop lines. */
	d.lines = calloc((size_t)tree->count + 1, sizeof(*d.lines));
	if (!d.lines)
		return vt_error("out of memory");
	printf("%s: %d checkpoint%s (on the right: the file with each one's newest data)\n", disk,
	       tree->count, tree->count == 1 ? "" : "s");
	draw_node(tree, NULL, 0, &d);
	print_drawing(&d);
	if (d.count != tree->count + 1)
		printf("warning: %d checkpoint(s) have a parent that is not in the tree\n",
		       tree->count + 1 - d.count);
	free(d.lines);
	return 0;
}

static json_t *json_or_null(const char *text)
{
	return text ? json_string(text) : json_null();
}

static json_t *json_list(const struct vd_checkpoint_tree *tree)
{
	json_t *o = json_object(), *list = json_array();
	int i;

	json_object_set_new(o, "disk", json_string(tree->disk));
	json_object_set_new(o, "active", json_string(tree->active));
	json_object_set_new(o, "current", json_or_null(tree->current));
	for (i = 0; i < tree->count; i++) {
		const struct vd_checkpoint *c = &tree->checkpoints[i];

		json_array_append_new(list, json_pack("{s:s, s:o, s:s}", "name", c->name, "parent",
						      json_or_null(c->parent), "image", c->image));
	}
	json_object_set_new(o, "checkpoints", list);
	return o;
}

static int cmd_list(const char *disk, int json)
{
	struct vd_checkpoint_tree *tree;
	int rc;

	if (get_tree(disk, &tree))
		return VT_EXIT_ERROR;
	rc = json ? vt_json_print(json_list(tree)) : print_list(disk, tree);
	free_tree(tree);
	return rc ? VT_EXIT_ERROR : VT_EXIT_OK;
}

static const char *image_of(const struct vd_checkpoint_tree *tree, const char *name)
{
	int i;

	for (i = 0; i < tree->count; i++)
		if (same(tree->checkpoints[i].name, name))
			return tree->checkpoints[i].image;
	return NULL;
}

static int was_listed(const struct vd_checkpoint_tree *tree, const char *path)
{
	int i;

	if (same(tree->active, path) || same(tree->disk, path))
		return 1;
	for (i = 0; i < tree->count; i++)
		if (same(tree->checkpoints[i].image, path))
			return 1;
	return 0;
}

/* Files the tree named before the action and that are gone now. */
static void print_removed(const struct vd_checkpoint_tree *before,
			  const struct vd_checkpoint_tree *after)
{
	int i, n = 0;
	const char *path;

	for (i = -1; i < before->count; i++) {
		path = i < 0 ? before->active : before->checkpoints[i].image;
		if (was_listed(after, path) || access(path, F_OK) == 0)
			continue;
		printf("%s %s", n++ ? "," : "  removed:", shown(path));
	}
	if (n)
		printf("\n");
}

static void report(const char *action, const char *disk, const char *name,
		   const struct vd_checkpoint_tree *before, const struct vd_checkpoint_tree *after)
{
	const char *image = image_of(after, name);

	if (strcmp(action, "create") == 0) {
		printf("created checkpoint '%s' of %s: its state is frozen in %s\n", name, disk,
		       image ? shown(image) : "(not listed)");
	} else if (strcmp(action, "apply") == 0) {
		printf("applied checkpoint '%s' to %s: ", name, disk);
		if (before->current)
			printf("the changes made since checkpoint '%s' were discarded\n",
			       before->current);
		else
			printf("the changes of the active state were discarded\n");
	} else {
		printf("deleted checkpoint '%s' of %s: the other checkpoints and the active "
		       "state read as before\n",
		       name, disk);
	}
	print_removed(before, after);
	printf("  writes now go to %s", shown(after->active));
	if (after->current)
		printf(" (Now follows checkpoint '%s')", after->current);
	printf("\n");
}

typedef int (*action_fn)(const char *disk, const char *name, char **errmsg_out);

static int cmd_action(const char *action, const char *disk, const char *name)
{
	action_fn fn = strcmp(action, "create") == 0  ? vd_checkpoint_create
		       : strcmp(action, "apply") == 0 ? vd_checkpoint_apply
						      : vd_checkpoint_delete;
	struct vd_checkpoint_tree *before = NULL, *after = NULL;
	char *errmsg = NULL;
	int rc;

	if (get_tree(disk, &before))
		return VT_EXIT_ERROR;
	rc = fn(disk, name, &errmsg);
	if (rc < 0) {
		free_tree(before);
		return vt_errmsg_error(disk, rc, errmsg);
	}
	vd_free_string(errmsg);
	if (get_tree(disk, &after) == 0)
		report(action, disk, name, before, after);
	free_tree(before);
	free_tree(after);
	return VT_EXIT_OK;
}

static int is_action(const char *word)
{
	return strcmp(word, "create") == 0 || strcmp(word, "apply") == 0 ||
	       strcmp(word, "delete") == 0 || strcmp(word, "list") == 0;
}

int vt_cmd_checkpoint(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *action = NULL;
	int opt, json = 0, listing;

	/* The action may come before or after the options: "list --json" and "--json list". */
	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		}
		if (opt != 'j')
			return vt_getopt_error(CMD, opt, argv);
		json = 1;
	}
	if (optind >= argc)
		return vt_usage_error(CMD, "missing action: create, apply, delete or list");
	action = argv[optind++];
	if (!is_action(action))
		return vt_usage_error(CMD, "unknown action '%s' (create, apply, delete or list)",
				      action);
	listing = strcmp(action, "list") == 0;
	if (json && !listing)
		return vt_usage_error(CMD, "--json applies only to list");
	if (argc - optind != (listing ? 1 : 2))
		return vt_usage_error(CMD, argc - optind > (listing ? 1 : 2) ? "too many arguments"
					   : listing			     ? "missing DISK"
						     : "needs DISK and NAME");
	if (listing)
		return cmd_list(argv[optind], json);
	return cmd_action(action, argv[optind], argv[optind + 1]);
}
