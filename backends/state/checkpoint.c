/*
 * backends/state/checkpoint.c - checkpoints and rollback in the local
 * history store (see checkpoint.h).
 *
 * Design. The git state manager's operation (state_git.h: the store, its
 * flock, the stat cache, tree building and tree writing) does the work,
 * with a manager of its own here (no remote, author "omnifs"): so the
 * session's own manager, git or not, is not involved, and a remote
 * manager still saves at unmount as before. The checkpoints form a chain
 * on refs/omnifs/checkpoints/<branch>; each commit message ends with a
 * line "omnifs-time-ms: N", the moment in the journal's clock, so that
 * the list can ask the journal what happened between two checkpoints.
 *
 * Locking: the store's flock (one operation at a time, across processes,
 * with the git manager's own saves); the caller keeps commands from
 * running during a rollback (fs/checkpoint.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <git2.h>

#include "journal/hook.h"
#include "journal/journal.h"
#include "omni/error.h"
#include "omni/sys/backend_impl.h"
#include "state/checkpoint.h"
#include "state/state_git.h"

#define TIME_TRAILER "omnifs-time-ms: "

struct cp {
	struct git_state gs;
	struct git_op op;
	char ref[OMNI__GIT_REF_MAX + 32];
	bool begun;
};

static int cp_begin(struct cp *c, struct omni_backend *b, const char *what)
{
	int rc;

	memset(c, 0, sizeof(*c));
	if (git_libgit2_init() < 0)
		return omni_error_set(-EIO, "checkpoint: libgit2 failed to "
		                            "initialise");
	c->gs.prefix = (char *)"state/";
	c->gs.author_name = (char *)"omnifs";
	c->gs.author_email = (char *)"omnifs@localhost";
	if ((rc = omni__git_op_begin(&c->op, &c->gs, b, what)) < 0) {
		git_libgit2_shutdown();
		return rc;
	}
	c->begun = true;
	snprintf(c->ref, sizeof(c->ref), "refs/omnifs/checkpoints/%s",
	         c->op.branch);
	return 0;
}

static void cp_end(struct cp *c)
{
	if (!c->begun)
		return;
	omni__git_op_end(&c->op);
	git_libgit2_shutdown();
	c->begun = false;
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Commit the workspace onto the chain; hex gets the id (12 digits). */
static int commit_workspace(struct cp *c, const char *message, git_oid *out,
                            char hex[13])
{
	git_oid tree, prev;
	bool have_prev;
	char *full = NULL;
	int rc;

	if ((rc = omni__git_build_tree(&c->op, &tree, true)) < 0 ||
	    (rc = omni__git_lookup_ref(&c->op, c->ref, &prev, &have_prev)) < 0)
		return rc;
	if (asprintf(&full, "%s\n\n" TIME_TRAILER "%lld\n",
	             message && *message ? message : "checkpoint",
	             now_ms()) < 0)
		return omni_error_set(-ENOMEM, "checkpoint: out of memory");
	const git_oid *parents[] = { &prev };
	rc = omni__git_commit_tree(&c->op, &tree, parents, have_prev ? 1 : 0,
	                           full, out);
	free(full);
	if (rc == 0)
		rc = omni__git_set_ref(&c->op, c->ref, out,
		                       "omnifs: checkpoint");
	git_oid_tostr(hex, 13, out);
	return rc;
}

int omni__checkpoint_create(struct omni_backend *b, const char *message,
                            char **id_out)
{
	struct cp c;
	git_oid oid;
	char hex[13];
	int rc;

	*id_out = NULL;
	if ((rc = cp_begin(&c, b, "checkpoint")) < 0)
		return rc;
	rc = commit_workspace(&c, message, &oid, hex);
	cp_end(&c);
	if (rc == 0 && !(*id_out = strdup(hex)))
		rc = omni_error_set(-ENOMEM, "checkpoint: out of memory");
	return rc;
}

/* --- the list ------------------------------------------------------------- */

static long long commit_ms(const git_commit *commit)
{
	const char *msg = git_commit_message(commit);
	const char *t = msg ? strstr(msg, TIME_TRAILER) : NULL;

	if (t)
		return strtoll(t + strlen(TIME_TRAILER), NULL, 10);
	return (long long)git_commit_time(commit) * 1000;
}

