/*
 * Online copy and storage migration with a writer thread, through the public
 * API. Oracle: a plain in-memory model of every write the writer made; the
 * destination must read exactly as the model after the switch-over, and the
 * source (or the chain the VM used) as well.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vdisk/vdisk.h"
#include "scratch.h"

#define MiB (1ull << 20)
#define SIZE (64 * MiB)

/* ---- the writer: a VM's disk I/O, recorded in a model ---- */

struct writer {
	struct vd_disk *disk;
	uint8_t *model;
	pthread_mutex_t mu; /* holds the disk between two writes while paused */
	atomic_int stop, writes, failed;
	unsigned seed;
	pthread_t th;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[65536];

	while (!atomic_load(&w->stop)) {
		unsigned r = rand_r(&w->seed);
		size_t len = 512 + (size_t)(r % 64) * 1000;
		uint64_t off = ((uint64_t)rand_r(&w->seed) * 4099) % (SIZE - len);
		int rc;

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(r + i * 7);
		if (r % 17 == 0)
			memset(buf, 0, len); /* zeros over data must reach the copy too */
		pthread_mutex_lock(&w->mu);
		rc = r % 23 == 0 ? vd_discard(w->disk, off, len)
				 : vd_pwrite(w->disk, buf, len, off);
		if (rc == 0 && r % 23 == 0)
			memset(w->model + off, 0, len);
		else if (rc == 0)
			memcpy(w->model + off, buf, len);
		if (rc == 0 && r % 11 == 0)
			rc = vd_flush(w->disk);
		pthread_mutex_unlock(&w->mu);
		if (rc < 0) {
			atomic_store(&w->failed, rc);
			break;
		}
		atomic_fetch_add(&w->writes, 1);
	}
	return NULL;
}

static void writer_start(struct writer *w, struct vd_disk *d, uint8_t *model, unsigned seed)
{
	w->disk = d;
	w->model = model;
	w->seed = seed;
	atomic_store(&w->stop, 0);
	atomic_store(&w->writes, 0);
	atomic_store(&w->failed, 0);
	pthread_mutex_init(&w->mu, NULL);
	cr_assert_eq(pthread_create(&w->th, NULL, write_loop, w), 0);
}

static void writer_stop(struct writer *w)
{
	atomic_store(&w->stop, 1);
	pthread_join(w->th, NULL);
	pthread_mutex_destroy(&w->mu);
	cr_assert_eq(atomic_load(&w->failed), 0, "a write of the VM failed: %d",
		     atomic_load(&w->failed));
}

static void wait_writes(struct writer *w, int n)
{
	int start = atomic_load(&w->writes);

	while (atomic_load(&w->writes) - start < n && !atomic_load(&w->failed))
		usleep(1000);
}

static void assert_reads(struct vd_disk *d, const uint8_t *model, const char *what)
{
	uint8_t *got = malloc(SIZE);

	cr_assert_eq(vd_pread(d, got, SIZE, 0), 0, "%s: %s", what, vd_errmsg(d));
	uint64_t i = 0;
	uint8_t g = 0, m = 0;

	while (i < SIZE && got[i] == model[i])
		i++;
	if (i < SIZE) {
		g = got[i];
		m = model[i];
	}
	free(got);
	cr_assert_eq(i, SIZE, "%s: byte %llu reads 0x%02x, the writer wrote 0x%02x", what,
		     (unsigned long long)i, g, m);
}

/* A disk half full of data, and the model of it. */
static struct vd_disk *make_disk(const char *name, enum vd_disk_type type, uint8_t *model)
{
	struct vd_create_opts o = {.type = type, .size = SIZE, .block_size = 2 * MiB};
	char p[PATH_MAX];
	struct vd_disk *d;

