/*
 * backends/state/state_git.c - the "git" state manager: workspace snapshots as
 *commits on branch state/<project_id> of a git remote, through libgit2 1.5.
 *
 * USAGE
 *	struct omni_state_git_options o = OMNI_STATE_GIT_OPTIONS_INIT;
 *	o.remote = "owner/repo";         (or $OMNIAGENTS_GITHUB_STATE_REPO)
 *	omni_state_git(&st, &o);
 *	omnifs --state git ...  /  --state git:https://host/repo.git
 *	Tokens come from $OMNIAGENTS_GITHUB_API_KEY or $GITHUB_TOKEN (https,
 *	user "x-access-token"); ssh uses the agent ($SSH_AUTH_SOCK), then
 *	$OMNIAGENTS_GIT_SSH_KEY, ~/.ssh/id_ed25519, id_ecdsa, id_rsa, and
 *	checks host keys against ~/.ssh/known_hosts (libgit2's default).
 *
 * DESIGN
 *	History lives in a bare repository beside the workspaces,
 *	<state_dir>/<project>.git (state_dir defaults to
 *	<data>/.omnifs-state), never inside the workspace: the workspace is
 *	not attached to it as a work tree at all. Files are read and written
 *	only through the backend operations (omni/vfs.h), so the same code
 *	serves a host directory, a container and a remote sandbox. Blobs are
 *	made from what the operations read, trees from an index built in
 *	memory (git_index_write_tree_to), and a load writes a tree back
 *	through snapshot_apply.c (temporary names and renames).
 *
 *	References in the store, for branch B = state/<id>:
 *	  refs/heads/B              the newest snapshot of this data folder
 *	  refs/omnifs/fetched/B     the remote's B as just fetched (deleted
 *	                            before each fetch, so it is absent exactly
 *	                            when the remote has no B)
 *	  refs/omnifs/pushed/B      the last commit known to be on the remote
 *	  refs/omnifs/backup/B      workspaces a load replaced (a chain)
 *	  refs/omnifs/kept/B/<sha>  a local snapshot the remote's diverged from
 *	<store>/omnifs-index is a git index used only as a stat cache: a file
 *	whose size, mtime, inode and mode match its entry (and whose mtime is
 *	older than the cache, git's "racy" rule) is not read again. This
 *	matters most for remote sandboxes, where each read is a round trip.
 *
 *	save  = scan (snapshot_scan.c: ignore rules, anything named .git is
 *	        skipped) -> blobs and tree -> commit on refs/heads/B when
 *	        the tree differs from its parent's -> when the remote lacks
 *	        it: fetch B, and if B moved on meanwhile (a save from another
 *	        data folder) commit our tree again with B's tip as second
 *	        parent, so nothing leaves the remote's history -> forced push
 *	        of B. A push that fails leaves the commit in the store; the
 *	        next save pushes it (even with nothing new). The workspace is
 *	        only read.
 *	load  = fetch B -> pick the tip: the remote's, or the local one when
 *	        it is the same or a descendant (a snapshot not pushed yet) ->
 *	        when that tip is refs/heads/B and the workspace is not empty,
 *	        the workspace was saved or loaded here as that snapshot and is
 *	        at least as new: nothing is written. Otherwise a non-empty
 *	        workspace that differs from the tip is first committed to
 *	        refs/omnifs/backup/B (never lost), the tip's objects are all
 *	        local by then, and the tree is written. A missing remote
 *	        branch is a new project (0); a fetch that fails is an error
 *	        and nothing is written.
 *	list  = fetch, then the history of the tip, newest first.
 *	cleanup = delete B on the remote (an empty push), then the store.
 *	Pushes are forced, as the documented Python manager does: the last
 *	data folder to save wins the branch's content, while what others
 *	saved stays in its history (second parents). libgit2 1.5 cannot
 *	fetch shallow, so a fresh data folder downloads the branch's whole
 *	history.
 *
 * ERRORS
 *	omni__git_to_errno() maps libgit2 codes (table in state_git.h); the
 *	message carries git_error_last() with the branch and remote. A
 *	refused push (push_update_reference status, e.g. a pre-receive hook)
 *	is -EPERM with the server's reason and the "remote:" lines it sent.
 *	The credentials callback gives up after one try of each kind (libgit2
 *	would ask again forever) with a message naming the variables.
 *
 * LOCKING
 *	libgit2 objects never leave one operation, and every operation holds
 *	the manager's mutex for its whole length (libgit2 docs/threading.md:
 *	no object used by two threads at once), plus an exclusive flock on
 *	<state_dir>/<project>.lock against other processes (snapshot.c).
 *
 * FILES
 *	state_git.c   the manager: one operation, the choice of a tip, save,
 *	              load, list, cleanup, life cycle (this file)
 *	git_remote.c  remote URLs, branch names, libgit2 errors as errno,
 *	              credentials, fetch and push
 *	git_tree.c    workspace -> tree (with the stat cache), commits,
 *	              tree -> workspace
 *	state_git.h   what they share
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/sys/state_impl.h"
#include "state/snapshot.h"
#include "state/state_git.h"

#define LOCK_TIMEOUT_S 600

/* --- errors
 * ------------------------------------------------------------------- */