/* The first line of the message. */
static void subject(const git_commit *commit, char *out, size_t size)
{
	const char *msg = git_commit_message(commit);
	size_t n = msg ? strcspn(msg, "\n") : 0;

	snprintf(out, size, "%.*s", (int)(n < size ? n : size - 1),
	         msg ? msg : "");
}

struct entry {
	char hex[13];
	char subject[200];
	long long ms;
};

static int collect(struct cp *c, struct entry **out, size_t *count)
{
	git_oid oid;
	bool found;
	git_commit *commit = NULL;
	size_t cap = 0;
	int rc;

	*out = NULL;
	*count = 0;
	if ((rc = omni__git_lookup_ref(&c->op, c->ref, &oid, &found)) < 0 ||
	    !found)
		return rc;
	while (git_commit_lookup(&commit, c->op.repo, &oid) == 0) {
		if (*count == cap) {
			cap = cap ? cap * 2 : 32;
			struct entry *e = realloc(*out, cap * sizeof(*e));
			if (!e) {
				git_commit_free(commit);
				return omni_error_set(-ENOMEM, "out of memory");
			}
			*out = e;
		}
		struct entry *e = &(*out)[(*count)++];
		git_oid_tostr(e->hex, sizeof(e->hex), &oid);
		subject(commit, e->subject, sizeof(e->subject));
		e->ms = commit_ms(commit);
		bool more = git_commit_parentcount(commit) > 0;
		if (more)
			git_oid_cpy(&oid, git_commit_parent_id(commit, 0));
		git_commit_free(commit);
		commit = NULL;
		if (!more)
			break;
	}
	git_error_clear();
	return 0;
}

