/*
 * vhdtool doctor: scan a folder of VHD/AVHD files (what is left after a failed
 * backup or a copied VM), rebuild the parent trees by UUID, judge every link,
 * and with --fix re-link what a unique UUID match proves, and nothing else.
 */
#include "doctor.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CMD "doctor"

static void usage(void)
{
	printf("Usage: vhdtool doctor [--json] [--fix] DIR\n\n"
	       "Scan DIR (not its subfolders) for *.vhd and *.avhd files, rebuild their\n"
	       "parent trees by UUID and report: each tree, orphans (the parent's UUID\n"
	       "matches no file in DIR), broken links (the parent is in DIR but the\n"
	       "child's locators do not lead to it), UUID mismatches (the locators lead\n"
	       "to a file with another UUID), time stamp mismatches, duplicate UUIDs (a\n"
	       "copied VM) and the safe merge order (deepest first).\n\n"
	       "  -j, --json   print JSON instead of text\n"
	       "      --fix    re-link each broken link whose parent is proven by a\n"
	       "               unique UUID match (as set-parent does); nothing else is\n"
	       "               changed\n"
	       "  -h, --help   show this help\n\n"
	       "Exit status: 0 all healthy, 1 problems found (after --fix: problems left),\n"
	       "2 error.\n");
}

static int has_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), s = strlen(suffix);

	return n > s && strcasecmp(name + n - s, suffix) == 0;
}

/* DIR/NAME; plain NAME for the current directory, as a user would type it. */
static char *join_path(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	char *path;

	if (strcmp(dir, ".") == 0 || strcmp(dir, "./") == 0)
		return strdup(name);
	path = malloc(n + strlen(name) + 2);
	if (path)
		sprintf(path, "%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
	return path;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct dr_image *)a)->path, ((const struct dr_image *)b)->path);
}

static int add_image(struct doctor *d, const char *name, size_t *cap)
{
	struct dr_image *im;
	struct stat st;
	char *path = join_path(d->dir, name);

	if (!path)
		return vt_error("out of memory");
	if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
		free(path);
		return 0;
	}
	if ((size_t)d->n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		im = realloc(d->img, *cap * sizeof(*im));
		if (!im) {
			free(path);
			return vt_error("out of memory");
		}
		d->img = im;
	}
	im = &d->img[d->n++];
	memset(im, 0, sizeof(*im));
	im->path = path;
	im->real = realpath(path, NULL);
	im->candidate = im->parent = -1;
	im->warnings = json_array();
	return 0;
}

static int scan(struct doctor *d)
{
	DIR *dir = opendir(d->dir);
	struct dirent *e;
	size_t cap = 0;
	int rc = 0;

	if (!dir)
		return vt_error("%s: %s", d->dir, strerror(errno));
	while (rc == 0 && (e = readdir(dir)) != NULL)
		if (has_suffix(e->d_name, ".vhd") || has_suffix(e->d_name, ".avhd"))
			rc = add_image(d, e->d_name, &cap);
	closedir(dir);
	if (rc == 0 && d->n > 1)
		qsort(d->img, (size_t)d->n, sizeof(*d->img), by_name);
	return rc;
}

static void add_warning(struct dr_image *im, const char *text)
{
	size_t i;

	for (i = 0; i < json_array_size(im->warnings); i++)
		if (strcmp(json_string_value(json_array_get(im->warnings, i)), text) == 0)
			return;
	json_array_append_new(im->warnings, json_string(text));
}

