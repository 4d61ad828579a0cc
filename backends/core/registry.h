/*
 * backends/core/registry.h - the constructors behind omni_backend_new() and
 * the other documented constructors (session.c), one per backend file
 * (private). Each makes a backend that is not started and belongs to no
 * session yet; its own options come in opts->backend.
 */
#ifndef OMNI_REGISTRY_H
#define OMNI_REGISTRY_H

#include "omni/backend.h"

int omni__local_backend_open(struct omni_backend **out, const char *project_id,
                             const struct omni_backend_options *opts);
int omni__docker_backend_open(struct omni_backend **out, const char *project_id,
                              const struct omni_backend_options *opts);
int omni__e2b_backend_open(struct omni_backend **out, const char *project_id,
                           const struct omni_backend_options *opts);

#endif
