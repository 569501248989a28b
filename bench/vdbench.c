/*
 * Drives the library API directly, so figures include no process start and no
 * image setup: the clock runs from the first request to the last completion
 * (and, for writes, the final vd_flush). bench/run.sh drops the page cache
 * before each run and prints the anchors (fio, qemu-io) beside these figures.
 *
 * Usage: vdbench [-e ENGINE] [-D] [-t THREADS | -q DEPTH] [-n OPS] [-b BYTES] [-O FILE] WORKLOAD
 * IMAGE randread   OPS reads of BYTES (4 KiB) at random aligned offsets; with -q DEPTH one thread
 * keeps DEPTH requests in flight through the asynchronous API (vd_aio_submit/poll), as fio's
 * iodepth does; with -t THREADS, threads each with its own handle at depth 1 randwrite  OPS writes
 * of BYTES at random aligned offsets, one handle (QD1) offwrite   one write of BYTES at each offset
 * listed in FILE (one a line) seqwrite   the whole disk in BYTES (1 MiB) writes, in order -D opens
 * with VD_OPEN_DIRECT. Prints "VALUE UNIT" (IOPS or MiB/s).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

struct bench {
	const char *image, *engine, *workload, *offsets;
	unsigned flags;
	unsigned threads;
	unsigned depth; /* -q: requests in flight through vd_aio (0: synchronous calls) */
	uint64_t ops;
	size_t bytes;
	uint64_t disk_size;
	pthread_barrier_t start;
};

struct worker {
	struct bench *b;
	struct vd_disk *disk;
	unsigned seed;
	uint64_t ops;
	int rc;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(struct vd_disk *d, const char *what)
{
	fprintf(stderr, "vdbench: %s: %s\n", what, d ? vd_errmsg(d) : strerror(errno));
	exit(2);
}

static struct vd_disk *open_disk(const struct bench *b, unsigned mode)
{
	struct vd_open_opts oo = {.flags = mode | b->flags, .engine = b->engine};
	struct vd_disk *d;
	struct vd_info info;

