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
 *	through snapshot.c's apply (temporary names and renames).
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
 *	save  = scan (ignore rules; anything named .git is skipped, see
 *	        snapshot.c) -> blobs and tree -> commit on refs/heads/B when
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
#define SMALL_BLOB     (4 * 1024 * 1024)
#define REF_MAX        512

struct git_state {
	struct omni_state base;
	pthread_mutex_t mutex;
	char *remote; /* normalised */
	char *prefix;
	char *state_dir; /* NULL: the default */
	char *author_name, *author_email;
};

/* One save, load, list or cleanup. */
struct git_op {
	struct git_state *gs;
	struct omni_backend *b;
	char branch[REF_MAX];   /* state/<id> */
	char ref_head[REF_MAX]; /* refs/heads/<branch> */
	char ref_fetched[REF_MAX];
	char ref_pushed[REF_MAX];
	char ref_backup[REF_MAX];
	char dir[PATH_MAX];   /* the state directory */
	char store[PATH_MAX]; /* <dir>/<project>.git */
	char cache[PATH_MAX]; /* <store>/omnifs-index */
	int lock_fd;
	git_repository *repo;
	struct omni__progress progress;
	/* Credentials tried on the current connection. */
	bool tried_token, tried_agent;
	int next_key;
	/* What the remote said. */
	char push_status[256];
	char remote_msg[512];
};

/* --- pure helpers (state_git.h)
 * ------------------------------------------------ */

static bool all_of(const char *s, size_t n, const char *extra)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || strchr(extra, c);
		if (!ok || c == '\0')
			return false;
	}
	return true;
}

int omni__git_remote_url(const char *in, char *out, size_t size)
{
	const char *slash, *colon;
	int n;

	if (!in || !*in)
		return omni_error_set(-EINVAL, "git state: empty remote");
	slash = strchr(in, '/');
	colon = strchr(in, ':');
	if (strstr(in, "://") ||
	    (colon && (!slash || colon < slash) && colon != in)) {
		/* A URL, or scp-like "[user@]host:path". */
		n = snprintf(out, size, "%s", in);
	} else if (in[0] == '/') {
		n = snprintf(out, size, "%s", in);
	} else if (in[0] == '~' && in[1] == '/') {
		const char *home = getenv("HOME");
		n = snprintf(out, size, "%s%s", home ? home : "", in + 1);
	} else if (slash && !strchr(slash + 1, '/') && in[0] != '.' &&
	           all_of(in, (size_t)(slash - in), "-_.") &&
	           all_of(slash + 1, strlen(slash + 1), "-_.")) {
		/* "owner/repo", as the documented Python manager reads it. */
		size_t rl = strlen(slash + 1);
		bool dotgit = rl > 4 && strcmp(slash + 1 + rl - 4, ".git") == 0;
		n = snprintf(out, size, "https://github.com/%s%s", in,
		             dotgit ? "" : ".git");
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return omni_error_set_errno(-errno, "getcwd");
		while (in[0] == '.' && in[1] == '/')
			in += 2;
		n = snprintf(out, size, "%s/%s", cwd, in);
	}
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "git state: remote too long");
	return 0;
}

static bool ref_valid(const char *branch)
{
	char ref[REF_MAX + 16];
	int valid = 0;

	if (snprintf(ref, sizeof(ref), "refs/heads/%s", branch) >=
	    (int)sizeof(ref))
		return false;
	return git_reference_name_is_valid(&valid, ref) == 0 && valid;
}

int omni__git_branch_name(const char *prefix, const char *project, char *out,
                          size_t size)
{
	int n = snprintf(out, size, "%s%s", prefix, project);
	size_t pl = strlen(prefix);

	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "git state: branch too long");
	for (char *p = out + pl; *p; p++)
		if (*p == '_' || *p == ' ')
			*p = '-';
	if (ref_valid(out))
		return 0;
	for (char *p = out + pl; *p; p++)
		if (*p == '.')
			*p = '-';
	if (ref_valid(out))
		return 0;
	return omni_error_set(
	    -EINVAL, "git state: '%s' is not a valid branch name", out);
}

