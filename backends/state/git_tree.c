/*
 * backends/state/git_tree.c - the git state manager's trees: the
 * workspace as a tree (blobs from what the backend operations read, an
 * index built in memory, the stat cache in <store>/omnifs-index so an
 * unchanged file is not read again), commits, and a tree written back
 * into the workspace through snapshot_apply.c (see the head of
 * state_git.c for the design, state_git.h for the shared structures).
 *
 * Small files become blobs from one buffer, larger ones are streamed; a
 * file that is no longer the regular file the scan saw (snapshot_scan.c)
 * is left out with a warning. A name git refuses is left out of a save;
 * anything named .git is never written by a load, and an unsafe path
 * fails it. Every blob of a tree is checked to be in the store, and the
 * tree's entries and bytes against the restore limits, before anything
 * is written; the load then stages the tree (snapshot_apply.c), so a
 * tree with duplicate names (a symlink and a directory of one name)
 * fails instead of writing through the symlink. Git keeps only 0644,
 * 0755 and symlinks: any other mode bits of a crafted tree are dropped
 * (setuid, setgid and sticky with a warning).
 *
 * Locking: called with the manager's mutex held (state_git.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/snapshot.h"
#include "state/state_git.h"

#define SMALL_BLOB (4 * 1024 * 1024)

/* --- workspace -> tree
 * ---------------------------------------------------------- */

struct tree_build {
	struct git_op *op;
	git_index *cache;     /* the stat cache (read) */
	git_index *index;     /* the new tree's entries and next cache */
	git_index_time stamp; /* the cache's own mtime */
	git_odb *odb;
	long long skipped;
};

static void fill_entry(git_index_entry *ie, const struct omni__ws_entry *e,
                       unsigned int mode)
{
	memset(ie, 0, sizeof(*ie));
	ie->path = e->path;
	ie->mode = mode;
	ie->ctime.seconds = (int32_t)e->st.st_ctim.tv_sec;
	ie->ctime.nanoseconds = (uint32_t)e->st.st_ctim.tv_nsec;
	ie->mtime.seconds = (int32_t)e->st.st_mtim.tv_sec;
	ie->mtime.nanoseconds = (uint32_t)e->st.st_mtim.tv_nsec;
	ie->dev = (uint32_t)e->st.st_dev;
	ie->ino = (uint32_t)e->st.st_ino;
	ie->uid = (uint32_t)e->st.st_uid;
	ie->gid = (uint32_t)e->st.st_gid;
	ie->file_size = (uint32_t)e->st.st_size;
}

/* Can the cached entry stand for the file without reading it? */
static bool cache_hit(struct tree_build *t, const git_index_entry *ce,
                      const git_index_entry *ie)
{
	if (!ce || ce->mode != ie->mode || ce->file_size != ie->file_size ||
	    ce->mtime.seconds != ie->mtime.seconds ||
	    ce->mtime.nanoseconds != ie->mtime.nanoseconds ||
	    ce->ino != ie->ino)
		return false;
	/* Racy git: a file changed in the same instant the cache was
	 * written may look unchanged. */
	if (ie->mtime.seconds > t->stamp.seconds ||
	    (ie->mtime.seconds == t->stamp.seconds &&
	     ie->mtime.nanoseconds >= t->stamp.nanoseconds))
		return false;
	return git_odb_exists(t->odb, &ce->id) == 1;
}

struct blob_stream {
	git_writestream *ws;
	struct git_op *op;
};

static int blob_chunk(const void *data, size_t len, void *payload)
{
	struct blob_stream *s = payload;
	int rc = s->ws->write(s->ws, data, len);

	if (rc < 0)
		return omni__git_fail(rc, "storing a blob");
	omni__progress_add(&s->op->progress, 0, (long long)len);
	return 0;
}

