/*
 * vhdtool info: what an image is (type, sizes, creator, geometry, its parent
 * chain and the warnings found while opening it), for people and, with --json,
 * scripts. Also owns which state of a disk with checkpoints is described.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>
#include <time.h>

#define CMD "info"

enum { OPT_IMAGE = 256, OPT_CHECKPOINT, OPT_NO_PARENT };

struct info_args {
	const char *path;
	const char *checkpoint; /* --checkpoint NAME, or NULL */
	int json;
	int image_only;
	int no_parent;
};

static void usage(void)
{
	printf("Usage: vhdtool info [--json] [--image | --checkpoint NAME] [--no-parent] FILE\n\n"
	       "Show an image's format, type, sizes, UUID, creator, geometry, parent\n"
	       "chain (leaf first) and any warnings found while opening it. For a disk\n"
	       "with checkpoints this describes the active state (the image that takes\n"
	       "writes now), unless --image or --checkpoint says otherwise.\n\n"
	       "  -j, --json             print JSON instead of text\n"
	       "      --image            describe exactly FILE, not the active state of\n"
	       "                         its checkpoints\n"
	       "      --checkpoint NAME  describe checkpoint NAME's state of FILE\n"
	       "      --no-parent        read only FILE's own header, not its parent: shows\n"
	       "                         what a child whose parent is missing records of it\n"
	       "  -h, --help             show this help\n");
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

static const char *version_text(uint32_t version, char out[16])
{
	snprintf(out, 16, "%u.%u", version >> 16, version & 0xffff);
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

	printf("uuid:          %s\n", vt_uuid_text(info->uuid, buf));
	printf("creator:       \"%s\" version %s\n", app_text(info, buf),
	       version_text(info->creator_version, ver));
	printf("host OS:       \"%s\"\n", os_text(info->creator_os, buf));
	printf("created:       %s\n", vt_time_text(info->timestamp, buf));
	printf("geometry:      C/H/S %u/%u/%u (%llu bytes)\n", g->cylinders, g->heads, g->sectors,
	       (unsigned long long)g->cylinders * g->heads * g->sectors * 512);
}

static int is_differencing(const struct vd_info *info)
{
	return info->type == VD_TYPE_DIFFERENCING;
}

/* The chain as the library resolved it; a lone image is a chain of one. */
static int chain_length(const struct vd_info *info)
{
	return info->chain && info->chain_length > 0 ? info->chain_length : 1;
}

static const char *chain_path(const struct vd_info *info, const char *path, int i)
{
	return info->chain && info->chain_length > 0 ? info->chain[i] : path;
}

static void print_parent(const struct vd_info *info, const struct info_args *a)
{
	const char *path = a->path;
	char buf[40];
	int i, n = chain_length(info);

	printf("parent:        %s\n", info->parent   ? info->parent
				      : a->no_parent ? "(not opened: --no-parent)"
						     : "(none)");
	printf("parent uuid:   %s\n", vt_uuid_text(info->parent_uuid, buf));
	if (info->parent_name)
		printf("parent name:   %s\n", info->parent_name);
	/* 0: the writer left it empty (Windows does). */
	printf("parent time:   %s\n",
	       info->parent_timestamp ? vt_time_text(info->parent_timestamp, buf) : "not recorded");
	if (a->no_parent)
		printf("chain:         this image only (--no-parent)\n");
	else
		printf("chain:         %d images, leaf first; reads fall through to the parents\n",
		       n);
	for (i = 0; i < n; i++)
		printf("  %*d  %s\n", n > 9 ? 2 : 1, i, chain_path(info, path, i));
}

/* What the active state is made of, for a base disk that has checkpoints. */
static void print_checkpoints(const struct info_args *a)
{
	struct vd_checkpoint_tree *tree = NULL;
	char *errmsg = NULL;

	if (vd_checkpoint_list(a->path, &tree, &errmsg) == 0 && tree->count > 0)
		printf("checkpoints:   %d (current: %s); active image %s\n", tree->count,
		       tree->current ? tree->current : "none", tree->active);
	if (tree)
		vd_checkpoint_tree_free(tree);
	vd_free_string(errmsg);
}

static void print_human(struct vd_disk *disk, const struct vd_info *info, const struct info_args *a)
{
	int i, n = vd_warning_count(disk);

	printf("file:          %s\n", a->path);
	if (info->path && strcmp(info->path, a->path) != 0)
		printf("image:         %s (%s)\n", info->path,
		       a->checkpoint ? "holds the checkpoint's newest data"
				     : "the active state of its checkpoints");
	if (a->checkpoint)
		printf("checkpoint:    %s (read-only)\n", a->checkpoint);
	printf("format:        %s\n", info->format);
	printf("type:          %s\n", vt_type_name(info->type));
	print_sizes(info);
	if (is_vhd(info))
		print_identity(info);
	if (is_differencing(info))
		print_parent(info, a);
	else if (info->parent)
		printf("parent:        %s\n", info->parent);
	if (!a->checkpoint && !a->image_only && !a->no_parent && is_vhd(info))
		print_checkpoints(a);
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

	json_object_set_new(o, "uuid",
			    vhd ? json_string(vt_uuid_text(info->uuid, buf)) : json_null());
	json_object_set_new(o, "creator_app", vhd ? json_string(app_text(info, buf)) : json_null());
	json_object_set_new(o, "creator_version",
			    vhd ? json_string(version_text(info->creator_version, buf))
				: json_null());
	json_object_set_new(o, "creator_os",
			    vhd ? json_string(os_text(info->creator_os, buf)) : json_null());
	json_object_set_new(o, "timestamp",
			    vhd ? json_integer((json_int_t)info->timestamp + VT_VHD_EPOCH)
				: json_null());
	json_object_set_new(o, "geometry", vhd ? json_geometry(info) : json_null());
}

static json_t *json_string_or_null(const char *text)
{
	return text ? json_string(text) : json_null();
}

/* Parent fields are null for disks that have no parent. */
static void json_parent(json_t *o, const struct vd_info *info, const char *path)
{
	char buf[40];
	int i, n = chain_length(info), diff = is_differencing(info);
	json_t *chain = json_array();

	json_object_set_new(o, "parent", json_string_or_null(info->parent));
	json_object_set_new(o, "parent_uuid",
			    diff ? json_string(vt_uuid_text(info->parent_uuid, buf)) : json_null());
	json_object_set_new(o, "parent_name",
			    diff ? json_string_or_null(info->parent_name) : json_null());
	json_object_set_new(
		o, "parent_timestamp",
		diff && info->parent_timestamp
			? json_integer((json_int_t)info->parent_timestamp + VT_VHD_EPOCH)
			: json_null());
	for (i = 0; i < n; i++)
		json_array_append_new(chain, json_string(chain_path(info, path, i)));
	json_object_set_new(o, "chain", chain);
}

static json_t *json_info(struct vd_disk *disk, const struct vd_info *info,
			 const struct info_args *a)
{
	json_t *o = json_object(), *warnings = json_array();
	int i, n = vd_warning_count(disk);

	json_object_set_new(o, "file", json_string(a->path));
	json_object_set_new(o, "image", json_string_or_null(info->path));
	json_object_set_new(o, "checkpoint", json_string_or_null(a->checkpoint));
	json_object_set_new(o, "format", json_string(info->format));
	json_object_set_new(o, "type", json_string(vt_type_name(info->type)));
	json_object_set_new(o, "virtual_size", json_integer((json_int_t)info->virtual_size));
	json_object_set_new(o, "current_size", json_integer((json_int_t)info->current_size));
	json_object_set_new(o, "size_from_chs", json_boolean(info->size_from_chs));
	json_object_set_new(o, "block_size", json_integer(info->block_size));
	json_object_set_new(o, "allocated_bytes", json_integer((json_int_t)info->allocated_bytes));
	json_object_set_new(o, "file_size", json_integer((json_int_t)info->file_size));
	json_identity(o, info);
	json_parent(o, info, a->path);
	for (i = 0; i < n; i++)
		json_array_append_new(warnings, json_string(vd_warning(disk, i)));
	json_object_set_new(o, "warnings", warnings);
	return o;
}

/* Returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, struct info_args *a)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"image", no_argument, NULL, OPT_IMAGE},
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"no-parent", no_argument, NULL, OPT_NO_PARENT},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		} else if (opt == 'j') {
			a->json = 1;
		} else if (opt == OPT_IMAGE) {
			a->image_only = 1;
		} else if (opt == OPT_CHECKPOINT) {
			a->checkpoint = optarg;
		} else if (opt == OPT_NO_PARENT) {
			a->no_parent = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	if ((a->image_only || a->no_parent) && a->checkpoint)
		return vt_usage_error(CMD, "--checkpoint excludes --image and --no-parent");
	a->path = argv[optind];
	return 0;
}

int vt_cmd_info(int argc, char **argv)
{
	struct info_args a = {0};
	struct vd_disk *disk;
	struct vd_info info;
	int rc;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	/* Without its parent a child is only itself: no checkpoint state applies. */
	if (a.no_parent)
		rc = vt_open(a.path, VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY | VD_OPEN_NO_PARENT, &disk,
			     &info);
	else if (a.image_only)
		rc = vt_open(a.path, VD_OPEN_RDONLY | VD_OPEN_IMAGE_ONLY, &disk, &info);
	else
		rc = vt_open_state(a.path, a.checkpoint, &disk, &info);
	if (rc)
		return VT_EXIT_ERROR;
	if (a.json)
		rc = vt_json_print(json_info(disk, &info, &a));
	else
		print_human(disk, &info, &a);
	vd_close(disk);
	return rc;
}