/* Turn the last libgit2 failure into -errno and a message. */

int omni__git_fail(int rc, const char *fmt, ...)
{
	const git_error *e = git_error_last();
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	int err = omni__git_to_errno(rc, e ? e->klass : 0,
	                             e && e->message ? e->message : "");
	return omni_error_set(err, "git state: %s: %s", what,
	                      e && e->message ? e->message : "libgit2 failed");
}

/* --- one operation
 * ------------------------------------------------------------ */

static int refname(char *out, const char *fmt, const char *branch)
{
	int n = snprintf(out, OMNI__GIT_REF_MAX, fmt, branch);

	if (n < 0 || n >= OMNI__GIT_REF_MAX)
		return omni_error_set(-ENAMETOOLONG, "git state: ref too long");
	return 0;
}

static int path_in(char *out, const char *dir, const char *fmt,
                   const char *name)
{
	char tail[PATH_MAX];
	int n = snprintf(tail, sizeof(tail), fmt, name);

	if (n < 0 || (size_t)n >= sizeof(tail) ||
	    snprintf(out, PATH_MAX, "%s/%s", dir, tail) >= PATH_MAX)
		return omni_error_set(-ENAMETOOLONG,
		                      "git state: path too long");
	return 0;
}

void omni__git_op_end(struct git_op *op)
{
	git_repository_free(op->repo);
	op->repo = NULL;
	omni__state_unlock(op->lock_fd);
	op->lock_fd = -1;
}

