/*
 * Model-based test of the checkpoint tree (VirtualBox's snapshot test is the
 * example): fixed seeds, long random sequences of write / checkpoint create /
 * apply / delete on a small dynamic base, checked after every step against an
 * in-memory model: the active state, every checkpoint's state (and the image the
 * tree names for it), vd_checkpoint_list against the model's names, parents and
 * current checkpoint, and the directory against the files the tree still needs.
 * A failure names the seed, the step and the operation, so it reproduces exactly.
 * Smaller tests below pin the rules around it: names, unknown names, read-only
 * checkpoint states and a base that must not be written under its checkpoints.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk/vdisk.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)

#define DISK_SIZE (4 * MiB)
#define BLOCK (64 * KiB)
#define OPS 300
#define MAX_CKPT 160 /* checkpoints created in one run, deleted ones included */
#define MAX_LIVE 8   /* creation stops above this many; deletes bring it down */

/* ---- temporary directory ----------------------------------------------- */

static char tmp_dir[PATH_MAX];

static void make_tmp_dir(void)
{
	char made[PATH_MAX];
	const char *base = getenv("TMPDIR");
	snprintf(made, sizeof(made), "%s/vdisk-ckpt-XXXXXX", base && *base ? base : "/tmp");
	cr_assert_not_null(mkdtemp(made), "mkdtemp %s: %s", made, strerror(errno));
	cr_assert_not_null(realpath(made, tmp_dir), "realpath %s: %s", made, strerror(errno));
}

/* ---- the model ---------------------------------------------------------- */

struct ckpt {
	char name[300];
	int parent; /* index, or -1 for a root */
	int alive;
	uint8_t *state;
};

struct model {
	uint64_t seed;
	int step;
	char op[400]; /* what the step did, for every failure message */
	char disk[PATH_MAX + 64];
	uint8_t *active;
	struct ckpt ck[MAX_CKPT];
	int nck;     /* created so far */
	int current; /* index, or -1 */
	uint8_t *buf, *back;
	struct vd_disk *d; /* a handle open during a step, closed by fini after a failure */
	struct vd_checkpoint_tree *tree;
};

static struct model the_model;

