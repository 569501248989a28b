/*
 * Online copy (mirror) of a disk that another thread keeps writing through
 * its handle: what storage migration needs.
 *
 * A background thread copies what the source holds, while every write and
 * discard on the source handle marks its granules dirty (vd_pwrite calls
 * vd_mirror_mark_ under the handle's lock). Later passes copy the dirty
 * granules again, until little is left ("ready"). The switch-over holds the
 * source's lock (its writers wait), copies the rest, makes the copy durable and
 * hands it over; the source then refuses writes. Reads of the source and the
 * marking of writes happen under the same lock, so a granule is either copied
 * after a write or marked by it: nothing written is missed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vdisk_int.h"

#define COPY_BYTES (1u << 20)

struct vd_mirror {
	struct vd_disk *src, *dst;
	char *dst_path;
	pthread_t th;
	int started;
	uint64_t gran, ngran, size;
	uint64_t *dirty, *snap; /* bit per granule; DIRTY under src->lock */
	uint64_t ndirty;	/* set bits in DIRTY, under src->lock */
	uint64_t ready_bytes;
	pthread_mutex_t mu; /* guards ST, STOP, RC, MSG */
	struct vd_mirror_status st;
	int stop, rc;
	char msg[1024];
	uint8_t *buf;
};

static int fail(struct vd_mirror *m, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct vd_mirror *m, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&m->mu);
	if (!m->msg[0]) {
		va_start(ap, fmt);
		vsnprintf(m->msg, sizeof(m->msg), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&m->mu);
	return rc;
}

void vd_mirror_mark_(struct vd_mirror *m, uint64_t off, uint64_t len)
{
	uint64_t g = off / m->gran, last = (off + len - 1) / m->gran;

	for (; g <= last && g < m->ngran; g++)
		if (!(m->dirty[g / 64] & (1ull << (g % 64)))) {
			m->dirty[g / 64] |= 1ull << (g % 64);
			m->ndirty++;
		}
}

static int stopping(struct vd_mirror *m)
{
	int stop;

	pthread_mutex_lock(&m->mu);
	stop = m->stop;
	pthread_mutex_unlock(&m->mu);
	return stop;
}

static void count(struct vd_mirror *m, uint64_t copied, int pass_done)
{
	pthread_mutex_lock(&m->mu);
	m->st.copied_bytes += copied;
	m->st.passes += (unsigned)pass_done;
	pthread_mutex_unlock(&m->mu);
}

/*
 * Copy [OFF, OFF+LEN) from the source. FRESH: the copy still reads zeros there
 * (first pass), so zeros need not be written; later, zeros are a discard.
 */
static int copy_range(struct vd_mirror *m, uint64_t off, uint64_t len, int fresh)
{
	int rc = 0;

	while (rc == 0 && len) {
		size_t n = len < COPY_BYTES ? (size_t)len : COPY_BYTES;
		int zero;

		rc = vd_pread(m->src, m->buf, n, off);
		if (rc < 0)
			return fail(m, rc, "%s", vd_errmsg(m->src));
		zero = vd_is_zero(m->buf, n);
		if (!zero)
			rc = vd_pwrite(m->dst, m->buf, n, off);
		else if (!fresh)
			rc = vd_discard(m->dst, off, n);
		if (rc < 0)
			return fail(m, rc, "%s", vd_errmsg(m->dst));
		count(m, n, 0);
		off += n;
		len -= n;
	}
	return rc;
}

/* Pass 1: everything some layer of the source holds. */
static int first_pass(struct vd_mirror *m)
{
	uint64_t off = 0, run;
	int rc = 0;

	while (rc == 0 && off < m->size && !stopping(m)) {
		int kind = vd_map(m->src, off, m->size - off, &run);

		if (kind < 0)
			return fail(m, kind, "%s", vd_errmsg(m->src));
		if (kind == VD_EXTENT_ALLOCATED) {
			run = run < 16 * COPY_BYTES ? run : 16 * COPY_BYTES; /* check STOP often */
			rc = copy_range(m, off, run, 1);
		}
		off += run;
	}
	count(m, 0, 1);
	return rc;
}