static int make_blob(struct tree_build *t, const struct omni__ws_entry *e,
                     git_oid *oid)
{
	struct git_op *op = t->op;
	int rc;

	if (S_ISLNK(e->st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n =
		    omni_vfs_readlink(op->b, e->path, target, sizeof(target));
		if (n < 0)
			return (int)n;
		if ((size_t)n >= sizeof(target))
			return omni_error_set(
			    -ENAMETOOLONG, "%s: link target too long", e->path);
		if ((rc = git_blob_create_from_buffer(oid, op->repo, target,
		                                      (size_t)n)) < 0)
			return omni__git_fail(rc, "storing %s", e->path);
		omni__progress_add(&op->progress, 0, n);
		return 0;
	}
	if (e->st.st_size <= SMALL_BLOB) {
		char *data;
		size_t len;
		rc = omni__ws_read_all(op->b, e->path, &e->st, SMALL_BLOB,
		                       &data, &len);
		if (rc == 0) {
			rc = git_blob_create_from_buffer(oid, op->repo, data,
			                                 len);
			free(data);
			if (rc < 0)
				return omni__git_fail(rc, "storing %s",
				                      e->path);
			omni__progress_add(&op->progress, 0, (long long)len);
			return 0;
		}
		if (rc != -EFBIG)
			return rc;
		/* It grew past the limit meanwhile: stream it. */
		omni_error_clear();
	}
	struct blob_stream s = { .op = op };
	if ((rc = git_blob_create_from_stream(&s.ws, op->repo, NULL)) < 0)
		return omni__git_fail(rc, "storing %s", e->path);
	if ((rc = omni__ws_read(op->b, e->path, &e->st, blob_chunk, &s)) < 0) {
		s.ws->free(s.ws);
		return rc;
	}
	if ((rc = git_blob_create_from_stream_commit(oid, s.ws)) < 0)
		return omni__git_fail(rc, "storing %s", e->path);
	return 0;
}

static int add_to_tree(struct tree_build *t, const struct omni__ws_entry *e)
{
	git_index_entry ie;
	unsigned int mode;
	int rc;

	if (S_ISLNK(e->st.st_mode))
		mode = GIT_FILEMODE_LINK;
	else if (e->st.st_mode & 0111)
		mode = GIT_FILEMODE_BLOB_EXECUTABLE;
	else
		mode = GIT_FILEMODE_BLOB;
	fill_entry(&ie, e, mode);
	const git_index_entry *ce = git_index_get_bypath(t->cache, e->path, 0);
	if (cache_hit(t, ce, &ie)) {
		git_oid_cpy(&ie.id, &ce->id);
	} else if ((rc = make_blob(t, e, &ie.id)) < 0) {
		if (rc == -ENOENT || rc == -ESTALE) {
			/* Deleted or replaced between the scan and the
			 * read. */
			omni__ws_skipped(e->path, rc);
			return 0;
		}
		return rc;
	}
	if (git_index_add(t->index, &ie) < 0) {
		/* A name git refuses to store (".git" in some disguise):
		 * leave it out rather than fail the whole save. */
		const git_error *err = git_error_last();
		omni_log(OMNI_LOG_DEBUG, "git state: not saving %s: %s",
		         e->path,
		         err && err->message ? err->message : "refused");
		git_error_clear();
		t->skipped++;
		return 0;
	}
	omni__progress_add(&t->op->progress, 1, 0);
	return 0;
}

/*
 * Build the tree of the workspace into *out, and write the stat cache
 * for it (only when keep_cache; a backup of a workspace about to be
 * replaced has no use for one).
 */
int omni__git_build_tree(struct git_op *op, git_oid *out, bool keep_cache)
{
	struct tree_build t = { .op = op };
	struct omni__ws_list list = { 0 };
	char fresh[PATH_MAX + 8];
	struct stat st;
	int rc;

	snprintf(fresh, sizeof(fresh), "%s.new", op->cache);
	unlink(fresh);
	if (stat(op->cache, &st) == 0) {
		t.stamp.seconds = (int32_t)st.st_mtim.tv_sec;
		t.stamp.nanoseconds = (uint32_t)st.st_mtim.tv_nsec;
	}
	if ((rc = git_index_open(&t.cache, op->cache)) < 0) {
		/* A damaged cache only costs reading everything again. */
		git_error_clear();
		unlink(op->cache);
		rc = git_index_open(&t.cache, op->cache);
	}
	if (rc < 0 || (rc = git_index_open(&t.index, fresh)) < 0 ||
	    (rc = git_repository_odb(&t.odb, op->repo)) < 0) {
		rc = omni__git_fail(rc, "opening %s", op->cache);
		goto out;
	}
	if ((rc = omni__ws_scan(op->b, OMNI__SCAN_SKIP_GIT, &list)) < 0)
		goto out;
	for (size_t i = 0; i < list.count && rc == 0; i++)
		if (!S_ISDIR(list.items[i].st.st_mode))
			rc = add_to_tree(&t, &list.items[i]);
	if (rc < 0)
		goto out;
	if ((rc = git_index_write_tree_to(out, t.index, op->repo)) < 0) {
		rc = omni__git_fail(rc, "writing the tree");
		goto out;
	}
	if (keep_cache) {
		if (git_index_write(t.index) < 0 ||
		    rename(fresh, op->cache) < 0) {
			/* Only a cache: the next save reads everything. */
			git_error_clear();
			unlink(fresh);
			unlink(op->cache);
		}
	}
	if (t.skipped)
		omni_log(OMNI_LOG_DEBUG,
		         "git state: %lld paths git cannot store "
		         "were left out",
		         t.skipped);
out:
	git_odb_free(t.odb);
	git_index_free(t.index);
	git_index_free(t.cache);
	unlink(fresh);
	omni__ws_list_finish(&list);
	return rc;
}

int omni__git_commit_tree(struct git_op *op, const git_oid *tree_oid,
                          const git_oid *const *parents, size_t nparents,
                          const char *message, git_oid *out)
{
	git_signature *sig = NULL;
	git_tree *tree = NULL;
	const git_commit *pc[2] = { NULL, NULL };
	git_commit *owned[2] = { NULL, NULL };
	int rc;

	if ((rc = git_signature_now(&sig, op->gs->author_name,
	                            op->gs->author_email)) < 0 ||
	    (rc = git_tree_lookup(&tree, op->repo, tree_oid)) < 0) {
		rc = omni__git_fail(rc, "preparing the commit");
		goto out;
	}
	for (size_t i = 0; i < nparents && i < 2; i++) {
		if ((rc = git_commit_lookup(&owned[i], op->repo, parents[i])) <
		    0) {
			rc = omni__git_fail(rc, "reading the parent commit");
			goto out;
		}
		pc[i] = owned[i];
	}
	rc = git_commit_create(out, op->repo, NULL, sig, sig, NULL,
	                       message && *message ? message : "snapshot", tree,
	                       nparents, pc);
	if (rc < 0)
		rc = omni__git_fail(rc, "committing");
out:
	git_commit_free(owned[0]);
	git_commit_free(owned[1]);
	git_tree_free(tree);
	git_signature_free(sig);
	return rc;
}

/* The tree id of a commit. */
int omni__git_tree_of(struct git_op *op, const git_oid *commit, git_oid *out)
{
	git_commit *c = NULL;
	int rc = git_commit_lookup(&c, op->repo, commit);

	if (rc < 0)
		return omni__git_fail(rc, "reading commit");
	git_oid_cpy(out, git_commit_tree_id(c));
	git_commit_free(c);
	return 0;
}

/* --- tree -> workspace
 * ---------------------------------------------------------- */

/* Names a snapshot must never write: the agent's repositories are off
 * limits, whatever a remote tree says. */
static bool forbidden(const char *name)
{
	return strcasecmp(name, ".git") == 0;
}

static int apply_blob(struct tree_apply *ta, const char *path,
                      const git_tree_entry *te)
{
	git_filemode_t mode = git_tree_entry_filemode(te);
	const git_oid *oid = git_tree_entry_id(te);
	const struct stat *st = omni__apply_existing(ta->a, path);
	git_blob *blob = NULL;
	int rc;

	if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE &&
	    mode != GIT_FILEMODE_LINK)
		return 0; /* a submodule (gitlink): not ours to restore */
	/* Only 0644 and 0755 are restored; say so for what a crafted tree
	 * asked beyond them. */
	omni__restore_mode(path, git_tree_entry_filemode_raw(te) & 07777);
	if (st) {
		/* Unchanged since the cache saw it: leave it alone (and its
		 * mtime, which build tools watch). */
		git_index_entry ie;
		struct omni__ws_entry e = { .path = (char *)path, .st = *st };
		fill_entry(&ie, &e, mode);
		const git_index_entry *ce =
		    git_index_get_bypath(ta->cache, path, 0);
		if (ce && git_oid_equal(&ce->id, oid) && ce->mode == ie.mode &&
		    ce->file_size == ie.file_size &&
		    ce->mtime.seconds == ie.mtime.seconds &&
		    ce->mtime.nanoseconds == ie.mtime.nanoseconds) {
			omni__apply_keep(ta->a, path);
			return 0;
		}
	}
	if ((rc = git_blob_lookup(&blob, ta->op->repo, oid)) < 0)
		return omni__git_fail(rc, "reading %s", path);
	const char *data = git_blob_rawcontent(blob);
	size_t len = (size_t)git_blob_rawsize(blob);
	if (mode == GIT_FILEMODE_LINK) {
		char target[PATH_MAX];
		if (len >= sizeof(target) || memchr(data, '\0', len)) {
			git_blob_free(blob);
			return omni_error_set(-EINVAL,
			                      "git state: %s: bad link", path);
		}
		memcpy(target, data, len);
		target[len] = '\0';
		rc = omni__apply_symlink(ta->a, path, target);
	} else {
		struct omni__apply_file af;
		rc = omni__apply_file_open(
		    ta->a, &af, path,
		    mode == GIT_FILEMODE_BLOB_EXECUTABLE ? 0755 : 0644);
		if (rc == 0 &&
		    (rc = omni__apply_file_write(ta->a, &af, data, len)) < 0)
			omni__apply_file_abort(ta->a, &af);
		else if (rc == 0)
			rc = omni__apply_file_commit(ta->a, &af, -1, NULL);
		else if (rc > 0)
			rc = 0; /* a reserved name: skipped */
	}
	git_blob_free(blob);
	return rc;
}

