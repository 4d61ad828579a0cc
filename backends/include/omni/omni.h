/*
 * omni/omni.h - libomni: global set-up and everything a program needs.
 *
 * Call omni_global_init() once in main() before starting any thread (it
 * initialises libcurl and libgit2), and omni_global_shutdown() at exit.
 */
#ifndef OMNI_OMNI_H
#define OMNI_OMNI_H

#include "backend.h"
#include "error.h"
#include "log.h"
#include "state.h"
#include "vfs.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OMNI_VERSION "0.1.0"

int omni_global_init(void);
void omni_global_shutdown(void);

/* The library's version string. */
const char *omni_version(void);

#ifdef __cplusplus
}
#endif

#endif
