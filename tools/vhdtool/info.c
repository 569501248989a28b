/*
 * vhdtool info: what an image is (type, sizes, creator, geometry, parent and
 * the warnings found while opening it), for people and, with --json, scripts.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>
#include <time.h>

#define CMD "info"

/* Seconds from 1970 to 2000-01-01 UTC, the VHD timestamp epoch. */
#define VHD_EPOCH 946684800

static void usage(void)
{
	printf("Usage: vhdtool info [--json] FILE\n\n"
	       "Show an image's format, type, sizes, UUID, creator, geometry, parent and\n"
	       "any warnings found while opening it.\n\n"
	       "  -j, --json   print JSON instead of text\n"
	       "  -h, --help   show this help\n");
}

/*
 * A four-byte footer field as text: creator IDs pad with spaces or NULs
 * ("d2v\0"), and the difference matters to readers, so NUL shows as \0.
 */
static const char *fourcc_text(const unsigned char bytes[4], char out[20])
{
	char *p = out;
	int i;

	for (i = 0; i < 4; i++) {
		unsigned char c = bytes[i];

		if (c == 0)
			p += sprintf(p, "\\0");
		else if (c == '\\')
			p += sprintf(p, "\\\\");
		else if (c >= 0x20 && c < 0x7f)
			*p++ = (char)c;
		else
			p += sprintf(p, "\\x%02x", c);
	}
	*p = '\0';
	return out;
}

static const char *os_text(uint32_t os, char out[20])
{
	unsigned char bytes[4] = {os >> 24, os >> 16 & 0xff, os >> 8 & 0xff, os & 0xff};

	return fourcc_text(bytes, out);
}

static const char *app_text(const struct vd_info *info, char out[20])
{
	unsigned char bytes[4];

	memcpy(bytes, info->creator_app, 4);
	return fourcc_text(bytes, out);
}

static const char *uuid_text(const uint8_t u[16], char out[37])
{
	/* Raw byte order, as the footer stores it; not the byte-swapped GUID form. */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
	return out;
}

static const char *version_text(uint32_t version, char out[16])
{
	snprintf(out, 16, "%u.%u", version >> 16, version & 0xffff);
	return out;
}

static const char *time_text(uint32_t vhd_time, char out[32])
{
	time_t t = (time_t)vhd_time + VHD_EPOCH;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, 32, "%u", vhd_time);
	return out;
}

static int is_vhd(const struct vd_info *info)
{
	return strcmp(info->format, "vhd") == 0;
}

static void print_sizes(const struct vd_info *info)
{
	char buf[64];
	const struct vd_geometry *g = &info->geometry;

	printf("virtual size:  %s\n", vt_size_and_bytes(info->virtual_size, buf, sizeof(buf)));
	if (is_vhd(info) && info->size_from_chs)
		printf("size source:   CHS geometry %u/%u/%u (this creator is sized by CHS;"
		       " footer current size %llu bytes)\n",
		       g->cylinders, g->heads, g->sectors, (unsigned long long)info->current_size);
	else if (is_vhd(info))
		printf("size source:   footer current size\n");
	if (info->block_size)
		printf("block size:    %s\n", vt_human_size(info->block_size, buf, sizeof(buf)));
	printf("allocated:     %s\n", vt_size_and_bytes(info->allocated_bytes, buf, sizeof(buf)));
	printf("file size:     %s\n", vt_size_and_bytes(info->file_size, buf, sizeof(buf)));
}

static void print_identity(const struct vd_info *info)
{
	char buf[40], ver[16];
	const struct vd_geometry *g = &info->geometry;

	printf("uuid:          %s\n", uuid_text(info->uuid, buf));
	printf("creator:       \"%s\" version %s\n", app_text(info, buf),
	       version_text(info->creator_version, ver));
	printf("host OS:       \"%s\"\n", os_text(info->creator_os, buf));
	printf("created:       %s\n", time_text(info->timestamp, buf));
	printf("geometry:      C/H/S %u/%u/%u (%llu bytes)\n", g->cylinders, g->heads, g->sectors,
	       (unsigned long long)g->cylinders * g->heads * g->sectors * 512);
}

