/*
 * tests/core/test_backend.c - the backend core (backends/backend.c and the
 * implementer API of omni/backend_impl.h), on a fake backend that counts
 * its calls and fills only the slots a test asks for:
 *
 *   omni__backend_init    refuses bad operations tables (version,
 *                         mandatory slots, slots that come in pairs) and
 *                         project ids
 *   sessions              take their manager even when they fail, use
 *                         the none manager when given none
 *   omni_project_id_valid, omni__workspace_host_dir
 *   wrappers              -ENOTCONN before start and after shutdown,
 *                         -ENOSYS with a message naming the backend for a
 *                         missing slot, flush without a slot is 0
 *   session life          start without a start slot, a failing start,
 *                         the status slot overriding RUNNING, a state
 *                         manager whose load fails (the session is shut
 *                         down again) or whose save fails (shutdown still
 *                         stops and reports the save's error)
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core/session.h"
#include "helpers.h"
#include "omni/sys/backend_impl.h"
#include "omni/sys/state_impl.h"

TestSuite(backend_core, .fini = omni_test_leak_check, .timeout = 30);

/* --- a fake backend ------------------------------------------------------- */

struct fake {
	struct omni_backend base;
	int starts, shutdowns, stats, opens, releases, execs, exec_frees;
	int start_rc;
	enum omni_status reported;
};

struct fake_file {
	struct omni_file base;
};

struct fake_exec {
	struct omni_exec base;
};

static struct fake *fake_of(struct omni_backend *b)
{
	return (struct fake *)b;
}

static int fake_start(struct omni_backend *b)
{
	fake_of(b)->starts++;
	if (fake_of(b)->start_rc < 0)
		return omni_error_set(fake_of(b)->start_rc,
		                      "fake start failed");
	return 0;
}

static int fake_shutdown(struct omni_backend *b)
{
	fake_of(b)->shutdowns++;
	return 0;
}

static enum omni_status fake_status(struct omni_backend *b)
{
	return fake_of(b)->reported;
}

static void fake_destroy(struct omni_backend *b)
{
	omni__backend_finish(b);
	free(b);
}

static int fake_stat(struct omni_backend *b, const char *path, struct stat *st)
{
	fake_of(b)->stats++;
	memset(st, 0, sizeof(*st));
	if (*path)
		return omni_error_set(-ENOENT, "fake: %s: no such file", path);
	st->st_mode = S_IFDIR | 0755;
	return 0;
}

static int fake_open(struct omni_backend *b, const char *path, int flags,
                     mode_t mode, struct omni_file **out)
{
	struct fake_file *f = calloc(1, sizeof(*f));

	(void)path;
	(void)flags;
	(void)mode;
	cr_assert_not_null(f);
	fake_of(b)->opens++;
	f->base.backend = b;
	*out = &f->base;
	return 0;
}

static int fake_release(struct omni_file *f)
{
	fake_of(f->backend)->releases++;
	free(f);
	return 0;
}

static int fake_exec_start(struct omni_backend *b,
                           const struct omni_exec_request *req,
                           struct omni_exec **out)
{
	struct fake_exec *e = calloc(1, sizeof(*e));

	(void)req;
	cr_assert_not_null(e);
	fake_of(b)->execs++;
	e->base.backend = b;
	*out = &e->base;
	return 0;
}

static void fake_exec_free(struct omni_exec *e)
{
	fake_of(e->backend)->exec_frees++;
	free(e);
}

/* Only the mandatory slots plus open/release and exec_start/exec_free
 * (whose handles the wrappers need to free). */
static const struct omni_backend_ops minimal_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "fake",
	.stat = fake_stat,
	.destroy = fake_destroy,
	.open = fake_open,
	.release = fake_release,
	.exec_start = fake_exec_start,
	.exec_free = fake_exec_free,
};

