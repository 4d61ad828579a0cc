/*
 * state.c - the one place that calls through a state manager's table, the
 * table of manager names, and the parts every manager shares (listing
 * helpers and "clean").
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "omni/backend_impl.h"
#include "omni/error.h"
#include "omni/state_impl.h"
#include "omni/vfs.h"

static const struct {
	const char *name;
	int (*create)(struct omni_state **out);
} state_table[] = {
	{ "none", omni_state_noop },
};

static const char *const state_names[] = { "none", NULL };

const char *const *omni_state_names(void)
{
	return state_names;
}

int omni_state_new(struct omni_state **out, const char *name)
{
	*out = NULL;
	for (size_t i = 0; i < sizeof(state_table) / sizeof(*state_table); i++)
		if (strcmp(state_table[i].name, name ? name : "") == 0)
			return state_table[i].create(out);
	return omni_error_set(-EINVAL, "unknown state manager '%s' (known: none)",
			      name ? name : "");
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
	if (omni_backend_get_status(b) != OMNI_STATUS_RUNNING)
		return omni_error_set(-ENOTCONN, "save: the session is not running");
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

int omni_backend_save_snapshot(struct omni_backend *b, const char *message,
			       char **id_out)
{
	return omni_state_save(b->state, b, message, id_out);
}

int omni_backend_load_latest_snapshot(struct omni_backend *b)
{
	return omni_state_load_latest(b->state, b);
}

int omni_backend_list_snapshots(struct omni_backend *b,
				struct omni_snapshot_list *out)
{
	return omni_state_list(b->state, b, out);
}
