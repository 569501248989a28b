/*
 * vhdtool doctor internals: what the scan of a folder learns about each image
 * and its link (doctor.c), shared with the report that prints it (doctor_report.c).
 */
#ifndef VHDTOOL_DOCTOR_H
#define VHDTOOL_DOCTOR_H

#include "vhdtool.h"

struct dr_image {
	char *path; /* DIR/NAME, as reported */
	char *real; /* realpath, to match the parent a chain resolved to */
	enum vd_disk_type type;
	uint8_t uuid[16];
	uint8_t parent_uuid[16];
	char *read_error; /* the image's own header cannot be read */
	int raw;	  /* no VHD footer: read as a raw image */
	int dup;	  /* another file in DIR has the same UUID */
	int managed;	  /* part of a checkpoint tree (DISK.checkpoints) */
	/* The link to the parent, for differencing disks. */
	int candidates;	  /* files in DIR with the recorded parent UUID */
	int candidate;	  /* the first of them, or -1 */
	int link_rc;	  /* vd_open of the whole chain: 0 or -errno */
	char *link_error; /* its message */
	char *resolved;	  /* the parent it opened (realpath), or NULL */
	int parent;	  /* tree edge: index of the parent in DIR, or -1 */
	int children;	  /* images whose tree edge points here */
	const char *status;
	char *note; /* one line for people: why, and what to do */
	int fixable;
	int fixed;
	json_t *warnings; /* array of strings */
};

struct doctor {
	const char *dir;
	int fix;
	int json;
	struct dr_image *img;
	int n;
	json_t *fixed; /* [[child, parent], ...] */
	json_t *notes; /* strings about the folder (checkpoint trees) */
};

/* Prints the report (text or JSON); returns 0 or VT_EXIT_ERROR. */
int dr_report(struct doctor *d);
/* 1 when the image needs attention (status not ok, or warnings). */
int dr_has_problem(const struct dr_image *im);

#endif /* VHDTOOL_DOCTOR_H */
