/*
 * Engine registry and the synchronous file helpers that the format drivers use:
 * each helper submits one request to the file's engine and reaps until it is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"

extern const struct vd_io_engine_ops vd_psync_engine;
extern const struct vd_io_engine_ops vd_fault_engine;
extern const struct vd_io_engine_ops vd_crash_engine;
extern const struct vd_io_engine_ops vd_uring_engine;
extern const struct vd_io_engine_ops vd_aio_engine;

static const struct vd_io_engine_ops *const engines[] = {
	&vd_psync_engine, &vd_uring_engine, &vd_aio_engine, &vd_fault_engine, &vd_crash_engine,
};

/* What "auto" tries, best first; psync always works. */
static const char *const auto_order[] = {"io_uring", "libaio", "psync"};

const struct vd_io_engine_ops *vd_io_engine_find(const char *name)
{
	for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
		if (strcmp(engines[i]->name, name) == 0)
			return engines[i];
	return NULL;
}

static int engine_start_one(const char *spec, const char *path, struct vd_io_engine **out,
			    char *err, size_t errlen)
{
	const struct vd_io_engine_ops *ops;
	struct vd_io_engine *eng;
	const char *colon = strchr(spec, ':');
	char name[32];
	int rc;

	snprintf(name, sizeof(name), "%.*s", colon ? (int)(colon - spec) : (int)strlen(spec), spec);
	ops = vd_io_engine_find(name);
	if (!ops) {
		snprintf(
			err, errlen,
			"unknown I/O engine '%s' (available: auto, psync, io_uring, libaio, fault, "
			"crash)",
			name);
		return -EINVAL;
	}
	eng = calloc(1, sizeof(*eng) + ops->state_size);
	if (!eng) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	eng->ops = ops;
	eng->state = eng + 1;
	rc = ops->init(eng->state, colon ? colon + 1 : "", path ? path : "", err, errlen);
	if (rc < 0) {
		free(eng);
		return rc;
	}
	*out = eng;
	return 0;
}

/* "auto[:options]": the first engine of auto_order that starts here, with the options. */
static int engine_start_auto(const char *options, const char *path, struct vd_io_engine **out,
			     char *err, size_t errlen)
{
	char spec[128];
	int rc = -EINVAL;

	for (size_t i = 0; i < sizeof(auto_order) / sizeof(auto_order[0]); i++) {
		snprintf(spec, sizeof(spec), "%s%s%s", auto_order[i], *options ? ":" : "", options);
		rc = engine_start_one(spec, path, out, err, errlen);
		if (rc == 0)
			return 0;
	}
	return rc;
}

int vd_io_engine_start(const char *spec, const char *path, struct vd_io_engine **out, char *err,
		       size_t errlen)
{
	if (!spec || !*spec)
		spec = getenv("VDISK_ENGINE");
	if (!spec || !*spec)
		spec = "psync";
	if (strcmp(spec, "auto") == 0 || strncmp(spec, "auto:", 5) == 0)
		return engine_start_auto(spec[4] ? spec + 5 : "", path, out, err, errlen);
	return engine_start_one(spec, path, out, err, errlen);
}

int vd_io_option(const char *options, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);

	for (const char *p = options; p && *p;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			snprintf(out, len, "%.*s", (int)(n - klen - 1), p + klen + 1);
			return 1;
		}
		p = end ? end + 1 : NULL;
	}
	return 0;
}

void vd_io_engine_stop(struct vd_io_engine *eng)
{
	if (!eng)
		return;
	eng->ops->fini(eng->state);
	free(eng);
}

struct sync_wait {
	int done;
	ssize_t res;
};

static void sync_done(struct vd_io_req *req, ssize_t res)
{
	struct sync_wait *w = req->opaque;

	w->done = 1;
	w->res = res;
}

ssize_t vd_io_run(struct vd_io_engine *eng, struct vd_io_req *req)
{
	struct sync_wait w = {0, 0};
	int rc;

	req->done = sync_done;
	req->opaque = &w;
	rc = eng->ops->submit(eng->state, req);
	while (rc >= 0 && !w.done)
		rc = eng->ops->reap(eng->state, 1);
	return rc < 0 ? rc : w.res;
}

static ssize_t file_io(struct vd_file *f, enum vd_io_op op, void *buf, size_t len, uint64_t offset)
{
	struct vd_io_req req = {.op = op, .fd = f->fd, .buf = buf, .len = len, .offset = offset};

	return vd_io_run(f->eng, &req);
}

int vd_file_pread(struct vd_file *f, void *buf, size_t len, uint64_t offset)
{
	ssize_t n = file_io(f, VD_IO_READ, buf, len, offset);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int vd_file_pwrite(struct vd_file *f, const void *buf, size_t len, uint64_t offset)
{
	ssize_t n = file_io(f, VD_IO_WRITE, (void *)buf, len, offset);

	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return -EIO;
	if (offset + len > f->size)
		f->size = offset + len;
	return 0;
}

int vd_file_punch(struct vd_file *f, uint64_t offset, uint64_t len)
{
	if (len && fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
			     (off_t)len) < 0)
		return -errno;
	return 0;
}

int vd_file_sync(struct vd_file *f)
{
	ssize_t n = file_io(f, VD_IO_FSYNC, NULL, 0, 0);

	return n < 0 ? (int)n : 0;
}
