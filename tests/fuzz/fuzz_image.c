/*
 * libFuzzer target: a whole image file. The input is written as img.vhd in the
 * scratch directory (beside parent.vhd, so a differencing input that names it
 * opens a real chain), then opened with its parent and without
 * (VD_OPEN_NO_PARENT), walked with vd_get_info, vd_map and vd_pread, and
 * checked with vd_check_path; fz_exercise asserts what holds for any image.
 * Last, fz_repair: vd_repair_path changes nothing when it refuses, keeps every
 * byte that read before, and leaves nothing for a second repair.
 */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t pick = fz_hash(data, size);
	char path[512];

	fz_file_write("img.vhd", data, size);
	fz_path("img.vhd", path, sizeof(path));
	fz_exercise(path, VD_OPEN_RDONLY, pick, NULL);
	fz_exercise(path, VD_OPEN_NO_PARENT, pick >> 7, NULL);
	fz_check(path);
	fz_repair(path);
	return 0;
}
