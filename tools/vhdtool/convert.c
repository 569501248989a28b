/*
 * vhdtool convert: copy a disk's content (a chain's, flattened) into a new raw,
 * fixed or dynamic image, or stream raw/fixed to stdout. Owns the free-space
 * check, skipping of zeros (so a dynamic output allocates only blocks with
 * data) and partial-file cleanup.
 */
#include "vhdtool.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define CMD "convert"
#define DEFAULT_BLOCK (2u << 20) /* what vd_create uses for block_size 0 */
#define FILE_PIECE 4096u	 /* zero-skip grain for raw/fixed: keeps raw files sparse */

enum { OPT_BLOCK_SIZE = 256, OPT_COMPAT, OPT_CHECKPOINT };

struct convert {
	const char *src_path;
	const char *checkpoint; /* --checkpoint NAME of SRC, or NULL */
	const char *dst_path;
	const char *out_name; /* "raw", "fixed" or "dynamic" */
	int to_stdout;
	int progress;
	int compat_given;
	struct vd_create_opts opts;
	struct vd_disk *src;
	struct vd_disk *dst;
	struct vd_info src_info;
	uint64_t out_size;
	uint64_t piece; /* output bytes written or skipped as a whole */
	uint64_t chunk; /* bytes read per vd_pread, a multiple of piece */
	unsigned char *buf;
	uint64_t written;
	struct vt_progress bar;
};

static void usage(void)
{
	printf("Usage: vhdtool convert [-O raw|fixed|dynamic] [--block-size SIZE]\n"
	       "                       [--compat hyperv|vpc|azure] [--checkpoint NAME]\n"
	       "                       [-p] SRC DST\n\n"
	       "Copy the content of SRC (any image vhdtool reads) into a new image DST.\n"
	       "DST must not exist. Zero ranges are not written, so a dynamic DST holds\n"
	       "only blocks with data and a raw DST is sparse. DST '-' streams a raw or\n"
	       "fixed image to stdout.\n\n"
	       "A differencing SRC is read through its whole chain, so DST is one\n"
	       "standalone disk with the chain flattened into it (Hyper-V's \"merge into\n"
	       "a new disk\"); SRC and its parents are left as they are. A SRC with\n"
	       "checkpoints gives its active state, or --checkpoint NAME's.\n\n"
	       "  -O, --output-format F   raw, fixed or dynamic (default dynamic;\n"
	       "                          fixed with --compat azure)\n"
	       "      --block-size SIZE   block size of a dynamic DST (default 2M)\n"
	       "      --compat PROFILE    hyperv (default), vpc or azure; see vhdtool(1)\n"
	       "      --checkpoint NAME   convert checkpoint NAME's state of SRC\n"
	       "  -p, --progress          show progress on a terminal\n"
	       "  -h, --help              show this help\n");
}

static int parse_format(struct convert *c, const char *text)
{
	if (strcmp(text, "raw") == 0) {
		c->opts.format = "raw";
		c->opts.type = VD_TYPE_FIXED;
	} else if (strcmp(text, "fixed") == 0) {
		c->opts.type = VD_TYPE_FIXED;
	} else if (strcmp(text, "dynamic") == 0) {
		c->opts.type = VD_TYPE_DYNAMIC;
	} else {
		return vt_usage_error(CMD, "output format '%s' is not raw, fixed or dynamic", text);
	}
	c->out_name = text;
	return 0;
}

static int parse_option(struct convert *c, int opt, char **argv)
{
	uint64_t v;

	switch (opt) {
	case 'O':
		return parse_format(c, optarg);
	case 'p':
		c->progress = 1;
		return 0;
	case OPT_BLOCK_SIZE:
		if (vt_size_arg(CMD, "block size", optarg, &v))
			return VT_EXIT_ERROR;
		if (v == 0 || v > UINT32_MAX)
			return vt_usage_error(CMD, "block size '%s' is out of range", optarg);
		c->opts.block_size = (uint32_t)v;
		return 0;
	case OPT_COMPAT:
		if (vt_parse_compat(optarg, &c->opts.compat) < 0)
			return vt_usage_error(CMD, "compat '%s' is not hyperv, vpc or azure",
					      optarg);
		c->compat_given = 1;
		return 0;
	case OPT_CHECKPOINT:
		c->checkpoint = optarg;
		return 0;
	}
	return vt_getopt_error(CMD, opt, argv);
}