static const struct omni_backend_ops full_life_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "fake",
	.start = fake_start,
	.shutdown = fake_shutdown,
	.status = fake_status,
	.stat = fake_stat,
	.destroy = fake_destroy,
};

static struct fake *fake_new(const struct omni_backend_ops *ops,
                             struct omni_state *state)
{
	struct fake *f = calloc(1, sizeof(*f));
	struct omni__session *s;

	cr_assert_not_null(f);
	f->reported = OMNI_STATUS_RUNNING;
	omni_assert_ok(omni__backend_init(&f->base, ops, "fake-project",
	                                  "/fakework", NULL));
	omni_assert_ok(omni__session_new(&s, &f->base, state));
	cr_assert_eq(omni__session_backend(s), &f->base);
	return f;
}

/* --- a fake state manager ------------------------------------------------- */

struct fake_state {
	struct omni_state base;
	int load_rc, save_rc;
	int loads, saves;
};

static int fs_load(struct omni_state *st, struct omni_backend *b)
{
	struct fake_state *s = (struct fake_state *)st;

	(void)b;
	s->loads++;
	if (s->load_rc < 0)
		return omni_error_set(s->load_rc, "fake load failed");
	return s->load_rc;
}

static int fs_save(struct omni_state *st, struct omni_backend *b,
                   const char *message, char **id_out)
{
	struct fake_state *s = (struct fake_state *)st;

	(void)b;
	(void)message;
	s->saves++;
	if (id_out)
		*id_out = NULL;
	if (s->save_rc < 0)
		return omni_error_set(s->save_rc, "fake save failed");
	return 0;
}

static int fs_list(struct omni_state *st, struct omni_backend *b,
                   struct omni_snapshot_list *out)
{
	(void)st;
	(void)b;
	(void)out;
	return 0;
}

static int fs_cleanup(struct omni_state *st, struct omni_backend *b)
{
	(void)st;
	(void)b;
	return 0;
}

/* How many managers were destroyed (they belong to the backend they are
 * given, even when its construction fails). */
static int fake_states_freed;

static void fs_destroy(struct omni_state *st)
{
	fake_states_freed++;
	free(st);
}

static const struct omni_state_ops fake_state_ops = {
	.version = OMNI_STATE_OPS_VERSION,
	.name = "fake",
	.load = fs_load,
	.save = fs_save,
	.list = fs_list,
	.cleanup = fs_cleanup,
	.destroy = fs_destroy,
};

static struct fake_state *fake_state_new(int load_rc, int save_rc)
{
	struct fake_state *s = calloc(1, sizeof(*s));

	cr_assert_not_null(s);
	s->base.ops = &fake_state_ops;
	s->load_rc = load_rc;
	s->save_rc = save_rc;
	return s;
}

/* --- construction --------------------------------------------------------- */

Test(backend_core, init_refuses_bad_tables)
{
	struct omni_backend_ops ops = minimal_ops;
	struct omni_backend b;

	omni_assert_err(omni__backend_init(&b, NULL, "p", "/w", NULL), -EINVAL);
	ops.version = 0;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	ops.version = OMNI_BACKEND_OPS_VERSION + 1;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	ops = minimal_ops;
	ops.stat = NULL;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	ops = minimal_ops;
	ops.destroy = NULL;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	omni_assert_err(
	    omni__backend_init(&b, &minimal_ops, "bad/id", "/w", NULL),
	    -EINVAL);
	omni_assert_ok(omni__backend_init(&b, &minimal_ops, "p", "/w", NULL));
	cr_assert_str_eq(b.workdir, "/w");
	cr_assert_eq(b.status, OMNI_STATUS_UNINITIALIZED);
	cr_assert_null(b.session);
	omni__backend_finish(&b);
}

