/*
 * Checkpoint trees (Hyper-V's semantics) of a base disk: the manifest beside it
 * (DISK.checkpoints, replaced atomically), create, apply, delete (with a simple
 * merge of data no longer needed separately) and list.
 *
 * Manifest, one record a line, tab-separated, file names relative to DISK's
 * directory so the whole folder can move:
 *   libvdisk-checkpoints 1
 *   active  FILE
 *   current NAME                      (absent when none)
 *   checkpoint NAME PARENT-NAME FILE  (PARENT-NAME empty for a root)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "vdisk_int.h"

#define MANIFEST_MAGIC "libvdisk-checkpoints 1"

struct ckpt {
	char *name;
	char *parent; /* NULL for a root */
	char *image;  /* file name in the tree's directory */
};

struct tree {
	char dir[VD_PATH_MAX];
	char disk[VD_PATH_MAX];		     /* file name of the base */
	char manifest[2 * VD_PATH_MAX + 16]; /* absolute */
	char *active;			     /* file name */
	char *current;			     /* checkpoint name or NULL */
	int n;
	struct ckpt *c;
	char err[1024];
};

static int fail(struct tree *t, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct tree *t, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->err, sizeof(t->err), fmt, ap);
	va_end(ap);
	return rc;
}

static void tree_free(struct tree *t)
{
	for (int i = 0; i < t->n; i++) {
		free(t->c[i].name);
		free(t->c[i].parent);
		free(t->c[i].image);
	}
	free(t->c);
	free(t->active);
	free(t->current);
	memset(t, 0, sizeof(*t));
}

static void abs_image(const struct tree *t, const char *file, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", t->dir, file);
}

static struct ckpt *find(struct tree *t, const char *name)
{
	for (int i = 0; i < t->n; i++)
		if (strcmp(t->c[i].name, name) == 0)
			return &t->c[i];
	return NULL;
}

static int add(struct tree *t, const char *name, const char *parent, const char *image)
{
	struct ckpt *grown = realloc(t->c, sizeof(*grown) * (size_t)(t->n + 1));

	if (!grown)
		return -ENOMEM;
	t->c = grown;
	grown[t->n].name = strdup(name);
	grown[t->n].parent = parent && *parent ? strdup(parent) : NULL;
	grown[t->n].image = strdup(image);
	if (!grown[t->n].name || !grown[t->n].image)
		return -ENOMEM;
	t->n++;
	return 0;
}

/* Bounded parsing: each line is checked before it is used. */
static int parse_line(struct tree *t, char *line, int lineno)
{
	char *f[4] = {NULL, NULL, NULL, NULL};
	int nf = 0;

	for (char *s = line; nf < 4; nf++) {
		f[nf] = s;
		s = strchr(s, '\t');
		if (!s) {
			nf++;
			break;
		}
		*s++ = '\0';
	}
	if (nf == 2 && strcmp(f[0], "active") == 0 && *f[1] && !strchr(f[1], '/'))
		return (t->active = strdup(f[1])) ? 0 : -ENOMEM;
	if (nf == 2 && strcmp(f[0], "current") == 0 && *f[1])
		return (t->current = strdup(f[1])) ? 0 : -ENOMEM;
	if (nf == 4 && strcmp(f[0], "checkpoint") == 0 && *f[1] && *f[3] && !strchr(f[3], '/') &&
	    !find(t, f[1]))
		return add(t, f[1], f[2], f[3]);
	return fail(t, -EUCLEAN, "%s: line %d is not a valid manifest record", t->manifest, lineno);
}

static int check_links(struct tree *t)
{
	if (!t->active)
		return fail(t, -EUCLEAN, "%s: no active image recorded", t->manifest);
	if (t->current && !find(t, t->current))
		return fail(t, -EUCLEAN, "%s: current checkpoint '%s' is not in the tree",
			    t->manifest, t->current);
	for (int i = 0; i < t->n; i++)
		if (t->c[i].parent && !find(t, t->c[i].parent))
			return fail(t, -EUCLEAN, "%s: checkpoint '%s' names a missing parent '%s'",
				    t->manifest, t->c[i].name, t->c[i].parent);
	return 0;
}

