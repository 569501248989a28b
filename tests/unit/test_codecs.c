/*
 * Unit tests of the pure VHD codecs in libvdisk/vhd/vhd_int.h: checksum, footer,
 * dynamic header, CHS geometry and the size rule, sector bitmaps and locators.
 * Expected values come from docs/VHD-FORMAT.md and the fixtures' MANIFEST.tsv.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vhd/vhd_int.h"

/* ---- helpers ---------------------------------------------------------- */

/* The fixture directory: $FIXTURES (tests/run.sh sets it), else the shared checkout. */
static const char *fixture_dir(void)
{
	const char *dir = getenv("FIXTURES");
	if (dir && *dir)
		return dir;
	if (access("../shared/fixtures/vhd/MANIFEST.tsv", R_OK) == 0)
		return "../shared/fixtures/vhd"; /* run from the repository's top */
	return "/work/shared/fixtures/vhd";
}

/* Read exactly LEN bytes of fragments/NAME, or skip the test saying why. */
static void read_fragment(const char *name, uint8_t *buf, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/fragments/%s", fixture_dir(), name);
	FILE *f = fopen(path, "rb");
	if (!f)
		cr_skip("fixture %s not available (%s); set FIXTURES to the fixture directory",
			path, strerror(errno));
	size_t got = fread(buf, 1, len, f);
	int extra = fgetc(f);
	fclose(f);
	cr_assert_eq(got, len, "fixture %s: %zu bytes, expected %zu", path, got, len);
	cr_assert_eq(extra, EOF, "fixture %s is longer than %zu bytes", path, len);
}

/* The checksum as docs/VHD-FORMAT.md defines it, written independently. */
static uint32_t ref_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;
	for (size_t i = 0; i < len; i++)
		if (i < csum_off || i >= csum_off + 4)
			sum += buf[i];
	return ~sum;
}

static uint32_t be32_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64_at(const uint8_t *p)
{
	return (uint64_t)be32_at(p) << 32 | be32_at(p + 4);
}

static int all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return 0;
	return 1;
}

/* ---- checksum --------------------------------------------------------- */

Test(checksum, zero_buffer_is_all_ones)
{
	uint8_t buf[512] = {0};
	cr_assert_eq(vd_vhd_checksum(buf, sizeof(buf), 64), 0xFFFFFFFFu);
}

Test(checksum, known_sums_by_hand)
{
	uint8_t buf[512] = {0};
	buf[0] = 1;
	buf[1] = 2;
	buf[511] = 3;
	/* 1 + 2 + 3 = 6, NOT 6 = 0xFFFFFFF9 */
	cr_assert_eq(vd_vhd_checksum(buf, sizeof(buf), 64), 0xFFFFFFF9u);

	memset(buf, 0xFF, sizeof(buf));
	/* 508 bytes of 255 (the field excluded) = 129540 = 0x1FA04 */
	cr_assert_eq(vd_vhd_checksum(buf, sizeof(buf), 64), 0xFFFE05FBu);

	uint8_t hdr[1024];
	memset(hdr, 0xFF, sizeof(hdr));
	/* 1020 bytes of 255 = 260100 = 0x3F804 */
	cr_assert_eq(vd_vhd_checksum(hdr, sizeof(hdr), 36), 0xFFFC07FBu);
}

Test(checksum, field_bytes_are_ignored)
{
	uint8_t buf[512] = {0};
	buf[64] = 0x12;
	buf[65] = 0x34;
	buf[66] = 0x56;
	buf[67] = 0x78;
	cr_assert_eq(vd_vhd_checksum(buf, sizeof(buf), 64), 0xFFFFFFFFu);
	buf[63] = 1;
	buf[68] = 1;
	cr_assert_eq(vd_vhd_checksum(buf, sizeof(buf), 64), 0xFFFFFFFDu);
}

Test(checksum, matches_reference_on_random_buffers)
{
	uint8_t buf[1024];
	srand(1234);
	for (int round = 0; round < 200; round++) {
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rand();
		size_t len = round % 2 ? 1024 : 512;
		size_t off = round % 2 ? 36 : 64;
		cr_assert_eq(vd_vhd_checksum(buf, len, off), ref_checksum(buf, len, off),
			     "round %d", round);
	}
}

Test(checksum, real_fixture_checksums_valid)
{
	uint8_t footer[512], hdr[1024];
	read_fragment("libvhdi-vpc-differencing-footer.bin", footer, sizeof(footer));
	read_fragment("libvhdi-vpc-differencing-dynheader.bin", hdr, sizeof(hdr));
	cr_assert_eq(ref_checksum(footer, 512, 64), be32_at(footer + 64),
		     "test oracle disagrees with the fixture");
	cr_assert_eq(vd_vhd_checksum(footer, 512, 64), be32_at(footer + 64));
	cr_assert_eq(vd_vhd_checksum(footer, 512, 64), 0xFFFFF023u);
	cr_assert_eq(vd_vhd_checksum(hdr, 1024, 36), be32_at(hdr + 36));
	cr_assert_eq(vd_vhd_checksum(hdr, 1024, 36), 0xFFFFE1C1u);
}

/* ---- footer ----------------------------------------------------------- */

Test(footer, decode_real_virtual_pc_footer)
{
	uint8_t buf[512];
	read_fragment("libvhdi-vpc-differencing-footer.bin", buf, sizeof(buf));
	struct vd_footer f;
	memset(&f, 0xA5, sizeof(f));
	cr_assert_eq(vd_footer_decode(buf, &f), 0);
	cr_assert_arr_eq(f.cookie, "conectix", 8);
	cr_assert_eq(f.features, 2u);
	cr_assert_eq(f.version, 0x00010000u);
	cr_assert_eq(f.data_offset, 512u);
	cr_assert_eq(f.timestamp, 0x192215F0u);
	cr_assert_arr_eq(f.creator_app, "vpc ", 4);
	cr_assert_eq(f.creator_version, 0x00010000u, "version 1.0");
	cr_assert_eq(f.creator_os, 0x5769326Bu, "Wi2k");
	cr_assert_eq(f.original_size, 536870912u);
	cr_assert_eq(f.current_size, 536870912u);
	cr_assert_eq(f.cylinders, 1040);
	cr_assert_eq(f.heads, 16);
	cr_assert_eq(f.sectors, 63);
	cr_assert_eq(f.disk_type, 4u);
	cr_assert_eq(f.checksum, 0xFFFFF023u);
	static const uint8_t uuid[16] = {0x40, 0xd5, 0x6d, 0x36, 0x9a, 0xb8, 0x4f, 0xe4,
					 0xa3, 0x1a, 0x12, 0x1f, 0xe2, 0xbf, 0x15, 0xeb};
	cr_assert_arr_eq(f.uuid, uuid, 16);
	cr_assert_eq(f.saved_state, 0);
	cr_assert_eq(f.hidden, 0);
	/* MANIFEST: CHS 1040/16/63 = 536739840, and `vpc ` is sized by CHS */
	cr_assert_eq(vd_footer_uses_chs(&f), 1);
	cr_assert_eq(vd_footer_virtual_size(&f), 536739840u);
}

