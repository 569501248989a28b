/*
 * Differencing chains: finding and opening a child's parent (locators relative
 * to the child first, then absolute paths, then the parent name), UUID and time
 * stamp checks, loop and depth limits, chain-wide map and backing reads, the
 * guard against writing an image others depend on, and set-parent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk_int.h"
#include "vhd/vhd_int.h"

struct candidates {
	char *path[24];
	int n;
};

static void add_candidate(struct candidates *c, const char *dir, const char *p)
{
	char rel[VD_PATH_MAX], buf[VD_PATH_MAX * 2 + 2], *s = rel;

	if (!p || !*p || c->n == (int)(sizeof(c->path) / sizeof(c->path[0])))
		return;
	snprintf(rel, sizeof(rel), "%s", p);
	for (char *q = rel; *q; q++)
		if (*q == '\\')
			*q = '/';
	while (!dir ? 0 : strncmp(s, "./", 2) == 0)
		s += 2; /* ".\\parent.vhd" as Windows and blktap write it */
	if (s[0] == '/' || !dir)
		snprintf(buf, sizeof(buf), "%s", s);
	else
		snprintf(buf, sizeof(buf), "%s/%s", dir, s);
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->path[i], buf) == 0)
			return;
	c->path[c->n] = strdup(buf);
	if (c->path[c->n])
		c->n++;
}

static int is_absolute(const char *p)
{
	/* "/x" (POSIX, MacX) or "C:\x" / "\\server\x" (Windows). */
	return p[0] == '/' || p[0] == '\\' || (p[0] && p[1] == ':');
}

static const char *base_name(const char *p)
{
	const char *s = p + strlen(p);

	while (s > p && s[-1] != '/' && s[-1] != '\\')
		s--;
	return s;
}

/* Relative locators against the child's directory, then absolute ones, then the name. */
static void build_candidates(const struct vd_parent_ref *ref, const char *dir, struct candidates *c)
{
	for (int i = 0; i < ref->nloc; i++)
		if (!is_absolute(ref->loc[i].path))
			add_candidate(c, dir, ref->loc[i].path);
	for (int i = 0; i < ref->nloc; i++)
		if (ref->loc[i].path[0] == '/')
			add_candidate(c, NULL, ref->loc[i].path);
	if (ref->name[0]) {
		if (ref->name[0] == '/')
			add_candidate(c, NULL, ref->name);
		add_candidate(c, dir, base_name(ref->name));
	}
	/* A Windows absolute path cannot open here, but its file name beside the child can. */
	for (int i = 0; i < ref->nloc; i++)
		if (is_absolute(ref->loc[i].path) && ref->loc[i].path[0] != '/')
			add_candidate(c, dir, base_name(ref->loc[i].path));
}

static void free_candidates(struct candidates *c)
{
	for (int i = 0; i < c->n; i++)
		free(c->path[i]);
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path), *d;

	if (!copy)
		return NULL;
	d = strdup(dirname(copy));
	free(copy);
	return d;
}