static int read_manifest(struct tree *t, FILE *fp)
{
	char line[3 * VD_PATH_MAX];
	int lineno = 0, rc = 0;

	if (!fgets(line, sizeof(line), fp) || strncmp(line, MANIFEST_MAGIC "\n", sizeof(line)) != 0)
		return fail(t, -EUCLEAN, "%s: not a libvdisk checkpoint manifest", t->manifest);
	lineno = 1;
	while (rc == 0 && fgets(line, sizeof(line), fp)) {
		size_t n = strlen(line);

		lineno++;
		if (n == 0 || line[n - 1] != '\n')
			return fail(t, -EUCLEAN, "%s: line %d is truncated or too long",
				    t->manifest, lineno);
		line[n - 1] = '\0';
		rc = parse_line(t, line, lineno);
	}
	return rc < 0 ? rc : check_links(t);
}

/* The tree of DISK; a disk without a manifest has no checkpoints and is active. */
static int tree_load(struct tree *t, const char *disk)
{
	char *copy = strdup(disk), *base;
	FILE *fp;
	int rc;

	memset(t, 0, sizeof(*t));
	if (!copy)
		return -ENOMEM;
	if (access(disk, F_OK) < 0) {
		free(copy);
		return fail(t, -errno, "%s: %s", disk, strerror(errno));
	}
	base = basename(copy);
	snprintf(t->disk, sizeof(t->disk), "%s", base);
	free(copy);
	copy = strdup(disk);
	if (!copy)
		return -ENOMEM;
	if (!realpath(dirname(copy), t->dir)) {
		free(copy);
		return fail(t, -errno, "%s: %s", disk, strerror(errno));
	}
	free(copy);
	snprintf(t->manifest, sizeof(t->manifest), "%s/%s.checkpoints", t->dir, t->disk);
	fp = fopen(t->manifest, "re");
	if (!fp && errno != ENOENT)
		return fail(t, -errno, "%s: %s", t->manifest, strerror(errno));
	if (!fp)
		return (t->active = strdup(t->disk)) ? 0 : -ENOMEM;
	rc = read_manifest(t, fp);
	fclose(fp);
	return rc;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int write_records(const struct tree *t, FILE *fp)
{
	fprintf(fp, "%s\nactive\t%s\n", MANIFEST_MAGIC, t->active);
	if (t->current)
		fprintf(fp, "current\t%s\n", t->current);
	for (int i = 0; i < t->n; i++)
		fprintf(fp, "checkpoint\t%s\t%s\t%s\n", t->c[i].name,
			t->c[i].parent ? t->c[i].parent : "", t->c[i].image);
	return fflush(fp) == 0 && fsync(fileno(fp)) == 0 ? 0 : -errno;
}

/* Write a temporary file, fsync, rename over the manifest, fsync the directory. */
static int tree_save(struct tree *t)
{
	char tmp[sizeof(((struct tree *)0)->manifest) + 8];
	FILE *fp;
	int rc;

	snprintf(tmp, sizeof(tmp), "%s.tmp", t->manifest);
	fp = fopen(tmp, "we");
	if (!fp)
		return fail(t, -errno, "%s: %s", tmp, strerror(errno));
	rc = write_records(t, fp);
	if (fclose(fp) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, t->manifest) < 0)
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(t->dir);
	if (rc < 0) {
		unlink(tmp);
		return fail(t, rc, "%s: cannot write the manifest: %s", t->manifest, strerror(-rc));
	}
	return 0;
}

struct names {
	int n;
	char **v;
};

static void names_free(struct names *ns)
{
	for (int i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
	ns->n = 0;
	ns->v = NULL;
}

static int names_has(const struct names *ns, const char *name)
{
	for (int i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], name) == 0)
			return 1;
	return 0;
}

