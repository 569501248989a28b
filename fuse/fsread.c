/*
 * File systems inside partitions, read by The Sleuth Kit (NTFS, FAT12/16/32,
 * exFAT, ext2/3/4): directory listings cached by inode, path lookup, file
 * contents, symbolic links, and the blocks the guest marks free.
 */
#include "vdfs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* NTFS records below 16 are the system files ($MFT, $Bitmap...); ntfs-3g hides them too. */
#define NTFS_FIRST_USER_RECORD 16

static void free_dir(struct vdfs_dir *dir)
{
	for (size_t i = 0; i < dir->count; i++)
		free(dir->ents[i].name);
	free(dir->ents);
	free(dir);
}

static void flush_dirs(struct vdfs_part *part)
{
	for (size_t b = 0; b < VDFS_DIR_BUCKETS; b++) {
		while (part->dirs[b]) {
			struct vdfs_dir *next = part->dirs[b]->next;

			free_dir(part->dirs[b]);
			part->dirs[b] = next;
		}
	}
	part->ndirs = 0;
}

void vdfs_part_free_fs(struct vdfs_part *part)
{
	flush_dirs(part);
	if (part->tfs)
		tsk_fs_close(part->tfs);
	if (part->img)
		tsk_img_close(part->img);
	part->tfs = NULL;
	part->img = NULL;
}

static enum vdfs_kind meta_kind(TSK_FS_META_TYPE_ENUM type)
{
	switch (type) {
	case TSK_FS_META_TYPE_REG:
		return VDFS_REG;
	case TSK_FS_META_TYPE_DIR:
		return VDFS_DIR;
	case TSK_FS_META_TYPE_LNK:
		return VDFS_LNK;
	default:
		return VDFS_OTHER;
	}
}

static void stat_from_meta(const TSK_FS_META *meta, struct vdfs_stat *st)
{
	*st = (struct vdfs_stat){
		.ino = meta->addr,
		.kind = meta_kind(meta->type),
		.mode = (uint32_t)meta->mode & 07777,
		.nlink = meta->nlink > 0 ? (uint32_t)meta->nlink : 1,
		.size = meta->size > 0 ? (uint64_t)meta->size : 0,
		.mtime = meta->mtime,
		.atime = meta->atime,
		.ctime = meta->ctime,
		.crtime = meta->crtime,
		.mtime_ns = meta->mtime_nano,
		.atime_ns = meta->atime_nano,
		.ctime_ns = meta->ctime_nano,
		.crtime_ns = meta->crtime_nano,
	};
}

/* TSK lists a FAT volume label as a file named "LABEL (Volume Label Entry)". */
static const char fat_label_suffix[] = " (Volume Label Entry)";

static int is_fat_label(const struct vdfs_part *part, const char *name)
{
	size_t n = strlen(name), k = sizeof(fat_label_suffix) - 1;

	return TSK_FS_TYPE_ISFAT(part->tfs->ftype) && n >= k &&
	       strcmp(name + n - k, fat_label_suffix) == 0;
}

/* The label goes to the partition's info instead, without FAT's space padding. */
static void keep_fat_label(struct vdfs_part *part, const char *name)
{
	size_t n = strlen(name) - (sizeof(fat_label_suffix) - 1);

	while (n > 0 && name[n - 1] == ' ')
		n--;
	if (part->fs_label)
		return;
	part->fs_label = strndup(name, n);
	part->info.fs_label = part->fs_label;
}

/*
 * exFAT's allocation bitmap, up-case table and other special directory entries,
 * which TSK lists as files named so (no user file can be: exFAT names come from
 * file-name entries, these from entries of other types).
 */
static int exfat_special(const struct vdfs_part *part, const TSK_FS_FILE *file)
{
	static const char *const names[] = {"$ALLOC_BITMAP", "$UPCASE_TABLE", "$VOLUME_GUID_ENTRY",
					    "$TEX_FAT_ENTRY", "$ACCESS_CONTROL_TABLE"};

	if (part->tfs->ftype != TSK_FS_TYPE_EXFAT || file->name->par_addr != part->tfs->root_inum)
		return 0;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(file->name->name, names[i]) == 0)
			return 1;
	return 0;
}

