/*
 * Crash and fault simulation over the library's writing operations.
 *
 *   crashsim power WORKLOAD DIR   record WORKLOAD through the crash engine, then
 *                                 rebuild the files at every crash point (every
 *                                 prefix of the writes, and each write since the
 *                                 last flush left out) and check each state
 *   crashsim fault WORKLOAD DIR   run WORKLOAD once per I/O with that I/O failing
 *                                 (ENOSPC, EIO) and once per I/O killed there
 *                                 (kill -9), then check what is left
 *
 * A state passes when every image opens, vd_check_path finds no problem, and
 * every byte whose value is determined (written before the last completed
 * flush, or never written) reads back as the model says. Output ends with
 * "crash points: N, states checked: M, failures: F".
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

#define SIZE (8u << 20)
#define MAX_EPOCHS 8
#define MAX_WRITES 64

/* What the workload did: writes grouped in epochs, each ended by a flush. */
struct uwrite {
	uint64_t off;
	uint32_t len;
	uint32_t seed;
};

struct epoch {
	struct uwrite w[MAX_WRITES];
	int n;
	off_t log_end; /* log size when the epoch's vd_flush returned (power mode) */
	int flushed;   /* the flush returned success (fault mode) */
};

struct workload {
	const char *name;
	const char *leaf; /* image checked afterwards, relative to the work dir */
	struct epoch e[MAX_EPOCHS];
	int nepochs;
	uint8_t *base;	/* content before the workload's writes */
	int discard;	/* the epochs discard their ranges instead of writing them */
	int preserving; /* an operation that must not change what the disk reads */
	int ops_failed;
	char err[512];
};

static char dir[2048], work[4096], scratch[4096], logpath[4200];
static unsigned long points, states, failures, repairs;

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	for (uint32_t i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void failf(const char *fmt, ...)
{
	va_list ap;

	failures++;
	if (failures > 20 && !getenv("CRASHSIM_VERBOSE"))
		return; /* the count says enough */
	va_start(ap, fmt);
	fprintf(stdout, "  FAIL: ");
	vfprintf(stdout, fmt, ap);
	fprintf(stdout, "\n");
	va_end(ap);
}

static void path_in(char *out, size_t len, const char *d, const char *file)
{
	snprintf(out, len, "%s/%s", d, file);
}

/* ---- the workloads ---- */

static int must(struct workload *wl, struct vd_disk *d, int rc, const char *what)
{
	if (rc < 0) {
		snprintf(wl->err, sizeof(wl->err), "%s: %s", what, d ? vd_errmsg(d) : "?");
		wl->ops_failed = 1;
	}
	return rc;
}

/* The writes of every epoch, fixed in advance so a parent process knows them too. */
static void plan(struct workload *wl, int nepochs, int per, uint32_t seed)
{
	uint64_t slot = SIZE / (uint64_t)(nepochs * per);

	memset(wl->e, 0, sizeof(wl->e));
	wl->nepochs = nepochs;
	for (int e = 0; e < nepochs; e++)
		for (int i = 0; i < per; i++) {
			struct uwrite *w = &wl->e[e].w[wl->e[e].n++];

			seed = seed * 69069u + 1;
			w->len = 1 + seed % (uint32_t)(slot / 2 < 150000 ? slot / 2 : 150000);
			w->off = (uint64_t)(e * per + i) * slot + (seed >> 8) % (slot - w->len);
			w->seed = seed;
		}
}

static int progress_fd = -1; /* fault mode: the child reports each completed flush */

/* Epochs of writes at unaligned offsets into disjoint slots, each ended by a flush. */
static int write_epochs(struct workload *wl, struct vd_disk *d)
{
	uint8_t *buf = malloc(200000);
	int rc = 0;

	for (int e = 0; e < wl->nepochs && rc == 0; e++) {
		struct epoch *ep = &wl->e[e];
		struct stat st;

		for (int i = 0; i < ep->n && rc == 0; i++) {
			fill(buf, ep->w[i].len, ep->w[i].seed);
			rc = wl->discard
				     ? must(wl, d, vd_discard(d, ep->w[i].off, ep->w[i].len),
					    "discard")
				     : must(wl, d, vd_pwrite(d, buf, ep->w[i].len, ep->w[i].off),
					    "write");
		}
		if (rc == 0)
			rc = must(wl, d, vd_flush(d), "flush");
		if (rc < 0)
			break;
		ep->flushed = 1;
		ep->log_end = stat(logpath, &st) == 0 ? st.st_size : 0;
		if (progress_fd >= 0 && write(progress_fd, &e, sizeof(e)) < 0)
			_exit(3);
	}
	free(buf);
	return rc;
}

/* The workloads' common end: the epochs, then a close whose flush must succeed. */
static int epochs_then_close(struct workload *wl, struct vd_disk *d)
{
	int rc = write_epochs(wl, d);

	if (vd_close(d) < 0 && rc == 0)
		rc = must(wl, NULL, -EIO, "close (flush) failed");
	return rc;
}

static int run_create(struct workload *wl, enum vd_disk_type type, uint32_t block)
{
	struct vd_create_opts o = {.type = type, .size = SIZE, .block_size = block};
	char p[4200];
	struct vd_disk *d;
	int rc;

	path_in(p, sizeof(p), work, wl->leaf);
	rc = vd_create(p, &o, &d);
	if (rc < 0) {
		must(wl, d, rc, "create");
		vd_close(d);
		return rc;
	}
	return epochs_then_close(wl, d);
}

/* The parent, made before the recording (not simulated), holding data in some blocks. */
static void make_parent(struct workload *wl)
{
	struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = SIZE, .block_size = 1u << 20};
	uint8_t *data = malloc(SIZE);
	char p[4200];
	struct vd_disk *d;

	path_in(p, sizeof(p), work, "parent.vhd");
	if (!data || vd_create(p, &o, &d) < 0) {
		fprintf(stderr, "crashsim: cannot make the parent: %s\n", vd_errmsg(d));
		exit(2);
	}
	fill(data, SIZE, 99);
	for (uint64_t off = 0; off < SIZE; off += 3u << 20) {
		vd_pwrite(d, data + off, 1u << 20, off);
		memcpy(wl->base + off, data + off, 1u << 20);
	}
	vd_close(d);
	free(data);
}

