/*
 * Helpers every subcommand shares: size parsing and printing, the one-line error
 * convention, the progress bar, checked vd_map steps and full reads/writes.
 */
#include "vhdtool.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

volatile sig_atomic_t vt_interrupted;

/* A bar is on screen: an error message must first wipe its half-drawn line. */
static int bar_on_screen;

static void clear_bar(void)
{
	if (bar_on_screen)
		fputs("\r\033[K", stderr);
	bar_on_screen = 0;
}

int vt_error(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	clear_bar();
	fputs("vhdtool: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return VT_EXIT_ERROR;
}

int vt_path_error(const char *path, const char *msg)
{
	size_t n = strlen(path);

	/* Library messages normally name the file already; never name it twice. */
	if (strncmp(msg, path, n) == 0 && msg[n] == ':')
		return vt_error("%s", msg);
	return vt_error("%s: %s", path, msg);
}

int vt_disk_error(const struct vd_disk *disk, const char *path, int rc)
{
	const char *msg = disk ? vd_errmsg(disk) : NULL;

	if (msg && *msg)
		return vt_path_error(path, msg);
	return vt_error("%s: %s", path, vd_strerror(rc));
}

int vt_errmsg_error(const char *path, int rc, char *errmsg)
{
	if (errmsg && *errmsg)
		vt_path_error(path, errmsg);
	else
		vt_error("%s: %s", path, vd_strerror(rc));
	if (errmsg)
		vd_free_string(errmsg);
	return VT_EXIT_ERROR;
}

int vt_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	clear_bar();
	fprintf(stderr, "vhdtool%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; try 'vhdtool%s%s --help'\n", cmd ? " " : "", cmd ? cmd : "");
	return VT_EXIT_ERROR;
}

int vt_getopt_error(const char *cmd, int opt, char **argv)
{
	const char *arg = argv[optind - 1];

	if (opt == ':')
		return vt_usage_error(cmd, "option '%s' needs a value", arg);
	if (strncmp(arg, "--", 2) == 0 && strchr(arg, '=') && optopt != 0)
		return vt_usage_error(cmd, "option '%.*s' takes no value",
				      (int)(strchr(arg, '=') - arg), arg);
	/* A long option's val may be a non-character code; name the word instead. */
	if (optopt > 0 && optopt < 128 && isprint(optopt) && strncmp(arg, "--", 2) != 0)
		return vt_usage_error(cmd, "unknown option '-%c'", optopt);
	return vt_usage_error(cmd, "unknown option '%s'", arg);
}

void vt_getopt_reset(void)
{
	optind = 0; /* 0, not 1: makes GNU getopt forget the previous argv */
	opterr = 0; /* we print our own one-line message */
}

/* Shift for a K/M/G/T unit letter, or -1. */
static int unit_shift(char c)
{
	switch (toupper((unsigned char)c)) {
	case 'K':
		return 10;
	case 'M':
		return 20;
	case 'G':
		return 30;
	case 'T':
		return 40;
	}
	return -1;
}

int vt_parse_size(const char *text, uint64_t *out)
{
	unsigned long long n;
	char *end;
	int shift = 0;

	if (!isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	n = strtoull(text, &end, 10);
	if (errno)
		return -1;
	if (*end && unit_shift(*end) > 0) {
		shift = unit_shift(*end++);
		if (strcasecmp(end, "iB") == 0)
			end += 2;
	} else if (*end == 'B' || *end == 'b') {
		end++;
	}
	if (*end || (shift && n > (UINT64_MAX >> shift)))
		return -1;
	*out = (uint64_t)n << shift;
	return 0;
}

int vt_size_arg(const char *cmd, const char *option, const char *text, uint64_t *out)
{
	if (vt_parse_size(text, out) == 0)
		return 0;
	return vt_usage_error(cmd, "%s '%s' is not a size (bytes, or a number with K, M, G or T)",
			      option, text);
}

const char *vt_human_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	int u = 0;

	while (u < 6 && bytes >> (10 * (u + 1)) != 0)
		u++;
	if (bytes % (1ull << (10 * u)) == 0)
		snprintf(buf, len, "%llu %s", (unsigned long long)(bytes >> (10 * u)), units[u]);
	else
		snprintf(buf, len, "%.2f %s", (double)bytes / (double)(1ull << (10 * u)), units[u]);
	return buf;
}

const char *vt_size_and_bytes(uint64_t bytes, char *buf, size_t len)
{
	char human[32];

	if (bytes < 1024)
		snprintf(buf, len, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%s (%llu bytes)", vt_human_size(bytes, human, sizeof(human)),
			 (unsigned long long)bytes);
	return buf;
}

int vt_parse_compat(const char *text, enum vd_compat *out)
{
	if (strcmp(text, "hyperv") == 0)
		*out = VD_COMPAT_HYPERV;
	else if (strcmp(text, "vpc") == 0)
		*out = VD_COMPAT_VPC;
	else if (strcmp(text, "azure") == 0)
		*out = VD_COMPAT_AZURE;
	else
		return -1;
	return 0;
}

const char *vt_compat_name(enum vd_compat compat)
{
	switch (compat) {
	case VD_COMPAT_HYPERV:
		return "hyperv";
	case VD_COMPAT_VPC:
		return "vpc";
	case VD_COMPAT_AZURE:
		return "azure";
	}
	return "unknown";
}