static int open_store(struct git_op *op)
{
	git_repository_init_options io;
	int rc = git_repository_open_bare(&op->repo, op->store);

	if (rc == GIT_ENOTFOUND) {
		git_error_clear();
		git_repository_init_options_init(
		    &io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
		io.flags =
		    GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
		rc = git_repository_init_ext(&op->repo, op->store, &io);
	}
	if (rc < 0)
		return omni__git_fail(rc, "opening the local history %s",
		                      op->store);
	return 0;
}

int omni__git_op_begin(struct git_op *op, struct git_state *gs,
                       struct omni_backend *b, const char *what)
{
	const char *project = omni_backend_project_id(b);
	char lock[PATH_MAX];
	int rc;

	memset(op, 0, sizeof(*op));
	op->gs = gs;
	op->b = b;
	op->lock_fd = -1;
	omni__progress_start(&op->progress, false, "%s", what);
	if (strcmp(project, ".omnifs-state") == 0)
		return omni_error_set(-EINVAL,
		                      "git state: project id '%s' is "
		                      "reserved",
		                      project);
	if ((rc = omni__git_branch_name(gs->prefix, project, op->branch,
	                                sizeof(op->branch))) < 0 ||
	    (rc = refname(op->ref_head, "refs/heads/%s", op->branch)) < 0 ||
	    (rc = refname(op->ref_fetched, "refs/omnifs/fetched/%s",
	                  op->branch)) < 0 ||
	    (rc = refname(op->ref_pushed, "refs/omnifs/pushed/%s",
	                  op->branch)) < 0 ||
	    (rc = refname(op->ref_backup, "refs/omnifs/backup/%s",
	                  op->branch)) < 0)
		return rc;
	if ((rc = omni__state_dir(b, gs->state_dir, op->dir, sizeof(op->dir))) <
	        0 ||
	    (rc = path_in(op->store, op->dir, "%s.git", project)) < 0 ||
	    (rc = path_in(op->cache, op->store, "%s", "omnifs-index")) < 0 ||
	    (rc = path_in(lock, op->dir, "%s.lock", project)) < 0)
		return rc;
	if ((rc = omni__state_lock(lock, LOCK_TIMEOUT_S, "git state",
	                           &op->lock_fd)) < 0)
		return rc;
	if ((rc = open_store(op)) < 0) {
		omni__git_op_end(op);
		return rc;
	}
	return 0;
}

int omni__git_lookup_ref(struct git_op *op, const char *ref, git_oid *out,
                         bool *found)
{
	int rc = git_reference_name_to_id(out, op->repo, ref);

	*found = rc == 0;
	if (rc == GIT_ENOTFOUND) {
		git_error_clear();
		return 0;
	}
	if (rc < 0)
		return omni__git_fail(rc, "reading %s in %s", ref, op->store);
	return 0;
}

int omni__git_set_ref(struct git_op *op, const char *ref, const git_oid *oid,
                      const char *log)
{
	git_reference *r = NULL;
	int rc = git_reference_create(&r, op->repo, ref, oid, 1, log);

	git_reference_free(r);
	if (rc < 0)
		return omni__git_fail(rc, "updating %s in %s", ref, op->store);
	return 0;
}

/* --- the choice of a tip
 * ----------------------------------------------------------- */

struct tip {
	bool found; /* there is a snapshot at all */
	git_oid oid;
	bool is_local; /* it is refs/heads/B */
	bool have_local, have_remote;
	git_oid local, remote;
};

/* Fetch, then decide which commit is the project's newest snapshot. */
static int pick_tip(struct git_op *op, struct tip *t)
{
	int rc;

	memset(t, 0, sizeof(*t));
	if ((rc = omni__git_fetch(op, &t->remote, &t->have_remote)) < 0 ||
	    (rc = omni__git_lookup_ref(op, op->ref_head, &t->local,
	                               &t->have_local)) < 0)
		return rc;
	if (t->have_remote &&
	    (rc = omni__git_set_ref(op, op->ref_pushed, &t->remote,
	                            "omnifs: fetched")) < 0)
		return rc;
	if (t->have_local && t->have_remote) {
		int desc = git_oid_equal(&t->local, &t->remote)
		               ? 1
		               : git_graph_descendant_of(op->repo, &t->local,
		                                         &t->remote);
		if (desc < 0)
			return omni__git_fail(desc, "comparing histories");
		t->is_local = desc == 1;
	} else {
		t->is_local = t->have_local;
	}
	t->found = t->have_local || t->have_remote;
	git_oid_cpy(&t->oid, t->is_local ? &t->local : &t->remote);
	return 0;
}

/* --- the manager
 * ----------------------------------------------------------------- */

static struct git_state *git_of(struct omni_state *st)
{
	return (struct git_state *)st;
}

/*
 * The remote's branch moved on since this data folder last saw it (a
 * save from elsewhere): keep that snapshot in the history as a second
 * parent of a commit with our tree, so the forced push drops nothing.
 */
static int adopt_remote(struct git_op *op, git_oid *head)
{
	git_oid remote, tree;
	git_commit *c = NULL;
	bool found;
	int rc;

	if ((rc = omni__git_fetch(op, &remote, &found)) < 0 || !found ||
	    git_oid_equal(&remote, head))
		return rc;
	int desc = git_graph_descendant_of(op->repo, head, &remote);
	if (desc < 0)
		return omni__git_fail(desc, "comparing histories");
	if (desc == 1)
		return 0;
	if ((rc = git_commit_lookup(&c, op->repo, head)) < 0)
		return omni__git_fail(rc, "reading the snapshot");
	git_oid_cpy(&tree, git_commit_tree_id(c));
	char *message = strdup(git_commit_message(c));
	git_commit_free(c);
	if (!message)
		return omni_error_set(-ENOMEM, "git state: out of memory");
	const git_oid *parents[] = { head, &remote };
	git_oid merged;
	rc = omni__git_commit_tree(op, &tree, parents, 2, message, &merged);
	free(message);
	if (rc < 0 || (rc = omni__git_set_ref(op, op->ref_head, &merged,
	                                      "omnifs: save")) < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG,
	         "git state: %s had a snapshot saved "
	         "elsewhere; it stays in the history",
	         op->branch);
	git_oid_cpy(head, &merged);
	return 0;
}

static int git_save(struct omni_state *st, struct omni_backend *b,
                    const char *message, char **id_out)
{
	struct git_state *gs = git_of(st);
	struct git_op op;
	git_oid tree, head = { { 0 } }, pushed, parent_tree;
	bool have_head, have_pushed, changed = true, sent = false;
	char hex[GIT_OID_HEXSZ + 1];
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = omni__git_op_begin(&op, gs, b, "save")) < 0)
		goto unlock;
	omni__progress_start(&op.progress, b->opts.progress,
	                     "saving snapshot to git");
	if ((rc = omni__git_build_tree(&op, &tree, true)) < 0 ||
	    (rc = omni__git_lookup_ref(&op, op.ref_head, &head, &have_head)) <
	        0)
		goto out;
	if (have_head) {
		if ((rc = omni__git_tree_of(&op, &head, &parent_tree)) < 0)
			goto out;
		changed = !git_oid_equal(&tree, &parent_tree);
	}
	if (changed) {
		/* Committed locally first: whatever happens to the push,
		 * the snapshot is kept. */
		const git_oid *parents[] = { &head };
		git_oid commit;
		if ((rc = omni__git_commit_tree(&op, &tree, parents,
		                                have_head ? 1 : 0, message,
		                                &commit)) < 0 ||
		    (rc = omni__git_set_ref(&op, op.ref_head, &commit,
		                            "omnifs: save")) < 0)
			goto out;
		git_oid_cpy(&head, &commit);
		have_head = true;
	}
	if ((rc = omni__git_lookup_ref(&op, op.ref_pushed, &pushed,
	                               &have_pushed)) < 0)
		goto out;
	if (have_head && (!have_pushed || !git_oid_equal(&pushed, &head))) {
		char spec[3 * OMNI__GIT_REF_MAX];
		long long files = op.progress.files, bytes = op.progress.bytes;

		snprintf(spec, sizeof(spec), "+%s:%s", op.ref_head,
		         op.ref_head);
		op.progress.files = op.progress.bytes = 0;
		op.progress.unit = "object";
		snprintf(op.progress.what, sizeof(op.progress.what),
		         "pushing %.120s", op.branch);
		rc = adopt_remote(&op, &head);
		if (rc == 0)
			rc = omni__git_push(&op, spec);
		op.progress.files = files;
		op.progress.bytes = bytes;
		op.progress.unit = "file";
		git_oid_tostr(hex, sizeof(hex), &head);
		if (rc < 0) {
			rc =
			    omni_error_set(rc,
			                   "%s; the snapshot is kept as commit "
			                   "%.12s in %s and will be pushed by "
			                   "the next save",
			                   omni_error_last(), hex, op.store);
			goto out;
		}
		if ((rc = omni__git_set_ref(&op, op.ref_pushed, &head,
		                            "omnifs: pushed")) < 0)
			goto out;
		sent = true;
	}
	git_oid_tostr(hex, sizeof(hex), &head);
	if (id_out && (changed || sent) && !(*id_out = strdup(hex)))
		rc = omni_error_set(-ENOMEM, "git state: out of memory");
	if (changed || sent)
		omni__progress_done(&op.progress, "saved snapshot %.12s to %s",
		                    hex, op.branch);
	else
		omni__progress_done(&op.progress,
		                    "nothing changed since "
		                    "snapshot %.12s",
		                    hex);
	omni_log(OMNI_LOG_DEBUG, "git state: save %s: %s", op.branch,
	         changed ? "committed"
	         : sent  ? "pushed"
	                 : "unchanged");