int omni__git_to_errno(int rc, int klass, const char *message)
{
	const char *m = message ? message : "";
	const char *code;

	switch (rc) {
	case GIT_ENOTFOUND:
		return -ENOENT;
	case GIT_EEXISTS:
		return -EEXIST;
	case GIT_EAUTH:
	case GIT_ECERTIFICATE:
	case GIT_EOWNER:
		return -EACCES;
	case GIT_ELOCKED:
		return -EBUSY;
	case GIT_ENONFASTFORWARD:
		return -EAGAIN;
	case GIT_EINVALIDSPEC:
	case GIT_EINVALID:
		return -EINVAL;
	case GIT_EUSER:
		return -ECANCELED;
	}
	if (klass == GIT_ERROR_NOMEMORY)
		return -ENOMEM;
	if ((code = strstr(m, "status code: "))) {
		long status = strtol(code + 13, NULL, 10);
		if (status == 401 || status == 403)
			return -EACCES;
		if (status == 404)
			return -ENOENT;
		return -EIO;
	}
	if (strcasestr(m, "connection refused"))
		return -ECONNREFUSED;
	if (strcasestr(m, "timed out") || strcasestr(m, "timeout"))
		return -ETIMEDOUT;
	if (strcasestr(m, "resolve") && !strcasestr(m, "path"))
		return -EHOSTUNREACH;
	return -EIO;
}

/* --- errors
 * ------------------------------------------------------------------- */

/* Turn the last libgit2 failure into -errno and a message. */
static int git_fail(int rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int git_fail(int rc, const char *fmt, ...)
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
	int n = snprintf(out, REF_MAX, fmt, branch);

	if (n < 0 || n >= REF_MAX)
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

static void op_end(struct git_op *op)
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
		return git_fail(rc, "opening the local history %s", op->store);
	return 0;
}

static int op_begin(struct git_op *op, struct git_state *gs,
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
		op_end(op);
		return rc;
	}
	return 0;
}

static int lookup_ref(struct git_op *op, const char *ref, git_oid *out,
                      bool *found)
{
	int rc = git_reference_name_to_id(out, op->repo, ref);

	*found = rc == 0;
	if (rc == GIT_ENOTFOUND) {
		git_error_clear();
		return 0;
	}
	if (rc < 0)
		return git_fail(rc, "reading %s in %s", ref, op->store);
	return 0;
}

static int set_ref(struct git_op *op, const char *ref, const git_oid *oid,
                   const char *log)
{
	git_reference *r = NULL;
	int rc = git_reference_create(&r, op->repo, ref, oid, 1, log);

	git_reference_free(r);
	if (rc < 0)
		return git_fail(rc, "updating %s in %s", ref, op->store);
	return 0;
}

/* --- talking to the remote
 * ---------------------------------------------------- */

static const char *env_token(const char **name)
{
	static const char *const vars[] = { "OMNIAGENTS_GITHUB_API_KEY",
		                            "GITHUB_TOKEN" };

	for (size_t i = 0; i < 2; i++) {
		const char *v = getenv(vars[i]);
		if (v && *v) {
			*name = vars[i];
			return v;
		}
	}
	*name = NULL;
	return NULL;
}

static int ssh_key_path(int i, char *out, size_t size)
{
	const char *home = getenv("HOME");
	static const char *const names[] = { "id_ed25519", "id_ecdsa",
		                             "id_rsa" };

	if (i == 0) {
		const char *k = getenv("OMNIAGENTS_GIT_SSH_KEY");
		if (!k || !*k)
			return -1;
		snprintf(out, size, "%s", k);
		return 0;
	}
	if (i > 3 || !home)
		return -1;
	snprintf(out, size, "%s/.ssh/%s", home, names[i - 1]);
	return 0;
}