int omni__git_apply_walk_cb(const char *root, const git_tree_entry *te,
                            void *payload)
{
	struct tree_apply *ta = payload;
	const char *name = git_tree_entry_name(te);
	char path[PATH_MAX];

	if (forbidden(name))
		return 1; /* skip (and do not descend) */
	if (snprintf(path, sizeof(path), "%s%s", root, name) >=
	        (int)sizeof(path) ||
	    !omni__snap_path_ok(path)) {
		ta->rc = omni_error_set(-EINVAL,
		                        "git state: unsafe name '%s%s' in the "
		                        "snapshot",
		                        root, name);
		return -1;
	}
	if (git_tree_entry_type(te) == GIT_OBJECT_TREE)
		ta->rc = omni__apply_dir(ta->a, path, 0);
	else if (git_tree_entry_type(te) == GIT_OBJECT_BLOB)
		ta->rc = apply_blob(ta, path, te);
	return ta->rc < 0 ? -1 : 0;
}

/* Make sure every object of the tree is here, and the tree within the
 * limits, before writing anything. */
int omni__git_check_tree_cb(const char *root, const git_tree_entry *te,
                            void *payload)
{
	struct tree_apply *ta = payload;
	git_object_t type;
	size_t len;

	if (forbidden(git_tree_entry_name(te)))
		return 1;
	if (git_tree_entry_type(te) != GIT_OBJECT_BLOB) {
		ta->rc = omni__limits_add(&ta->limits, 1, 0, ta->what);
		return ta->rc < 0 ? -1 : 0;
	}
	if (git_odb_read_header(&len, &type, ta->odb, git_tree_entry_id(te)) !=
	    0) {
		git_error_clear();
		ta->rc = omni_error_set(-EIO,
		                        "git state: the snapshot lacks the "
		                        "content of %s%s",
		                        root, git_tree_entry_name(te));
		return -1;
	}
	ta->rc =
	    omni__limits_add(&ta->limits, 1, (unsigned long long)len, ta->what);
	return ta->rc < 0 ? -1 : 0;
}

