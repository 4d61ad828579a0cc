/*
 * backends/core/registry.h - the constructors behind omni_backend_new() and
 * omni_state_new(), one per backend or manager file (private).
 */
#ifndef OMNI_REGISTRY_H
#define OMNI_REGISTRY_H

#include "omni/backend.h"

int omni__local_backend_open(struct omni_backend **out, const char *project_id,
                             const struct omni_backend_options *opts,
                             struct omni_state *state);
int omni__docker_backend_open(struct omni_backend **out, const char *project_id,
                              const struct omni_backend_options *opts,
                              struct omni_state *state);
int omni__e2b_backend_open(struct omni_backend **out, const char *project_id,
                           const struct omni_backend_options *opts,
                           struct omni_state *state);

#endif
