/*
 * tests/state/test_state_gcs.c - the gcs state manager against the local
 * GCS-compatible server (tests/servers/gcs, checked against the official
 * client by tests/conformance/gcs), with its fault hooks: 5xx replies,
 * connections cut in the middle of an upload, corrupted downloads, a
 * missing bucket; and against a small OAuth token server
 * (tests/servers/gcs-token) for the service-account, authorized-user,
 * metadata-server and token-variable credentials.
 *
 * Each test starts its own servers on port 0 and stops them by pid, and
 * has its own temp directory and project id. Retries wait 10 ms here
 * instead of a second.
 *
 * Pairings (state_helpers.h): the round trip and the real-mount round
 * trip (omnifs --state gcs://BUCKET/PREFIX) run once per backend.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "helpers.h"
#include "core/http.h"
#include "mount_helpers.h"
#include "state/snapshot.h"
#include "state_helpers.h"

#define BUCKET "omnifs-test-bucket"
#define PREFIX "pre/fix"
#define TOKEN  "ya29.test-token"

static struct {
	char tmp[PATH_MAX];
	char project[64];
	struct omni_backend *b[4];
	struct test_server gcs, token;
	struct mount_fx m[2];
} fx;

static void setup(void)
{
	char home[PATH_MAX], run[PATH_MAX];

	memset(&fx, 0, sizeof(fx));
	omni_test_mkdtemp(fx.tmp, sizeof(fx.tmp));
	omni_test_project_id(fx.project, sizeof(fx.project), "gc");
	omni_test_fmt(home, sizeof(home), "%s/home", fx.tmp);
	omni_test_fmt(run, sizeof(run), "%s/run", fx.tmp);
	cr_assert(mkdir(home, 0700) == 0 && mkdir(run, 0700) == 0);
	/* Hermetic: no credentials or settings of the caller. */
	setenv("HOME", home, 1);
	setenv("OMNI_RUNTIME_DIR", run, 1);
	static const char *const clear[] = {
		"GOOGLE_APPLICATION_CREDENTIALS",
		"GOOGLE_OAUTH_ACCESS_TOKEN",
		"CLOUDSDK_AUTH_ACCESS_TOKEN",
		"CLOUDSDK_CONFIG",
		"GCE_METADATA_HOST",
		"GCE_METADATA_IP",
		"OMNIAGENTS_GCS_BUCKET",
		"OMNIAGENTS_BUCKET_NAME",
		"BUCKET_OMNIAGENTS",
		"OMNIAGENTS_GCS_PREFIX",
		"OMNIAGENTS_GCS_ENDPOINT",
		"STORAGE_EMULATOR_HOST",
		NULL,
	};
	for (size_t i = 0; clear[i]; i++)
		unsetenv(clear[i]);
	omni_assert_ok(omni_global_init());
}

static void teardown(void)
{
	for (int i = 0; i < 4; i++)
		omni_backend_free(fx.b[i]);
	for (int i = 0; i < 2; i++)
		mount_down(&fx.m[i]);
	state_pairings_finish();
	test_server_stop(&fx.gcs);
	test_server_stop(&fx.token);
	omni_test_rm_rf(fx.tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

TestSuite(state_gcs, .init = setup, .fini = teardown, .timeout = 120);

/* --- helpers
 * ------------------------------------------------------------------ */

/* The GCS server with the bucket (and a required token, or NULL), used
 * as an emulator (no credentials) unless a token is required. */
static void start_gcs(const char *token)
{
	const char *args[] = { "--bucket", BUCKET,
		               token ? "--require-token" : NULL, token, NULL };

	test_server_start(&fx.gcs, "tests/servers/gcs/server.js", args);
	if (!token)
		setenv("STORAGE_EMULATOR_HOST", fx.gcs.url, 1);
}

static struct omni_state *gcs_state_with(const char *bucket,
                                         const char *endpoint)
{
	struct omni_state_gcs_options o = OMNI_STATE_GCS_OPTIONS_INIT;
	struct omni_state *st;

	o.bucket = bucket;
	o.prefix = PREFIX;
	o.endpoint = endpoint;
	o.retry_base_ms = 10;
	o.max_retries = 3;
	omni_assert_ok(omni_state_gcs(&st, &o));
	return st;
}

static struct omni_state *gcs_state(void)
{
	return gcs_state_with(BUCKET, NULL);
}

static const char *data_dir(const char *name)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4];

	omni_test_fmt(p, PATH_MAX, "%s/%s", fx.tmp, name);
	return p;
}

static struct omni_backend *start(int i, const char *data,
                                  struct omni_state *st)
{
	fx.b[i] = state_backend_start(state_pairing("local"), fx.project,
	                              data_dir(data), st);
	return fx.b[i];
}

static void put(struct omni_backend *b, const char *path, const char *text)
{
	omni_assert_ok(omni_backend_write_file(b, path, text, strlen(text)));
}

static char *get(struct omni_backend *b, const char *path)
{
	char *data;

	omni_assert_ok(omni_backend_read_file(b, path, &data, NULL));
	return data;
}

static void hook(const char *what, const char *json)
{
	char url[128];

	omni_test_fmt(url, sizeof(url), "%s/_test/%s", fx.gcs.url, what);
	cr_assert_eq(test_http("POST", url, json, NULL), 200, "/_test/%s",
	             what);
}