static void release_model(void)
{
	struct model *m = &the_model;
	if (m->d)
		vd_close(m->d);
	if (m->tree)
		vd_checkpoint_tree_free(m->tree);
	free(m->active);
	free(m->buf);
	free(m->back);
	for (int i = 0; i < MAX_CKPT; i++)
		free(m->ck[i].state);
	memset(m, 0, sizeof(*m));
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void cleanup(void)
{
	release_model();
	if (tmp_dir[0])
		nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(ckpt, .init = make_tmp_dir, .fini = cleanup, .timeout = 240);

#define WHERE "seed %llu step %d (%s)"
#define AT(m) (unsigned long long)(m)->seed, (m)->step, (m)->op

/* ---- data --------------------------------------------------------------- */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ull;
}

static uint64_t rnd_range(struct rng *r, uint64_t lo, uint64_t hi)
{
	return lo + rnd(r) % (hi - lo + 1);
}

static void rnd_fill(struct rng *r, uint8_t *p, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = rnd(r);
		memcpy(p + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = rnd(r);
		memcpy(p + i, &v, len - i);
	}
}

/* ---- the library, checked ---------------------------------------------- */

static const char *msg(const struct vd_disk *d)
{
	const char *s = d ? vd_errmsg(d) : NULL;
	return s ? s : "(no message)";
}

static int open_state(struct model *m, const char *path, unsigned flags, const char *checkpoint)
{
	struct vd_open_opts o;
	memset(&o, 0, sizeof(o));
	o.flags = flags;
	o.checkpoint = checkpoint;
	m->d = NULL;
	return vd_open(path, &o, &m->d);
}

static void close_state(struct model *m)
{
	int rc = vd_close(m->d);
	m->d = NULL;
	cr_assert_eq(rc, 0, WHERE ": close: %d", AT(m), rc);
}

/* The disk open as D reads exactly WANT. */
static void compare_state(struct model *m, const uint8_t *want, const char *what)
{
	memset(m->back, 0xE5, DISK_SIZE);
	int rc = vd_pread(m->d, m->back, DISK_SIZE, 0);
	cr_assert_eq(rc, 0, WHERE ": %s: read: %d: %s", AT(m), what, rc, msg(m->d));
	if (memcmp(m->back, want, DISK_SIZE) == 0)
		return;
	size_t i = 0;
	while (m->back[i] == want[i])
		i++;
	cr_assert_fail(WHERE ": %s: byte %zu reads 0x%02x, the model has 0x%02x", AT(m), what, i,
		       m->back[i], want[i]);
}

/* ---- the files the tree may keep ---------------------------------------- */

#define MAX_FILES 512

struct files {
	int n;
	char path[MAX_FILES][PATH_MAX];
};

static void add_file(struct model *m, struct files *f, const char *path)
{
	char real[PATH_MAX];
	cr_assert_not_null(realpath(path, real), WHERE ": %s: %s", AT(m), path, strerror(errno));
	for (int i = 0; i < f->n; i++)
		if (!strcmp(f->path[i], real))
			return;
	cr_assert_lt(f->n, MAX_FILES);
	snprintf(f->path[f->n++], PATH_MAX, "%s", real);
}

static void add_chain(struct model *m, struct files *f)
{
	struct vd_info info;
	memset(&info, 0, sizeof(info));
	int rc = vd_get_info(m->d, &info);
	cr_assert_eq(rc, 0, WHERE ": vd_get_info: %d: %s", AT(m), rc, msg(m->d));
	cr_assert(info.chain_length >= 1 && info.chain, WHERE ": no chain in vd_info", AT(m));
	for (int i = 0; i < info.chain_length; i++)
		add_file(m, f, info.chain[i]);
}

static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return a && b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* Every file in the directory is the base, its manifest, or in a chain still needed. */
static void check_directory(struct model *m, struct files *needed)
{
	char manifest[PATH_MAX + 80];
	snprintf(manifest, sizeof(manifest), "%s.checkpoints", m->disk);
	add_file(m, needed, m->disk);
	DIR *dir = opendir(tmp_dir);
	cr_assert_not_null(dir);
	struct dirent *e;
	char stray[2048] = "";
	while ((e = readdir(dir)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char path[PATH_MAX + 300], real[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%s", tmp_dir, e->d_name);
		if (!strcmp(path, manifest))
			continue;
		int known = 0;
		if (realpath(path, real))
			for (int i = 0; i < needed->n && !known; i++)
				known = !strcmp(needed->path[i], real);
		if (!known && strlen(stray) + strlen(e->d_name) + 3 < sizeof(stray)) {
			strcat(stray, " ");
			strcat(stray, e->d_name);
		}
	}
	closedir(dir);
	cr_assert(!stray[0], WHERE ": files no state needs are left in the directory:%s", AT(m),
		  stray);
}

/* ---- the checks after every step ---------------------------------------- */

static int live_count(const struct model *m)
{
	int n = 0;
	for (int i = 0; i < m->nck; i++)
		n += m->ck[i].alive;
	return n;
}

static const char *name_or_null(const struct model *m, int idx)
{
	return idx < 0 ? NULL : m->ck[idx].name;
}

static void expect_name(struct model *m, const char *got, const char *want, const char *what)
{
	if (!want)
		cr_assert_null(got, WHERE ": %s is '%s', the model has none", AT(m), what, got);
	else
		cr_assert(got && !strcmp(got, want), WHERE ": %s is '%s', the model has '%s'",
			  AT(m), what, got ? got : "(null)", want);
}

/* The listed checkpoint NAME (the order is checked on its own, below). */
static const struct vd_checkpoint *listed(struct model *m, const char *name)
{
	for (int i = 0; i < m->tree->count; i++)
		if (m->tree->checkpoints[i].name && !strcmp(m->tree->checkpoints[i].name, name))
			return &m->tree->checkpoints[i];
	cr_assert_fail(WHERE ": checkpoint '%s' is not listed", AT(m), name);
	return NULL;
}

static void check_list(struct model *m)
{
	char *err = NULL;
	int rc = vd_checkpoint_list(m->disk, &m->tree, &err);
	cr_assert_eq(rc, 0, WHERE ": vd_checkpoint_list: %d: %s", AT(m), rc, err ? err : "");
	vd_free_string(err);
	struct vd_checkpoint_tree *t = m->tree;
	cr_assert(same_file(t->disk, m->disk) && t->disk[0] == '/',
		  WHERE ": the tree's disk is %s, not the absolute path of %s", AT(m), t->disk,
		  m->disk);
	cr_assert(t->active && t->active[0] == '/' && same_file(t->active, t->active),
		  WHERE ": the active image '%s' is not an absolute path to a file", AT(m),
		  t->active ? t->active : "(null)");
	/* the header: no checkpoint (never, or the last one deleted) means active == disk */
	if (live_count(m) == 0)
		cr_assert(same_file(t->active, m->disk),
			  WHERE ": no checkpoint is left, yet the active image is %s", AT(m),
			  t->active);
	expect_name(m, t->current, name_or_null(m, m->current), "the current checkpoint");
	cr_assert_eq(t->count, live_count(m), WHERE ": the tree lists %d checkpoints, the model %d",
		     AT(m), t->count, live_count(m));
	for (int i = 0; i < m->nck; i++) {
		if (!m->ck[i].alive)
			continue;
		const struct vd_checkpoint *c = listed(m, m->ck[i].name);
		char what[400];
		snprintf(what, sizeof(what), "the parent of '%s'", m->ck[i].name);
		expect_name(m, c->parent, name_or_null(m, m->ck[i].parent), what);
		cr_assert(c->image && c->image[0] == '/' && same_file(c->image, c->image),
			  WHERE ": the image of '%s' ('%s') is not an absolute path to a file",
			  AT(m), c->name, c->image ? c->image : "(null)");
		cr_assert(!same_file(c->image, t->active),
			  WHERE ": checkpoint '%s' has the active image %s as its own", AT(m),
			  c->name, c->image);
	}
}

static void check_all(struct model *m)
{
	static struct files needed;
	needed.n = 0;
	check_list(m);
	struct vd_checkpoint_tree *t = m->tree;

	/* the active state, as vd_open(DISK) gives it */
	int rc = open_state(m, m->disk, VD_OPEN_RDONLY, NULL);
	cr_assert_eq(rc, 0, WHERE ": open the active state: %d: %s", AT(m), rc, msg(m->d));
	struct vd_info info;
	memset(&info, 0, sizeof(info));
	cr_assert_eq(vd_get_info(m->d, &info), 0);
	cr_assert(same_file(info.path, t->active),
		  WHERE ": vd_open(DISK) opened %s, the tree says the active image is %s", AT(m),
		  info.path, t->active);
	compare_state(m, m->active, "the active state");
	add_chain(m, &needed);
	close_state(m);

	/* every checkpoint, by name and through the image the tree names */
	for (int i = 0; i < m->nck; i++) {
		struct ckpt *c = &m->ck[i];
		if (!c->alive)
			continue;
		char what[400];
		snprintf(what, sizeof(what), "checkpoint '%s'", c->name);
		rc = open_state(m, m->disk, VD_OPEN_RDONLY, c->name);
		cr_assert_eq(rc, 0, WHERE ": open %s: %d: %s", AT(m), what, rc, msg(m->d));
		compare_state(m, c->state, what);
		add_chain(m, &needed);
		close_state(m);

		const char *image = listed(m, c->name)->image;
		snprintf(what, sizeof(what), "the image %s of checkpoint '%s'", image, c->name);
		rc = open_state(m, image, VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY, NULL);
		cr_assert_eq(rc, 0, WHERE ": open %s: %d: %s", AT(m), what, rc, msg(m->d));
		compare_state(m, c->state, what);
		close_state(m);
	}
	vd_checkpoint_tree_free(m->tree);
	m->tree = NULL;
	check_directory(m, &needed);
}

/* ---- the operations ------------------------------------------------------ */

static void do_write(struct model *m, struct rng *r)
{
	int n = (int)rnd_range(r, 1, 3);
	int rc = open_state(m, m->disk, VD_OPEN_RDWR, NULL);
	snprintf(m->op, sizeof(m->op), "write: open");
	cr_assert_eq(rc, 0, WHERE ": open the active state for writing: %d: %s", AT(m), rc,
		     msg(m->d));
	for (int i = 0; i < n; i++) {
		uint64_t p = rnd(r) % 10;
		size_t len = (size_t)(p < 5   ? rnd_range(r, 1, 2048)
				      : p < 9 ? rnd_range(r, 1, 48 * KiB)
					      : rnd_range(r, 1, 200 * KiB));
		uint64_t off = rnd_range(r, 0, DISK_SIZE - len);
		int zero = rnd(r) % 5 == 0;
		if (zero)
			memset(m->buf, 0, len);
		else
			rnd_fill(r, m->buf, len);
		snprintf(m->op, sizeof(m->op), "write %d of %d: %zu bytes at %llu%s", i + 1, n, len,
			 (unsigned long long)off, zero ? " (zeros)" : "");
		rc = vd_pwrite(m->d, m->buf, len, off);
		cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, msg(m->d));
		memcpy(m->active + off, m->buf, len);
	}
	close_state(m);
}

static int pick_live(const struct model *m, struct rng *r)
{
	int k = (int)(rnd(r) % (uint64_t)live_count(m));
	for (int i = 0; i < m->nck; i++)
		if (m->ck[i].alive && k-- == 0)
			return i;
	return -1;
}

/* Names a user might type: plain, with spaces, non-ASCII, punctuation. */
static void new_name(struct model *m, struct rng *r, char *out, size_t len)
{
	static const char *const forms[] = {
		"cp%d", "before update %d", "Prüfpunkt-%d", "v1.%d (good)", "%d", "snap_%d'\"#&"};
	snprintf(out, len, forms[rnd(r) % 6], m->nck);
}

static void do_create(struct model *m, struct rng *r)
{
	cr_assert_lt(m->nck, MAX_CKPT);
	struct ckpt *c = &m->ck[m->nck];
	new_name(m, r, c->name, sizeof(c->name));
	snprintf(m->op, sizeof(m->op), "create '%s'", c->name);
	char *err = NULL;
	int rc = vd_checkpoint_create(m->disk, c->name, &err);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
	vd_free_string(err);
	c->state = malloc(DISK_SIZE);
	cr_assert_not_null(c->state);
	memcpy(c->state, m->active, DISK_SIZE);
	c->parent = m->current;
	c->alive = 1;
	m->current = m->nck++;
}

static void do_apply(struct model *m, struct rng *r)
{
	int k = pick_live(m, r);
	snprintf(m->op, sizeof(m->op), "apply '%s'", m->ck[k].name);
	char *err = NULL;
	int rc = vd_checkpoint_apply(m->disk, m->ck[k].name, &err);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
	vd_free_string(err);
	memcpy(m->active, m->ck[k].state, DISK_SIZE);
	m->current = k;
}

/* Hyper-V: the children of a deleted checkpoint hang from its parent. */
static void do_delete(struct model *m, struct rng *r)
{
	int k = pick_live(m, r);
	snprintf(m->op, sizeof(m->op), "delete '%s'%s", m->ck[k].name,
		 k == m->current ? " (the current one)" : "");
	char *err = NULL;
	int rc = vd_checkpoint_delete(m->disk, m->ck[k].name, &err);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
	vd_free_string(err);
	for (int i = 0; i < m->nck; i++)
		if (m->ck[i].alive && m->ck[i].parent == k)
			m->ck[i].parent = m->ck[k].parent;
	if (m->current == k)
		m->current = m->ck[k].parent;
	m->ck[k].alive = 0;
	free(m->ck[k].state);
	m->ck[k].state = NULL;
}

static void run_model(uint64_t seed)
{
	struct model *m = &the_model;
	struct rng r = {seed * 0x9E3779B97F4A7C15ull + 3};
	m->seed = seed;
	m->current = -1;
	snprintf(m->disk, sizeof(m->disk), "%s/vm disk.vhd", tmp_dir);
	m->active = calloc(1, DISK_SIZE);
	m->buf = malloc(200 * KiB);
	m->back = malloc(DISK_SIZE);
	cr_assert(m->active && m->buf && m->back);

	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.format = "vhd";
	o.type = VD_TYPE_DYNAMIC;
	o.size = DISK_SIZE;
	o.block_size = BLOCK;
	snprintf(m->op, sizeof(m->op), "create the base");
	int rc = vd_create(m->disk, &o, &m->d);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, msg(m->d));
	close_state(m);
	do_write(m, &r);

	int counts[4] = {0};
	for (m->step = 0; m->step < OPS; m->step++) {
		int live = live_count(m);
		uint64_t p = rnd(&r) % 100;
		if (p < 40 || (live == 0 && p < 70)) {
			do_write(m, &r);
			counts[0]++;
		} else if (live == 0 || (p < 65 && live < MAX_LIVE)) {
			do_create(m, &r);
			counts[1]++;
		} else if (p < 82) {
			do_apply(m, &r);
			counts[2]++;
		} else {
			do_delete(m, &r);
			counts[3]++;
		}
		check_all(m);
	}
	cr_log_info("seed %llu: %d writes, %d creates, %d applies, %d deletes; %d checkpoints "
		    "left",
		    (unsigned long long)seed, counts[0], counts[1], counts[2], counts[3],
		    live_count(m));
	/* delete what is left, current last: every state stays as it was */
	while (live_count(m) > 0) {
		m->step++;
		do_delete(m, &r);
		check_all(m);
	}
}

#define MODEL_TEST(seed)                                                                           \
	Test(ckpt, model_seed_##seed)                                                              \
	{                                                                                          \
		run_model(seed);                                                                   \
	}

MODEL_TEST(1)
MODEL_TEST(2)
MODEL_TEST(3)
MODEL_TEST(4)
MODEL_TEST(5)

/* ---- the rules around the model, one at a time ---------------------------- */

/* A model run by hand: the same checks, fixed steps. */
static struct model *story_start(void)
{
	struct model *m = &the_model;
	m->current = -1;
	snprintf(m->disk, sizeof(m->disk), "%s/base.vhd", tmp_dir);
	m->active = calloc(1, DISK_SIZE);
	m->buf = malloc(200 * KiB);
	m->back = malloc(DISK_SIZE);
	cr_assert(m->active && m->buf && m->back);
	struct vd_create_opts o;
	memset(&o, 0, sizeof(o));
	o.type = VD_TYPE_DYNAMIC;
	o.size = DISK_SIZE;
	o.block_size = BLOCK;
	snprintf(m->op, sizeof(m->op), "create the base");
	int rc = vd_create(m->disk, &o, &m->d);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, msg(m->d));
	close_state(m);
	return m;
}

static void story_write(struct model *m, uint64_t off, size_t len, uint8_t byte)
{
	snprintf(m->op, sizeof(m->op), "write %zu bytes of 0x%02x at %llu", len, byte,
		 (unsigned long long)off);
	m->step++;
	int rc = open_state(m, m->disk, VD_OPEN_RDWR, NULL);
	cr_assert_eq(rc, 0, WHERE ": open: %d: %s", AT(m), rc, msg(m->d));
	memset(m->buf, byte, len);
	rc = vd_pwrite(m->d, m->buf, len, off);
	cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, msg(m->d));
	memcpy(m->active + off, m->buf, len);
	close_state(m);
	check_all(m);
}

