/*
 * Drives the library API directly (no process start in the figures): sequential
 * writes into a fresh image, sequential reads, and 4 KiB random reads and writes,
 * on a dynamic VHD and on a raw file through the same API, cache dropped between.
 * Usage: vdbench DIR SIZE_MIB
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vdisk/vdisk.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY);

	sync();
	if (fd >= 0) {
		if (write(fd, "3\n", 2) < 0)
			perror("drop_caches");
		close(fd);
	}
}

static void die(struct vd_disk *d, const char *what)
{
	fprintf(stderr, "vdbench: %s: %s\n", what, vd_errmsg(d));
	exit(2);
}

/* Returns MiB/s (sequential) or IOPS (random) for one pass. */
static double run(const char *path, const char *format, uint64_t size, const char *what)
{
	struct vd_open_opts oo = {.flags = VD_OPEN_RDWR, .format = format};
	size_t chunk = strncmp(what, "seq", 3) == 0 ? 1u << 20 : 4096;
	uint8_t *buf = aligned_alloc(4096, 1u << 20);
	uint64_t ops = strncmp(what, "seq", 3) == 0 ? size / chunk : 20000;
	struct vd_disk *d;
	double t0, t;

	memset(buf, 0xA5, 1u << 20);
	drop_caches();
	if (vd_open(path, &oo, &d) < 0)
		die(d, path);
	srand(42);
	t0 = now();
	for (uint64_t i = 0; i < ops; i++) {
		uint64_t off = strncmp(what, "seq", 3) == 0
				       ? i * chunk
				       : ((uint64_t)rand() * RAND_MAX + (uint64_t)rand()) %
						 (size / 4096) * 4096;
		int rc = strstr(what, "write") ? vd_pwrite(d, buf, chunk, off)
					       : vd_pread(d, buf, chunk, off);
		if (rc < 0)
			die(d, what);
	}
	if (vd_flush(d) < 0)
		die(d, "flush");
	t = now() - t0;
	vd_close(d);
	free(buf);
	return strncmp(what, "seq", 3) == 0 ? (double)size / (1 << 20) / t : (double)ops / t;
}

static void make_image(const char *path, const char *format, uint64_t size)
{
	struct vd_create_opts co = {.format = format, .type = VD_TYPE_DYNAMIC, .size = size};
	struct vd_disk *d;

	unlink(path);
	if (vd_create(path, &co, &d) < 0)
		die(d, path);
	vd_close(d);
}

int main(int argc, char **argv)
{
	static const char *const work[] = {"seq-write-fresh", "seq-read", "rand-read-4k",
					   "rand-write-4k-allocated"};
	char vhd[4096], raw[4096];
	uint64_t size;

	if (argc != 3) {
		fprintf(stderr, "usage: vdbench DIR SIZE_MIB\n");
		return 2;
	}
	size = strtoull(argv[2], NULL, 10) << 20;
	snprintf(vhd, sizeof(vhd), "%s/bench.vhd", argv[1]);
	snprintf(raw, sizeof(raw), "%s/bench.raw", argv[1]);
	make_image(vhd, "vhd", size);
	make_image(raw, "raw", size);
	printf("workload\tdynamic_vhd\traw_file\tunit\n");
	for (size_t w = 0; w < sizeof(work) / sizeof(work[0]); w++) {
		double a = run(vhd, "vhd", size, work[w]);
		double b = run(raw, "raw", size, work[w]);
		printf("%s\t%.1f\t%.1f\t%s\n", work[w], a, b,
		       strncmp(work[w], "seq", 3) ? "IOPS" : "MiB/s");
		fflush(stdout);
	}
	unlink(vhd);
	unlink(raw);
	return 0;
}