	scratch_path(p, name);
	cr_assert_eq(vd_create(p, &o, &d), 0, "%s", vd_errmsg(d));
	for (uint64_t off = 0; off < SIZE; off += 4 * MiB) {
		for (uint64_t i = 0; i < 2 * MiB; i++)
			model[off + i] = (uint8_t)(i * 31 + off / MiB);
		cr_assert_eq(vd_pwrite(d, model + off, 2 * MiB, off), 0);
	}
	cr_assert_eq(vd_flush(d), 0);
	return d;
}

static void no_problem(void *ctx, const struct vd_problem *p)
{
	(void)ctx;
	cr_log_error("check: %s: %s", p->field, p->message);
}

TestSuite(mirror, .init = scratch_init, .fini = scratch_fini, .timeout = 120);

/* The live story: copy while writing, converge, switch over, go on with the copy. */
static void mirror_while_writing(enum vd_disk_type type)
{
	uint8_t *model = calloc(1, SIZE);
	struct vd_disk *src = make_disk("src.vhd", type, model), *dst;
	struct vd_mirror_status st;
	struct vd_mirror *m;
	struct writer w;
	char p[PATH_MAX], *msg = NULL;

	scratch_path(p, "dst.vhd");
	writer_start(&w, src, model, 7);
	wait_writes(&w, 200);
	cr_assert_eq(vd_mirror_start(src, p, NULL, &m, &msg), 0, "%s", msg ? msg : "");
	/* Ready comes while the writer goes on; then more writes land on the source. */
	do {
		usleep(2000);
		cr_assert_eq(vd_mirror_status(m, &st), 0);
	} while (!st.ready);
	wait_writes(&w, 300);
	/* The VM pauses its I/O (as a hypervisor does at switch-over) and switches. */
	pthread_mutex_lock(&w.mu);
	cr_assert_eq(vd_mirror_complete(m, &dst, &st, &msg), 0, "%s", msg ? msg : "");
	cr_assert(st.passes >= 2, "the writes during the copy took at least one more pass");
	cr_assert_gt(st.switchover_ns, 0);
	cr_log_info("switch-over held writers %.3f ms, copied %llu bytes then; %u passes",
		    st.switchover_ns / 1e6, (unsigned long long)st.switchover_bytes, st.passes);
	/* The source takes no more writes: they would be lost. */
	cr_assert_eq(vd_pwrite(src, model, 512, 0), -EROFS);
	cr_assert(strstr(vd_errmsg(src), "switched over"), "%s", vd_errmsg(src));
	w.disk = dst;
	pthread_mutex_unlock(&w.mu);
	wait_writes(&w, 100);
	writer_stop(&w);
	assert_reads(dst, model, "the copy");
	cr_assert_eq(vd_close(dst), 0);
	cr_assert_eq(vd_close(src), 0);
	/* Reopened from the file: what was flushed is there, and the copy is clean. */
	cr_assert_eq(vd_open(p, NULL, &dst), 0, "%s", vd_errmsg(dst));
	assert_reads(dst, model, "the copy, reopened");
	vd_close(dst);
	cr_assert_eq(vd_check_path(p, VD_CHECK_DEFAULT, no_problem, NULL, &msg), 0);
	free(model);
}

Test(mirror, dynamic_while_writing)
{
	mirror_while_writing(VD_TYPE_DYNAMIC);
}

Test(mirror, fixed_while_writing)
{
	mirror_while_writing(VD_TYPE_FIXED);
}

/* Cancelled (or the source closed): the incomplete copy is gone, the source unchanged. */
Test(mirror, cancel_removes_the_copy)
{
	uint8_t *model = calloc(1, SIZE);
	struct vd_disk *src = make_disk("src.vhd", VD_TYPE_DYNAMIC, model);
	struct vd_mirror *m;
	char p[PATH_MAX], *msg = NULL;

	scratch_path(p, "dst.vhd");
	cr_assert_eq(vd_mirror_start(src, p, NULL, &m, &msg), 0, "%s", msg ? msg : "");
	cr_assert_eq(access(p, F_OK), 0);
	vd_mirror_cancel(m);
	cr_assert_neq(access(p, F_OK), 0, "the incomplete copy was left behind");
	cr_assert_eq(vd_pwrite(src, model, 4096, 0), 0, "the source still takes writes");
	cr_assert_eq(vd_mirror_start(src, p, NULL, &m, &msg), 0, "%s", msg ? msg : "");
	cr_assert_eq(vd_close(src), 0);
	cr_assert_neq(access(p, F_OK), 0, "closing the source must cancel its mirror");
	free(model);
}