/* Fill the stat cache from what was just written, so the next save does
 * not read it all back. */
void omni__git_cache_after_load(struct git_op *op, git_tree *tree)
{
	struct omni__ws_list list = { 0 };
	git_index *index = NULL;
	git_odb *odb = NULL;
	char fresh[PATH_MAX + 8];

	snprintf(fresh, sizeof(fresh), "%s.new", op->cache);
	unlink(fresh);
	if (git_index_open(&index, fresh) < 0 ||
	    git_repository_odb(&odb, op->repo) < 0 ||
	    omni__ws_scan(op->b, OMNI__SCAN_SKIP_GIT, &list) < 0)
		goto out;
	for (size_t i = 0; i < list.count; i++) {
		const struct omni__ws_entry *e = &list.items[i];
		git_tree_entry *te = NULL;
		git_index_entry ie;
		size_t len;
		git_object_t type;

		if (S_ISDIR(e->st.st_mode) ||
		    git_tree_entry_bypath(&te, tree, e->path) < 0)
			continue;
		unsigned int mode = git_tree_entry_filemode(te);
		bool ok =
		    git_tree_entry_type(te) == GIT_OBJECT_BLOB &&
		    (S_ISLNK(e->st.st_mode) == (mode == GIT_FILEMODE_LINK)) &&
		    git_odb_read_header(&len, &type, odb,
		                        git_tree_entry_id(te)) == 0 &&
		    (long long)len == (long long)e->st.st_size;
		if (ok) {
			fill_entry(&ie, e, mode);
			git_oid_cpy(&ie.id, git_tree_entry_id(te));
			/* A refused entry only means one more read later. */
			git_index_add(index, &ie);
		}
		git_tree_entry_free(te);
	}
	if (git_index_write(index) == 0 && rename(fresh, op->cache) == 0)
		goto out;
	unlink(op->cache);
out:
	git_error_clear();
	omni_error_clear();
	unlink(fresh);
	git_odb_free(odb);
	git_index_free(index);
	omni__ws_list_finish(&list);
}

