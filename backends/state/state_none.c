/*
 * backends/state/state_none.c - the "none" state manager: a real null object.
 *
 * Saving succeeds and keeps nothing, loading finds no snapshot, the list is
 * empty. Sessions always have a manager, so nothing tests for "no state".
 */
#include <errno.h>
#include <stdlib.h>

#include "omni/error.h"
#include "omni/sys/state_impl.h"

static int none_load(struct omni_state *st, struct omni_backend *b)
{
	(void)st;
	(void)b;
	return 0;
}

static int none_save(struct omni_state *st, struct omni_backend *b,
                     const char *message, char **id_out)
{
	(void)st;
	(void)b;
	(void)message;
	if (id_out)
		*id_out = NULL;
	return 0;
}

static int none_list(struct omni_state *st, struct omni_backend *b,
                     struct omni_snapshot_list *out)
{
	(void)st;
	(void)b;
	out->items = NULL;
	out->count = 0;
	return 0;
}

static int none_cleanup(struct omni_state *st, struct omni_backend *b)
{
	(void)st;
	(void)b;
	return 0;
}

static void none_destroy(struct omni_state *st)
{
	free(st);
}

static const struct omni_state_ops none_ops = {
	.version = OMNI_STATE_OPS_VERSION,
	.name = "none",
	.load = none_load,
	.save = none_save,
	.list = none_list,
	.cleanup = none_cleanup,
	.destroy = none_destroy,
};

int omni_state_noop(struct omni_state **out)
{
	struct omni_state *st = calloc(1, sizeof(*st));

	*out = NULL;
	if (!st)
		return omni_error_set(-ENOMEM, "state: out of memory");
	st->ops = &none_ops;
	*out = st;
	return 0;
}