static int find_ckpt(const struct model *m, const char *name)
{
	for (int i = 0; i < m->nck; i++)
		if (m->ck[i].alive && !strcmp(m->ck[i].name, name))
			return i;
	cr_assert_fail("no checkpoint '%s' in the model", name);
	return -1;
}

/* The rng of the model's operations picks; a story names its checkpoint instead. */
static void story_op(struct model *m, char op, const char *name)
{
	m->step++;
	char *err = NULL;
	int rc;
	if (op == 'c') {
		struct ckpt *c = &m->ck[m->nck];
		snprintf(c->name, sizeof(c->name), "%s", name);
		snprintf(m->op, sizeof(m->op), "create '%s'", name);
		rc = vd_checkpoint_create(m->disk, name, &err);
		cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
		c->state = malloc(DISK_SIZE);
		cr_assert_not_null(c->state);
		memcpy(c->state, m->active, DISK_SIZE);
		c->parent = m->current;
		c->alive = 1;
		m->current = m->nck++;
	} else if (op == 'a') {
		int k = find_ckpt(m, name);
		snprintf(m->op, sizeof(m->op), "apply '%s'", name);
		rc = vd_checkpoint_apply(m->disk, name, &err);
		cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
		memcpy(m->active, m->ck[k].state, DISK_SIZE);
		m->current = k;
	} else {
		int k = find_ckpt(m, name);
		snprintf(m->op, sizeof(m->op), "delete '%s'", name);
		rc = vd_checkpoint_delete(m->disk, name, &err);
		cr_assert_eq(rc, 0, WHERE ": %d: %s", AT(m), rc, err ? err : "(no message)");
		for (int i = 0; i < m->nck; i++)
			if (m->ck[i].alive && m->ck[i].parent == k)
				m->ck[i].parent = m->ck[k].parent;
		if (m->current == k)
			m->current = m->ck[k].parent;
		m->ck[k].alive = 0;
		free(m->ck[k].state);
		m->ck[k].state = NULL;
	}
	vd_free_string(err);
	check_all(m);
}