static int run_diff(struct workload *wl)
{
	struct vd_create_opts o = {.type = VD_TYPE_DIFFERENCING};
	char p[4200], parent[4200];
	struct vd_disk *d;
	int rc;

	path_in(p, sizeof(p), work, wl->leaf);
	path_in(parent, sizeof(parent), work, "parent.vhd");
	o.parent = parent;
	rc = vd_create(p, &o, &d);
	if (rc < 0) {
		must(wl, d, rc, "create child");
		vd_close(d);
		return rc;
	}
	return epochs_then_close(wl, d);
}

static void plan_workload(struct workload *wl)
{
	if (wl->preserving)
		wl->nepochs = 0; /* the model is the content before: every byte determined */
	else if (strcmp(wl->name, "diff") == 0)
		plan(wl, 4, 6, 11);
	else if (strcmp(wl->name, "setparent") == 0)
		plan(wl, 1, 6, 13);
	else
		plan(wl, 4, 5, 7);
}

static int run_ckpt(struct workload *wl);
static int run_discard(struct workload *wl);
static int run_setparent(struct workload *wl);
static int run_preserving(struct workload *wl);
static void check_any(struct workload *wl, int done, const char *what);

static int run_workload(struct workload *wl)
{
	plan_workload(wl);
	wl->ops_failed = 0;
	wl->err[0] = '\0';
	if (strcmp(wl->name, "dynamic") == 0)
		return run_create(wl, VD_TYPE_DYNAMIC, 64u << 10);
	if (strcmp(wl->name, "dynamic-2m") == 0)
		return run_create(wl, VD_TYPE_DYNAMIC, 2u << 20);
	if (strcmp(wl->name, "fixed") == 0)
		return run_create(wl, VD_TYPE_FIXED, 0);
	if (strcmp(wl->name, "ckpt") == 0)
		return run_ckpt(wl);
	if (strcmp(wl->name, "discard") == 0)
		return run_discard(wl);
	if (strcmp(wl->name, "setparent") == 0)
		return run_setparent(wl);
	if (wl->preserving)
		return run_preserving(wl);
	return run_diff(wl);
}

/* ---- files ---- */

static void rm_tree(const char *d)
{
	DIR *dp = opendir(d);
	struct dirent *e;
	char p[4200];

	while (dp && (e = readdir(dp)))
		if (e->d_name[0] != '.') {
			path_in(p, sizeof(p), d, e->d_name);
			unlink(p);
		}
	if (dp)
		closedir(dp);
}

static void copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	struct stat st;
	off_t off = 0;

	if (in >= 0 && out >= 0 && fstat(in, &st) == 0) {
		if (ftruncate(out, st.st_size) < 0)
			perror("ftruncate");
		while (off < st.st_size &&
		       copy_file_range(in, &off, out, NULL, (size_t)(st.st_size - off), 0) > 0)
			;
		/* Keep the mtime: a parent's time stamp is checked against it. */
		struct timespec times[2] = {st.st_atim, st.st_mtim};
		futimens(out, times);
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
}

static void copy_dir(const char *from, const char *to)
{
	DIR *dp = opendir(from);
	struct dirent *e;
	char a[4200], b[4200];

	rm_tree(to);
	while (dp && (e = readdir(dp)))
		if (e->d_name[0] != '.') {
			path_in(a, sizeof(a), from, e->d_name);
			path_in(b, sizeof(b), to, e->d_name);
			copy_file(a, b);
		}
	if (dp)
		closedir(dp);
}

/* ---- the log ---- */

struct rec {
	char type;
	char path[4096];
	uint64_t off;
	uint32_t len;
	off_t data; /* offset of the data in the log */
	off_t end;  /* log offset after this record */
};

static struct rec *recs;
static int nrecs;