out:
	omni__progress_done(&op.progress, NULL);
	omni__git_op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

/* Commit the workspace to the backup chain before a load replaces it.
 * *same says the workspace already holds exactly the tip's tree. */
static int backup_workspace(struct git_op *op, const git_oid *tip_tree,
                            bool *same)
{
	git_oid tree, prev, commit;
	bool have_prev;
	int rc;

	*same = false;
	if ((rc = omni__git_build_tree(op, &tree, true)) < 0)
		return rc;
	if (git_oid_equal(&tree, tip_tree)) {
		*same = true;
		return 0;
	}
	if ((rc = omni__git_lookup_ref(op, op->ref_backup, &prev, &have_prev)) <
	    0)
		return rc;
	const git_oid *parents[] = { &prev };
	if ((rc = omni__git_commit_tree(op, &tree, parents, have_prev ? 1 : 0,
	                                "workspace replaced by a load",
	                                &commit)) < 0 ||
	    (rc = omni__git_set_ref(op, op->ref_backup, &commit,
	                            "omnifs: backup")) < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG,
	         "git state: the workspace was kept as %s in %s",
	         op->ref_backup, op->store);
	return 0;
}

/* The local snapshot is not part of the tip's history: keep it. */
static int keep_local(struct git_op *op, const struct tip *t)
{
	char ref[2 * OMNI__GIT_REF_MAX], hex[GIT_OID_HEXSZ + 1];

	if (!t->have_local || t->is_local)
		return 0;
	int desc = git_graph_descendant_of(op->repo, &t->remote, &t->local);
	if (desc < 0)
		return omni__git_fail(desc, "comparing histories");
	if (desc == 1)
		return 0;
	git_oid_tostr(hex, sizeof(hex), &t->local);
	snprintf(ref, sizeof(ref), "refs/omnifs/kept/%s/%s", op->branch, hex);
	return omni__git_set_ref(op, ref, &t->local,
	                         "omnifs: diverged from the remote");
}