static void uuid_text(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

static int in_chain(const struct vd_disk *d, dev_t dev, ino_t ino)
{
	for (; d; d = d->child)
		if (d->dev == dev && d->ino == ino)
			return 1;
	return 0;
}

/* Append "PATH (why)" to the list of what was tried. */
static void note_tried(char *tried, size_t len, const char *path, const char *why)
{
	size_t at = strlen(tried);

	snprintf(tried + at, len - at, "%s%s%s%s%s", at ? ", " : "", path, why ? " (" : "",
		 why ? why : "", why ? ")" : "");
}

static void parent_time_check(struct vd_disk *d, const struct vd_parent_ref *ref)
{
	struct vd_disk *p = d->parent;
	struct vd_info pi;
	struct stat st;
	uint32_t mtime = 0;

	if (ref->timestamp == 0 || vd_get_info(p, &pi) < 0)
		return; /* 0: the writer left it empty (Windows does), nothing to compare */
	if (stat(p->path, &st) == 0 && st.st_mtime > VD_VHD_EPOCH)
		mtime = (uint32_t)(st.st_mtime - VD_VHD_EPOCH);
	/* vhd-util stores the parent file's mtime; others its footer time stamp. */
	if (ref->timestamp != mtime && ref->timestamp != pi.timestamp)
		vd_warn(d, "header.parent_timestamp", UINT64_MAX,
			"parent time stamp mismatch: the child records %u, the parent %s has "
			"modification time %u and creation time %u; the parent may have changed "
			"after this child was made",
			ref->timestamp, p->path, mtime, pi.timestamp);
}

/* Open CAND as the parent of D; 1 on success, 0 to try the next, -errno to stop. */
static int try_parent(struct vd_disk *d, const char *cand, const struct vd_parent_ref *ref,
		      char *tried, size_t tlen)
{
	/* A parent is read as the child is: same engine, O_DIRECT or not. */
	struct vd_open_opts po = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY |
					   (d->flags & VD_OPEN_DIRECT),
				  .engine = d->engine};
	struct vd_disk *p;
	struct vd_info pi;
	struct stat st;
	char want[37], got[37];
	int rc;

	if (stat(cand, &st) < 0) {
		note_tried(tried, tlen, cand, "not found");
		return 0;
	}
	if (in_chain(d, st.st_dev, st.st_ino))
		return vd_error(d, -ELOOP, "header.parent_locator", UINT64_MAX,
				"the parent chain loops back to %s", cand);
	rc = vd_open_child_parent(cand, &po, d, &p);
	if (rc < 0) {
		vd_error(d, rc, p ? p->err_field : "", p ? p->err_offset : UINT64_MAX, "parent: %s",
			 vd_errmsg(p));
		vd_close(p);
		return rc;
	}
	vd_get_info(p, &pi);
	if (memcmp(pi.uuid, ref->uuid, 16) != 0) {
		uuid_text(ref->uuid, want);
		uuid_text(pi.uuid, got);
		snprintf(tried + strlen(tried), tlen - strlen(tried), "%s%s (UUID %s, expected %s)",
			 tried[0] ? ", " : "", cand, got, want);
		vd_close(p);
		return 0;
	}
	d->parent = p;
	return 1;
}

/* The UUID in the footer of the file at PATH (end copy, else the copy at 0). */
static int file_uuid(const char *path, uint8_t uuid[16])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	uint8_t buf[VD_FOOTER_SIZE];
	struct vd_footer f;
	struct stat st;
	int ok = 0;

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) == 0 && st.st_size >= 512 &&
	    ((pread(fd, buf, 512, st.st_size - 512) == 512 && vd_footer_decode(buf, &f) == 0) ||
	     (pread(fd, buf, 512, 0) == 512 && vd_footer_decode(buf, &f) == 0))) {
		memcpy(uuid, f.uuid, 16);
		ok = 1;
	}
	close(fd);
	return ok;
}

/* Without opening it: where the parent would be found (for info on a lone child). */
static int locate_parent(struct vd_disk *d, const struct vd_parent_ref *ref)
{
	struct candidates c = {{0}, 0};
	char *dir = dir_of(d->path);
	uint8_t uuid[16];

	build_candidates(ref, dir, &c);
	free(dir);
	for (int i = 0; i < c.n && !d->parent_hint; i++)
		if (file_uuid(c.path[i], uuid) && memcmp(uuid, ref->uuid, 16) == 0)
			d->parent_hint = strdup(c.path[i]);
	free_candidates(&c);
	return 0;
}