static void load_log(void)
{
	int fd = open(logpath, O_RDONLY);
	off_t at = 0;
	uint8_t h[17];

	nrecs = 0;
	while (fd >= 0 && pread(fd, h, sizeof(h), at) == (ssize_t)sizeof(h)) {
		struct rec *r;
		uint32_t plen;

		recs = realloc(recs, sizeof(*recs) * (size_t)(nrecs + 1));
		r = &recs[nrecs++];
		r->type = (char)h[0];
		memcpy(&plen, h + 1, 4);
		memcpy(&r->off, h + 5, 8);
		memcpy(&r->len, h + 13, 4);
		if (plen >= sizeof(r->path) || pread(fd, r->path, plen, at + 17) != (ssize_t)plen) {
			fprintf(stderr, "crashsim: bad log\n");
			exit(2);
		}
		r->path[plen] = '\0';
		r->data = at + 17 + plen;
		at = r->data + (r->type == 'W' ? r->len : 0);
		r->end = at;
	}
	if (fd >= 0)
		close(fd);
}

/*
 * vd_create writes a new image as P.vdtmp-PID and renames it to P once it is
 * durable (the rename is not in the log): the first write to P means the
 * rename happened before it.
 */
static void adopt_temp(const char *p)
{
	char *copy = strdup(p), *slash = strrchr(copy, '/'), from[8400];
	DIR *dp;
	struct dirent *e;

	*slash = '\0';
	dp = opendir(copy);
	while (dp && (e = readdir(dp)))
		if (strncmp(e->d_name, slash + 1, strlen(slash + 1)) == 0 &&
		    strncmp(e->d_name + strlen(slash + 1), ".vdtmp-", 7) == 0) {
			snprintf(from, sizeof(from), "%s/%s", copy, e->d_name);
			if (rename(from, p) < 0)
				perror("adopt_temp");
			break;
		}
	if (dp)
		closedir(dp);
	free(copy);
}

/* Apply write record I to the scratch copy (WORK's path mapped to SCRATCH). */
static void apply(int i)
{
	const struct rec *r = &recs[i];
	size_t wl = strlen(work);
	char p[8400];
	uint8_t *buf = malloc(r->len ? r->len : 1);
	int in = open(logpath, O_RDONLY), out;

	snprintf(p, sizeof(p), "%s%s", scratch, r->path + (strncmp(r->path, work, wl) ? 0 : wl));
	if (access(p, F_OK) < 0)
		adopt_temp(p);
	out = open(p, O_WRONLY | O_CREAT, 0644);
	if (in >= 0 && out >= 0 && pread(in, buf, r->len, r->data) == (ssize_t)r->len &&
	    pwrite(out, buf, r->len, (off_t)r->off) != (ssize_t)r->len)
		perror("apply");
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(buf);
}

/* ---- checking a state ---- */

static void count_problem(void *ctx, const struct vd_problem *p)
{
	char *first = ctx;

	if (!first[0])
		snprintf(first, 256, "%s: %s", p->field, p->message);
}

/*
 * The model at a crash point: bytes of epochs flushed by then hold their data;
 * bytes any later epoch wrote are undetermined (old or new may be there).
 */
static void build_model(const struct workload *wl, int done, uint8_t *model, uint8_t *known)
{
	memcpy(model, wl->base, SIZE);
	memset(known, 1, SIZE);
	for (int e = 0; e < wl->nepochs; e++)
		for (int i = 0; i < wl->e[e].n; i++) {
			const struct uwrite *w = &wl->e[e].w[i];

			if (e < done && wl->discard)
				memset(model + w->off, 0, w->len);
			else if (e < done)
				fill(model + w->off, w->len, w->seed);
			else
				memset(known + w->off, 0, w->len);
		}
}

/*
 * Check clean, or made clean by check --repair (which loses nothing); then
 * every determined byte must read as the model says.
 */
static int clean_or_repaired(const char *p, const char *what)
{
	char first[512] = "", *msg = NULL;
	int rc = vd_check_path(p, VD_CHECK_DEFAULT, count_problem, first, &msg);

	vd_free_string(msg);
	msg = NULL;
	if (rc == 0)
		return 0;
	repairs++;
	if (vd_repair_path(p, count_problem, first + 256, &msg) < 0) {
		failf("%s: check found %s, and repair refused: %s", what, first, msg ? msg : "?");
		vd_free_string(msg);
		return -1;
	}
	vd_free_string(msg);
	msg = NULL;
	first[0] = '\0';
	rc = vd_check_path(p, VD_CHECK_DEFAULT, count_problem, first, &msg);
	vd_free_string(msg);
	if (rc != 0)
		failf("%s: after repair, check still finds %d problem(s): %s", what, rc, first);
	return rc != 0 ? -1 : 0;
}

static void check_state(const struct workload *wl, int done, const char *what, int must_exist)
{
	static uint8_t *model, *known, *got;
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY};
	char p[4200];
	struct vd_disk *d;
	int rc;

	if (!model) {
		model = malloc(SIZE);
		known = malloc(SIZE);
		got = malloc(SIZE);
	}
	states++;
	path_in(p, sizeof(p), scratch, wl->leaf);
	if (access(p, F_OK) < 0 && !must_exist && done == 0)
		return; /* crashed before the image existed: nothing was promised */
	if (clean_or_repaired(p, what) < 0)
		return;
	rc = vd_open(p, &o, &d);
	if (rc < 0) {
		failf("%s: %s does not open: %s", what, wl->leaf, vd_errmsg(d));
		vd_close(d);
		return;
	}
	rc = vd_pread(d, got, SIZE, 0);
	vd_close(d);
	if (rc < 0) {
		failf("%s: read failed", what);
		return;
	}
	build_model(wl, done, model, known);
	for (uint32_t i = 0; i < SIZE; i++)
		if (known[i] && got[i] != model[i]) {
			failf("%s: byte %u reads 0x%02x, flushed data says 0x%02x (%d epochs "
			      "flushed)",
			      what, i, got[i], model[i], done);
			break;
		}
}