/* Take the dirty set (under the source's lock) and copy it. */
static int dirty_pass(struct vd_mirror *m)
{
	size_t words = (size_t)((m->ngran + 63) / 64);
	int rc = 0;

	pthread_mutex_lock(&m->src->lock);
	memcpy(m->snap, m->dirty, words * 8);
	memset(m->dirty, 0, words * 8);
	m->ndirty = 0;
	pthread_mutex_unlock(&m->src->lock);
	for (uint64_t g = 0; rc == 0 && g < m->ngran;) {
		uint64_t end = g;

		if (!(m->snap[g / 64] & (1ull << (g % 64)))) {
			g++;
			continue;
		}
		while (end < m->ngran && (m->snap[end / 64] & (1ull << (end % 64))) &&
		       (end - g) * m->gran < COPY_BYTES)
			end++;
		rc = copy_range(m, g * m->gran,
				(end * m->gran < m->size ? end * m->gran : m->size) - g * m->gran,
				0);
		g = end;
	}
	count(m, 0, 1);
	return rc;
}

static uint64_t dirty_bytes(struct vd_mirror *m)
{
	uint64_t n;

	pthread_mutex_lock(&m->src->lock);
	n = m->ndirty * m->gran;
	pthread_mutex_unlock(&m->src->lock);
	return n;
}

static void set_ready(struct vd_mirror *m, uint64_t left)
{
	pthread_mutex_lock(&m->mu);
	m->st.dirty_bytes = left;
	if (left <= m->ready_bytes)
		m->st.ready = 1;
	pthread_mutex_unlock(&m->mu);
}

/* Copy, then keep copying what is written, until told to stop. */
static void *mirror_main(void *arg)
{
	struct vd_mirror *m = arg;
	int rc = first_pass(m);

	while (rc == 0 && !stopping(m)) {
		uint64_t left = dirty_bytes(m);

		set_ready(m, left);
		if (left == 0) {
			usleep(1000); /* converged: wait for writes or the switch-over */
			continue;
		}
		rc = dirty_pass(m);
	}
	pthread_mutex_lock(&m->mu);
	m->rc = rc;
	m->st.error = rc;
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

static void stop_thread(struct vd_mirror *m)
{
	if (!m->started)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = 1;
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->th, NULL);
	m->started = 0;
}

static void mirror_free(struct vd_mirror *m)
{
	pthread_mutex_destroy(&m->mu);
	free(m->dirty);
	free(m->snap);
	free(m->buf);
	free(m->dst_path);
	free(m);
}

static char *message(int rc, const char *msg)
{
	return strdup(msg && *msg ? msg : vd_strerror(rc));
}

static int create_copy(struct vd_mirror *m, const struct vd_mirror_opts *o)
{
	struct vd_create_opts co = {.type = o->type, .block_size = o->block_size};
	struct vd_info si;
	int rc;

	vd_get_info(m->src, &si);
	if (co.type == VD_TYPE_NONE)
		co.type = si.type == VD_TYPE_FIXED && strcmp(si.format, "vhd") == 0
				  ? VD_TYPE_FIXED
				  : VD_TYPE_DYNAMIC;
	if (!co.block_size)
		co.block_size = si.block_size;
	co.size = si.virtual_size;
	co.uuid = si.uuid; /* the same disk, moved */
	rc = vd_create(m->dst_path, &co, &m->dst);
	if (rc < 0) {
		fail(m, rc, "%s", vd_errmsg(m->dst));
		vd_close(m->dst);
		m->dst = NULL;
	}
	return rc;
}

int vd_mirror_start(struct vd_disk *src, const char *dst, const struct vd_mirror_opts *opts,
		    struct vd_mirror **out, char **errmsg)
{
	struct vd_mirror_opts none = {0};
	struct vd_mirror *m = calloc(1, sizeof(*m));
	int rc = 0;

