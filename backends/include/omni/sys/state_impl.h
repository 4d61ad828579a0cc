/*
 * omni/state_impl.h - the implementer API of state managers.
 *
 * Same shape as backends: a versioned static const table and an instance
 * that embeds struct omni_state first. Only backends/state.c calls through
 * the table. load returns 1 when a snapshot was loaded, 0 when there was
 * none; save sets *id_out (may be NULL) to the new snapshot's id or NULL
 * when nothing was saved.
 */
#ifndef OMNI_STATE_IMPL_H
#define OMNI_STATE_IMPL_H

#include "../state.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_STATE_OPS_VERSION 1

struct omni_state_ops {
	unsigned int version;
	const char *name;
	int (*load)(struct omni_state *st, struct omni_backend *b);
	int (*save)(struct omni_state *st, struct omni_backend *b,
	            const char *message, char **id_out);
	int (*list)(struct omni_state *st, struct omni_backend *b,
	            struct omni_snapshot_list *out);
	int (*cleanup)(struct omni_state *st, struct omni_backend *b);
	void (*destroy)(struct omni_state *st);
};

struct omni_state {
	const struct omni_state_ops *ops;
};

#ifdef __cplusplus
}
#endif

#endif
