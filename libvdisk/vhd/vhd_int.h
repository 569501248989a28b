/*
 * VHD on-disk structures and their pure codecs (no I/O): footer, dynamic header,
 * BAT helpers, sector bitmaps, parent locators, CHS geometry. Not installed.
 */
#ifndef VD_VHD_INT_H
#define VD_VHD_INT_H

#include <stddef.h>
#include <stdint.h>

#include "vdisk/vdisk.h"

#define VD_SECTOR 512u
#define VD_FOOTER_SIZE 512u
#define VD_DYNHDR_SIZE 1024u
#define VD_BAT_UNUSED 0xFFFFFFFFu
#define VD_ALL_ONES 0xFFFFFFFFFFFFFFFFull
#define VD_MIN_BLOCK 512u
#define VD_MAX_BLOCK (256u << 20)
#define VD_DEFAULT_BLOCK (2u << 20)
#define VD_MAX_CHS_SECTORS (65535ull * 16 * 255)
#define VD_VHD_EPOCH 946684800 /* 2000-01-01 00:00:00 UTC in Unix time */

#define VD_FEATURE_TEMPORARY 0x1u
#define VD_FEATURE_RESERVED 0x2u
#define VD_VHD_VERSION 0x00010000u

#define VD_LOC_NONE 0u
#define VD_LOC_W2KU 0x57326B75u
#define VD_LOC_W2RU 0x57327275u
#define VD_LOC_WI2K 0x5769326Bu
#define VD_LOC_WI2R 0x57693272u
#define VD_LOC_MAC 0x4D616320u
#define VD_LOC_MACX 0x4D616358u

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}
static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}
static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* The VHD checksum: one's complement of the byte sum, the field counted as 0. */
uint32_t vd_vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);

struct vd_footer {
	uint8_t cookie[8];
	uint32_t features;
	uint32_t version;
	uint64_t data_offset;
	uint32_t timestamp;
	uint8_t creator_app[4];
	uint32_t creator_version;
	uint32_t creator_os;
	uint64_t original_size;
	uint64_t current_size;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t disk_type;
	uint32_t checksum;
	uint8_t uuid[16];
	uint8_t saved_state;
	uint8_t hidden; /* blktap's use of reserved byte 85 */
};

/* Results of the decoders besides 0. */
#define VD_DECODE_BAD_COOKIE (-1)
#define VD_DECODE_BAD_CHECKSUM (-2)

/*
 * Decode 512 bytes. Fills OUT even when the checksum is wrong (so a caller can
 * report the fields); returns 0, VD_DECODE_BAD_COOKIE or VD_DECODE_BAD_CHECKSUM.
 */
int vd_footer_decode(const uint8_t buf[VD_FOOTER_SIZE], struct vd_footer *out);
/* Encode, computing the checksum (and storing it back into F). */
void vd_footer_encode(struct vd_footer *f, uint8_t buf[VD_FOOTER_SIZE]);

struct vd_locator {
	uint32_t code;
	uint32_t data_space; /* as stored: sectors or bytes (see vd_locator_space_bytes) */
	uint32_t data_length;
	uint32_t reserved;
	uint64_t data_offset;
};

struct vd_dynhdr {
	uint8_t cookie[8];
	uint64_t data_offset;
	uint64_t table_offset;
	uint32_t version;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum;
	uint8_t parent_uuid[16];
	uint32_t parent_timestamp;
	uint8_t parent_name[512]; /* UTF-16BE as stored */
	struct vd_locator loc[8];
};

int vd_dynhdr_decode(const uint8_t buf[VD_DYNHDR_SIZE], struct vd_dynhdr *out);
void vd_dynhdr_encode(struct vd_dynhdr *h, uint8_t buf[VD_DYNHDR_SIZE]);

/* CHS per the spec's appendix; the product may be below SIZE. */
void vd_chs_from_size(uint64_t size, uint16_t *cyl, uint8_t *heads, uint8_t *spt);
static inline uint64_t vd_chs_bytes(uint16_t c, uint8_t h, uint8_t s)
{
	return (uint64_t)c * h * s * VD_SECTOR;
}
/* 1 when readers must size this footer by CHS (creators `vpc ` and `qemu`). */
int vd_footer_uses_chs(const struct vd_footer *f);
/* The size a guest sees, by the rule above (never more than current_size). */
uint64_t vd_footer_virtual_size(const struct vd_footer *f);

/* Bytes of the sector bitmap in front of each block (512-rounded). */
static inline uint32_t vd_bitmap_bytes(uint32_t block_size)
{
	uint32_t bits = block_size / VD_SECTOR;
	uint32_t bytes = (bits + 7) / 8;
	return (bytes + VD_SECTOR - 1) / VD_SECTOR * VD_SECTOR;
}
/* MSB-first: sector k is byte k>>3, mask 0x80>>(k&7). */
static inline int vd_bitmap_test(const uint8_t *bm, uint32_t k)
{
	return (bm[k >> 3] >> (7 - (k & 7))) & 1;
}
void vd_bitmap_set_range(uint8_t *bm, uint32_t first, uint32_t count);
/* 1 when every bit of [first, first+count) is set. */
int vd_bitmap_all_set(const uint8_t *bm, uint32_t first, uint32_t count);
/* Length of the run of equal bits starting at FIRST, at most MAX. */
uint32_t vd_bitmap_run(const uint8_t *bm, uint32_t first, uint32_t max);

/*
 * Locator data space in bytes: the spec says sectors, Virtual PC and Hyper-V
 * write bytes. blktap's rule: < 512 means sectors, a multiple of 512 bytes.
 * Returns -1 when neither.
 */
int64_t vd_locator_space_bytes(uint32_t data_space);
/*
 * Decode a locator's path into UTF-8 (W2ku/W2ru UTF-16LE, BE fallback; Wi2k/Wi2r
 * 8-bit; MacX a file URL, the file:// and host stripped). Returns the length or -1.
 */
int vd_locator_decode_path(uint32_t code, const uint8_t *data, size_t len, char *out,
			   size_t outlen);
/* Encode UTF-8 as UTF-16 (LE or BIG_ENDIAN), no terminator; returns bytes or -1. */
int vd_utf8_to_utf16(const char *s, uint8_t *out, size_t outlen, int big_endian);
/* Decode the UTF-16BE parent name; returns the length or -1. */
int vd_parent_name_decode(const uint8_t name[512], char *out, size_t outlen);

/* A footer as we write it (creator, geometry, new UUID; see create.c for why). */
void vd_footer_new(struct vd_footer *f, enum vd_disk_type type, uint64_t size);

struct vd_disk;
struct vd_file;
/* The driver's create: lay out a fixed or dynamic VHD in an empty file. */
int vd_vhd_create(struct vd_disk *d, struct vd_file *file, const struct vd_create_opts *o);

#endif /* VD_VHD_INT_H */