/* Epochs whose flush had completed by log offset END. */
static int flushed_by(const struct workload *wl, off_t end)
{
	int done = 0;

	while (done < wl->nepochs && wl->e[done].log_end && wl->e[done].log_end <= end)
		done++;
	return done;
}

/* Every prefix of the writes; and since the last flush, each write left out. */
static void power(struct workload *wl, const char *snap)
{
	int last_flush = -1;

	load_log();
	for (int k = 0; k <= nrecs; k++) {
		off_t end = k ? recs[k - 1].end : 0;
		int done = flushed_by(wl, end);
		char what[128];

		if (k > 0 && recs[k - 1].type == 'F')
			last_flush = k - 1;
		if (k > 0 && recs[k - 1].type != 'W')
			continue; /* a state differs from the last only after a write */
		points++;
		copy_dir(snap, scratch);
		for (int i = 0; i < k; i++)
			if (recs[i].type == 'W')
				apply(i);
		snprintf(what, sizeof(what), "%s after %d of %d records", wl->name, k, nrecs);
		check_any(wl, done, what);
		/* Reordering: the disk may have kept any subset of unflushed writes. */
		for (int skip = last_flush + 1; skip < k - 1; skip++) {
			if (recs[skip].type != 'W')
				continue;
			copy_dir(snap, scratch);
			for (int i = 0; i < k; i++)
				if (recs[i].type == 'W' && i != skip)
					apply(i);
			snprintf(what, sizeof(what), "%s after %d records without record %d",
				 wl->name, k, skip);
			check_any(wl, done, what);
		}
	}
}

/* ---- fault mode: each I/O fails, or the process dies there ---- */

/*
 * Run the workload in a child with fault spec SPEC (a fresh process, so the
 * engine's I/O count starts at 0). Returns the child's exit status; *DONE is
 * the number of epochs whose flush completed.
 */
static int run_child(struct workload *wl, const char *spec, int *done)
{
	int pfd[2], status, e;
	pid_t pid;

	*done = 0;
	if (pipe(pfd) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(pfd[0]);
		progress_fd = pfd[1];
		setenv("VDISK_ENGINE", spec, 1);
		if (run_workload(wl) == 0)
			_exit(0);
		_exit(wl->err[0] && strstr(wl->err, ": ") ? 1 : 4); /* 4: error without a message */
	}
	close(pfd[1]);
	while (read(pfd[0], &e, sizeof(e)) == (ssize_t)sizeof(e))
		*done = e + 1;
	close(pfd[0]);
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Returns 0 once I/O number NTH lies past the workload's end (nothing failed). */
static int fault_at(struct workload *wl, const char *snap, unsigned long nth, const char *err)
{
	char spec[128], what[160];
	int done, rc;

	copy_dir(snap, work);
	snprintf(spec, sizeof(spec), "fault:nth=%lu,op=any,err=%s", nth, err);
	rc = run_child(wl, spec, &done);
	if (rc == 0)
		return 0;
	points++;
	snprintf(what, sizeof(what), "%s with I/O %lu %s", wl->name, nth,
		 strcmp(err, "kill") == 0 ? "killed (kill -9)" : err);
	if (rc == 4)
		failf("%s: an error came back without a message", what);
	else if (rc != 1 && rc != 137)
		failf("%s: the workload ended with status %d", what, rc);
	copy_dir(work, scratch);
	plan_workload(wl);
	check_any(wl, done, what);
	return 1;
}

/* ---- checkpoint operations and set-parent: kill or fail at every I/O ---- */

/* What each step leaves: the epochs in the active state and in checkpoints a, b. */
struct config {
	int active, a, b; /* epoch bit masks; -1: no such checkpoint */
};

#define NSTEPS 9
static const char *const step_name[NSTEPS] = {
	"write 0", "create a", "write 1",  "create b", "write 2",
	"apply a", "write 3",  "delete b", "delete a",
};
static const struct config after_step[NSTEPS + 1] = {
	{0x0, -1, -1}, /* before anything */
	{0x1, -1, -1},	 {0x1, 0x1, -1},  {0x3, 0x1, -1}, {0x3, 0x1, 0x3}, {0x7, 0x1, 0x3},
	{0x1, 0x1, 0x3}, {0x9, 0x1, 0x3}, {0x9, 0x1, -1}, {0x9, -1, -1},
};

static int write_epoch(struct workload *wl, const char *disk, int e)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR};
	uint8_t *buf = malloc(200000);
	struct vd_disk *d;
	int rc = vd_open(disk, &o, &d);

	for (int i = 0; rc == 0 && i < wl->e[e].n; i++) {
		fill(buf, wl->e[e].w[i].len, wl->e[e].w[i].seed);
		rc = vd_pwrite(d, buf, wl->e[e].w[i].len, wl->e[e].w[i].off);
	}
	if (rc == 0)
		rc = vd_flush(d);
	if (rc < 0)
		must(wl, d, rc, "write");
	if (vd_close(d) < 0 && rc == 0)
		rc = must(wl, NULL, -EIO, "close (flush) failed");
	free(buf);
	return rc;
}

