/*
 * backends/state/git_remote.c - the git state manager and its remote: the
 * remote's URL and the branch of a project (pure, tested alone), libgit2
 * failures as negative errno, credentials, fetch and push (see the head of
 * state_git.c for the design, state_git.h for the shared structures).
 *
 * Credentials: a token from the environment for https, then the ssh agent
 * and key files for ssh, each kind tried once per connection (libgit2
 * would ask again forever). The server's "remote:" text is kept for the
 * messages, and a push the server refuses is -EPERM with its reason.
 *
 * Locking: called with the manager's mutex held (state_git.c); the pure
 * helpers keep no state.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <git2.h>

#include "omni/error.h"
#include "omni/log.h"
#include "state/state_git.h"

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
	char ref[OMNI__GIT_REF_MAX + 16];
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
int omni__git_fetch(struct git_op *op, git_oid *out, bool *found)
{
	git_fetch_options fo;
	git_remote *remote = NULL;
	char spec[3 * OMNI__GIT_REF_MAX];
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
		return omni__git_fail(rc, "clearing %s", op->ref_fetched);
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
		return omni__git_fail(rc, "fetching %s from %s", op->branch,
		                      op->gs->remote);
	return omni__git_lookup_ref(op, op->ref_fetched, out, found);
}

/* Push one refspec; a refusal by the server is -EPERM. */
int omni__git_push(struct git_op *op, const char *spec)
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
		return omni__git_fail(rc, "pushing %s to %s", op->branch,
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
