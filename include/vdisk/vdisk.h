/*
 * libvdisk: read, write and create Microsoft VHD virtual disks (and raw images).
 * This is the one public header. Every function returns 0 (or a count) on
 * success and -errno on failure; the handle keeps a one-line message naming the
 * file, the field and the byte offset (vd_errmsg). The library never prints.
 */
#ifndef VDISK_VDISK_H
#define VDISK_VDISK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with -fvisibility=hidden; what this header declares is the ABI. */
#pragma GCC visibility push(default)

#define VD_VERSION_MAJOR 0
#define VD_VERSION_MINOR 1
#define VD_VERSION_PATCH 0
#define VD_VERSION_STRING "0.1.0"

/* The library's version at run time ("0.1.0"); VD_VERSION_STRING is the header's. */
const char *vd_version(void);

/* A disk handle: one image (and later its parent chain). Not thread-safe. */
struct vd_disk;

/* vd_open flags */
#define VD_OPEN_RDONLY 0x0u
#define VD_OPEN_RDWR 0x1u
/*
 * O_DIRECT on the image opened (not its parents, which are read through the
 * page cache). Any buffer, offset and length still work: unaligned ones go
 * through 4 KiB-aligned bounce buffers (read-modify-write for partial blocks),
 * and the file's unaligned end (the VHD footer) bypasses O_DIRECT. vd_flush
 * still runs fdatasync. Where the file system refuses O_DIRECT (tmpfs before
 * Linux 6.6, some FUSE file systems), vd_open fails with -EINVAL and a message
 * naming the file system rather than silently using the page cache.
 */
#define VD_OPEN_DIRECT 0x2u

/*
 * Write to an image that other images depend on (the parent of a differencing
 * disk or of a checkpoint). Every dependent image then reads changed data: only
 * for experts who know that no child exists any more.
 */
#define VD_OPEN_FORCE 0x4u
/* Open exactly PATH, even when it is a base with checkpoints (not its active state). */
#define VD_OPEN_IMAGE_ONLY 0x8u
/*
 * Open a differencing disk without its parent (to inspect or relink it): info
 * and map work, reads and writes that need the parent fail with -ENOENT.
 */
#define VD_OPEN_NO_PARENT 0x10u

/*
 * Chain errors: a missing parent is -ENOENT (the message lists every path
 * tried), a parent whose UUID differs from the child's record -EUCLEAN (the
 * message names both UUIDs), a loop or a chain deeper than the limit -ELOOP.
 * With VD_OPEN_NO_PARENT, vd_info.parent is where the parent would be found
 * (a file whose UUID matches), or NULL.
 */
/* Parent chains are followed up to this many levels above the image opened. */
#define VD_MAX_CHAIN_DEPTH 256

struct vd_open_opts {
	unsigned flags;	    /* VD_OPEN_* */
	const char *format; /* "vhd", "raw" or NULL to probe */
	/*
	 * I/O engine spec; NULL: $VDISK_ENGINE, else "psync". "psync" (pread/pwrite),
	 * "io_uring[:depth=N]" (liburing), "libaio[:depth=N]" (Linux AIO), "auto"
	 * (io_uring where the kernel allows it, else libaio, else psync), and the
	 * test engines "fault:..." and "crash:..." (README). An engine that cannot
	 * start here fails the open with the reason.
	 */
	const char *engine;
	/*
	 * When PATH is a base disk with checkpoints: NULL opens the active state (the
	 * image that takes writes now); a NAME opens that checkpoint's state, which
	 * is read-only. Ignored with VD_OPEN_IMAGE_ONLY.
	 */
	const char *checkpoint;
};

/*
 * Open PATH. On success *diskp is a handle. On failure the return is -errno and
 * *diskp is still a handle (unless memory ran out, then NULL) that carries the
 * message: call vd_errmsg(*diskp), then vd_close(*diskp). This is SQLite's shape:
 * the reason a file cannot be opened is too useful to lose.
 */