static int cred_cb(git_credential **out, const char *url, const char *user,
                   unsigned int allowed, void *payload)
{
	struct git_op *op = payload;
	const char *u = user && *user ? user : NULL;
	const char *var;

	(void)url;
	if (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) {
		const char *token = env_token(&var);
		if (!token) {
			git_error_set_str(GIT_ERROR_NET,
			                  "the remote wants credentials: set "
			                  "OMNIAGENTS_GITHUB_API_KEY or "
			                  "GITHUB_TOKEN");
			return GIT_EAUTH;
		}
		if (op->tried_token) {
			char msg[160];
			snprintf(msg, sizeof(msg),
			         "the remote refused the token in $%s", var);
			git_error_set_str(GIT_ERROR_NET, msg);
			return GIT_EAUTH;
		}
		op->tried_token = true;
		return git_credential_userpass_plaintext_new(
		    out, u ? u : "x-access-token", token);
	}
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, u ? u : "git");
	if (allowed & GIT_CREDENTIAL_SSH_KEY) {
		if (!op->tried_agent && getenv("SSH_AUTH_SOCK")) {
			op->tried_agent = true;
			return git_credential_ssh_key_from_agent(out,
			                                         u ? u : "git");
		}
		for (char key[PATH_MAX], pub[PATH_MAX + 8];
		     ssh_key_path(op->next_key, key, sizeof(key)) == 0;) {
			op->next_key++;
			if (access(key, R_OK) != 0)
				continue;
			snprintf(pub, sizeof(pub), "%s.pub", key);
			return git_credential_ssh_key_new(
			    out, u ? u : "git",
			    access(pub, R_OK) == 0 ? pub : NULL, key, NULL);
		}
		git_error_set_str(GIT_ERROR_SSH,
		                  "no ssh key was accepted (tried the agent, "
		                  "$OMNIAGENTS_GIT_SSH_KEY and ~/.ssh/id_*)");
		return GIT_EAUTH;
	}
	git_error_set_str(GIT_ERROR_NET, "the remote wants a kind of "
	                                 "credentials omnifs cannot give");
	return GIT_EAUTH;
}

static int push_ref_cb(const char *ref, const char *status, void *payload)
{
	struct git_op *op = payload;

	if (status && !op->push_status[0])
		snprintf(op->push_status, sizeof(op->push_status), "%s: %s",
		         ref, status);
	return 0;
}

/* Keep the server's "remote:" text (the last of it) for messages. */
static int sideband_cb(const char *str, int len, void *payload)
{
	struct git_op *op = payload;
	size_t have = strlen(op->remote_msg);

	for (int i = 0; i < len; i++) {
		char c = str[i];
		if (c == '\r' || c == '\n')
			c = ' ';
		if ((unsigned char)c < ' ')
			continue;
		if (have + 1 >= sizeof(op->remote_msg)) {
			/* Keep the tail: the reason comes last. */
			size_t cut = sizeof(op->remote_msg) / 2;
			memmove(op->remote_msg, op->remote_msg + cut,
			        have - cut);
			have -= cut;
		}
		op->remote_msg[have++] = c;
	}
	op->remote_msg[have] = '\0';
	return 0;
}

static int fetch_progress_cb(const git_indexer_progress *stats, void *payload)
{
	struct git_op *op = payload;

	omni__progress_add(
	    &op->progress,
	    (long long)stats->received_objects - op->progress.files,
	    (long long)stats->received_bytes - op->progress.bytes);
	return 0;
}

static int push_progress_cb(unsigned int current, unsigned int total,
                            size_t bytes, void *payload)
{
	struct git_op *op = payload;

	(void)total;
	omni__progress_add(&op->progress,
	                   (long long)current - op->progress.files,
	                   (long long)bytes - op->progress.bytes);
	return 0;
}

static void set_callbacks(struct git_op *op, git_remote_callbacks *cb)
{
	git_remote_init_callbacks(cb, GIT_REMOTE_CALLBACKS_VERSION);
	cb->credentials = cred_cb;
	cb->sideband_progress = sideband_cb;
	cb->transfer_progress = fetch_progress_cb;
	cb->push_transfer_progress = push_progress_cb;
	cb->push_update_reference = push_ref_cb;
	cb->payload = op;
	op->tried_token = op->tried_agent = false;
	op->next_key = 0;
	op->push_status[0] = op->remote_msg[0] = '\0';
}

/* libgit2 says "unsupported URL protocol" for a local path that does not
 * exist; say what is wrong instead. */
