/*
 * libFuzzer target: the 1024-byte dynamic disk header ("cxsparse") with its
 * BAT offset, block size, parent record and eight locators. The codec alone
 * (round trip), then an image built around the header: a valid footer before
 * it, the fuzzer's bytes after it (where its BAT, blocks and locators point),
 * opened with and without the parent and checked.
 *
 * With FLAG_SET_PARENT a differencing disk is then re-linked to parent.vhd
 * (vd_set_parent writes locators where the header says) and must read the same.
 *
 * Input: 1024 header bytes, one flags byte (FLAG_*), 8 bytes of disk size (for
 * SIZE_RAW), then the bytes from offset 1536 of the file on.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

#define FLAG_FIX_CHECKSUM 0x01u /* store the right header checksum */
#define FLAG_DIFFERENCING 0x02u /* footer type 4 (else 3) */
#define FLAG_NO_COPY 0x04u	/* no footer copy at offset 0 */
#define FLAG_NO_END 0x08u	/* no footer at the end: the copy at 0 is used */
#define FLAG_SET_PARENT 0x40u	/* vd_set_parent to parent.vhd, then read back */
#define SIZE_MASK 0x30u		/* how the footer's current size is chosen: */
#define SIZE_FROM_HEADER 0x00u	/* entries x block size (rounded to 512) */
#define SIZE_RAW 0x10u		/* the 8 bytes after the flags */
#define SIZE_1MIB 0x20u
#define SIZE_ZERO 0x30u

#define TAIL_AT 1536u

static void codec_properties(const uint8_t in[VD_DYNHDR_SIZE])
{
	struct vd_dynhdr h, g;
	uint8_t out[VD_DYNHDR_SIZE];
	int cookie = memcmp(in, "cxsparse", 8) == 0;
	int sum_ok = vd_vhd_checksum(in, VD_DYNHDR_SIZE, 36) == get_be32(in + 36);
	int rc = vd_dynhdr_decode(in, &h);

	FZ_ASSERT(rc == (!cookie  ? VD_DECODE_BAD_COOKIE
			 : sum_ok ? 0
				  : VD_DECODE_BAD_CHECKSUM),
		  "header decode says %d (cookie %d, checksum ok %d)", rc, cookie, sum_ok);
	vd_dynhdr_encode(&h, out);
	/* Every field comes back; the reserved bytes 60-63 and 768-1023 are cleared. */
	FZ_ASSERT(memcmp(out, in, 36) == 0 && memcmp(out + 40, in + 40, 20) == 0 &&
			  memcmp(out + 64, in + 64, 768 - 64) == 0,
		  "header encode moved a field");
	FZ_ASSERT(get_be32(out + 60) == 0, "header encode left reserved bytes 60-63");
	for (size_t i = 768; i < VD_DYNHDR_SIZE; i++)
		FZ_ASSERT(out[i] == 0, "header encode left reserved byte %zu", i);
	FZ_ASSERT(vd_dynhdr_decode(out, &g) == (cookie ? 0 : VD_DECODE_BAD_COOKIE) &&
			  g.checksum == h.checksum && get_be32(out + 36) == h.checksum,
		  "an encoded header does not decode with its checksum");
	for (int i = 0; i < 8; i++) {
		int64_t space = vd_locator_space_bytes(h.loc[i].data_space);

		FZ_ASSERT(space == -1 || space % VD_SECTOR == 0, "locator space %lld",
			  (long long)space);
	}
}

static uint64_t disk_size(const uint8_t *hdr, unsigned flags, const uint8_t *raw)
{
	switch (flags & SIZE_MASK) {
	case SIZE_FROM_HEADER:
		return (uint64_t)get_be32(hdr + 28) * get_be32(hdr + 32) / VD_SECTOR * VD_SECTOR;
	case SIZE_RAW:
		return get_be64(raw);
	case SIZE_1MIB:
		return 1u << 20;
	default:
		return 0;
	}
}

