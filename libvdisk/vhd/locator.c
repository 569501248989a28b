/*
 * Parent locators and the parent name: the space unit rule and the path
 * decoders (UTF-16LE/BE, 8-bit, MacX file URLs) into UTF-8.
 */
#include <string.h>

#include "vhd/vhd_int.h"

int64_t vd_locator_space_bytes(uint32_t data_space)
{
	/* blktap's rule: Virtual PC and Hyper-V write bytes although the spec says sectors. */
	if (data_space < VD_SECTOR)
		return (int64_t)data_space * VD_SECTOR;
	if (data_space % VD_SECTOR == 0)
		return data_space;
	return -1;
}

/* Append code point CP as UTF-8; returns the new length or -1 when OUT is full. */
static int put_utf8(char *out, size_t outlen, size_t at, uint32_t cp)
{
	uint8_t tmp[4];
	size_t n;

	if (cp < 0x80) {
		tmp[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		tmp[0] = (uint8_t)(0xC0 | cp >> 6);
		tmp[1] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		tmp[0] = (uint8_t)(0xE0 | cp >> 12);
		tmp[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		tmp[2] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		tmp[0] = (uint8_t)(0xF0 | cp >> 18);
		tmp[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		tmp[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		tmp[3] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 4;
	}
	if (at + n + 1 > outlen)
		return -1;
	memcpy(out + at, tmp, n);
	out[at + n] = '\0';
	return (int)(at + n);
}

/* UTF-16 (BIG_ENDIAN or not) up to the first NUL; returns the UTF-8 length or -1. */
static int utf16_decode(const uint8_t *p, size_t len, int big_endian, char *out, size_t outlen)
{
	int at = 0;

	if (outlen == 0)
		return -1;
	out[0] = '\0';
	for (size_t i = 0; i + 1 < len; i += 2) {
		uint32_t u = big_endian ? (uint32_t)(p[i] << 8 | p[i + 1])
					: (uint32_t)(p[i + 1] << 8 | p[i]);
		if (u == 0)
			break;
		if (u >= 0xDC00 && u < 0xE000)
			return -1; /* a low surrogate without its high half */
		if (u >= 0xD800 && u < 0xDC00) {
			uint32_t lo = i + 3 < len
					      ? (big_endian ? (uint32_t)(p[i + 2] << 8 | p[i + 3])
							    : (uint32_t)(p[i + 3] << 8 | p[i + 2]))
					      : 0;
			/* An unpaired surrogate is not a character: no path could match it. */
			if (lo < 0xDC00 || lo >= 0xE000)
				return -1;
			u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
			i += 2;
		}
		at = put_utf8(out, outlen, (size_t)at, u);
		if (at < 0)
			return -1;
	}
	return at;
}

/* LE unless the zero bytes sit at even offsets (an ASCII path written BE). */
static int looks_big_endian(const uint8_t *p, size_t len)
{
	size_t even = 0, odd = 0;

	for (size_t i = 0; i + 1 < len; i += 2) {
		if (p[i] == 0 && p[i + 1] == 0)
			break;
		even += p[i] == 0;
		odd += p[i + 1] == 0;
	}
	return even > odd;
}

static int bytes_decode(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t n = 0;

	while (n < len && p[n])
		n++;
	if (n + 1 > outlen)
		return -1;
	memcpy(out, p, n);
	out[n] = '\0';
	return (int)n;
}

/* "file://localhost/dir/p.vhd" -> "/dir/p.vhd"; blktap's "file://./p.vhd" -> "./p.vhd". */
static int macx_decode(const uint8_t *p, size_t len, char *out, size_t outlen)
{
	size_t n = 0, skip = 0;

	while (n < len && p[n])
		n++;
	if (n >= 7 && memcmp(p, "file://", 7) == 0) {
		skip = 7;
		if (skip < n && p[skip] != '/' && p[skip] != '.') {
			while (skip < n && p[skip] != '/')
				skip++; /* the host part */
			if (skip == n)
				return -1;
		}
	}
	return bytes_decode(p + skip, n - skip, out, outlen);
}

int vd_locator_decode_path(uint32_t code, const uint8_t *data, size_t len, char *out, size_t outlen)
{
	if (outlen == 0)
		return -1;
	switch (code) {
	case VD_LOC_W2KU:
	case VD_LOC_W2RU:
		if (len % 2)
			return -1;
		return utf16_decode(data, len, looks_big_endian(data, len), out, outlen);
	case VD_LOC_WI2K:
	case VD_LOC_WI2R:
		return bytes_decode(data, len, out, outlen);
	case VD_LOC_MACX:
		return macx_decode(data, len, out, outlen);
	default:
		return -1;
	}
}

int vd_parent_name_decode(const uint8_t name[512], char *out, size_t outlen)
{
	return utf16_decode(name, 512, 1, out, outlen);
}

/* One code point from UTF-8 at *S; returns it and advances, or -1 on bad input. */
static int32_t utf8_next(const unsigned char **sp)
{
	const unsigned char *s = *sp;
	uint32_t cp;
	int extra;

	if (s[0] < 0x80) {
		cp = s[0];
		extra = 0;
	} else if ((s[0] & 0xE0) == 0xC0) {
		cp = s[0] & 0x1F;
		extra = 1;
	} else if ((s[0] & 0xF0) == 0xE0) {
		cp = s[0] & 0x0F;
		extra = 2;
	} else if ((s[0] & 0xF8) == 0xF0) {
		cp = s[0] & 0x07;
		extra = 3;
	} else {
		return -1;
	}
	for (int i = 1; i <= extra; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	/* RFC 3629: the shortest form only ("\xC0\xAF" is not "/"), no surrogates. */
	if ((extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000))
		return -1;
	if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
		return -1;
	*sp = s + 1 + extra;
	return (int32_t)cp;
}

static void put_unit(uint8_t *p, uint32_t u, int big_endian)
{
	p[big_endian ? 0 : 1] = (uint8_t)(u >> 8);
	p[big_endian ? 1 : 0] = (uint8_t)u;
}

int vd_utf8_to_utf16(const char *str, uint8_t *out, size_t outlen, int big_endian)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t at = 0;

	while (*s) {
		int32_t cp = utf8_next(&s);

		if (cp < 0)
			return -1;
		if (cp >= 0x10000) {
			if (at + 4 > outlen)
				return -1;
			put_unit(out + at, 0xD800 + (((uint32_t)cp - 0x10000) >> 10), big_endian);
			put_unit(out + at + 2, 0xDC00 + (((uint32_t)cp - 0x10000) & 0x3FF),
				 big_endian);
			at += 4;
		} else {
			if (at + 2 > outlen)
				return -1;
			put_unit(out + at, (uint32_t)cp, big_endian);
			at += 2;
		}
	}
	return (int)at;
}
