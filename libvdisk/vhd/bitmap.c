/*
 * Sector bitmaps in front of each data block: MSB-first, sector k is byte k>>3,
 * mask 0x80>>(k&7) (VirtualBox, blktap; libvhdi gets this wrong, see pitfall 7a).
 */
#include "vhd/vhd_int.h"

void vd_bitmap_set_range(uint8_t *bm, uint32_t first, uint32_t count)
{
	uint32_t k = first, end = first + count;

	for (; k < end && (k & 7); k++)
		bm[k >> 3] |= (uint8_t)(0x80 >> (k & 7));
	for (; k + 8 <= end; k += 8)
		bm[k >> 3] = 0xFF;
	for (; k < end; k++)
		bm[k >> 3] |= (uint8_t)(0x80 >> (k & 7));
}

int vd_bitmap_all_set(const uint8_t *bm, uint32_t first, uint32_t count)
{
	return count == 0 ||
	       (vd_bitmap_test(bm, first) && vd_bitmap_run(bm, first, count) == count);
}

uint32_t vd_bitmap_run(const uint8_t *bm, uint32_t first, uint32_t max)
{
	int bit;
	uint32_t n = 0;

	if (max == 0)
		return 0;
	bit = vd_bitmap_test(bm, first);
	while (n < max) {
		uint32_t k = first + n;

		/* Whole bytes at once when aligned: bitmaps are mostly all-0 or all-1. */
		if (!(k & 7) && n + 8 <= max && bm[k >> 3] == (bit ? 0xFF : 0x00)) {
			n += 8;
			continue;
		}
		if (vd_bitmap_test(bm, k) != bit)
			break;
		n++;
	}
	return n;
}