Test(footer, reencode_real_footer_is_byte_identical)
{
	uint8_t buf[512], out[512];
	read_fragment("libvhdi-vpc-differencing-footer.bin", buf, sizeof(buf));
	struct vd_footer f;
	cr_assert_eq(vd_footer_decode(buf, &f), 0);
	memset(out, 0xAA, sizeof(out));
	vd_footer_encode(&f, out);
	cr_assert_arr_eq(out, buf, 512, "decode then encode changed the footer");
}

static void sample_footer(struct vd_footer *f, int variant)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = variant ? 3 : 2;
	f->version = 0x00010000;
	f->data_offset = variant ? VD_ALL_ONES : 512;
	f->timestamp = 0x2B3C4D5E + (uint32_t)variant;
	memcpy(f->creator_app, variant ? "tap\0" : "qem2", 4);
	f->creator_version = 0x00050003;
	f->creator_os = variant ? 0 : 0x5769326B;
	f->original_size = 0x0123456789ABCDEFull;
	f->current_size = 0x00000F0000000200ull;
	f->cylinders = 0xBEEF;
	f->heads = 16;
	f->sectors = 255;
	f->disk_type = variant ? 2 : 3;
	f->checksum = 0xDEADBEEF; /* must be recomputed by encode */
	for (int i = 0; i < 16; i++)
		f->uuid[i] = (uint8_t)(0xF0 - 7 * i);
	f->saved_state = (uint8_t)variant;
	f->hidden = (uint8_t)variant;
}

Test(footer, encode_places_every_field_at_spec_offset)
{
	for (int variant = 0; variant < 2; variant++) {
		struct vd_footer f;
		sample_footer(&f, variant);
		uint8_t buf[512];
		memset(buf, 0xAA, sizeof(buf)); /* encode must write every byte */
		vd_footer_encode(&f, buf);
		cr_assert_arr_eq(buf, "conectix", 8);
		cr_assert_eq(be32_at(buf + 8), f.features);
		cr_assert_eq(be32_at(buf + 12), 0x00010000u);
		cr_assert_eq(be64_at(buf + 16), f.data_offset);
		cr_assert_eq(be32_at(buf + 24), f.timestamp);
		cr_assert_arr_eq(buf + 28, f.creator_app, 4);
		cr_assert_eq(be32_at(buf + 32), 0x00050003u);
		cr_assert_eq(be32_at(buf + 36), f.creator_os);
		cr_assert_eq(be64_at(buf + 40), 0x0123456789ABCDEFull);
		cr_assert_eq(be64_at(buf + 48), 0x00000F0000000200ull);
		cr_assert_eq(buf[56], 0xBE);
		cr_assert_eq(buf[57], 0xEF);
		cr_assert_eq(buf[58], 16);
		cr_assert_eq(buf[59], 255);
		cr_assert_eq(be32_at(buf + 60), f.disk_type);
		cr_assert_arr_eq(buf + 68, f.uuid, 16);
		cr_assert_eq(buf[84], variant);
		cr_assert_eq(buf[85], variant, "blktap's hidden byte");
		cr_assert(all_bytes(buf + 86, 512 - 86, 0), "reserved bytes must be zero");
		uint32_t want = ref_checksum(buf, 512, 64);
		cr_assert_eq(be32_at(buf + 64), want, "stored checksum");
		cr_assert_eq(f.checksum, want, "encode stores the checksum back into the struct");
	}
}

Test(footer, round_trip_every_field)
{
	for (int variant = 0; variant < 2; variant++) {
		struct vd_footer f, g;
		sample_footer(&f, variant);
		uint8_t buf[512];
		vd_footer_encode(&f, buf);
		memset(&g, 0x5A, sizeof(g));
		cr_assert_eq(vd_footer_decode(buf, &g), 0, "variant %d", variant);
		cr_assert_arr_eq(g.cookie, f.cookie, 8);
		cr_assert_eq(g.features, f.features);
		cr_assert_eq(g.version, f.version);
		cr_assert_eq(g.data_offset, f.data_offset);
		cr_assert_eq(g.timestamp, f.timestamp);
		cr_assert_arr_eq(g.creator_app, f.creator_app, 4);
		cr_assert_eq(g.creator_version, f.creator_version);
		cr_assert_eq(g.creator_os, f.creator_os);
		cr_assert_eq(g.original_size, f.original_size);
		cr_assert_eq(g.current_size, f.current_size);
		cr_assert_eq(g.cylinders, f.cylinders);
		cr_assert_eq(g.heads, f.heads);
		cr_assert_eq(g.sectors, f.sectors);
		cr_assert_eq(g.disk_type, f.disk_type);
		cr_assert_eq(g.checksum, f.checksum);
		cr_assert_arr_eq(g.uuid, f.uuid, 16);
		cr_assert_eq(g.saved_state, f.saved_state);
		cr_assert_eq(g.hidden, f.hidden);
	}
}

Test(footer, wrong_cookie_is_bad_cookie)
{
	struct vd_footer f, g;
	sample_footer(&f, 0);
	uint8_t buf[512];
	vd_footer_encode(&f, buf);
	buf[0] = 'C';
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_COOKIE);
	/* a wrong cookie with a correct checksum is still not a footer */
	uint32_t c = ref_checksum(buf, 512, 64);
	buf[64] = (uint8_t)(c >> 24);
	buf[65] = (uint8_t)(c >> 16);
	buf[66] = (uint8_t)(c >> 8);
	buf[67] = (uint8_t)c;
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_COOKIE);
	/* the dynamic header's cookie is not a footer's */
	vd_footer_encode(&f, buf);
	memcpy(buf, "cxsparse", 8);
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_COOKIE);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_COOKIE);
}