int vd_chain_open_parent(struct vd_disk *d, unsigned flags)
{
	struct vd_parent_ref *ref;
	struct candidates c = {{0}, 0};
	char *dir, tried[2048] = "";
	int rc = 0;

	if (!d->drv->get_parent)
		return 0;
	ref = malloc(sizeof(*ref));
	if (!ref)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	rc = d->drv->get_parent(d->state, ref);
	if (rc <= 0)
		goto out;
	d->parent_name = strdup(ref->name);
	if (flags & VD_OPEN_NO_PARENT) {
		rc = locate_parent(d, ref);
		goto out;
	}
	if (d->depth >= VD_MAX_CHAIN_DEPTH) {
		rc = vd_error(d, -ELOOP, "header.parent_uuid", UINT64_MAX,
			      "the chain is deeper than %d levels (a loop, or too deep to follow)",
			      VD_MAX_CHAIN_DEPTH);
		goto out;
	}
	dir = dir_of(d->path);
	build_candidates(ref, dir, &c);
	free(dir);
	rc = 0;
	for (int i = 0; i < ref->nloc; i++)
		if (is_absolute(ref->loc[i].path) && ref->loc[i].path[0] != '/')
			note_tried(tried, sizeof(tried), ref->loc[i].path,
				   "a Windows path: its file name was looked for beside the child");
	for (int i = 0; i < c.n && rc == 0; i++)
		rc = try_parent(d, c.path[i], ref, tried, sizeof(tried));
	if (rc == 0) {
		char name[40];

		uuid_text(ref->uuid, name);
		rc = vd_error(d, strstr(tried, "UUID") ? -EUCLEAN : -ENOENT,
			      "header.parent_locator", UINT64_MAX,
			      "parent '%s' (UUID %s) not found; tried: %s", ref->name, name,
			      tried[0] ? tried : "no locator or parent name");
	} else if (rc > 0) {
		parent_time_check(d, ref);
		for (int i = 0; i < d->parent->nwarnings; i++)
			vd_warn(d, d->parent->warnings[i].field, d->parent->warnings[i].offset,
				"parent %s: %s", d->parent->path, d->parent->warnings[i].message);
		rc = 0;
	}
out:
	free_candidates(&c);
	free(ref);
	return rc;
}

void vd_chain_close(struct vd_disk *d)
{
	if (d->parent)
		vd_close(d->parent);
	d->parent = NULL;
	for (int i = 0; i < d->chain_length; i++)
		free(d->chain[i]);
	free(d->chain);
	d->chain = NULL;
	d->chain_length = 0;
	free(d->parent_name);
	d->parent_name = NULL;
	free(d->parent_hint);
	d->parent_hint = NULL;
}

int vd_backing_pread(struct vd_disk *d, void *buf, size_t len, uint64_t off)
{
	struct vd_disk *p = d->parent;
	size_t inside;
	int rc;

	if (!p)
		return vd_error(d, -ENOENT, "", off,
				"reading offset %llu needs the parent, which was not opened",
				(unsigned long long)off);
	/* A parent smaller than the child (after an expand) reads as zeros past its end. */
	inside = off >= p->virtual_size	       ? 0
		 : len < p->virtual_size - off ? len
					       : (size_t)(p->virtual_size - off);
	memset((uint8_t *)buf + inside, 0, len - inside);
	if (inside == 0)
		return 0;
	rc = vd_pread(p, buf, inside, off);
	if (rc < 0)
		vd_error(d, rc, p->err_field, p->err_offset, "parent: %s", vd_errmsg(p));
	return rc;
}

int vd_chain_map(struct vd_disk *d, uint64_t off, uint64_t len, uint64_t *run)
{
	int kind = d->drv->map(d->state, off, len, run);
	struct vd_disk *p = d->parent;
	uint64_t prun;
	int pkind;

	if (kind != VD_EXTENT_UNALLOCATED || !p || off >= p->virtual_size)
		return kind;
	if (*run == 0 || *run > len)
		*run = len;
	if (*run > p->virtual_size - off)
		*run = p->virtual_size - off;
	pkind = vd_chain_map(p, off, *run, &prun);
	if (pkind < 0)
		return vd_error(d, pkind, p->err_field, p->err_offset, "parent: %s", vd_errmsg(p));
	if (prun > 0 && prun < *run)
		*run = prun;
	return pkind;
}

/* ---- the guard: an image that children depend on is not written ---- */

static int has_vhd_name(const char *name)
{
	size_t n = strlen(name);

	return (n > 4 && strcasecmp(name + n - 4, ".vhd") == 0) ||
	       (n > 5 && strcasecmp(name + n - 5, ".avhd") == 0);
}