/* What a guest user sees: allocated names only, no TSK virtual files or NTFS system files. */
static int visible(const struct vdfs_part *part, const TSK_FS_FILE *file)
{
	const TSK_FS_NAME *name = file->name;

	if (!name || !name->name || !file->meta)
		return 0;
	if (strcmp(name->name, ".") == 0 || strcmp(name->name, "..") == 0)
		return 0;
	if (!(name->flags & TSK_FS_NAME_FLAG_ALLOC))
		return 0;
	if (name->type == TSK_FS_NAME_TYPE_VIRT || name->type == TSK_FS_NAME_TYPE_VIRT_DIR)
		return 0;
	if (file->meta->type == TSK_FS_META_TYPE_VIRT ||
	    file->meta->type == TSK_FS_META_TYPE_VIRT_DIR)
		return 0;
	if (TSK_FS_TYPE_ISNTFS(part->tfs->ftype) && name->meta_addr < NTFS_FIRST_USER_RECORD)
		return 0;
	if (exfat_special(part, file))
		return 0;
	return !is_fat_label(part, name->name);
}

static int dent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vdfs_dent *)a)->name, ((const struct vdfs_dent *)b)->name);
}

/* Sort by name and drop repeated names (a damaged directory may hold two). */
static void sort_dir(struct vdfs_dir *dir)
{
	size_t kept = 0;

	qsort(dir->ents, dir->count, sizeof(*dir->ents), dent_cmp);
	for (size_t i = 0; i < dir->count; i++) {
		if (kept > 0 && strcmp(dir->ents[kept - 1].name, dir->ents[i].name) == 0) {
			free(dir->ents[i].name);
			continue;
		}
		dir->ents[kept++] = dir->ents[i];
	}
	dir->count = kept;
}

static int fill_dir(struct vdfs_part *part, const TSK_FS_DIR *tdir, struct vdfs_dir *dir)
{
	size_t n = tsk_fs_dir_getsize(tdir);

	dir->ents = calloc(n ? n : 1, sizeof(*dir->ents));
	if (!dir->ents)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		TSK_FS_FILE *file = tsk_fs_dir_get(tdir, i);

		if (!file)
			continue;
		if (file->name && file->name->name && is_fat_label(part, file->name->name))
			keep_fat_label(part, file->name->name);
		if (visible(part, file)) {
			struct vdfs_dent *ent = &dir->ents[dir->count];

			ent->name = strdup(file->name->name);
			if (!ent->name) {
				tsk_fs_file_close(file);
				return -ENOMEM;
			}
			stat_from_meta(file->meta, &ent->st);
			dir->count++;
		}
		tsk_fs_file_close(file);
	}
	sort_dir(dir);
	return 0;
}

static int load_dir(struct vdfs_part *part, uint64_t ino, struct vdfs_dir **out)
{
	TSK_FS_DIR *tdir = tsk_fs_dir_open_meta(part->tfs, ino);
	struct vdfs_dir *dir;
	int rc;

	if (!tdir) {
		tsk_error_reset();
		return -EIO;
	}
	dir = calloc(1, sizeof(*dir));
	if (!dir) {
		tsk_fs_dir_close(tdir);
		return -ENOMEM;
	}
	dir->ino = ino;
	rc = fill_dir(part, tdir, dir);
	tsk_fs_dir_close(tdir);
	if (rc < 0) {
		free_dir(dir);
		return rc;
	}
	*out = dir;
	return 0;
}

/* The cached listing of directory INO, read on first use. */
static int get_dir(struct vdfs_part *part, uint64_t ino, struct vdfs_dir **out)
{
	size_t bucket = (size_t)(ino * 0x9E3779B97F4A7C15ull >> 52) % VDFS_DIR_BUCKETS;
	struct vdfs_dir *dir;
	int rc;

	for (dir = part->dirs[bucket]; dir; dir = dir->next)
		if (dir->ino == ino) {
			*out = dir;
			return 0;
		}
	if (part->ndirs >= VDFS_DIR_CACHE_MAX)
		flush_dirs(part);
	rc = load_dir(part, ino, &dir);
	if (rc < 0)
		return rc;
	dir->next = part->dirs[bucket];
	part->dirs[bucket] = dir;
	part->ndirs++;
	*out = dir;
	return 0;
}