static int names_add(struct names *ns, const char *name)
{
	char **grown;

	if (names_has(ns, name))
		return 0;
	grown = realloc(ns->v, sizeof(char *) * (size_t)(ns->n + 1));
	if (!grown)
		return -ENOMEM;
	ns->v = grown;
	ns->v[ns->n] = strdup(name);
	return ns->v[ns->n] ? (ns->n++, 0) : -ENOMEM;
}

/* The files of FILE's chain that live in the tree's folder, leaf first. */
static int chain_of(struct tree *t, const char *file, struct names *out)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	char path[VD_PATH_MAX * 2], real[VD_PATH_MAX];
	struct vd_disk *d;
	struct vd_info in;
	size_t dl = strlen(t->dir);
	int rc;

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "%s/%s", t->dir, file);
	rc = vd_open(path, &o, &d);
	if (rc == 0)
		rc = vd_get_info(d, &in);
	for (int i = 0; rc == 0 && i < in.chain_length; i++)
		if (realpath(in.chain[i], real) && strncmp(real, t->dir, dl) == 0 &&
		    real[dl] == '/' && !strchr(real + dl + 1, '/'))
			rc = names_add(out, real + dl + 1);
	if (rc < 0)
		fail(t, rc, "%s", vd_errmsg(d));
	vd_close(d);
	return rc;
}

/* Every file some state still reads: the chains of the active image and each checkpoint. */
static int needed_files(struct tree *t, struct names *need)
{
	struct names one;
	int rc = names_add(need, t->disk);

	for (int i = -1; rc == 0 && i < t->n; i++) {
		rc = chain_of(t, i < 0 ? t->active : t->c[i].image, &one);
		for (int k = 0; rc == 0 && k < one.n; k++)
			rc = names_add(need, one.v[k]);
		names_free(&one);
	}
	return rc;
}

/* Our own AVHD names: STEM_XXXXXXXX.avhd (8 hex digits). */
static int ours(const struct tree *t, const char *file)
{
	size_t stem = strlen(t->disk), n = strlen(file);
	const char *dot = strrchr(t->disk, '.');

	if (dot)
		stem = (size_t)(dot - t->disk);
	if (n != stem + 1 + 8 + 5 || strncmp(file, t->disk, stem) != 0 || file[stem] != '_' ||
	    strcmp(file + n - 5, ".avhd") != 0)
		return 0;
	return strspn(file + stem + 1, "0123456789abcdef") == 8;
}

/* Files this tree made that no state reads any more (left by a crash or a delete). */
static void remove_strays(struct tree *t)
{
	struct names need = {0, NULL};
	DIR *dp;
	struct dirent *e;
	char path[VD_PATH_MAX * 2];

	if (needed_files(t, &need) < 0) {
		names_free(&need);
		return; /* when in doubt, keep the files */
	}
	dp = opendir(t->dir);
	while (dp && (e = readdir(dp)))
		if (ours(t, e->d_name) && !names_has(&need, e->d_name)) {
			snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
			unlink(path);
		}
	if (dp)
		closedir(dp);
	names_free(&need);
}

/* A new AVHD on PARENT (a file name in the tree); its file name in OUT. */
static int new_child(struct tree *t, const char *parent, char *out, size_t len)
{
	struct vd_create_opts o = {.type = VD_TYPE_DIFFERENCING};
	char ppath[VD_PATH_MAX * 2], cpath[VD_PATH_MAX * 2];
	const char *dot = strrchr(t->disk, '.');
	int stem = dot ? (int)(dot - t->disk) : (int)strlen(t->disk);
	struct vd_disk *d;
	uint32_t r;
	int rc;

	if (getrandom(&r, sizeof(r), 0) != sizeof(r))
		r = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	snprintf(out, len, "%.*s_%08x.avhd", stem, t->disk, r);
	abs_image(t, parent, ppath, sizeof(ppath));
	abs_image(t, out, cpath, sizeof(cpath));
	o.parent = ppath;
	rc = vd_create(cpath, &o, &d);
	if (rc < 0)
		fail(t, rc, "%s", vd_errmsg(d));
	if (vd_close(d) < 0 && rc == 0)
		rc = fail(t, -EIO, "%s: cannot flush the new image", cpath);
	return rc;
}