static int ckpt_step(struct workload *wl, const char *disk, int k)
{
	const char *what = step_name[k], *name = what + strlen(what) - 1;
	char *msg = NULL;
	int rc;

	if (strncmp(what, "write", 5) == 0)
		return write_epoch(wl, disk, *name - '0');
	if (strncmp(what, "create", 6) == 0)
		rc = vd_checkpoint_create(disk, name, &msg);
	else if (strncmp(what, "apply", 5) == 0)
		rc = vd_checkpoint_apply(disk, name, &msg);
	else
		rc = vd_checkpoint_delete(disk, name, &msg);
	if (rc < 0) {
		snprintf(wl->err, sizeof(wl->err), "%s: %s", what, msg ? msg : "(no message)");
		wl->ops_failed = 1;
	}
	vd_free_string(msg);
	return rc;
}

static int run_ckpt(struct workload *wl)
{
	char disk[4200];
	int rc = 0;

	path_in(disk, sizeof(disk), work, "disk.vhd");
	for (int k = 0; k < NSTEPS && rc == 0; k++) {
		rc = ckpt_step(wl, disk, k);
		if (rc == 0 && progress_fd >= 0 && write(progress_fd, &k, sizeof(k)) < 0)
			_exit(3);
	}
	return rc;
}

/* Read the state (PATH with CHECKPOINT, or the active one) and compare. */
static int state_is(const char *disk, const char *checkpoint, const struct workload *wl, int mask,
		    int unknown_epoch, uint8_t *got, uint8_t *model)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY, .checkpoint = checkpoint};
	struct vd_disk *d;
	int rc = vd_open(disk, &o, &d);

	if (rc == 0)
		rc = vd_pread(d, got, SIZE, 0);
	vd_close(d);
	if (rc < 0)
		return 0;
	memcpy(model, wl->base, SIZE);
	for (int e = 0; e < wl->nepochs; e++)
		if (mask & (1 << e))
			for (int i = 0; i < wl->e[e].n; i++)
				fill(model + wl->e[e].w[i].off, wl->e[e].w[i].len,
				     wl->e[e].w[i].seed);
	for (int i = 0; unknown_epoch >= 0 && i < wl->e[unknown_epoch].n; i++) {
		const struct uwrite *w = &wl->e[unknown_epoch].w[i];

		memcpy(model + w->off, got + w->off, w->len); /* old or new: either may be there */
	}
	return memcmp(got, model, SIZE) == 0;
}

static int config_holds(const struct workload *wl, const char *disk, const struct config *c,
			int unknown_epoch)
{
	static uint8_t *got, *model;
	struct vd_checkpoint_tree *t = NULL;
	char *msg = NULL;
	int names = 0, ok;

	if (!got) {
		got = malloc(SIZE);
		model = malloc(SIZE);
	}
	if (vd_checkpoint_list(disk, &t, &msg) < 0) {
		vd_free_string(msg);
		return 0;
	}
	for (int i = 0; i < t->count; i++)
		names |= strcmp(t->checkpoints[i].name, "a") == 0 ? 1 : 2;
	vd_checkpoint_tree_free(t);
	ok = names == ((c->a >= 0 ? 1 : 0) | (c->b >= 0 ? 2 : 0)) &&
	     state_is(disk, NULL, wl, c->active, unknown_epoch, got, model) &&
	     (c->a < 0 || state_is(disk, "a", wl, c->a, -1, got, model)) &&
	     (c->b < 0 || state_is(disk, "b", wl, c->b, -1, got, model));
	return ok;
}

static void check_images_clean(const char *disk, const char *what)
{
	struct vd_checkpoint_tree *t = NULL;
	char *msg = NULL;

	if (clean_or_repaired(disk, what) < 0 || vd_checkpoint_list(disk, &t, &msg) < 0) {
		vd_free_string(msg);
		return;
	}
	for (int i = 0; i < t->count; i++)
		clean_or_repaired(t->checkpoints[i].image, what);
	vd_checkpoint_tree_free(t);
}

/* After step DONE completed and step DONE+1 was cut short: before or after it. */
static void check_ckpt(struct workload *wl, int done, const char *what)
{
	char disk[4200];
	int writing = done < NSTEPS && strncmp(step_name[done], "write", 5) == 0;
	int epoch = writing ? step_name[done][6] - '0' : -1;

	states++;
	path_in(disk, sizeof(disk), scratch, "disk.vhd");
	check_images_clean(disk, what);
	if (config_holds(wl, disk, &after_step[done], epoch) ||
	    (done < NSTEPS && config_holds(wl, disk, &after_step[done + 1], -1)))
		return;
	failf("%s: the states match neither before nor after step '%s'", what,
	      done < NSTEPS ? step_name[done] : "(end)");
}

