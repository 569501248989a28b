/*
 * The psync engine: pread/pwrite/fdatasync done at submit time, completions
 * handed back at reap. The baseline every other engine is measured against.
 */
#include <errno.h>
#include <unistd.h>

#include "vdisk_int.h"

struct psync {
	struct vd_io_req *head, *tail; /* completed, waiting for reap */
};

static int psync_init(void *state, const char *options, const char *path, char *err, size_t errlen)
{
	(void)state;
	(void)options;
	(void)path;
	(void)err;
	(void)errlen;
	return 0;
}

static void psync_fini(void *state)
{
	(void)state;
}

/* Loops over short transfers; a zero-byte read means end of file. */
static ssize_t psync_rw(const struct vd_io_req *req)
{
	uint8_t *p = req->buf;
	size_t done = 0;

	while (done < req->len) {
		off_t at = (off_t)(req->offset + done);
		ssize_t n = req->op == VD_IO_READ ? pread(req->fd, p + done, req->len - done, at)
						  : pwrite(req->fd, p + done, req->len - done, at);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static int psync_submit(void *state, struct vd_io_req *req)
{
	struct psync *ps = state;

	if (req->op == VD_IO_FSYNC)
		req->res = fdatasync(req->fd) < 0 ? -errno : 0;
	else
		req->res = psync_rw(req);
	req->next = NULL;
	if (ps->tail)
		ps->tail->next = req;
	else
		ps->head = req;
	ps->tail = req;
	return 0;
}

static int psync_reap(void *state, unsigned min)
{
	struct psync *ps = state;
	int n = 0;

	(void)min; /* everything submitted is already complete */
	while (ps->head) {
		struct vd_io_req *req = ps->head;

		ps->head = req->next;
		if (!ps->head)
			ps->tail = NULL;
		req->done(req, req->res);
		n++;
	}
	return n;
}

const struct vd_io_engine_ops vd_psync_engine = {
	.name = "psync",
	.state_size = sizeof(struct psync),
	.init = psync_init,
	.fini = psync_fini,
	.submit = psync_submit,
	.reap = psync_reap,
};