/* 1 when the file at FD is a differencing VHD whose parent UUID is UUID. */
static int names_parent(int fd, const uint8_t uuid[16])
{
	uint8_t buf[VD_DYNHDR_SIZE];
	struct vd_footer f;
	struct vd_dynhdr h;
	struct stat st;

	if (fstat(fd, &st) < 0 || st.st_size < 3 * 512 ||
	    pread(fd, buf, 512, st.st_size - 512) != 512 || vd_footer_decode(buf, &f) != 0) {
		if (pread(fd, buf, 512, 0) != 512 || vd_footer_decode(buf, &f) != 0)
			return 0;
	}
	if (f.disk_type != VD_TYPE_DIFFERENCING || f.data_offset > (uint64_t)st.st_size ||
	    pread(fd, buf, sizeof(buf), (off_t)f.data_offset) != (ssize_t)sizeof(buf) ||
	    vd_dynhdr_decode(buf, &h) != 0)
		return 0;
	return memcmp(h.parent_uuid, uuid, 16) == 0;
}

/*
 * A differencing disk in DIR whose parent UUID is UUID, other than D itself and
 * ABOVE (may be NULL): 1 with its path in WHO, else 0.
 */
static int find_child(const struct vd_disk *d, const struct vd_disk *above, const char *dir,
		      const uint8_t uuid[16], char *who, size_t len)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int found = 0;

	while (dp && !found && (e = readdir(dp))) {
		struct stat st;
		int fd;

		if (!has_vhd_name(e->d_name))
			continue;
		fd = openat(dirfd(dp), e->d_name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
		if (fd < 0)
			continue;
		if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    !(st.st_dev == d->dev && st.st_ino == d->ino) &&
		    !(above && st.st_dev == above->dev && st.st_ino == above->ino) &&
		    names_parent(fd, uuid)) {
			snprintf(who, len, "%s/%s", dir, e->d_name);
			found = 1;
		}
		close(fd);
	}
	if (dp)
		closedir(dp);
	return found;
}

int vd_chain_other_dependent(struct vd_disk *d, const struct vd_disk *above, char *who, size_t len)
{
	struct vd_info info;
	char *dir = dir_of(d->path);
	int found;

	if (!dir || vd_get_info(d, &info) < 0) {
		free(dir);
		return 0;
	}
	found = vd_ckpt_is_frozen(dir, base_name(d->path), who, len) ||
		find_child(d, above, dir, info.uuid, who, len);
	free(dir);
	return found;
}

int vd_chain_check_dependents(struct vd_disk *d)
{
	struct vd_info info;
	char *dir = dir_of(d->path), found[VD_PATH_MAX] = "", why[VD_PATH_MAX * 2];
	int frozen;

	if (!dir || vd_get_info(d, &info) < 0 || strcmp(info.format, "vhd") != 0) {
		free(dir);
		return 0;
	}
	frozen = vd_ckpt_is_frozen(dir, base_name(d->path), why, sizeof(why));
	if (!frozen)
		find_child(d, NULL, dir, info.uuid, found, sizeof(found));
	free(dir);
	if (frozen)
		return vd_error(d, -EBUSY, "", UINT64_MAX,
				"%s; writing here would change a saved state (apply the checkpoint "
				"and write to the active state instead)",
				why);
	if (!found[0])
		return 0;
	return vd_error(d, -EBUSY, "", UINT64_MAX,
			"%s is a differencing disk on this image; writing here would corrupt it "
			"(merge or delete it first, or force the write if it is obsolete)",
			found);
}

/* ---- set-parent ---- */

/* The path of FILE relative to directory DIR (both absolute, without "." or ".."). */
static int relative_path(const char *dir, const char *file, char *out, size_t len)
{
	size_t common = 0, i = 0;
	int ups = 0;

	/* The longest shared prefix that ends at a component boundary. */
	for (; dir[i] && dir[i] == file[i]; i++)
		if (dir[i] == '/')
			common = i + 1;
	if (!dir[i] && file[i] == '/')
		common = i + 1;
	for (const char *q = common <= strlen(dir) ? dir + common : ""; q && *q;) {
		ups++; /* one ".." per directory component of DIR below the shared prefix */
		q = strchr(q, '/');
		q = q ? q + 1 : NULL;
	}
	out[0] = '\0';
	for (int k = 0; k < ups; k++)
		if (strlen(out) + 4 < len)
			strcat(out, "../");
	if (strlen(out) + strlen(file + common) + 1 > len)
		return -ENAMETOOLONG;
	strcat(out, file + common);
	return 0;
}

