/*
 * tests/local/local_helpers.h - the fixture and helpers of the
 * backend_local suite, whose tests are in test_local.c,
 * test_local_files.c and test_local_vfs.c.
 *
 * The suite's .init (local_setup) starts local_fx: a local backend on a
 * private temp directory (tests/support/helpers.h); .fini removes it.
 */
#ifndef OMNI_TESTS_LOCAL_HELPERS_H
#define OMNI_TESTS_LOCAL_HELPERS_H

#include "helpers.h"

/* The fixture of the running test. */
extern struct omni_fixture local_fx;

void local_setup(void);
void local_teardown(void);
/* A fixture that is made but not started (a test's .init). */
void local_setup_new(void);

/* The host path of a workspace-relative name (one of four buffers). */
const char *local_hp(const char *rel);
/* Write text to rel through the backend, asserting success. */
void local_put(const char *rel, const char *text);
/* Assert that rel holds exactly text. */
void local_assert_content(const char *rel, const char *text);

#endif
