/*
 * The fault engine wraps another engine and fails chosen requests, so tests
 * reach every error path without a special build (SQLite's test VFS idea).
 * Spec "fault:KEY=VALUE,...":
 *   nth=N     fail only the Nth matching request (counted across the process)
 *   after=N   fail every matching request after the Nth
 *   (neither) fail every matching request
 *   op=read|write|flush|any   which requests match (default any)
 *   file=TEXT only requests on files whose path contains TEXT
 *   err=EIO|ENOSPC|kill       the error; kill ends the process on the spot
 *                             (_exit(137)), what kill -9 does to a writer
 *   inner=ENGINE              the engine that does the real I/O (psync)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vdisk_int.h"

#define OP_READ 0x1u
#define OP_WRITE 0x2u
#define OP_FLUSH 0x4u

struct fault {
	struct vd_io_engine *inner;
	unsigned long nth, after;
	unsigned ops;
	int err; /* -errno, or 0 for kill */
	int file_matches;
	struct vd_io_req *head, *tail; /* failed requests waiting for reap */
};

/* One count for the whole process: "the Nth I/O" spans every file of a chain. */
static unsigned long fault_count;

static int parse_ops(const char *v, unsigned *ops)
{
	if (strcmp(v, "read") == 0)
		*ops = OP_READ;
	else if (strcmp(v, "write") == 0)
		*ops = OP_WRITE;
	else if (strcmp(v, "flush") == 0)
		*ops = OP_FLUSH;
	else if (strcmp(v, "any") == 0)
		*ops = OP_READ | OP_WRITE | OP_FLUSH;
	else
		return -EINVAL;
	return 0;
}

static int parse_err(const char *v, int *err)
{
	if (strcmp(v, "EIO") == 0)
		*err = -EIO;
	else if (strcmp(v, "ENOSPC") == 0)
		*err = -ENOSPC;
	else if (strcmp(v, "kill") == 0)
		*err = 0;
	else
		return -EINVAL;
	return 0;
}

static int fault_init(void *state, const char *options, const char *path, char *err, size_t errlen)
{
	struct fault *f = state;
	char v[256], inner[64] = "psync";
	int rc = 0;

	f->ops = OP_READ | OP_WRITE | OP_FLUSH;
	f->err = -EIO;
	f->file_matches = 1;
	if (vd_io_option(options, "nth", v, sizeof(v)))
		f->nth = strtoul(v, NULL, 10);
	if (vd_io_option(options, "after", v, sizeof(v)))
		f->after = strtoul(v, NULL, 10);
	if (vd_io_option(options, "op", v, sizeof(v)))
		rc = parse_ops(v, &f->ops);
	if (rc == 0 && vd_io_option(options, "err", v, sizeof(v)))
		rc = parse_err(v, &f->err);
	if (vd_io_option(options, "file", v, sizeof(v)))
		f->file_matches = strstr(path, v) != NULL;
	vd_io_option(options, "inner", inner, sizeof(inner));
	if (rc < 0) {
		snprintf(err, errlen,
			 "fault engine: bad options '%s' (op=read|write|flush|any, "
			 "err=EIO|ENOSPC|kill)",
			 options);
		return rc;
	}
	if (strcmp(inner, "fault") == 0) {
		snprintf(err, errlen, "fault engine: cannot wrap itself");
		return -EINVAL;
	}
	return vd_io_engine_start(inner, path, &f->inner, err, errlen);
}

static void fault_fini(void *state)
{
	struct fault *f = state;

	vd_io_engine_stop(f->inner);
}

static int should_fail(struct fault *f, const struct vd_io_req *req)
{
	unsigned op = req->op == VD_IO_READ    ? OP_READ
		      : req->op == VD_IO_WRITE ? OP_WRITE
					       : OP_FLUSH;

	if (!(f->ops & op) || !f->file_matches)
		return 0;
	fault_count++;
	if (f->nth)
		return fault_count == f->nth;
	if (f->after)
		return fault_count > f->after;
	return 1;
}

static int fault_submit(void *state, struct vd_io_req *req)
{
	struct fault *f = state;

	if (!should_fail(f, req))
		return f->inner->ops->submit(f->inner->state, req);
	if (f->err == 0)
		_exit(137); /* as if killed: nothing after this point reaches the file */
	req->res = f->err;
	req->next = NULL;
	if (f->tail)
		f->tail->next = req;
	else
		f->head = req;
	f->tail = req;
	return 0;
}

static int fault_reap(void *state, unsigned min)
{
	struct fault *f = state;
	int n = 0;

	while (f->head) {
		struct vd_io_req *req = f->head;

		f->head = req->next;
		if (!f->head)
			f->tail = NULL;
		req->done(req, req->res);
		n++;
	}
	if ((unsigned)n >= min)
		return n;
	int r = f->inner->ops->reap(f->inner->state, min - (unsigned)n);
	return r < 0 ? r : r + n;
}

const struct vd_io_engine_ops vd_fault_engine = {
	.name = "fault",
	.state_size = sizeof(struct fault),
	.init = fault_init,
	.fini = fault_fini,
	.submit = fault_submit,
	.reap = fault_reap,
};