/* Epochs of discards (whole blocks and parts) on a disk full of data. */
static int run_discard(struct workload *wl)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR};
	char p[4200];
	struct vd_disk *d;
	int rc;

	path_in(p, sizeof(p), work, wl->leaf);
	rc = vd_open(p, &o, &d);
	if (rc < 0) {
		must(wl, d, rc, "open");
		vd_close(d);
		return rc;
	}
	return epochs_then_close(wl, d);
}

/* set-parent of a child whose parent moved: done, or not done and can be redone. */
static int run_setparent(struct workload *wl)
{
	char c[4200], p[4200], *msg = NULL;
	int rc;

	path_in(c, sizeof(c), work, "child.vhd");
	path_in(p, sizeof(p), work, "moved.vhd");
	rc = vd_set_parent(c, p, &msg);
	if (rc < 0) {
		snprintf(wl->err, sizeof(wl->err), "set-parent: %s", msg ? msg : "(no message)");
		wl->ops_failed = 1;
	}
	vd_free_string(msg);
	return rc;
}

static void check_setparent(struct workload *wl, const char *what)
{
	static uint8_t *got, *model;
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY};
	char c[4200], p[4200], *msg = NULL;
	struct vd_disk *d;
	int rc;

	if (!got) {
		got = malloc(SIZE);
		model = malloc(SIZE);
	}
	states++;
	path_in(c, sizeof(c), scratch, "child.vhd");
	path_in(p, sizeof(p), scratch, "moved.vhd");
	rc = vd_open(c, &o, &d);
	vd_close(d);
	if (rc == -ENOENT && vd_set_parent(c, p, &msg) < 0) /* not done yet: it must redo */
		failf("%s: set-parent cannot be redone: %s", what, msg ? msg : "?");
	vd_free_string(msg);
	if (clean_or_repaired(c, what) < 0)
		return;
	if (!state_is(c, NULL, wl, 0x1, -1, got, model))
		failf("%s: the child does not read as before", what);
}

/* ---- operations that must not change what the disk reads ---- */

/*
 * compact, compact-diff, merge, expand, copy: whatever the crash point, the
 * images read exactly what they read before (the model is that content, every
 * byte determined), and running the operation again completes it.
 */
static const char *const preserving_ops[] = {"compact", "compact-diff", "merge", "expand", "copy"};

static int is_preserving(const char *name)
{
	for (size_t i = 0; i < sizeof(preserving_ops) / sizeof(preserving_ops[0]); i++)
		if (strcmp(name, preserving_ops[i]) == 0)
			return 1;
	return 0;
}

/* Run the operation on the images in DIR; 0 or -errno with the message in ERR. */
static int preserving_op(const char *name, const char *d, char *err, size_t errlen)
{
	char disk[4200], child[4200], out[4200], *msg = NULL;
	int rc;

	path_in(disk, sizeof(disk), d, "disk.vhd");
	path_in(child, sizeof(child), d, "child.vhd");
	path_in(out, sizeof(out), d, "copy.vhd");
	if (strcmp(name, "compact") == 0)
		rc = vd_compact(disk, NULL, NULL, &msg);
	else if (strcmp(name, "compact-diff") == 0)
		rc = vd_compact(child, NULL, NULL, &msg);
	else if (strcmp(name, "merge") == 0)
		rc = vd_merge(child, NULL, &msg);
	else if (strcmp(name, "expand") == 0)
		rc = vd_resize(disk, 2 * (uint64_t)SIZE, 0, &msg);
	else {
		struct vd_copy_opts co = {.type = VD_TYPE_DYNAMIC};

		rc = vd_copy(disk, out, &co, NULL, &msg);
	}
	snprintf(err, errlen, "%s: %s", name, msg ? msg : "(no message)");
	vd_free_string(msg);
	return rc;
}

static int run_preserving(struct workload *wl)
{
	int rc = preserving_op(wl->name, work, wl->err, sizeof(wl->err));

	wl->ops_failed = rc < 0;
	return rc;
}

/* The image a workload's content is read from, before and after the operation. */
static void check_file(const struct workload *wl, const char *leaf, const char *what, int must)
{
	struct workload w = *wl;

	w.leaf = leaf;
	check_state(&w, 0, what, must);
}

/* After expand: twice the size, and the new half reads as zeros. */
static void check_grown(const char *leaf, const char *what)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY};
	uint8_t *tail = malloc(SIZE);
	struct vd_disk *d;
	struct vd_info info;
	char p[4200];
	uint32_t i = 0;

	path_in(p, sizeof(p), scratch, leaf);
	if (vd_open(p, &o, &d) < 0 || vd_get_info(d, &info) < 0 ||
	    info.virtual_size != 2 * (uint64_t)SIZE || vd_pread(d, tail, SIZE, SIZE) < 0) {
		failf("%s: %s is not %u bytes long: %s", what, leaf, 2 * SIZE, vd_errmsg(d));
		i = SIZE;
	}
	while (i < SIZE && tail[i] == 0)
		i++;
	if (i < SIZE)
		failf("%s: the new space does not read as zeros (byte %u)", what, SIZE + i);
	vd_close(d);
	free(tail);
}