/* --- writing a tree into the workspace ------------------------------------ */

int omni__git_apply_begin(struct git_op *op, struct tree_apply *ta,
                          struct omni__apply *a, git_tree *tree,
                          const char *what)
{
	int rc;

	memset(ta, 0, sizeof(*ta));
	ta->op = op;
	ta->a = a;
	ta->what = what;
	if ((rc = omni__limits_init(&ta->limits)) < 0)
		return rc;
	if ((rc = git_repository_odb(&ta->odb, op->repo)) < 0)
		return omni__git_fail(rc, "opening the object store");
	if ((rc = git_tree_walk(tree, GIT_TREEWALK_PRE, omni__git_check_tree_cb,
	                        ta)) < 0)
		return ta->rc < 0 ? ta->rc
		                  : omni__git_fail(rc, "checking %s", what);
	return omni__apply_begin(a, op->b, OMNI__SCAN_SKIP_GIT, &op->progress,
	                         what);
}

int omni__git_apply_write(struct git_op *op, struct tree_apply *ta,
                          git_tree *tree, const char *hex)
{
	int rc;

	if ((rc = git_index_open(&ta->cache, op->cache)) < 0) {
		git_error_clear();
		unlink(op->cache);
		if ((rc = git_index_open(&ta->cache, op->cache)) < 0)
			return omni__git_fail(rc, "opening %s", op->cache);
	}
	rc = git_tree_walk(tree, GIT_TREEWALK_PRE, omni__git_apply_walk_cb, ta);
	git_index_free(ta->cache);
	ta->cache = NULL;
	if (rc < 0)
		return ta->rc < 0 ? ta->rc
		                  : omni__git_fail(rc, "loading %.12s", hex);
	if ((rc = omni__apply_finish(ta->a)) < 0)
		return rc;
	omni__git_cache_after_load(op, tree);
	return 0;
}