const char *vt_type_name(enum vd_disk_type type)
{
	switch (type) {
	case VD_TYPE_FIXED:
		return "fixed";
	case VD_TYPE_DYNAMIC:
		return "dynamic";
	case VD_TYPE_DIFFERENCING:
		return "differencing";
	case VD_TYPE_NONE:
		break;
	}
	return "none";
}

const char *vt_extent_name(int kind)
{
	switch (kind) {
	case VD_EXTENT_ALLOCATED:
		return "allocated";
	case VD_EXTENT_UNALLOCATED:
		return "unallocated";
	case VD_EXTENT_ZERO:
		return "zero";
	}
	return "unknown";
}

const char *vt_uuid_text(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
	return out;
}

int vt_uuid_is_null(const uint8_t uuid[16])
{
	static const uint8_t null_uuid[16];

	return memcmp(uuid, null_uuid, 16) == 0;
}

const char *vt_time_text(uint32_t vhd_time, char out[32])
{
	time_t t = (time_t)vhd_time + VT_VHD_EPOCH;
	struct tm tm;

	if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(out, 32, "%u", vhd_time);
	return out;
}

static int open_with(const char *path, const struct vd_open_opts *opts, struct vd_disk **diskp,
		     struct vd_info *info)
{
	struct vd_disk *disk = NULL;
	int rc = vd_open(path, opts, &disk);

	if (rc == 0 && info)
		rc = vd_get_info(disk, info);
	if (rc < 0) {
		vt_disk_error(disk, path, rc);
		if (disk)
			vd_close(disk);
		return VT_EXIT_ERROR;
	}
	*diskp = disk;
	return 0;
}

int vt_open(const char *path, unsigned flags, struct vd_disk **diskp, struct vd_info *info)
{
	struct vd_open_opts opts = {.flags = flags};

	return open_with(path, &opts, diskp, info);
}

int vt_open_state(const char *path, const char *checkpoint, struct vd_disk **diskp,
		  struct vd_info *info)
{
	struct vd_open_opts opts = {.flags = VD_OPEN_RDONLY, .checkpoint = checkpoint};

	return open_with(path, &opts, diskp, info);
}

int vt_map_step(struct vd_disk *disk, const char *path, uint64_t offset, uint64_t len, int *kind,
		uint64_t *run_len)
{
	int rc = vd_map(disk, offset, len, run_len);

	if (rc < 0)
		return vt_disk_error(disk, path, rc);
	if (rc < VD_EXTENT_ALLOCATED || rc > VD_EXTENT_ZERO || *run_len == 0 || *run_len > len)
		return vt_error("%s: vd_map gave kind %d, length %llu for %llu bytes at offset "
				"%llu (a libvdisk bug; please report it)",
				path, rc, (unsigned long long)*run_len, (unsigned long long)len,
				(unsigned long long)offset);
	*kind = rc;
	return 0;
}

int vt_run_is_zero(int kind)
{
	return kind == VD_EXTENT_ZERO || kind == VD_EXTENT_UNALLOCATED;
}

int vt_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* Compare the buffer with itself shifted by one: memcmp is vectorised. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

int vt_write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR && !vt_interrupted)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

ssize_t vt_read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR && !vt_interrupted)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress_draw(struct vt_progress *p)
{
	char done[32], total[32], bar[41];
	int pct = p->total ? (int)(p->done * 100 / p->total) : 100;
	int fill = pct * 40 / 100;

	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(40 - fill));
	bar[40] = '\0';
	fprintf(stderr, "\r%3d%% [%s] %s / %s\033[K", pct, bar,
		vt_human_size(p->done, done, sizeof(done)),
		vt_human_size(p->total, total, sizeof(total)));
	fflush(stderr);
}

void vt_progress_start(struct vt_progress *p, int wanted, uint64_t total)
{
	/* A bar is noise in a log file or a pipe: draw only on a terminal. */
	p->enabled = wanted && isatty(STDERR_FILENO);
	p->total = total;
	p->done = 0;
	p->last_draw = 0;
	if (p->enabled) {
		bar_on_screen = 1;
		progress_draw(p);
	}
}

void vt_progress_add(struct vt_progress *p, uint64_t bytes)
{
	double now;

	p->done += bytes;
	if (!p->enabled)
		return;
	now = monotonic_seconds();
	if (now - p->last_draw < 0.1)
		return;
	p->last_draw = now;
	progress_draw(p);
}

void vt_progress_end(struct vt_progress *p)
{
	if (!p->enabled)
		return;
	progress_draw(p);
	fputc('\n', stderr);
	p->enabled = 0;
	bar_on_screen = 0;
}

void vt_progress_cb(void *ctx, uint64_t done, uint64_t total)
{
	struct vt_progress *p = ctx;

	if (total)
		p->total = total; /* some operations know it only once they have opened the disk */
	vt_progress_add(p, done - p->done);
}

static void on_signal(int sig)
{
	(void)sig;
	vt_interrupted = 1;
}

void vt_catch_signals(void)
{
	struct sigaction sa;

	/* No SA_RESTART: a blocked write returns EINTR so the loop can clean up. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int vt_json_print(json_t *root)
{
	int rc;

	if (!root)
		return vt_error("out of memory building JSON output");
	rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (rc < 0)
		return vt_error("writing JSON to stdout failed");
	fputc('\n', stdout);
	return 0;
}