Test(backend_core, paired_slots)
{
	static const struct {
		const char *pair;
		size_t off;
	} halves[] = {
		{ "open and release", offsetof(struct omni_backend_ops, open) },
		{ "open and release",
		  offsetof(struct omni_backend_ops, release) },
		{ "exec_start and exec_free",
		  offsetof(struct omni_backend_ops, exec_start) },
		{ "exec_start and exec_free",
		  offsetof(struct omni_backend_ops, exec_free) },
	};
	struct omni_backend_ops ops;
	struct omni_backend b;
	char want[256];

	for (size_t i = 0; i < sizeof(halves) / sizeof(*halves); i++) {
		/* One half of a pair missing. */
		ops = minimal_ops;
		memset((char *)&ops + halves[i].off, 0, sizeof(void (*)(void)));
		omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL),
		                -EINVAL);
		snprintf(want, sizeof(want),
		         "backend 'fake': bad operations table: %s come in "
		         "pairs (both set or both NULL)",
		         halves[i].pair);
		cr_assert_str_eq(omni_error_last(), want);
	}
	/* start without shutdown, and shutdown without start. */
	ops = full_life_ops;
	ops.shutdown = NULL;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	cr_assert_str_eq(omni_error_last(),
	                 "backend 'fake': bad operations table: start and "
	                 "shutdown come in pairs (both set or both NULL)");
	ops = full_life_ops;
	ops.start = NULL;
	omni_assert_err(omni__backend_init(&b, &ops, "p", "/w", NULL), -EINVAL);
	/* Both halves NULL is a backend without the feature. */
	ops = minimal_ops;
	ops.open = NULL;
	ops.release = NULL;
	ops.exec_start = NULL;
	ops.exec_free = NULL;
	omni_assert_ok(omni__backend_init(&b, &ops, "p", "/w", NULL));
	omni__backend_finish(&b);
	/* And a whole table is accepted. */
	omni_assert_ok(omni__backend_init(&b, &full_life_ops, "p", "/w", NULL));
	omni__backend_finish(&b);
}

Test(backend_core, sessions_take_their_manager)
{
	struct omni__session *s;
	struct fake *f;

	fake_states_freed = 0;
	/* Even when there is no backend to make a session of. */
	omni_assert_err(
	    omni__session_new(&s, NULL, &fake_state_new(0, 0)->base), -EINVAL);
	cr_assert_null(s);
	cr_assert_eq(fake_states_freed, 1);
	/* A backend of another session stays with it. */
	f = fake_new(&minimal_ops, NULL);
	omni_assert_err(
	    omni__session_new(&s, &f->base, &fake_state_new(0, 0)->base),
	    -EINVAL);
	cr_assert_eq(fake_states_freed, 2);
	/* Without a manager, the none manager is used. */
	cr_assert_str_eq(omni_state_name(omni_backend_state(&f->base)), "none");
	omni_backend_free(&f->base);
	/* A manager given to a session is freed with it, once. */
	f = fake_new(&minimal_ops, &fake_state_new(0, 0)->base);
	cr_assert_str_eq(omni_state_name(omni_backend_state(&f->base)), "fake");
	omni_backend_free(&f->base);
	cr_assert_eq(fake_states_freed, 3);
}

