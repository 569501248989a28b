/*
 * libFuzzer target: the 512-byte VHD footer. The codec alone (decode, encode,
 * checksum, CHS and the size rule), then a file that ends in the footer, with
 * the checksum repaired on request so the fuzzer reaches the validation of
 * every field, opened and read through the public API and checked.
 *
 * Input: 512 footer bytes, one flags byte (FLAG_*), then the bytes before the
 * footer (the data of a fixed disk, or a header for a dynamic one).
 */
#include <string.h>

#include "fuzz_util.h"

#define FLAG_FIX_CHECKSUM 0x01u /* store the right checksum */
#define FLAG_COPY_AT_0 0x02u	/* the copy a dynamic disk keeps at offset 0 */
#define FLAG_511_BYTES 0x04u	/* Virtual PC before 2004: the last byte missing */
#define FLAG_BAD_COPY 0x08u	/* the copy at 0 with a broken checksum */
#define FLAG_SIZED_DATA 0x10u	/* data area as long as current_size (<= 1 MiB, sparse) */
#define FLAG_NO_END 0x20u	/* no footer at the end (a crash before it was written) */

static void same_fields(const struct vd_footer *a, const struct vd_footer *b)
{
	FZ_ASSERT(memcmp(a->cookie, b->cookie, 8) == 0 && a->features == b->features &&
			  a->version == b->version && a->data_offset == b->data_offset &&
			  a->timestamp == b->timestamp &&
			  memcmp(a->creator_app, b->creator_app, 4) == 0 &&
			  a->creator_version == b->creator_version &&
			  a->creator_os == b->creator_os && a->original_size == b->original_size &&
			  a->current_size == b->current_size && a->cylinders == b->cylinders &&
			  a->heads == b->heads && a->sectors == b->sectors &&
			  a->disk_type == b->disk_type && memcmp(a->uuid, b->uuid, 16) == 0 &&
			  a->saved_state == b->saved_state && a->hidden == b->hidden,
		  "footer fields change in an encode/decode round trip");
}

static void size_rules(const struct vd_footer *f)
{
	uint64_t vsize = vd_footer_virtual_size(f);
	uint64_t chs = vd_chs_bytes(f->cylinders, f->heads, f->sectors);
	uint16_t c;
	uint8_t h, s;

	FZ_ASSERT(vsize <= f->current_size, "virtual size %llu above current size %llu",
		  (unsigned long long)vsize, (unsigned long long)f->current_size);
	if (vd_footer_uses_chs(f) && chs > 0 && chs <= f->current_size)
		FZ_ASSERT(vsize == chs, "a CHS-sized footer gives %llu, not its CHS %llu",
			  (unsigned long long)vsize, (unsigned long long)chs);
	else
		FZ_ASSERT(vsize == f->current_size, "size %llu is neither CHS nor current size",
			  (unsigned long long)vsize);
	vd_chs_from_size(f->current_size, &c, &h, &s);
	FZ_ASSERT(vd_chs_bytes(c, h, s) <= f->current_size && h >= 1 && h <= 16 && s >= 17,
		  "CHS %u/%u/%u for %llu bytes", c, h, s, (unsigned long long)f->current_size);
}

static void codec_properties(const uint8_t in[VD_FOOTER_SIZE])
{
	struct vd_footer f, g;
	uint8_t out[VD_FOOTER_SIZE];
	int cookie = memcmp(in, "conectix", 8) == 0;
	int sum_ok = vd_vhd_checksum(in, VD_FOOTER_SIZE, 64) == get_be32(in + 64);
	int rc;

	memset(&f, 0, sizeof(f));
	memset(&g, 0, sizeof(g));
	rc = vd_footer_decode(in, &f);
	FZ_ASSERT(rc == (!cookie  ? VD_DECODE_BAD_COOKIE
			 : sum_ok ? 0
				  : VD_DECODE_BAD_CHECKSUM),
		  "footer decode says %d (cookie %d, checksum ok %d)", rc, cookie, sum_ok);
	vd_footer_encode(&f, out);
	/* Encoding keeps every field and clears the reserved bytes from 86 on. */
	FZ_ASSERT(memcmp(out, in, 64) == 0 && memcmp(out + 68, in + 68, 86 - 68) == 0,
		  "encode moved a footer field");
	for (size_t i = 86; i < VD_FOOTER_SIZE; i++)
		FZ_ASSERT(out[i] == 0, "encode left reserved byte %zu set", i);
	FZ_ASSERT(vd_footer_decode(out, &g) == (cookie ? 0 : VD_DECODE_BAD_COOKIE),
		  "an encoded footer does not decode");
	FZ_ASSERT(g.checksum == f.checksum && f.checksum == get_be32(out + 64),
		  "encode does not store the checksum it returns");
	same_fields(&f, &g);
	size_rules(&f);
}

/* The image: [copy at 0] data [end footer], in the scratch directory. */
static void build_image(const uint8_t *foot_in, unsigned flags, const uint8_t *data,
			size_t data_len)
{
	uint8_t foot[VD_FOOTER_SIZE], copy[VD_FOOTER_SIZE];
	uint64_t at = (flags & FLAG_COPY_AT_0) ? VD_FOOTER_SIZE : 0;
	uint64_t end = FZ_ALIGN512(at + data_len), size = get_be64(foot_in + 48);
	int fd = fz_file_create("img.vhd");

	memcpy(foot, foot_in, sizeof(foot));
	if (flags & FLAG_FIX_CHECKSUM)
		put_be32(foot + 64, vd_vhd_checksum(foot, sizeof(foot), 64));
	if ((flags & FLAG_SIZED_DATA) && size <= (1u << 20) && at + size > end)
		end = at + size;
	fz_file_put(fd, data, data_len, at);
	if (flags & FLAG_COPY_AT_0) {
		memcpy(copy, foot, sizeof(copy));
		if (flags & FLAG_BAD_COPY)
			copy[64] ^= 0x5A;
		fz_file_put(fd, copy, sizeof(copy), 0);
	}
	if ((flags & FLAG_NO_END) && (flags & FLAG_COPY_AT_0)) {
		fz_file_finish(fd, end);
		return;
	}
	fz_file_put(fd, foot, (flags & FLAG_511_BYTES) ? 511 : 512, end);
	fz_file_finish(fd, end + ((flags & FLAG_511_BYTES) ? 511 : 512));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t foot[VD_FOOTER_SIZE] = {0};
	unsigned flags = size > VD_FOOTER_SIZE ? data[VD_FOOTER_SIZE] : FLAG_FIX_CHECKSUM;
	size_t rest = size > VD_FOOTER_SIZE + 1 ? size - VD_FOOTER_SIZE - 1 : 0;
	char path[512];

	memcpy(foot, data, size < sizeof(foot) ? size : sizeof(foot));
	codec_properties(foot);
	build_image(foot, flags, data + size - rest, rest);
	fz_path("img.vhd", path, sizeof(path));
	fz_exercise(path, VD_OPEN_RDONLY, fz_hash(data, size), NULL);
	fz_exercise(path, VD_OPEN_NO_PARENT, fz_hash(data, size) >> 3, NULL);
	fz_check(path);
	fz_repair(path);
	return 0;
}