/* Fill L for PARENT_PATH as seen from CHILD_PATH (which may not exist yet). */
int vd_parent_link_for(const char *child_path, const char *parent_path, struct vd_parent_link *l,
		       char *abs, char *rel, size_t len)
{
	char *cdir = dir_of(child_path), cdir_abs[VD_PATH_MAX];
	struct stat st;
	int rc = 0;

	if (!cdir || !realpath(cdir, cdir_abs) || !realpath(parent_path, abs))
		rc = -errno ? -errno : -ENOENT;
	free(cdir);
	if (rc == 0)
		rc = relative_path(cdir_abs, abs, rel, len);
	if (rc == 0 && stat(abs, &st) == 0 && st.st_mtime > VD_VHD_EPOCH)
		l->timestamp = (uint32_t)(st.st_mtime - VD_VHD_EPOCH);
	l->abs_path = abs;
	l->rel_path = rel;
	l->name = base_name(abs);
	return rc;
}

static int set_error(char **errmsg, int rc, const char *fmt, const char *a, const char *b)
{
	char buf[1024];

	if (errmsg) {
		snprintf(buf, sizeof(buf), fmt, a, b);
		*errmsg = strdup(buf);
	}
	return rc;
}

/* Point CHILD at PARENT; with CHECK_UUID the parent must be the one it records. */
int vd_relink(const char *child, const char *parent, int check_uuid, char **errmsg)
{
	struct vd_open_opts co = {.flags = VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_NO_PARENT |
					   VD_OPEN_FORCE};
	struct vd_open_opts po = {.flags = VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY | VD_OPEN_NO_PARENT};
	char abs[VD_PATH_MAX], rel[VD_PATH_MAX], want[37], got[37];
	struct vd_parent_link link = {{0}, 0, NULL, NULL, NULL};
	struct vd_disk *c = NULL, *p = NULL;
	struct vd_info ci, pi;
	int rc;

	if (errmsg)
		*errmsg = NULL;
	rc = vd_open(child, &co, &c);
	if (rc < 0) {
		rc = set_error(errmsg, rc, "%s%s", vd_errmsg(c), "");
		goto out;
	}
	vd_get_info(c, &ci);
	if (ci.type != VD_TYPE_DIFFERENCING) {
		rc = set_error(errmsg, -EINVAL, "%s: not a differencing disk%s", child, "");
		goto out;
	}
	rc = vd_open(parent, &po, &p);
	if (rc < 0) {
		rc = set_error(errmsg, rc, "%s%s", vd_errmsg(p), "");
		goto out;
	}
	vd_get_info(p, &pi);
	uuid_text(ci.parent_uuid, want);
	uuid_text(pi.uuid, got);
	if (check_uuid && memcmp(ci.parent_uuid, pi.uuid, 16) != 0) {
		char msg[600];

		snprintf(msg, sizeof(msg), "%s: UUID %s is not the parent %s expects (%s)", parent,
			 got, child, want);
		rc = set_error(errmsg, -EINVAL, "%s%s", msg, "");
		goto out;
	}
	memcpy(link.uuid, pi.uuid, 16);
	rc = vd_parent_link_for(child, parent, &link, abs, rel, sizeof(rel));
	if (rc < 0) {
		rc = set_error(errmsg, rc, "%s: cannot resolve the path: %s", parent,
			       strerror(-rc));
		goto out;
	}
	rc = c->drv->set_parent(c->state, &link);
	if (rc < 0)
		rc = set_error(errmsg, rc, "%s%s", vd_errmsg(c), "");
out:
	vd_close(p);
	if (vd_close(c) < 0 && rc == 0)
		rc = -EIO;
	return rc;
}

int vd_set_parent(const char *child, const char *parent, char **errmsg_out)
{
	return vd_relink(child, parent, 1, errmsg_out);
}