static int valid_name(struct tree *t, const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 255)
		return fail(t, -EINVAL, "a checkpoint name has 1 to 255 bytes");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f)
			return fail(t, -EINVAL, "a checkpoint name cannot hold control characters");
	return 0;
}

static int set_str(char **slot, const char *value)
{
	char *copy = value ? strdup(value) : NULL;

	if (value && !copy)
		return -ENOMEM;
	free(*slot);
	*slot = copy;
	return 0;
}

static int finish(struct tree *t, int rc, char **errmsg)
{
	if (errmsg)
		*errmsg = rc < 0 ? strdup(t->err[0] ? t->err : vd_strerror(rc)) : NULL;
	tree_free(t);
	return rc;
}

int vd_checkpoint_create(const char *disk, const char *name, char **errmsg)
{
	char img[VD_PATH_MAX];
	struct tree t;
	int rc = tree_load(&t, disk);

	if (rc == 0)
		rc = valid_name(&t, name);
	if (rc == 0 && find(&t, name))
		rc = fail(&t, -EEXIST, "%s: a checkpoint named '%s' exists", disk, name);
	/* The active image is frozen as NAME; a new AVHD on it takes the writes. */
	if (rc == 0)
		rc = new_child(&t, t.active, img, sizeof(img));
	if (rc == 0)
		rc = add(&t, name, t.current, t.active);
	if (rc == 0 && (rc = set_str(&t.active, img)) == 0)
		rc = set_str(&t.current, name);
	if (rc == 0)
		rc = tree_save(&t);
	if (rc == 0)
		remove_strays(&t);
	return finish(&t, rc, errmsg);
}

int vd_checkpoint_apply(const char *disk, const char *name, char **errmsg)
{
	char img[VD_PATH_MAX];
	struct ckpt *k;
	struct tree t;
	int rc = tree_load(&t, disk);

	if (rc == 0 && !(k = find(&t, name)))
		rc = fail(&t, -ENOENT, "%s: no checkpoint named '%s'", disk, name);
	/* The old active AVHD (changes since its checkpoint) is discarded. */
	if (rc == 0)
		rc = new_child(&t, k->image, img, sizeof(img));
	if (rc == 0 && (rc = set_str(&t.active, img)) == 0)
		rc = set_str(&t.current, name);
	if (rc == 0)
		rc = tree_save(&t);
	if (rc == 0)
		remove_strays(&t);
	return finish(&t, rc, errmsg);
}

/* The files whose parent is IMAGE, among every chain of the tree: how many, and one. */
static int children_of(struct tree *t, const char *image, char *child, size_t len)
{
	struct names kids = {0, NULL}, one;
	int rc = 0, n;

	for (int i = -1; rc == 0 && i < t->n; i++) {
		rc = chain_of(t, i < 0 ? t->active : t->c[i].image, &one);
		for (int k = 1; rc == 0 && k < one.n; k++)
			if (strcmp(one.v[k], image) == 0)
				rc = names_add(&kids, one.v[k - 1]);
		names_free(&one);
	}
	n = kids.n;
	if (rc == 0 && n > 0)
		snprintf(child, len, "%s", kids.v[0]);
	names_free(&kids);
	return rc < 0 ? rc : n;
}

/*
 * Copy into CHILD every run that IMAGE (its parent) holds and CHILD does not:
 * reading CHILD's chain there gives IMAGE's bytes, so CHILD's content is the
 * same before and after, and afterwards CHILD no longer needs IMAGE.
 */
