/*
 * Asynchronous requests, and the synchronous calls as waits on them: one path
 * for every read and write.
 *
 * A request is split where the driver's plan changes: bytes already in place
 * in the image file (a fixed disk, present sectors of an allocated block) go to
 * the I/O engine as they are, many in flight; zeros of a dynamic disk cost no
 * I/O; what needs metadata (a new block, new bits, the parent's bytes) runs
 * synchronously at submit, in order, so a write that allocates a block is
 * complete before any later request on that block is planned. A flush or a
 * discard first waits for every piece in flight (a barrier), so bits and BAT
 * entries are published only after the data they stand for is written.
 *
 * Completions are delivered by vd_aio_poll (never from inside vd_aio_submit):
 * a VMM drives a disk from one event loop by submitting and polling.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"

struct piece {
	struct vd_io_req io;
	struct vd_aio *req;
	struct vd_disk *disk;
};

static void finish(struct vd_disk *d, struct vd_aio *a)
{
	if (--a->pending_ > 0)
		return;
	a->next_ = NULL;
	if (d->aio_last)
		d->aio_last->next_ = a;
	else
		d->aio_done = a;
	d->aio_last = a;
}

static void fail(struct vd_aio *a, int rc)
{
	if (a->res == 0)
		a->res = rc;
}

/* From the engine's reap, under the handle's lock (vd_aio_poll or a drain). */
static void piece_done(struct vd_io_req *io, ssize_t res)
{
	struct piece *p = (struct piece *)io;
	struct vd_disk *d = p->disk;
	int rc = res < 0 ? (int)res : (size_t)res == io->len ? 0 : -EIO;

	if (rc < 0) {
		vd_error(d, rc, "data", io->offset, "%s of %zu bytes at offset %llu failed: %s",
			 io->op == VD_IO_READ ? "read" : "write", io->len,
			 (unsigned long long)io->offset, vd_strerror(rc));
		fail(p->req, rc);
	}
	/* A mirror copies again what was written while it read (see mirror.c). */
	if (io->op == VD_IO_WRITE && d->mirror)
		vd_mirror_mark_(d->mirror, p->req->offset, p->req->len);
	d->aio_inflight--;
	finish(d, p->req);
	free(p);
}

/* Bytes in place in the image file: straight to the engine. */
static int send_piece(struct vd_disk *d, struct vd_aio *a, int write, void *buf, size_t len,
		      uint64_t file_off)
{
	struct vd_file *f = &d->file;
	struct piece *p;
	int rc;

	/* O_DIRECT wants alignment; the file layer's bounce buffers handle the rest. */
	if (f->direct && (((uintptr_t)buf | len | file_off) & 4095))
		return write ? vd_file_pwrite(f, buf, len, file_off)
			     : vd_file_pread(f, buf, len, file_off);
	p = calloc(1, sizeof(*p));
	if (!p)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory");
	p->io = (struct vd_io_req){.op = write ? VD_IO_WRITE : VD_IO_READ,
				   .fd = f->fd,
				   .buf = buf,
				   .len = len,
				   .offset = file_off,
				   .done = piece_done};
	p->req = a;
	p->disk = d;
	a->pending_++;
	d->aio_inflight++;
	rc = f->eng->ops->submit(f->eng->state, &p->io);
	if (rc < 0) {
		d->aio_inflight--;
		a->pending_--;
		free(p);
	}
	return rc;
}

static int slow_piece(struct vd_disk *d, int write, uint8_t *buf, size_t len, uint64_t off)
{
	return write ? d->drv->pwrite(d->state, buf, len, off)
		     : vd_disk_slow_pread_(d, buf, len, off);
}

/* One piece a plan at a time, in order; the first error ends the split. */
static int split(struct vd_disk *d, struct vd_aio *a)
{
	int write = a->op == VD_AIO_WRITE;
	uint8_t *p = a->buf;
	uint64_t off = a->offset, left = a->len;
	int rc = 0;

	while (rc == 0 && left) {
		uint64_t file_off = 0, run = left;
		int kind = d->drv->plan ? d->drv->plan(d->state, write, off, left, &file_off, &run)
					: VD_PLAN_SLOW;

		if (run == 0 || run > left)
			run = left;
		if (kind == VD_PLAN_FILE)
			rc = send_piece(d, a, write, p, (size_t)run, file_off);
		else if (kind == VD_PLAN_ZERO && !write)
			memset(p, 0, (size_t)run);
		else
			rc = slow_piece(d, write, p, (size_t)run, off);
		p += run;
		off += run;
		left -= run;
	}
	return rc;
}

/* Reap until no piece of D is in flight. */
int vd_aio_drain_(struct vd_disk *d)
{
	while (d->aio_inflight > 0) {
		int rc = d->file.eng->ops->reap(d->file.eng->state, 1);

		if (rc < 0)
			return vd_error(d, rc, "", UINT64_MAX, "waiting for I/O failed: %s",
					vd_strerror(rc));
	}
	return 0;
}