static void build_image(const uint8_t *hdr_in, unsigned flags, uint64_t size, const uint8_t *tail,
			size_t tail_len)
{
	uint8_t hdr[VD_DYNHDR_SIZE], foot[VD_FOOTER_SIZE];
	uint64_t end = FZ_ALIGN512(TAIL_AT + tail_len);
	struct vd_footer f;
	int fd = fz_file_create("img.vhd");

	memcpy(hdr, hdr_in, sizeof(hdr));
	if (flags & FLAG_FIX_CHECKSUM)
		put_be32(hdr + 36, vd_vhd_checksum(hdr, sizeof(hdr), 36));
	fz_footer_init(&f, (flags & FLAG_DIFFERENCING) ? VD_TYPE_DIFFERENCING : VD_TYPE_DYNAMIC,
		       size, VD_FOOTER_SIZE);
	vd_footer_encode(&f, foot);
	if (!(flags & FLAG_NO_COPY))
		fz_file_put(fd, foot, sizeof(foot), 0);
	fz_file_put(fd, hdr, sizeof(hdr), VD_FOOTER_SIZE);
	fz_file_put(fd, tail, tail_len, TAIL_AT);
	if ((flags & FLAG_NO_END) && !(flags & FLAG_NO_COPY)) {
		fz_file_finish(fd, end);
		return;
	}
	fz_file_put(fd, foot, sizeof(foot), end);
	fz_file_finish(fd, end + VD_FOOTER_SIZE);
}

/* The first and last bytes of the disk through its chain into *BUF; their count, 0 if none. */
static size_t read_ends(const char *path, uint8_t **buf)
{
	struct vd_open_opts ro = {.flags = VD_OPEN_RDONLY, .engine = "psync"};
	struct vd_disk *d;
	struct vd_info info;
	size_t half = 0;

	*buf = NULL;
	if (vd_open(path, &ro, &d) == 0 && vd_get_info(d, &info) == 0 &&
	    info.type == VD_TYPE_DIFFERENCING && info.virtual_size > 0) {
		half = info.virtual_size < 32768 ? (size_t)info.virtual_size : 32768;
		*buf = malloc(2 * half);
		if (!*buf)
			abort();
		if (vd_pread(d, *buf, half, 0) < 0 ||
		    vd_pread(d, *buf + half, half, info.virtual_size - half) < 0)
			half = 0;
	}
	vd_close(d);
	return 2 * half;
}

/*
 * Re-linking a child rewrites its locators and header: afterwards it must still
 * open on the same parent and read exactly as before, whatever its locator
 * slots said (set-parent writes into them).
 */
static void set_parent_keeps_data(const char *path)
{
	uint8_t *before, *after;
	size_t n = read_ends(path, &before), m;
	char parent[512], *msg = NULL;
	struct vd_open_opts ro = {.flags = VD_OPEN_RDONLY, .engine = "psync"};
	struct vd_disk *d;

	fz_path(FZ_PARENT_NAME, parent, sizeof(parent));
	if (n > 0 && vd_set_parent(path, parent, &msg) == 0) {
		FZ_ASSERT(vd_open(path, &ro, &d) == 0,
			  "after set-parent the child does not open: %s", vd_errmsg(d));
		vd_close(d);
		m = read_ends(path, &after);
		FZ_ASSERT(m == n && memcmp(before, after, n) == 0,
			  "after set-parent the child reads differently (%zu of %zu bytes read)", m,
			  n);
		free(after);
	}
	vd_free_string(msg);
	free(before);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[VD_DYNHDR_SIZE] = {0}, raw[8] = {0};
	unsigned flags = size > VD_DYNHDR_SIZE ? data[VD_DYNHDR_SIZE] : FLAG_FIX_CHECKSUM;
	size_t tail_at = VD_DYNHDR_SIZE + 1 + sizeof(raw);
	size_t tail_len = size > tail_at ? size - tail_at : 0;
	uint32_t pick = fz_hash(data, size);
	char path[512];

	memcpy(hdr, data, size < sizeof(hdr) ? size : sizeof(hdr));
	if (size > VD_DYNHDR_SIZE + 1)
		memcpy(raw, data + VD_DYNHDR_SIZE + 1,
		       size - VD_DYNHDR_SIZE - 1 < sizeof(raw) ? size - VD_DYNHDR_SIZE - 1
							       : sizeof(raw));
	codec_properties(hdr);
	build_image(hdr, flags, disk_size(hdr, flags, raw), data + size - tail_len, tail_len);
	fz_path("img.vhd", path, sizeof(path));
	fz_exercise(path, VD_OPEN_RDONLY, pick, NULL);
	fz_exercise(path, VD_OPEN_NO_PARENT, pick >> 5, NULL);
	fz_check(path);
	fz_repair(path);
	if (flags & FLAG_SET_PARENT)
		set_parent_keeps_data(path);
	return 0;
}