static int pull_into_child(struct tree *t, const char *child)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_FORCE};
	char path[VD_PATH_MAX * 2];
	uint8_t *buf = malloc(1u << 20);
	uint64_t off = 0, run, prun;
	struct vd_disk *d;
	int rc;

	abs_image(t, child, path, sizeof(path));
	rc = buf ? vd_open(path, &o, &d) : -ENOMEM;
	while (rc == 0 && off < d->virtual_size) {
		uint64_t len =
			d->virtual_size - off < (1u << 20) ? d->virtual_size - off : (1u << 20);
		int kind = d->drv->map(d->state, off, len, &run), pkind = 0;

		if (kind == VD_EXTENT_UNALLOCATED && d->parent && off < d->parent->virtual_size)
			pkind = d->parent->drv->map(d->parent->state, off,
						    run < d->parent->virtual_size - off
							    ? run
							    : d->parent->virtual_size - off,
						    &prun);
		if (pkind != 0 && prun > 0 && prun < run)
			run = prun; /* the parent's run may end (and data start) inside ours */
		if (kind < 0 || pkind < 0)
			rc = kind < 0 ? kind : pkind;
		else if (pkind == VD_EXTENT_ALLOCATED) {
			rc = vd_pread(d, buf, (size_t)run, off);
			if (rc == 0)
				rc = vd_pwrite(d, buf, (size_t)run, off);
		}
		off += run ? run : len;
	}
	if (rc == 0)
		rc = vd_flush(d);
	if (rc < 0)
		fail(t, rc, "merging into %s: %s", path, buf ? vd_errmsg(d) : "out of memory");
	if (buf)
		vd_close(d);
	free(buf);
	return rc;
}

/* IMAGE's own parent, as a path, to re-link its child to. */
static int parent_path(struct tree *t, const char *image, char *out, size_t len)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	char path[VD_PATH_MAX * 2];
	struct vd_disk *d;
	struct vd_info in;
	int rc;

	abs_image(t, image, path, sizeof(path));
	rc = vd_open(path, &o, &d);
	if (rc == 0 && (rc = vd_get_info(d, &in)) == 0 && in.parent)
		snprintf(out, len, "%s", in.parent);
	else if (rc == 0)
		rc = fail(t, -EINVAL, "%s has no parent", path);
	if (rc < 0 && !t->err[0])
		fail(t, rc, "%s", vd_errmsg(d));
	vd_close(d);
	return rc;
}

/* Copy into B every run that a layer of APATH's chain above B holds. */
static int copy_upper_layers(struct tree *t, const char *apath, struct vd_disk *b)
{
	struct vd_open_opts ao = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY};
	struct vd_disk *a;
	int rc = vd_open(apath, &ao, &a);

	if (rc == 0)
		rc = vd_copy_layers(a, b, b, NULL, NULL);
	if (rc < 0)
		fail(t, rc, "folding into the base: %s / %s", vd_errmsg(a), vd_errmsg(b));
	vd_close(a);
	return rc;
}

/* NAME's image has exactly one child: fold it into that child, then drop it. */
static int merge_into_child(struct tree *t, const char *image, const char *child)
{
	char ppath[VD_PATH_MAX], cpath[VD_PATH_MAX * 2], *msg = NULL;
	int rc = parent_path(t, image, ppath, sizeof(ppath));

	if (rc == 0)
		rc = pull_into_child(t, child);
	abs_image(t, child, cpath, sizeof(cpath));
	if (rc == 0 && (rc = vd_relink(cpath, ppath, 0, &msg)) < 0)
		fail(t, rc, "%s", msg ? msg : vd_strerror(rc));
	free(msg);
	return rc;
}

