/*
 * LVM2's text metadata format (the "vg { physical_volumes { ... } }" text in a
 * PV's metadata area), parsed into a small tree. Pure: no I/O, every length
 * checked, nesting bounded, so malformed metadata is an error naming the line.
 */
#include "lvm.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LVM_MAX_DEPTH 32

struct lexer {
	const char *p, *end;
	int line;
	char *err;
	size_t errlen;
};

static int lex_error(struct lexer *lx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int lex_error(struct lexer *lx, const char *fmt, ...)
{
	char what[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(lx->err, lx->errlen, "line %d: %s", lx->line, what);
	return -EUCLEAN;
}

static void skip_space(struct lexer *lx)
{
	while (lx->p < lx->end) {
		if (*lx->p == '\n') {
			lx->line++;
			lx->p++;
		} else if (*lx->p == '#') {
			while (lx->p < lx->end && *lx->p != '\n')
				lx->p++;
		} else if (isspace((unsigned char)*lx->p)) {
			lx->p++;
		} else {
			break;
		}
	}
}

static int is_word_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '+' || c == '-';
}

/* A key or section name. */
static int lex_word(struct lexer *lx, char **out)
{
	const char *start = lx->p;

	while (lx->p < lx->end && is_word_char(*lx->p))
		lx->p++;
	if (lx->p == start)
		return lex_error(lx, "expected a name, found '%c'", *start);
	*out = strndup(start, (size_t)(lx->p - start));
	return *out ? 0 : -ENOMEM;
}

static int lex_string(struct lexer *lx, char **out)
{
	size_t cap = 64, n = 0;
	char *s = malloc(cap);

	if (!s)
		return -ENOMEM;
	lx->p++; /* opening quote */
	while (lx->p < lx->end && *lx->p != '"') {
		char c = *lx->p++;

		if (c == '\\' && lx->p < lx->end)
			c = *lx->p++;
		if (c == '\n')
			lx->line++;
		if (n + 1 >= cap) {
			char *grown = realloc(s, cap *= 2);

			if (!grown) {
				free(s);
				return -ENOMEM;
			}
			s = grown;
		}
		s[n++] = c;
	}
	if (lx->p >= lx->end) {
		free(s);
		return lex_error(lx, "string never closed");
	}
	lx->p++;
	s[n] = '\0';
	*out = s;
	return 0;
}

static int lex_number(struct lexer *lx, long long *out)
{
	char buf[32];
	size_t n = 0;
	char *end;

	while (lx->p < lx->end && (isdigit((unsigned char)*lx->p) || *lx->p == '-') &&
	       n < sizeof(buf) - 1)
		buf[n++] = *lx->p++;
	buf[n] = '\0';
	errno = 0;
	*out = strtoll(buf, &end, 10);
	if (n == 0 || *end || errno)
		return lex_error(lx, "'%s' is not a number", buf);
	/* LVM writes floats for nothing we read, but they are legal: skip the fraction. */
	if (lx->p < lx->end && *lx->p == '.') {
		lx->p++;
		while (lx->p < lx->end && isdigit((unsigned char)*lx->p))
			lx->p++;
	}
	return 0;
}

static struct lvm_node *new_node(enum lvm_kind kind)
{
	struct lvm_node *node = calloc(1, sizeof(*node));

	if (node)
		node->kind = kind;
	return node;
}

static int parse_value(struct lexer *lx, struct lvm_node *node, int in_array);

static int parse_array(struct lexer *lx, struct lvm_node *node)
{
	struct lvm_node **tail = &node->child;

	node->kind = LVM_ARRAY;
	lx->p++; /* [ */
	for (;;) {
		struct lvm_node *item;
		int rc;

		skip_space(lx);
		if (lx->p >= lx->end)
			return lex_error(lx, "array never closed");
		if (*lx->p == ']') {
			lx->p++;
			return 0;
		}
		item = new_node(LVM_NUM);
		if (!item)
			return -ENOMEM;
		*tail = item;
		tail = &item->next;
		rc = parse_value(lx, item, 1);
		if (rc < 0)
			return rc;
		skip_space(lx);
		if (lx->p < lx->end && *lx->p == ',')
			lx->p++;
		else if (lx->p < lx->end && *lx->p != ']')
			return lex_error(lx, "expected ',' or ']' in an array");
	}
}

static int parse_value(struct lexer *lx, struct lvm_node *node, int in_array)
{
	skip_space(lx);
	if (lx->p >= lx->end)
		return lex_error(lx, "value missing at end of metadata");
	if (*lx->p == '"') {
		node->kind = LVM_STR;
		return lex_string(lx, &node->str);
	}
	if (*lx->p == '[') {
		if (in_array)
			return lex_error(lx, "nested arrays are not LVM metadata");
		return parse_array(lx, node);
	}
	node->kind = LVM_NUM;
	return lex_number(lx, &node->num);
}

static int parse_body(struct lexer *lx, struct lvm_node *section, int depth);

/* One "key = value" or "name { ... }" item; its key is already read. */
static int parse_item(struct lexer *lx, struct lvm_node *node, int depth)
{
	skip_space(lx);
	if (lx->p < lx->end && *lx->p == '=') {
		lx->p++;
		return parse_value(lx, node, 0);
	}
	if (lx->p < lx->end && *lx->p == '{') {
		lx->p++;
		node->kind = LVM_SECTION;
		return parse_body(lx, node, depth + 1);
	}
	return lex_error(lx, "expected '=' or '{' after '%s'", node->key);
}

static int parse_body(struct lexer *lx, struct lvm_node *section, int depth)
{
	struct lvm_node **tail = &section->child;

	if (depth > LVM_MAX_DEPTH)
		return lex_error(lx, "sections nested deeper than %d", LVM_MAX_DEPTH);
	for (;;) {
		struct lvm_node *node;
		int rc;

		skip_space(lx);
		if (lx->p >= lx->end || *lx->p == '\0')
			return depth == 0
				       ? 0
				       : lex_error(lx, "section '%s' never closed", section->key);
		if (*lx->p == '}') {
			if (depth == 0)
				return lex_error(lx, "'}' without a section");
			lx->p++;
			return 0;
		}
		node = new_node(LVM_NUM);
		if (!node)
			return -ENOMEM;
		*tail = node;
		tail = &node->next;
		rc = lex_word(lx, &node->key);
		if (rc == 0)
			rc = parse_item(lx, node, depth);
		if (rc < 0)
			return rc;
	}
}

int lvm_parse(const char *text, size_t len, struct lvm_node **root, char *err, size_t errlen)
{
	struct lexer lx = {.p = text, .end = text + len, .line = 1, .err = err, .errlen = errlen};
	struct lvm_node *top = new_node(LVM_SECTION);
	int rc;

	if (!top)
		return -ENOMEM;
	top->key = strdup("");
	rc = top->key ? parse_body(&lx, top, 0) : -ENOMEM;
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (rc < 0) {
		lvm_free(top);
		return rc;
	}
	*root = top;
	return 0;
}

void lvm_free(struct lvm_node *node)
{
	while (node) {
		struct lvm_node *next = node->next;

		lvm_free(node->child);
		free(node->key);
		free(node->str);
		free(node);
		node = next;
	}
}

const struct lvm_node *lvm_get(const struct lvm_node *section, const char *key)
{
	if (!section || section->kind != LVM_SECTION)
		return NULL;
	for (const struct lvm_node *n = section->child; n; n = n->next)
		if (strcmp(n->key, key) == 0)
			return n;
	return NULL;
}

int lvm_get_num(const struct lvm_node *section, const char *key, long long *out)
{
	const struct lvm_node *n = lvm_get(section, key);

	if (!n || n->kind != LVM_NUM)
		return -1;
	*out = n->num;
	return 0;
}

const char *lvm_get_str(const struct lvm_node *section, const char *key)
{
	const struct lvm_node *n = lvm_get(section, key);

	return n && n->kind == LVM_STR ? n->str : NULL;
}

int lvm_array_has(const struct lvm_node *section, const char *key, const char *word)
{
	const struct lvm_node *n = lvm_get(section, key);

	if (!n || n->kind != LVM_ARRAY)
		return 0;
	for (const struct lvm_node *item = n->child; item; item = item->next)
		if (item->kind == LVM_STR && strcmp(item->str, word) == 0)
			return 1;
	return 0;
}
