/*
 * vhdtool ls: the partitions of a disk (with their file systems), or the files of
 * a directory inside one, read through fuse/vdfs (TSK and the LVM reader), for
 * scripts and machines where FUSE is not allowed.
 */
#include "vhdtool.h"
#include "../../fuse/vdfs.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMD "ls"

enum { OPT_CHECKPOINT = 256, OPT_FREE };

/* Declared in main.c too (vhdtool.h is shared by many hands). */
int vt_cmd_ls(int argc, char **argv);

static void usage(void)
{
	printf("Usage: vhdtool ls [--json] [--checkpoint NAME] DISK[:pN] [PATH]\n"
	       "       vhdtool ls --free [--json] [--checkpoint NAME] DISK:pN\n\n"
	       "Without :pN, list the partitions of DISK (MBR, logical, GPT and LVM2 logical\n"
	       "volumes) with their file systems. With :pN, list directory PATH (default /)\n"
	       "of partition pN's file system (NTFS, FAT, exFAT, ext2/3/4), or the one file\n"
	       "PATH names. Partition names are those vhdmount shows under partitions/.\n\n"
	       "With --free, list the byte ranges (from the partition's start) that pN's file\n"
	       "system marks free.\n\n"
	       "  -j, --json             print JSON\n"
	       "      --free             list the free ranges of pN's file system\n"
	       "      --checkpoint NAME  read checkpoint NAME's state instead of the active one\n"
	       "  -h, --help             show this help\n");
}

/* vdfs log lines (a partition left out) are notes on stderr, not errors. */
static void log_note(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "vhdtool: note: %s\n", msg);
}

static void quiet(void *ctx, const char *msg)
{
	(void)ctx;
	(void)msg;
}

static const char *kind_name(enum vdfs_kind kind)
{
	switch (kind) {
	case VDFS_REG:
		return "file";
	case VDFS_DIR:
		return "dir";
	case VDFS_LNK:
		return "symlink";
	case VDFS_OTHER:
		break;
	}
	return "other";
}

static json_t *part_json(const struct vdfs_part_info *p)
{
	return json_pack("{s:s, s:I, s:I, s:s, s:s, s:s?, s:s?, s:s?, s:i}", "name", p->name,
			 "start", (json_int_t)p->start, "size", (json_int_t)p->size, "type",
			 p->type, "label", p->label, "filesystem", p->fs_type, "filesystem_label",
			 p->fs_label, "error", p->fs_error, "segments", p->segments);
}

static int list_parts(struct vdfs *fs, int json)
{
	json_t *array = json ? json_array() : NULL;
	char size[32];

	if (!json)
		printf("%-5s %14s %12s  %-8s %-28s %s\n", "NAME", "START", "SIZE", "FS", "TYPE",
		       "LABEL");
	for (int i = 0; i < vdfs_part_count(fs); i++) {
		const struct vdfs_part_info *p = vdfs_part(fs, i);

		if (array) {
			json_array_append_new(array, part_json(p));
			continue;
		}
		printf("%-5s %14llu %12s  %-8s %-28s %s\n", p->name, (unsigned long long)p->start,
		       vt_human_size(p->size, size, sizeof(size)), p->fs_type ? p->fs_type : "-",
		       p->type, *p->label || !p->fs_label ? p->label : p->fs_label);
	}
	return array ? vt_json_print(json_pack("{s:o}", "partitions", array)) : 0;
}

static void time_text(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, 32, "%lld", (long long)t);
}

struct listing {
	json_t *array;
};

static int print_entry(void *ctx, const char *name, const struct vdfs_stat *st)
{
	struct listing *l = ctx;
	char when[32];

	if (l->array) {
		json_array_append_new(l->array,
				      json_pack("{s:s, s:s, s:I, s:I, s:I}", "name", name, "type",
						kind_name(st->kind), "size", (json_int_t)st->size,
						"mtime", (json_int_t)st->mtime, "inode",
						(json_int_t)st->ino));
		return 0;
	}
	time_text(st->mtime, when);
	printf("%-7s %14llu  %s UTC  %s%s\n", kind_name(st->kind), (unsigned long long)st->size,
	       when, name, st->kind == VDFS_DIR ? "/" : "");
	return 0;
}