Test(ckpt, no_checkpoints_lists_the_disk_as_active)
{
	struct model *m = story_start();
	check_all(m);
	story_write(m, 1000, 3000, 0x11);
	char manifest[PATH_MAX + 80];
	snprintf(manifest, sizeof(manifest), "%s.checkpoints", m->disk);
	struct stat st;
	cr_assert(stat(manifest, &st) != 0, "a manifest appeared without a checkpoint");
}

Test(ckpt, story_take_change_apply_get_the_old_data_back)
{
	struct model *m = story_start();
	story_write(m, 4096, 10000, 0xA1);
	story_op(m, 'c', "before");
	story_write(m, 5000, 300, 0xB2);       /* over the checkpointed data */
	story_write(m, 1500000, 7, 0xB3);      /* where nothing was */
	story_op(m, 'a', "before");	       /* the old data back */
	story_write(m, 64 * KiB - 3, 9, 0xC4); /* across a block boundary */
	story_op(m, 'c', "second");
	story_write(m, 0, 512, 0xD5);
	story_op(m, 'a', "before");
	story_op(m, 'c', "sibling"); /* "before" has two children now */
	story_write(m, 700000, 70000, 0xE6);
	story_op(m, 'a', "second");
	story_op(m, 'a', "second"); /* twice: the unsaved changes go, nothing else */
}