Test(backend_core, project_id_rules)
{
	static const char *const good[] = { "a", "A-Z_a-z.0-9", "...", "-x",
		                            ".hidden" };
	static const char *const bad[] = { "",    ".",    "..",  "a/b",
		                           "a b", "a\\b", "a:b", "ä" };
	char id[130];

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		cr_assert(omni_project_id_valid(good[i]), "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert_not(omni_project_id_valid(bad[i]), "%s", bad[i]);
	cr_assert_not(omni_project_id_valid(NULL));
	memset(id, 'x', 128);
	id[128] = '\0';
	cr_assert(omni_project_id_valid(id));
	id[128] = 'x';
	id[129] = '\0';
	cr_assert_not(omni_project_id_valid(id));
}

Test(backend_core, workspace_host_dir)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_backend b;
	char out[PATH_MAX], cwd[PATH_MAX], want[2 * PATH_MAX];

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	opts.data_path = "/abs/data";
	omni_assert_ok(
	    omni__backend_init(&b, &minimal_ops, "proj", "/w", &opts));
	omni_assert_ok(omni__workspace_host_dir(&b, out, sizeof(out)));
	cr_assert_str_eq(out, "/abs/data/proj");
	omni_assert_err(omni__workspace_host_dir(&b, out, 10), -ENAMETOOLONG);
	omni__backend_finish(&b);

	opts.data_path = "./rel";
	omni_assert_ok(
	    omni__backend_init(&b, &minimal_ops, "proj", "/w", &opts));
	omni_assert_ok(omni__workspace_host_dir(&b, out, sizeof(out)));
	snprintf(want, sizeof(want), "%s/rel/proj", cwd);
	cr_assert_str_eq(out, want);
	omni__backend_finish(&b);

	/* NULL: $OMNI_DATA_PATH, else ./data. */
	setenv("OMNI_DATA_PATH", "/from/env", 1);
	omni_assert_ok(
	    omni__backend_init(&b, &minimal_ops, "proj", "/w", NULL));
	omni_assert_ok(omni__workspace_host_dir(&b, out, sizeof(out)));
	cr_assert_str_eq(out, "/from/env/proj");
	unsetenv("OMNI_DATA_PATH");
	omni_assert_ok(omni__workspace_host_dir(&b, out, sizeof(out)));
	snprintf(want, sizeof(want), "%s/data/proj", cwd);
	cr_assert_str_eq(out, want);
	/* An empty variable counts as unset. */
	setenv("OMNI_DATA_PATH", "", 1);
	omni_assert_ok(omni__workspace_host_dir(&b, out, sizeof(out)));
	cr_assert_str_eq(out, want);
	omni__backend_finish(&b);
}

/* --- wrappers ------------------------------------------------------------- */