static int start(struct vd_disk *d, struct vd_aio *a)
{
	int rc;

	switch (a->op) {
	case VD_AIO_READ:
	case VD_AIO_WRITE:
		rc = vd_disk_check_range_(d, a->len, a->offset,
					  a->op == VD_AIO_READ ? "read" : "write");
		if (rc == 0 && a->op == VD_AIO_WRITE)
			rc = vd_disk_writable_(d);
		return rc;
	case VD_AIO_DISCARD:
		rc = vd_disk_check_range_(d, a->len, a->offset, "discard");
		return rc == 0 ? vd_disk_writable_(d) : rc;
	case VD_AIO_FLUSH:
		return d->drv ? 0 : vd_error(d, -EBADF, "", UINT64_MAX, "disk is not open");
	}
	return vd_error(d, -EINVAL, "", UINT64_MAX, "unknown request type %d", a->op);
}

int vd_aio_submit(struct vd_disk *d, struct vd_aio *a)
{
	int rc;

	pthread_mutex_lock(&d->lock);
	rc = start(d, a);
	if (rc < 0) {
		pthread_mutex_unlock(&d->lock);
		return rc;
	}
	a->res = 0;
	a->complete = 0;
	a->pending_ = 1; /* held until every piece has been sent */
	if (a->op == VD_AIO_READ || a->op == VD_AIO_WRITE)
		rc = split(d, a);
	else if ((rc = vd_aio_drain_(d)) == 0)
		rc = a->op == VD_AIO_FLUSH ? vd_disk_flush_(d)
					   : vd_disk_discard_(d, a->offset, a->len);
	if ((a->op == VD_AIO_WRITE || a->op == VD_AIO_DISCARD) && d->mirror && a->len)
		vd_mirror_mark_(d->mirror, a->offset, a->len); /* even a failed write may land */
	if (rc < 0)
		fail(a, rc);
	finish(d, a);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* Run the callbacks of completed requests; returns how many. */
static int deliver(struct vd_disk *d)
{
	int n = 0;

	while (d->aio_done) {
		struct vd_aio *a = d->aio_done;

		d->aio_done = a->next_;
		if (!d->aio_done)
			d->aio_last = NULL;
		a->complete = 1;
		n++;
		if (a->done)
			a->done(a, a->res); /* may submit more: the lock is recursive */
	}
	return n;
}

int vd_aio_poll(struct vd_disk *d, unsigned min)
{
	int n, rc = 0;

	pthread_mutex_lock(&d->lock);
	n = deliver(d);
	while (rc >= 0 && (unsigned)n < min && d->aio_inflight > 0) {
		rc = d->file.eng->ops->reap(d->file.eng->state, 1);
		n += deliver(d);
	}
	if (rc >= 0) /* whatever else completed meanwhile */
		rc = d->aio_inflight ? d->file.eng->ops->reap(d->file.eng->state, 0) : 0;
	n += deliver(d);
	pthread_mutex_unlock(&d->lock);
	return rc < 0 ? rc : n;
}

unsigned vd_aio_inflight(struct vd_disk *d)
{
	unsigned n;

	pthread_mutex_lock(&d->lock);
	n = d->aio_inflight;
	pthread_mutex_unlock(&d->lock);
	return n;
}

/* ---- the synchronous calls: submit, then poll until this request is complete ---- */

/* The handle stays locked throughout: synchronous calls are one at a time, as before. */
static int run(struct vd_disk *d, int op, void *buf, size_t len, uint64_t offset)
{
	struct vd_aio a = {.op = op, .buf = buf, .len = len, .offset = offset};
	int rc;

	pthread_mutex_lock(&d->lock);
	rc = vd_aio_submit(d, &a);
	while (rc == 0 && !a.complete)
		rc = vd_aio_poll(d, 1) < 0 ? -EIO : 0;
	pthread_mutex_unlock(&d->lock);
	return rc < 0 ? rc : a.res;
}

int vd_pread(struct vd_disk *d, void *buf, size_t len, uint64_t offset)
{
	return run(d, VD_AIO_READ, buf, len, offset);
}

int vd_pwrite(struct vd_disk *d, const void *buf, size_t len, uint64_t offset)
{
	/* Only an engine's write path reads BUF; nothing writes through it. */
	return run(d, VD_AIO_WRITE, (void *)buf, len, offset);
}

int vd_discard(struct vd_disk *d, uint64_t offset, uint64_t len)
{
	return run(d, VD_AIO_DISCARD, NULL, (size_t)len, offset);
}

int vd_flush(struct vd_disk *d)
{
	return run(d, VD_AIO_FLUSH, NULL, 0, 0);
}