Test(footer, flipped_byte_is_bad_checksum_with_fields_filled)
{
	struct vd_footer f, g;
	sample_footer(&f, 0);
	uint8_t buf[512];
	vd_footer_encode(&f, buf);
	buf[47] ^= 0x01; /* last byte of original size */
	memset(&g, 0, sizeof(g));
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_CHECKSUM);
	cr_assert_eq(g.original_size, f.original_size ^ 1, "fields filled on a bad checksum");
	cr_assert_eq(g.current_size, f.current_size);
	cr_assert_arr_eq(g.creator_app, "qem2", 4);
	cr_assert_eq(g.disk_type, 3u);
	cr_assert_eq(g.checksum, f.checksum, "the stored checksum is reported");

	/* the checksum covers the reserved area too */
	vd_footer_encode(&f, buf);
	buf[300] = 1;
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_CHECKSUM);
	/* and a damaged checksum field */
	vd_footer_encode(&f, buf);
	buf[67] ^= 0x80;
	cr_assert_eq(vd_footer_decode(buf, &g), VD_DECODE_BAD_CHECKSUM);
}

/* ---- dynamic header --------------------------------------------------- */

Test(dynhdr, decode_real_virtual_pc_header)
{
	uint8_t buf[1024];
	read_fragment("libvhdi-vpc-differencing-dynheader.bin", buf, sizeof(buf));
	struct vd_dynhdr h;
	memset(&h, 0xA5, sizeof(h));
	cr_assert_eq(vd_dynhdr_decode(buf, &h), 0);
	cr_assert_arr_eq(h.cookie, "cxsparse", 8);
	cr_assert_eq(h.data_offset, VD_ALL_ONES);
	cr_assert_eq(h.table_offset, 0x600u);
	cr_assert_eq(h.version, 0x00010000u);
	cr_assert_eq(h.max_table_entries, 256u);
	cr_assert_eq(h.block_size, 2u << 20);
	cr_assert_eq(h.checksum, 0xFFFFE1C1u);
	static const uint8_t puuid[16] = {0xd4, 0x9c, 0x5c, 0x80, 0x35, 0x0a, 0x4a, 0x89,
					  0x89, 0x8a, 0x5a, 0xd6, 0xd1, 0x0f, 0x65, 0x78};
	cr_assert_arr_eq(h.parent_uuid, puuid, 16);
	cr_assert_eq(h.parent_timestamp, 0x1922077Cu);
	cr_assert_arr_eq(h.parent_name, buf + 64, 512);

	char name[600];
	cr_assert_eq(vd_parent_name_decode(h.parent_name, name, sizeof(name)), 11);
	cr_assert_str_eq(name, "dynamic.vhd");

	/* Virtual PC left entries 0..3 empty and used 4..7 (at 0x2a0) */
	static const uint32_t codes[4] = {VD_LOC_W2KU, VD_LOC_W2RU, VD_LOC_WI2K, VD_LOC_WI2R};
	static const uint32_t lens[4] = {0x2a, 0x1a, 0x15, 0x0d};
	static const uint64_t offs[4] = {0x1200, 0x1000, 0xe00, 0xc00};
	for (int i = 0; i < 4; i++) {
		const struct vd_locator *l = &h.loc[4 + i];
		cr_assert_eq(l->code, codes[i], "locator %d: %08x", 4 + i, l->code);
		cr_assert_eq(l->data_space, 512u, "locator %d", 4 + i);
		cr_assert_eq(vd_locator_space_bytes(l->data_space), 512, "locator %d", 4 + i);
		cr_assert_eq(l->data_length, lens[i], "locator %d", 4 + i);
		cr_assert_eq(l->data_offset, offs[i], "locator %d", 4 + i);
	}
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(h.loc[i].code, VD_LOC_NONE, "locator %d", i);
		cr_assert_eq(h.loc[i].data_length, 0u, "locator %d", i);
	}
}

Test(dynhdr, reencode_real_header_is_byte_identical)
{
	uint8_t buf[1024], out[1024];
	read_fragment("libvhdi-vpc-differencing-dynheader.bin", buf, sizeof(buf));
	struct vd_dynhdr h;
	cr_assert_eq(vd_dynhdr_decode(buf, &h), 0);
	memset(out, 0xAA, sizeof(out));
	vd_dynhdr_encode(&h, out);
	cr_assert_arr_eq(out, buf, 1024, "decode then encode changed the header");
}

static void sample_dynhdr(struct vd_dynhdr *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->cookie, "cxsparse", 8);
	h->data_offset = VD_ALL_ONES;
	h->table_offset = 0x0000000123456600ull;
	h->version = 0x00010000;
	h->max_table_entries = 0x00ABCDEF;
	h->block_size = 512u << 10;
	h->checksum = 0x01020304;
	for (int i = 0; i < 16; i++)
		h->parent_uuid[i] = (uint8_t)(i * 17 + 1);
	h->parent_timestamp = 0x31323334;
	for (int i = 0; i < 512; i++)
		h->parent_name[i] = (uint8_t)(i % 2 ? 'a' + i % 26 : 0);
	for (int i = 0; i < 8; i++) {
		h->loc[i].code = i < 7 ? VD_LOC_W2KU + (uint32_t)i : 0;
		h->loc[i].data_space = 512u * (uint32_t)(i + 1);
		h->loc[i].data_length = 100u + (uint32_t)i;
		h->loc[i].reserved = 0;
		h->loc[i].data_offset = 0x0000001000000000ull + 4096u * (uint64_t)i;
	}
}

Test(dynhdr, encode_places_every_field_at_spec_offset)
{
	struct vd_dynhdr h;
	sample_dynhdr(&h);
	uint8_t buf[1024];
	memset(buf, 0xAA, sizeof(buf));
	vd_dynhdr_encode(&h, buf);
	cr_assert_arr_eq(buf, "cxsparse", 8);
	cr_assert_eq(be64_at(buf + 8), VD_ALL_ONES);
	cr_assert_eq(be64_at(buf + 16), 0x0000000123456600ull);
	cr_assert_eq(be32_at(buf + 24), 0x00010000u);
	cr_assert_eq(be32_at(buf + 28), 0x00ABCDEFu);
	cr_assert_eq(be32_at(buf + 32), 512u << 10);
	cr_assert_arr_eq(buf + 40, h.parent_uuid, 16);
	cr_assert_eq(be32_at(buf + 56), 0x31323334u);
	cr_assert(all_bytes(buf + 60, 4, 0), "reserved 60..63");
	cr_assert_arr_eq(buf + 64, h.parent_name, 512);
	for (int i = 0; i < 8; i++) {
		const uint8_t *e = buf + 576 + 24 * i;
		cr_assert_eq(be32_at(e), h.loc[i].code, "locator %d", i);
		cr_assert_eq(be32_at(e + 4), h.loc[i].data_space, "locator %d", i);
		cr_assert_eq(be32_at(e + 8), h.loc[i].data_length, "locator %d", i);
		cr_assert_eq(be32_at(e + 12), 0u, "locator %d", i);
		cr_assert_eq(be64_at(e + 16), h.loc[i].data_offset, "locator %d", i);
	}
	cr_assert(all_bytes(buf + 768, 256, 0), "reserved 768..1023");
	uint32_t want = ref_checksum(buf, 1024, 36);
	cr_assert_eq(be32_at(buf + 36), want);
	cr_assert_eq(h.checksum, want, "encode stores the checksum back into the struct");
}