/* Rejects option combinations before anything is opened or created. */
static int settle_options(struct convert *c)
{
	if (!c->out_name)
		parse_format(c, c->opts.compat == VD_COMPAT_AZURE ? "fixed" : "dynamic");
	if (c->compat_given && strcmp(c->out_name, "raw") == 0)
		return vt_usage_error(CMD, "--compat applies only to VHD output, not -O raw");
	if (c->opts.compat == VD_COMPAT_AZURE && c->opts.type != VD_TYPE_FIXED)
		return vt_usage_error(CMD, "--compat azure needs -O fixed (Azure refuses dynamic "
					   "VHDs)");
	if (c->opts.block_size && c->opts.type != VD_TYPE_DYNAMIC)
		return vt_usage_error(CMD, "--block-size applies only to -O dynamic");
	if (c->to_stdout && c->opts.type == VD_TYPE_DYNAMIC)
		return vt_usage_error(CMD, "a dynamic VHD cannot be streamed; use -O raw or "
					   "-O fixed with DST '-', or give a file name");
	return 0;
}

/* Returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, struct convert *c)
{
	static const struct option longopts[] = {
		{"output-format", required_argument, NULL, 'O'},
		{"block-size", required_argument, NULL, OPT_BLOCK_SIZE},
		{"compat", required_argument, NULL, OPT_COMPAT},
		{"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
		{"progress", no_argument, NULL, 'p'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":O:ph", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		}
		if (parse_option(c, opt, argv))
			return VT_EXIT_ERROR;
	}
	if (argc - optind != 2)
		return vt_usage_error(CMD, argc - optind < 2 ? "needs SRC and DST"
							     : "too many arguments");
	c->src_path = argv[optind];
	c->dst_path = argv[optind + 1];
	c->to_stdout = strcmp(c->dst_path, "-") == 0;
	return settle_options(c);
}

/* Why vd_create_size refused, in the user's terms (it has no handle for a message). */
static const char *size_refusal(const struct convert *c)
{
	if (c->opts.size % 512)
		return "a VHD's size must be a multiple of 512 bytes; use -O raw";
	if (c->opts.size > VD_VHD_MAX_SIZE)
		return "a VHD holds at most 2040 GiB; use -O raw";
	return NULL;
}

/* The compat profile may round the size; never let it cut off source data. */
static int check_output_size(struct convert *c)
{
	char a[64], b[64];
	const char *why;
	int rc;

	c->opts.size = c->src_info.virtual_size;
	rc = vd_create_size(&c->opts, &c->out_size);
	if (rc < 0) {
		why = size_refusal(c);
		return vt_error("%s: cannot make a %s image of %s: %s", c->dst_path, c->out_name,
				vt_size_and_bytes(c->opts.size, a, sizeof(a)),
				why ? why : vd_strerror(rc));
	}
	if (c->out_size < c->opts.size)
		return vt_error("%s: --compat %s would shrink the disk to %s, below the "
				"source's %s; use --compat hyperv",
				c->dst_path, vt_compat_name(c->opts.compat),
				vt_size_and_bytes(c->out_size, a, sizeof(a)),
				vt_size_and_bytes(c->opts.size, b, sizeof(b)));
	return 0;
}

/* Streams N bytes of the buffer (disk offset OFF) to stdout; prints on failure. */
static int emit_chunk(struct convert *c, uint64_t n, uint64_t off)
{
	int rc;

	(void)off;
	rc = vt_write_full(STDOUT_FILENO, c->buf, n);
	return rc < 0 ? vt_error("stdout: %s", strerror(-rc)) : 0;
}

/* Copies LEN data bytes at OFF in chunks that never straddle an output block. */
static int copy_run(struct convert *c, uint64_t off, uint64_t len)
{
	while (len > 0) {
		uint64_t n = c->chunk - off % c->chunk;
		int rc;

		n = n < len ? n : len;
		if (vt_interrupted)
			return vt_error("%s: interrupted", c->to_stdout ? "stdout" : c->dst_path);
		rc = vd_pread(c->src, c->buf, n, off);
		if (rc < 0)
			return vt_disk_error(c->src, c->src_path, rc);
		if (emit_chunk(c, n, off))
			return VT_EXIT_ERROR;
		vt_progress_add(&c->bar, n);
		off += n;
		len -= n;
	}
	return 0;
}

/* A pipe cannot seek, so a streamed hole is written out as zeros. */
static int stream_zeros(struct convert *c, uint64_t len)
{
	memset(c->buf, 0, c->chunk);
	while (len > 0) {
		uint64_t n = len < c->chunk ? len : c->chunk;
		int rc;

		if (vt_interrupted)
			return vt_error("stdout: interrupted");
		rc = vt_write_full(STDOUT_FILENO, c->buf, n);
		if (rc < 0)
			return vt_error("stdout: %s", strerror(-rc));
		vt_progress_add(&c->bar, n);
		len -= n;
	}
	return 0;
}

