/*
 * Laying out new VHDs: the size rules of the compatibility profiles, the footer
 * we write (creator, geometry) and the fixed and dynamic layouts.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "vdisk_int.h"
#include "vhd/vhd_int.h"

#define MIB (1024ull * 1024)

static int is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

/* Largest size whose own CHS geometry multiplies back to itself, at most SIZE. */
static uint64_t chs_round_down(uint64_t size)
{
	for (int i = 0; i < 8; i++) {
		uint16_t c;
		uint8_t h, s;

		vd_chs_from_size(size, &c, &h, &s);
		if (vd_chs_bytes(c, h, s) == size)
			break;
		size = vd_chs_bytes(c, h, s);
	}
	return size;
}

int vd_create_size_msg(const struct vd_create_opts *o, uint64_t *size, char *why, size_t whylen)
{
	int vhd = !o->format || strcmp(o->format, "vhd") == 0;
	uint64_t s = o->size;

	*size = 0;
	if (s == 0) {
		snprintf(why, whylen, "disk size must be greater than zero");
		return -EINVAL;
	}
	if (!vhd) {
		*size = s;
		return 0;
	}
	if (o->compat == VD_COMPAT_AZURE) {
		if (o->type == VD_TYPE_DYNAMIC) {
			snprintf(why, whylen, "Azure accepts only fixed VHDs; drop -t dynamic");
			return -EINVAL;
		}
		s = (s + MIB - 1) / MIB * MIB;
	}
	if (s % VD_SECTOR) {
		snprintf(why, whylen, "disk size %llu is not a multiple of 512 bytes",
			 (unsigned long long)s);
		return -EINVAL;
	}
	if (o->compat == VD_COMPAT_VPC && s > VD_MAX_CHS_SECTORS * VD_SECTOR) {
		snprintf(why, whylen,
			 "--compat vpc: Virtual PC disks hold at most 65535/16/255 "
			 "sectors (%llu bytes)",
			 VD_MAX_CHS_SECTORS * VD_SECTOR);
		return -EINVAL;
	}
	if (o->compat == VD_COMPAT_VPC)
		s = chs_round_down(s);
	if (o->compat == VD_COMPAT_VPC && s == 0) {
		snprintf(why, whylen,
			 "--compat vpc: %llu bytes is below the smallest CHS disk "
			 "(1/4/17, 34816 bytes)",
			 (unsigned long long)o->size);
		return -EINVAL;
	}
	if (s == 0 || s > VD_VHD_MAX_SIZE) {
		snprintf(why, whylen, "disk size must be between 512 bytes and 2040 GiB for VHD");
		return -EINVAL;
	}
	if (o->block_size && (!is_pow2(o->block_size) || o->block_size < VD_MIN_BLOCK ||
			      o->block_size > VD_MAX_BLOCK)) {
		snprintf(why, whylen,
			 "block size %u is not a power of two from 512 bytes to 256 MiB",
			 o->block_size);
		return -EINVAL;
	}
	*size = s;
	return 0;
}

int vd_create_size(const struct vd_create_opts *o, uint64_t *size)
{
	char why[200];

	return vd_create_size_msg(o, size, why, sizeof(why));
}

static void new_uuid(uint8_t uuid[16])
{
	if (getrandom(uuid, 16, 0) != 16) {
		/* No entropy source: time and pid still make collisions unlikely. */
		uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
		for (int i = 0; i < 16; i++)
			uuid[i] = (uint8_t)(t >> (8 * (i % 8))) ^ (uint8_t)(i * 37);
	}
	uuid[6] = (uint8_t)((uuid[6] & 0x0F) | 0x40); /* RFC 4122 version 4 */
	uuid[8] = (uint8_t)((uuid[8] & 0x3F) | 0x80);
}

/*
 * Creator "qem2", exact current size, geometry per the spec's appendix.
 * Why: QEMU 2.6 to 9.2 (Debian 12 ships 7.2) size every creator outside
 * {"win ", "qem2", "d2v ", "CTXS", "tap\0"} by CHS, which is usually below the
 * size and would cut the tail off our disks; QEMU 10 and later, Hyper-V,
 * VirtualBox, blktap and libvhdi use the current size for "qem2" too. "qem2"
 * already means "an exact-size VHD not made by Windows" (QEMU's force_size),
 * and Azure accepts it; claiming "win " would mislead forensic tools, and
 * "tap\0" changes how blktap reads bitmaps of old versions.
 */
void vd_footer_new(struct vd_footer *f, enum vd_disk_type type, uint64_t size)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = VD_FEATURE_RESERVED;
	f->version = VD_VHD_VERSION;
	f->data_offset = type == VD_TYPE_FIXED ? VD_ALL_ONES : VD_FOOTER_SIZE;
	f->timestamp = (uint32_t)(time(NULL) - VD_VHD_EPOCH);
	memcpy(f->creator_app, "qem2", 4);
	f->creator_version = (uint32_t)VD_VERSION_MAJOR << 16 | VD_VERSION_MINOR;
	f->creator_os = 0x5769326B; /* "Wi2k": what Windows and Azure expect */
	f->original_size = f->current_size = size;
	vd_chs_from_size(size, &f->cylinders, &f->heads, &f->sectors);
	f->disk_type = (uint32_t)type;
	new_uuid(f->uuid);
}