/* Requests of a kind ("PUT upload:resumable-chunk") the server saw. */
static int seen(const char *kind)
{
	char url[128], *body;

	omni_test_fmt(url, sizeof(url), "%s/_test/stats", fx.gcs.url);
	cr_assert_eq(test_http("GET", url, NULL, &body), 200);
	cJSON *j = cJSON_Parse(body);
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(j, "requests"), kind);
	int v = cJSON_IsNumber(n) ? n->valueint : 0;
	cJSON_Delete(j);
	free(body);
	return v;
}

/* Names of the objects in the bucket, sorted, one per line. */
static char *object_names(void)
{
	char url[128], *body, *out = strdup("");

	omni_test_fmt(url, sizeof(url), "%s/_test/objects?bucket=%s",
	              fx.gcs.url, BUCKET);
	cr_assert_eq(test_http("GET", url, NULL, &body), 200);
	cJSON *j = cJSON_Parse(body);
	const cJSON *o;
	cJSON_ArrayForEach(o, cJSON_GetObjectItemCaseSensitive(j, "objects"))
	{
		const char *name = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(o, "name"));
		char *next;
		cr_assert(asprintf(&next, "%s%s\n", out, name) > 0);
		free(out);
		out = next;
	}
	cJSON_Delete(j);
	free(body);
	return out;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static bool is_snapshot_id(const char *id)
{
	return id && strlen(id) == 22 && omni__snap_time(id) > 1600000000;
}

/* Put raw bytes into the bucket as name. */
static void upload_raw(const char *name, const void *data, size_t len)
{
	test_gcs_upload(&fx.gcs, BUCKET, name, data, len);
}

static char *pending_dir(const char *data)
{
	static char p[PATH_MAX];

	omni_test_fmt(p, sizeof(p), "%s/%s/.omnifs-state/%s.gcs/pending",
	              fx.tmp, data, fx.project);
	return p;
}

/* Files in a host directory matching *SUFFIX. */
static int count_files(const char *dir, const char *suffix)
{
	int st;
	char *out = sh_out(&st, NULL, "ls '%s' 2>/dev/null | grep -c '%s$'",
	                   dir, suffix);
	int n = atoi(out);

	free(out);
	return n;
}

/* A workspace that exercises what an archive keeps. */
static void fill(struct omni_backend *b)
{
	static char blob[300 * 1024];

	state_random_bytes(blob, sizeof(blob), 11);
	put(b, "README.md", "# project\n");
	put(b, "src/main.c", "int main(void) { return 0; }\n");
	put(b, "bin/run.sh", "#!/bin/sh\necho run\n");
	omni_assert_ok(omni_vfs_chmod(b, "bin/run.sh", 0755));
	put(b, "secret.txt", "mode 600\n");
	omni_assert_ok(omni_vfs_chmod(b, "secret.txt", 0600));
	omni_assert_ok(
	    omni_backend_write_file(b, "data/blob.bin", blob, sizeof(blob)));
	omni_assert_ok(omni_vfs_symlink(b, "src/main.c", "link"));
	omni_assert_ok(omni_vfs_symlink(b, "nowhere", "dangling"));
	put(b, ".gitignore", "*.log\n");
	put(b, "app.log", "ignored by *.log\n");
	put(b, "node_modules/x/index.js", "ignored by default\n");
	put(b, "__pycache__/m.pyc", "ignored by default\n");
	put(b, ".venv/bin/python", "ignored by default\n");
	put(b, "proj/.git/HEAD", "ref: refs/heads/main\n");
	put(b, "proj/file.txt", "in a nested repository\n");
	omni_assert_ok(omni_backend_create_directory(b, "empty", false));
}

static bool has_prefix(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 &&
	       (path[n] == '\0' || path[n] == '/');
}

/* What an archive of fill() leaves out (it keeps .git and empty dirs). */
static bool gcs_drops(const char *p)
{
	static const char *const dropped[] = { "app.log", "node_modules",
		                               "__pycache__", ".venv", NULL };

	for (size_t i = 0; dropped[i]; i++)
		if (has_prefix(p, dropped[i]))
			return true;
	return false;
}

/* --- round trips
 * ---------------------------------------------------------------- */

static void round_trip(const struct state_pairing *p)
{
	char *before, *after, *names, *id = NULL, want[256];

	state_require(p);
	start_gcs(NULL);
	fx.b[0] =
	    state_backend_start(p, fx.project, data_dir("a"), gcs_state());
	fill(fx.b[0]);
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "first", &id));
	cr_assert(is_snapshot_id(id), "id %s", id ? id : "(null)");
	names = object_names();
	omni_test_fmt(want, sizeof(want), PREFIX "/%s/%s.tar.gz\n", fx.project,
	              id);
	cr_assert_str_eq(names, want);
	free(names);
	before = state_tree_text(fx.b[0], gcs_drops);
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	omni_backend_free(fx.b[0]);
	fx.b[0] = NULL;

	fx.b[1] =
	    state_backend_start(p, fx.project, data_dir("b"), gcs_state());
	after = state_tree_text(fx.b[1], NULL);
	cr_assert_str_eq(after, before);
	cr_assert(strstr(after, "f 755 bin/run.sh"), "%s", after);
	cr_assert(strstr(after, "f 600 secret.txt"), "%s", after);
	cr_assert(strstr(after, "l dangling -> nowhere"), "%s", after);
	cr_assert(strstr(after, "d empty"), "%s", after);
	cr_assert(strstr(after, "proj/.git/HEAD"), "%s", after);
	free(before);
	free(after);
	free(id);
}

