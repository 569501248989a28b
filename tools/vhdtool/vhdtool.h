/*
 * vhdtool internals shared by the subcommands: exit codes, the subcommand entry
 * points, and the helpers in util.c (sizes, errors, progress, map walking, I/O).
 */
#ifndef VHDTOOL_H
#define VHDTOOL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <jansson.h>

#include <vdisk/vdisk.h>

/* Exit codes are part of the interface: scripts test them. */
#define VT_EXIT_OK 0
#define VT_EXIT_DIFF 1 /* check found problems, compare found a difference */
#define VT_EXIT_ERROR 2

/* Big enough for 4 MiB of I/O per call without a huge stack or RSS. */
#define VT_CHUNK (4u << 20)

/* Subcommands: argv[0] is the subcommand name; they return the exit code. */
int vt_cmd_create(int argc, char **argv);
int vt_cmd_info(int argc, char **argv);
int vt_cmd_convert(int argc, char **argv);
int vt_cmd_read(int argc, char **argv);
int vt_cmd_write(int argc, char **argv);
int vt_cmd_compare(int argc, char **argv);
int vt_cmd_check(int argc, char **argv);
int vt_cmd_map(int argc, char **argv);
int vt_cmd_set_parent(int argc, char **argv);
int vt_cmd_checkpoint(int argc, char **argv);
int vt_cmd_doctor(int argc, char **argv);
int vt_cmd_merge(int argc, char **argv);
int vt_cmd_expand(int argc, char **argv);
int vt_cmd_discard(int argc, char **argv);
int vt_cmd_compact(int argc, char **argv);
int vt_cmd_copy(int argc, char **argv);

/* Errors: each prints one line on stderr and returns VT_EXIT_ERROR. */
int vt_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vt_disk_error(const struct vd_disk *disk, const char *path, int rc);
int vt_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int vt_getopt_error(const char *cmd, int opt, char **argv);
/* Print MSG, prefixed with PATH unless MSG already starts with it. */
int vt_path_error(const char *path, const char *msg);
/*
 * For the calls that return a message through char **errmsg_out: prints it (or
 * vd_strerror(RC)) for PATH, frees it, returns VT_EXIT_ERROR.
 */
int vt_errmsg_error(const char *path, int rc, char *errmsg);

/* Sizes: "16M", "16MiB", "4096" (powers of 1024). Returns 0 or -1. */
int vt_parse_size(const char *text, uint64_t *out);
/* Parse a size option or print a usage error; returns 0 or VT_EXIT_ERROR. */
int vt_size_arg(const char *cmd, const char *option, const char *text, uint64_t *out);
/* "16 MiB", "1.5 GiB", "512 B" into BUF. */
const char *vt_human_size(uint64_t bytes, char *buf, size_t len);
/* "16 MiB (16777216 bytes)" into BUF. */
const char *vt_size_and_bytes(uint64_t bytes, char *buf, size_t len);

int vt_parse_compat(const char *text, enum vd_compat *out);
const char *vt_compat_name(enum vd_compat compat);
const char *vt_type_name(enum vd_disk_type type);
const char *vt_extent_name(int kind);

/* Seconds from 1970 to 2000-01-01 UTC, the VHD time stamp epoch. */
#define VT_VHD_EPOCH 946684800
/* A footer UUID in raw byte order (as stored), 8-4-4-4-12. */
const char *vt_uuid_text(const uint8_t uuid[16], char out[37]);
int vt_uuid_is_null(const uint8_t uuid[16]);
/* A VHD time stamp as "2026-11-30 11:00:35 UTC". */
const char *vt_time_text(uint32_t vhd_time, char out[32]);

/* Open PATH with vd_open; on failure prints the error and returns VT_EXIT_ERROR. */
int vt_open(const char *path, unsigned flags, struct vd_disk **diskp, struct vd_info *info);
/* The same, read-only, for checkpoint NAME's state of PATH (NULL: the active state). */
int vt_open_state(const char *path, const char *checkpoint, struct vd_disk **diskp,
		  struct vd_info *info);

/*
 * One vd_map step, checked: sets *kind and *run_len (0 < run_len <= len). A
 * library answer outside that contract is reported as an error rather than
 * allowed to loop forever.
 */
int vt_map_step(struct vd_disk *disk, const char *path, uint64_t offset, uint64_t len, int *kind,
		uint64_t *run_len);
/*
 * 1 when a run of KIND reads as zeros. On a chain vd_map answers for every
 * layer, so UNALLOCATED means no layer holds the range: zeros there too.
 */
int vt_run_is_zero(int kind);

int vt_is_zero(const void *buf, size_t len);
/* Full write/read on a file descriptor, retrying short transfers and EINTR. */
int vt_write_full(int fd, const void *buf, size_t len);
/* Reads until LEN bytes or EOF; returns bytes read or -errno. */
ssize_t vt_read_full(int fd, void *buf, size_t len);

/* A progress bar on stderr, drawn only when asked and stderr is a terminal. */
struct vt_progress {
	int enabled;
	uint64_t total;
	uint64_t done;
	double last_draw; /* monotonic seconds */
};
void vt_progress_start(struct vt_progress *p, int wanted, uint64_t total);
void vt_progress_add(struct vt_progress *p, uint64_t bytes);
void vt_progress_end(struct vt_progress *p);
/* A vd_progress_fn for a struct vt_progress (CTX): DONE of TOTAL, as the library reports. */
void vt_progress_cb(void *ctx, uint64_t done, uint64_t total);

/* Set by SIGINT/SIGTERM once vt_catch_signals ran; long loops poll it. */
extern volatile sig_atomic_t vt_interrupted;
void vt_catch_signals(void);

/* Dump ROOT as indented JSON on stdout and release it. */
int vt_json_print(json_t *root);
/* Reset getopt for a subcommand's own argv. */
void vt_getopt_reset(void);

#endif /* VHDTOOL_H */
