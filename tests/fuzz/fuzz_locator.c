/*
 * libFuzzer target: parent locators and the parent name. Every locator code
 * decodes the input into buffers of exactly the size passed (so ASan sees a
 * byte too many), the result is checked against the input, and UTF-8 paths go
 * to UTF-16 and back unchanged (the writer and the readers of set-parent).
 *
 * Input: one byte for a small output buffer size, then the locator data (also
 * read as a parent name, as a UTF-8 path and, first 4 bytes, a data space).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#define OUT_MAX 4096u

/* Length of the valid UTF-8 sequence at S (shortest form, no surrogates), 0 if none. */
static size_t utf8_sequence(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		return (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		unsigned lo = s[0] == 0xE0 ? 0xA0 : 0x80, hi = s[0] == 0xED ? 0x9F : 0xBF;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
	}
	if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		unsigned lo = s[0] == 0xF0 ? 0x90 : 0x80, hi = s[0] == 0xF4 ? 0x8F : 0xBF;

		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80
			       ? 4
			       : 0;
	}
	return 0;
}

/* Valid UTF-8 as RFC 3629 defines it (what every path we write must be). */
static int utf8_valid(const char *str)
{
	const unsigned char *s = (const unsigned char *)str;

	while (*s) {
		size_t n = utf8_sequence(s);

		if (n == 0)
			return 0;
		s += n;
	}
	return 1;
}

/* The UTF-16 code units of P (BIG_ENDIAN or not) before the first zero unit. */
static size_t units_before_nul(const uint8_t *p, size_t len)
{
	size_t i = 0;

	while (i + 1 < len && (p[i] | p[i + 1]))
		i += 2;
	return i;
}

#define AS_LE 1 /* the input may be UTF-16LE */
#define AS_BE 2 /* the input may be UTF-16BE */

/* The decoder's output OUT (length RC) stands for the UTF-16 input P of LEN bytes. */
static void check_utf16_output(const uint8_t *p, size_t len, unsigned as, const char *out, int rc,
			       const char *what)
{
	size_t n = units_before_nul(p, len);
	uint8_t *le = malloc(n + 4), *be = malloc(n + 4);
	int nle, nbe;

	if (!le || !be)
		abort();
	FZ_ASSERT(utf8_valid(out), "%s decodes to invalid UTF-8", what);
	nle = vd_utf8_to_utf16(out, le, n + 4, 0);
	nbe = vd_utf8_to_utf16(out, be, n + 4, 1);
	FZ_ASSERT(((as & AS_LE) && nle == (int)n && memcmp(le, p, n) == 0) ||
			  ((as & AS_BE) && nbe == (int)n && memcmp(be, p, n) == 0),
		  "%s: %zu bytes of UTF-16 decode to \"%s\" (%d bytes), which encodes back "
		  "differently",
		  what, n, out, rc);
	free(le);
	free(be);
}

/* Decode with a buffer of OUTLEN bytes exactly; checks the result's shape. */
static int decode(uint32_t code, const uint8_t *data, size_t len, char **out, size_t outlen)
{
	int rc;

	*out = malloc(outlen ? outlen : 1);
	if (!*out)
		abort();
	rc = vd_locator_decode_path(code, data, len, *out, outlen);
	FZ_ASSERT(rc == -1 || (rc >= 0 && (size_t)rc < outlen && strlen(*out) == (size_t)rc),
		  "locator 0x%08x decode returned %d for a buffer of %zu", code, rc, outlen);
	return rc;
}

static void check_locator(uint32_t code, const uint8_t *data, size_t len, size_t small)
{
	char *full, *part;
	int rc = decode(code, data, len, &full, OUT_MAX);
	int rs = decode(code, data, len, &part, small);
	size_t n = 0;

	/* A smaller buffer gives the same answer when it fits, -1 when it does not. */
	if (rc >= 0 && (size_t)rc < small)
		FZ_ASSERT(rs == rc && strcmp(part, full) == 0,
			  "locator 0x%08x: %d in %u bytes but %d in %zu", code, rc, OUT_MAX, rs,
			  small);
	else
		FZ_ASSERT(rs == -1, "locator 0x%08x: %d in %zu bytes, %d with room", code, rs,
			  small, rc);
	while (n < len && data[n])
		n++;
	if (rc >= 0 && (code == VD_LOC_W2KU || code == VD_LOC_W2RU))
		check_utf16_output(data, len, AS_LE | AS_BE, full, rc, "W2ku/W2ru locator");
	if (rc >= 0 && (code == VD_LOC_WI2K || code == VD_LOC_WI2R))
		FZ_ASSERT((size_t)rc == n && memcmp(full, data, n) == 0,
			  "Wi2k/Wi2r locator is not its bytes up to the first NUL");
	if (rc >= 0 && code == VD_LOC_MACX)
		FZ_ASSERT((size_t)rc <= n && memcmp(full, data + n - (size_t)rc, (size_t)rc) == 0,
			  "MacX locator decodes to what is not the end of its URL");
	if (code != VD_LOC_W2KU && code != VD_LOC_W2RU && code != VD_LOC_WI2K &&
	    code != VD_LOC_WI2R && code != VD_LOC_MACX)
		FZ_ASSERT(rc == -1, "locator code 0x%08x is not a path but decodes", code);
	free(full);
	free(part);
}