static int check_local_remote(struct git_op *op)
{
	const char *url = op->gs->remote;
	struct stat st;

	if (strncmp(url, "file://", 7) == 0)
		url += 7;
	else if (url[0] != '/')
		return 0;
	if (stat(url, &st) < 0)
		return omni_error_set_errno(
		    -errno, "git state: remote repository %s", url);
	return 0;
}

/* Fetch the remote's branch into ref_fetched; *found says whether the
 * remote has it. */
static int do_fetch(struct git_op *op, git_oid *out, bool *found)
{
	git_fetch_options fo;
	git_remote *remote = NULL;
	char spec[3 * REF_MAX];
	char *specs[] = { spec };
	git_strarray refspecs = { specs, 1 };
	int rc;

	*found = false;
	snprintf(spec, sizeof(spec), "+refs/heads/%s:%s", op->branch,
	         op->ref_fetched);
	if ((rc = check_local_remote(op)) < 0)
		return rc;
	rc = git_reference_remove(op->repo, op->ref_fetched);
	if (rc < 0 && rc != GIT_ENOTFOUND)
		return git_fail(rc, "clearing %s", op->ref_fetched);
	git_error_clear();
	git_fetch_options_init(&fo, GIT_FETCH_OPTIONS_VERSION);
	set_callbacks(op, &fo.callbacks);
	fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	fo.update_fetchhead = 0;
	fo.proxy_opts.type = GIT_PROXY_AUTO;
	rc = git_remote_create_anonymous(&remote, op->repo, op->gs->remote);
	if (rc == 0)
		rc = git_remote_fetch(remote, &refspecs, &fo, "omnifs: fetch");
	git_remote_free(remote);
	if (rc < 0)
		return git_fail(rc, "fetching %s from %s", op->branch,
		                op->gs->remote);
	return lookup_ref(op, op->ref_fetched, out, found);
}