int vd_open(const char *path, const struct vd_open_opts *opts, struct vd_disk **diskp);
/* Flushes (if writable) and frees the handle. Returns the flush result. */
int vd_close(struct vd_disk *disk);

/*
 * Read or write LEN bytes at byte OFFSET of the virtual disk. Any offset and
 * length inside the virtual size; a range past the end is -EINVAL. Returns 0
 * when every byte was transferred.
 */
int vd_pread(struct vd_disk *disk, void *buf, size_t len, uint64_t offset);
int vd_pwrite(struct vd_disk *disk, const void *buf, size_t len, uint64_t offset);
/*
 * Discard (TRIM) LEN bytes at OFFSET: afterwards the range reads as zeros.
 * Whole blocks of a dynamic disk are released (BAT entry cleared, host space
 * punched where the file system allows; compact reclaims the file space);
 * partial blocks are zeroed. In a differencing disk the range is written as
 * zeros over the parent. Raw and fixed images get a hole punched.
 */
int vd_discard(struct vd_disk *disk, uint64_t offset, uint64_t len);

/* Make every completed write durable (data and metadata). */
int vd_flush(struct vd_disk *disk);

/* ---- asynchronous requests (the calls above are waits on these) ---- */

enum vd_aio_op {
	VD_AIO_READ = 0,
	VD_AIO_WRITE = 1,
	VD_AIO_FLUSH = 2,   /* a barrier: waits for the requests before it, then flushes */
	VD_AIO_DISCARD = 3, /* a barrier too */
};

struct vd_aio {
	/* Set by the caller before vd_aio_submit; untouched until completion. */
	int op;		 /* enum vd_aio_op */
	void *buf;	 /* READ: filled; WRITE: read from (must stay valid) */
	size_t len;	 /* any length (split where the disk's layout changes) */
	uint64_t offset; /* any byte offset; a chain is read through */
	void (*done)(struct vd_aio *aio, int res); /* run by vd_aio_poll; may be NULL */
	void *ctx;				   /* the caller's */
	/* Results. */
	int res;      /* 0 or -errno (message in vd_errmsg) */
	int complete; /* 1 once vd_aio_poll has delivered it */
	/* Private to the library. */
	unsigned pending_;
	struct vd_aio *next_;
};

/*
 * Start AIO on DISK. Returns -errno at once for a request that cannot start (a
 * range past the end, a read-only disk), else 0: the request then completes
 * through vd_aio_poll, which sets res and complete and runs done. Bytes already
 * in place go to the I/O engine (io_uring and libaio keep many in flight);
 * work on metadata (allocating a block, the parent's bytes) is done here, in
 * submission order, so a write that allocates a block is ordered before later
 * requests on it. Overlapping reads and writes in flight at once have no
 * defined order, as on any block device.
 */
int vd_aio_submit(struct vd_disk *disk, struct vd_aio *aio);
/*
 * Deliver completed requests (running their done callbacks), waiting until at
 * least MIN have been delivered or nothing is in flight. Returns the number
 * delivered, or -errno. Call it before vd_close: requests not delivered then
 * are lost (their I/O is finished by vd_close).
 */
int vd_aio_poll(struct vd_disk *disk, unsigned min);
/* Engine requests in flight on DISK. */
unsigned vd_aio_inflight(struct vd_disk *disk);

/* The last error's message ("disk.vhd: BAT entry 17 ... (offset 0x...)"). */
const char *vd_errmsg(const struct vd_disk *disk);
/* A short description of a -errno code returned by this library. */
const char *vd_strerror(int rc);

/*
 * Warnings found while opening (footer copies differ, a checksum mismatch in one
 * copy, ...): the image is usable, but a user should hear about them.
 */
int vd_warning_count(const struct vd_disk *disk);
const char *vd_warning(const struct vd_disk *disk, int index);

enum vd_disk_type {
	VD_TYPE_NONE = 0,
	VD_TYPE_FIXED = 2,
	VD_TYPE_DYNAMIC = 3,
	VD_TYPE_DIFFERENCING = 4,
};

