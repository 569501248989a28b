/*
 * The libaio engine (Linux native AIO): up to DEPTH requests (spec
 * "libaio[:depth=N]", default 128, less when the machine's AIO budget runs
 * short) in the kernel, handed over in one io_submit at reap; more wait in a
 * queue. Short transfers are resubmitted for the rest. A flush is a barrier as
 * in the io_uring engine; where the kernel refuses IOCB_CMD_FDSYNC (before
 * 4.18, or a file system without it) the flush runs fdatasync() in the
 * caller's thread once nothing is in flight. */
#include <errno.h>
#include <libaio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk_int.h"

#define AIO_DEFAULT_DEPTH 128
#define AIO_MAX_DEPTH 4096

struct aio {
	io_context_t ctx;
	unsigned depth;
	unsigned inflight;  /* in the batch or the kernel, not yet done */
	unsigned in_kernel; /* accepted by io_submit */
	int barrier;	    /* a flush is in flight */
	int no_fdsync;	    /* the kernel refused IOCB_CMD_FDSYNC once */
	struct iocb *iocbs;
	struct iocb **free_iocbs;
	unsigned nfree;
	struct iocb **batch; /* prepared, not yet given to io_submit */
	unsigned nbatch;
	struct io_event *events;
	struct vd_io_req *wait_head, *wait_tail; /* submitted, no iocb yet */
	struct vd_io_req *done_head, *done_tail; /* finished outside the kernel */
};

static void req_append(struct vd_io_req **head, struct vd_io_req **tail, struct vd_io_req *req)
{
	req->next = NULL;
	if (*tail)
		(*tail)->next = req;
	else
		*head = req;
	*tail = req;
}

static struct vd_io_req *req_pop(struct vd_io_req **head, struct vd_io_req **tail)
{
	struct vd_io_req *req = *head;

	*head = req->next;
	if (!*head)
		*tail = NULL;
	return req;
}

static const char *aio_hint(int rc)
{
	if (rc == -EAGAIN)
		return " (fs.aio-max-nr reached? try libaio:depth=32)";
	if (rc == -ENOSYS || rc == -EPERM)
		return " (kernel without AIO, or a seccomp filter?)";
	return "";
}

/*
 * AIO contexts are a machine-wide budget (fs.aio-max-nr, 65536 events: about
 * 256 contexts of depth 128), shared with every other process and spent once
 * per open image, parents included. When it runs short, a smaller context
 * still works: requests beyond its depth wait in our queue.
 */
static int aio_setup(struct aio *a)
{
	int rc;

	for (;;) {
		rc = io_setup((int)a->depth, &a->ctx); /* libaio returns -errno */
		if (rc != -EAGAIN || a->depth <= 8)
			return rc;
		a->depth /= 2;
	}
}

static int aio_alloc(struct aio *a)
{
	a->iocbs = calloc(a->depth, sizeof(*a->iocbs));
	a->free_iocbs = calloc(a->depth, sizeof(*a->free_iocbs));
	a->batch = calloc(a->depth, sizeof(*a->batch));
	a->events = calloc(a->depth, sizeof(*a->events));
	if (!a->iocbs || !a->free_iocbs || !a->batch || !a->events)
		return -ENOMEM;
	for (unsigned i = 0; i < a->depth; i++)
		a->free_iocbs[i] = &a->iocbs[i];
	a->nfree = a->depth;
	return 0;
}

static void aio_fini(void *state)
{
	struct aio *a = state;

	if (a->ctx)
		io_destroy(a->ctx);
	a->ctx = 0;
	free(a->iocbs);
	free(a->free_iocbs);
	free(a->batch);
	free(a->events);
}

static int aio_init(void *state, const char *options, const char *path, char *err, size_t errlen)
{
	struct aio *a = state;
	char v[32] = "";
	int rc;

	(void)path;
	a->depth = AIO_DEFAULT_DEPTH;
	if (vd_io_option(options, "depth", v, sizeof(v)))
		a->depth = (unsigned)strtoul(v, NULL, 10);
	if (a->depth < 1 || a->depth > AIO_MAX_DEPTH) {
		snprintf(err, errlen, "libaio: depth must be 1..%d, not '%s'", AIO_MAX_DEPTH, v);
		return -EINVAL;
	}
	rc = aio_setup(a);
	if (rc == 0)
		rc = aio_alloc(a);
	if (rc < 0) {
		a->ctx = 0;
		snprintf(err, errlen, "libaio: io_setup: %s%s", strerror(-rc), aio_hint(rc));
		aio_fini(a);
		return rc;
	}
	return 0;
}

/* Prepare REQ's remaining part (past the req->res bytes already moved) in IOCB. */
static void aio_prep(struct aio *a, struct vd_io_req *req, struct iocb *iocb)
{
	size_t done = (size_t)req->res;

	if (req->op == VD_IO_FSYNC)
		io_prep_fdsync(iocb, req->fd);
	else if (req->op == VD_IO_READ)
		io_prep_pread(iocb, req->fd, (char *)req->buf + done, req->len - done,
			      (long long)(req->offset + done));
	else
		io_prep_pwrite(iocb, req->fd, (char *)req->buf + done, req->len - done,
			       (long long)(req->offset + done));
	iocb->data = req;
	a->batch[a->nbatch++] = iocb;
}

static void aio_finish(struct aio *a, struct vd_io_req *req, struct iocb *iocb, ssize_t res)
{
	if (req->op == VD_IO_FSYNC)
		a->barrier = 0;
	a->inflight--;
	a->free_iocbs[a->nfree++] = iocb;
	req->res = res;
	req->done(req, res);
}

