/*
 * Internals shared by the core, the format drivers and the I/O engines: the disk
 * handle, the driver and engine tables, image files and error reporting.
 */
#ifndef VD_VDISK_INT_H
#define VD_VDISK_INT_H

#include <stdarg.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "vdisk/vdisk.h"

/* ---- I/O engines: a table of functions, one engine a file under io/ ---- */

enum vd_io_op { VD_IO_READ, VD_IO_WRITE, VD_IO_FSYNC };

struct vd_io_req {
	enum vd_io_op op;
	int fd;
	void *buf;
	size_t len;
	uint64_t offset;
	/* Called from reap with the bytes moved or -errno. */
	void (*done)(struct vd_io_req *req, ssize_t res);
	void *opaque;
	ssize_t res;		/* engine-private until done runs */
	struct vd_io_req *next; /* engine-private queueing */
};

struct vd_io_engine_ops {
	const char *name;
	size_t state_size;
	/*
	 * 0, or -errno with a reason in ERR (an engine that cannot work here).
	 * OPTIONS is what followed "name:" in the engine spec ("" if nothing); PATH
	 * the image file the engine serves (wrapping engines filter or log by it).
	 */
	int (*init)(void *state, const char *options, const char *path, char *err, size_t errlen);
	void (*fini)(void *state);
	int (*submit)(void *state, struct vd_io_req *req);
	/* Complete at least MIN requests (calling their done); returns how many. */
	int (*reap)(void *state, unsigned min);
};

struct vd_io_engine {
	const struct vd_io_engine_ops *ops;
	void *state;
};

const struct vd_io_engine_ops *vd_io_engine_find(const char *name);
/*
 * Start the engine SPEC ("name" or "name:options", e.g. "fault:nth=3,err=ENOSPC";
 * NULL or "": $VDISK_ENGINE, else psync) for the file PATH.
 */
int vd_io_engine_start(const char *spec, const char *path, struct vd_io_engine **out, char *err,
		       size_t errlen);
/* Wrapping engines: the value of KEY in "k=v,k=v" OPTIONS into OUT; 1 if present. */
int vd_io_option(const char *options, const char *key, char *out, size_t len);
/* Run one request to completion on ENG (for engines that wrap another). */
ssize_t vd_io_run(struct vd_io_engine *eng, struct vd_io_req *req);
void vd_io_engine_stop(struct vd_io_engine *eng);

/* ---- image files: an fd driven through an engine, with synchronous helpers ---- */

struct vd_file {
	int fd;
	char *path;
	uint64_t size; /* kept current by vd_file_pwrite */
	struct vd_io_engine *eng;
	/*
	 * Opened O_DIRECT (VD_OPEN_DIRECT): vd_file_pread/pwrite move unaligned
	 * ranges through VD_DIRECT_ALIGN-aligned bounce buffers (read-modify-write
	 * for partial blocks) and the unaligned end of the file without O_DIRECT.
	 */
	int direct;
};

/* Buffer, offset and length alignment for O_DIRECT: any logical block size up to 4 KiB. */
#define VD_DIRECT_ALIGN 4096u

/* Whole transfers: 0 or -errno; a read past end of file is -EIO. */
int vd_file_pread(struct vd_file *f, void *buf, size_t len, uint64_t offset);
int vd_file_pwrite(struct vd_file *f, const void *buf, size_t len, uint64_t offset);
int vd_file_sync(struct vd_file *f);
/* Punch a hole (the range then reads as zeros); 0, or -EOPNOTSUPP where impossible. */
int vd_file_punch(struct vd_file *f, uint64_t offset, uint64_t len);
/* Data or hole runs of a file region (SEEK_DATA/SEEK_HOLE): a VD_EXTENT_* kind. */
int vd_file_map_holes(struct vd_file *f, uint64_t offset, uint64_t len, uint64_t *run_len);

/* ---- parent links, as a differencing disk records them ---- */

#define VD_PATH_MAX 4096

struct vd_parent_ref {
	uint8_t uuid[16];
	uint32_t timestamp;
	char name[VD_PATH_MAX]; /* parent name, UTF-8 ("" if none) */
	int nloc;
	struct {
		uint32_t code; /* VD_LOC_* of vhd_int.h */
		char path[VD_PATH_MAX];
	} loc[8];
};

/* What a new or re-linked child records of its parent. */
struct vd_parent_link {
	uint8_t uuid[16];
	uint32_t timestamp;
	const char *abs_path; /* absolute, for W2ku and MacX */
	const char *rel_path; /* relative to the child's directory, for W2ru */
	const char *name;     /* the parent name field */
};