/* Push one refspec; a refusal by the server is -EPERM. */
static int do_push(struct git_op *op, const char *spec)
{
	git_push_options po;
	git_remote *remote = NULL;
	char *specs[] = { (char *)spec };
	git_strarray refspecs = { specs, 1 };
	int rc;

	if ((rc = check_local_remote(op)) < 0)
		return rc;
	git_error_clear();
	git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
	set_callbacks(op, &po.callbacks);
	po.proxy_opts.type = GIT_PROXY_AUTO;
	rc = git_remote_create_anonymous(&remote, op->repo, op->gs->remote);
	if (rc == 0)
		rc = git_remote_push(remote, &refspecs, &po);
	git_remote_free(remote);
	if (rc < 0) {
		if (op->remote_msg[0]) {
			const git_error *e = git_error_last();
			char msg[1200];
			snprintf(msg, sizeof(msg), "%.600s (remote: %s)",
			         e && e->message ? e->message : "failed",
			         op->remote_msg);
			git_error_set_str(e ? e->klass : GIT_ERROR_NET, msg);
		}
		return git_fail(rc, "pushing %s to %s", op->branch,
		                op->gs->remote);
	}
	if (op->push_status[0])
		return omni_error_set(-EPERM,
		                      "git state: %s refused the push of %s: "
		                      "%s%s%s",
		                      op->gs->remote, op->branch,
		                      op->push_status,
		                      op->remote_msg[0] ? " (remote: " : "",
		                      op->remote_msg[0] ? op->remote_msg : "");
	if (op->remote_msg[0])
		omni_log(OMNI_LOG_DEBUG, "git state: remote: %s",
		         op->remote_msg);
	return 0;
}

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
		return git_fail(rc, "storing a blob");
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
			return git_fail(rc, "storing %s", e->path);
		omni__progress_add(&op->progress, 0, n);
		return 0;
	}
	if (e->st.st_size <= SMALL_BLOB) {
		char *data;
		size_t len;
		rc = omni__ws_read_all(op->b, e->path, SMALL_BLOB, &data, &len);
		if (rc == 0) {
			rc = git_blob_create_from_buffer(oid, op->repo, data,
			                                 len);
			free(data);
			if (rc < 0)
				return git_fail(rc, "storing %s", e->path);
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
		return git_fail(rc, "storing %s", e->path);
	if ((rc = omni__ws_read(op->b, e->path, blob_chunk, &s)) < 0) {
		s.ws->free(s.ws);
		return rc;
	}
	if ((rc = git_blob_create_from_stream_commit(oid, s.ws)) < 0)
		return git_fail(rc, "storing %s", e->path);
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
		if (rc == -ENOENT) {
			/* Deleted between the scan and the read. */
			omni_error_clear();
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
static int build_tree(struct git_op *op, git_oid *out, bool keep_cache)
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
		rc = git_fail(rc, "opening %s", op->cache);
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
		rc = git_fail(rc, "writing the tree");
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

static int commit_tree(struct git_op *op, const git_oid *tree_oid,
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
		rc = git_fail(rc, "preparing the commit");
		goto out;
	}
	for (size_t i = 0; i < nparents && i < 2; i++) {
		if ((rc = git_commit_lookup(&owned[i], op->repo, parents[i])) <
		    0) {
			rc = git_fail(rc, "reading the parent commit");
			goto out;
		}
		pc[i] = owned[i];
	}
	rc = git_commit_create(out, op->repo, NULL, sig, sig, NULL,
	                       message && *message ? message : "snapshot", tree,
	                       nparents, pc);
	if (rc < 0)
		rc = git_fail(rc, "committing");
out:
	git_commit_free(owned[0]);
	git_commit_free(owned[1]);
	git_tree_free(tree);
	git_signature_free(sig);
	return rc;
}

/* The tree id of a commit. */
static int tree_of(struct git_op *op, const git_oid *commit, git_oid *out)
{
	git_commit *c = NULL;
	int rc = git_commit_lookup(&c, op->repo, commit);

	if (rc < 0)
		return git_fail(rc, "reading commit");
	git_oid_cpy(out, git_commit_tree_id(c));
	git_commit_free(c);
	return 0;
}

/* --- tree -> workspace
 * ---------------------------------------------------------- */

struct tree_apply {
	struct git_op *op;
	struct omni__apply *a;
	git_index *cache;
	git_odb *odb;
	int rc;
};

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
		return git_fail(rc, "reading %s", path);
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
		    (rc = omni__apply_file_write(&af, data, len)) < 0)
			omni__apply_file_abort(ta->a, &af);
		else if (rc == 0)
			rc = omni__apply_file_commit(ta->a, &af, NULL);
	}
	git_blob_free(blob);
	return rc;
}