	if (vd_open(b->image, &oo, &d) < 0)
		die(d, b->image);
	vd_get_info(d, &info);
	if (info.virtual_size < b->bytes)
		die(d, "disk smaller than one request");
	return d;
}

static uint64_t random_offset(unsigned *seed, uint64_t disk_size, size_t bytes)
{
	uint64_t slots = disk_size / bytes;
	uint64_t r = ((uint64_t)rand_r(seed) << 31) ^ (uint64_t)rand_r(seed);

	return r % slots * bytes;
}

/* One reader thread: its own handle, so the readers overlap in the kernel. */
static void *reader(void *arg)
{
	struct worker *w = arg;
	uint8_t *buf = aligned_alloc(4096, w->b->bytes);

	pthread_barrier_wait(&w->b->start);
	for (uint64_t i = 0; i < w->ops && w->rc == 0 && buf; i++)
		w->rc = vd_pread(w->disk, buf, w->b->bytes,
				 random_offset(&w->seed, w->b->disk_size, w->b->bytes));
	free(buf);
	return NULL;
}

/* One thread, DEPTH requests in flight: each completion submits the next. */
struct qd {
	struct bench *b;
	struct vd_disk *d;
	unsigned seed;
	uint64_t submitted, done;
	int rc;
};

static void qd_done(struct vd_aio *a, int res);

static void qd_submit(struct qd *q, struct vd_aio *a)
{
	a->offset = random_offset(&q->seed, q->b->disk_size, q->b->bytes);
	a->done = qd_done;
	q->submitted++;
	if (vd_aio_submit(q->d, a) < 0)
		die(q->d, "submit");
}

static void qd_done(struct vd_aio *a, int res)
{
	struct qd *q = a->ctx;

	if (res < 0)
		q->rc = res;
	q->done++;
	if (q->submitted < q->b->ops && q->rc == 0)
		qd_submit(q, a);
}

static double run_queue(struct bench *b, int write)
{
	struct qd q = {b, open_disk(b, write ? VD_OPEN_RDWR : VD_OPEN_RDONLY), 42, 0, 0, 0};
	struct vd_aio *a = calloc(b->depth, sizeof(*a));
	double t0;

	for (unsigned i = 0; i < b->depth; i++) {
		a[i] = (struct vd_aio){.op = write ? VD_AIO_WRITE : VD_AIO_READ,
				       .buf = aligned_alloc(4096, b->bytes),
				       .len = b->bytes,
				       .ctx = &q};
		memset(a[i].buf, 0xA5, b->bytes);
	}
	t0 = now();
	for (unsigned i = 0; i < b->depth && q.submitted < b->ops; i++)
		qd_submit(&q, &a[i]);
	while (q.done < q.submitted && q.rc == 0)
		if (vd_aio_poll(q.d, 1) < 0)
			die(q.d, "poll");
	if (q.rc < 0 || (write && vd_flush(q.d) < 0))
		die(q.d, write ? "write" : "read");
	t0 = now() - t0;
	if (vd_close(q.d) < 0)
		die(NULL, "close");
	for (unsigned i = 0; i < b->depth; i++)
		free(a[i].buf);
	free(a);
	return (double)q.done / t0;
}

static double run_randread(struct bench *b)
{
	struct worker *w = calloc(b->threads, sizeof(*w));
	pthread_t *tid = calloc(b->threads, sizeof(*tid));
	double t0;

	pthread_barrier_init(&b->start, NULL, b->threads + 1);
	for (unsigned i = 0; i < b->threads; i++) {
		w[i] = (struct worker){b, open_disk(b, VD_OPEN_RDONLY), 42 + i * 7919,
				       b->ops / b->threads, 0};
		pthread_create(&tid[i], NULL, reader, &w[i]);
	}
	pthread_barrier_wait(&b->start);
	t0 = now();
	for (unsigned i = 0; i < b->threads; i++)
		pthread_join(tid[i], NULL);
	t0 = now() - t0;
	for (unsigned i = 0; i < b->threads; i++) {
		if (w[i].rc < 0)
			die(w[i].disk, "read");
		vd_close(w[i].disk);
	}
	free(w);
	free(tid);
	return (double)(b->ops / b->threads * b->threads) / t0;
}

/* The offsets a write workload visits, in order; *N is their count. */
static uint64_t *write_offsets(const struct bench *b, uint64_t *n)
{
	uint64_t *off, cap = b->ops ? b->ops : 1;
	unsigned seed = 42;
	FILE *fp = NULL;

	if (strcmp(b->workload, "seqwrite") == 0)
		cap = b->disk_size / b->bytes;
	if (strcmp(b->workload, "offwrite") == 0 && !(fp = fopen(b->offsets, "r")))
		die(NULL, b->offsets ? b->offsets : "offwrite needs -O FILE");
	off = malloc(sizeof(*off) * cap);
	for (*n = 0; off && *n < cap; (*n)++) {
		unsigned long long v;

		if (fp && fscanf(fp, "%llu", &v) != 1)
			break;
		off[*n] = fp ? v
			  : strcmp(b->workload, "seqwrite") == 0
				  ? *n * b->bytes
				  : random_offset(&seed, b->disk_size, b->bytes);
	}
	if (fp)
		fclose(fp);
	return off;
}

static double run_writes(struct bench *b, int sequential)
{
	struct vd_disk *d = open_disk(b, VD_OPEN_RDWR);
	uint8_t *buf = aligned_alloc(4096, b->bytes);
	uint64_t n, *off = write_offsets(b, &n);
	double t0;

	if (!buf || !off)
		die(NULL, "out of memory");
	memset(buf, 0xA5, b->bytes);
	t0 = now();
	for (uint64_t i = 0; i < n; i++) {
		buf[0] = (uint8_t)i; /* not all-zero, not all-same: no shortcut anywhere */
		if (vd_pwrite(d, buf, b->bytes, off[i]) < 0)
			die(d, "write");
	}
	if (vd_flush(d) < 0)
		die(d, "flush");
	t0 = now() - t0;
	if (vd_close(d) < 0)
		die(NULL, "close");
	free(buf);
	free(off);
	return sequential ? (double)n * (double)b->bytes / (1 << 20) / t0 : (double)n / t0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: vdbench [-e ENGINE] [-D] [-t THREADS | -q DEPTH] [-n OPS] [-b BYTES] "
		"[-O FILE] randread|randwrite|offwrite|seqwrite IMAGE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct bench b = {.threads = 1, .ops = 20000, .bytes = 4096};
	struct vd_disk *d;
	struct vd_info info;
	double v;
	int opt;

	while ((opt = getopt(argc, argv, "e:Dt:q:n:b:O:")) != -1) {
		if (opt == 'e')
			b.engine = optarg;
		else if (opt == 'D')
			b.flags |= VD_OPEN_DIRECT;
		else if (opt == 't')
			b.threads = (unsigned)strtoul(optarg, NULL, 10);
		else if (opt == 'q')
			b.depth = (unsigned)strtoul(optarg, NULL, 10);
		else if (opt == 'n')
			b.ops = strtoull(optarg, NULL, 10);
		else if (opt == 'b')
			b.bytes = strtoul(optarg, NULL, 10);
		else if (opt == 'O')
			b.offsets = optarg;
		else
			usage();
	}
	if (argc - optind != 2 || b.threads < 1 || b.bytes < 512 || b.bytes % 512)
		usage();
	b.workload = argv[optind];
	b.image = argv[optind + 1];
	d = open_disk(&b, VD_OPEN_RDONLY);
	vd_get_info(d, &info);
	b.disk_size = info.virtual_size;
	vd_close(d);
	if (b.depth &&
	    (strcmp(b.workload, "randread") == 0 || strcmp(b.workload, "randwrite") == 0))
		v = run_queue(&b, strcmp(b.workload, "randwrite") == 0);
	else if (strcmp(b.workload, "randread") == 0)
		v = run_randread(&b);
	else if (strcmp(b.workload, "randwrite") == 0 || strcmp(b.workload, "offwrite") == 0)
		v = run_writes(&b, 0);
	else if (strcmp(b.workload, "seqwrite") == 0)
		v = run_writes(&b, 1);
	else
		usage();
	printf("%.1f %s\n", v, strcmp(b.workload, "seqwrite") == 0 ? "MiB/s" : "IOPS");
	return 0;
}