Test(ckpt, delete_the_current_checkpoint_keeps_the_active_state)
{
	struct model *m = story_start();
	story_write(m, 4096, 10000, 0xA1);
	story_op(m, 'c', "one");
	story_write(m, 8192, 100, 0xB2);
	story_op(m, 'd', "one");
}

Test(ckpt, delete_a_checkpoint_with_two_children)
{
	struct model *m = story_start();
	story_write(m, 0, 3000, 0x01);
	story_op(m, 'c', "root");
	story_write(m, 2000, 3000, 0x02);
	story_op(m, 'c', "mid");
	story_write(m, 4000, 3000, 0x03);
	story_op(m, 'c', "left");
	story_op(m, 'a', "mid");
	story_write(m, 6000, 3000, 0x04);
	story_op(m, 'c', "right");
	story_write(m, 100000, 10, 0x05);
	story_op(m, 'd', "mid"); /* left and right now hang from root */
	story_op(m, 'd', "root");
	story_op(m, 'a', "left");
	story_op(m, 'd', "right");
	story_op(m, 'd', "left");
}

/* The header: vd_checkpoint_tree.checkpoints is "in creation order", deletes included. */
static void expect_order(struct model *m)
{
	char *err = NULL;
	int rc = vd_checkpoint_list(m->disk, &m->tree, &err);
	cr_assert_eq(rc, 0, WHERE ": vd_checkpoint_list: %d: %s", AT(m), rc, err ? err : "");
	vd_free_string(err);
	char got[600] = "", want[600] = "";
	for (int i = 0; i < m->tree->count; i++)
		snprintf(got + strlen(got), sizeof(got) - strlen(got), " %s",
			 m->tree->checkpoints[i].name);
	for (int i = 0; i < m->nck; i++)
		if (m->ck[i].alive)
			snprintf(want + strlen(want), sizeof(want) - strlen(want), " %s",
				 m->ck[i].name);
	vd_checkpoint_tree_free(m->tree);
	m->tree = NULL;
	cr_assert_str_eq(got, want, WHERE ": listed as%s, created as%s", AT(m), got, want);
}