/*
 * Quick storage migration at disk level: a checkpoint freezes the base; the
 * base is copied (same disk) while the VM writes to the checkpoint's AVHD;
 * then the VM pauses, the AVHD is merged into the copy, and the copy reads as
 * the VM's disk did.
 */
Test(mirror, quick_storage_migration)
{
	uint8_t *model = calloc(1, SIZE);
	struct vd_disk *vm = make_disk("vm.vhd", VD_TYPE_DYNAMIC, model), *moved;
	struct vd_copy_opts co = {.image_only = 1, .keep_uuid = 1};
	struct vd_merge_opts mo = {.keep = 1};
	struct vd_open_opts rw = {.flags = VD_OPEN_RDWR};
	struct vd_checkpoint_tree *tree;
	struct timespec t0, t1;
	struct writer w;
	char p[PATH_MAX], dst[PATH_MAX], avhd[PATH_MAX], *msg = NULL;
	struct vd_info info;

	scratch_path(p, "vm.vhd");
	scratch_path(dst, "dest"); /* the destination storage */
	cr_assert_eq(mkdir(dst, 0755), 0);
	scratch_path(dst, "dest/vm.vhd");
	cr_assert_eq(vd_close(vm), 0);
	cr_assert_eq(vd_checkpoint_create(p, "before-move", &msg), 0, "%s", msg ? msg : "");
	cr_assert_eq(vd_checkpoint_list(p, &tree, &msg), 0);
	vd_checkpoint_tree_free(tree);
	/* The VM's disk is now the AVHD (vd_open of the base opens its active state). */
	cr_assert_eq(vd_open(p, &rw, &vm), 0, "%s", vd_errmsg(vm));
	cr_assert_eq(vd_get_info(vm, &info), 0);
	snprintf(avhd, sizeof(avhd), "%s", info.path);
	cr_assert_str_neq(avhd, p, "writes must go to the AVHD");
	writer_start(&w, vm, model, 11);
	cr_assert_eq(vd_copy(p, dst, &co, NULL, &msg), 0, "%s", msg ? msg : "");
	wait_writes(&w, 200);
	writer_stop(&w); /* the VM pauses */
	cr_assert_eq(vd_close(vm), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	mo.into = p;
	mo.target = dst;
	cr_assert_eq(vd_merge(avhd, &mo, &msg), 0, "%s", msg ? msg : "");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_log_info("downtime (merge of the AVHD into the copy): %.1f ms",
		    (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	cr_assert_eq(vd_open(dst, NULL, &moved), 0, "%s", vd_errmsg(moved));
	assert_reads(moved, model, "the migrated disk");
	vd_close(moved);
	/* The source chain is untouched: the VM's disk still reads the same there. */
	cr_assert_eq(vd_open(p, NULL, &vm), 0, "%s", vd_errmsg(vm));
	assert_reads(vm, model, "the source after migration");
	vd_close(vm);
	/* A copy of another disk is refused as a merge target. */
	scratch_path(dst, "other.vhd");
	{
		struct vd_create_opts o = {.type = VD_TYPE_DYNAMIC, .size = SIZE};
		struct vd_disk *x;

		cr_assert_eq(vd_create(dst, &o, &x), 0);
		vd_close(x);
	}
	mo.target = dst;
	cr_assert_eq(vd_merge(avhd, &mo, &msg), -EINVAL);
	cr_assert(msg && strstr(msg, "not a copy"), "%s", msg ? msg : "");
	vd_free_string(msg);
	free(model);
}