static void format_entry(FILE *f, const struct entry *e, long long from_ms,
                         const char *journal)
{
	char when[32], summary[256];
	time_t t = (time_t)(e->ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (omni__journal_summary(journal, from_ms, e->ms, summary,
	                          sizeof(summary)) < 0)
		snprintf(summary, sizeof(summary), "no journal");
	fprintf(f, "%s  %s  %s\n    since %s: %s\n", e->hex, when, e->subject,
	        from_ms ? "the one before" : "the start", summary);
}

int omni__checkpoint_list(struct omni_backend *b, char **text_out)
{
	struct entry *list = NULL;
	size_t count = 0, len = 0;
	char journal[PATH_MAX];
	struct cp c;
	FILE *f;
	int rc;

	*text_out = NULL;
	if ((rc = cp_begin(&c, b, "checkpoints")) < 0)
		return rc;
	rc = collect(&c, &list, &count);
	cp_end(&c);
	if (rc < 0)
		return rc;
	if (omni__journal_path(b->opts.data_path, b->project_id, journal,
	                       sizeof(journal)) < 0)
		journal[0] = '\0';
	if (!(f = open_memstream(text_out, &len))) {
		free(list);
		return omni_error_set(-ENOMEM, "out of memory");
	}
	if (!count)
		fputs("no checkpoints\n", f);
	for (size_t i = 0; i < count; i++)
		format_entry(f, &list[i], i + 1 < count ? list[i + 1].ms : 0,
		             journal);
	fclose(f);
	free(list);
	return *text_out ? 0 : omni_error_set(-ENOMEM, "out of memory");
}

/* --- rollback ------------------------------------------------------------- */

static int find_checkpoint(struct cp *c, const char *id, git_commit **out)
{
	git_object *obj = NULL;
	int rc;

	if (!id || strlen(id) < 4 ||
	    strspn(id, "0123456789abcdef") != strlen(id))
		return omni_error_set(
		    -EINVAL,
		    "checkpoint '%s': give 4 to 40 hex digits "
		    "of its id (omni-exec --checkpoints)",
		    id ? id : "");
	rc = git_revparse_single(&obj, c->op.repo, id);
	if (rc == 0)
		rc =
		    git_object_peel((git_object **)out, obj, GIT_OBJECT_COMMIT);
	git_object_free(obj);
	if (rc < 0) {
		git_error_clear();
		return omni_error_set(-ENOENT, "no checkpoint '%s'", id);
	}
	return 0;
}

/* The paths of a tree the workspace lacks (before the write). */
struct added {
	struct omni__apply *a;
	char **paths;
	size_t count, cap;
	bool oom;
};

static int note_added(const char *root, const git_tree_entry *te, void *payload)
{
	struct added *ad = payload;
	char *path;

	if (asprintf(&path, "%s%s", root, git_tree_entry_name(te)) < 0) {
		ad->oom = true;
		return -1;
	}
	if (omni__apply_existing(ad->a, path)) {
		free(path);
		return 0;
	}
	if (ad->count == ad->cap) {
		size_t cap = ad->cap ? ad->cap * 2 : 64;
		char **p = realloc(ad->paths, cap * sizeof(*p));
		if (!p) {
			free(path);
			ad->oom = true;
			return -1;
		}
		ad->paths = p;
		ad->cap = cap;
	}
	ad->paths[ad->count++] = path;
	/* Below a new directory, everything is new: its name is enough. */
	return git_tree_entry_type(te) == GIT_OBJECT_TREE ? 1 : 0;
}

static void added_free(struct added *ad)
{
	for (size_t i = 0; i < ad->count; i++)
		free(ad->paths[i]);
	free(ad->paths);
}

/* Write tree into the workspace; its journal records this one line. */
static int write_tree(struct cp *c, git_tree *tree, const char *hex,
                      struct added *ad)
{
	struct tree_apply ta;
	struct omni__apply a;
	char what[64];
	int rc;

	snprintf(what, sizeof(what), "checkpoint %s", hex);
	omni__journal_quiet(true);
	rc = omni__git_apply_begin(&c->op, &ta, &a, tree, what);
	if (rc == 0) {
		ad->a = &a;
		if (git_tree_walk(tree, GIT_TREEWALK_PRE, note_added, ad) < 0) {
			git_error_clear();
			if (ad->oom)
				rc = omni_error_set(-ENOMEM, "out of memory");
		}
		if (rc == 0)
			rc = omni__git_apply_write(&c->op, &ta, tree, hex);
		omni__apply_cleanup(&a);
	}
	git_odb_free(ta.odb);
	omni__journal_quiet(false);
	struct omni__journal_op rec = { "rollback", hex, NULL, -1,
		                        -1,         -1,  -1,   rc };
	omni__journal_record_op(omni__journal_of(c->op.b), &rec);
	return rc;
}

int omni__checkpoint_rollback(struct omni_backend *b, const char *id,
                              char **text_out)
{
	return omni__checkpoint_rollback_cb(b, id, NULL, NULL, text_out);
}

int omni__checkpoint_rollback_cb(struct omni_backend *b, const char *id,
                                 omni__checkpoint_new_cb added, void *payload,
                                 char **text_out)
{
	struct added ad = { 0 };
	git_commit *target = NULL;
	git_tree *tree = NULL;
	git_oid before;
	char hex[13], before_hex[13], msg[96];
	struct cp c;
	int rc;

	*text_out = NULL;
	if ((rc = cp_begin(&c, b, "rollback")) < 0)
		return rc;
	if ((rc = find_checkpoint(&c, id, &target)) < 0)
		goto out;
	git_oid_tostr(hex, sizeof(hex), git_commit_id(target));
	if ((rc = git_commit_tree(&tree, target)) < 0) {
		rc = omni__git_fail(rc, "reading checkpoint %s", hex);
		goto out;
	}
	snprintf(msg, sizeof(msg), "before rollback to %s", hex);
	if ((rc = commit_workspace(&c, msg, &before, before_hex)) < 0 ||
	    (rc = write_tree(&c, tree, hex, &ad)) < 0)
		goto out;
	for (size_t i = 0; added && i < ad.count; i++)
		added(ad.paths[i], payload);
	if (asprintf(text_out,
	             "rolled back to %s (the workspace before is "
	             "checkpoint %s)",
	             hex, before_hex) < 0)
		rc = omni_error_set(-ENOMEM, "out of memory");
out:
	added_free(&ad);
	git_tree_free(tree);
	git_commit_free(target);
	cp_end(&c);
	return rc;
}

/* --- fork ----------------------------------------------------------------- */

/* The commit to fork from in src: id, else the newest checkpoint of
 * project from, else its newest save. */
static int fork_source(git_repository *src, const char *from, const char *id,
                       git_commit **out)
{
	static const char *const kinds[] = { "refs/omnifs/checkpoints/%s",
		                             "refs/heads/%s" };
	char branch[OMNI__GIT_REF_MAX], ref[OMNI__GIT_REF_MAX + 32];
	git_object *obj = NULL;
	git_oid oid;
	int rc;

	if (id) {
		rc = git_revparse_single(&obj, src, id);
		if (rc == 0)
			rc = git_object_peel((git_object **)out, obj,
			                     GIT_OBJECT_COMMIT);
		git_object_free(obj);
		if (rc < 0) {
			git_error_clear();
			return omni_error_set(-ENOENT,
			                      "project '%s' has no "
			                      "checkpoint '%s'",
			                      from, id);
		}
		return 0;
	}
	if ((rc = omni__git_branch_name("state/", from, branch,
	                                sizeof(branch))) < 0)
		return rc;
	for (size_t i = 0; i < 2; i++) {
		snprintf(ref, sizeof(ref), kinds[i], branch);
		if (git_reference_name_to_id(&oid, src, ref) == 0 &&
		    git_commit_lookup(out, src, &oid) == 0)
			return 0;
		git_error_clear();
	}
	return omni_error_set(-ENOENT,
	                      "project '%s' has no checkpoint and no "
	                      "snapshot to fork from",
	                      from);
}

/* Write the tree of commit (in src) into the empty workspace of c. */
static int fork_write(struct cp *c, git_repository *src, git_commit *commit,
                      const char *hex)
{
	struct tree_apply ta;
	struct omni__apply a;
	git_repository *own = c->op.repo;
	git_tree *tree = NULL;
	char what[96];
	int rc;

	if ((rc = git_commit_tree(&tree, commit)) < 0)
		return omni__git_fail(rc, "reading %s", hex);
	snprintf(what, sizeof(what), "fork of %s", hex);
	/* The blobs are read from the source's store; the stat cache the
	 * write fills is this project's, and is dropped after: it would
	 * name blobs this store lacks. */
	c->op.repo = src;
	omni__journal_quiet(true);
	rc = omni__git_apply_begin(&c->op, &ta, &a, tree, what);
	if (rc == 0) {
		if (!omni__apply_workspace_empty(&a))
			rc = omni_error_set(
			    -EEXIST,
			    "the workspace of '%s' is not empty: "
			    "a fork starts a new project",
			    c->op.b->project_id);
		else
			rc = omni__git_apply_write(&c->op, &ta, tree, hex);
		omni__apply_cleanup(&a);
	}
	git_odb_free(ta.odb);
	omni__journal_quiet(false);
	c->op.repo = own;
	unlink(c->op.cache);
	git_tree_free(tree);
	return rc;
}

int omni__checkpoint_fork(struct omni_backend *b, const char *from,
                          const char *checkpoint, char **text_out)
{
	char path[PATH_MAX], hex[13], new_hex[13], msg[OMNI__GIT_REF_MAX];
	git_repository *src = NULL;
	git_commit *commit = NULL;
	git_oid oid;
	struct cp c;
	int rc;

	*text_out = NULL;
	if (strcmp(from, b->project_id) == 0)
		return omni_error_set(-EINVAL, "a project cannot be forked "
		                               "into itself");
	if ((rc = cp_begin(&c, b, "fork")) < 0)
		return rc;
	rc = snprintf(path, sizeof(path), "%s/%s.git", c.op.dir, from);
	if (rc < 0 || (size_t)rc >= sizeof(path)) {
		rc = omni_error_set(-ENAMETOOLONG, "fork: path too long");
		goto out;
	}
	if ((rc = git_repository_open_bare(&src, path)) < 0) {
		git_error_clear();
		rc = omni_error_set(-ENOENT,
		                    "project '%s' has no history in %s "
		                    "(make a checkpoint of it first)",
		                    from, c.op.dir);
		goto out;
	}
	if ((rc = fork_source(src, from, checkpoint, &commit)) < 0)
		goto out;
	git_oid_tostr(hex, sizeof(hex), git_commit_id(commit));
	if ((rc = fork_write(&c, src, commit, hex)) < 0)
		goto out;
	snprintf(msg, sizeof(msg), "forked from %s@%s", from, hex);
	if ((rc = commit_workspace(&c, msg, &oid, new_hex)) < 0)
		goto out;
	if (asprintf(text_out, "%s (checkpoint %s)", msg, new_hex) < 0)
		rc = omni_error_set(-ENOMEM, "out of memory");
out:
	git_commit_free(commit);
	git_repository_free(src);
	cp_end(&c);
	return rc;
}