static void print_human(struct vd_disk *disk, const struct vd_info *info, const char *path)
{
	int i, n = vd_warning_count(disk);

	printf("file:          %s\n", path);
	printf("format:        %s\n", info->format);
	printf("type:          %s\n", vt_type_name(info->type));
	print_sizes(info);
	if (is_vhd(info))
		print_identity(info);
	if (info->parent)
		printf("parent:        %s\n", info->parent);
	printf("warnings:      %d\n", n > 0 ? n : 0);
	for (i = 0; i < n; i++)
		printf("  %s\n", vd_warning(disk, i));
}

static json_t *json_geometry(const struct vd_info *info)
{
	return json_pack("{s:I, s:I, s:I}", "cylinders", (json_int_t)info->geometry.cylinders,
			 "heads", (json_int_t)info->geometry.heads, "sectors",
			 (json_int_t)info->geometry.sectors);
}

/* VHD-only fields; a raw image has no footer, so they are null there. */
static void json_identity(json_t *o, const struct vd_info *info)
{
	char buf[40];
	int vhd = is_vhd(info);

	json_object_set_new(o, "uuid", vhd ? json_string(uuid_text(info->uuid, buf)) : json_null());
	json_object_set_new(o, "creator_app", vhd ? json_string(app_text(info, buf)) : json_null());
	json_object_set_new(o, "creator_version",
			    vhd ? json_string(version_text(info->creator_version, buf))
				: json_null());
	json_object_set_new(o, "creator_os",
			    vhd ? json_string(os_text(info->creator_os, buf)) : json_null());
	json_object_set_new(o, "timestamp",
			    vhd ? json_integer((json_int_t)info->timestamp + VHD_EPOCH)
				: json_null());
	json_object_set_new(o, "geometry", vhd ? json_geometry(info) : json_null());
}

static json_t *json_info(struct vd_disk *disk, const struct vd_info *info, const char *path)
{
	json_t *o = json_object(), *warnings = json_array();
	int i, n = vd_warning_count(disk);

	json_object_set_new(o, "file", json_string(path));
	json_object_set_new(o, "format", json_string(info->format));
	json_object_set_new(o, "type", json_string(vt_type_name(info->type)));
	json_object_set_new(o, "virtual_size", json_integer((json_int_t)info->virtual_size));
	json_object_set_new(o, "current_size", json_integer((json_int_t)info->current_size));
	json_object_set_new(o, "size_from_chs", json_boolean(info->size_from_chs));
	json_object_set_new(o, "block_size", json_integer(info->block_size));
	json_object_set_new(o, "allocated_bytes", json_integer((json_int_t)info->allocated_bytes));
	json_object_set_new(o, "file_size", json_integer((json_int_t)info->file_size));
	json_identity(o, info);
	json_object_set_new(o, "parent", info->parent ? json_string(info->parent) : json_null());
	for (i = 0; i < n; i++)
		json_array_append_new(warnings, json_string(vd_warning(disk, i)));
	json_object_set_new(o, "warnings", warnings);
	return o;
}

int vt_cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct vd_disk *disk;
	struct vd_info info;
	int opt, json = 0, rc = VT_EXIT_OK;

	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return VT_EXIT_OK;
		}
		if (opt != 'j')
			return vt_getopt_error(CMD, opt, argv);
		json = 1;
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	if (vt_open(argv[optind], VD_OPEN_RDONLY, &disk, &info))
		return VT_EXIT_ERROR;
	if (json)
		rc = vt_json_print(json_info(disk, &info, argv[optind]));
	else
		print_human(disk, &info, argv[optind]);
	vd_close(disk);
	return rc;
}