struct vd_geometry {
	uint32_t cylinders;
	uint32_t heads;
	uint32_t sectors;
};

struct vd_info {
	const char *format;	  /* "vhd" or "raw" */
	enum vd_disk_type type;	  /* raw images report VD_TYPE_FIXED */
	uint64_t virtual_size;	  /* bytes the guest sees */
	uint64_t current_size;	  /* VHD footer field (== virtual_size unless CHS rule) */
	uint32_t block_size;	  /* dynamic/differencing; 0 otherwise */
	uint64_t allocated_bytes; /* bytes of the disk inside allocated blocks (fixed: size) */
	uint64_t file_size;	  /* bytes of the image file */
	uint8_t uuid[16];
	char creator_app[5];	  /* NUL-terminated; NUL bytes in the field kept as \0 */
	uint32_t creator_version; /* major << 16 | minor */
	uint32_t creator_os;	  /* e.g. 0x5769326B "Wi2k" */
	uint32_t timestamp;	  /* seconds since 2000-01-01 UTC */
	struct vd_geometry geometry;
	int size_from_chs;  /* 1 when virtual_size comes from the CHS geometry */
	const char *parent; /* resolved parent path, or NULL */
	const char *path;   /* the image actually opened (the active one for a base) */
	/* Differencing disks: what the child records of its parent. */
	uint8_t parent_uuid[16];
	uint32_t parent_timestamp; /* VHD epoch; 0 when the writer left it empty */
	const char *parent_name;   /* UTF-8, as stored (may be a Windows path) */
	/* The chain, leaf first: chain[0] is this image, chain[chain_length-1] the base. */
	int chain_length;
	const char *const *chain;
};

int vd_get_info(struct vd_disk *disk, struct vd_info *info);

/* What vd_map says of a byte range. */
enum vd_extent {
	VD_EXTENT_ALLOCATED = 1,   /* data stored in this image */
	VD_EXTENT_UNALLOCATED = 2, /* not stored: zeros, or the parent's data */
	VD_EXTENT_ZERO = 3,	   /* known to read as zeros (a hole in a raw file) */
};

/*
 * Describe the run that starts at OFFSET (at most LEN bytes): returns its kind
 * (> 0) and sets *run_len to its length (> 0), or returns -errno.
 */
int vd_map(struct vd_disk *disk, uint64_t offset, uint64_t len, uint64_t *run_len);

enum vd_compat {
	VD_COMPAT_HYPERV = 0, /* exact size; readable by Hyper-V, QEMU >= 2.6, libvhdi */
	VD_COMPAT_VPC = 1,    /* size rounded down to the CHS geometry (Virtual PC) */
	VD_COMPAT_AZURE = 2,  /* fixed disk, size rounded up to a whole MiB */
};

struct vd_create_opts {
	const char *format;	/* "vhd" (default) or "raw" */
	enum vd_disk_type type; /* VD_TYPE_FIXED, _DYNAMIC (default) or _DIFFERENCING */
	const char *parent;	/* VD_TYPE_DIFFERENCING: the parent image (size comes from it) */
	uint64_t size;		/* virtual size in bytes (multiple of 512 after compat) */
	uint32_t block_size;	/* dynamic: power of two, 512 B .. 256 MiB; 0 = 2 MiB */
	enum vd_compat compat;
	const char *engine; /* as in vd_open_opts */
	/*
	 * Fixed and dynamic: the disk's UUID (16 bytes), for a copy that must stay
	 * the same disk (its children can be re-linked to it); NULL: a new one.
	 */
	const uint8_t *uuid;
};

/* Largest virtual size a VHD can hold (the spec's 2040 GiB cap). */
#define VD_VHD_MAX_SIZE (2040ULL << 30)

/*
 * Create a new image at PATH (refuses to overwrite an existing file) and open it
 * read-write. Same handle rules as vd_open.
 */
int vd_create(const char *path, const struct vd_create_opts *opts, struct vd_disk **diskp);

/*
 * The size a disk created with OPTS would have (after the compat profile's
 * rounding), without creating anything; -EINVAL for an impossible request.
 */