/* ---- format drivers: a table of functions (SQLite's io_methods, QEMU's BlockDriver) ---- */

struct vd_disk;

struct vd_driver {
	const char *name;
	size_t state_size;
	/* Score how well the first and last bytes match this format (0 = not at all). */
	int (*probe)(const uint8_t *head, size_t head_len, const uint8_t *tail, size_t tail_len,
		     uint64_t file_size);
	int (*open)(struct vd_disk *disk, void *state, struct vd_file *file, unsigned flags);
	void (*close)(void *state);
	int (*info)(void *state, struct vd_info *info);
	/* See vd_map: returns a VD_EXTENT_* kind and the run length. */
	int (*map)(void *state, uint64_t offset, uint64_t len, uint64_t *run_len);
	/* Ranges are inside the virtual size (the core checks). */
	int (*pread)(void *state, void *buf, size_t len, uint64_t offset);
	int (*pwrite)(void *state, const void *buf, size_t len, uint64_t offset);
	int (*flush)(void *state);
	/* Make a range read as zeros, releasing space where possible (may be NULL). */
	int (*discard)(void *state, uint64_t offset, uint64_t len);
	/* Lay out a new image in FILE (empty, opened read-write). */
	int (*create)(struct vd_disk *disk, struct vd_file *file,
		      const struct vd_create_opts *opts);
	/* A differencing disk's record of its parent: 1 (filled), 0 (no parent), -errno. */
	int (*get_parent)(void *state, struct vd_parent_ref *ref);
	/* Rewrite that record (parent UUID included); the image is open read-write. */
	int (*set_parent)(void *state, const struct vd_parent_link *link);
	/* Lay out a differencing disk of SIZE on the parent LINK. */
	int (*create_child)(struct vd_disk *disk, struct vd_file *file, uint64_t size,
			    uint32_t block_size, const struct vd_parent_link *link);
	/* Extra structural checks beyond what open verifies (may be NULL). */
	void (*check)(void *state, enum vd_check_profile profile, struct vd_disk *disk);
	/* Fix what loses no data (opened in check mode, read-write); notes each fix. */
	int (*repair)(void *state, struct vd_disk *disk);
	/*
	 * How to serve the start of [OFF, OFF+LEN) asynchronously: VD_PLAN_FILE (the
	 * bytes are at *FILE_OFF in the image file), VD_PLAN_ZERO (a read: zeros) or
	 * VD_PLAN_SLOW (through pread/pwrite, synchronously); *RUN (> 0, <= LEN) bytes
	 * are covered. NULL: everything is slow.
	 */
	int (*plan)(void *state, int write, uint64_t off, uint64_t len, uint64_t *file_off,
		    uint64_t *run);
};

enum { VD_PLAN_FILE = 1, VD_PLAN_ZERO = 2, VD_PLAN_SLOW = 3 };

extern const struct vd_driver vd_raw_driver;
extern const struct vd_driver vd_vhd_driver;

/* ---- the handle ---- */

/* Internal open flag: collect per-entry problems as warnings and go on (vd_check_path). */
#define VD_OPEN_CHECK_ 0x40000000u
/* Internal: a writer the library orders itself against a reader of the same file. */
#define VD_OPEN_NOLOCK_ 0x20000000u

struct vd_note {
	char *field;
	uint64_t offset;
	char *message;
};

struct vd_disk {
	char *path;
	char *final_path;	/* vd_create: the name the temporary file gets at the end */
	struct vd_disk *parent; /* opened read-only by the core (avhd/chain.c) */
	struct vd_disk *child;	/* the image that opened this one as its parent */
	dev_t dev;		/* identity of the file, to detect loops */
	ino_t ino;
	int depth;    /* 0 for the image opened by the caller */
	char **chain; /* paths, leaf first, for vd_info */
	int chain_length;
	char *parent_name; /* for vd_info */
	char *parent_hint; /* VD_OPEN_NO_PARENT: where the parent would be found */
	unsigned flags;
	const struct vd_driver *drv;
	void *state;
	struct vd_file file;
	int file_open;
	uint64_t virtual_size;
	char errmsg[512];
	char err_field[64];
	uint64_t err_offset;
	struct vd_note *warnings;
	int nwarnings;
	pthread_mutex_t lock;	 /* serializes the public calls on this handle */
	unsigned aio_inflight;	 /* engine requests of vd_aio pieces not yet complete */
	struct vd_aio *aio_done; /* completed, callbacks not yet run (vd_aio_poll) */
	struct vd_aio *aio_last;
	struct vd_mirror *mirror; /* writes are reported to it while a mirror runs */
	char *switched_to;	  /* a mirror switched over to this copy: no more writes */
	char *engine;		  /* the engine spec the caller gave (NULL: the default) */
};