static int git_load(struct omni_state *st, struct omni_backend *b)
{
	struct git_state *gs = git_of(st);
	struct tree_apply ta = { 0 };
	struct omni__apply a;
	struct git_op op;
	struct tip t;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	bool applying = false, same = false;
	char hex[GIT_OID_HEXSZ + 1], what[OMNI__GIT_REF_MAX + 64];
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = omni__git_op_begin(&op, gs, b, "load")) < 0)
		goto unlock;
	omni__progress_start(&op.progress, b->opts.progress, "fetching %s",
	                     op.branch);
	op.progress.unit = "object";
	if ((rc = pick_tip(&op, &t)) < 0)
		goto out;
	omni__progress_done(&op.progress, NULL);
	if (!t.found) {
		omni_log(OMNI_LOG_DEBUG, "git state: %s has no branch %s yet",
		         gs->remote, op.branch);
		rc = 0;
		goto out;
	}
	git_oid_tostr(hex, sizeof(hex), &t.oid);
	if ((rc = git_commit_lookup(&commit, op.repo, &t.oid)) < 0 ||
	    (rc = git_commit_tree(&tree, commit)) < 0) {
		rc = omni__git_fail(rc, "reading snapshot %.12s", hex);
		goto out;
	}
	snprintf(what, sizeof(what), "git state: %.12s on %s", hex, op.branch);
	if ((rc = omni__git_apply_begin(&op, &ta, &a, tree, what)) < 0)
		goto out;
	applying = true;
	if (t.is_local && !omni__apply_workspace_empty(&a)) {
		/* This data folder saved or loaded that snapshot, and its
		 * workspace has been here since: it is at least as new. */
		omni_log(OMNI_LOG_DEBUG,
		         "git state: the workspace already "
		         "holds %.12s",
		         hex);
		rc = 1;
		goto out;
	}
	if (!omni__apply_workspace_empty(&a) &&
	    (rc = backup_workspace(&op, git_tree_id(tree), &same)) < 0)
		goto out;
	if ((rc = keep_local(&op, &t)) < 0)
		goto out;
	if (!same) {
		omni__progress_start(&op.progress, b->opts.progress,
		                     "loading snapshot %.12s", hex);
		if ((rc = omni__git_apply_write(&op, &ta, tree, hex)) < 0)
			goto out;
		omni__progress_done(&op.progress,
		                    "loaded snapshot %.12s from %s", hex,
		                    op.branch);
	}
	if (!t.is_local && (rc = omni__git_set_ref(&op, op.ref_head, &t.oid,
	                                           "omnifs: load")) < 0)
		goto out;
	rc = 1;