int vd_create_size(const struct vd_create_opts *opts, uint64_t *size);

/*
 * The 512-byte footer that ends a fixed VHD made with OPTS (compat rounding
 * applied; a new UUID), so a tool can stream a fixed disk (data, then this)
 * to a pipe without a temporary file.
 */
int vd_fixed_footer(const struct vd_create_opts *opts, uint8_t footer[512]);

/*
 * Re-link CHILD (a differencing disk) to PARENT, e.g. after the parent moved or
 * was copied: PARENT's UUID must equal the one CHILD records. Writes the parent
 * name, the time stamp and W2ru (relative), W2ku (absolute) and MacX locators.
 * The new time stamp replaces the old one, so a mismatch reported before is gone.
 * Returns 0 or -errno with a message in *errmsg_out (free with vd_free_string).
 */
int vd_set_parent(const char *child, const char *parent, char **errmsg_out);

/*
 * Checkpoints (Hyper-V's semantics) of a base disk DISK, recorded in the
 * manifest DISK.checkpoints beside it (replaced atomically). The active state is
 * a differencing disk (AVHD) that takes every write; each checkpoint is a frozen
 * image whose chain holds that checkpoint's state.
 *  create: the current state becomes checkpoint NAME; a new AVHD becomes active.
 *  apply:  discard the active AVHD's changes; a new AVHD on NAME's state is active.
 *  delete: NAME leaves the tree; every other state stays byte-identical; data
 *          no longer needed separately is merged and unreferenced files removed.
 * Names are 1-255 bytes without control characters, unique in the tree. All
 * return 0 or -errno with a message in *errmsg_out (free with vd_free_string).
 */
int vd_checkpoint_create(const char *disk, const char *name, char **errmsg_out);
int vd_checkpoint_apply(const char *disk, const char *name, char **errmsg_out);
int vd_checkpoint_delete(const char *disk, const char *name, char **errmsg_out);

struct vd_checkpoint {
	const char *name;
	const char *parent; /* the checkpoint this one was taken after, or NULL */
	const char *image;  /* the file holding its newest data (absolute path) */
};

struct vd_checkpoint_tree {
	const char *disk;    /* the base disk (absolute path) */
	const char *active;  /* the image that takes writes now (absolute path) */
	const char *current; /* the checkpoint the active state descends from, or NULL */
	int count;
	struct vd_checkpoint *checkpoints; /* in creation order */
};

/*
 * A disk without checkpoints gives count 0 and active == disk. Deleting the last
 * checkpoint folds the active state back into the base (Hyper-V does the same),
 * so afterwards too active == disk. A missing DISK is -ENOENT.
 */
int vd_checkpoint_list(const char *disk, struct vd_checkpoint_tree **tree, char **errmsg_out);
void vd_checkpoint_tree_free(struct vd_checkpoint_tree *tree);

/* Progress of a long operation: DONE of TOTAL bytes. */
typedef void (*vd_progress_fn)(void *ctx, uint64_t done, uint64_t total);

struct vd_merge_opts {
	const char *into; /* an ancestor of the child; NULL: its parent */
	int keep;	  /* keep the child (it reads the same afterwards) */
	/*
	 * Merge into TARGET, a copy of that ancestor (same UUID, e.g. made with
	 * vd_copy .keep_uuid while the child took the writes), instead of the
	 * ancestor itself: the chain is left as it is (quick storage migration).
	 */
	const char *target;
	vd_progress_fn progress; /* may be NULL */
	void *ctx;
};

/*
 * Merge CHILD (a differencing disk) into its parent, or the run of levels from
 * CHILD up to the ancestor INTO, as Hyper-V's Merge-VHD does: only the data the
 * levels hold is copied; the merged images are removed afterwards (the child
 * too unless KEEP). Refused (-EBUSY) when another child or a checkpoint depends
 * on an image that would change or go. Crash-safe and resumable without a
 * journal: the child reads the same throughout, and running the merge again
 * completes it. Returns 0 or -errno with a message in *errmsg_out.
 */
