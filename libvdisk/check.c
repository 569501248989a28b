/*
 * vd_check_path: open an image without trusting it and report each problem
 * (what open refused, what it tolerated with a warning, and the driver's extra
 * checks) with its field and offset.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"

static int unreadable(int rc)
{
	return rc == -ENOENT || rc == -EACCES || rc == -EISDIR || rc == -EPERM || rc == -ENOMEM ||
	       rc == -EBUSY;
}

int vd_check_path(const char *path, enum vd_check_profile profile, vd_problem_fn fn, void *ctx,
		  char **errmsg_out)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY | VD_OPEN_CHECK_, .format = "vhd"};
	struct vd_disk *d;
	int rc, count = 0;

	if (errmsg_out)
		*errmsg_out = NULL;
	rc = vd_open(path, &opts, &d);
	if (rc < 0 && (unreadable(rc) || !d)) {
		if (errmsg_out)
			*errmsg_out = strdup(vd_errmsg(d));
		vd_close(d);
		return rc;
	}
	if (rc < 0) {
		struct vd_problem p = {d->err_field, d->err_offset, vd_errmsg_bare(d), 0};
		fn(ctx, &p);
		vd_close(d);
		return 1;
	}
	if (d->drv->check)
		d->drv->check(d->state, profile, d);
	for (int i = 0; i < d->nwarnings; i++) {
		struct vd_problem p = {d->warnings[i].field, d->warnings[i].offset,
				       d->warnings[i].message, 0};
		fn(ctx, &p);
		count++;
	}
	vd_close(d);
	return count;
}

int vd_repair_path(const char *path, vd_problem_fn fn, void *ctx, char **errmsg_out)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDWR | VD_OPEN_CHECK_ | VD_OPEN_IMAGE_ONLY |
					     VD_OPEN_NO_PARENT | VD_OPEN_FORCE,
				    .format = "vhd"};
	struct vd_disk *d;
	int rc, before, fixes = 0;

	if (errmsg_out)
		*errmsg_out = NULL;
	rc = vd_open(path, &opts, &d);
	if (rc == 0 && !d->drv->repair)
		rc = vd_error(d, -EOPNOTSUPP, "", UINT64_MAX, "this format has no repair");
	before = d ? d->nwarnings : 0;
	if (rc == 0)
		rc = d->drv->repair(d->state, d);
	for (int i = before; d && i < d->nwarnings; i++) {
		struct vd_problem p = {d->warnings[i].field, d->warnings[i].offset,
				       d->warnings[i].message, 1};
		fn(ctx, &p);
		fixes++;
	}
	if (rc < 0 && errmsg_out)
		*errmsg_out = strdup(vd_errmsg(d));
	if (vd_close(d) < 0 && rc == 0)
		rc = -EIO;
	return rc < 0 ? rc : fixes;
}
