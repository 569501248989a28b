/*
 * vhdtool check: report every structural problem vd_check_path finds, one per
 * line or as JSON, with exit 0 (clean), 1 (problems) or 2 (unreadable).
 */
#include "vhdtool.h"

#include <getopt.h>
#include <string.h>

#define CMD "check"

struct check_ctx {
	const char *path;
	json_t *problems; /* --json: collects; otherwise NULL and we print */
	json_t *repairs;  /* --json --repair: the fixes made */
};

static void usage(void)
{
	printf("Usage: vhdtool check [--json] [--repair] [--profile default|azure] FILE\n\n"
	       "Check the structure of an image without trusting it and list every\n"
	       "problem. Exit 0: no problems; 1: problems found; 2: FILE unreadable.\n\n"
	       "  -j, --json             print JSON instead of text\n"
	       "      --repair           fix what loses no data (end footer from the copy\n"
	       "                         at 0, the copy at 0, BAT entries outside the file),\n"
	       "                         say what was done and check again; refuses fixes\n"
	       "                         that would lose data (overlapping blocks)\n"
	       "      --profile PROFILE  azure: also report every reason Azure would\n"
	       "                         refuse the disk (default: default)\n"
	       "  -h, --help             show this help\n");
}

static void on_problem(void *opaque, const struct vd_problem *p)
{
	struct check_ctx *ctx = opaque;
	const char *field = p->field ? p->field : "image";
	const char *message = p->message ? p->message : "problem";
	json_t *o;

	if (!ctx->problems) {
		if (p->offset == UINT64_MAX)
			printf("%s: %s: %s\n", ctx->path, field, message);
		else
			printf("%s: %s at offset 0x%llx: %s\n", ctx->path, field,
			       (unsigned long long)p->offset, message);
		return;
	}
	o = json_object();
	json_object_set_new(o, "field", json_string(field));
	json_object_set_new(o, "offset",
			    p->offset == UINT64_MAX ? json_null()
						    : json_integer((json_int_t)p->offset));
	json_object_set_new(o, "message", json_string(message));
	json_array_append_new(p->repairable && ctx->repairs ? ctx->repairs : ctx->problems, o);
}

static int parse_profile(const char *text, enum vd_check_profile *profile)
{
	if (strcmp(text, "default") == 0)
		*profile = VD_CHECK_DEFAULT;
	else if (strcmp(text, "azure") == 0)
		*profile = VD_CHECK_AZURE;
	else
		return vt_usage_error(CMD, "profile '%s' is not default or azure", text);
	return 0;
}

/* Returns -1 after --help, else 0 or VT_EXIT_ERROR. */
static int parse_args(int argc, char **argv, int *json, enum vd_check_profile *profile, int *repair)
{
	enum { OPT_PROFILE = 256, OPT_REPAIR };
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"repair", no_argument, NULL, OPT_REPAIR},
		{"profile", required_argument, NULL, OPT_PROFILE},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	while ((opt = getopt_long(argc, argv, ":jh", longopts, NULL)) != -1) {
		if (opt == 'h') {
			usage();
			return -1;
		} else if (opt == 'j') {
			*json = 1;
		} else if (opt == OPT_REPAIR) {
			*repair = 1;
		} else if (opt == OPT_PROFILE) {
			if (parse_profile(optarg, profile))
				return VT_EXIT_ERROR;
		} else {
			return vt_getopt_error(CMD, opt, argv);
		}
	}
	if (optind != argc - 1)
		return vt_usage_error(CMD, optind >= argc ? "missing FILE" : "too many arguments");
	return 0;
}

/*
 * --repair: after the check found problems, fix what loses no data, say what
 * was done, and check again. A refusal (a fix would lose data) is one line on
 * stderr; the problems stay and the exit status is 1.
 */
static int repair(struct check_ctx *ctx, enum vd_check_profile profile, int json)
{
	char *errmsg = NULL;
	int rc;

	if (json && !(ctx->repairs = json_array()))
		return vt_error("out of memory");
	rc = vd_repair_path(ctx->path, on_problem, ctx, &errmsg);
	if (rc < 0)
		fprintf(stderr, "vhdtool: %s\n", errmsg ? errmsg : vd_strerror(rc));
	vd_free_string(errmsg);
	errmsg = NULL;
	if (json) {
		json_decref(ctx->problems);
		ctx->problems = json_array();
	} else {
		printf("%d repair(s) made; checking again:\n", rc < 0 ? 0 : rc);
	}
	rc = vd_check_path(ctx->path, profile, on_problem, ctx, &errmsg);
	vd_free_string(errmsg);
	return rc;
}

int vt_cmd_check(int argc, char **argv)
{
	enum vd_check_profile profile = VD_CHECK_DEFAULT;
	struct check_ctx ctx = {0};
	char *errmsg = NULL;
	json_t *root;
	int json = 0, rc, fix = 0;

	rc = parse_args(argc, argv, &json, &profile, &fix);
	if (rc)
		return rc < 0 ? VT_EXIT_OK : rc;
	ctx.path = argv[optind];
	if (json && !(ctx.problems = json_array()))
		return vt_error("out of memory");
	rc = vd_check_path(ctx.path, profile, on_problem, &ctx, &errmsg);
	if (rc < 0) {
		json_decref(ctx.problems);
		return vt_errmsg_error(ctx.path, rc, errmsg);
	}
	if (errmsg)
		vd_free_string(errmsg);
	if (rc > 0 && fix)
		rc = repair(&ctx, profile, json);
	if (rc < 0)
		return vt_error("%s: the image no longer reads after the repair", ctx.path);
	if (json) {
		root = json_pack("{s:s, s:o, s:b}", "file", ctx.path, "problems", ctx.problems,
				 "ok", rc == 0);
		if (root && ctx.repairs)
			json_object_set_new(root, "repairs", ctx.repairs);
		if (vt_json_print(root))
			return VT_EXIT_ERROR;
	} else if (rc == 0) {
		printf("No errors found.\n");
	} else {
		printf("%d problem(s) found.\n", rc);
	}
	return rc == 0 ? VT_EXIT_OK : VT_EXIT_DIFF;
}
