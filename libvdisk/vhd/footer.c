/*
 * VHD footer codec, the shared checksum, CHS geometry (spec appendix) and the
 * rule that decides whether a reader sizes a disk by CHS or by current size.
 */
#include <string.h>

#include "vhd/vhd_int.h"

uint32_t vd_vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

int vd_footer_decode(const uint8_t buf[VD_FOOTER_SIZE], struct vd_footer *f)
{
	memcpy(f->cookie, buf, 8);
	f->features = get_be32(buf + 8);
	f->version = get_be32(buf + 12);
	f->data_offset = get_be64(buf + 16);
	f->timestamp = get_be32(buf + 24);
	memcpy(f->creator_app, buf + 28, 4);
	f->creator_version = get_be32(buf + 32);
	f->creator_os = get_be32(buf + 36);
	f->original_size = get_be64(buf + 40);
	f->current_size = get_be64(buf + 48);
	f->cylinders = get_be16(buf + 56);
	f->heads = buf[58];
	f->sectors = buf[59];
	f->disk_type = get_be32(buf + 60);
	f->checksum = get_be32(buf + 64);
	memcpy(f->uuid, buf + 68, 16);
	f->saved_state = buf[84];
	f->hidden = buf[85];
	if (memcmp(f->cookie, "conectix", 8) != 0)
		return VD_DECODE_BAD_COOKIE;
	if (vd_vhd_checksum(buf, VD_FOOTER_SIZE, 64) != f->checksum)
		return VD_DECODE_BAD_CHECKSUM;
	return 0;
}

void vd_footer_encode(struct vd_footer *f, uint8_t buf[VD_FOOTER_SIZE])
{
	memset(buf, 0, VD_FOOTER_SIZE);
	memcpy(buf, f->cookie, 8);
	put_be32(buf + 8, f->features);
	put_be32(buf + 12, f->version);
	put_be64(buf + 16, f->data_offset);
	put_be32(buf + 24, f->timestamp);
	memcpy(buf + 28, f->creator_app, 4);
	put_be32(buf + 32, f->creator_version);
	put_be32(buf + 36, f->creator_os);
	put_be64(buf + 40, f->original_size);
	put_be64(buf + 48, f->current_size);
	put_be16(buf + 56, f->cylinders);
	buf[58] = f->heads;
	buf[59] = f->sectors;
	put_be32(buf + 60, f->disk_type);
	memcpy(buf + 68, f->uuid, 16);
	buf[84] = f->saved_state;
	buf[85] = f->hidden;
	f->checksum = vd_vhd_checksum(buf, VD_FOOTER_SIZE, 64);
	put_be32(buf + 64, f->checksum);
}

void vd_chs_from_size(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt)
{
	uint64_t n = size / VD_SECTOR, cth;
	uint32_t s, h;

	if (n > VD_MAX_CHS_SECTORS)
		n = VD_MAX_CHS_SECTORS;
	if (n >= 65535ull * 16 * 63) {
		s = 255;
		h = 16;
		cth = n / s;
	} else {
		s = 17;
		cth = n / s;
		h = (uint32_t)((cth + 1023) / 1024);
		if (h < 4)
			h = 4;
		if (cth >= h * 1024ull || h > 16) {
			s = 31;
			h = 16;
			cth = n / s;
		}
		if (cth >= h * 1024ull) {
			s = 63;
			h = 16;
			cth = n / s;
		}
	}
	*cyl = (uint16_t)(cth / h);
	*heads = (uint8_t)h;
	*spt = (uint8_t)s;
}

/*
 * Virtual PC sized its guests by CHS; old QEMU (creator "qemu") rounded the size
 * up to a CHS product. Every other writer (Hyper-V, Disk2vhd, blktap, VirtualBox,
 * Azure, QEMU with force_size) means the current size; the maximum geometry
 * 65535/16/255 never means CHS. This is QEMU 10's rule (commit 558d8eb7).
 */
int vd_footer_uses_chs(const struct vd_footer *f)
{
	if (f->cylinders == 65535 && f->heads == 16 && f->sectors == 255)
		return 0;
	return memcmp(f->creator_app, "vpc ", 4) == 0 || memcmp(f->creator_app, "qemu", 4) == 0;
}

uint64_t vd_footer_virtual_size(const struct vd_footer *f)
{
	uint64_t chs = vd_chs_bytes(f->cylinders, f->heads, f->sectors);

	/* Never more than the stored size: the data beyond it may not exist. */
	if (vd_footer_uses_chs(f) && chs > 0 && chs <= f->current_size)
		return chs;
	return f->current_size;
}
