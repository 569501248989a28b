/*
 * Dynamic (and differencing) disk header codec, "cxsparse", 1024 bytes,
 * with its eight parent locator entries.
 */
#include <string.h>

#include "vhd/vhd_int.h"

static void locator_decode(const uint8_t *p, struct vd_locator *l)
{
	l->code = get_be32(p);
	l->data_space = get_be32(p + 4);
	l->data_length = get_be32(p + 8);
	l->reserved = get_be32(p + 12);
	l->data_offset = get_be64(p + 16);
}

static void locator_encode(const struct vd_locator *l, uint8_t *p)
{
	put_be32(p, l->code);
	put_be32(p + 4, l->data_space);
	put_be32(p + 8, l->data_length);
	put_be32(p + 12, l->reserved);
	put_be64(p + 16, l->data_offset);
}

int vd_dynhdr_decode(const uint8_t buf[VD_DYNHDR_SIZE], struct vd_dynhdr *h)
{
	memcpy(h->cookie, buf, 8);
	h->data_offset = get_be64(buf + 8);
	h->table_offset = get_be64(buf + 16);
	h->version = get_be32(buf + 24);
	h->max_table_entries = get_be32(buf + 28);
	h->block_size = get_be32(buf + 32);
	h->checksum = get_be32(buf + 36);
	memcpy(h->parent_uuid, buf + 40, 16);
	h->parent_timestamp = get_be32(buf + 56);
	memcpy(h->parent_name, buf + 64, 512);
	for (int i = 0; i < 8; i++)
		locator_decode(buf + 576 + 24 * i, &h->loc[i]);
	if (memcmp(h->cookie, "cxsparse", 8) != 0)
		return VD_DECODE_BAD_COOKIE;
	if (vd_vhd_checksum(buf, VD_DYNHDR_SIZE, 36) != h->checksum)
		return VD_DECODE_BAD_CHECKSUM;
	return 0;
}

void vd_dynhdr_encode(struct vd_dynhdr *h, uint8_t buf[VD_DYNHDR_SIZE])
{
	memset(buf, 0, VD_DYNHDR_SIZE);
	memcpy(buf, h->cookie, 8);
	put_be64(buf + 8, h->data_offset);
	put_be64(buf + 16, h->table_offset);
	put_be32(buf + 24, h->version);
	put_be32(buf + 28, h->max_table_entries);
	put_be32(buf + 32, h->block_size);
	memcpy(buf + 40, h->parent_uuid, 16);
	put_be32(buf + 56, h->parent_timestamp);
	memcpy(buf + 64, h->parent_name, 512);
	for (int i = 0; i < 8; i++)
		locator_encode(&h->loc[i], buf + 576 + 24 * i);
	h->checksum = vd_vhd_checksum(buf, VD_DYNHDR_SIZE, 36);
	put_be32(buf + 36, h->checksum);
}