Test(state_gcs, round_trip_local)
{
	char a[PATH_MAX], b[PATH_MAX];
	struct stat sa, sb;

	round_trip(state_pairing("local"));
	/* Modification times travel too. */
	omni_test_fmt(a, sizeof(a), "%s/a/%s/src/main.c", fx.tmp, fx.project);
	omni_test_fmt(b, sizeof(b), "%s/b/%s/src/main.c", fx.tmp, fx.project);
	cr_assert(stat(a, &sa) == 0 && stat(b, &sb) == 0);
	cr_assert_eq(sa.st_mtim.tv_sec, sb.st_mtim.tv_sec);
}

ParameterizedTestParameters(state_gcs, round_trip_each_backend)
{
	return state_pairing_params();
}

ParameterizedTest(struct state_param *param, state_gcs, round_trip_each_backend,
                  .timeout = 180)
{
	round_trip(state_pairing(param->backend));
}

Test(state_gcs, nothing_changed_uploads_nothing)
{
	char *id = (char *)1, *names;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "one", NULL));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "two", &id));
	cr_assert_null(id);
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	free(names);
	/* Loaded elsewhere and left alone: still nothing new. */
	start(1, "b", gcs_state());
	omni_assert_ok(omni_backend_shutdown(fx.b[1]));
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	free(names);
	cr_assert_eq(seen("POST upload:multipart"), 1);
}

Test(state_gcs, the_newest_name_is_loaded_even_a_foreign_archive)
{
	char dir[PATH_MAX], archive[PATH_MAX], name[256], *data, *text;
	size_t len;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "f.txt", "v1");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "1", NULL));
	put(fx.b[0], "f.txt", "v2");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "2", NULL));
	start(1, "b", gcs_state());
	text = get(fx.b[1], "f.txt");
	cr_assert_str_eq(text, "v2");
	free(text);

	/* An archive as the documented Python manager makes them (plain
	 * files, no directory entries), under a later name. */
	omni_test_fmt(dir, sizeof(dir), "%s/py", fx.tmp);
	omni_test_fmt(archive, sizeof(archive), "%s/py.tar.gz", fx.tmp);
	cr_assert(sh_in(NULL,
	                "mkdir -p '%s/sub' && printf 'from python' > "
	                "'%s/f.txt' && printf 'deep' > '%s/sub/d.txt' && "
	                "tar czf '%s' -C '%s' f.txt sub/d.txt",
	                dir, dir, dir, archive, dir) == 0);
	data = omni_test_read_host(archive, &len);
	omni_test_fmt(name, sizeof(name),
	              PREFIX "/%s/29991231_235959_999999.tar.gz", fx.project);
	upload_raw(name, data, len);
	free(data);
	start(2, "c", gcs_state());
	text = get(fx.b[2], "f.txt");
	cr_assert_str_eq(text, "from python");
	free(text);
	text = get(fx.b[2], "sub/d.txt");
	cr_assert_str_eq(text, "deep");
	free(text);
}

Test(state_gcs, list_is_newest_first_with_messages)
{
	struct omni_snapshot_list l;
	char *ids[3];

	start_gcs(NULL);
	start(0, "a", gcs_state());
	for (int i = 0; i < 3; i++) {
		char msg[16], body[16];
		snprintf(msg, sizeof(msg), "m%d", i + 1);
		snprintf(body, sizeof(body), "v%d", i);
		put(fx.b[0], "f.txt", body);
		omni_assert_ok(
		    omni_backend_save_snapshot(fx.b[0], msg, &ids[i]));
	}
	/* Paging: three entries per page. */
	hook("config", "{\"listPageSize\": 2}");
	start(1, "b", gcs_state());
	omni_assert_ok(omni_backend_list_snapshots(fx.b[1], &l));
	cr_assert_eq(l.count, 3);
	for (int i = 0; i < 3; i++) {
		char msg[16];
		snprintf(msg, sizeof(msg), "m%d", 3 - i);
		cr_assert_str_eq(l.items[i].message, msg);
		cr_assert_str_eq(l.items[i].id, ids[2 - i]);
		cr_assert_eq(l.items[i].time, omni__snap_time(ids[2 - i]));
	}
	omni_snapshot_list_finish(&l);
	for (int i = 0; i < 3; i++)
		free(ids[i]);
	cr_assert_geq(seen("GET list"), 2);
}