static int apply_walk_cb(const char *root, const git_tree_entry *te,
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

/* Make sure every object of the tree is here before writing anything. */
static int check_tree_cb(const char *root, const git_tree_entry *te,
                         void *payload)
{
	struct tree_apply *ta = payload;

	if (forbidden(git_tree_entry_name(te)))
		return 1;
	if (git_tree_entry_type(te) != GIT_OBJECT_BLOB)
		return 0;
	if (git_odb_exists(ta->odb, git_tree_entry_id(te)) != 1) {
		ta->rc = omni_error_set(-EIO,
		                        "git state: the snapshot lacks the "
		                        "content of %s%s",
		                        root, git_tree_entry_name(te));
		return -1;
	}
	return 0;
}

/* Fill the stat cache from what was just written, so the next save does
 * not read it all back. */
static void cache_after_load(struct git_op *op, git_tree *tree)
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
	if ((rc = do_fetch(op, &t->remote, &t->have_remote)) < 0 ||
	    (rc = lookup_ref(op, op->ref_head, &t->local, &t->have_local)) < 0)
		return rc;
	if (t->have_remote && (rc = set_ref(op, op->ref_pushed, &t->remote,
	                                    "omnifs: fetched")) < 0)
		return rc;
	if (t->have_local && t->have_remote) {
		int desc = git_oid_equal(&t->local, &t->remote)
		               ? 1
		               : git_graph_descendant_of(op->repo, &t->local,
		                                         &t->remote);
		if (desc < 0)
			return git_fail(desc, "comparing histories");
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

	if ((rc = do_fetch(op, &remote, &found)) < 0 || !found ||
	    git_oid_equal(&remote, head))
		return rc;
	int desc = git_graph_descendant_of(op->repo, head, &remote);
	if (desc < 0)
		return git_fail(desc, "comparing histories");
	if (desc == 1)
		return 0;
	if ((rc = git_commit_lookup(&c, op->repo, head)) < 0)
		return git_fail(rc, "reading the snapshot");
	git_oid_cpy(&tree, git_commit_tree_id(c));
	char *message = strdup(git_commit_message(c));
	git_commit_free(c);
	if (!message)
		return omni_error_set(-ENOMEM, "git state: out of memory");
	const git_oid *parents[] = { head, &remote };
	git_oid merged;
	rc = commit_tree(op, &tree, parents, 2, message, &merged);
	free(message);
	if (rc < 0 ||
	    (rc = set_ref(op, op->ref_head, &merged, "omnifs: save")) < 0)
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
	if ((rc = op_begin(&op, gs, b, "save")) < 0)
		goto unlock;
	omni__progress_start(&op.progress, b->opts.progress,
	                     "saving snapshot to git");
	if ((rc = build_tree(&op, &tree, true)) < 0 ||
	    (rc = lookup_ref(&op, op.ref_head, &head, &have_head)) < 0)
		goto out;
	if (have_head) {
		if ((rc = tree_of(&op, &head, &parent_tree)) < 0)
			goto out;
		changed = !git_oid_equal(&tree, &parent_tree);
	}
	if (changed) {
		/* Committed locally first: whatever happens to the push,
		 * the snapshot is kept. */
		const git_oid *parents[] = { &head };
		git_oid commit;
		if ((rc = commit_tree(&op, &tree, parents, have_head ? 1 : 0,
		                      message, &commit)) < 0 ||
		    (rc = set_ref(&op, op.ref_head, &commit, "omnifs: save")) <
		        0)
			goto out;
		git_oid_cpy(&head, &commit);
		have_head = true;
	}
	if ((rc = lookup_ref(&op, op.ref_pushed, &pushed, &have_pushed)) < 0)
		goto out;
	if (have_head && (!have_pushed || !git_oid_equal(&pushed, &head))) {
		char spec[3 * REF_MAX];
		long long files = op.progress.files, bytes = op.progress.bytes;

		snprintf(spec, sizeof(spec), "+%s:%s", op.ref_head,
		         op.ref_head);
		op.progress.files = op.progress.bytes = 0;
		op.progress.unit = "object";
		snprintf(op.progress.what, sizeof(op.progress.what),
		         "pushing %.120s", op.branch);
		rc = adopt_remote(&op, &head);
		if (rc == 0)
			rc = do_push(&op, spec);
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
		if ((rc = set_ref(&op, op.ref_pushed, &head,
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
	op_end(&op);
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
	if ((rc = build_tree(op, &tree, true)) < 0)
		return rc;
	if (git_oid_equal(&tree, tip_tree)) {
		*same = true;
		return 0;
	}
	if ((rc = lookup_ref(op, op->ref_backup, &prev, &have_prev)) < 0)
		return rc;
	const git_oid *parents[] = { &prev };
	if ((rc = commit_tree(op, &tree, parents, have_prev ? 1 : 0,
	                      "workspace replaced by a load", &commit)) < 0 ||
	    (rc = set_ref(op, op->ref_backup, &commit, "omnifs: backup")) < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG,
	         "git state: the workspace was kept as %s in %s",
	         op->ref_backup, op->store);
	return 0;
}

/* The local snapshot is not part of the tip's history: keep it. */
static int keep_local(struct git_op *op, const struct tip *t)
{
	char ref[2 * REF_MAX], hex[GIT_OID_HEXSZ + 1];

	if (!t->have_local || t->is_local)
		return 0;
	int desc = git_graph_descendant_of(op->repo, &t->remote, &t->local);
	if (desc < 0)
		return git_fail(desc, "comparing histories");
	if (desc == 1)
		return 0;
	git_oid_tostr(hex, sizeof(hex), &t->local);
	snprintf(ref, sizeof(ref), "refs/omnifs/kept/%s/%s", op->branch, hex);
	return set_ref(op, ref, &t->local, "omnifs: diverged from the remote");
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
	char hex[GIT_OID_HEXSZ + 1];
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b, "load")) < 0)
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
		rc = git_fail(rc, "reading snapshot %.12s", hex);
		goto out;
	}
	ta.op = &op;
	ta.a = &a;
	if ((rc = git_repository_odb(&ta.odb, op.repo)) < 0) {
		rc = git_fail(rc, "opening the object store");
		goto out;
	}
	if ((rc = git_tree_walk(tree, GIT_TREEWALK_PRE, check_tree_cb, &ta)) <
	    0) {
		rc = ta.rc < 0 ? ta.rc : git_fail(rc, "checking %.12s", hex);
		goto out;
	}
	if ((rc = omni__apply_begin(&a, b, OMNI__SCAN_SKIP_GIT, &op.progress)) <
	    0)
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
		if ((rc = git_index_open(&ta.cache, op.cache)) < 0) {
			git_error_clear();
			unlink(op.cache);
			if ((rc = git_index_open(&ta.cache, op.cache)) < 0) {
				rc = git_fail(rc, "opening %s", op.cache);
				goto out;
			}
		}
		rc = git_tree_walk(tree, GIT_TREEWALK_PRE, apply_walk_cb, &ta);
		git_index_free(ta.cache);
		ta.cache = NULL;
		if (rc < 0) {
			rc = ta.rc < 0 ? ta.rc
			               : git_fail(rc, "loading %.12s", hex);
			goto out;
		}
		if ((rc = omni__apply_finish(&a)) < 0)
			goto out;
		cache_after_load(&op, tree);
		omni__progress_done(&op.progress,
		                    "loaded snapshot %.12s from %s", hex,
		                    op.branch);
	}
	if (!t.is_local &&
	    (rc = set_ref(&op, op.ref_head, &t.oid, "omnifs: load")) < 0)
		goto out;
	rc = 1;
out:
	omni__progress_done(&op.progress, NULL);
	if (applying)
		omni__apply_cleanup(&a);
	git_odb_free(ta.odb);
	git_tree_free(tree);
	git_commit_free(commit);
	op_end(&op);
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
	if ((rc = op_begin(&op, gs, b, "list")) < 0)
		goto unlock;
	if ((rc = pick_tip(&op, &t)) < 0 || !t.found)
		goto out;
	if ((rc = git_revwalk_new(&walk, op.repo)) < 0 ||
	    (rc = git_revwalk_sorting(walk, GIT_SORT_TOPOLOGICAL |
	                                        GIT_SORT_TIME)) < 0 ||
	    (rc = git_revwalk_push(walk, &t.oid)) < 0) {
		rc = git_fail(rc, "walking the history of %s", op.branch);
		goto out;
	}
	while ((rc = git_revwalk_next(&oid, walk)) == 0) {
		git_commit *c = NULL;
		if ((rc = git_commit_lookup(&c, op.repo, &oid)) < 0) {
			rc = git_fail(rc, "reading the history of %s",
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
		rc = git_fail(rc, "walking the history of %s", op.branch);
	}
out:
	if (rc < 0)
		omni_snapshot_list_finish(out);
	git_revwalk_free(walk);
	op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static int git_cleanup(struct omni_state *st, struct omni_backend *b)
{
	struct git_state *gs = git_of(st);
	struct git_op op;
	char spec[REF_MAX + 8];
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b, "cleanup")) < 0)
		goto unlock;
	snprintf(spec, sizeof(spec), ":%s", op.ref_head);
	if ((rc = do_push(&op, spec)) < 0)
		goto out;
	git_repository_free(op.repo);
	op.repo = NULL;
	rc = omni__host_remove_tree(op.store);
	omni_log(OMNI_LOG_DEBUG, "git state: deleted %s on %s and %s",
	         op.branch, gs->remote, op.store);
out:
	op_end(&op);
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
	char url[PATH_MAX + 64], branch[REF_MAX];
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