/* Remove NAME from the tree: its children hang from its parent now. */
static int unlink_name(struct tree *t, struct ckpt *k)
{
	char *image = k->image, *parent = k->parent;
	int rc = 0;

	for (int i = 0; i < t->n && rc == 0; i++)
		if (t->c[i].parent && strcmp(t->c[i].parent, k->name) == 0)
			rc = set_str(&t->c[i].parent, parent);
	if (rc == 0 && t->current && strcmp(t->current, k->name) == 0)
		rc = set_str(&t->current, parent);
	if (rc < 0)
		return rc;
	free(k->name);
	free(parent);
	free(image);
	/* Keep creation order: list shows the tree as it grew. */
	memmove(k, k + 1, sizeof(*k) * (size_t)(t->c + t->n - (k + 1)));
	t->n--;
	return 0;
}

/*
 * With no checkpoint left, the active state goes back into the base, as
 * Hyper-V does: every run some image above the base holds is copied into the
 * base (the active state reads the same meanwhile), then the manifest goes,
 * and the AVHDs become strays.
 */
static int fold_into_base(struct tree *t)
{
	/*
	 * The base is written while the active chain reads through it: the chain
	 * holds the base's shared lock, so this writer (the library itself, which
	 * orders the two) skips the exclusive one.
	 */
	struct vd_open_opts bo = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_FORCE |
					   VD_OPEN_NOLOCK_};
	char bpath[VD_PATH_MAX * 2], apath[VD_PATH_MAX * 2];
	struct vd_disk *b = NULL;
	int rc = 0;

	abs_image(t, t->disk, bpath, sizeof(bpath));
	abs_image(t, t->active, apath, sizeof(apath));
	if (rc == 0 && (rc = vd_open(bpath, &bo, &b)) < 0)
		fail(t, rc, "%s", vd_errmsg(b));
	if (rc == 0)
		rc = copy_upper_layers(t, apath, b);
	if (rc == 0 && (rc = vd_flush(b)) < 0)
		fail(t, rc, "%s", vd_errmsg(b));
	vd_close(b);
	if (rc == 0 && unlink(t->manifest) < 0)
		rc = fail(t, -errno, "%s: %s", t->manifest, strerror(errno));
	if (rc == 0)
		rc = sync_dir(t->dir);
	if (rc == 0)
		rc = set_str(&t->active, t->disk);
	return rc;
}

/*
 * Crash-safe in its order: the merge leaves every state's content unchanged,
 * the re-link too; then the manifest drops NAME; files go last, and a crash
 * before that leaves strays of ours that the next operation removes.
 */
int vd_checkpoint_delete(const char *disk, const char *name, char **errmsg)
{
	char image[VD_PATH_MAX], child[VD_PATH_MAX];
	struct ckpt *k = NULL;
	struct tree t;
	int rc = tree_load(&t, disk), nchildren = 0;

	if (rc == 0 && !(k = find(&t, name)))
		rc = fail(&t, -ENOENT, "%s: no checkpoint named '%s'", disk, name);
	if (rc == 0)
		snprintf(image, sizeof(image), "%s", k->image);
	if (rc == 0 && strcmp(image, t.disk) != 0)
		nchildren = rc = children_of(&t, image, child, sizeof(child));
	/* One child: nothing else needs the data separately. Two or more share it. */
	if (rc >= 0 && nchildren == 1)
		rc = merge_into_child(&t, image, child);
	if (rc >= 0)
		rc = unlink_name(&t, k);
	if (rc == 0 && t.n == 0 && strcmp(t.active, t.disk) != 0)
		rc = fold_into_base(&t);
	else if (rc == 0)
		rc = tree_save(&t);
	if (rc == 0)
		remove_strays(&t);
	return finish(&t, rc < 0 ? rc : 0, errmsg);
}

static char *dup_abs(const struct tree *t, const char *file)
{
	char path[VD_PATH_MAX * 2];

	abs_image(t, file, path, sizeof(path));
	return strdup(path);
}

