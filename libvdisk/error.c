/*
 * Errors and warnings kept on the handle, error code descriptions, and the
 * human sizes used in messages.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vdisk_int.h"

int vd_error(struct vd_disk *disk, int rc, const char *field, uint64_t offset, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!disk)
		return rc;
	/* While vd_create works on a temporary file, messages name the image it makes. */
	n = snprintf(disk->errmsg, sizeof(disk->errmsg), "%s: ",
		     disk->final_path ? disk->final_path
		     : disk->path     ? disk->path
				      : "?");
	if (n < 0 || (size_t)n >= sizeof(disk->errmsg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(disk->errmsg + n, sizeof(disk->errmsg) - (size_t)n, fmt, ap);
	va_end(ap);
	snprintf(disk->err_field, sizeof(disk->err_field), "%s", field ? field : "");
	disk->err_offset = offset;
	return rc;
}

void vd_warn(struct vd_disk *disk, const char *field, uint64_t offset, const char *fmt, ...)
{
	struct vd_note *grown;
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	grown = realloc(disk->warnings, sizeof(*grown) * (size_t)(disk->nwarnings + 1));
	if (!grown)
		return; /* a warning lost to ENOMEM is not worth failing the open */
	disk->warnings = grown;
	grown[disk->nwarnings].field = strdup(field ? field : "");
	grown[disk->nwarnings].offset = offset;
	grown[disk->nwarnings].message = strdup(msg);
	if (!grown[disk->nwarnings].field || !grown[disk->nwarnings].message) {
		free(grown[disk->nwarnings].field);
		free(grown[disk->nwarnings].message);
		return;
	}
	disk->nwarnings++;
}

const char *vd_errmsg(const struct vd_disk *disk)
{
	if (!disk)
		return "out of memory";
	return disk->errmsg[0] ? disk->errmsg : "no error";
}

const char *vd_errmsg_bare(const struct vd_disk *d)
{
	size_t n = strlen(d->path);

	if (strncmp(d->errmsg, d->path, n) == 0 && strncmp(d->errmsg + n, ": ", 2) == 0)
		return d->errmsg + n + 2;
	return d->errmsg;
}

int vd_warning_count(const struct vd_disk *disk)
{
	return disk ? disk->nwarnings : 0;
}

const char *vd_warning(const struct vd_disk *disk, int index)
{
	if (!disk || index < 0 || index >= disk->nwarnings)
		return NULL;
	return disk->warnings[index].message;
}

const char *vd_strerror(int rc)
{
	switch (-rc) {
	case 0:
		return "success";
	case EUCLEAN:
		return "image structure is corrupt";
	case EBADMSG:
		return "checksum mismatch";
	case EOPNOTSUPP:
		return "valid but unsupported image feature";
	case ENOENT:
		return "file not found";
	case EBUSY:
		return "image is locked by another writer";
	case ENOSPC:
		return "no space left on device";
	case EINVAL:
		return "invalid argument";
	case EROFS:
		return "image is open read-only";
	default:
		return strerror(-rc);
	}
}

void vd_human_size(uint64_t bytes, char *out, size_t outlen)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	int u = 0;
	double v = (double)bytes;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, outlen, "%llu B", (unsigned long long)bytes);
	else if (v == (double)(uint64_t)v)
		snprintf(out, outlen, "%llu %s", (unsigned long long)v, unit[u]);
	else
		snprintf(out, outlen, "%.1f %s", v, unit[u]);
}

void vd_free_string(char *s)
{
	free(s);
}
