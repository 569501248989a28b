/*
 * The io_uring engine (liburing): requests go to a ring of DEPTH entries (spec
 * "io_uring[:depth=N]", default 128) and are handed to the kernel in batches at
 * reap; more than DEPTH wait in a queue. Short transfers are resubmitted for
 * the rest. A flush is a barrier: it starts once everything submitted before it
 * has completed, and nothing submitted after it starts before it completes.
 */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"

#define URING_DEFAULT_DEPTH 128
#define URING_MAX_DEPTH 4096
#define URING_MAX_CHUNK (1u << 30)

struct uring {
	struct io_uring ring;
	int ring_up;
	unsigned depth;
	unsigned inflight;	     /* handed to the ring, not yet done */
	int barrier;		     /* a flush is in flight */
	struct vd_io_req *wait_head; /* submitted, not yet in the ring */
	struct vd_io_req *wait_tail;
};

/* Why the kernel refused io_uring, as far as we can tell from here. */
static const char *uring_hint(int rc, char *buf, size_t len)
{
	FILE *fp = fopen("/proc/sys/kernel/io_uring_disabled", "re");
	int disabled = 0;

	if (fp) {
		if (fscanf(fp, "%d", &disabled) != 1)
			disabled = 0;
		fclose(fp);
	}
	if (disabled)
		snprintf(buf, len, " (kernel.io_uring_disabled=%d)", disabled);
	else if (rc == -EPERM)
		snprintf(buf, len, " (kernel.io_uring_disabled=2, or a seccomp filter?)");
	else if (rc == -ENOSYS)
		snprintf(buf, len, " (kernel without io_uring, or a seccomp filter?)");
	else if (rc == -ENOMEM)
		snprintf(buf, len, " (locked memory limit too low? try io_uring:depth=32)");
	else
		buf[0] = '\0';
	return buf;
}

/* A NOP round trip: some seccomp profiles allow ring setup but block io_uring_enter. */
static int uring_probe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int rc;

	if (!sqe)
		return -EBUSY;
	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data(sqe, NULL);
	do
		rc = io_uring_submit_and_wait(ring, 1);
	while (rc == -EINTR);
	if (rc < 0)
		return rc;
	rc = io_uring_peek_cqe(ring, &cqe);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return rc;
}

static int uring_init(void *state, const char *options, const char *path, char *err, size_t errlen)
{
	struct uring *u = state;
	char v[32], hint[96];
	const char *step = "io_uring_queue_init";
	int rc;

	(void)path;
	u->depth = URING_DEFAULT_DEPTH;
	if (vd_io_option(options, "depth", v, sizeof(v)))
		u->depth = (unsigned)strtoul(v, NULL, 10);
	if (u->depth < 1 || u->depth > URING_MAX_DEPTH) {
		snprintf(err, errlen, "io_uring: depth must be 1..%d, not '%s'", URING_MAX_DEPTH,
			 v);
		return -EINVAL;
	}
	rc = io_uring_queue_init(u->depth, &u->ring, 0);
	if (rc == 0) {
		u->ring_up = 1;
		step = "first request";
		rc = uring_probe(&u->ring);
	}
	if (rc < 0) {
		snprintf(err, errlen, "io_uring: %s: %s%s", step, strerror(-rc),
			 uring_hint(rc, hint, sizeof(hint)));
		if (u->ring_up)
			io_uring_queue_exit(&u->ring);
		u->ring_up = 0;
		return rc;
	}
	return 0;
}

static void uring_fini(void *state)
{
	struct uring *u = state;

	if (u->ring_up)
		io_uring_queue_exit(&u->ring);
}

/* Put REQ's remaining part (past the req->res bytes already moved) in the ring. */
static void uring_prep(struct uring *u, struct vd_io_req *req)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	size_t done = (size_t)req->res, len = req->len - done;

	/* Never NULL: at most DEPTH requests are in flight and the ring has DEPTH slots. */
	if (!sqe) {
		io_uring_submit(&u->ring);
		sqe = io_uring_get_sqe(&u->ring);
	}
	/* A ring entry holds 32 bits of length: larger requests go as short transfers. */
	if (len > URING_MAX_CHUNK)
		len = URING_MAX_CHUNK;
	if (req->op == VD_IO_FSYNC)
		io_uring_prep_fsync(sqe, req->fd, IORING_FSYNC_DATASYNC);
	else if (req->op == VD_IO_READ)
		io_uring_prep_read(sqe, req->fd, (char *)req->buf + done, (unsigned)len,
				   req->offset + done);
	else
		io_uring_prep_write(sqe, req->fd, (char *)req->buf + done, (unsigned)len,
				    req->offset + done);
	io_uring_sqe_set_data(sqe, req);
}

/* Move waiting requests into the ring while there is room and no barrier holds them. */
static void uring_issue(struct uring *u)
{
	while (u->wait_head && !u->barrier && u->inflight < u->depth) {
		struct vd_io_req *req = u->wait_head;

		if (req->op == VD_IO_FSYNC && u->inflight > 0)
			break; /* a flush covers what completed before it started */
		u->wait_head = req->next;
		if (!u->wait_head)
			u->wait_tail = NULL;
		req->res = 0;
		if (req->op == VD_IO_FSYNC)
			u->barrier = 1;
		u->inflight++;
		uring_prep(u, req);
	}
}

static int uring_submit(void *state, struct vd_io_req *req)
{
	struct uring *u = state;

	req->next = NULL;
	if (u->wait_tail)
		u->wait_tail->next = req;
	else
		u->wait_head = req;
	u->wait_tail = req;
	uring_issue(u);
	return 0;
}

static void uring_finish(struct uring *u, struct vd_io_req *req, ssize_t res)
{
	if (req->op == VD_IO_FSYNC)
		u->barrier = 0;
	u->inflight--;
	req->res = res;
	req->done(req, res);
}

/* One completion: resubmit after EINTR/EAGAIN or a short transfer, else done. 1 if done. */
static int uring_complete(struct uring *u, struct vd_io_req *req, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		uring_prep(u, req);
		return 0;
	}
	if (res < 0 || req->op == VD_IO_FSYNC) {
		uring_finish(u, req, res < 0 ? res : 0);
		return 1;
	}
	req->res += res;
	/* A zero-byte read is the end of the file: the caller sees the short count. */
	if (res == 0 || (size_t)req->res == req->len) {
		uring_finish(u, req, req->res);
		return 1;
	}
	uring_prep(u, req);
	return 0;
}

/* Completions already in the CQ ring; done callbacks may submit more. */
static int uring_drain(struct uring *u)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct vd_io_req *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&u->ring, cqe);
		if (req)
			n += uring_complete(u, req, res);
	}
	return n;
}

static int uring_reap(void *state, unsigned min)
{
	struct uring *u = state;
	unsigned n = 0;

	for (;;) {
		int rc;

		uring_issue(u);
		if (u->inflight == 0 && io_uring_sq_ready(&u->ring) == 0)
			break;
		rc = io_uring_submit_and_wait(&u->ring, n < min ? 1 : 0);
		if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			return rc;
		n += (unsigned)uring_drain(u);
		if (n >= min && io_uring_sq_ready(&u->ring) == 0)
			break;
	}
	return (int)n;
}

const struct vd_io_engine_ops vd_uring_engine = {
	.name = "io_uring",
	.state_size = sizeof(struct uring),
	.init = uring_init,
	.fini = uring_fini,
	.submit = uring_submit,
	.reap = uring_reap,
};
