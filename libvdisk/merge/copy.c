/*
 * Offline copy and convert (vd_copy): a disk's content, a chain's flattened,
 * into a new raw, fixed or dynamic image.
 *
 * Speed: a reader thread fills the next buffers while this thread writes the
 * last ones, so reading and writing overlap as in `cp`; only runs some layer
 * holds are read (the map skips the rest, and holes of raw files are found
 * with SEEK_HOLE); all-zero pieces are not written, so a dynamic copy holds
 * only blocks with data and a raw copy is sparse.
 *
 * Safety: the copy is made under DST.vdcopy-PID and renamed to DST only once
 * durable, so DST never names a partial copy, whatever stops the copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "vdisk_int.h"

#define SLOTS 4
#define CHUNK (4u << 20)
#define FILE_PIECE 4096u /* zero-skip grain */

struct slot {
	uint64_t off;
	size_t len;
	uint8_t *buf;
};

/* A ring of SLOTS buffers: the reader fills at HEAD, the writer empties at TAIL. */
struct pipeline {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct slot s[SLOTS];
	unsigned head, tail; /* counts; slot i is s[i % SLOTS] */
	int eof, stop, rc;   /* reader done; writer gave up; reader's error */
	struct vd_disk *src;
	uint64_t size, chunk;
};

struct copier {
	struct vd_disk *src, *dst;
	const struct vd_copy_opts *o;
	struct vd_copy_result *res;
	uint64_t piece;
	const char *final; /* DST, the name the copy gets */
	char *tmp;
	char msg[1024];
};