Test(ckpt, list_keeps_creation_order_after_deletes)
{
	struct model *m = story_start();
	const char *names[] = {"a", "b", "c", "d", "e"};
	for (int i = 0; i < 5; i++) {
		story_write(m, (uint64_t)i * 4096, 100, (uint8_t)(i + 1));
		story_op(m, 'c', names[i]);
	}
	expect_order(m);
	story_op(m, 'd', "b");
	expect_order(m);
	story_op(m, 'd', "a");
	expect_order(m);
	story_op(m, 'a', "c");
	story_op(m, 'c', "f");
	expect_order(m);
}

Test(ckpt, delete_in_creation_order_and_reverse)
{
	struct model *m = story_start();
	const char *names[] = {"a", "b", "c", "d"};
	for (int i = 0; i < 4; i++) {
		story_write(m, (uint64_t)i * 300000 + 17, 5000, (uint8_t)(0x10 + i));
		story_op(m, 'c', names[i]);
	}
	story_write(m, 1, 1, 0x77);
	story_op(m, 'd', "a");
	story_op(m, 'd', "d");
	story_op(m, 'a', "b");
	story_op(m, 'd', "c");
	story_op(m, 'd', "b");
}

/* Names: 1-255 bytes without control characters, unique in the tree. */
Test(ckpt, checkpoint_names)
{
	struct model *m = story_start();
	story_write(m, 0, 100, 0x42);
	char longest[256], too_long[257];
	memset(longest, 'n', 255);
	longest[255] = 0;
	memset(too_long, 'n', 256);
	too_long[256] = 0;
	/* unusual but valid: each must survive the manifest and come back as given */
	const char *valid[] = {longest, "a b  c", "ütf-8 ✓",	    "../../etc/passwd", "a/b",
			       "x.vhd", "-",	  " leading space", "-- checkpoint",	"#comment"};
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		story_write(m, 512 * i, 10, (uint8_t)(0x50 + i));
		story_op(m, 'c', valid[i]);
	}
	/* invalid: refused, and nothing changes */
	const char *invalid[] = {"",	   too_long,  "tab\there", "new\nline",
				 "bell\a", "del\x7f", "a b  c",	   longest};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		char *err = NULL;
		snprintf(m->op, sizeof(m->op), "create with invalid name %zu (%.20s)", i,
			 invalid[i]);
		m->step++;
		int rc = vd_checkpoint_create(m->disk, invalid[i], &err);
		cr_assert_lt(rc, 0, WHERE ": accepted", AT(m));
		cr_assert(err && *err, WHERE ": refused without a message", AT(m));
		vd_free_string(err);
		check_all(m);
	}
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
		if (i % 2)
			story_op(m, 'a', valid[i]);
		else
			story_op(m, 'd', valid[i]);
}