Test(backend_core, missing_slots_are_enosys)
{
	struct fake *f = fake_new(&minimal_ops, NULL);
	struct omni_backend *b = &f->base;
	struct omni_exec_request req = { .shell = "x" };
	struct omni_exec_status st;
	struct omni_file *file;
	struct omni_exec *e;
	struct statvfs sv;
	struct stat sb;
	char buf[8];

	/* Not started: every call says so, before looking at slots. */
	omni_assert_err(omni_vfs_stat(b, "", &sb), -ENOTCONN);
	cr_assert_not_null(strstr(omni_error_last(), "not started"));
	omni_assert_err(omni_vfs_mkdir(b, "d", 0755), -ENOTCONN);
	cr_assert_eq(f->stats, 0);

	/* No start slot: starting just marks it running. */
	omni_assert_ok(omni_backend_start(b));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_RUNNING);
	cr_assert_str_eq(omni_backend_name(b), "fake");
	cr_assert_str_eq(omni_backend_get_working_directory(b), "/fakework");
	cr_assert_eq(omni_vfs_caps(b), 0);

	omni_assert_ok(omni_vfs_stat(b, "", &sb));
	cr_assert_eq(f->stats, 1);
	omni_assert_err(omni_vfs_readdir(b, "", NULL, NULL), -ENOSYS);
	cr_assert_str_eq(omni_error_last(),
	                 "fake backend: readdir is not supported");
	omni_assert_err(omni_vfs_mkdir(b, "d", 0755), -ENOSYS);
	omni_assert_err(omni_vfs_rmdir(b, "d"), -ENOSYS);
	omni_assert_err(omni_vfs_unlink(b, "f"), -ENOSYS);
	omni_assert_err(omni_vfs_rename(b, "a", "b", 0), -ENOSYS);
	omni_assert_err(omni_vfs_symlink(b, "t", "l"), -ENOSYS);
	omni_assert_err(omni_vfs_readlink(b, "l", buf, sizeof(buf)), -ENOSYS);
	omni_assert_err(omni_vfs_link(b, "a", "b"), -ENOSYS);
	omni_assert_err(omni_vfs_chmod(b, "a", 0600), -ENOSYS);
	omni_assert_err(omni_vfs_chown(b, "a", 0, 0), -ENOSYS);
	omni_assert_err(omni_vfs_utimens(b, "a", NULL), -ENOSYS);
	omni_assert_err(omni_vfs_truncate(b, "a", 0), -ENOSYS);
	omni_assert_err(omni_vfs_statfs(b, &sv), -ENOSYS);
	omni_assert_err(omni_vfs_watch(b, NULL, NULL), -ENOSYS);

	/* File handles: the missing slots of an open file. */
	omni_assert_ok(omni_vfs_open(b, "f", O_RDONLY, 0, &file));
	omni_assert_err(omni_vfs_read(file, buf, 1, 0), -ENOSYS);
	omni_assert_err(omni_vfs_write(file, "x", 1, 0), -ENOSYS);
	omni_assert_err(omni_vfs_fstat(file, &sb), -ENOSYS);
	omni_assert_err(omni_vfs_ftruncate(file, 0), -ENOSYS);
	omni_assert_err(omni_vfs_fsync(file, false), -ENOSYS);
	omni_assert_err(omni_vfs_flock(file, 0), -ENOSYS);
	omni_assert_err(omni_vfs_lock(file, 0, NULL), -ENOSYS);
	omni_assert_err(omni_vfs_fallocate(file, 0, 0, 1), -ENOSYS);
	omni_assert_err(omni_vfs_file_fd(file), -ENOSYS);
	/* Nothing buffered, nothing to report. */
	omni_assert_ok(omni_vfs_flush(file));
	omni_assert_ok(omni_vfs_release(file));
	cr_assert_eq(f->releases, 1);

	/* The generic API on top: read_file needs fstat. */
	char *data;
	omni_assert_err(omni_backend_read_file(b, "f", &data, NULL), -ENOSYS);
	cr_assert_eq(f->opens, f->releases, "handles leaked");
	struct omni_dir_list l;
	omni_assert_err(omni_backend_list_directory(b, "", false, &l), -ENOSYS);

	/* Command handles. */
	omni_assert_ok(omni_vfs_exec_start(b, &req, &e));
	omni_assert_err(omni_vfs_exec_wait(e, NULL, NULL, &st), -ENOSYS);
	omni_assert_err(omni_vfs_exec_input(e, "x", 1), -ENOSYS);
	omni_assert_err(omni_vfs_exec_signal(e, 15), -ENOSYS);
	omni_assert_err(omni_vfs_exec_resize(e, 1, 1), -ENOSYS);
	omni_vfs_exec_free(e);
	cr_assert_eq(f->exec_frees, 1);
	struct omni_command_result res;
	omni_assert_err(omni_backend_execute_command(b, "x", 1, &res), -ENOSYS);
	cr_assert_eq(f->exec_frees, 2, "execute_command freed its handle");

	/* After shutdown (no shutdown slot), not connected again. */
	omni_assert_ok(omni_backend_shutdown(b));
	cr_assert_eq(omni_backend_get_status(b), OMNI_STATUS_STOPPED);
	omni_assert_err(omni_vfs_stat(b, "", &sb), -ENOTCONN);
	cr_assert_not_null(strstr(omni_error_last(), "stopped"));
	omni_backend_free(b);
}

/* --- the life of a session ------------------------------------------------ */

Test(backend_core, failing_start)
{
	struct fake *f = fake_new(&full_life_ops, NULL);

	f->start_rc = -EIO;
	omni_assert_err(omni_backend_start(&f->base), -EIO);
	cr_assert_str_eq(omni_error_last(), "fake start failed");
	cr_assert_eq(omni_backend_get_status(&f->base),
	             OMNI_STATUS_UNINITIALIZED);
	f->start_rc = 0;
	omni_assert_ok(omni_backend_start(&f->base));
	cr_assert_eq(f->starts, 2);
	omni_backend_free(&f->base);
}