int vd_fixed_footer(const struct vd_create_opts *opts, uint8_t footer[512])
{
	struct vd_create_opts o = *opts;
	struct vd_footer f;
	uint64_t size;
	int rc;

	o.type = VD_TYPE_FIXED;
	o.format = "vhd";
	rc = vd_create_size(&o, &size);
	if (rc < 0)
		return rc;
	vd_footer_new(&f, VD_TYPE_FIXED, size);
	vd_footer_encode(&f, footer);
	return 0;
}

static int create_fixed(struct vd_disk *d, struct vd_file *file, uint64_t size,
			const uint8_t *uuid)
{
	uint8_t buf[VD_FOOTER_SIZE];
	struct vd_footer f;

	char human[32];

	/*
	 * A fixed disk owns its space (Hyper-V preallocates): reserve it now so the
	 * guest never meets ENOSPC later. Where the file system cannot reserve
	 * (EOPNOTSUPP), the data area stays a hole, which still reads as zeros.
	 */
	if (size > 0 && fallocate(file->fd, 0, 0, (off_t)size) < 0 && errno != EOPNOTSUPP) {
		vd_human_size(size, human, sizeof(human));
		return vd_error(d, -errno, "", UINT64_MAX, "cannot reserve %s for a fixed disk: %s",
				human, strerror(errno));
	}
	if (ftruncate(file->fd, (off_t)size) < 0)
		return vd_error(d, -errno, "", UINT64_MAX, "cannot size the new image: %s",
				strerror(errno));
	vd_footer_new(&f, VD_TYPE_FIXED, size);
	if (uuid)
		memcpy(f.uuid, uuid, sizeof(f.uuid));
	vd_footer_encode(&f, buf);
	return vd_file_pwrite(file, buf, sizeof(buf), size);
}

static int create_dynamic(struct vd_disk *d, struct vd_file *file, uint64_t size,
			  uint32_t block_size, const uint8_t *uuid)
{
	uint32_t entries = (uint32_t)((size + block_size - 1) / block_size);
	uint64_t bat_bytes = ((uint64_t)entries * 4 + VD_SECTOR - 1) / VD_SECTOR * VD_SECTOR;
	uint64_t table_offset = VD_FOOTER_SIZE + VD_DYNHDR_SIZE;
	uint8_t fbuf[VD_FOOTER_SIZE], hbuf[VD_DYNHDR_SIZE], *bat;
	struct vd_footer f;
	struct vd_dynhdr h;
	int rc;

	vd_footer_new(&f, VD_TYPE_DYNAMIC, size);
	if (uuid)
		memcpy(f.uuid, uuid, sizeof(f.uuid));
	vd_footer_encode(&f, fbuf);
	memset(&h, 0, sizeof(h));
	memcpy(h.cookie, "cxsparse", 8);
	h.data_offset = VD_ALL_ONES;
	h.table_offset = table_offset;
	h.version = VD_VHD_VERSION;
	h.max_table_entries = entries;
	h.block_size = block_size;
	vd_dynhdr_encode(&h, hbuf);
	/* 0xFF everywhere, the padding too (QEMU does; xen-orchestra #2690). */
	bat = malloc(bat_bytes);
	if (!bat)
		return vd_error(d, -ENOMEM, "", UINT64_MAX, "out of memory for the BAT");
	memset(bat, 0xFF, bat_bytes);
	rc = vd_file_pwrite(file, fbuf, sizeof(fbuf), 0);
	if (rc == 0)
		rc = vd_file_pwrite(file, hbuf, sizeof(hbuf), VD_FOOTER_SIZE);
	if (rc == 0)
		rc = vd_file_pwrite(file, bat, bat_bytes, table_offset);
	if (rc == 0)
		rc = vd_file_pwrite(file, fbuf, sizeof(fbuf), table_offset + bat_bytes);
	free(bat);
	return rc;
}

int vd_vhd_create(struct vd_disk *d, struct vd_file *file, const struct vd_create_opts *o)
{
	enum vd_disk_type type = o->type;

	if (type == VD_TYPE_NONE)
		type = o->compat == VD_COMPAT_AZURE ? VD_TYPE_FIXED : VD_TYPE_DYNAMIC;
	if (type == VD_TYPE_FIXED)
		return create_fixed(d, file, o->size, o->uuid);
	if (type == VD_TYPE_DYNAMIC)
		return create_dynamic(d, file, o->size,
				      o->block_size ? o->block_size : VD_DEFAULT_BLOCK, o->uuid);
	return vd_error(d, -EOPNOTSUPP, "", UINT64_MAX,
			"differencing disks are created with a parent (not supported yet)");
}