void vdfs_open_filesystems(struct vdfs *fs)
{
	for (int i = 0; i < fs->nparts; i++) {
		struct vdfs_part *part = fs->parts[i];
		const char *why;

		if (part->is_pv)
			continue;
		part->img = vdfs_tskimg_open(fs, i, part->info.size);
		if (part->img)
			part->tfs = tsk_fs_open_img(part->img, 0, TSK_FS_TYPE_DETECT);
		if (part->tfs) {
			struct vdfs_dir *root;

			part->info.fs_type = tsk_fs_type_toname(part->tfs->ftype);
			/* Reading the root now finds a FAT label and proves the file system usable.
			 */
			if (get_dir(part, part->tfs->root_inum, &root) < 0)
				vdfs_log(fs, "%s: the root folder of its %s cannot be read",
					 part->name, part->info.fs_type);
			continue;
		}
		why = tsk_error_get();
		part->fs_error = strdup(why && *why ? why : "no file system found");
		part->info.fs_error = part->fs_error;
		vdfs_log(fs, "%s: no file system that can be read (%s): files/%s left out",
			 part->name, part->fs_error ? part->fs_error : "out of memory", part->name);
		tsk_error_reset();
		if (part->img)
			tsk_img_close(part->img);
		part->img = NULL;
	}
}

static int root_stat(struct vdfs_part *part, struct vdfs_stat *st)
{
	TSK_FS_FILE *root = tsk_fs_file_open_meta(part->tfs, NULL, part->tfs->root_inum);

	if (!root || !root->meta) {
		tsk_error_reset();
		if (root)
			tsk_fs_file_close(root);
		return -EIO;
	}
	stat_from_meta(root->meta, st);
	st->kind = VDFS_DIR;
	tsk_fs_file_close(root);
	return 0;
}

static int find_in_dir(struct vdfs_part *part, uint64_t dir_ino, const char *name, size_t len,
		       struct vdfs_stat *st)
{
	struct vdfs_dir *dir;
	char key[1024];
	struct vdfs_dent probe = {.name = key}, *hit;
	int rc;

	if (len >= sizeof(key))
		return -ENAMETOOLONG;
	memcpy(key, name, len);
	key[len] = '\0';
	rc = get_dir(part, dir_ino, &dir);
	if (rc < 0)
		return rc;
	hit = bsearch(&probe, dir->ents, dir->count, sizeof(*dir->ents), dent_cmp);
	if (!hit)
		return -ENOENT;
	*st = hit->st;
	return 0;
}

/* Resolve PATH component by component from the root, through the cache. */
static int resolve(struct vdfs *fs, int index, const char *path, struct vdfs_part **partp,
		   struct vdfs_stat *st)
{
	struct vdfs_part *part;
	int rc;

	if (index < 0 || index >= fs->nparts)
		return -ENOENT;
	part = fs->parts[index];
	if (!part->tfs)
		return -ENODEV;
	*partp = part;
	rc = root_stat(part, st);
	while (rc == 0 && *path) {
		size_t len;

		path += strspn(path, "/");
		len = strcspn(path, "/");
		if (len == 0)
			break;
		if (st->kind != VDFS_DIR)
			return -ENOTDIR;
		rc = find_in_dir(part, st->ino, path, len, st);
		path += len;
	}
	return rc;
}