Test(dynhdr, round_trip_every_field)
{
	struct vd_dynhdr h, g;
	sample_dynhdr(&h);
	uint8_t buf[1024];
	vd_dynhdr_encode(&h, buf);
	memset(&g, 0x5A, sizeof(g));
	cr_assert_eq(vd_dynhdr_decode(buf, &g), 0);
	cr_assert_arr_eq(g.cookie, h.cookie, 8);
	cr_assert_eq(g.data_offset, h.data_offset);
	cr_assert_eq(g.table_offset, h.table_offset);
	cr_assert_eq(g.version, h.version);
	cr_assert_eq(g.max_table_entries, h.max_table_entries);
	cr_assert_eq(g.block_size, h.block_size);
	cr_assert_eq(g.checksum, h.checksum);
	cr_assert_arr_eq(g.parent_uuid, h.parent_uuid, 16);
	cr_assert_eq(g.parent_timestamp, h.parent_timestamp);
	cr_assert_arr_eq(g.parent_name, h.parent_name, 512);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(g.loc[i].code, h.loc[i].code, "locator %d", i);
		cr_assert_eq(g.loc[i].data_space, h.loc[i].data_space, "locator %d", i);
		cr_assert_eq(g.loc[i].data_length, h.loc[i].data_length, "locator %d", i);
		cr_assert_eq(g.loc[i].data_offset, h.loc[i].data_offset, "locator %d", i);
	}
}

Test(dynhdr, bad_cookie_and_bad_checksum)
{
	struct vd_dynhdr h, g;
	sample_dynhdr(&h);
	uint8_t buf[1024];
	vd_dynhdr_encode(&h, buf);
	memcpy(buf, "conectix", 8);
	cr_assert_eq(vd_dynhdr_decode(buf, &g), VD_DECODE_BAD_COOKIE);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(vd_dynhdr_decode(buf, &g), VD_DECODE_BAD_COOKIE);

	static const int flips[] = {16, 33, 64, 575, 576 + 24 * 7 + 23, 1000, 1023, 36};
	for (size_t i = 0; i < sizeof(flips) / sizeof(flips[0]); i++) {
		vd_dynhdr_encode(&h, buf);
		buf[flips[i]] ^= 0x10;
		cr_assert_eq(vd_dynhdr_decode(buf, &g), VD_DECODE_BAD_CHECKSUM, "flip at %d",
			     flips[i]);
	}
}

/* ---- CHS geometry ----------------------------------------------------- */

/* The spec appendix's algorithm, transcribed from docs/VHD-FORMAT.md 2.1. */
static void ref_chs(uint64_t size, uint32_t *c, uint32_t *h, uint32_t *s)
{
	uint64_t n = size / 512, ch;
	if (n > 65535ull * 16 * 255)
		n = 65535ull * 16 * 255;
	if (n >= 65535ull * 16 * 63) {
		*s = 255;
		*h = 16;
		ch = n / 255;
	} else {
		*s = 17;
		ch = n / 17;
		*h = (uint32_t)((ch + 1023) / 1024);
		if (*h < 4)
			*h = 4;
		if (ch >= *h * 1024ull || *h > 16) {
			*s = 31;
			*h = 16;
			ch = n / 31;
		}
		if (ch >= *h * 1024ull) {
			*s = 63;
			*h = 16;
			ch = n / 63;
		}
	}
	*c = (uint32_t)(ch / *h);
}

struct chs_case {
	uint64_t size;
	uint16_t c;
	uint8_t h, s;
};

Test(chs, manifest_and_spec_examples)
{
	static const struct chs_case cases[] = {
		{104448, 3, 4, 17},		   /* dfvfs-ext2-crafted */
		{3ull << 20, 90, 4, 17},	   /* win-diskmgmt 3M */
		{4ull << 20, 120, 4, 17},	   /* tap 4M */
		{10ull << 20, 301, 4, 17},	   /* win10 10M */
		{16ull << 20, 481, 4, 17},	   /* VHD-FORMAT.md: 16 MiB reads as 16746496 */
		{200ull << 20, 825, 16, 31},	   /* win7 200M */
		{512ull << 20, 1040, 16, 63},	   /* Virtual PC footer fragment */
		{136365211648ull, 65278, 16, 255}, /* Hyper-V / Virtual PC 127G */
		{100000ull * 512, 980, 6, 17},	   /* heads between 4 and 16 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t c = 0;
		uint8_t h = 0, s = 0;
		vd_chs_from_size(cases[i].size, &c, &h, &s);
		cr_assert(c == cases[i].c && h == cases[i].h && s == cases[i].s,
			  "size %llu: got %u/%u/%u, expected %u/%u/%u",
			  (unsigned long long)cases[i].size, c, h, s, cases[i].c, cases[i].h,
			  cases[i].s);
	}
	cr_assert_eq(vd_chs_bytes(1040, 16, 63), 536739840u);
	cr_assert_eq(vd_chs_bytes(65535, 16, 255), 136899993600ull, "no 32-bit overflow");
}

Test(chs, thresholds_between_sectors_per_track)
{
	static const struct chs_case cases[] = {
		{278527ull * 512, 1023, 16, 17},     /* last 17-sector geometry */
		{278528ull * 512, 561, 16, 31},	     /* first 31 */
		{507903ull * 512, 1023, 16, 31},     /* last 31 */
		{507904ull * 512, 503, 16, 63},	     /* first 63 */
		{66059279ull * 512, 65534, 16, 63},  /* last 63 */
		{66059280ull * 512, 16191, 16, 255}, /* 65535*16*63 sectors: first 255 */
		{65535ull * 16 * 255 * 512, 65535, 16, 255},
		{65535ull * 16 * 255 * 512 + 512, 65535, 16, 255}, /* capped */
		{2040ull << 30, 65535, 16, 255},
		{UINT64_MAX, 65535, 16, 255},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint16_t c = 0;
		uint8_t h = 0, s = 0;
		vd_chs_from_size(cases[i].size, &c, &h, &s);
		cr_assert(c == cases[i].c && h == cases[i].h && s == cases[i].s,
			  "size %llu: got %u/%u/%u, expected %u/%u/%u",
			  (unsigned long long)cases[i].size, c, h, s, cases[i].c, cases[i].h,
			  cases[i].s);
	}
}

