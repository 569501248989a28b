/*
 * Engine registry and the synchronous file helpers that the format drivers use:
 * each helper submits one request to the file's engine and reaps until it is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
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

/* ---- O_DIRECT: aligned bounce buffers, read-modify-write, the unaligned tail ---- */

#define DIRECT_CHUNK (1u << 20) /* bounce buffer size: bounds memory per request */
#define ALIGN_DOWN(x) ((x) & ~(uint64_t)(VD_DIRECT_ALIGN - 1))
#define ALIGN_UP(x) ALIGN_DOWN((x) + VD_DIRECT_ALIGN - 1)

static int is_aligned(const void *buf, size_t len, uint64_t offset)
{
	return ((uintptr_t)buf | len | offset) % VD_DIRECT_ALIGN == 0;
}

/*
 * The part of a file past its last whole aligned block cannot go through
 * O_DIRECT: a read there comes back short and the engine's retry at the
 * unaligned end fails with EINVAL, and a write must end exactly at the file's
 * end. That part (at most 4 KiB less a byte: the VHD footer, usually) runs with
 * O_DIRECT switched off on the descriptor. Safe: the file layer has one request
 * in flight at a time, and Linux keeps the page cache coherent with direct I/O.
 */
static ssize_t buffered_io(struct vd_file *f, enum vd_io_op op, void *buf, size_t len,
			   uint64_t offset)
{
	int fl = fcntl(f->fd, F_GETFL);
	ssize_t n;

	if (fl < 0 || fcntl(f->fd, F_SETFL, fl & ~O_DIRECT) < 0)
		return -errno;
	n = file_io(f, op, buf, len, offset);
	if (fcntl(f->fd, F_SETFL, fl) < 0 && n >= 0)
		n = -errno;
	return n;
}

static ssize_t direct_read(struct vd_file *f, void *buf, size_t len, uint64_t offset);

/* Whole aligned blocks [A0, A1) of BOUNCE hold the bytes around [OFFSET, +LEN): read the
 * partial first and last ones so a write keeps their other bytes (zeros past the end). */
static int direct_rmw(struct vd_file *f, uint8_t *bounce, uint64_t a0, uint64_t a1, uint64_t offset,
		      size_t len)
{
	uint64_t blk[2] = {a0, a1 - VD_DIRECT_ALIGN};
	int partial[2] = {offset > a0, offset + len < a1};

	for (int i = 0; i < 2; i++) {
		uint8_t *p = bounce + (blk[i] - a0);
		ssize_t n;

		if (!partial[i] || (i == 1 && blk[1] == a0 && partial[0]))
			continue;
		memset(p, 0, VD_DIRECT_ALIGN);
		n = direct_read(f, p, VD_DIRECT_ALIGN, blk[i]);
		if (n < 0)
			return (int)n;
	}
	return 0;
}

/* [OFFSET, +LEN) lies in whole blocks below ALIGN_DOWN(file end): bounce what is unaligned. */
static ssize_t direct_span(struct vd_file *f, enum vd_io_op op, uint8_t *buf, size_t len,
			   uint64_t offset)
{
	size_t done = 0, cap = (size_t)(ALIGN_UP(offset + len) - ALIGN_DOWN(offset));
	uint8_t *bounce;

	if (is_aligned(buf, len, offset))
		return file_io(f, op, buf, len, offset);
	bounce = aligned_alloc(VD_DIRECT_ALIGN, cap < DIRECT_CHUNK ? cap : DIRECT_CHUNK);
	if (!bounce)
		return -ENOMEM;
	while (done < len) {
		uint64_t at = offset + done, a0 = ALIGN_DOWN(at);
		uint64_t a1 = ALIGN_UP(offset + len) < a0 + DIRECT_CHUNK ? ALIGN_UP(offset + len)
									 : a0 + DIRECT_CHUNK;
		size_t piece = (size_t)((a1 < offset + len ? a1 : offset + len) - at);
		ssize_t n = 0;

		if (op == VD_IO_WRITE) {
			n = direct_rmw(f, bounce, a0, a1, at, piece);
			memcpy(bounce + (at - a0), buf + done, piece);
		}
		if (n >= 0)
			n = file_io(f, op, bounce, (size_t)(a1 - a0), a0);
		if (n < 0 || (uint64_t)n < at - a0 + piece) {
			/* Short (the file ended): count only the caller's bytes that arrived. */
			uint64_t got = n > (ssize_t)(at - a0) ? (uint64_t)n - (at - a0) : 0;

			free(bounce);
			return n < 0 ? n : (ssize_t)(done + got);
		}
		if (op == VD_IO_READ)
			memcpy(buf + done, bounce + (at - a0), piece);
		done += piece;
	}
	free(bounce);
	return (ssize_t)done;
}

/* Split at the last whole block of a file ending at FILE_END: direct below, buffered above. */
static ssize_t direct_split(struct vd_file *f, enum vd_io_op op, void *buf, size_t len,
			    uint64_t offset, uint64_t file_end)
{
	uint64_t tail = ALIGN_DOWN(file_end), end = offset + len;
	ssize_t n = 0, m;

	if (offset < tail) {
		size_t part = (size_t)((end < tail ? end : tail) - offset);

		n = direct_span(f, op, buf, part, offset);
		if (n < 0 || (size_t)n < part || end <= tail)
			return n;
	}
	if (offset > tail)
		tail = offset;
	m = buffered_io(f, op, (uint8_t *)buf + (tail - offset), (size_t)(end - tail), tail);
	return m < 0 ? m : n + m;
}

static ssize_t direct_read(struct vd_file *f, void *buf, size_t len, uint64_t offset)
{
	return direct_split(f, VD_IO_READ, buf, len, offset, f->size);
}

static ssize_t direct_write(struct vd_file *f, const void *buf, size_t len, uint64_t offset)
{
	uint64_t end = offset + len > f->size ? offset + len : f->size;

	return direct_split(f, VD_IO_WRITE, (void *)buf, len, offset, end);
}

int vd_file_pread(struct vd_file *f, void *buf, size_t len, uint64_t offset)
{
	ssize_t n = f->direct ? direct_read(f, buf, len, offset)
			      : file_io(f, VD_IO_READ, buf, len, offset);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -EIO;
}

int vd_file_pwrite(struct vd_file *f, const void *buf, size_t len, uint64_t offset)
{
	ssize_t n = f->direct ? direct_write(f, buf, len, offset)
			      : file_io(f, VD_IO_WRITE, (void *)buf, len, offset);

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
