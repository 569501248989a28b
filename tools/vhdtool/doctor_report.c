/*
 * vhdtool doctor's report: the trees, the problems with what to do about them,
 * and the safe merge order, as text for people or as one JSON object.
 */
#include "doctor.h"

#include <stdlib.h>
#include <string.h>

int dr_has_problem(const struct dr_image *im)
{
	return strcmp(im->status, "ok") != 0 || json_array_size(im->warnings) > 0;
}

/* Where the image's parent is: in DIR, outside it (it opened), or unknown. */
static const char *parent_path(const struct doctor *d, const struct dr_image *im)
{
	if (im->parent >= 0)
		return d->img[im->parent].path;
	return im->resolved;
}

/*
 * Children can be merged into a parent only where the parent has no other
 * child, the link is healthy, and no checkpoint tree owns the files. Walking up
 * from each leaf gives each chain deepest first.
 */
static json_t *merge_order(const struct doctor *d)
{
	json_t *order = json_array();
	int i, c, p, steps;

	for (i = 0; i < d->n; i++) {
		if (d->img[i].children != 0)
			continue;
		for (c = i, steps = 0; steps < d->n && (p = d->img[c].parent) >= 0;
		     c = p, steps++) {
			const struct dr_image *child = &d->img[c];

			if (dr_has_problem(child) || child->managed || d->img[p].children != 1 ||
			    dr_has_problem(&d->img[p]))
				break;
			json_array_append_new(order,
					      json_pack("[s, s]", child->path, d->img[p].path));
		}
	}
	return order;
}

static json_t *tree_node(const struct doctor *d, int i, char *seen)
{
	json_t *node = json_object(), *children = json_array();
	int j;

	seen[i] = 1;
	for (j = 0; j < d->n; j++)
		if (d->img[j].parent == i && !seen[j])
			json_array_append_new(children, tree_node(d, j, seen));
	json_object_set_new(node, "path", json_string(d->img[i].path));
	json_object_set_new(node, "children", children);
	return node;
}

/* Roots first; anything left unseen sits on a loop of UUIDs and starts its own tree. */
static json_t *trees(const struct doctor *d)
{
	json_t *list = json_array();
	char *seen = calloc((size_t)d->n + 1, 1);
	int i, pass;

	if (!seen)
		return list;
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < d->n; i++)
			if (!seen[i] && (pass == 1 || d->img[i].parent < 0))
				json_array_append_new(list, tree_node(d, i, seen));
	free(seen);
	return list;
}

static json_t *json_or_null(const char *text)
{
	return text ? json_string(text) : json_null();
}

static json_t *json_image(const struct doctor *d, const struct dr_image *im)
{
	json_t *o = json_object();
	char uuid[37];
	int vhd = !im->read_error && !im->raw, diff = vhd && im->type == VD_TYPE_DIFFERENCING;

	json_object_set_new(o, "path", json_string(im->path));
	json_object_set_new(o, "uuid",
			    vhd ? json_string(vt_uuid_text(im->uuid, uuid)) : json_null());
	json_object_set_new(o, "type",
			    im->read_error ? json_null() : json_string(vt_type_name(im->type)));
	json_object_set_new(o, "parent_uuid",
			    diff ? json_string(vt_uuid_text(im->parent_uuid, uuid)) : json_null());
	json_object_set_new(o, "parent", json_or_null(parent_path(d, im)));
	json_object_set_new(o, "status", json_string(im->status));
	json_object_set_new(o, "note", json_or_null(im->note));
	json_object_set_new(o, "fixed", json_boolean(im->fixed));
	json_object_set_new(o, "warnings", json_incref(im->warnings));
	return o;
}