static void check_preserving(struct workload *wl, const char *what)
{
	char p[4200], err[600], again[700];
	int child;

	/* A lost end footer of the parent (a power cut while it grew) is repaired first. */
	path_in(p, sizeof(p), scratch, "parent.vhd");
	if (access(p, F_OK) == 0 && clean_or_repaired(p, what) < 0)
		return;
	path_in(p, sizeof(p), scratch, "child.vhd");
	child = access(p, F_OK) == 0;
	if (strcmp(wl->name, "copy") == 0) {
		check_file(wl, "disk.vhd", what, 1);
		check_file(wl, "copy.vhd", what, 0); /* a copy exists only once complete */
		return;
	}
	if (strcmp(wl->name, "merge") != 0 || child)
		check_file(wl, wl->leaf, what, 1);
	/* Resumable: the same operation, run again on the crashed state, completes. */
	if ((strcmp(wl->name, "merge") != 0 || child) &&
	    preserving_op(wl->name, scratch, err, sizeof(err)) < 0) {
		failf("%s: running %s again fails: %s", what, wl->name, err);
		return;
	}
	snprintf(again, sizeof(again), "%s, then %s again", what, wl->name);
	check_file(wl, strcmp(wl->name, "merge") == 0 ? "parent.vhd" : wl->leaf, again, 1);
	if (strcmp(wl->name, "expand") == 0)
		check_grown(wl->leaf, again);
}

/* Read LEAF in WORK into the workload's model. */
static void capture(struct workload *wl)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDONLY};
	char p[4200];
	struct vd_disk *d;

	path_in(p, sizeof(p), work, wl->leaf);
	if (vd_open(p, &o, &d) < 0 || vd_pread(d, wl->base, SIZE, 0) < 0) {
		fprintf(stderr, "crashsim: reading %s: %s\n", wl->leaf, vd_errmsg(d));
		exit(2);
	}
	vd_close(d);
}

/* Zeros over whole blocks and parts of blocks, and a discarded range. */
static void add_zeros(const char *disk)
{
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR};
	uint8_t *zero = calloc(1, 256u << 10);
	struct vd_disk *d;
	int rc = vd_open(disk, &o, &d);

	for (uint64_t off = 0; rc == 0 && off < SIZE; off += 704u << 10)
		rc = vd_pwrite(d, zero, (off / 64) % 3 ? 128u << 10 : 100000, off);
	if (rc == 0)
		rc = vd_discard(d, SIZE / 2, 512u << 10);
	if (rc < 0 || vd_close(d) < 0) {
		fprintf(stderr, "crashsim: zeroing %s: %s\n", disk, vd_errmsg(d));
		exit(2);
	}
	free(zero);
}

/*
 * The parent's own bytes written into the child: whole blocks, a few sectors
 * of a block that also holds other data, and zeros where the parent is empty.
 */
static void copy_parent_into(struct workload *wl, const char *child)
{
	static const uint64_t ranges[][2] = {{0, 256u << 10},
					     {(3u << 20) + 4096, 4096},
					     {6u << 20, 1u << 20},
					     {2u << 20, 128u << 10}};
	struct vd_open_opts o = {.flags = VD_OPEN_RDWR};
	struct vd_disk *d;
	int rc = vd_open(child, &o, &d);

	for (size_t i = 0; rc == 0 && i < sizeof(ranges) / sizeof(ranges[0]); i++)
		rc = vd_pwrite(d, wl->base + ranges[i][0], ranges[i][1], ranges[i][0]);
	if (rc < 0 || vd_close(d) < 0) {
		fprintf(stderr, "crashsim: preparing compact-diff: %s\n", vd_errmsg(d));
		exit(2);
	}
}

/* The images each operation starts from (made before the recording, not simulated). */
static void prepare_preserving(struct workload *wl)
{
	struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = SIZE, .block_size = 64u << 10};
	char p[4200], par[4200];
	struct vd_disk *d;
	int diff = strcmp(wl->name, "merge") == 0 || strcmp(wl->name, "compact-diff") == 0;

	plan(wl, 3, 5, 17);
	path_in(p, sizeof(p), work, diff ? "child.vhd" : "disk.vhd");
	path_in(par, sizeof(par), work, "parent.vhd");
	if (diff) {
		make_parent(wl);
		o.type = VD_TYPE_DIFFERENCING;
		o.parent = par;
	}
	if (vd_create(p, &o, &d) < 0 || vd_close(d) < 0) {
		fprintf(stderr, "crashsim: creating %s: %s\n", p, vd_errmsg(d));
		exit(2);
	}
	for (int e = 0; e < wl->nepochs; e++)
		if (write_epoch(wl, p, e) < 0) {
			fprintf(stderr, "crashsim: preparing %s: %s\n", wl->name, wl->err);
			exit(2);
		}
	if (strcmp(wl->name, "compact-diff") == 0)
		copy_parent_into(wl, p);
	else if (!diff)
		add_zeros(p);
	wl->leaf = diff ? "child.vhd" : "disk.vhd";
	capture(wl);
	wl->preserving = 1;
	plan_workload(wl);
}