static void check_parent_name(const uint8_t *data, size_t len, size_t small)
{
	uint8_t *name = calloc(1, 512);
	char *full = malloc(OUT_MAX), *part = malloc(small ? small : 1);
	int rc, rs;

	if (!name || !full || !part)
		abort();
	memcpy(name, data, len < 512 ? len : 512);
	rc = vd_parent_name_decode(name, full, OUT_MAX);
	rs = vd_parent_name_decode(name, part, small);
	FZ_ASSERT(rc == -1 || (rc >= 0 && strlen(full) == (size_t)rc), "parent name: %d", rc);
	if (rc >= 0)
		check_utf16_output(name, 512, AS_BE, full, rc, "parent name");
	FZ_ASSERT(rs == (rc >= 0 && (size_t)rc < small ? rc : -1),
		  "parent name: %d in %zu bytes, %d with room", rs, small, rc);
	free(name);
	free(full);
	free(part);
}

/*
 * W2ku/W2ru readers fall back to big-endian when zero bytes sit at even offsets
 * (an ASCII path written BE), so UTF-16LE with units 0xXX00 (U+0100, U+4E00, a
 * high surrogate D800) is ambiguous by design: "\x00\x4E" is U+4E00 LE or 'N'
 * BE. The round trip is promised only without such units.
 */
static int looks_swapped(const uint8_t *le, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		if (le[i] == 0 && le[i + 1] != 0)
			return 1;
	return 0;
}

/* UTF-8 to UTF-16 and back, as set-parent writes a path and open reads it. */
static void check_round_trip(const char *path, int big_endian, size_t small)
{
	size_t len = strlen(path), cap = 2 * len + 4;
	uint8_t *units = malloc(cap), *tight = malloc(small ? small : 1);
	int n = vd_utf8_to_utf16(path, units, cap, big_endian);
	int ns = vd_utf8_to_utf16(path, tight, small, big_endian);
	char *back;

	if (!units || !tight)
		abort();
	FZ_ASSERT(utf8_valid(path) ? n >= 0 : n == -1,
		  "UTF-8 to UTF-16 (%s) of %s UTF-8 returned %d", big_endian ? "BE" : "LE",
		  utf8_valid(path) ? "valid" : "invalid", n);
	FZ_ASSERT(ns == (n >= 0 && (size_t)n <= small ? n : -1),
		  "UTF-16 in %zu bytes: %d, with room %d", small, ns, n);
	if (n >= 0 && big_endian && n <= 510) {
		uint8_t name[512] = {0};

		back = malloc(OUT_MAX);
		if (!back)
			abort();
		memcpy(name, units, (size_t)n);
		FZ_ASSERT(vd_parent_name_decode(name, back, OUT_MAX) == (int)len &&
				  strcmp(back, path) == 0,
			  "parent name \"%s\" reads back as \"%s\"", path, back);
		free(back);
	}
	if (n >= 0 && !big_endian) {
		int rc = decode(VD_LOC_W2KU, units, (size_t)n, &back, OUT_MAX);

		if (len < OUT_MAX && !looks_swapped(units, (size_t)n))
			FZ_ASSERT(rc == (int)len && strcmp(back, path) == 0,
				  "W2ku locator written for \"%s\" reads back as \"%s\" (%d)", path,
				  rc >= 0 ? back : "", rc);
		free(back);
	}
	free(units);
	free(tight);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t codes[] = {VD_LOC_W2KU, VD_LOC_W2RU, VD_LOC_WI2K, VD_LOC_WI2R,
					 VD_LOC_MACX, VD_LOC_MAC,  VD_LOC_NONE};
	size_t small = size ? data[0] : 0;
	uint8_t *body;
	char *path;

	data += size ? 1 : 0;
	size -= size ? 1 : 0;
	/* An exact copy: a decoder reading past the data is caught. */
	body = malloc(size ? size : 1);
	path = malloc(size + 1);
	if (!body || !path)
		abort();
	memcpy(body, data, size);
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		check_locator(codes[i], body, size, small);
	if (size >= 4)
		check_locator(get_be32(body), body + 4, size - 4, small);
	check_parent_name(body, size, small);
	memcpy(path, data, size);
	path[size] = '\0';
	check_round_trip(path, 0, small);
	check_round_trip(path, 1, small);
	if (size >= 4) {
		uint32_t space = get_be32(body);
		int64_t bytes = vd_locator_space_bytes(space);

		FZ_ASSERT(bytes == (space < VD_SECTOR	     ? (int64_t)space * VD_SECTOR
				    : space % VD_SECTOR == 0 ? (int64_t)space
							     : -1),
			  "data space %u is %lld bytes", space, (long long)bytes);
	}
	free(body);
	free(path);
	return 0;
}