	*out = NULL;
	if (errmsg)
		*errmsg = NULL;
	if (!opts)
		opts = &none;
	if (!m || !(m->dst_path = strdup(dst))) {
		free(m);
		if (errmsg)
			*errmsg = message(-ENOMEM, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->mu, NULL);
	m->src = src;
	m->size = src->virtual_size;
	m->gran = opts->granule ? opts->granule : 64u << 10;
	m->ngran = (m->size + m->gran - 1) / m->gran;
	m->ready_bytes = opts->ready_bytes ? opts->ready_bytes : 4u << 20;
	m->dirty = calloc((size_t)(m->ngran + 63) / 64, 8);
	m->snap = calloc((size_t)(m->ngran + 63) / 64, 8);
	m->buf = malloc(COPY_BYTES);
	if (!m->dirty || !m->snap || !m->buf)
		rc = fail(m, -ENOMEM, "out of memory");
	if (rc == 0 && m->gran % 512)
		rc = fail(m, -EINVAL, "the mirror granule must be a multiple of 512 bytes");
	if (rc == 0 && src->mirror)
		rc = fail(m, -EBUSY, "%s: a mirror of this disk is already running", src->path);
	if (rc == 0)
		rc = create_copy(m, opts);
	if (rc == 0) {
		pthread_mutex_lock(&src->lock);
		src->mirror = m; /* from here on, every write is marked */
		pthread_mutex_unlock(&src->lock);
		if (pthread_create(&m->th, NULL, mirror_main, m) != 0)
			rc = fail(m, -EAGAIN, "cannot start the mirror thread");
		else
			m->started = 1;
	}
	if (rc < 0) {
		if (errmsg)
			*errmsg = message(rc, m->msg);
		vd_mirror_cancel(m);
		return rc;
	}
	*out = m;
	return 0;
}

int vd_mirror_status(struct vd_mirror *m, struct vd_mirror_status *st)
{
	pthread_mutex_lock(&m->mu);
	*st = m->st;
	pthread_mutex_unlock(&m->mu);
	if (!st->error)
		st->dirty_bytes = dirty_bytes(m);
	return st->error;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Under the source's lock: its writers wait until the copy has everything. */
static int switch_over(struct vd_mirror *m)
{
	uint64_t t0, before;
	int rc;

	t0 = now_ns();
	pthread_mutex_lock(&m->src->lock);
	before = m->st.copied_bytes;
	/* Writes still in flight land (and are marked) before the last pass. */
	rc = vd_aio_drain_(m->src);
	if (rc == 0)
		rc = dirty_pass(m);
	if (rc == 0 && (rc = vd_flush(m->dst)) < 0)
		fail(m, rc, "%s", vd_errmsg(m->dst));
	if (rc == 0 && !(m->src->switched_to = strdup(m->dst_path)))
		rc = fail(m, -ENOMEM, "out of memory");
	if (rc == 0)
		m->src->mirror = NULL;
	pthread_mutex_unlock(&m->src->lock);
	m->st.switchover_ns = now_ns() - t0;
	m->st.switchover_bytes = m->st.copied_bytes - before;
	return rc;
}

int vd_mirror_complete(struct vd_mirror *m, struct vd_disk **dstp, struct vd_mirror_status *st,
		       char **errmsg)
{
	int rc;

	*dstp = NULL;
	if (errmsg)
		*errmsg = NULL;
	stop_thread(m);
	rc = m->rc;
	/* The bulk durable before the source is held, so the hold stays short. */
	if (rc == 0 && (rc = vd_flush(m->dst)) < 0)
		fail(m, rc, "%s", vd_errmsg(m->dst));
	if (rc == 0)
		rc = switch_over(m);
	if (st)
		*st = m->st;
	if (rc < 0) {
		if (errmsg)
			*errmsg = message(rc, m->msg);
		vd_mirror_cancel(m);
		return rc;
	}
	*dstp = m->dst;
	mirror_free(m);
	return 0;
}

void vd_mirror_cancel(struct vd_mirror *m)
{
	if (!m)
		return;
	stop_thread(m);
	pthread_mutex_lock(&m->src->lock);
	if (m->src->mirror == m)
		m->src->mirror = NULL;
	pthread_mutex_unlock(&m->src->lock);
	if (m->dst) {
		vd_close(m->dst);
		unlink(m->dst_path); /* an incomplete copy must not pass for the disk */
	}
	mirror_free(m);
}