out:
	omni__progress_done(&op.progress, NULL);
	if (applying)
		omni__apply_cleanup(&a);
	git_odb_free(ta.odb);
	git_tree_free(tree);
	git_commit_free(commit);
	omni__git_op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static int add_snapshot(struct omni_snapshot_list *out, size_t *cap,
                        const git_commit *c)
{
	char hex[GIT_OID_HEXSZ + 1];
	const char *msg = git_commit_message(c);
	size_t len = msg ? strlen(msg) : 0;

	if (out->count == *cap) {
		size_t n = *cap ? *cap * 2 : 16;
		struct omni_snapshot *p = realloc(out->items, n * sizeof(*p));
		if (!p)
			return -ENOMEM;
		out->items = p;
		*cap = n;
	}
	while (len && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
		len--;
	git_oid_tostr(hex, sizeof(hex), git_commit_id(c));
	struct omni_snapshot *s = &out->items[out->count];
	s->id = strdup(hex);
	s->message = strndup(msg ? msg : "", len);
	s->time = (long long)git_commit_time(c);
	if (!s->id || !s->message) {
		free(s->id);
		free(s->message);
		return -ENOMEM;
	}
	out->count++;
	return 0;
}

static int git_list(struct omni_state *st, struct omni_backend *b,
                    struct omni_snapshot_list *out)
{
	struct git_state *gs = git_of(st);
	git_revwalk *walk = NULL;
	struct git_op op;
	struct tip t;
	git_oid oid;
	size_t cap = 0;
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = omni__git_op_begin(&op, gs, b, "list")) < 0)
		goto unlock;
	if ((rc = pick_tip(&op, &t)) < 0 || !t.found)
		goto out;
	if ((rc = git_revwalk_new(&walk, op.repo)) < 0 ||
	    (rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
	                                        GIT_SORT_TIME)) < 0 ||
	    (rc = git_revwalk_push(walk, &t.oid)) < 0) {
		rc = omni__git_fail(rc, "walking the history of %s", op.branch);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0) {
		git_commit *c = NULL;
		if ((rc = git_commit_lookup(&c, op.repo, &oid)) < 0) {
			rc = omni__git_fail(rc, "reading the history of %s",
			                    op.branch);
			goto out;
		}
		rc = add_snapshot(out, &cap, c);
		git_commit_free(c);
		if (rc < 0) {
			rc = omni_error_set(rc, "git state: out of memory");
			goto out;
		}
	}
	if (rc == GIT_ITEROVER) {
		git_error_clear();
		rc = 0;
	} else if (rc < 0) {
		rc = omni__git_fail(rc, "walking the history of %s", op.branch);
	}