int vdfs_stat(struct vdfs *fs, int part, const char *path, struct vdfs_stat *st)
{
	struct vdfs_part *p;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = resolve(fs, part, path, &p, st);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_readdir(struct vdfs *fs, int part, const char *path, vdfs_dirent_fn fn, void *ctx)
{
	struct vdfs_part *p;
	struct vdfs_stat st;
	struct vdfs_dir *dir;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = resolve(fs, part, path, &p, &st);
	if (rc == 0 && st.kind != VDFS_DIR)
		rc = -ENOTDIR;
	if (rc == 0)
		rc = get_dir(p, st.ino, &dir);
	for (size_t i = 0; rc == 0 && i < dir->count; i++)
		if (fn(ctx, dir->ents[i].name, &dir->ents[i].st) != 0)
			break;
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

int vdfs_readlink(struct vdfs *fs, int part, const char *path, char *buf, size_t len)
{
	struct vdfs_part *p;
	struct vdfs_stat st;
	TSK_FS_FILE *file = NULL;
	int rc;

	if (len == 0)
		return -EINVAL;
	pthread_mutex_lock(&fs->lock);
	rc = resolve(fs, part, path, &p, &st);
	if (rc == 0 && st.kind != VDFS_LNK)
		rc = -EINVAL;
	if (rc == 0) {
		file = tsk_fs_file_open_meta(p->tfs, NULL, st.ino);
		if (!file || !file->meta || !file->meta->link)
			rc = -EIO;
		else
			snprintf(buf, len, "%s", file->meta->link);
	}
	if (file)
		tsk_fs_file_close(file);
	tsk_error_reset();
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

struct vdfs_file {
	struct vdfs *fs;
	TSK_FS_FILE *file;
	uint64_t size;
};

int vdfs_file_open(struct vdfs *fs, int part, const char *path, struct vdfs_file **out)
{
	struct vdfs_part *p;
	struct vdfs_stat st;
	struct vdfs_file *f = NULL;
	int rc;

	pthread_mutex_lock(&fs->lock);
	rc = resolve(fs, part, path, &p, &st);
	if (rc == 0 && st.kind == VDFS_DIR)
		rc = -EISDIR;
	if (rc == 0 && !(f = calloc(1, sizeof(*f))))
		rc = -ENOMEM;
	if (rc == 0) {
		f->fs = fs;
		f->size = st.size;
		f->file = tsk_fs_file_open_meta(p->tfs, NULL, st.ino);
		if (!f->file) {
			tsk_error_reset();
			free(f);
			rc = -EIO;
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (rc == 0)
		*out = f;
	return rc;
}

ssize_t vdfs_file_read(struct vdfs_file *f, void *buf, size_t len, uint64_t offset)
{
	ssize_t n;

	if (offset >= f->size || len == 0)
		return 0;
	if (len > f->size - offset)
		len = (size_t)(f->size - offset);
	pthread_mutex_lock(&f->fs->lock);
	n = tsk_fs_file_read(f->file, (TSK_OFF_T)offset, buf, len, TSK_FS_FILE_READ_FLAG_NONE);
	if (n < 0)
		tsk_error_reset();
	pthread_mutex_unlock(&f->fs->lock);
	return n < 0 ? -EIO : n;
}

void vdfs_file_close(struct vdfs_file *f)
{
	if (!f)
		return;
	pthread_mutex_lock(&f->fs->lock);
	tsk_fs_file_close(f->file);
	pthread_mutex_unlock(&f->fs->lock);
	free(f);
}

/* Merges TSK's one-block callbacks into ranges before handing them on. */
struct free_walk {
	vdfs_range_fn fn;
	void *ctx;
	uint64_t block_size;
	uint64_t start, len; /* the pending range, in bytes */
	int stopped;
};

static int flush_range(struct free_walk *w)
{
	int rc = 0;

	if (w->len > 0)
		rc = w->fn(w->ctx, w->start, w->len);
	w->len = 0;
	return rc;
}

static TSK_WALK_RET_ENUM free_block(const TSK_FS_BLOCK *block, void *ptr)
{
	struct free_walk *w = ptr;
	uint64_t off = (uint64_t)block->addr * w->block_size;

	if (w->len > 0 && w->start + w->len == off) {
		w->len += w->block_size;
		return TSK_WALK_CONT;
	}
	if (flush_range(w) != 0) {
		w->stopped = 1;
		return TSK_WALK_STOP;
	}
	w->start = off;
	w->len = w->block_size;
	return TSK_WALK_CONT;
}

int vdfs_free_ranges(struct vdfs *fs, int part, vdfs_range_fn fn, void *ctx)
{
	struct vdfs_part *p;
	struct free_walk w = {.fn = fn, .ctx = ctx};
	int rc = 0;

	if (part < 0 || part >= fs->nparts)
		return -ENOENT;
	pthread_mutex_lock(&fs->lock);
	p = fs->parts[part];
	if (!p->tfs) {
		rc = -ENODEV;
	} else {
		w.block_size = p->tfs->block_size;
		if (tsk_fs_block_walk(p->tfs, p->tfs->first_block, p->tfs->last_block_act,
				      TSK_FS_BLOCK_WALK_FLAG_UNALLOC | TSK_FS_BLOCK_WALK_FLAG_AONLY,
				      free_block, &w) != 0) {
			tsk_error_reset();
			rc = -EIO;
		}
		if (rc == 0 && !w.stopped)
			flush_range(&w);
	}
	pthread_mutex_unlock(&fs->lock);
	return rc;
}