/* The handle's message without the "PATH: " it starts with: the report names the file. */
static char *disk_message(struct vd_disk *disk, const char *path, int rc)
{
	const char *msg = disk && *vd_errmsg(disk) ? vd_errmsg(disk) : vd_strerror(rc);
	size_t n = strlen(path);

	if (strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ')
		msg += n + 2;
	return strdup(msg);
}

/* The image's own footer and header, without its parent. */
static void read_header(struct dr_image *im)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY |
					     VD_OPEN_NO_PARENT};
	struct vd_disk *disk = NULL;
	struct vd_info info;
	int i, rc = vd_open(im->path, &opts, &disk);

	if (rc == 0)
		rc = vd_get_info(disk, &info);
	if (rc < 0) {
		im->read_error = disk_message(disk, im->path, rc);
	} else {
		im->type = info.type;
		im->raw = strcmp(info.format, "vhd") != 0;
		memcpy(im->uuid, info.uuid, 16);
		if (info.type == VD_TYPE_DIFFERENCING)
			memcpy(im->parent_uuid, info.parent_uuid, 16);
		for (i = 0; i < vd_warning_count(disk); i++)
			add_warning(im, vd_warning(disk, i));
	}
	if (disk)
		vd_close(disk);
}

static int same_uuid(const struct dr_image *a, const uint8_t uuid[16])
{
	return !a->read_error && !a->raw && memcmp(a->uuid, uuid, 16) == 0;
}

static void find_duplicates_and_candidates(struct doctor *d)
{
	int i, j;

	for (i = 0; i < d->n; i++) {
		struct dr_image *im = &d->img[i];

		for (j = 0; j < d->n; j++) {
			if (j == i || im->read_error || im->raw)
				continue;
			if (!vt_uuid_is_null(im->uuid) && same_uuid(&d->img[j], im->uuid))
				im->dup = 1;
			if (im->type == VD_TYPE_DIFFERENCING &&
			    same_uuid(&d->img[j], im->parent_uuid)) {
				if (im->candidates++ == 0)
					im->candidate = j;
			}
		}
	}
}

static int index_of_real(const struct doctor *d, const char *real)
{
	int i;

	for (i = 0; real && i < d->n; i++)
		if (d->img[i].real && strcmp(d->img[i].real, real) == 0)
			return i;
	return -1;
}

/*
 * A chain repeats its parents' warnings as "parent PATH: ...". A parent in DIR
 * reports its own, so a child keeps only those of parents outside DIR.
 */
static int about_parent(const struct doctor *d, const char *warning, const char *parent)
{
	size_t n = parent ? strlen(parent) : 0;
	char *real;
	int inside;

	if (!parent || strncmp(warning, "parent ", 7) != 0 ||
	    strncmp(warning + 7, parent, n) != 0 || warning[7 + n] != ':')
		return 0;
	real = realpath(parent, NULL);
	inside = index_of_real(d, real) >= 0;
	free(real);
	return inside;
}

/* Open the whole chain as a reader would: does the link hold, and to what? */
static void check_link(const struct doctor *d, struct dr_image *im)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_disk *disk = NULL;
	struct vd_info info;
	int i, rc = vd_open(im->path, &opts, &disk);

	free(im->link_error);
	free(im->resolved);
	im->link_error = im->resolved = NULL;
	if (rc == 0)
		rc = vd_get_info(disk, &info);
	im->link_rc = rc;
	if (rc < 0) {
		im->link_error = disk_message(disk, im->path, rc);
	} else {
		im->resolved = info.parent ? realpath(info.parent, NULL) : NULL;
		if (info.parent && !im->resolved)
			im->resolved = strdup(info.parent);
		for (i = 0; i < vd_warning_count(disk); i++)
			if (!about_parent(d, vd_warning(disk, i), info.parent))
				add_warning(im, vd_warning(disk, i));
	}
	if (disk)
		vd_close(disk);
}

/* A parent whose own chain does not open blocks judging its children's links. */
static int opens(const struct dr_image *im)
{
	return !im->read_error && (im->type != VD_TYPE_DIFFERENCING || im->link_rc == 0);
}

static int is_uuid_mismatch(const struct dr_image *im)
{
	/* No documented code for it yet: the library's message names the UUIDs. */
	return im->link_rc != -ENOENT && im->link_error && strcasestr(im->link_error, "uuid");
}