out:
	if (rc < 0)
		omni_snapshot_list_finish(out);
	git_revwalk_free(walk);
	omni__git_op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static int git_cleanup(struct omni_state *st, struct omni_backend *b)
{
	struct git_state *gs = git_of(st);
	struct git_op op;
	char spec[OMNI__GIT_REF_MAX + 8];
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = omni__git_op_begin(&op, gs, b, "cleanup")) < 0)
		goto unlock;
	snprintf(spec, sizeof(spec), ":%s", op.ref_head);
	if ((rc = omni__git_push(&op, spec)) < 0)
		goto out;
	git_repository_free(op.repo);
	op.repo = NULL;
	rc = omni__host_remove_tree(op.store);
	omni_log(OMNI_LOG_DEBUG, "git state: deleted %s on %s and %s",
	         op.branch, gs->remote, op.store);
out:
	omni__git_op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static void git_destroy(struct omni_state *st)
{
	struct git_state *gs = git_of(st);

	pthread_mutex_destroy(&gs->mutex);
	free(gs->remote);
	free(gs->prefix);
	free(gs->state_dir);
	free(gs->author_name);
	free(gs->author_email);
	free(gs);
	git_libgit2_shutdown();
}

static const struct omni_state_ops git_ops = {
	.version = OMNI_STATE_OPS_VERSION,
	.name = "git",
	.load = git_load,
	.save = git_save,
	.list = git_list,
	.cleanup = git_cleanup,
	.destroy = git_destroy,
};

static char *dup_or(const char *s, const char *fallback, bool *failed)
{
	char *d = strdup(s ? s : fallback);

	if (!d)
		*failed = true;
	return d;
}

int omni_state_git(struct omni_state **out,
                   const struct omni_state_git_options *opts)
{
	struct omni_state_git_options defaults = OMNI_STATE_GIT_OPTIONS_INIT;
	char url[PATH_MAX + 64], branch[OMNI__GIT_REF_MAX];
	bool failed = false;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->version < 1 || opts->version > OMNI_STATE_GIT_OPTIONS_VERSION)
		return omni_error_set(-EINVAL,
		                      "git state: options version %u "
		                      "unknown",
		                      opts->version);
	const char *remote = opts->remote;
	if (!remote || !*remote)
		remote = getenv("OMNIAGENTS_GITHUB_STATE_REPO");
	if (!remote || !*remote)
		return omni_error_set(
		    -EINVAL, "git state: no remote repository: set "
		             "OMNIAGENTS_GITHUB_STATE_REPO (owner/repo "
		             "or a URL) or use --state git:REMOTE");
	if ((rc = omni__git_remote_url(remote, url, sizeof(url))) < 0)
		return rc;
	if (git_libgit2_init() < 0)
		return omni_error_set(-EIO, "git state: libgit2 failed to "
		                            "initialise");
	const char *prefix =
	    opts->branch_prefix ? opts->branch_prefix : "state/";
	if ((rc = omni__git_branch_name(prefix, "x", branch, sizeof(branch))) <
	    0) {
		git_libgit2_shutdown();
		return omni_error_set(rc, "git state: bad branch prefix '%s'",
		                      prefix);
	}
	struct git_state *gs = calloc(1, sizeof(*gs));
	if (!gs) {
		git_libgit2_shutdown();
		return omni_error_set(-ENOMEM, "git state: out of memory");
	}
	gs->base.ops = &git_ops;
	pthread_mutex_init(&gs->mutex, NULL);
	gs->remote = dup_or(url, "", &failed);
	gs->prefix = dup_or(prefix, "", &failed);
	gs->state_dir =
	    opts->state_dir ? dup_or(opts->state_dir, "", &failed) : NULL;
	gs->author_name = dup_or(opts->author_name, "omnifs", &failed);
	gs->author_email =
	    dup_or(opts->author_email, "omnifs@localhost", &failed);
	if (failed) {
		git_destroy(&gs->base);
		return omni_error_set(-ENOMEM, "git state: out of memory");
	}
	*out = &gs->base;
	return 0;
}
