/*
 * The crash engine wraps another engine and records every write (with its
 * data) and every completed flush, in order, to a log, so that a test can
 * rebuild the files as a power cut would have left them at any point: any
 * prefix of the writes, and any reordering of the writes since the last
 * flush. Spec "crash:log=PATH[,inner=ENGINE]". Requests run one at a time, so
 * the log order is the order the disk saw them.
 *
 * Record (native byte order, one write(2) each on an O_APPEND file):
 *   char type ('W' write, 'F' flush), uint32 path_len, uint64 offset,
 *   uint32 len, path bytes, then LEN data bytes for 'W'.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk_int.h"

struct crash {
	struct vd_io_engine *inner;
	int log_fd;
	char path[VD_PATH_MAX];
	struct vd_io_req *head, *tail;
};

static int crash_init(void *state, const char *options, const char *path, char *err, size_t errlen)
{
	struct crash *c = state;
	char log[VD_PATH_MAX], inner[64] = "psync";

	c->log_fd = -1;
	if (!vd_io_option(options, "log", log, sizeof(log))) {
		snprintf(err, errlen, "crash engine: needs log=PATH");
		return -EINVAL;
	}
	vd_io_option(options, "inner", inner, sizeof(inner));
	if (strcmp(inner, "crash") == 0) {
		snprintf(err, errlen, "crash engine: cannot wrap itself");
		return -EINVAL;
	}
	c->log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (c->log_fd < 0) {
		snprintf(err, errlen, "crash engine: %s: %s", log, strerror(errno));
		return -errno;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	return vd_io_engine_start(inner, path, &c->inner, err, errlen);
}

static void crash_fini(void *state)
{
	struct crash *c = state;

	vd_io_engine_stop(c->inner);
	if (c->log_fd >= 0)
		close(c->log_fd);
}

static int log_record(struct crash *c, char type, uint64_t offset, const void *data, uint32_t len)
{
	uint32_t plen = (uint32_t)strlen(c->path);
	size_t head = 1 + 4 + 8 + 4, total = head + plen + len;
	uint8_t *rec = malloc(total);
	ssize_t n;

	if (!rec)
		return -ENOMEM;
	rec[0] = (uint8_t)type;
	memcpy(rec + 1, &plen, 4);
	memcpy(rec + 5, &offset, 8);
	memcpy(rec + 13, &len, 4);
	memcpy(rec + head, c->path, plen);
	if (len)
		memcpy(rec + head + plen, data, len);
	n = write(c->log_fd, rec, total);
	free(rec);
	return n == (ssize_t)total ? 0 : -EIO;
}

static int crash_submit(void *state, struct vd_io_req *req)
{
	struct crash *c = state;
	struct vd_io_req inner = *req;
	ssize_t res;
	int rc = 0;

	/* A write is logged before it runs: the log holds all the disk may hold. */
	if (req->op == VD_IO_WRITE)
		rc = log_record(c, 'W', req->offset, req->buf, (uint32_t)req->len);
	res = rc < 0 ? rc : vd_io_run(c->inner, &inner);
	/* A flush is logged once complete: before it, nothing was promised. */
	if (res >= 0 && req->op == VD_IO_FSYNC)
		rc = log_record(c, 'F', 0, NULL, 0);
	req->res = rc < 0 ? rc : res;
	req->next = NULL;
	if (c->tail)
		c->tail->next = req;
	else
		c->head = req;
	c->tail = req;
	return 0;
}

static int crash_reap(void *state, unsigned min)
{
	struct crash *c = state;
	int n = 0;

	(void)min; /* every request completed in submit */
	while (c->head) {
		struct vd_io_req *req = c->head;

		c->head = req->next;
		if (!c->head)
			c->tail = NULL;
		req->done(req, req->res);
		n++;
	}
	return n;
}

const struct vd_io_engine_ops vd_crash_engine = {
	.name = "crash",
	.state_size = sizeof(struct crash),
	.init = crash_init,
	.fini = crash_fini,
	.submit = crash_submit,
	.reap = crash_reap,
};