static int list_path(struct vdfs *fs, const char *spec, int part, const char *path, int json)
{
	struct listing l = {.array = json ? json_array() : NULL};
	struct vdfs_stat st;
	int rc = vdfs_stat(fs, part, path, &st);

	if (rc == 0 && st.kind == VDFS_DIR)
		rc = vdfs_readdir(fs, part, path, print_entry, &l);
	else if (rc == 0)
		print_entry(&l, path, &st);
	if (rc == -ENODEV) {
		json_decref(l.array);
		return vt_error("%s: no file system that can be read (%s); 'vhdtool ls DISK' lists "
				"the partitions",
				spec, vdfs_part(fs, part)->fs_error);
	}
	if (rc < 0) {
		json_decref(l.array);
		return vt_error("%s: %s: %s", spec, path, strerror(-rc));
	}
	return l.array ? vt_json_print(json_pack("{s:s, s:o}", "path", path, "entries", l.array))
		       : 0;
}

static int print_range(void *ctx, uint64_t offset, uint64_t len)
{
	json_t *array = ctx;

	if (array)
		json_array_append_new(array, json_pack("{s:I, s:I}", "offset", (json_int_t)offset,
						       "length", (json_int_t)len));
	else
		printf("%llu %llu\n", (unsigned long long)offset, (unsigned long long)len);
	return 0;
}

static int list_free(struct vdfs *fs, const char *spec, int part, int json)
{
	json_t *array = json ? json_array() : NULL;
	int rc = vdfs_free_ranges(fs, part, print_range, array);

	if (rc < 0) {
		json_decref(array);
		return vt_error("%s: %s", spec,
				rc == -ENODEV ? "no file system that can be read" : strerror(-rc));
	}
	return array ? vt_json_print(json_pack("{s:o}", "free", array)) : 0;
}

struct ls_args {
	int json, free;
	const char *checkpoint;
	const char *spec;
	const char *path;
};

static int parse_args(int argc, char **argv, struct ls_args *a)
{
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"free", no_argument, NULL, OPT_FREE},
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
		} else if (opt == OPT_CHECKPOINT) {
			a->checkpoint = optarg;
		} else if (opt == OPT_FREE) {
			a->free = 1;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind >= argc)
		return vt_usage_error(CMD, "missing DISK");
	if (argc - optind > 2)
		return vt_usage_error(CMD, "too many arguments");
	a->spec = argv[optind];
	a->path = optind + 1 < argc ? argv[optind + 1] : "/";
	if (a->free && (optind + 1 < argc || !strstr(a->spec, ":p")))
		return vt_usage_error(CMD, "--free takes DISK:pN and no PATH");
	return 0;
}

int vt_cmd_ls(int argc, char **argv)
{
	struct ls_args a = {0};
	struct vd_disk *disk;
	struct vdfs *fs;
	char *path, *pname, *err = NULL;
	int rc, part;

	rc = parse_args(argc, argv, &a);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (vdfs_split_spec(a.spec, &path, &pname) < 0)
		return vt_error("out of memory");
	rc = vt_open_state(path, a.checkpoint, &disk, NULL);
	if (rc == 0 && vdfs_open(disk, pname ? quiet : log_note, NULL, &fs, &err) < 0) {
		rc = vt_error("%s: %s", path, err ? err : "cannot read the disk");
		vd_close(disk);
	}
	if (rc == 0) {
		part = pname ? vdfs_part_find(fs, pname) : -1;
		if (!pname)
			rc = list_parts(fs, a.json);
		else if (part < 0)
			rc = vt_error("%s: no partition %s; 'vhdtool ls %s' lists them", path,
				      pname, path);
		else if (a.free)
			rc = list_free(fs, a.spec, part, a.json);
		else
			rc = list_path(fs, a.spec, part, a.path, a.json);
		vdfs_close(fs);
		vd_close(disk);
	}
	free(err);
	free(path);
	free(pname);
	return rc;
}