Test(state_gcs, large_archives_upload_resumably_in_chunks)
{
	struct omni_state_gcs_options o = OMNI_STATE_GCS_OPTIONS_INIT;
	struct omni_state *st;
	size_t n = 1024 * 1024 + 77;
	char *big = malloc(n), *back;
	size_t len;

	cr_assert(big);
	state_random_bytes(big, n, 5);
	start_gcs(NULL);
	o.bucket = BUCKET;
	o.resumable_threshold = 256 * 1024;
	o.chunk_size = 256 * 1024;
	o.retry_base_ms = 10;
	omni_assert_ok(omni_state_gcs(&st, &o));
	start(0, "a", st);
	omni_assert_ok(omni_backend_write_file(fx.b[0], "big.bin", big, n));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "big", NULL));
	cr_assert_eq(seen("POST upload:resumable-init"), 1);
	cr_assert_geq(seen("PUT upload:resumable-chunk"), 4);
	cr_assert_eq(seen("POST upload:multipart"), 0);
	start(1, "b", gcs_state_with(BUCKET, NULL));
	/* (That manager's prefix differs: it finds nothing.) */
	cr_assert_eq(omni_backend_file_exists(fx.b[1], "big.bin"),
	             OMNI_FILE_NONE);
	omni_assert_ok(omni_state_gcs(&st, &o));
	start(2, "c", st);
	omni_assert_ok(omni_backend_read_file(fx.b[2], "big.bin", &back, &len));
	cr_assert_eq(len, n);
	cr_assert(memcmp(back, big, n) == 0);
	free(back);
	free(big);
}

Test(state_gcs, a_cut_resumable_upload_resumes_where_it_stopped)
{
	struct omni_state_gcs_options o = OMNI_STATE_GCS_OPTIONS_INIT;
	struct omni_state *st;
	size_t n = 900 * 1024;
	char *big = malloc(n), *back;
	size_t len;

	cr_assert(big);
	state_random_bytes(big, n, 6);
	start_gcs(NULL);
	o.bucket = BUCKET;
	o.resumable_threshold = 256 * 1024;
	o.chunk_size = 512 * 1024;
	o.retry_base_ms = 10;
	omni_assert_ok(omni_state_gcs(&st, &o));
	start(0, "a", st);
	omni_assert_ok(omni_backend_write_file(fx.b[0], "big.bin", big, n));
	hook("cutoff", "{\"count\": 1, \"match\": \"resumable-chunk\", "
	               "\"afterBytes\": 100000}");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "cut", NULL));
	cr_assert_geq(seen("PUT upload:resumable-status"), 1);
	cr_assert_eq(seen("POST upload:resumable-init"), 1,
	             "resumed, not "
	             "restarted");
	omni_assert_ok(omni_state_gcs(&st, &o));
	start(1, "b", st);
	omni_assert_ok(omni_backend_read_file(fx.b[1], "big.bin", &back, &len));
	cr_assert_eq(len, n);
	cr_assert(memcmp(back, big, n) == 0);
	free(back);
	free(big);
}

Test(state_gcs, a_cut_small_upload_is_sent_again)
{
	char *names;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "a");
	hook("cutoff", "{\"count\": 1, \"match\": \"upload:multipart\", "
	               "\"afterBytes\": 300}");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "cut", NULL));
	cr_assert_eq(seen("POST upload:multipart"), 2);
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	free(names);
}

Test(state_gcs, server_errors_are_retried)
{
	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "a");
	hook("fail", "{\"status\": 503, \"count\": 2, \"match\": \"upload\"}");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "after 503s", NULL));
	cr_assert_eq(seen("POST upload:multipart"), 3);
	hook("fail", "{\"status\": 429, \"count\": 1, \"match\": \"list\"}");
	start(1, "b", gcs_state());
	char *text = get(fx.b[1], "a.txt");
	cr_assert_str_eq(text, "a");
	free(text);
}

Test(state_gcs, a_failed_upload_keeps_the_archive_for_the_next_save)
{
	char *id = NULL, *names, path[PATH_MAX], *text;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "work.txt", "important");
	hook("fail",
	     "{\"status\": 503, \"count\": 100, \"match\": \"upload\"}");
	omni_assert_err(omni_backend_save_snapshot(fx.b[0], "kept", &id),
	                -EAGAIN);
	cr_assert_null(id);
	cr_assert(strstr(omni_error_last(), "HTTP 503"), "%s",
	          omni_error_last());
	cr_assert(
	    strstr(omni_error_last(), "will be uploaded by the next save"),
	    "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), pending_dir("a")), "%s",
	          omni_error_last());
	cr_assert_eq(count_files(pending_dir("a"), ".tar.gz"), 1);
	text = get(fx.b[0], "work.txt");
	cr_assert_str_eq(text, "important");
	free(text);
	/* Unmounting still completes (with the error); the files stay. */
	cr_assert_lt(omni_backend_shutdown(fx.b[0]), 0);
	omni_test_fmt(path, sizeof(path), "%s/a/%s/work.txt", fx.tmp,
	              fx.project);
	cr_assert(omni_test_host_exists(path));
	cr_assert_eq(count_files(pending_dir("a"), ".tar.gz"), 1,
	             "the same content is not archived twice");
	omni_backend_free(fx.b[0]);
	fx.b[0] = NULL;

	/* The bucket answers again: the next save uploads what was kept,
	 * although nothing changed since. */
	hook("reset", "{\"faults\": true}");
	start(1, "a", gcs_state());
	omni_assert_ok(omni_backend_save_snapshot(fx.b[1], "later", &id));
	cr_assert(is_snapshot_id(id), "%s", id ? id : "(null)");
	free(id);
	cr_assert_eq(count_files(pending_dir("a"), ".tar.gz"), 0);
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	free(names);
	start(2, "b", gcs_state());
	text = get(fx.b[2], "work.txt");
	cr_assert_str_eq(text, "important");
	free(text);
}