Test(ckpt, unknown_names_are_refused)
{
	struct model *m = story_start();
	story_write(m, 0, 100, 0x42);
	story_op(m, 'c', "real");
	story_write(m, 0, 10, 0x43);
	int (*const ops[])(const char *, const char *, char **) = {vd_checkpoint_apply,
								   vd_checkpoint_delete};
	for (int i = 0; i < 2; i++) {
		char *err = NULL;
		snprintf(m->op, sizeof(m->op), "%s of an unknown name", i ? "delete" : "apply");
		int rc = ops[i](m->disk, "unreal", &err);
		cr_assert_eq(rc, -ENOENT, WHERE ": %d", AT(m), rc);
		cr_assert(err && strstr(err, "unreal"), WHERE ": the message should name it: %s",
			  AT(m), err ? err : "(none)");
		vd_free_string(err);
		check_all(m);
	}
	/* a checkpoint state by an unknown name does not open */
	int rc = open_state(m, m->disk, VD_OPEN_RDONLY, "unreal");
	cr_assert_lt(rc, 0, "vd_open of checkpoint 'unreal' succeeded");
	vd_close(m->d);
	m->d = NULL;
}

/* A checkpoint's state is read-only: no handle on it takes a write. */
Test(ckpt, checkpoint_states_are_read_only)
{
	struct model *m = story_start();
	story_write(m, 0, 5000, 0x42);
	story_op(m, 'c', "frozen");
	story_write(m, 0, 10, 0x43);
	snprintf(m->op, sizeof(m->op), "open checkpoint 'frozen' for writing");
	int rc = open_state(m, m->disk, VD_OPEN_RDWR, "frozen");
	if (rc == 0) {
		uint8_t b[512] = {0x99};
		rc = vd_pwrite(m->d, b, sizeof(b), 0);
		cr_assert_lt(rc, 0, WHERE ": a write to a checkpoint's state was accepted", AT(m));
	}
	vd_close(m->d);
	m->d = NULL;
	check_all(m);
}