static void check_chs_against_reference(uint64_t size)
{
	uint16_t c;
	uint8_t h, s;
	uint32_t rc, rh, rs;
	vd_chs_from_size(size, &c, &h, &s);
	ref_chs(size, &rc, &rh, &rs);
	cr_assert(c == rc && h == rh && s == rs, "size %llu: got %u/%u/%u, spec %u/%u/%u",
		  (unsigned long long)size, c, h, s, rc, rh, rs);
	cr_assert_leq(vd_chs_bytes(c, h, s), size, "size %llu: CHS product above the size",
		      (unsigned long long)size);
}

Test(chs, sweep_matches_spec_and_never_exceeds_size)
{
	/* every sector count up to 300 MiB in steps that cross each threshold */
	for (uint64_t n = 0; n < 700000; n += 7)
		check_chs_against_reference(n * 512);
	for (uint64_t n = 66059280 - 3000; n < 66059280 + 3000; n++)
		check_chs_against_reference(n * 512);
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		check_chs_against_reference(x % (2200ull << 30));
	}
}

/* ---- the virtual size rule -------------------------------------------- */

static struct vd_footer size_footer(const char creator[4], uint64_t size, uint16_t c, uint8_t h,
				    uint8_t s)
{
	struct vd_footer f;
	memset(&f, 0, sizeof(f));
	memcpy(f.cookie, "conectix", 8);
	f.features = 2;
	f.version = 0x00010000;
	memcpy(f.creator_app, creator, 4);
	f.original_size = size;
	f.current_size = size;
	f.cylinders = c;
	f.heads = h;
	f.sectors = s;
	f.disk_type = 3;
	return f;
}

Test(size_rule, vpc_and_qemu_use_chs)
{
	static const char *chs_creators[] = {"vpc ", "qemu"};
	for (int i = 0; i < 2; i++) {
		struct vd_footer f = size_footer(chs_creators[i], 536870912, 1040, 16, 63);
		cr_assert_eq(vd_footer_uses_chs(&f), 1, "creator '%s'", chs_creators[i]);
		cr_assert_eq(vd_footer_virtual_size(&f), 536739840u, "creator '%s'",
			     chs_creators[i]);
		f = size_footer(chs_creators[i], 136365211648ull, 65278, 16, 255);
		cr_assert_eq(vd_footer_virtual_size(&f), 136363130880ull, "creator '%s'",
			     chs_creators[i]);
	}
}

Test(size_rule, max_geometry_means_current_size)
{
	static const char *chs_creators[] = {"vpc ", "qemu"};
	for (int i = 0; i < 2; i++) {
		struct vd_footer f = size_footer(chs_creators[i], 2040ull << 30, 65535, 16, 255);
		cr_assert_eq(vd_footer_uses_chs(&f), 0, "creator '%s' 65535/16/255",
			     chs_creators[i]);
		cr_assert_eq(vd_footer_virtual_size(&f), 2040ull << 30, "creator '%s'",
			     chs_creators[i]);
		/* the d2v fixture: 251 MiB with the maximum geometry */
		f = size_footer(chs_creators[i], 263454720, 65535, 16, 255);
		cr_assert_eq(vd_footer_virtual_size(&f), 263454720u);
	}
}

Test(size_rule, other_creators_use_current_size)
{
	static const char *creators[] = {"win ",   "qem2", "d2v\0", "tap\0", "vbox",	"CTXS",
					 "wa\0\0", "dutl", "vs  ",  "vdsk",  "\0\0\0\0"};
	for (size_t i = 0; i < sizeof(creators) / sizeof(creators[0]); i++) {
		struct vd_footer f = size_footer(creators[i], 3145728, 90, 4, 17);
		cr_assert_eq(vd_footer_uses_chs(&f), 0, "creator #%zu '%.4s'", i, creators[i]);
		cr_assert_eq(vd_footer_virtual_size(&f), 3145728u, "creator #%zu '%.4s'", i,
			     creators[i]);
	}
}

Test(size_rule, never_more_than_current_size)
{
	/* a `vpc ` footer whose geometry is larger than its current size */
	struct vd_footer f = size_footer("vpc ", 1u << 20, 1040, 16, 63);
	cr_assert_leq(vd_footer_virtual_size(&f), 1u << 20);
	cr_assert_eq(vd_footer_virtual_size(&f), 1u << 20);
}

/* ---- sector bitmaps --------------------------------------------------- */

static int ref_bit(const uint8_t *bm, uint32_t k)
{
	return (bm[k / 8] & (0x80 >> (k % 8))) != 0;
}

Test(bitmap, msb_first_bit_order)
{
	uint8_t bm[4] = {0};
	vd_bitmap_set_range(bm, 0, 1);
	cr_assert_eq(bm[0], 0x80, "sector 0 is bit 0x80 of byte 0");
	cr_assert(all_bytes(bm + 1, 3, 0));
	cr_assert_eq(vd_bitmap_test(bm, 0), 1);
	cr_assert_eq(vd_bitmap_test(bm, 1), 0);
	vd_bitmap_set_range(bm, 7, 1);
	cr_assert_eq(bm[0], 0x81);
	vd_bitmap_set_range(bm, 8, 1);
	cr_assert_eq(bm[1], 0x80);
	vd_bitmap_set_range(bm, 31, 1);
	cr_assert_eq(bm[3], 0x01);
	cr_assert_eq(vd_bitmap_test(bm, 31), 1);
	cr_assert_eq(vd_bitmap_test(bm, 30), 0);
	cr_assert_eq(bm[2], 0);
}

