/*
 * Helpers shared by the libFuzzer targets: a private scratch directory with a
 * fixed parent image in it, deterministic VHD structure builders, and the
 * read-only walk over an opened image whose properties every target checks.
 */
#ifndef VD_FUZZ_UTIL_H
#define VD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk/vdisk.h"
#include "vhd/vhd_int.h"

#define FZ_ALIGN512(v) (((v) + 511) / 512 * 512)

/* A property the library must keep on any input: report it and abort (a finding). */
#define FZ_ASSERT(cond, ...)                                                                       \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                           \
	} while (0)

_Noreturn void fz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * The parent every differencing input may name: "parent.vhd" beside the image,
 * a dynamic disk of FZ_PARENT_SIZE bytes with 4 KiB blocks, some allocated and
 * one half-present, whose UUID is FZ_PARENT_UUID (make-seeds.py uses the same).
 */
#define FZ_PARENT_NAME "parent.vhd"
#define FZ_PARENT_UUID "fuzz.parent.uuid"
#define FZ_PARENT_SIZE (64u * 4096u)
#define FZ_PARENT_BLOCK 4096u

/* The scratch directory (created on first use with the parent in it, removed at exit). */
const char *fz_dir(void);
/* "DIR/NAME" into OUT. */
void fz_path(const char *name, char *out, size_t len);

/* A file NAME in the scratch directory, emptied; returns the fd (aborts on failure). */
int fz_file_create(const char *name);
void fz_file_put(int fd, const void *buf, size_t len, uint64_t off);
/* Sets the final size (sparse up to it) and closes. */
void fz_file_finish(int fd, uint64_t size);
/* Writes the whole of DATA as NAME. */
void fz_file_write(const char *name, const uint8_t *data, size_t len);

/* A footer as a writer would make it, deterministic (fixed UUID and time stamp). */
void fz_footer_init(struct vd_footer *f, uint32_t disk_type, uint64_t size, uint64_t data_offset);
/* A dynamic header with an empty parent record. */
void fz_dynhdr_init(struct vd_dynhdr *h, uint64_t table_offset, uint32_t entries,
		    uint32_t block_size);
/* Points H at the scratch parent: UUID, UTF-16BE name and a W2ru locator at LOC_OFFSET. */
void fz_dynhdr_link_parent(struct vd_dynhdr *h, uint64_t loc_offset, uint8_t loc[64],
			   uint32_t *loc_len);

/*
 * What a caller knows of an image beyond the public API: an oracle for its
 * bytes (NULL if none). ORACLE fills BUF with the LEN bytes the disk must read
 * at OFF and returns 0, or returns -1 when it cannot tell.
 */
struct fz_expect {
	int (*oracle)(void *ctx, uint8_t *buf, size_t len, uint64_t off);
	void *ctx;
};

/*
 * Open PATH with FLAGS (read-only, psync) and check what must hold for any
 * image: a message on failure; consistent info; map runs that tile the disk
 * and agree with reads; one read equal to the same bytes read in pieces; the
 * range checks. PICK varies the offsets looked at (deterministically).
 * Returns the vd_open result.
 */
int fz_exercise(const char *path, unsigned flags, uint32_t pick, const struct fz_expect *expect);
/* vd_check_path with both profiles: the count matches the problems reported. */
void fz_check(const char *path);

/*
 * vd_repair_path on PATH (at most 4 MiB): a refusal has a message and changes no
 * byte; a repair reports each fix as repairable, keeps every byte the disk read
 * before (without its parent), and leaves nothing for a second repair to fix.
 */
void fz_repair(const char *path);

/* FNV-1a of DATA: a deterministic PICK from the input. */
uint32_t fz_hash(const uint8_t *data, size_t len);

#endif /* VD_FUZZ_UTIL_H */