int vd_merge(const char *child, const struct vd_merge_opts *opts, char **errmsg_out);

/*
 * Change the virtual size of the fixed or dynamic VHD at PATH to SIZE (a
 * multiple of 512), as Hyper-V's Edit Disk does: both footers and the geometry;
 * a dynamic disk's BAT grows into the free space after it (when a data block
 * is in the way, -ENOSPC: moving blocks is not supported yet). Shrinking needs
 * ALLOW_SHRINK and a cut-off part that holds no data. Differencing disks are
 * refused (their size is the parent's). 0 or -errno, message in *errmsg_out.
 */
int vd_resize(const char *path, uint64_t size, int allow_shrink, char **errmsg_out);

struct vd_copy_opts {
	const char *format;	/* "vhd" (default) or "raw" */
	enum vd_disk_type type; /* VD_TYPE_FIXED or _DYNAMIC; NONE: as the source (a
				   differencing source gives a dynamic copy) */
	uint32_t block_size;	/* dynamic: 0 = the source's block size, else 2 MiB */
	enum vd_compat compat;
	const char *checkpoint;	 /* copy this checkpoint's state of SRC (NULL: active) */
	int image_only;		 /* copy exactly SRC, not the active state of its checkpoints */
	int keep_uuid;		 /* the copy is the same disk: children can be re-linked to it */
	vd_progress_fn progress; /* may be NULL; DONE and TOTAL are disk offsets */
	void *ctx;
	/* When *CANCEL turns nonzero (a signal handler), stop: -ECANCELED, no DST. */
	const volatile int *cancel;
};

struct vd_copy_result {
	uint64_t size;		/* virtual size copied */
	uint64_t data_bytes;	/* bytes some layer of the source held (read) */
	uint64_t written_bytes; /* bytes written (zeros are not) */
	int chain_length;	/* images the source's content came from */
};

/*
 * Copy the content of SRC (a chain's, flattened) into a new image DST: raw,
 * fixed or dynamic, any block size. Only what the source holds is read (holes
 * of sparse raw files included), all-zero pieces are not written, and reading
 * overlaps writing. Free space is checked first (-ENOSPC with the figures).
 * DST appears only once the copy is complete and durable. RESULT may be NULL.
 * 0 or -errno with a message in *errmsg_out.
 */
int vd_copy(const char *src, const char *dst, const struct vd_copy_opts *opts,
	    struct vd_copy_result *result, char **errmsg_out);

/* ---- online copy (mirror) of a disk that is being written ---- */

struct vd_mirror;

struct vd_mirror_opts {
	enum vd_disk_type type; /* of the copy: NONE = the source's (dynamic for a chain) */
	uint32_t block_size;	/* dynamic copy: 0 = the source's */
	uint64_t ready_bytes;	/* "ready" once at most this much is left to copy (0: 4 MiB) */
	uint32_t granule;	/* bytes tracked per dirty bit, a multiple of 512 (0: 64 KiB) */
};

struct vd_mirror_status {
	int ready;		   /* the copy is within ready_bytes of the source */
	int error;		   /* -errno once the mirror failed (vd_mirror_complete says why) */
	unsigned passes;	   /* 1 for the first full copy, then one per dirty pass */
	uint64_t copied_bytes;	   /* bytes copied so far, re-copies included */
	uint64_t dirty_bytes;	   /* written since last copied (granule-rounded) */
	uint64_t switchover_ns;	   /* vd_mirror_complete: how long the source's writers waited */
	uint64_t switchover_bytes; /* bytes copied while they waited */
};

/*
 * Start copying SRC, an open disk (a chain is flattened), into the new image
 * DST (same UUID and size: the same disk, moved) in a background thread, while
 * other threads go on using SRC: every vd_pwrite and vd_discard on SRC is
 * tracked and copied again. Handles are safe to share between threads (each
 * call holds the handle's lock). 0 or -errno with a message in *errmsg_out.
 */
int vd_mirror_start(struct vd_disk *src, const char *dst, const struct vd_mirror_opts *opts,
		    struct vd_mirror **mirror, char **errmsg_out);