static int say(struct copier *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int say(struct copier *c, int rc, const char *fmt, ...)
{
	va_list ap;

	if (c->msg[0])
		return rc;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- the reader thread ---- */

static int next_free(struct pipeline *p)
{
	pthread_mutex_lock(&p->mu);
	while (p->head - p->tail == SLOTS && !p->stop)
		pthread_cond_wait(&p->cv, &p->mu);
	pthread_mutex_unlock(&p->mu);
	return p->stop ? -ECANCELED : 0;
}

static void publish(struct pipeline *p, int eof, int rc)
{
	pthread_mutex_lock(&p->mu);
	if (eof) {
		p->eof = 1;
		p->rc = rc;
	} else {
		p->head++;
	}
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Reads LEN bytes at OFF in chunks that never straddle a chunk boundary. */
static int read_run(struct pipeline *p, uint64_t off, uint64_t len)
{
	while (len) {
		struct slot *s = &p->s[p->head % SLOTS];
		uint64_t n = p->chunk - off % p->chunk;
		int rc = next_free(p);

		if (rc < 0)
			return rc;
		s->off = off;
		s->len = (size_t)(n < len ? n : len);
		rc = vd_pread(p->src, s->buf, s->len, off);
		if (rc < 0)
			return rc;
		publish(p, 0, 0);
		off += s->len;
		len -= s->len;
	}
	return 0;
}

static void *reader(void *arg)
{
	struct pipeline *p = arg;
	uint64_t off = 0, run;
	int rc = 0;

	while (rc == 0 && off < p->size) {
		int kind = vd_map(p->src, off, p->size - off, &run);

		if (kind < 0)
			rc = kind;
		else if (kind == VD_EXTENT_ALLOCATED)
			rc = read_run(p, off, run);
		off += run;
	}
	publish(p, 1, rc);
	return NULL;
}

/* ---- the writer (the caller's thread) ---- */

/* Bytes from AT to the end of its piece (or of the slot). */
static size_t piece_len(const struct copier *c, const struct slot *s, size_t at)
{
	size_t n = (size_t)(c->piece - (s->off + at) % c->piece);

	return n < s->len - at ? n : s->len - at;
}

/* The runs of non-zero pieces of S. */
static int write_slot(struct copier *c, const struct slot *s)
{
	size_t at = 0, end;

	while (at < s->len) {
		while (at < s->len && vd_is_zero(s->buf + at, piece_len(c, s, at)))
			at += piece_len(c, s, at);
		for (end = at; end < s->len && !vd_is_zero(s->buf + end, piece_len(c, s, end));)
			end += piece_len(c, s, end);
		if (end > at) {
			int rc = vd_pwrite(c->dst, s->buf + at, end - at, s->off + at);

			if (rc < 0)
				return rc;
			c->res->written_bytes += end - at;
		}
		at = end;
	}
	return 0;
}

static int drain(struct copier *c, struct pipeline *p)
{
	int rc = 0;

	for (;;) {
		struct slot *s;

		pthread_mutex_lock(&p->mu);
		while (p->tail == p->head && !p->eof)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->tail == p->head) {
			pthread_mutex_unlock(&p->mu);
			return p->rc < 0 ? say(c, p->rc, "%s", vd_errmsg(c->src)) : 0;
		}
		s = &p->s[p->tail % SLOTS];
		pthread_mutex_unlock(&p->mu);
		if (c->o->cancel && *c->o->cancel)
			return say(c, -ECANCELED, "%s: interrupted; nothing was left behind",
				   c->final);
		rc = write_slot(c, s);
		if (rc < 0)
			return say(c, rc, "%s", vd_errmsg(c->dst));
		c->res->data_bytes += s->len;
		if (c->o->progress)
			c->o->progress(c->o->ctx, s->off + s->len, p->size);
		pthread_mutex_lock(&p->mu);
		p->tail++;
		pthread_cond_broadcast(&p->cv);
		pthread_mutex_unlock(&p->mu);
	}
}

static int run_pipeline(struct copier *c, uint64_t size)
{
	struct pipeline p = {.src = c->src, .size = size};
	pthread_t th;
	int rc = 0, n = 0;

	p.chunk = c->piece > CHUNK ? c->piece : CHUNK;
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	for (n = 0; n < SLOTS && rc == 0; n++)
		if (!(p.s[n].buf = malloc(p.chunk)))
			rc = say(c, -ENOMEM, "out of memory for copy buffers");
	if (rc == 0 && pthread_create(&th, NULL, reader, &p) != 0)
		rc = say(c, -EAGAIN, "cannot start the reader thread");
	else if (rc == 0) {
		rc = drain(c, &p);
		pthread_mutex_lock(&p.mu);
		p.stop = 1; /* a writer error: the reader stops at its next buffer */
		pthread_cond_broadcast(&p.cv);
		pthread_mutex_unlock(&p.mu);
		pthread_join(th, NULL);
	}
	for (int i = 0; i < n; i++)
		free(p.s[i].buf);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	return rc;
}

/* ---- space, names, the whole copy ---- */

/* Bytes the copy needs on disk: a walk of the source map, no data read. */
static int space_needed(struct copier *c, const struct vd_create_opts *co, uint64_t *need)
{
	uint64_t bs = co->block_size ? co->block_size : (2u << 20), off = 0, run, data = 0;
	uint64_t touched = 0, next = 0, size = c->src->virtual_size;

	if (co->type == VD_TYPE_FIXED && (!co->format || strcmp(co->format, "raw"))) {
		*need = size + 512;
		return 0;
	}
	while (off < size) {
		int kind = vd_map(c->src, off, size - off, &run);

		if (kind < 0)
			return say(c, kind, "%s", vd_errmsg(c->src));
		if (kind == VD_EXTENT_ALLOCATED) {
			uint64_t first = off / bs > next ? off / bs : next,
				 last = (off + run - 1) / bs;

			data += run;
			touched += last >= first ? last - first + 1 : 0;
			next = last + 1;
		}
		off += run;
	}
	if (co->format && strcmp(co->format, "raw") == 0)
		*need = data;
	else /* footer copy, header, BAT, blocks with their bitmaps, footer */
		*need = 2048 + ((size + bs - 1) / bs * 4 + 511) / 512 * 512 +
			touched * (bs + ((bs / 512 + 7) / 8 + 511) / 512 * 512 + 4096);
	return 0;
}

static int check_space(struct copier *c, const char *dst, const struct vd_create_opts *co)
{
	char *copy = strdup(dst), need_s[32], free_s[32];
	struct statvfs vfs;
	uint64_t need = 0, avail;
	int rc = copy ? space_needed(c, co, &need) : say(c, -ENOMEM, "out of memory");

	if (rc == 0 && statvfs(dirname(copy), &vfs) == 0) {
		avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		if (need > avail) {
			vd_human_size(need, need_s, sizeof(need_s));
			vd_human_size(avail, free_s, sizeof(free_s));
			rc = say(c, -ENOSPC,
				 "%s: needs %s, %s free on %s; free some space or choose another "
				 "place",
				 dst, need_s, free_s, copy);
		}
	}
	free(copy);
	return rc;
}

/* What the new image is: the caller's choices, else the source's kind. */
static void output_opts(struct copier *c, struct vd_create_opts *co, uint8_t uuid[16])
{
	struct vd_info si;

	memset(co, 0, sizeof(*co));
	vd_get_info(c->src, &si);
	co->format = c->o->format;
	co->type = c->o->type;
	if (co->type == VD_TYPE_NONE)
		co->type = si.type == VD_TYPE_FIXED && !strcmp(si.format, "vhd") ? VD_TYPE_FIXED
										 : VD_TYPE_DYNAMIC;
	if (co->format && strcmp(co->format, "raw") == 0)
		co->type = VD_TYPE_FIXED;
	co->block_size = c->o->block_size ? c->o->block_size : si.block_size;
	co->compat = c->o->compat;
	co->size = si.virtual_size;
	if (c->o->keep_uuid) {
		memcpy(uuid, si.uuid, 16);
		co->uuid = uuid;
	}
	c->res->size = si.virtual_size;
	c->res->chain_length = si.chain_length;
}

/* The copy is durable: give it its name (never over a file that appeared meanwhile). */
static int publish_copy(struct copier *c, const char *dst)
{
	char *copy = strdup(dst);
	int rc = 0, fd;

	if (renameat2(AT_FDCWD, c->tmp, AT_FDCWD, dst, RENAME_NOREPLACE) < 0)
		rc = errno == EEXIST ? say(c, -EEXIST,
					   "%s: file exists; remove it or choose another name", dst)
				     : say(c, -errno, "%s: cannot rename %s into place: %s", dst,
					   c->tmp, strerror(errno));
	fd = rc == 0 && copy ? open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	free(copy);
	return rc;
}

static int open_source(struct copier *c, const char *src)
{
	struct vd_open_opts so = {.flags = VD_OPEN_RDONLY, .checkpoint = c->o->checkpoint};
	int rc;

	if (c->o->image_only)
		so.flags |= VD_OPEN_IMAGE_ONLY;
	rc = vd_open(src, &so, &c->src);
	return rc < 0 ? say(c, rc, "%s", vd_errmsg(c->src)) : 0;
}

static int do_copy(struct copier *c, const char *src, const char *dst)
{
	struct vd_create_opts co;
	struct vd_info di;
	uint8_t uuid[16];
	struct stat st;
	size_t n = strlen(dst) + 32;
	int rc;

	if (lstat(dst, &st) == 0)
		return say(c, -EEXIST, "%s: file exists; remove it or choose another name", dst);
	rc = open_source(c, src);
	if (rc < 0)
		return rc;
	output_opts(c, &co, uuid);
	if ((rc = check_space(c, dst, &co)) < 0)
		return rc;
	if (!(c->tmp = malloc(n)))
		return say(c, -ENOMEM, "out of memory");
	snprintf(c->tmp, n, "%s.vdcopy-%ld", dst, (long)getpid());
	rc = vd_create(c->tmp, &co, &c->dst);
	if (rc < 0)
		return say(c, rc, "%s: %s", dst, vd_errmsg_bare(c->dst));
	/*
	 * Zeros are skipped 4 KiB at a time, inside blocks too: a new block of a
	 * dynamic copy reads as zeros wherever nothing was written (it is fresh file
	 * space, all bits set), so only data is written, as cp does. A block that
	 * holds only zeros is never touched, hence never allocated.
	 */
	c->piece = FILE_PIECE;
	if (vd_get_info(c->dst, &di) == 0 && di.block_size && di.block_size < FILE_PIECE &&
	    co.type == VD_TYPE_DYNAMIC)
		c->piece = di.block_size;
	rc = run_pipeline(c, c->src->virtual_size < di.virtual_size ? c->src->virtual_size
								    : di.virtual_size);
	if (rc == 0 && (rc = vd_flush(c->dst)) < 0)
		say(c, rc, "%s", vd_errmsg(c->dst));
	if (vd_close(c->dst) < 0 && rc == 0)
		rc = say(c, -EIO, "%s: closing the copy failed", dst);
	c->dst = NULL;
	return rc == 0 ? publish_copy(c, dst) : rc;
}

int vd_copy(const char *src, const char *dst, const struct vd_copy_opts *opts,
	    struct vd_copy_result *result, char **errmsg)
{
	struct vd_copy_opts none = {0};
	struct vd_copy_result res = {0};
	struct copier c = {.o = opts ? opts : &none, .res = &res, .final = dst};
	int rc = do_copy(&c, src, dst);

	if (c.dst)
		vd_close(c.dst);
	vd_close(c.src);
	if (c.tmp) {
		unlink(c.tmp); /* gone after the rename; a partial copy is removed */
		free(c.tmp);
	}
	if (rc < 0 && strncmp(c.msg, src, strlen(src)) && strncmp(c.msg, dst, strlen(dst))) {
		char named[sizeof(c.msg) + VD_PATH_MAX + 8];

		/* Every message names the file it is about. */
		snprintf(named, sizeof(named), "%s: %s", dst, c.msg[0] ? c.msg : vd_strerror(rc));
		snprintf(c.msg, sizeof(c.msg), "%.*s", (int)sizeof(c.msg) - 1, named);
	}
	if (errmsg)
		*errmsg = rc < 0 ? strdup(c.msg[0] ? c.msg : vd_strerror(rc)) : NULL;
	if (result)
		*result = res;
	return rc;
}