/* disk.c, for aio.c: the synchronous paths one piece of a request takes. */
int vd_disk_check_range_(struct vd_disk *d, size_t len, uint64_t offset, const char *what);
int vd_disk_writable_(struct vd_disk *d);
int vd_disk_slow_pread_(struct vd_disk *d, void *buf, size_t len, uint64_t offset);
int vd_disk_discard_(struct vd_disk *d, uint64_t offset, uint64_t len);
int vd_disk_flush_(struct vd_disk *d);
/* aio.c: wait until no piece of D is in flight (before a flush or a discard). */
int vd_aio_drain_(struct vd_disk *d);

/* The handle's lock (disk.c): recursive, set up when the handle is made. */
void vd_lock_init_(struct vd_disk *d);
/* A write or discard of the mirror's source covered [OFF, OFF+LEN) (merge/mirror.c). */
void vd_mirror_mark_(struct vd_mirror *m, uint64_t off, uint64_t len);

/*
 * Set the handle's message: "PATH: <fmt>", remembering FIELD and OFFSET (UINT64_MAX
 * for none) for check. Returns RC so callers can `return vd_error(...)`.
 */
int vd_error(struct vd_disk *disk, int rc, const char *field, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* The handle's message without the "PATH: " prefix. */
const char *vd_errmsg_bare(const struct vd_disk *disk);
/* Record a warning (image usable, user should know). */
void vd_warn(struct vd_disk *disk, const char *field, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * The bytes a differencing disk does not hold, from its parent: zeros past the
 * parent's end; -ENOENT when the parent was not opened (VD_OPEN_NO_PARENT).
 */
int vd_backing_pread(struct vd_disk *disk, void *buf, size_t len, uint64_t offset);

/* vd_open for the parent of CHILD (depth, loop detection, shared lock). */
int vd_open_child_parent(const char *path, const struct vd_open_opts *opts, struct vd_disk *child,
			 struct vd_disk **diskp);
/* Fill a link to PARENT_PATH as CHILD_PATH should record it (abs/rel buffers of LEN). */
int vd_parent_link_for(const char *child_path, const char *parent_path, struct vd_parent_link *link,
		       char *abs, char *rel, size_t len);
/* set-parent; CHECK_UUID 0 re-points a child at a new parent (checkpoint merges). */
int vd_relink(const char *child, const char *parent, int check_uuid, char **errmsg);

/* Chains (avhd/chain.c): open the parent of a just-opened differencing disk. */
int vd_chain_open_parent(struct vd_disk *disk, unsigned flags);
void vd_chain_close(struct vd_disk *disk);
/*
 * Copy into TARGET the runs the layers of TOP's chain above STOP hold, read
 * through TOP (merge/merge.c). STOP is TARGET itself, or the image TARGET copies.
 */
int vd_copy_layers(struct vd_disk *top, struct vd_disk *stop, struct vd_disk *target,
		   vd_progress_fn progress, void *ctx);
/* 1 when something besides ABOVE (a child image, a checkpoint) depends on D; WHO says what. */
int vd_chain_other_dependent(struct vd_disk *d, const struct vd_disk *above, char *who, size_t len);
/* Refuse writing an image that a child or a checkpoint depends on (-EBUSY). */
int vd_chain_check_dependents(struct vd_disk *disk);
/* A chain-wide map: ALLOCATED where any layer holds data. */
int vd_chain_map(struct vd_disk *disk, uint64_t offset, uint64_t len, uint64_t *run_len);
/* Checkpoints (avhd/ckpt.c): is FILE in DIR a frozen image of a tree there (WHY says which)? */
int vd_ckpt_is_frozen(const char *dir, const char *file, char *why, size_t len);
/* Checkpoints (avhd/ckpt.c): the image vd_open should open for PATH, malloc'd. */
int vd_ckpt_resolve(struct vd_disk *disk, const char *checkpoint, unsigned *flags, char **image);

/* vd_create_size, with the reason a request is impossible in WHY. */
int vd_create_size_msg(const struct vd_create_opts *o, uint64_t *size, char *why, size_t whylen);

/* 1 when the N bytes at P are all zero (N may be 0). */
static inline int vd_is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* Sizes for messages: "16 MiB". */
void vd_human_size(uint64_t bytes, char *out, size_t outlen);

#endif /* VD_VDISK_INT_H */