Test(bitmap, set_range_exact_bytes)
{
	uint8_t bm[8] = {0};
	vd_bitmap_set_range(bm, 3, 2);
	static const uint8_t a[8] = {0x18};
	cr_assert_arr_eq(bm, a, 8, "inside one byte");

	memset(bm, 0, sizeof(bm));
	vd_bitmap_set_range(bm, 5, 13); /* bits 5..17 */
	static const uint8_t b[8] = {0x07, 0xFF, 0xC0};
	cr_assert_arr_eq(bm, b, 8, "across two byte boundaries");

	memset(bm, 0, sizeof(bm));
	vd_bitmap_set_range(bm, 8, 16);
	static const uint8_t c[8] = {0x00, 0xFF, 0xFF};
	cr_assert_arr_eq(bm, c, 8, "whole bytes");

	memset(bm, 0, sizeof(bm));
	vd_bitmap_set_range(bm, 20, 0);
	static const uint8_t z[8] = {0};
	cr_assert_arr_eq(bm, z, 8, "empty range");

	memset(bm, 0x00, sizeof(bm));
	bm[0] = 0x40;
	vd_bitmap_set_range(bm, 63, 1);
	static const uint8_t d[8] = {0x40, 0, 0, 0, 0, 0, 0, 0x01};
	cr_assert_arr_eq(bm, d, 8, "set only ORs bits in");
}

Test(bitmap, set_range_whole_2mib_block_map)
{
	uint8_t bm[512] = {0}; /* 4096 sectors; ASan's stack redzones catch overruns */
	vd_bitmap_set_range(bm, 1, 4094);
	cr_assert_eq(bm[0], 0x7F);
	cr_assert(all_bytes(bm + 1, 510, 0xFF));
	cr_assert_eq(bm[511], 0xFE);
	cr_assert_eq(vd_bitmap_all_set(bm, 1, 4094), 1);
	cr_assert_eq(vd_bitmap_all_set(bm, 0, 4096), 0);
	cr_assert_eq(vd_bitmap_all_set(bm, 1, 4095), 0);
	cr_assert_eq(vd_bitmap_run(bm, 1, 4095), 4094u);
	cr_assert_eq(vd_bitmap_run(bm, 0, 4096), 1u);
	cr_assert_eq(vd_bitmap_run(bm, 4095, 1), 1u);
	vd_bitmap_set_range(bm, 0, 4096);
	cr_assert(all_bytes(bm, 512, 0xFF));
	cr_assert_eq(vd_bitmap_all_set(bm, 0, 4096), 1);
	cr_assert_eq(vd_bitmap_run(bm, 0, 4096), 4096u);
}

Test(bitmap, all_set_and_run_by_hand)
{
	/* bits 0-3 set, 4-11 clear, 12-15 set, 16.. clear */
	uint8_t bm[8] = {0};
	bm[0] = 0xF0;
	bm[1] = 0x0F;
	cr_assert_eq(vd_bitmap_all_set(bm, 0, 4), 1);
	cr_assert_eq(vd_bitmap_all_set(bm, 0, 5), 0);
	cr_assert_eq(vd_bitmap_all_set(bm, 12, 4), 1);
	cr_assert_eq(vd_bitmap_all_set(bm, 11, 2), 0);
	cr_assert_eq(vd_bitmap_all_set(bm, 15, 2), 0);
	cr_assert_eq(vd_bitmap_run(bm, 0, 64), 4u);
	cr_assert_eq(vd_bitmap_run(bm, 4, 60), 8u);
	cr_assert_eq(vd_bitmap_run(bm, 5, 59), 7u);
	cr_assert_eq(vd_bitmap_run(bm, 12, 52), 4u);
	cr_assert_eq(vd_bitmap_run(bm, 16, 48), 48u, "clear to the end");
	cr_assert_eq(vd_bitmap_run(bm, 4, 3), 3u, "capped at max");
	cr_assert_eq(vd_bitmap_run(bm, 12, 2), 2u, "capped at max");
}

Test(bitmap, random_maps_match_reference)
{
	uint64_t x = 0x9E3779B97F4A7C15ull;
	for (int round = 0; round < 300; round++) {
		uint32_t bytes = 1 + (uint32_t)(round * 37 % 96);
		uint32_t nbits = bytes * 8;
		uint8_t bm[bytes], ref[bytes]; /* exact size: ASan sees overruns */
		for (uint32_t i = 0; i < bytes; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* sparse, dense or random maps, so long runs appear */
			bm[i] = round % 3 == 0 ? 0 : round % 3 == 1 ? 0xFF : (uint8_t)x;
			if (x % 11 == 0)
				bm[i] = (uint8_t)(x >> 8);
		}
		memcpy(ref, bm, bytes);
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint32_t first = (uint32_t)(x % nbits);
		uint32_t count = (uint32_t)((x >> 20) % (nbits - first + 1));
		vd_bitmap_set_range(bm, first, count);
		for (uint32_t k = first; k < first + count; k++)
			ref[k / 8] |= (uint8_t)(0x80 >> (k % 8));
		cr_assert_arr_eq(bm, ref, bytes, "round %d set_range(%u, %u)", round, first, count);
		for (int q = 0; q < 40; q++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			uint32_t f = (uint32_t)(x % nbits);
			uint32_t max = 1 + (uint32_t)((x >> 24) % (nbits - f));
			uint32_t run = 1;
			while (run < max && ref_bit(ref, f + run) == ref_bit(ref, f))
				run++;
			cr_assert_eq(vd_bitmap_run(bm, f, max), run, "round %d run(%u, %u)", round,
				     f, max);
			int all = 1;
			for (uint32_t k = f; k < f + max; k++)
				all &= ref_bit(ref, k);
			cr_assert_eq(vd_bitmap_all_set(bm, f, max), all, "round %d all_set(%u, %u)",
				     round, f, max);
			cr_assert_eq(vd_bitmap_test(bm, f), ref_bit(ref, f));
		}
	}
}