/* One allocation holds the tree and its strings' pointers; strings are separate. */
int vd_checkpoint_list(const char *disk, struct vd_checkpoint_tree **out, char **errmsg)
{
	struct vd_checkpoint_tree *r = NULL;
	struct tree t;
	int rc = tree_load(&t, disk);

	*out = NULL;
	if (rc == 0 && !(r = calloc(1, sizeof(*r) + sizeof(struct vd_checkpoint) * (size_t)t.n)))
		rc = -ENOMEM;
	if (rc == 0) {
		r->checkpoints = (struct vd_checkpoint *)(r + 1);
		r->count = t.n;
		r->disk = dup_abs(&t, t.disk);
		r->active = dup_abs(&t, t.active);
		r->current = t.current ? strdup(t.current) : NULL;
		for (int i = 0; i < t.n; i++) {
			r->checkpoints[i].name = strdup(t.c[i].name);
			r->checkpoints[i].parent = t.c[i].parent ? strdup(t.c[i].parent) : NULL;
			r->checkpoints[i].image = dup_abs(&t, t.c[i].image);
		}
		*out = r;
	}
	return finish(&t, rc, errmsg);
}

void vd_checkpoint_tree_free(struct vd_checkpoint_tree *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->count; i++) {
		free((char *)r->checkpoints[i].name);
		free((char *)r->checkpoints[i].parent);
		free((char *)r->checkpoints[i].image);
	}
	free((char *)r->disk);
	free((char *)r->active);
	free((char *)r->current);
	free(r);
}

/*
 * The guard for writers: is FILE (a name in DIR) the base or a frozen image of a
 * checkpoint tree recorded in DIR? Then its writes would change saved states.
 */
int vd_ckpt_is_frozen(const char *dir, const char *file, char *why, size_t len)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int found = 0;

	while (dp && !found && (e = readdir(dp))) {
		size_t n = strlen(e->d_name), suffix = strlen(".checkpoints");
		char disk[VD_PATH_MAX * 2];
		struct tree t;

		if (n <= suffix || strcmp(e->d_name + n - suffix, ".checkpoints") != 0)
			continue;
		snprintf(disk, sizeof(disk), "%s/%.*s", dir, (int)(n - suffix), e->d_name);
		if (tree_load(&t, disk) == 0) {
			for (int i = 0; i < t.n && !found; i++)
				if (strcmp(t.c[i].image, file) == 0 &&
				    strcmp(t.active, file) != 0) {
					snprintf(why, len, "it holds checkpoint '%s' of %s",
						 t.c[i].name, disk);
					found = 1;
				}
			if (!found && strcmp(t.disk, file) == 0 && strcmp(t.active, file) != 0) {
				snprintf(why, len,
					 "it is the base of %s's checkpoints (writes go to %s/%s)",
					 disk, t.dir, t.active);
				found = 1;
			}
		}
		tree_free(&t);
	}
	if (dp)
		closedir(dp);
	return found;
}

int vd_ckpt_resolve(struct vd_disk *d, const char *checkpoint, unsigned *flags, char **image)
{
	struct tree t;
	struct ckpt *k;
	int rc;

	*image = NULL;
	if (access(d->path, F_OK) < 0)
		return 0; /* the open reports it */
	rc = tree_load(&t, d->path);
	if (rc < 0) {
		vd_error(d, rc, "", UINT64_MAX, "%s", t.err);
		tree_free(&t);
		return rc;
	}
	if (checkpoint && !(k = find(&t, checkpoint)))
		rc = vd_error(d, -ENOENT, "", UINT64_MAX, "no checkpoint named '%s'%s", checkpoint,
			      t.n ? "" : " (the disk has no checkpoints)");
	else if (checkpoint && (*flags & VD_OPEN_RDWR))
		rc = vd_error(d, -EROFS, "", UINT64_MAX,
			      "checkpoint '%s' is read-only; apply it to write from its state",
			      checkpoint);
	else if (checkpoint)
		*image = dup_abs(&t, k->image);
	else if (strcmp(t.active, t.disk) != 0)
		*image = dup_abs(&t, t.active);
	if (rc == 0 && (checkpoint || strcmp(t.active, t.disk) != 0) && !*image)
		rc = vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	tree_free(&t);
	return rc;
}
