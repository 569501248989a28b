/*
 * vhdtool's entry point: the global options (--help, --version), the table of
 * subcommands, and the final check that everything printed reached stdout.
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

/* vhdtool ls and extract (ls.c, extract.c), reading file systems through fuse/vdfs. */
int vt_cmd_ls(int argc, char **argv);
int vt_cmd_extract(int argc, char **argv);

struct vt_command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct vt_command commands[] = {
	{"create", vt_cmd_create, "create an empty fixed, dynamic or differencing VHD"},
	{"info", vt_cmd_info, "show what an image is: type, sizes, creator, geometry"},
	{"convert", vt_cmd_convert, "copy a disk into a new raw, fixed or dynamic image"},
	{"read", vt_cmd_read, "write a range of the virtual disk to stdout"},
	{"write", vt_cmd_write, "write a file or stdin into the virtual disk"},
	{"compare", vt_cmd_compare, "tell whether two images hold the same content"},
	{"check", vt_cmd_check, "check an image's structure and report every problem"},
	{"map", vt_cmd_map, "list allocated, unallocated and zero ranges"},
	{"set-parent", vt_cmd_set_parent, "re-link a differencing disk to its moved parent"},
	{"checkpoint", vt_cmd_checkpoint, "create, apply, delete or list checkpoints"},
	{"discard", vt_cmd_discard,
	 "discard (TRIM) a range: it reads as zeros, blocks are released"},
	{"expand", vt_cmd_expand, "change the virtual size of a fixed or dynamic VHD"},
	{"copy", vt_cmd_copy, "copy a disk to a new file, same disk (UUID), sparse-aware"},
	{"compact", vt_cmd_compact, "drop zero or unneeded blocks and shrink the file"},
	{"merge", vt_cmd_merge, "merge a differencing disk into its parent or an ancestor"},
	{"doctor", vt_cmd_doctor, "find and fix broken chains in a folder of VHD/AVHD files"},
	{"ls", vt_cmd_ls, "list partitions, or the files in a partition's file system"},
	{"extract", vt_cmd_extract, "copy files out of a partition's file system"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(void)
{
	size_t i;

	printf("Usage: vhdtool [--version] [--help] SUBCOMMAND [OPTIONS] ...\n\n"
	       "Create, inspect, convert and check Microsoft VHD virtual disks.\n\n"
	       "Subcommands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		printf("  %-10s %s\n", commands[i].name, commands[i].summary);
	printf("\nSizes take K, M, G or T suffixes (powers of 1024; KiB, MiB... also work).\n"
	       "Exit status: 0 success, 1 check or doctor found problems or compare found a\n"
	       "difference, 2 error. 'vhdtool SUBCOMMAND --help' describes each subcommand;\n"
	       "see vhdtool(1).\n");
}

static const struct vt_command *find_command(const char *name)
{
	size_t i;

	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Output that never reached stdout (full disk, closed pipe) is an error too. */
static int finish_stdout(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		vt_error("writing to stdout failed");
		return VT_EXIT_ERROR;
	}
	return rc;
}

/* "vhdtool help [SUBCOMMAND]", the spelling git and others taught people. */
static int help_command(int argc, char **argv)
{
	const struct vt_command *cmd;
	char help_flag[] = "--help";
	char *help_argv[] = {argv[1], help_flag, NULL};

	if (argc < 2) {
		usage();
		return finish_stdout(VT_EXIT_OK);
	}
	cmd = find_command(argv[1]);
	if (!cmd)
		return vt_usage_error(NULL, "unknown subcommand '%s'", argv[1]);
	vt_getopt_reset();
	return finish_stdout(cmd->run(2, help_argv));
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const struct vt_command *cmd;
	int opt;

	vt_getopt_reset();
	/* '+': stop at the subcommand so its options are left for it. */
	while ((opt = getopt_long(argc, argv, "+:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage();
			return finish_stdout(VT_EXIT_OK);
		case 'V':
			printf("vhdtool %s (libvdisk %s)\n", VD_VERSION_STRING, VD_VERSION_STRING);
			return finish_stdout(VT_EXIT_OK);
		default:
			return vt_getopt_error(NULL, opt, argv);
		}
	}
	if (optind >= argc)
		return vt_usage_error(NULL, "missing subcommand");
	if (strcmp(argv[optind], "help") == 0)
		return help_command(argc - optind, argv + optind);
	cmd = find_command(argv[optind]);
	if (!cmd)
		return vt_usage_error(NULL, "unknown subcommand '%s'", argv[optind]);
	argc -= optind;
	argv += optind;
	vt_getopt_reset();
	return finish_stdout(cmd->run(argc, argv));
}
