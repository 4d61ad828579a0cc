/*
 * backends/state/state.c - the one place that calls through a state manager's
 * table, the table of manager names (with their "name:argument" forms), and the
 * parts every manager shares (listing helpers and "clean"). Which manager a
 * backend uses, and when it loads and saves, is the session's
 * (core/session.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/sys/state_impl.h"
#include "omni/vfs.h"
#include "core/session.h"

static int make_none(struct omni_state **out, const char *arg)
{
	(void)arg;
	return omni_state_noop(out);
}

static int make_git(struct omni_state **out, const char *arg)
{
	struct omni_state_git_options opts = OMNI_STATE_GIT_OPTIONS_INIT;

	opts.remote = arg;
	return omni_state_git(out, &opts);
}

/* "gcs://BUCKET[/PREFIX]": the part after "gcs:" starts with "//". */
static int make_gcs(struct omni_state **out, const char *arg)
{
	struct omni_state_gcs_options opts = OMNI_STATE_GCS_OPTIONS_INIT;
	char bucket[256];

	if (!arg)
		return omni_state_gcs(out, &opts);
	if (strncmp(arg, "//", 2) != 0 || !arg[2])
		return omni_error_set(
		    -EINVAL,
		    "state manager 'gcs:%s': use gcs://BUCKET[/PREFIX]", arg);
	arg += 2;
	const char *slash = strchr(arg, '/');
	size_t n = slash ? (size_t)(slash - arg) : strlen(arg);
	if (n == 0 || n >= sizeof(bucket))
		return omni_error_set(-EINVAL, "gcs://%s: bad bucket name",
		                      arg);
	memcpy(bucket, arg, n);
	bucket[n] = '\0';
	opts.bucket = bucket;
	if (slash && slash[1])
		opts.prefix = slash + 1;
	return omni_state_gcs(out, &opts);
}

/* The managers by name; create gets what follows "name:" (or NULL). */
static const struct {
	const char *name;
	int (*create)(struct omni_state **out, const char *arg);
	bool takes_arg;
} state_table[] = {
	{ "none", make_none, false },
	{ "git", make_git, true },
	{ "gcs", make_gcs, true },
};

static const char *const state_names[] = { "none", "git", "gcs", NULL };

const char *const *omni_state_names(void)
{
	return state_names;
}

int omni_state_new(struct omni_state **out, const char *name)
{
	const char *spec = name ? name : "";

	*out = NULL;
	for (size_t i = 0; i < sizeof(state_table) / sizeof(*state_table);
	     i++) {
		size_t n = strlen(state_table[i].name);
		if (strncmp(spec, state_table[i].name, n) != 0)
			continue;
		if (spec[n] == '\0')
			return state_table[i].create(out, NULL);
		if (spec[n] == ':' && state_table[i].takes_arg && spec[n + 1])
			return state_table[i].create(out, spec + n + 1);
	}
	return omni_error_set(-EINVAL,
	                      "unknown state manager '%s' (known: none, git, "
	                      "git:REMOTE, gcs, gcs://BUCKET[/PREFIX])",
	                      spec);
}

const char *omni_state_name(const struct omni_state *st)
{
	return st->ops->name;
}

void omni_state_free(struct omni_state *st)
{
	if (st)
		st->ops->destroy(st);
}

int omni_state_save(struct omni_state *st, struct omni_backend *b,
                    const char *message, char **id_out)
{
	if (id_out)
		*id_out = NULL;
	/* The session's own status, not the live probe: a docker container
	 * that died behind our back still has its files on the host, and
	 * they must be saved on shutdown all the same. */
	if (!omni__backend_running(b))
		return omni_error_set(-ENOTCONN,
		                      "save: the session is not running");
	return st->ops->save(st, b, message ? message : "snapshot", id_out);
}

int omni_state_load_latest(struct omni_state *st, struct omni_backend *b)
{
	return st->ops->load(st, b);
}

int omni_state_list(struct omni_state *st, struct omni_backend *b,
                    struct omni_snapshot_list *out)
{
	memset(out, 0, sizeof(*out));
	return st->ops->list(st, b, out);
}

int omni_state_cleanup(struct omni_state *st, struct omni_backend *b)
{
	return st->ops->cleanup(st, b);
}

/* Delete everything in the workspace root except ".git". */
static int clean_entry(const char *name, const struct stat *st, void *payload)
{
	struct omni_backend *b = payload;
	int rc;

	(void)st;
	if (strcmp(name, ".git") == 0)
		return 0;
	if (S_ISDIR(st->st_mode))
		rc = omni_backend_delete_directory(b, name);
	else
		rc = omni_vfs_unlink(b, name);
	return rc < 0 ? rc : 0;
}

int omni_state_clean(struct omni_state *st, struct omni_backend *b)
{
	int rc = omni_vfs_readdir(b, "", clean_entry, b);

	if (rc < 0)
		return rc;
	if ((rc = omni_backend_write_file(b, "README.md", "", 0)) < 0)
		return rc;
	return omni_state_save(st, b, "clean workspace", NULL);
}

void omni_snapshot_list_finish(struct omni_snapshot_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].id);
		free(list->items[i].message);
	}
	free(list->items);
	list->items = NULL;
	list->count = 0;
}