/* Progress; returns the mirror's error (-errno) or 0. */
int vd_mirror_status(struct vd_mirror *mirror, struct vd_mirror_status *status);
/*
 * Switch over: SRC's writers are held while the last dirty ranges are copied
 * and DST made durable (STATUS->switchover_ns says for how long); then *DSTP is
 * DST, open read-write, and SRC refuses writes (-EROFS) from then on. Frees
 * the mirror. On failure DST is removed and SRC goes on as before.
 */
int vd_mirror_complete(struct vd_mirror *mirror, struct vd_disk **dstp,
		       struct vd_mirror_status *status, char **errmsg_out);
/* Stop, remove the incomplete copy and free the mirror (vd_close of SRC does this too). */
void vd_mirror_cancel(struct vd_mirror *mirror);

/* A byte range of the virtual disk. */
struct vd_range {
	uint64_t offset;
	uint64_t length;
};

struct vd_compact_opts {
	/*
	 * Ranges the caller knows hold nothing of value (the guest file system's
	 * free space): blocks lying wholly inside them are dropped even when not
	 * zero. NULL/0: only zeros (and, in a differencing disk, sectors equal to
	 * the parent's) are dropped.
	 */
	const struct vd_range *free_ranges;
	size_t nfree;
	vd_progress_fn progress; /* may be NULL */
	void *ctx;
};

struct vd_compact_result {
	uint64_t blocks_dropped;  /* blocks no longer allocated */
	uint64_t sectors_cleared; /* differencing: sectors now read from the parent again */
	uint64_t blocks_moved;	  /* blocks moved into holes lower in the file */
	uint64_t bytes_before;	  /* file size */
	uint64_t bytes_after;
};

/*
 * Compact the dynamic or differencing VHD at PATH (exactly that image), as
 * Optimize-VHD does: blocks that read as zeros (dynamic) or as the parent
 * reads (differencing) are dropped, differencing sectors equal to the
 * parent's go back to the parent, the last blocks move into the holes and the
 * file is cut. The disk reads the same throughout, at any crash. Fixed disks
 * and blktap disks with a batmap are refused. RESULT (may be NULL) says what
 * changed. 0 or -errno, message in *errmsg_out.
 */
int vd_compact(const char *path, const struct vd_compact_opts *opts,
	       struct vd_compact_result *result, char **errmsg_out);

/* A structural problem found by vd_check. */
struct vd_problem {
	const char *field;   /* "footer.checksum", "bat[17]", ... */
	uint64_t offset;     /* byte offset in the file, or UINT64_MAX if none */
	const char *message; /* one line, without the file name */
	int repairable;	     /* reserved for check --repair */
};

enum vd_check_profile {
	VD_CHECK_DEFAULT = 0,
	VD_CHECK_AZURE = 1, /* also report every reason Azure would refuse the disk */
};

typedef void (*vd_problem_fn)(void *ctx, const struct vd_problem *problem);

/*
 * Check the structure of the image at PATH without trusting it: every problem is
 * reported through FN. Returns the number of problems (>= 0), or -errno when the
 * file cannot be read at all (message in *errmsg_out, a static or malloc'd string
 * the caller frees with vd_free_string if non-NULL).
 */
int vd_check_path(const char *path, enum vd_check_profile profile, vd_problem_fn fn, void *ctx,
		  char **errmsg_out);
void vd_free_string(char *s);

/*
 * check --repair: fix what can be fixed without losing data (restore the end
 * footer from the copy at 0, rewrite the copy at 0, clear BAT entries that
 * point outside the file) and report each fix through FN (repairable = 1).
 * Refuses with -EUCLEAN and a message, changing nothing, when a fix would lose
 * data (overlapping blocks) or the image cannot be read at all. Returns the
 * number of fixes (0: nothing needed fixing).
 */
int vd_repair_path(const char *path, vd_problem_fn fn, void *ctx, char **errmsg_out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif
#endif /* VDISK_VDISK_H */