static int report_json(const struct doctor *d)
{
	json_t *root = json_object(), *images = json_array();
	int i;

	for (i = 0; i < d->n; i++)
		json_array_append_new(images, json_image(d, &d->img[i]));
	json_object_set_new(root, "dir", json_string(d->dir));
	json_object_set_new(root, "images", images);
	json_object_set_new(root, "trees", trees(d));
	json_object_set_new(root, "merge_order", merge_order(d));
	json_object_set_new(root, "fixed", json_incref(d->fixed));
	json_object_set_new(root, "notes", json_incref(d->notes));
	return vt_json_print(root);
}

static const struct dr_image *find_path(const struct doctor *d, const char *path)
{
	int i;

	for (i = 0; i < d->n; i++)
		if (strcmp(d->img[i].path, path) == 0)
			return &d->img[i];
	return NULL;
}

static void print_tree(const struct doctor *d, json_t *node, int depth)
{
	const struct dr_image *im = find_path(d, json_string_value(json_object_get(node, "path")));
	json_t *children = json_object_get(node, "children");
	size_t i;

	printf("  %*s%s (%s", 2 * depth, "", im->path,
	       im->read_error ? "unreadable" : vt_type_name(im->type));
	if (strcmp(im->status, "ok") != 0)
		printf(", %s", im->status);
	else if (json_array_size(im->warnings) > 0)
		printf(", warnings");
	if (im->parent < 0 && im->resolved)
		printf(", parent outside DIR: %s", im->resolved);
	printf(")\n");
	for (i = 0; i < json_array_size(children); i++)
		print_tree(d, json_array_get(children, i), depth + 1);
}

/* Prints the images that need attention; returns how many. */
static int print_problems(const struct doctor *d, int *fixable)
{
	int i, n = 0;
	size_t w;

	for (i = 0; i < d->n; i++) {
		const struct dr_image *im = &d->img[i];

		if (!dr_has_problem(im))
			continue;
		if (n++ == 0)
			printf("\nproblems:\n");
		*fixable += im->fixable;
		if (strcmp(im->status, "ok") != 0)
			printf("  %s: %s: %s\n", im->path, im->status, im->note ? im->note : "");
		for (w = 0; w < json_array_size(im->warnings); w++)
			printf("  %s: warning: %s\n", im->path,
			       json_string_value(json_array_get(im->warnings, w)));
	}
	return n;
}

static void print_pairs(const char *title, json_t *pairs, const char *arrow)
{
	size_t i;

	if (json_array_size(pairs) == 0)
		return;
	printf("\n%s\n", title);
	for (i = 0; i < json_array_size(pairs); i++) {
		json_t *pair = json_array_get(pairs, i);

		printf("  %s %s %s\n", json_string_value(json_array_get(pair, 0)), arrow,
		       json_string_value(json_array_get(pair, 1)));
	}
}

static int report_text(const struct doctor *d)
{
	json_t *forest = trees(d), *order = merge_order(d);
	size_t i;
	int problems, fixable = 0;

	printf("%s: %d image%s in %zu tree%s\n", d->dir, d->n, d->n == 1 ? "" : "s",
	       json_array_size(forest), json_array_size(forest) == 1 ? "" : "s");
	for (i = 0; i < json_array_size(forest); i++)
		print_tree(d, json_array_get(forest, i), 0);
	problems = print_problems(d, &fixable);
	for (i = 0; i < json_array_size(d->notes); i++)
		printf("%snote: %s\n", i ? "" : "\n",
		       json_string_value(json_array_get(d->notes, i)));
	print_pairs("merge order (deepest first; links with problems, branch points and "
		    "checkpoint trees left out):",
		    order, "into");
	print_pairs("fixed (re-linked to the parent with the recorded UUID):", d->fixed, "->");
	if (problems)
		printf("\n%d image%s need%s attention; %d of them fixable with --fix\n", problems,
		       problems == 1 ? "" : "s", problems == 1 ? "s" : "", fixable);
	else
		printf("\nall healthy\n");
	json_decref(forest);
	json_decref(order);
	return 0;
}

int dr_report(struct doctor *d)
{
	return d->json ? report_json(d) : report_text(d);
}