static void set_note(struct dr_image *im, const char *status, char *note)
{
	im->status = status;
	free(im->note);
	im->note = note;
}

static char *format_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *format_note(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

static void judge_open_link(struct doctor *d, struct dr_image *im)
{
	int in_dir = index_of_real(d, im->resolved);

	im->parent = in_dir;
	if (in_dir < 0 && im->candidates == 1)
		add_warning(im, "its locators lead outside DIR, but a file in DIR has its "
				"parent's UUID too");
	set_note(im, "ok", in_dir < 0 ? format_note("parent outside DIR: %s", im->resolved) : NULL);
}

/* The chain did not open: orphan, UUID mismatch, or a broken link to a known parent. */
static void judge_failed_link(struct doctor *d, struct dr_image *im)
{
	char uuid[37];
	const struct dr_image *p = im->candidate >= 0 ? &d->img[im->candidate] : NULL;

	vt_uuid_text(im->parent_uuid, uuid);
	im->parent = im->candidates == 1 ? im->candidate : -1;
	if (is_uuid_mismatch(im)) {
		set_note(im, "uuid_mismatch",
			 p && im->candidates == 1
				 ? format_note("%s; the file with the recorded UUID is %s: check "
					       "it, then 'vhdtool set-parent %s %s'",
					       im->link_error, p->path, im->path, p->path)
				 : format_note("%s", im->link_error));
	} else if (im->candidates == 0) {
		set_note(im, "orphan",
			 format_note("no file in DIR has its parent's UUID %s; %s", uuid,
				     im->link_error));
	} else if (im->candidates > 1) {
		set_note(im, "broken",
			 format_note("%d files in DIR have its parent's UUID %s (a copied VM?): "
				     "ambiguous, choose with 'vhdtool set-parent'; %s",
				     im->candidates, uuid, im->link_error));
	} else {
		im->fixable = 1;
		set_note(im, "broken",
			 format_note("its parent by UUID is %s%s; fixable with --fix; %s", p->path,
				     opens(p) ? "" : " (once that one is fixed)", im->link_error));
	}
}

static void judge(struct doctor *d, struct dr_image *im)
{
	im->fixable = 0;
	if (im->read_error) {
		set_note(im, "unreadable", strdup(im->read_error));
		return;
	}
	if (im->type == VD_TYPE_DIFFERENCING && im->link_rc == 0)
		judge_open_link(d, im);
	else if (im->type == VD_TYPE_DIFFERENCING)
		judge_failed_link(d, im);
	else
		set_note(im, "ok", im->raw ? strdup("not a VHD: read as a raw image") : NULL);
	if (im->dup) {
		im->fixable = 0;
		set_note(im, "duplicate_uuid",
			 strdup("another file in DIR has the same UUID (a copied disk?): "
				"ambiguous, never fixed automatically"));
	}
}

static void judge_all(struct doctor *d)
{
	int i;

	for (i = 0; i < d->n; i++)
		d->img[i].children = 0;
	for (i = 0; i < d->n; i++)
		judge(d, &d->img[i]);
	for (i = 0; i < d->n; i++)
		if (d->img[i].parent >= 0)
			d->img[d->img[i].parent].children++;
}

/* Re-link IM to its UUID-proven parent; returns 1 when something changed. */
static int fix_one(struct doctor *d, struct dr_image *im)
{
	struct dr_image *p = &d->img[im->candidate];
	char *errmsg = NULL;
	int rc;

	/* Its parent's chain opens now (fixed in an earlier pass): maybe so does this. */
	check_link(d, im);
	if (im->link_rc == 0)
		return 1;
	rc = vd_set_parent(im->path, p->path, &errmsg);
	if (rc < 0) {
		add_warning(im, errmsg && *errmsg ? errmsg : vd_strerror(rc));
		vd_free_string(errmsg);
		im->fixable = 0;
		return 0;
	}
	vd_free_string(errmsg);
	im->fixed = 1;
	json_array_append_new(d->fixed, json_pack("[s, s]", im->path, p->path));
	check_link(d, im);
	return 1;
}

/* Parents first: a child is tried once the chain above it opens. */
static void fix_links(struct doctor *d)
{
	int i, progress = 1;

	while (progress) {
		progress = 0;
		for (i = 0; i < d->n; i++) {
			struct dr_image *im = &d->img[i];

			if (!im->fixable || im->fixed || !opens(&d->img[im->candidate]))
				continue;
			if (fix_one(d, im)) {
				progress = 1;
				judge_all(d);
			}
		}
	}
}

static void mark_managed(struct doctor *d, const char *path)
{
	int i = index_of_real(d, path);

	if (i >= 0)
		d->img[i].managed = 1;
}

/* Images of a checkpoint tree are merged by 'checkpoint delete', never by hand. */
static void mark_checkpoint_tree(struct doctor *d, struct dr_image *base)
{
	struct vd_checkpoint_tree *tree = NULL;
	char *manifest = format_note("%s.checkpoints", base->path), *errmsg = NULL, *note;
	int j;

	if (manifest && access(manifest, F_OK) == 0 &&
	    vd_checkpoint_list(base->path, &tree, &errmsg) == 0) {
		for (j = 0; j < tree->count; j++)
			mark_managed(d, tree->checkpoints[j].image);
		mark_managed(d, tree->active);
		base->managed = 1;
		note = format_note("%s has %d checkpoint(s) (%s): manage them with 'vhdtool "
				   "checkpoint', never merge them by hand",
				   base->path, tree->count, manifest);
		json_array_append_new(d->notes, json_string(note ? note : manifest));
		free(note);
	}
	if (tree)
		vd_checkpoint_tree_free(tree);
	vd_free_string(errmsg);
	free(manifest);
}

static void free_doctor(struct doctor *d)
{
	int i;

	for (i = 0; i < d->n; i++) {
		struct dr_image *im = &d->img[i];

		free(im->path);
		free(im->real);
		free(im->read_error);
		free(im->link_error);
		free(im->resolved);
		free(im->note);
		json_decref(im->warnings);
	}
	free(d->img);
	json_decref(d->fixed);
	json_decref(d->notes);
}

static int parse_args(int argc, char **argv, struct doctor *d)
{
	enum { OPT_FIX = 256 };
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"fix", no_argument, NULL, OPT_FIX},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		} else if (opt == 'j') {
			d->json = 1;
		} else if (opt == OPT_FIX) {
			d->fix = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing DIR" : "too many arguments");
	d->dir = argv[optind];
	return 0;
}

int vt_cmd_doctor(int argc, char **argv)
{
	struct doctor d = {0};
	int i, rc, problems = 0;

	rc = parse_args(argc, argv, &d);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	d.fixed = json_array();
	d.notes = json_array();
	if (!d.fixed || !d.notes || scan(&d)) {
		free_doctor(&d);
		return VT_EXIT_ERROR;
	}
	for (i = 0; i < d.n; i++)
		read_header(&d.img[i]);
	find_duplicates_and_candidates(&d);
	for (i = 0; i < d.n; i++)
		if (!d.img[i].read_error && d.img[i].type == VD_TYPE_DIFFERENCING)
			check_link(&d, &d.img[i]);
	judge_all(&d);
	if (d.fix)
		fix_links(&d);
	for (i = 0; i < d.n; i++)
		if (!d.img[i].read_error && d.img[i].type != VD_TYPE_DIFFERENCING)
			mark_checkpoint_tree(&d, &d.img[i]);
	rc = dr_report(&d);
	for (i = 0; i < d.n; i++)
		problems += dr_has_problem(&d.img[i]);
	free_doctor(&d);
	if (rc)
		return VT_EXIT_ERROR;
	return problems ? VT_EXIT_DIFF : VT_EXIT_OK;
}