Test(backend_core, status_slot_and_restart)
{
	struct fake *f = fake_new(&full_life_ops, NULL);

	/* The status slot is asked only while backend.c thinks RUNNING. */
	f->reported = OMNI_STATUS_STOPPED;
	cr_assert_eq(omni_backend_get_status(&f->base),
	             OMNI_STATUS_UNINITIALIZED);
	omni_assert_ok(omni_backend_start(&f->base));
	cr_assert_eq(omni_backend_get_status(&f->base), OMNI_STATUS_STOPPED);
	/* A session that died behind our back is started again. */
	omni_assert_ok(omni_backend_start(&f->base));
	cr_assert_eq(f->starts, 2);
	f->reported = OMNI_STATUS_RUNNING;
	omni_assert_ok(omni_backend_start(&f->base));
	cr_assert_eq(f->starts, 2, "a running session is not restarted");
	omni_assert_ok(omni_backend_shutdown(&f->base));
	cr_assert_eq(f->shutdowns, 1);
	omni_assert_ok(omni_backend_shutdown(&f->base));
	cr_assert_eq(f->shutdowns, 1);
	omni_backend_free(&f->base);
}

Test(backend_core, load_failure_stops_the_session)
{
	struct fake_state *s = fake_state_new(-EIO, 0);
	struct fake *f = fake_new(&full_life_ops, &s->base);

	omni_assert_err(omni_backend_start(&f->base), -EIO);
	cr_assert_str_eq(omni_error_last(),
	                 "loading the latest snapshot: fake load failed");
	cr_assert_eq(s->loads, 1);
	cr_assert_eq(f->starts, 1);
	cr_assert_eq(f->shutdowns, 1, "the half-started session was stopped");
	cr_assert_eq(omni_backend_get_status(&f->base), OMNI_STATUS_STOPPED);
	/* No save on the way out of a session that never ran. */
	omni_backend_free(&f->base);
}

Test(backend_core, load_and_save_go_through_the_manager)
{
	struct fake_state *s = fake_state_new(1, 0);
	struct fake *f = fake_new(&full_life_ops, &s->base);
	struct omni_snapshot_list l;

	omni_assert_ok(omni_backend_start(&f->base));
	cr_assert_eq(s->loads, 1);
	cr_assert_eq(omni_backend_state(&f->base), &s->base);
	cr_assert_eq(omni_backend_load_latest_snapshot(&f->base), 1);
	omni_assert_ok(omni_backend_list_snapshots(&f->base, &l));
	omni_assert_ok(omni_backend_save_snapshot(&f->base, "m", NULL));
	cr_assert_eq(s->saves, 1);
	omni_assert_ok(omni_backend_shutdown(&f->base));
	cr_assert_eq(s->saves, 2, "shutdown saves");
	omni_backend_free(&f->base);
}

Test(backend_core, save_failure_on_shutdown)
{
	struct fake_state *s = fake_state_new(0, -EIO);
	struct fake *f = fake_new(&full_life_ops, &s->base);

	omni_assert_ok(omni_backend_start(&f->base));
	omni_assert_err(omni_backend_shutdown(&f->base), -EIO);
	cr_assert_str_eq(omni_error_last(),
	                 "saving the snapshot: fake save failed");
	/* Stopped all the same. */
	cr_assert_eq(f->shutdowns, 1);
	cr_assert_eq(omni_backend_get_status(&f->base), OMNI_STATUS_STOPPED);
	cr_assert_eq(s->saves, 1);
	/* free does not save a stopped session again (fs_save would count,
	 * but s is gone with the backend: ASan checks nothing touches it). */
	omni_backend_free(&f->base);
}