Test(bitmap, bitmap_bytes_per_block_size)
{
	static const uint32_t cases[][2] = {
		{512, 512},	   {4096, 512},	      {64u << 10, 512},
		{512u << 10, 512}, {2u << 20, 512},   {4u << 20, 1024},
		{8u << 20, 2048},  {32u << 20, 8192}, {256u << 20, 65536},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(vd_bitmap_bytes(cases[i][0]), cases[i][1], "block %u", cases[i][0]);
}

/* ---- locators --------------------------------------------------------- */

Test(locator, space_rule)
{
	cr_assert_eq(vd_locator_space_bytes(1), 512);
	cr_assert_eq(vd_locator_space_bytes(2), 1024, "below 512: sectors");
	cr_assert_eq(vd_locator_space_bytes(511), 511 * 512);
	cr_assert_eq(vd_locator_space_bytes(512), 512, "a multiple of 512: bytes");
	cr_assert_eq(vd_locator_space_bytes(4096), 4096);
	cr_assert_eq(vd_locator_space_bytes(65536), 65536);
	cr_assert_eq(vd_locator_space_bytes(0xFFFFFE00u), 0xFFFFFE00ll);
	cr_assert_eq(vd_locator_space_bytes(513), -1);
	cr_assert_eq(vd_locator_space_bytes(1000), -1);
	cr_assert_eq(vd_locator_space_bytes(4097), -1);
	cr_assert_eq(vd_locator_space_bytes(0xFFFFFFFFu), -1);
}

/* Encode ASCII text as UTF-16 (LE or BE) into OUT; returns the byte count. */
static size_t utf16_ascii(const char *s, int big_endian, uint8_t *out)
{
	size_t n = 0;
	for (; *s; s++, n += 2) {
		out[n + (big_endian ? 1 : 0)] = (uint8_t)*s;
		out[n + (big_endian ? 0 : 1)] = 0;
	}
	return n;
}

static size_t utf16_units(const uint16_t *u, size_t count, int big_endian, uint8_t *out)
{
	for (size_t i = 0; i < count; i++) {
		out[2 * i + (big_endian ? 0 : 1)] = (uint8_t)(u[i] >> 8);
		out[2 * i + (big_endian ? 1 : 0)] = (uint8_t)u[i];
	}
	return 2 * count;
}

/* Decode and compare to WANT; the output buffer has a guard area after OUTLEN. */
static void expect_path(uint32_t code, const uint8_t *data, size_t len, const char *want)
{
	char out[600];
	memset(out, 0x5A, sizeof(out));
	int rc = vd_locator_decode_path(code, data, len, out, 512);
	cr_assert_eq(rc, (int)strlen(want), "code %08x: rc %d, want \"%s\"", code, rc, want);
	cr_assert_str_eq(out, want, "code %08x", code);
	cr_assert(all_bytes((uint8_t *)out + 512, sizeof(out) - 512, 0x5A));
}

Test(locator, w2ku_w2ru_utf16le)
{
	uint8_t data[256];
	size_t n = utf16_ascii("C:\\dir\\p.vhd", 0, data);
	expect_path(VD_LOC_W2KU, data, n, "C:\\dir\\p.vhd");
	n = utf16_ascii(".\\p.vhd", 0, data);
	expect_path(VD_LOC_W2RU, data, n, ".\\p.vhd");
	/* a terminating NUL counted in the data length is not part of the path */
	n = utf16_ascii(".\\p.vhd", 0, data);
	data[n] = data[n + 1] = 0;
	expect_path(VD_LOC_W2RU, data, n + 2, ".\\p.vhd");
}

Test(locator, utf16le_non_ascii_to_utf8)
{
	/* "C:\dé\文\😀.vhd": U+00E9, U+6587, U+1F600 as a surrogate pair */
	static const uint16_t u[] = {'C',  ':',	   '\\',   'd', 0x00E9, '\\', 0x6587,
				     '\\', 0xD83D, 0xDE00, '.', 'v',	'h',  'd'};
	uint8_t data[64];
	size_t n = utf16_units(u, sizeof(u) / sizeof(u[0]), 0, data);
	expect_path(VD_LOC_W2KU, data, n, "C:\\d\xC3\xA9\\\xE6\x96\x87\\\xF0\x9F\x98\x80.vhd");
}

Test(locator, utf16be_fallback)
{
	uint8_t data[256];
	size_t n = utf16_ascii(".\\p.vhd", 1, data);
	expect_path(VD_LOC_W2RU, data, n, ".\\p.vhd");
	n = utf16_ascii("C:\\dir\\p.vhd", 1, data);
	expect_path(VD_LOC_W2KU, data, n, "C:\\dir\\p.vhd");
}

Test(locator, wi2k_wi2r_8bit)
{
	const char *abs = "C:\\dir\\p.vhd", *rel = ".\\p.vhd";
	expect_path(VD_LOC_WI2K, (const uint8_t *)abs, strlen(abs), abs);
	expect_path(VD_LOC_WI2R, (const uint8_t *)rel, strlen(rel), rel);
	/* the data length may count a NUL */
	expect_path(VD_LOC_WI2R, (const uint8_t *)rel, strlen(rel) + 1, rel);
}

Test(locator, macx_file_urls)
{
	const char *a = "file://localhost/dir/p.vhd";
	expect_path(VD_LOC_MACX, (const uint8_t *)a, strlen(a), "/dir/p.vhd");
	const char *b = "file://./p.vhd"; /* what vhd-util writes */
	expect_path(VD_LOC_MACX, (const uint8_t *)b, strlen(b), "./p.vhd");
	const char *c = "file:///dir/p.vhd";
	expect_path(VD_LOC_MACX, (const uint8_t *)c, strlen(c), "/dir/p.vhd");
	const char *d = "file://./tap-dynamic-fat12-parent.vhd"; /* the tap-fat12 chain */
	expect_path(VD_LOC_MACX, (const uint8_t *)d, strlen(d), "./tap-dynamic-fat12-parent.vhd");
}

Test(locator, odd_length_utf16_rejected)
{
	uint8_t data[64];
	size_t n = utf16_ascii("C:\\p.vhd", 0, data);
	char out[64];
	cr_assert_eq(vd_locator_decode_path(VD_LOC_W2KU, data, n - 1, out, sizeof(out)), -1);
	cr_assert_eq(vd_locator_decode_path(VD_LOC_W2RU, data, 1, out, sizeof(out)), -1);
}

/*
 * UTF-16 that is not valid (a surrogate pair cut by the data length, an unpaired
 * surrogate) has no UTF-8 form: the decoder must fail rather than emit the
 * invalid 3-byte sequence ED A0 BD (CESU-8), which no Linux file name matches.
 */
static void expect_invalid_utf16(const uint16_t *u, size_t count)
{
	uint8_t data[32];
	size_t n = utf16_units(u, count, 0, data);
	char out[64];
	memset(out, 0, sizeof(out));
	int rc = vd_locator_decode_path(VD_LOC_W2KU, data, n, out, sizeof(out));
	cr_assert_eq(rc, -1,
		     "W2ku with an unpaired surrogate decoded to %d bytes: %02x %02x %02x %02x "
		     "%02x %02x",
		     rc, (uint8_t)out[0], (uint8_t)out[1], (uint8_t)out[2], (uint8_t)out[3],
		     (uint8_t)out[4], (uint8_t)out[5]);
}

Test(locator, unpaired_surrogates_rejected)
{
	static const uint16_t cut[] = {'a', '.', 'v', 0xD83D};
	expect_invalid_utf16(cut, 4);
	static const uint16_t lone_high[] = {0xD83D, 'a', '.', 'v'};
	expect_invalid_utf16(lone_high, 4);
	static const uint16_t lone_low[] = {'a', 0xDE00, '.', 'v'};
	expect_invalid_utf16(lone_low, 4);
}

Test(parent_name, unpaired_surrogate_rejected)
{
	uint8_t name[512] = {0};
	static const uint16_t u[] = {'p', 0xD800, '.', 'v', 'h', 'd'};
	utf16_units(u, 6, 1, name);
	char out[64];
	cr_assert_eq(vd_parent_name_decode(name, out, sizeof(out)), -1);
}

Test(locator, unknown_codes_rejected)
{
	const char *p = "p.vhd";
	char out[64];
	cr_assert_eq(vd_locator_decode_path(VD_LOC_NONE, (const uint8_t *)p, 5, out, 64), -1);
	cr_assert_eq(vd_locator_decode_path(0x12345678u, (const uint8_t *)p, 5, out, 64), -1);
}

/* Every output length below what the path needs fails without writing past it. */
static void expect_small_buffers_fail(uint32_t code, const uint8_t *data, size_t len,
				      const char *want)
{
	size_t need = strlen(want) + 1;
	for (size_t outlen = 0; outlen <= need; outlen++) {
		char *out = malloc(outlen ? outlen : 1); /* exact size: ASan sees overruns */
		cr_assert_not_null(out);
		int rc = vd_locator_decode_path(code, data, len, out, outlen);
		int ok = outlen < need ? rc == -1 : rc == (int)need - 1 && strcmp(out, want) == 0;
		free(out);
		cr_assert(ok, "code %08x outlen %zu (the path needs %zu with its NUL): rc %d", code,
			  outlen, need, rc);
	}
}

Test(locator, tiny_output_buffers)
{
	uint8_t data[128];
	size_t n = utf16_ascii("C:\\dir\\p.vhd", 0, data);
	expect_small_buffers_fail(VD_LOC_W2KU, data, n, "C:\\dir\\p.vhd");
	n = utf16_ascii(".\\p.vhd", 1, data);
	expect_small_buffers_fail(VD_LOC_W2RU, data, n, ".\\p.vhd");
	static const uint16_t u[] = {0x00E9, 0x6587, 0xD83D, 0xDE00};
	n = utf16_units(u, 4, 0, data);
	expect_small_buffers_fail(VD_LOC_W2RU, data, n, "\xC3\xA9\xE6\x96\x87\xF0\x9F\x98\x80");
	const char *w = "C:\\dir\\p.vhd";
	expect_small_buffers_fail(VD_LOC_WI2K, (const uint8_t *)w, strlen(w), w);
}

Test(locator, macx_output_buffer_sized_for_the_path)
{
	/* the caller sizes OUT for the decoded path, not for the URL */
	const char *m = "file://localhost/dir/p.vhd";
	expect_small_buffers_fail(VD_LOC_MACX, (const uint8_t *)m, strlen(m), "/dir/p.vhd");
	const char *t = "file://./p.vhd";
	expect_small_buffers_fail(VD_LOC_MACX, (const uint8_t *)t, strlen(t), "./p.vhd");
}

Test(locator, long_path_fills_exact_buffer)
{
	/* 255 UTF-16 units of 'x': needs 256 bytes with the NUL */
	uint8_t data[510];
	for (int i = 0; i < 255; i++) {
		data[2 * i] = 'x';
		data[2 * i + 1] = 0;
	}
	char out[256];
	cr_assert_eq(vd_locator_decode_path(VD_LOC_W2KU, data, 510, out, 256), 255);
	cr_assert_eq(strlen(out), 255u);
	cr_assert_eq(vd_locator_decode_path(VD_LOC_W2KU, data, 510, out, 255), -1);
}

/* ---- parent name ------------------------------------------------------ */

Test(parent_name, utf16be_ascii_and_non_ascii)
{
	uint8_t name[512] = {0};
	utf16_ascii("dynamic.vhd", 1, name);
	char out[600];
	cr_assert_eq(vd_parent_name_decode(name, out, sizeof(out)), 11);
	cr_assert_str_eq(out, "dynamic.vhd");

	memset(name, 0, sizeof(name));
	static const uint16_t u[] = {'d', 0x00E9, 0x6587, '.', 'v', 'h', 'd'};
	utf16_units(u, 7, 1, name);
	cr_assert_eq(vd_parent_name_decode(name, out, sizeof(out)), 10);
	cr_assert_str_eq(out, "d\xC3\xA9\xE6\x96\x87.vhd");

	memset(name, 0, sizeof(name));
	cr_assert_eq(vd_parent_name_decode(name, out, sizeof(out)), 0, "empty name");
	cr_assert_str_eq(out, "");
}

Test(parent_name, full_field_without_nul)
{
	uint8_t name[512];
	for (int i = 0; i < 256; i++) {
		name[2 * i] = 0;
		name[2 * i + 1] = (uint8_t)('a' + i % 26);
	}
	char out[257];
	cr_assert_eq(vd_parent_name_decode(name, out, 257), 256);
	cr_assert_eq(strlen(out), 256u);
	cr_assert_eq(out[0], 'a');
	cr_assert_eq(out[255], 'a' + 255 % 26);
	cr_assert_eq(vd_parent_name_decode(name, out, 256), -1, "no room for the NUL");
}

Test(parent_name, tiny_output_buffers)
{
	uint8_t name[512] = {0};
	utf16_ascii("dynamic.vhd", 1, name);
	for (size_t outlen = 0; outlen < 12; outlen++) {
		char *out = malloc(outlen ? outlen : 1); /* exact size: ASan sees overruns */
		cr_assert_not_null(out);
		int rc = vd_parent_name_decode(name, out, outlen);
		free(out);
		cr_assert_eq(rc, -1, "outlen %zu", outlen);
	}
}