Test(state_gcs, a_corrupted_download_is_detected)
{
	struct omni_backend *b;
	char *text;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "the real content");
	omni_assert_ok(omni_backend_shutdown(fx.b[0]));

	/* Once: noticed, downloaded again, loaded. */
	hook("corrupt", "{\"count\": 1}");
	start(1, "b", gcs_state());
	cr_assert_eq(seen("GET download"), 2);
	text = get(fx.b[1], "a.txt");
	cr_assert_str_eq(text, "the real content");
	free(text);

	/* Always: the start fails and the workspace is untouched. */
	struct omni_backend *pre = state_backend_start(
	    state_pairing("local"), fx.project, data_dir("c"), NULL);
	put(pre, "mine.txt", "local");
	omni_backend_free(pre);
	hook("corrupt", "{\"count\": 100}");
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("c"), gcs_state());
	fx.b[2] = b;
	cr_assert_eq(rc, -EIO, "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "corrupted"), "%s",
	          omni_error_last());
	omni_backend_free(b);
	fx.b[2] = state_backend_start(state_pairing("local"), fx.project,
	                              data_dir("c"), NULL);
	text = state_tree_text(fx.b[2], NULL);
	cr_assert(strncmp(text, "f 644 mine.txt ", 15) == 0 &&
	              !strchr(text, '\n')[1],
	          "%s", text);
	free(text);
}

Test(state_gcs, a_missing_bucket_is_a_clear_error_and_loses_nothing)
{
	struct omni_backend *b;
	char *text;

	start_gcs(NULL);
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("a"),
	                           gcs_state_with("no-such-bucket", NULL));
	fx.b[0] = b;
	cr_assert_eq(rc, -ENOENT, "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "no-such-bucket"), "%s",
	          omni_error_last());
	cr_assert(strstr(omni_error_last(), "bucket"), "%s", omni_error_last());

	/* A bucket that goes away during the session. */
	start(1, "b", gcs_state());
	put(fx.b[1], "work.txt", "important");
	char url[256];
	omni_test_fmt(url, sizeof(url), "%s/storage/v1/b/%s", fx.gcs.url,
	              BUCKET);
	cr_assert_eq(test_http("DELETE", url, NULL, NULL), 204);
	cr_assert_eq(omni_backend_save_snapshot(fx.b[1], "x", NULL), -ENOENT);
	cr_assert(strstr(omni_error_last(), BUCKET), "%s", omni_error_last());
	cr_assert_eq(count_files(pending_dir("b"), ".tar.gz"), 1);
	text = get(fx.b[1], "work.txt");
	cr_assert_str_eq(text, "important");
	free(text);
}

Test(state_gcs, cleanup_deletes_only_this_project)
{
	char *names, other[64], home[PATH_MAX];
	struct omni_backend *b;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "a");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "1", NULL));
	put(fx.b[0], "a.txt", "b");
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "2", NULL));
	omni_test_project_id(other, sizeof(other), "other");
	b = state_backend_start(state_pairing("local"), other, data_dir("a"),
	                        gcs_state());
	fx.b[1] = b;
	put(b, "o.txt", "o");
	omni_assert_ok(omni_backend_save_snapshot(b, "other", NULL));

	omni_assert_ok(
	    omni_state_cleanup(omni_backend_state(fx.b[0]), fx.b[0]));
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	cr_assert(strstr(names, other), "%s", names);
	free(names);
	omni_test_fmt(home, sizeof(home), "%s/a/.omnifs-state/%s.gcs", fx.tmp,
	              fx.project);
	cr_assert(!omni_test_host_exists(home));
	omni_assert_ok(
	    omni_state_cleanup(omni_backend_state(fx.b[0]), fx.b[0]));
}

Test(state_gcs, clean_leaves_git_and_an_empty_readme)
{
	start_gcs(NULL);
	start(0, "a", gcs_state());
	put(fx.b[0], "a.txt", "a");
	put(fx.b[0], ".git/HEAD", "ref: refs/heads/main\n");
	omni_assert_ok(omni_state_clean(omni_backend_state(fx.b[0]), fx.b[0]));
	start(1, "b", gcs_state());
	char *text = state_tree_text(fx.b[1], NULL);
	cr_assert(strstr(text, "README.md") && strstr(text, ".git/HEAD") &&
	              !strstr(text, "a.txt"),
	          "%s", text);
	free(text);
}

struct saver {
	struct omni_backend *b;
	int n, rc;
	char *id;
	char msg[512];
};

static void *save_thread(void *arg)
{
	struct saver *s = arg;
	char name[32];

	snprintf(name, sizeof(name), "t%d.txt", s->n);
	s->rc = omni_backend_write_file(s->b, name, name, strlen(name));
	if (s->rc == 0)
		s->rc = omni_backend_save_snapshot(s->b, name, &s->id);
	if (s->rc < 0)
		snprintf(s->msg, sizeof(s->msg), "%s", omni_error_last());
	return NULL;
}

