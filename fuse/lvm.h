/*
 * LVM2 on-disk structures for vdfs: the text metadata tree (lvm_text.c, pure)
 * and the label/metadata-area codecs (lvm.c).
 */
#ifndef VDFS_LVM_H
#define VDFS_LVM_H

#include <stddef.h>
#include <stdint.h>

enum lvm_kind {
	LVM_NUM = 1,
	LVM_STR = 2,
	LVM_ARRAY = 3,	 /* child: the items (key NULL) */
	LVM_SECTION = 4, /* child: the entries */
};

struct lvm_node {
	char *key; /* NULL for array items */
	enum lvm_kind kind;
	long long num;
	char *str;
	struct lvm_node *child;
	struct lvm_node *next;
};

/* Parse LEN bytes of metadata text (stops at a NUL). On error ERR says the line and why. */
int lvm_parse(const char *text, size_t len, struct lvm_node **root, char *err, size_t errlen);
void lvm_free(struct lvm_node *node);
const struct lvm_node *lvm_get(const struct lvm_node *section, const char *key);
int lvm_get_num(const struct lvm_node *section, const char *key, long long *out);
const char *lvm_get_str(const struct lvm_node *section, const char *key);
int lvm_array_has(const struct lvm_node *section, const char *key, const char *word);

/* What a PV's label sector says (lvm.c). */
#define LVM_UUID_LEN 32
#define LVM_MAX_MDAS 4
struct lvm_pv_label {
	char uuid[LVM_UUID_LEN + 1];
	uint64_t mda_offset[LVM_MAX_MDAS]; /* bytes from the PV start */
	uint64_t mda_size[LVM_MAX_MDAS];
	int mdas;
};

/*
 * Decode the 512-byte sector SECTOR_NO of a device as an LVM2 label: 1 when it
 * is one (LABEL filled), 0 when not, -EUCLEAN with ERR naming the field.
 */
int lvm_label_decode(const uint8_t sector[512], uint64_t sector_no, struct lvm_pv_label *label,
		     char *err, size_t errlen);

/* Where the current metadata text lies in a metadata area whose 512-byte header is HDR. */
struct lvm_text_locn {
	uint64_t offset; /* from the area start */
	uint64_t size;
};
int lvm_mda_decode(const uint8_t hdr[512], uint64_t mda_size, struct lvm_text_locn *locn, char *err,
		   size_t errlen);

#endif /* VDFS_LVM_H */
