/*
 * Merging a differencing disk (or a run of several levels) into an ancestor.
 * No journal is needed: the copy writes into the ancestor exactly what the
 * child's chain reads there, so the child reads the same before, during and
 * after it; running the merge again after a crash or kill repeats the copy and
 * completes it. Children are removed only once the ancestor is durable.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk_int.h"

#define COPY_CHUNK (4u << 20)

static int is_image(const struct vd_disk *l, const struct vd_disk *target)
{
	return l->dev == target->dev && l->ino == target->ino;
}

/*
 * Copy into TARGET every run that a layer of TOP's chain above STOP holds,
 * reading through TOP. Work follows the data: unallocated stretches come back
 * from the maps as long runs and cost no I/O.
 */
int vd_copy_layers(struct vd_disk *top, struct vd_disk *stop, struct vd_disk *target,
		   vd_progress_fn progress, void *ctx)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	uint64_t off = 0, end = top->virtual_size < target->virtual_size ? top->virtual_size
									 : target->virtual_size;
	int rc = buf ? 0 : -ENOMEM;

	while (rc == 0 && off < end) {
		uint64_t run = end - off < COPY_CHUNK ? end - off : COPY_CHUNK, r;
		int held = 0;

		for (struct vd_disk *l = top; l && !is_image(l, stop); l = l->parent) {
			int kind = l->drv->map(l->state, off, run, &r);

			if (kind < 0) {
				rc = kind;
				break;
			}
			if (r > 0 && r < run)
				run = r;
			held |= kind == VD_EXTENT_ALLOCATED;
		}
		if (rc == 0 && held && (rc = vd_pread(top, buf, (size_t)run, off)) == 0)
			rc = vd_pwrite(target, buf, (size_t)run, off);
		off += run;
		if (progress)
			progress(ctx, off, end);
	}
	free(buf);
	return rc;
}

static int set_msg(char **errmsg, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int set_msg(char **errmsg, int rc, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (errmsg && !*errmsg)
		*errmsg = strdup(buf);
	return rc;
}

/* Index of the image ANCESTOR in CHILD's chain (1 = the parent), or -1. */
static int find_in_chain(struct vd_disk *child, const char *ancestor)
{
	struct stat st;
	int i = 0;

	if (!ancestor)
		return child->parent ? 1 : -1;
	if (stat(ancestor, &st) < 0)
		return -1;
	for (struct vd_disk *l = child; l; l = l->parent, i++)
		if (i > 0 && l->dev == st.st_dev && l->ino == st.st_ino)
			return i;
	return -1;
}

/*
 * Nothing but the chain may depend on an image that changes (the target) or
 * goes (the levels merged): another child would read other data.
 */
static int check_only_chain(struct vd_disk *child, int target, int keep, char **errmsg)
{
	struct vd_disk *l = child, *above = NULL;
	char who[VD_PATH_MAX];

	for (int i = 0; l && i <= target; i++, above = l, l = l->parent) {
		if (i == 0 && keep)
			continue; /* a kept child stays valid: it reads the same afterwards */
		if (vd_chain_other_dependent(l, above, who, sizeof(who)))
			return set_msg(errmsg, -EBUSY,
				       "%s: %s also depends on it; merging would change what it "
				       "reads (merge or delete that one first)",
				       l->path, who);
	}
	return 0;
}

/* TARGET, opened read-write, must be a copy of ANCESTOR: same UUID and size. */
static int open_copy(struct vd_disk *ancestor, const char *target, struct vd_disk **t,
		     char **errmsg)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY};
	struct vd_info ai, ti;
	int rc = vd_open(target, &o, t);

	if (rc < 0)
		return set_msg(errmsg, rc, "%s", vd_errmsg(*t));
	vd_get_info(ancestor, &ai);
	vd_get_info(*t, &ti);
	if (memcmp(ai.uuid, ti.uuid, 16) != 0 || ai.virtual_size != ti.virtual_size)
		return set_msg(errmsg, -EINVAL,
			       "%s: not a copy of %s (the UUID or the size differs); make the copy "
			       "with vhdtool copy",
			       target, ancestor->path);
	return 0;
}

int vd_merge(const char *child_path, const struct vd_merge_opts *opts, char **errmsg)
{
	struct vd_open_opts co = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_open_opts to = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_FORCE |
					   VD_OPEN_NOLOCK_};
	struct vd_merge_opts none = {0};
	struct vd_disk *c = NULL, *t = NULL, *l;
	char **gone = NULL;
	int rc, target, ngone = 0;

	if (!opts)
		opts = &none;
	if (errmsg)
		*errmsg = NULL;
	rc = vd_open(child_path, &co, &c);
	if (rc < 0) {
		rc = set_msg(errmsg, rc, "%s", vd_errmsg(c));
		goto out;
	}
	target = find_in_chain(c, opts->into);
	if (target < 0) {
		rc = set_msg(errmsg, -EINVAL, "%s: %s", child_path,
			     opts->into ? "the --into image is not an ancestor of it"
					: "not a differencing disk: nothing to merge into");
		goto out;
	}
	l = c;
	for (int i = 0; i < target; i++, l = l->parent)
		;
	if (opts->target) {
		rc = open_copy(l, opts->target, &t, errmsg);
		if (rc == 0 && (rc = vd_copy_layers(c, l, t, opts->progress, opts->ctx)) < 0)
			rc = set_msg(errmsg, rc, "%s", *vd_errmsg(t) ? vd_errmsg(t) : vd_errmsg(c));
		if (rc == 0 && (rc = vd_flush(t)) < 0)
			rc = set_msg(errmsg, rc, "%s", vd_errmsg(t));
		goto out; /* the chain stays as it is: nothing is removed */
	}
	rc = check_only_chain(c, target, opts->keep, errmsg);
	/*
	 * The target is written while the child's chain reads through it (and holds
	 * its shared lock): the library orders the two, so the writer skips the lock.
	 */
	if (rc == 0 && (rc = vd_open(l->path, &to, &t)) < 0)
		rc = set_msg(errmsg, rc, "%s", vd_errmsg(t));
	if (rc == 0 && (rc = vd_copy_layers(c, t, t, opts->progress, opts->ctx)) < 0)
		rc = set_msg(errmsg, rc, "%s", *vd_errmsg(t) ? vd_errmsg(t) : vd_errmsg(c));
	if (rc == 0 && (rc = vd_flush(t)) < 0)
		rc = set_msg(errmsg, rc, "%s", vd_errmsg(t));
	/* The levels above the target go only now that it is durable. */
	gone = calloc((size_t)target + 1, sizeof(char *));
	l = c;
	for (int i = 0; rc == 0 && gone && i < target; i++, l = l->parent)
		if (i > 0 || !opts->keep)
			gone[ngone++] = strdup(l->path);
out:
	vd_close(t);
	vd_close(c);
	for (int i = 0; i < ngone; i++) {
		if (gone[i] && unlink(gone[i]) < 0 && rc == 0)
			rc = set_msg(errmsg, -errno, "merged, but cannot remove %s: %s", gone[i],
				     strerror(errno));
		free(gone[i]);
	}
	free(gone);
	return rc;
}