/*
 * The base and every checkpoint's image are parents of the active image: opening
 * one of them for writing is refused with -EBUSY (VD_OPEN_IMAGE_ONLY opens exactly
 * the file), and allowed with VD_OPEN_FORCE.
 */
Test(ckpt, base_and_checkpoint_images_are_not_writable)
{
	struct model *m = story_start();
	story_write(m, 0, 5000, 0x42);
	story_op(m, 'c', "one");
	story_write(m, 100, 10, 0x43);
	story_op(m, 'c', "two");
	story_write(m, 200, 10, 0x44);

	char *err = NULL;
	struct vd_checkpoint_tree *t = NULL;
	int rc = vd_checkpoint_list(m->disk, &t, &err);
	cr_assert_eq(rc, 0, "%s", err ? err : "");
	vd_free_string(err);
	m->tree = t;
	const char *images[3] = {m->disk, t->checkpoints[0].image, t->checkpoints[1].image};
	for (int i = 0; i < 3; i++) {
		snprintf(m->op, sizeof(m->op), "open %s for writing", images[i]);
		rc = open_state(m, images[i], VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY, NULL);
		cr_assert_eq(rc, -EBUSY, WHERE ": %d: %s", AT(m), rc, msg(m->d));
		cr_assert(*msg(m->d), WHERE ": no message", AT(m));
		vd_close(m->d);
		m->d = NULL;
		rc = open_state(m, images[i], VD_OPEN_RDWR | VD_OPEN_IMAGE_ONLY | VD_OPEN_FORCE,
				NULL);
		cr_assert_eq(rc, 0, WHERE ": forced: %d: %s", AT(m), rc, msg(m->d));
		close_state(m);
	}
	vd_checkpoint_tree_free(m->tree);
	m->tree = NULL;
	check_all(m);
}

Test(ckpt, list_of_a_missing_disk_is_enoent)
{
	char path[PATH_MAX + 32], *err = NULL;
	struct vd_checkpoint_tree *t = NULL;
	snprintf(path, sizeof(path), "%s/missing.vhd", tmp_dir);
	int rc = vd_checkpoint_list(path, &t, &err);
	cr_assert_eq(rc, -ENOENT, "vd_checkpoint_list of a missing disk: %d", rc);
	cr_assert(err && strstr(err, "missing.vhd"), "the message should name it: %s",
		  err ? err : "(none)");
	vd_free_string(err);
	if (t)
		vd_checkpoint_tree_free(t);
	err = NULL;
	rc = vd_checkpoint_create(path, "x", &err);
	cr_assert_lt(rc, 0, "a checkpoint of a missing disk was created");
	vd_free_string(err);
}
