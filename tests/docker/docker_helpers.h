/*
 * tests/docker/docker_helpers.h - the fixture and helpers of the
 * backend_docker suite, whose tests are in test_docker.c,
 * test_docker_files.c and test_docker_exec.c.
 *
 * dk_fx is the running test's world: a temp directory with the data and
 * OMNI_RUNTIME_DIR, a project id with the test process's pid, the
 * container's name, and up to three backends; the suite's .fini
 * (dk_teardown) frees them and removes the containers by name, and the
 * mount in dk_mfx and the fake daemon in dk_fake when a test used them.
 */
#ifndef OMNI_TESTS_DOCKER_HELPERS_H
#define OMNI_TESTS_DOCKER_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "http_fake.h"
#include "mount_helpers.h"
#include "omni/backend.h"
#include "omni/vfs.h"

#define BUSYBOX "omnifs-test/busybox:latest"
#define DEBIAN  "omnifs-test/debian:bookworm"

struct dfx {
	char tmp[PATH_MAX];
	char data[PATH_MAX];
	char run[PATH_MAX];
	char host[PATH_MAX];
	char project[64];
	char name[128];
	char
	    name2[128]; /* a second project's container, when a test made one */
	struct omni_backend *b[3];
};

extern struct dfx dk_fx;
extern struct mount_fx dk_mfx;
extern struct http_fake dk_fake;
/* The omni-agent the tests use (set by dk_require_docker). */
extern char dk_agent_path[PATH_MAX];

/* --- the Engine API, for checking what the backend did -------------------- */

/* A request; returns the HTTP status, or -errno when the daemon could not
 * be reached. *out (may be NULL) gets the parsed reply. No assertion, so
 * .fini may use it. */
long dk_try(const char *method, const char *path, const char *json,
            cJSON **out);
/* dk_try, asserting that the daemon answered. */
long dk(const char *method, const char *path, const char *json, cJSON **out);
/* Remove a container by name (forced, with its volumes); no assertion. */
void dk_remove(const char *name);
/* The container's inspect data (cJSON_Delete it), or NULL when there is
 * none. */
cJSON *dk_inspect(const char *name);
/* The id of an existing container. */
void dk_id(const char *name, char *out, size_t size);
bool dk_exists(const char *name);
/* c.a.b as a number, asserting that it is one. */
double dk_num(const cJSON *c, const char *a, const char *b);
/* c.a.b (or c.a when b is NULL) as a string, or NULL. */
const char *dk_str(const cJSON *c, const char *a, const char *b);

/* --- prerequisites and fixtures ------------------------------------------- */

/* CI=true: a missing prerequisite fails instead of skipping. */
bool dk_in_ci(void);
#define missing(...)                                                           \
	do {                                                                   \
		if (dk_in_ci())                                                \
			cr_assert_fail(__VA_ARGS__);                           \
		cr_skip_test(__VA_ARGS__);                                     \
	} while (0)
bool dk_image_present(const char *image);
/* Point this process (and what it starts) at the second daemon of
 * scripts/dockerd-remote-start.sh: the variables of its env file
 * ($OMNI_TEST_REMOTE_DOCKER_ENV, default /var/lib/omnifs-dockerd-remote/env)
 * set with setenv; skips (fails under CI=true) when it is missing or the
 * daemon does not answer. */
void dk_remote_env(void);
/* A daemon that answers, the busybox image, and omni-agent. */
void dk_require_docker(void);
/* Paths and names of a fresh fixture (no backend yet). */
void dk_fx_paths(void);
/* Options of the fixture: o->backend points at dk_dopts (busybox, no
 * network), which a test may change after the call. */
extern struct omni_docker_options dk_dopts;
void dk_default_opts(struct omni_backend_options *o);
/* Backend slot i on the fixture's project, started (o NULL: defaults). */
struct omni_backend *dk_fx_start(int i, const struct omni_backend_options *o);
/* The usual start: daemon check, fixture, one started backend. */
struct omni_backend *dk_started(void);
void dk_setup(void);
void dk_teardown(void);

/* --- running commands ----------------------------------------------------- */

struct out {
	char o[1 << 16], e[1 << 16];
	size_t ol, el;
	/* When stdout first holds trigger: send sig, resize, then input. */
	const char *trigger;
	bool triggered;
	int sig;
	unsigned short rows, cols;
	const char *input;
	struct omni_exec *exec;
};

struct out *dk_out_new(void);
/* Start req, feed input (then EOF) when given, pump, free. */
int dk_run_req(struct omni_backend *b, const struct omni_exec_request *req,
               const char *input, size_t inlen, struct out *c,
               struct omni_exec_status *st);
/* execute_command, asserting that it ran; returns the output (free it). */
char *dk_cmd(struct omni_backend *b, const char *command, int *code);
/* Assert that command succeeds with exactly want as its output. */
void dk_cmd_is(struct omni_backend *b, const char *command, const char *want);

#endif