/* The check that fits the workload, after DONE epochs (or steps) completed. */
static void check_any(struct workload *wl, int done, const char *what)
{
	if (strcmp(wl->name, "ckpt") == 0)
		check_ckpt(wl, done, what);
	else if (strcmp(wl->name, "setparent") == 0)
		check_setparent(wl, what);
	else if (wl->preserving)
		check_preserving(wl, what);
	else
		check_state(wl, done, what, 0);
}

/* Files the checkpoint and set-parent workloads start from (not simulated). */
static void prepare(struct workload *wl)
{
	struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = SIZE, .block_size = 64u << 10};
	char p[4200], c[4200], m[4200];
	struct vd_disk *d;

	plan_workload(wl);
	if (strcmp(wl->name, "discard") == 0) {
		struct vd_open_opts wo = {.flags = VD_OPEN_RDWR};

		path_in(p, sizeof(p), work, "disk.vhd");
		fill(wl->base, SIZE, 5);
		if (vd_create(p, &o, &d) < 0 || vd_close(d) < 0 || vd_open(p, &wo, &d) < 0 ||
		    vd_pwrite(d, wl->base, SIZE, 0) < 0 || vd_close(d) < 0) {
			fprintf(stderr, "crashsim: preparing discard: %s\n", vd_errmsg(d));
			exit(2);
		}
		return;
	}
	if (strcmp(wl->name, "ckpt") == 0) {
		path_in(p, sizeof(p), work, "disk.vhd");
		if (vd_create(p, &o, &d) < 0) {
			fprintf(stderr, "crashsim: %s\n", vd_errmsg(d));
			exit(2);
		}
		vd_close(d);
		return;
	}
	make_parent(wl);
	path_in(p, sizeof(p), work, "parent.vhd");
	path_in(c, sizeof(c), work, "child.vhd");
	path_in(m, sizeof(m), work, "moved.vhd");
	o.type = VD_TYPE_DIFFERENCING;
	o.parent = p;
	if (vd_create(c, &o, &d) < 0) {
		fprintf(stderr, "crashsim: %s\n", vd_errmsg(d));
		exit(2);
	}
	vd_close(d);
	if (write_epoch(wl, c, 0) < 0 || rename(p, m) < 0) {
		fprintf(stderr, "crashsim: preparing set-parent: %s\n", wl->err);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct workload wl = {0};
	char snap[4200];

	if (argc != 4 || (strcmp(argv[1], "power") && strcmp(argv[1], "fault"))) {
		fprintf(stderr, "usage: crashsim power|fault WORKLOAD DIR\n");
		return 2;
	}
	wl.name = argv[2];
	wl.leaf = strcmp(wl.name, "diff") == 0 ? "child.vhd" : "disk.vhd";
	wl.base = calloc(1, SIZE);
	snprintf(dir, sizeof(dir), "%s", argv[3]);
	snprintf(work, sizeof(work), "%s/w", dir);
	snprintf(scratch, sizeof(scratch), "%s/r", dir);
	snprintf(snap, sizeof(snap), "%s/s", dir);
	snprintf(logpath, sizeof(logpath), "%s/log", dir);
	mkdir(work, 0755);
	mkdir(scratch, 0755);
	mkdir(snap, 0755);
	if (strcmp(wl.name, "diff") == 0)
		make_parent(&wl);
	wl.discard = strcmp(wl.name, "discard") == 0;
	if (strcmp(wl.name, "ckpt") == 0 || strcmp(wl.name, "setparent") == 0 || wl.discard)
		prepare(&wl);
	if (is_preserving(wl.name))
		prepare_preserving(&wl);
	if (strcmp(wl.name, "ckpt") == 0 && strcmp(argv[1], "power") == 0) {
		/* The crash log holds image writes; renames of the manifest are not in it. */
		printf("crashsim power ckpt: crash points: 0, states checked: 0 (0 repaired "
		       "first), "
		       "failures: 0 (covered by fault mode: kill at every I/O)\n");
		free(wl.base);
		return 0;
	}
	copy_dir(work, snap);
	unlink(logpath);
	if (strcmp(argv[1], "power") == 0) {
		char spec[4300];

		snprintf(spec, sizeof(spec), "crash:log=%s", logpath);
		setenv("VDISK_ENGINE", spec, 1);
		if (run_workload(&wl) < 0) {
			fprintf(stderr, "crashsim: the workload failed: %s\n", wl.err);
			return 2;
		}
		unsetenv("VDISK_ENGINE");
		power(&wl, snap);
	} else {
		/*
		 * Every I/O point, until the fault lands past the workload's last I/O:
		 * 25 runs in a row that succeed (a failed read the library may survive,
		 * such as a retry, must not end the walk early).
		 */
		for (unsigned long n = 1, clean = 0; n <= 3000 && clean < 25; n++) {
			clean = fault_at(&wl, snap, n, n % 2 ? "ENOSPC" : "EIO") ? 0 : clean + 1;
			fault_at(&wl, snap, n, "kill");
		}
	}
	free(wl.base);
	free(recs);
	printf("crashsim %s %s: crash points: %lu, states checked: %lu (%lu repaired first), "
	       "failures: %lu\n",
	       argv[1], wl.name, points, states, repairs, failures);
	return failures ? 1 : 0;
}