static int copy_all(struct convert *c)
{
	uint64_t pos = 0, end = c->src_info.virtual_size, run;
	int kind;

	vt_progress_start(&c->bar, c->progress, c->out_size);
	for (; pos < end; pos += run) {
		if (vt_map_step(c->src, c->src_path, pos, end - pos, &kind, &run))
			return VT_EXIT_ERROR;
		if (!vt_run_is_zero(kind)) {
			if (copy_run(c, pos, run))
				return VT_EXIT_ERROR;
		} else if (c->to_stdout) {
			if (stream_zeros(c, run))
				return VT_EXIT_ERROR;
		} else {
			vt_progress_add(&c->bar, run);
		}
	}
	/* An azure-rounded fixed disk is longer than the source: pad the stream. */
	if (c->to_stdout && c->out_size > end && stream_zeros(c, c->out_size - end))
		return VT_EXIT_ERROR;
	vt_progress_end(&c->bar);
	return 0;
}

static int stream_out(struct convert *c)
{
	uint8_t footer[512];
	int rc;

	if (isatty(STDOUT_FILENO))
		return vt_error("refusing to write a disk image to a terminal; redirect stdout");
	/* Get the footer before the data, so a failure never ends a stream short. */
	if (strcmp(c->out_name, "fixed") == 0) {
		rc = vd_fixed_footer(&c->opts, footer);
		if (rc < 0)
			return vt_error("-: cannot make a fixed VHD footer: %s", vd_strerror(rc));
	}
	if (copy_all(c))
		return VT_EXIT_ERROR;
	if (strcmp(c->out_name, "fixed") == 0) {
		rc = vt_write_full(STDOUT_FILENO, footer, sizeof(footer));
		if (rc < 0)
			return vt_error("stdout: %s", strerror(-rc));
	}
	return 0;
}

/* Piece and chunk follow the output's block size, known only once it exists. */
static int size_buffers(struct convert *c)
{
	struct vd_info out;

	c->piece = FILE_PIECE;
	if (c->dst && c->opts.type == VD_TYPE_DYNAMIC) {
		if (vd_get_info(c->dst, &out) < 0)
			return vt_disk_error(c->dst, c->dst_path, -EIO);
		if (out.block_size)
			c->piece = out.block_size;
	}
	c->chunk = c->piece > VT_CHUNK ? c->piece : VT_CHUNK;
	c->buf = malloc(c->chunk);
	if (!c->buf)
		return vt_error("out of memory for a %llu-byte buffer",
				(unsigned long long)c->chunk);
	return 0;
}

/* vd_copy does the work: pipelined, sparse, free space checked, DST only when whole. */
static int convert_to_file(struct convert *c)
{
	struct vd_copy_opts o = {.format = c->opts.format,
				 .type = c->opts.type,
				 .block_size = c->opts.block_size,
				 .compat = c->opts.compat,
				 .checkpoint = c->checkpoint,
				 .progress = vt_progress_cb,
				 .ctx = &c->bar,
				 .cancel = (const volatile int *)&vt_interrupted};
	struct vd_copy_result r;
	char *msg = NULL;
	int rc;

	vt_progress_start(&c->bar, c->progress, c->src_info.virtual_size);
	rc = vd_copy(c->src_path, c->dst_path, &o, &r, &msg);
	vt_progress_end(&c->bar);
	if (rc < 0) {
		vt_error("%s", msg ? msg : vd_strerror(rc));
		vd_free_string(msg);
		return VT_EXIT_ERROR;
	}
	c->written = r.written_bytes;
	return 0;
}

static void report(const struct convert *c)
{
	char size[64], written[32];

	printf("converted %s%s%s to %s: %s%s, %s, %s written", c->src_path,
	       c->checkpoint ? " at checkpoint " : "", c->checkpoint ? c->checkpoint : "",
	       c->dst_path, c->out_name, strcmp(c->out_name, "raw") ? " VHD" : " image",
	       vt_size_and_bytes(c->out_size, size, sizeof(size)),
	       vt_human_size(c->written, written, sizeof(written)));
	if (c->src_info.chain && c->src_info.chain_length > 1)
		printf("; flattened a chain of %d images", c->src_info.chain_length);
	printf("\n");
}

int vt_cmd_convert(int argc, char **argv)
{
	struct convert c = {.opts = {.format = "vhd", .compat = VD_COMPAT_HYPERV}};
	int rc;

	rc = parse_args(argc, argv, &c);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	if (vt_open_state(c.src_path, c.checkpoint, &c.src, &c.src_info))
		return VT_EXIT_ERROR;
	vt_catch_signals();
	rc = check_output_size(&c);
	if (rc == 0 && c.to_stdout)
		rc = size_buffers(&c) || stream_out(&c) ? VT_EXIT_ERROR : 0;
	else if (rc == 0)
		rc = convert_to_file(&c);
	if (rc == 0 && !c.to_stdout)
		report(&c);
	free(c.buf);
	vd_close(c.src);
	return rc ? VT_EXIT_ERROR : VT_EXIT_OK;
}