/* A flush the kernel cannot take: everything before it is complete, so fdatasync now. */
static void aio_sync_flush(struct aio *a, struct vd_io_req *req, struct iocb *iocb)
{
	int rc;

	do
		rc = fdatasync(req->fd) < 0 ? -errno : 0;
	while (rc == -EINTR);
	a->barrier = 0;
	a->inflight--;
	a->free_iocbs[a->nfree++] = iocb;
	req->res = rc;
	req_append(&a->done_head, &a->done_tail, req);
}

/* Move waiting requests into the batch while iocbs are free and no barrier holds them. */
static void aio_issue(struct aio *a)
{
	while (a->wait_head && !a->barrier && a->nfree > 0) {
		struct vd_io_req *req = a->wait_head;
		struct iocb *iocb;

		if (req->op == VD_IO_FSYNC && a->inflight > 0)
			break; /* a flush covers what completed before it started */
		req_pop(&a->wait_head, &a->wait_tail);
		iocb = a->free_iocbs[--a->nfree];
		req->res = 0;
		a->inflight++;
		if (req->op == VD_IO_FSYNC && a->no_fdsync) {
			aio_sync_flush(a, req, iocb);
			continue;
		}
		if (req->op == VD_IO_FSYNC)
			a->barrier = 1;
		aio_prep(a, req, iocb);
	}
}

static int aio_submit(void *state, struct vd_io_req *req)
{
	struct aio *a = state;

	req_append(&a->wait_head, &a->wait_tail, req);
	aio_issue(a);
	return 0;
}

/* io_submit refused the batch's first iocb with RC: complete it (or fall back). */
static void aio_refused(struct aio *a, int rc)
{
	struct iocb *iocb = a->batch[0];
	struct vd_io_req *req = iocb->data;

	memmove(a->batch, a->batch + 1, --a->nbatch * sizeof(*a->batch));
	if (req->op == VD_IO_FSYNC && rc == -EINVAL) {
		a->no_fdsync = 1;
		aio_sync_flush(a, req, iocb);
		return;
	}
	if (req->op == VD_IO_FSYNC)
		a->barrier = 0;
	a->inflight--;
	a->free_iocbs[a->nfree++] = iocb;
	req->res = rc;
	req_append(&a->done_head, &a->done_tail, req);
}

/* Hand the batch to the kernel; what it cannot take now stays for the next round. */
static void aio_flush_batch(struct aio *a)
{
	while (a->nbatch > 0) {
		int rc = io_submit(a->ctx, (long)a->nbatch, a->batch);

		if (rc == -EINTR)
			continue;
		if (rc == -EAGAIN && a->in_kernel > 0)
			return; /* the kernel is full: reap first */
		if (rc < 0 && rc != -EAGAIN) {
			aio_refused(a, rc);
			continue;
		}
		if (rc < 0)
			continue; /* nothing of ours in the kernel: EAGAIN is transient */
		a->in_kernel += (unsigned)rc;
		a->nbatch -= (unsigned)rc;
		memmove(a->batch, a->batch + rc, a->nbatch * sizeof(*a->batch));
	}
}

/* One kernel completion: resubmit after EINTR/EAGAIN or a short transfer. 1 if done. */
static int aio_complete(struct aio *a, struct iocb *iocb, long res)
{
	struct vd_io_req *req = iocb->data;

	a->in_kernel--;
	if (res == -EINTR || res == -EAGAIN) {
		aio_prep(a, req, iocb);
		return 0;
	}
	if (res < 0 || req->op == VD_IO_FSYNC) {
		if (req->op == VD_IO_FSYNC && res == -EINVAL && !a->no_fdsync) {
			a->no_fdsync = 1; /* refused at completion rather than at submit */
			aio_sync_flush(a, req, iocb);
			return 0;
		}
		aio_finish(a, req, iocb, res < 0 ? res : 0);
		return 1;
	}
	req->res += res;
	/* A zero-byte read is the end of the file: the caller sees the short count. */
	if (res == 0 || (size_t)req->res == req->len) {
		aio_finish(a, req, iocb, req->res);
		return 1;
	}
	aio_prep(a, req, iocb);
	return 0;
}

static unsigned aio_take_done(struct aio *a)
{
	unsigned n = 0;

	while (a->done_head) {
		struct vd_io_req *req = req_pop(&a->done_head, &a->done_tail);

		req->done(req, req->res);
		n++;
	}
	return n;
}

static int aio_reap(void *state, unsigned min)
{
	struct aio *a = state;
	struct timespec zero = {0, 0};
	unsigned n = 0;

	for (;;) {
		int got;

		aio_issue(a);
		aio_flush_batch(a);
		n += aio_take_done(a);
		if (a->in_kernel == 0 && a->nbatch == 0 && !a->done_head &&
		    (n >= min || !a->wait_head || a->barrier))
			break;
		if (a->in_kernel == 0)
			continue; /* the flush or the queue moved on: go round */
		got = io_getevents(a->ctx, n < min ? 1 : 0, (long)a->depth, a->events,
				   n < min ? NULL : &zero);
		if (got == -EINTR)
			continue;
		if (got < 0)
			return got;
		for (int i = 0; i < got; i++)
			n += (unsigned)aio_complete(a, a->events[i].obj, (long)a->events[i].res);
		if (n >= min && got == 0)
			break;
	}
	return (int)n;
}

const struct vd_io_engine_ops vd_aio_engine = {
	.name = "libaio",
	.state_size = sizeof(struct aio),
	.init = aio_init,
	.fini = aio_fini,
	.submit = aio_submit,
	.reap = aio_reap,
};
