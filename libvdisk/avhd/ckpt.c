/*
 * Checkpoint trees (placeholder until the manifest code lands in this file).
 */
#include <errno.h>
#include <stdlib.h>

#include "vdisk_int.h"

int vd_ckpt_resolve(struct vd_disk *d, const char *checkpoint, unsigned *flags, char **image)
{
	(void)flags;
	*image = NULL;
	if (checkpoint)
		return vd_error(d, -ENOENT, "", UINT64_MAX, "no checkpoint '%s'", checkpoint);
	return 0;
}

static int not_yet(char **errmsg)
{
	if (errmsg)
		*errmsg = NULL;
	return -EOPNOTSUPP;
}

int vd_checkpoint_create(const char *disk, const char *name, char **errmsg)
{
	(void)disk;
	(void)name;
	return not_yet(errmsg);
}

int vd_checkpoint_apply(const char *disk, const char *name, char **errmsg)
{
	(void)disk;
	(void)name;
	return not_yet(errmsg);
}

int vd_checkpoint_delete(const char *disk, const char *name, char **errmsg)
{
	(void)disk;
	(void)name;
	return not_yet(errmsg);
}

int vd_checkpoint_list(const char *disk, struct vd_checkpoint_tree **tree, char **errmsg)
{
	(void)disk;
	*tree = NULL;
	return not_yet(errmsg);
}

void vd_checkpoint_tree_free(struct vd_checkpoint_tree *tree)
{
	free(tree);
}