Test(state_gcs, concurrent_saves_do_not_corrupt_anything)
{
	struct saver s[4];
	pthread_t t[4];
	char *names, *text;

	start_gcs(NULL);
	start(0, "a", gcs_state());
	/* Another session on the same data folder: its own manager, the
	 * same lock file. */
	start(1, "a", gcs_state());
	for (int i = 0; i < 4; i++) {
		s[i] = (struct saver){ .b = fx.b[i % 2], .n = i };
		cr_assert(pthread_create(&t[i], NULL, save_thread, &s[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(s[i].rc, 0, "saver %d: %s", i, s[i].msg);
		free(s[i].id);
	}
	names = object_names();
	cr_assert_geq(count_lines(names), 1);
	cr_assert_leq(count_lines(names), 4);
	free(names);
	/* The newest holds all four files. */
	start(2, "b", gcs_state());
	text = state_tree_text(fx.b[2], NULL);
	for (int i = 0; i < 4; i++) {
		char name[32];
		snprintf(name, sizeof(name), "t%d.txt", i);
		cr_assert(strstr(text, name), "%s missing: %s", name, text);
	}
	free(text);
}

/* An archive with one entry named name. */
static void make_archive(const char *path, const char *name)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();

	cr_assert(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	cr_assert(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
	cr_assert(archive_write_open_filename(a, path) == ARCHIVE_OK);
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, 4);
	cr_assert(archive_write_header(a, e) == ARCHIVE_OK);
	cr_assert(archive_write_data(a, "evil", 4) == 4);
	archive_entry_free(e);
	cr_assert(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
}

Test(state_gcs, unsafe_or_broken_archives_are_refused_before_writing)
{
	char archive[PATH_MAX], name[256], *data, outside[PATH_MAX];
	struct omni_backend *b;
	size_t len;

	start_gcs(NULL);
	omni_test_fmt(archive, sizeof(archive), "%s/evil.tar.gz", fx.tmp);
	make_archive(archive, "../../evil.txt");
	data = omni_test_read_host(archive, &len);
	omni_test_fmt(name, sizeof(name),
	              PREFIX "/%s/20300101_000000_000000.tar.gz", fx.project);
	upload_raw(name, data, len);
	free(data);
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("a"), gcs_state());
	fx.b[0] = b;
	cr_assert_eq(rc, -EINVAL, "%s", omni_error_last());
	cr_assert(strstr(omni_error_last(), "unsafe name"), "%s",
	          omni_error_last());
	omni_test_fmt(outside, sizeof(outside), "%s/evil.txt", fx.tmp);
	cr_assert(!omni_test_host_exists(outside));

	/* Bytes that are no archive at all, under a newer name. */
	omni_test_fmt(name, sizeof(name),
	              PREFIX "/%s/20310101_000000_000000.tar.gz", fx.project);
	upload_raw(name, "not a tarball", 13);
	rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                       data_dir("b"), gcs_state());
	fx.b[1] = b;
	cr_assert_eq(rc, -EPROTO, "%s", omni_error_last());
}

/* --- credentials
 * --------------------------------------------------------------- */

/* A service-account key file pointing at the token server (with a key
 * the server knows when trusted). */
static void write_sa_key(const char *path, bool trusted, const char *pub)
{
	char key[PATH_MAX], other[PATH_MAX];

	omni_test_fmt(key, sizeof(key), "%s/sa.pem", fx.tmp);
	omni_test_fmt(other, sizeof(other), "%s/other.pem", fx.tmp);
	cr_assert(sh_in(NULL,
	                "test -f '%s' || (openssl genrsa -out '%s' 2048 && "
	                "openssl rsa -in '%s' -pubout -out '%s') 2>/dev/null",
	                key, key, key, pub) == 0);
	if (!trusted)
		cr_assert(sh_in(NULL,
		                "openssl genrsa -out '%s' 2048 2>/dev/null",
		                other) == 0);
	char *pem = omni_test_read_host(trusted ? key : other, NULL);
	cJSON *j = cJSON_CreateObject();
	char uri[128];
	omni_test_fmt(uri, sizeof(uri), "%s/token", fx.token.url);
	cJSON_AddStringToObject(j, "type", "service_account");
	cJSON_AddStringToObject(j, "project_id", "test");
	cJSON_AddStringToObject(j, "private_key_id", "k1");
	cJSON_AddStringToObject(j, "private_key", pem);
	cJSON_AddStringToObject(j, "client_email",
	                        "sa@test.iam.gserviceaccount.com");
	cJSON_AddStringToObject(j, "token_uri", uri);
	char *text = cJSON_Print(j);
	omni_test_write_host(path, text, strlen(text));
	free(text);
	cJSON_Delete(j);
	free(pem);
}

/* The token server (knowing the service account's public key) and a GCS
 * server that wants its token; the manager talks to it as an
 * authenticated endpoint. */
static const char *start_auth_servers(void)
{
	static char pub[PATH_MAX];
	char key[PATH_MAX];

	omni_test_fmt(pub, sizeof(pub), "%s/sa.pub", fx.tmp);
	omni_test_fmt(key, sizeof(key), "%s/sa.pem", fx.tmp);
	cr_assert(sh_in(NULL,
	                "openssl genrsa -out '%s' 2048 2>/dev/null && "
	                "openssl rsa -in '%s' -pubout -out '%s' "
	                "2>/dev/null",
	                key, key, pub) == 0);
	const char *args[] = { "--token",
		               TOKEN,
		               "--public-key",
		               pub,
		               "--client-email",
		               "sa@test.iam.gserviceaccount.com",
		               "--client-id",
		               "cid",
		               "--client-secret",
		               "csecret",
		               "--refresh-token",
		               "rtok",
		               NULL };
	test_server_start(&fx.token, "tests/servers/gcs-token/server.js", args);
	start_gcs(TOKEN);
	return pub;
}

static int token_stat(const char *what)
{
	char url[128], *body;

	omni_test_fmt(url, sizeof(url), "%s/_test/stats", fx.token.url);
	cr_assert_eq(test_http("GET", url, NULL, &body), 200);
	cJSON *j = cJSON_Parse(body);
	int n = cJSON_GetObjectItemCaseSensitive(j, what)->valueint;
	cJSON_Delete(j);
	free(body);
	return n;
}

/* Save with manager credentials from the environment, load elsewhere. */
static int auth_round_trip(void)
{
	struct omni_backend *b;
	int rc = state_backend_try(&b, state_pairing("local"), fx.project,
	                           data_dir("a"),
	                           gcs_state_with(BUCKET, fx.gcs.url));

	fx.b[0] = b;
	if (rc < 0)
		return rc;
	put(b, "a.txt", "authenticated");
	if ((rc = omni_backend_save_snapshot(b, "auth", NULL)) < 0)
		return rc;
	start(1, "b", gcs_state_with(BUCKET, fx.gcs.url));
	char *text = get(fx.b[1], "a.txt");
	cr_assert_str_eq(text, "authenticated");
	free(text);
	return 0;
}

Test(state_gcs, service_account_key)
{
	char keyfile[PATH_MAX];
	const char *pub = start_auth_servers();

	omni_test_fmt(keyfile, sizeof(keyfile), "%s/key.json", fx.tmp);
	write_sa_key(keyfile, true, pub);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", keyfile, 1);
	omni_assert_ok(auth_round_trip());
	/* One token per manager, reused across its requests. */
	cr_assert_eq(token_stat("jwt"), 2);
}

Test(state_gcs, service_account_with_an_unknown_key_is_eacces)
{
	char keyfile[PATH_MAX];
	const char *pub = start_auth_servers();

	omni_test_fmt(keyfile, sizeof(keyfile), "%s/key.json", fx.tmp);
	write_sa_key(keyfile, false, pub);
	setenv("GOOGLE_APPLICATION_CREDENTIALS", keyfile, 1);
	omni_assert_err(auth_round_trip(), -EACCES);
	cr_assert(strstr(omni_error_last(), "Invalid JWT Signature"), "%s",
	          omni_error_last());
	cr_assert(strstr(omni_error_last(), keyfile), "%s", omni_error_last());
}

static void write_authorized_user(const char *path, const char *refresh)
{
	char text[1024], uri[128];

	omni_test_fmt(uri, sizeof(uri), "%s/token", fx.token.url);
	omni_test_fmt(text, sizeof(text),
	              "{\"type\": \"authorized_user\", \"client_id\": \"cid\", "
	              "\"client_secret\": \"csecret\", \"refresh_token\": "
	              "\"%s\", \"token_uri\": \"%s\"}",
	              refresh, uri);
	omni_test_write_host(path, text, strlen(text));
}

Test(state_gcs, authorized_user_credentials)
{
	char file[PATH_MAX];

	start_auth_servers();
	omni_test_fmt(file, sizeof(file), "%s/adc.json", fx.tmp);
	write_authorized_user(file, "rtok");
	setenv("GOOGLE_APPLICATION_CREDENTIALS", file, 1);
	omni_assert_ok(auth_round_trip());
	cr_assert_eq(token_stat("refresh"), 2);

	/* A revoked refresh token, found where gcloud keeps it. */
	char dir[PATH_MAX];
	unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
	omni_test_fmt(dir, sizeof(dir), "%s/gcloud", fx.tmp);
	cr_assert(mkdir(dir, 0700) == 0);
	omni_test_fmt(file, sizeof(file),
	              "%s/application_default_credentials.json", dir);
	write_authorized_user(file, "revoked");
	setenv("CLOUDSDK_CONFIG", dir, 1);
	omni_backend_free(fx.b[0]);
	omni_backend_free(fx.b[1]);
	fx.b[0] = fx.b[1] = NULL;
	omni_assert_err(auth_round_trip(), -EACCES);
	cr_assert(strstr(omni_error_last(), "expired or revoked"), "%s",
	          omni_error_last());
}

Test(state_gcs, metadata_server)
{
	char host[64];

	start_auth_servers();
	omni_test_fmt(host, sizeof(host), "127.0.0.1:%d", fx.token.port);
	setenv("GCE_METADATA_HOST", host, 1);
	omni_assert_ok(auth_round_trip());
	cr_assert_eq(token_stat("metadata"), 2);
}

Test(state_gcs, token_from_the_environment)
{
	start_auth_servers();
	setenv("GOOGLE_OAUTH_ACCESS_TOKEN", TOKEN, 1);
	omni_assert_ok(auth_round_trip());
	omni_backend_free(fx.b[0]);
	omni_backend_free(fx.b[1]);
	fx.b[0] = fx.b[1] = NULL;
	setenv("GOOGLE_OAUTH_ACCESS_TOKEN", "wrong", 1);
	omni_assert_err(auth_round_trip(), -EACCES);
	cr_assert(strstr(omni_error_last(), "GOOGLE_OAUTH_ACCESS_TOKEN"), "%s",
	          omni_error_last());
}

Test(state_gcs, options_and_names)
{
	struct omni_state *st = (struct omni_state *)1;

	omni_assert_err(omni_state_gcs(&st, NULL), -EINVAL);
	cr_assert_null(st);
	cr_assert(strstr(omni_error_last(), "OMNIAGENTS_GCS_BUCKET"));
	setenv("BUCKET_OMNIAGENTS", "python-name", 1);
	omni_assert_ok(omni_state_new(&st, "gcs"));
	cr_assert_str_eq(omni_state_name(st), "gcs");
	omni_state_free(st);
	omni_assert_ok(omni_state_new(&st, "gcs://my-bucket/some/prefix"));
	omni_state_free(st);
	omni_assert_err(omni_state_new(&st, "gcs:bucket"), -EINVAL);
	omni_assert_err(omni_state_new(&st, "gcs://Bad_Bucket!"), -EINVAL);
}

/* --- a real mount: omnifs --state gcs://BUCKET/PREFIX
 * ----------------------------- */

ParameterizedTestParameters(state_gcs, mount_round_trip_each_backend)
{
	return state_pairing_params();
}

ParameterizedTest(struct state_param *param, state_gcs,
                  mount_round_trip_each_backend, .timeout = 180)
{
	const struct state_pairing *p = state_pairing(param->backend);
	const char *argv[16];
	char *out, *log, *names;
	int n = 0, st;

	state_require(p);
	start_gcs(NULL);
	for (const char *const *a = p->mount_args; a && *a; a++)
		argv[n++] = *a;
	argv[n++] = "--project";
	argv[n++] = fx.project;
	argv[n++] = "--state";
	argv[n++] = "gcs://" BUCKET "/" PREFIX;
	argv[n] = NULL;

	mount_up(&fx.m[0], argv);
	cr_assert(sh_in(fx.m[0].mnt,
	                "mkdir -p src empty && printf 'hello\\n' > "
	                "src/hello.txt && head -c 100000 "
	                "/dev/urandom > rand.bin && chmod 640 "
	                "rand.bin && ln -s src/hello.txt link") == 0);
	out = sh_out(&st, fx.m[0].mnt, "omni-exec --save 'on demand' 2>&1");
	cr_assert_eq(st, 0, "omni-exec --save: %s", out);
	free(out);
	names = object_names();
	cr_assert_eq(count_lines(names), 1, "%s", names);
	free(names);
	cr_assert(sh_in(fx.m[0].mnt, "md5sum rand.bin > rand.md5") == 0);
	cr_assert(sh_in(NULL, "fusermount3 -u '%s'", fx.m[0].mnt) == 0);
	cr_assert(omni_test_pid_gone(fx.m[0].pid, 60000),
	          "omnifs did not exit");
	fx.m[0].pid = 0;
	log = omni_test_read_host(fx.m[0].log, NULL);
	cr_assert(log && strstr(log, "saved snapshot"), "progress: %s",
	          log ? log : "");
	free(log);
	mount_down(&fx.m[0]);
	names = object_names();
	cr_assert_eq(count_lines(names), 2, "%s", names);
	free(names);

	mount_up(&fx.m[1], argv);
	out = sh_out(
	    &st, fx.m[1].mnt,
	    "cat src/hello.txt && md5sum -c --quiet rand.md5 && stat -c "
	    "'%%a' rand.bin && readlink link && test -d empty && echo ok");
	cr_assert_eq(st, 0, "%s", out);
	cr_assert_str_eq(out, "hello\n640\nsrc/hello.txt\nok\n");
	free(out);
	log = omni_test_read_host(fx.m[1].log, NULL);
	cr_assert(log && strstr(log, "loaded snapshot"), "progress: %s",
	          log ? log : "");
	free(log);
}

Test(state_gcs, mount_unmount_with_the_bucket_gone_keeps_everything,
     .timeout = 120)
{
	const char *argv[] = { "--project", fx.project, "--state",
		               "gcs://" BUCKET "/" PREFIX, NULL };
	char url[256], path[PATH_MAX];

	start_gcs(NULL);
	mount_up(&fx.m[0], argv);
	cr_assert(sh_in(fx.m[0].mnt, "printf 'work\\n' > work.txt") == 0);
	omni_test_fmt(url, sizeof(url), "%s/storage/v1/b/%s", fx.gcs.url,
	              BUCKET);
	cr_assert_eq(test_http("DELETE", url, NULL, NULL), 204);
	cr_assert(sh_in(NULL, "fusermount3 -u '%s'", fx.m[0].mnt) == 0);
	cr_assert(omni_test_pid_gone(fx.m[0].pid, 60000),
	          "omnifs did not exit");
	fx.m[0].pid = 0;
	cr_assert(!mount_is_mounted(fx.m[0].mnt));
	char *log = omni_test_read_host(fx.m[0].log, NULL);
	cr_assert(log && strstr(log, "will be uploaded by the next save"), "%s",
	          log ? log : "");
	free(log);
	omni_test_fmt(path, sizeof(path), "%s/%s/work.txt", fx.m[0].data,
	              fx.project);
	cr_assert(omni_test_host_exists(path));
	omni_test_fmt(path, sizeof(path), "%s/.omnifs-state/%s.gcs/pending",
	              fx.m[0].data, fx.project);
	cr_assert_eq(count_files(path, ".tar.gz"), 1);
}
