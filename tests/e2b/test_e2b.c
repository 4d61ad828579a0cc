/*
 * tests/e2b/test_e2b.c - the e2b backend without a mount.
 *
 * Suite e2b: the pieces that need no server, as tables: Connect codes
 * and HTTP statuses to errnos, timestamps, EntryInfo to struct stat,
 * the envelope parser (split at every byte), base64, Go's signal texts
 * and helper-command errors.
 *
 * Suite e2b_lib: the documented API (omni/backend.h) on an e2b session
 * against the local server (tests/servers/e2b), one server per test:
 * commands, files, directories, glob, the control plane's errors, and
 * the request counters.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "e2b/e2b.h"
#include "e2b_helpers.h"
#include "helpers.h"
#include "omni/omni.h"

/* --- units ------------------------------------------------------------------
 */

TestSuite(e2b, .timeout = 30);

/* Strings inline: parameters reach a test process that may not share
 * our address space layout. "" stands for no code. */
struct code_case {
	char code[32];
	long status;
	int err;
};

ParameterizedTestParameters(e2b, connect_codes)
{
	static struct code_case cases[] = {
		{ "canceled", 499, -ECANCELED },
		{ "unknown", 500, -EIO },
		{ "invalid_argument", 400, -EINVAL },
		{ "deadline_exceeded", 504, -ETIMEDOUT },
		{ "not_found", 404, -ENOENT },
		{ "already_exists", 409, -EEXIST },
		{ "permission_denied", 403, -EACCES },
		{ "resource_exhausted", 429, -EAGAIN },
		{ "failed_precondition", 400, -EINVAL },
		{ "aborted", 409, -EAGAIN },
		{ "out_of_range", 400, -ERANGE },
		{ "unimplemented", 501, -ENOSYS },
		{ "internal", 500, -EIO },
		{ "unavailable", 503, -EAGAIN },
		{ "data_loss", 500, -EIO },
		{ "unauthenticated", 401, -EACCES },
		/* Not Connect errors: the HTTP status decides. */
		{ "", 401, -EACCES },
		{ "", 404, -ENOENT },
		{ "", 429, -EAGAIN },
		{ "", 502, -ENOTCONN },
		{ "", 503, -EAGAIN },
		{ "", 507, -ENOSPC },
		{ "", 500, -EIO },
		{ "no_such_code", 418, -EIO },
	};
	return cr_make_param_array(struct code_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct code_case *c, e2b, connect_codes)
{
	const char *code = c->code[0] ? c->code : NULL;

	cr_assert_eq(omni__e2b_code_to_errno(code, c->status), c->err,
	             "%s/%ld gave %d, expected %d", code ? code : "(none)",
	             c->status, omni__e2b_code_to_errno(code, c->status),
	             c->err);
}

Test(e2b, reply_error_quotes_the_server)
{
	char body[] = "{\"code\":\"not_found\",\"message\":\"file not found: "
	              "lstat /tmp/workspace/x\"}";
	struct e2b_http_resp r = { .status = 404,
		                   .body = body,
		                   .len = strlen(body) };

	cr_assert_eq(omni__e2b_reply_error(&r, "Stat x"), -ENOENT);
	cr_assert(strstr(omni_error_last(), "lstat /tmp/workspace/x"), "%s",
	          omni_error_last());
	char proxy[] = "{\"sandboxId\":\"x\",\"message\":\"The sandbox was not "
	               "found\",\"code\":502}";
	struct e2b_http_resp p = { .status = 502,
		                   .body = proxy,
		                   .len = strlen(proxy) };
	cr_assert_eq(omni__e2b_reply_error(&p, "ListDir"), -ENOTCONN);
	cr_assert(strstr(omni_error_last(), "not running"), "%s",
	          omni_error_last());
}

Test(e2b, timestamps)
{
	struct timespec ts;

	omni_assert_ok(omni__e2b_parse_time("2024-01-02T03:04:05Z", &ts));
	cr_assert_eq(ts.tv_sec, 1704164645);
	cr_assert_eq(ts.tv_nsec, 0);
	omni_assert_ok(omni__e2b_parse_time("2024-01-02T03:04:05.123Z", &ts));
	cr_assert_eq(ts.tv_nsec, 123000000);
	omni_assert_ok(
	    omni__e2b_parse_time("2024-01-02T03:04:05.123456789Z", &ts));
	cr_assert_eq(ts.tv_nsec, 123456789);
	omni_assert_ok(omni__e2b_parse_time("2024-01-02T05:04:05+02:00", &ts));
	cr_assert_eq(ts.tv_sec, 1704164645);
	omni_assert_err(omni__e2b_parse_time("2024-01-02", &ts), -EPROTO);
	omni_assert_err(omni__e2b_parse_time("2024-01-02T03:04:05.Z", &ts),
	                -EPROTO);
	omni_assert_err(omni__e2b_parse_time("yesterday at noon", &ts),
	                -EPROTO);
}

static void entry(const char *json, struct stat *st, int want)
{
	cJSON *e = cJSON_Parse(json);

	cr_assert(e, "bad JSON in the test: %s", json);
	int rc = omni__e2b_entry_to_stat(e, st);
	cJSON_Delete(e);
	cr_assert_eq(rc, want, "%s gave %d: %s", json, rc, omni_error_last());
}

Test(e2b, entry_info_to_stat)
{
	struct stat st;

	entry("{\"name\":\"a.txt\",\"type\":\"FILE_TYPE_FILE\",\"path\":"
	      "\"/tmp/workspace/a.txt\",\"size\":\"5\",\"mode\":420,"
	      "\"permissions\":\"-rw-r--r--\",\"owner\":\"user\",\"group\":"
	      "\"user\",\"modifiedTime\":\"2024-01-02T03:04:05.5Z\"}",
	      &st, 0);
	cr_assert_eq(st.st_mode, S_IFREG | 0644);
	cr_assert_eq(st.st_size, 5);
	cr_assert_eq(st.st_uid, getuid());
	cr_assert_eq(st.st_gid, getgid());
	cr_assert_eq(st.st_mtim.tv_sec, 1704164645);
	cr_assert_eq(st.st_mtim.tv_nsec, 500000000);
	cr_assert_eq(st.st_nlink, 1);
	cr_assert_eq(st.st_ino, omni__e2b_ino("/tmp/workspace/a.txt"));

	/* Zero values are left out: an empty directory of root. */
	entry("{\"name\":\"d\",\"type\":\"FILE_TYPE_DIRECTORY\",\"mode\":493,"
	      "\"permissions\":\"drwxr-xr-x\",\"owner\":\"root\",\"group\":"
	      "\"root\"}",
	      &st, 0);
	cr_assert_eq(st.st_mode, S_IFDIR | 0755);
	cr_assert_eq(st.st_size, 0);
	cr_assert_eq(st.st_uid, 0);

	/* A symlink: type and mode are the target's, the text says L. */
	entry("{\"name\":\"l\",\"type\":\"FILE_TYPE_DIRECTORY\",\"size\":\"3\","
	      "\"mode\":493,\"permissions\":\"Lrwxrwxrwx\",\"owner\":\"1000\","
	      "\"symlinkTarget\":\"/tmp/workspace/d\"}",
	      &st, 0);
	cr_assert_eq(st.st_mode, S_IFLNK | 0777);
	cr_assert_eq(st.st_size, 3);
	cr_assert_eq(st.st_uid, 1000);
	/* A broken one has no type at all. */
	entry("{\"name\":\"b\",\"size\":\"4\",\"permissions\":\"Lrwxrwxrwx\","
	      "\"symlinkTarget\":\"/tmp/workspace/b\"}",
	      &st, 0);
	cr_assert(S_ISLNK(st.st_mode));
	/* Set-id and sticky bits come from the text. */
	entry("{\"type\":\"FILE_TYPE_FILE\",\"mode\":493,\"permissions\":"
	      "\"urwxr-xr-x\",\"owner\":\"someone\"}",
	      &st, 0);
	cr_assert_eq(st.st_mode, S_IFREG | S_ISUID | 0755);
	cr_assert_eq(st.st_uid, 65534);
	entry("{\"type\":\"FILE_TYPE_DIRECTORY\",\"mode\":511,\"permissions\":"
	      "\"dtrwxrwxrwx\"}",
	      &st, 0);
	cr_assert_eq(st.st_mode, S_IFDIR | S_ISVTX | 0777);

	entry("{\"type\":\"FILE_TYPE_FILE\",\"size\":\"-3\"}", &st, -EPROTO);
	entry("{\"type\":\"FILE_TYPE_FILE\",\"modifiedTime\":\"soon\"}", &st,
	      -EPROTO);
	entry("[]", &st, -EPROTO);
}

struct collected {
	int count;
	char last[256];
};

static int collect(cJSON *msg, void *payload)
{
	struct collected *c = payload;
	char *text = cJSON_PrintUnformatted(msg);

	c->count++;
	snprintf(c->last, sizeof(c->last), "%s", text);
	free(text);
	cJSON_Delete(msg);
	return 0;
}

static size_t envelope(unsigned char *out, int flags, const char *json)
{
	size_t n = strlen(json);

	out[0] = (unsigned char)flags;
	out[1] = (unsigned char)(n >> 24);
	out[2] = (unsigned char)(n >> 16);
	out[3] = (unsigned char)(n >> 8);
	out[4] = (unsigned char)n;
	memcpy(out + 5, json, n);
	return n + 5;
}

Test(e2b, envelopes_split_anywhere)
{
	unsigned char wire[1024];
	size_t len = 0;

	len += envelope(wire + len, 0, "{\"event\":{\"start\":{\"pid\":42}}}");
	len += envelope(wire + len, 0, "{\"event\":{\"keepalive\":{}}}");
	len += envelope(wire + len, 2,
	                "{\"error\":{\"code\":\"deadline_exceeded\","
	                "\"message\":\"too slow\"}}");
	/* Every split of the stream into two chunks gives the same. */
	for (size_t cut = 0; cut <= len; cut++) {
		struct e2b_envelopes p = { 0 };
		struct collected c = { 0 };
		omni_assert_ok(
		    omni__e2b_envelopes_feed(&p, wire, cut, collect, &c));
		omni_assert_ok(omni__e2b_envelopes_feed(
		    &p, wire + cut, len - cut, collect, &c));
		cr_assert_eq(c.count, 2, "cut at %zu", cut);
		cr_assert(p.ended);
		cr_assert_str_eq(p.end_code, "deadline_exceeded");
		cr_assert_str_eq(p.end_msg, "too slow");
		omni__e2b_envelopes_finish(&p);
	}
}

Test(e2b, envelopes_refuse_what_is_wrong)
{
	unsigned char wire[256];
	struct e2b_envelopes p = { 0 };
	struct collected c = { 0 };
	size_t n;

	n = envelope(wire, 1, "{}"); /* compressed: never asked for */
	omni_assert_err(omni__e2b_envelopes_feed(&p, wire, n, collect, &c),
	                -EPROTO);
	omni__e2b_envelopes_finish(&p);
	n = envelope(wire, 0, "not json");
	omni_assert_err(omni__e2b_envelopes_feed(&p, wire, n, collect, &c),
	                -EPROTO);
	omni__e2b_envelopes_finish(&p);
	n = envelope(wire, 2, "{}");
	n += envelope(wire + n, 0, "{}");
	omni_assert_err(omni__e2b_envelopes_feed(&p, wire, n, collect, &c),
	                -EPROTO);
	omni__e2b_envelopes_finish(&p);
	/* A clean end: no error. */
	n = envelope(wire, 2, "{}");
	omni_assert_ok(omni__e2b_envelopes_feed(&p, wire, n, collect, &c));
	cr_assert(p.ended);
	cr_assert_str_eq(p.end_code, "");
	omni__e2b_envelopes_finish(&p);
}

Test(e2b, base64_round_trips)
{
	unsigned char data[300], back[300];
	char text[500];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n < sizeof(data); n++) {
		omni__base64_encode(data, n, false, text, sizeof(text));
		cr_assert_eq(strlen(text), 4 * ((n + 2) / 3));
		ssize_t m = omni__base64_decode_n(text, strlen(text),
		                                  OMNI__BASE64_LENIENT, back,
		                                  sizeof(back));
		cr_assert_eq(m, (ssize_t)n);
		cr_assert(memcmp(data, back, n) == 0);
	}
	omni__base64_encode("user:", 5, false, text, sizeof(text));
	cr_assert_str_eq(text, "dXNlcjo=");
	cr_assert_eq(omni__base64_decode_n("a$b=", 4, OMNI__BASE64_LENIENT,
	                                   back, sizeof(back)),
	             -EINVAL);
}

Test(e2b, go_signal_texts)
{
	cr_assert_eq(omni__e2b_signal_from_status("signal: killed"), 9);
	cr_assert_eq(omni__e2b_signal_from_status("signal: terminated"), 15);
	cr_assert_eq(omni__e2b_signal_from_status("signal: interrupt"), 2);
	cr_assert_eq(omni__e2b_signal_from_status("signal: hangup"), 1);
	cr_assert_eq(omni__e2b_signal_from_status(
	                 "signal: segmentation fault (core dumped)"),
	             11);
	cr_assert_eq(omni__e2b_signal_from_status("signal: user defined "
	                                          "signal 1"),
	             10);
	cr_assert_eq(omni__e2b_signal_from_status("exit status 3"), 0);
	cr_assert_eq(omni__e2b_signal_from_status(NULL), 0);
}

Test(e2b, helper_command_errors)
{
	omni_assert_err(omni__e2b_run_error(1,
	                                    "chmod: cannot access 'x': No "
	                                    "such file or directory\n",
	                                    "chmod x"),
	                -ENOENT);
	cr_assert(strstr(omni_error_last(), "chmod x"));
	omni_assert_err(omni__e2b_run_error(1,
	                                    "rmdir: failed to remove 'd': "
	                                    "Directory not empty",
	                                    "rmdir d"),
	                -ENOTEMPTY);
	omni_assert_err(omni__e2b_run_error(1,
	                                    "ln: failed to create symbolic "
	                                    "link 'l': File exists",
	                                    "ln"),
	                -EEXIST);
	omni_assert_err(omni__e2b_run_error(1,
	                                    "chmod: changing permissions "
	                                    "of 'f': Operation not permitted",
	                                    "chmod"),
	                -EPERM);
	omni_assert_err(
	    omni__e2b_run_error(127, "sh: touch: not found", "touch"), -ENOSYS);
	omni_assert_err(omni__e2b_run_error(2, "something odd", "x"), -EIO);
}

Test(e2b, missing_key_is_a_clear_error)
{
	struct omni_backend *b = NULL;
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;

	unsetenv("E2B_API_KEY");
	unsetenv("E2B_DEBUG");
	setenv("E2B_API_URL", "http://127.0.0.1:1", 1);
	omni_assert_ok(omni_backend_new(&b, "e2b", "p1", &o, NULL));
	cr_assert_str_eq(omni_backend_get_working_directory(b),
	                 "/tmp/workspace");
	omni_assert_err(omni_backend_start(b), -EACCES);
	cr_assert(strstr(omni_error_last(), "E2B_API_KEY"), "%s",
	          omni_error_last());
	omni_backend_free(b);
	setenv("OMNI_E2B_REQUEST_TIMEOUT", "nonsense", 1);
	omni_assert_err(omni_backend_new(&b, "e2b", "p1", &o, NULL), -EINVAL);
	/* The request timeout option comes before the variable, and is
	 * checked the same way. */
	struct omni_e2b_options e = OMNI_E2B_OPTIONS_INIT;
	o.backend = &e.head;
	e.request_timeout_s = 5;
	omni_assert_ok(omni_backend_new(&b, "e2b", "p1", &o, NULL));
	omni_backend_free(b);
	unsetenv("OMNI_E2B_REQUEST_TIMEOUT");
	e.request_timeout_s = -1;
	omni_assert_err(omni_backend_new(&b, "e2b", "p1", &o, NULL), -EINVAL);
	e.request_timeout_s = 3601;
	omni_assert_err(omni_backend_new(&b, "e2b", "p1", &o, NULL), -EINVAL);
	/* The options of another backend are refused. */
	struct omni_docker_options d = OMNI_DOCKER_OPTIONS_INIT;
	o.backend = &d.head;
	omni_assert_err(omni_backend_new(&b, "e2b", "p1", &o, NULL), -EINVAL);
	cr_assert_str_eq(omni_error_last(),
	                 "e2b backend: given the options of the 'docker' "
	                 "backend");
	omni_test_leak_check();
}

Test(e2b, unreachable_api_fails_fast)
{
	struct omni_backend *b = NULL;

	setenv("E2B_API_KEY", "e2b_0123456789abcdef0123456789abcdef01234567",
	       1);
	/* Nothing listens on port 1. */
	setenv("E2B_API_URL", "http://127.0.0.1:1", 1);
	omni_assert_ok(omni_e2b_backend_new(&b, "p1", NULL, NULL));
	long long t0 = omni_test_now_ms();
	int rc = omni_backend_start(b);
	cr_assert_eq(rc, -ECONNREFUSED, "got %d: %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "E2B_API_URL"), "%s",
	          omni_error_last());
	/* The key never shows in a message. */
	cr_assert_null(strstr(omni_error_last(), "0123456789abcdef"));
	cr_assert(omni_test_now_ms() - t0 < 5000);
	omni_backend_free(b);
	omni_test_leak_check();
}

/* --- the documented API against the local server -------------------------- */

static struct e2b_test_server srv;
static struct omni_backend *lib;

static void lib_setup(void)
{
	e2b_test_require();
	e2b_test_server_start(
	    &srv, (const char *const[]){ "--template", "other", NULL });
}

static void lib_teardown(void)
{
	omni_backend_free(lib);
	lib = NULL;
	if (srv.pid > 0)
		cr_expect_eq(e2b_test_live_sandboxes(&srv), 0,
		             "a sandbox was left running");
	e2b_test_server_stop(&srv);
	omni_test_leak_check();
}

TestSuite(e2b_lib, .init = lib_setup, .fini = lib_teardown, .timeout = 120);

static void lib_start(const char *template)
{
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_e2b_options e = OMNI_E2B_OPTIONS_INIT;
	char project[64];

	o.backend = &e.head;
	e.template_name = template;
	e.timeout_s = 600;
	omni_test_project_id(project, sizeof(project), "e2b");
	omni_assert_ok(omni_e2b_backend_new(&lib, project, &o, NULL));
	omni_assert_ok(omni_backend_start(lib));
	cr_assert_eq(omni_backend_get_status(lib), OMNI_STATUS_RUNNING);
}

Test(e2b_lib, execute_command_echo_hello)
{
	struct omni_command_result r;

	lib_start(NULL);
	omni_assert_ok(omni_backend_execute_command(lib, "echo Hello", 30, &r));
	cr_assert_str_eq(r.output, "Hello\n");
	cr_assert_eq(r.exit_code, 0);
	omni_command_result_finish(&r);
	omni_assert_ok(omni_backend_execute_command(
	    lib, "pwd; whoami; echo err >&2; exit 3", 30, &r));
	cr_assert(strstr(r.output, "/tmp/workspace\n"), "%s", r.output);
	cr_assert(strstr(r.output, "user\n"), "%s", r.output);
	cr_assert(strstr(r.output, "err\n"), "%s", r.output);
	cr_assert_eq(r.exit_code, 3);
	omni_command_result_finish(&r);
	omni_assert_ok(omni_backend_execute_command(lib, "sleep 10", 1, &r));
	cr_assert_eq(r.exit_code, 124);
	omni_command_result_finish(&r);
	omni_assert_ok(
	    omni_backend_execute_command(lib, "no-such-program-x", 30, &r));
	cr_assert_eq(r.exit_code, 127);
	omni_command_result_finish(&r);
}

Test(e2b_lib, files_and_directories)
{
	struct omni_dir_list list;
	struct omni_str_list g;
	char *data;
	size_t len;

	lib_start(NULL);
	omni_assert_ok(omni_backend_write_file(lib, "src/a.txt", "alpha", 5));
	omni_assert_ok(omni_backend_write_file(lib, "/tmp/workspace/src/b.md",
	                                       "beta\n", 5));
	omni_assert_ok(omni_backend_write_file(lib, "top.txt", "", 0));
	omni_assert_ok(omni_backend_read_file(lib, "src/a.txt", &data, &len));
	cr_assert_eq(len, 5);
	cr_assert_str_eq(data, "alpha");
	free(data);
	omni_assert_ok(omni_backend_read_file(lib, "top.txt", &data, &len));
	cr_assert_eq(len, 0);
	free(data);
	omni_assert_err(omni_backend_read_file(lib, "nope.txt", &data, &len),
	                -ENOENT);
	omni_assert_err(omni_backend_read_file(lib, "src", &data, &len),
	                -EISDIR);
	cr_assert_eq(omni_backend_file_exists(lib, "src"), OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(lib, "src/a.txt"),
	             OMNI_FILE_FILE);
	cr_assert_eq(omni_backend_file_exists(lib, "src/zz"), OMNI_FILE_NONE);

	omni_assert_ok(omni_backend_list_directory(lib, "", true, &list));
	cr_assert_eq(list.count, 4);
	cr_assert_str_eq(list.entries[0].path, "src");
	cr_assert_eq(list.entries[0].type, OMNI_FILE_DIRECTORY);
	cr_assert_str_eq(list.entries[1].path, "src/a.txt");
	cr_assert_eq(list.entries[1].size, 5);
	cr_assert_str_eq(list.entries[2].path, "src/b.md");
	cr_assert_str_eq(list.entries[3].path, "top.txt");
	omni_dir_list_finish(&list);

	omni_assert_ok(omni_backend_glob_files(lib, "**/*.txt", NULL, &g));
	cr_assert_eq(g.count, 2);
	cr_assert_str_eq(g.items[0], "src/a.txt");
	cr_assert_str_eq(g.items[1], "top.txt");
	omni_str_list_finish(&g);

	omni_assert_ok(omni_backend_copy_file(lib, "src/a.txt", "c/copy.txt"));
	omni_assert_ok(omni_backend_move_file(lib, "c/copy.txt", "moved.txt"));
	omni_assert_ok(omni_backend_read_file(lib, "moved.txt", &data, &len));
	cr_assert_str_eq(data, "alpha");
	free(data);
	omni_assert_ok(omni_backend_delete_file(lib, "moved.txt"));
	cr_assert_eq(omni_backend_file_exists(lib, "moved.txt"),
	             OMNI_FILE_NONE);
	omni_assert_ok(omni_backend_create_directory(lib, "x/y/z", true));
	omni_assert_err(omni_backend_create_directory(lib, "x/y/z", false),
	                -EEXIST);
	omni_assert_ok(omni_backend_delete_directory(lib, "x"));
	cr_assert_eq(omni_backend_file_exists(lib, "x"), OMNI_FILE_NONE);
	omni_assert_err(
	    omni_backend_read_file(lib, "../etc/passwd", &data, &len), -EACCES);

	/* What a command sees is what the API wrote. */
	struct omni_command_result r;
	omni_assert_ok(
	    omni_backend_execute_command(lib, "cat src/b.md", 30, &r));
	cr_assert_str_eq(r.output, "beta\n");
	omni_command_result_finish(&r);
}

Test(e2b_lib, operations_done_with_commands)
{
	struct stat st;
	char target[64];

	lib_start(NULL);
	omni_assert_ok(omni_backend_write_file(lib, "f", "12345", 5));
	omni_assert_ok(omni_vfs_chmod(lib, "f", 0751));
	omni_assert_ok(omni_vfs_stat(lib, "f", &st));
	cr_assert_eq(st.st_mode & 07777, 0751);
	struct timespec ts[2] = { { .tv_sec = 1000000000, .tv_nsec = 5 },
		                  { .tv_sec = 1234567890, .tv_nsec = 0 } };
	omni_assert_ok(omni_vfs_utimens(lib, "f", ts));
	omni_assert_ok(omni_vfs_stat(lib, "f", &st));
	cr_assert_eq(st.st_mtim.tv_sec, 1234567890);
	omni_assert_ok(omni_vfs_truncate(lib, "f", 2));
	omni_assert_ok(omni_vfs_stat(lib, "f", &st));
	cr_assert_eq(st.st_size, 2);
	omni_assert_ok(omni_vfs_symlink(lib, "f", "l2"));
	omni_assert_ok(omni_vfs_stat(lib, "l2", &st));
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_eq(omni_vfs_readlink(lib, "l2", target, sizeof(target)), 1);
	cr_assert_str_eq(target, "f");
	omni_assert_err(omni_vfs_readlink(lib, "f", target, sizeof(target)),
	                -EINVAL);
	omni_assert_err(omni_vfs_symlink(lib, "x", "l2"), -EEXIST);
	omni_assert_err(omni_vfs_link(lib, "f", "hard"), -EPERM);
	omni_assert_ok(omni_vfs_mkdir(lib, "d", 0755));
	omni_assert_ok(omni_backend_write_file(lib, "d/x", "x", 1));
	omni_assert_err(omni_vfs_rmdir(lib, "d"), -ENOTEMPTY);
	omni_assert_ok(omni_vfs_unlink(lib, "d/x"));
	omni_assert_ok(omni_vfs_rmdir(lib, "d"));
	omni_assert_err(omni_vfs_rmdir(lib, "d"), -ENOENT);
	struct statvfs sv;
	omni_assert_ok(omni_vfs_statfs(lib, &sv));
	cr_assert(sv.f_blocks > 0 && sv.f_bsize > 0);
	omni_assert_err(omni_vfs_rename(lib, "f", "l2", RENAME_NOREPLACE),
	                -EEXIST);
	omni_assert_err(omni_vfs_rename(lib, "f", "l2", RENAME_EXCHANGE),
	                -EINVAL);
}

Test(e2b_lib, requests_are_counted)
{
	struct stat st;

	lib_start(NULL);
	e2b_test_reset(&srv);
	omni_assert_ok(omni_vfs_stat(lib, "", &st));
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_err(omni_vfs_stat(lib, "nope", &st), -ENOENT);
	cr_assert_eq(e2b_test_count(&srv, "filesystem.Filesystem/Stat"), 2);
	char *text = omni_vfs_stats(lib);
	cr_assert(text);
	cr_assert(strstr(text, "e2b.create 1\n"), "%s", text);
	cr_assert(strstr(text, "e2b.Stat 2\n"), "%s", text);
	cr_assert(strstr(text, "e2b.MakeDir 1\n"), "%s", text);
	free(text);
}

Test(e2b_lib, control_plane_errors)
{
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_e2b_options e = OMNI_E2B_OPTIONS_INIT;

	/* An unknown template. */
	o.backend = &e.head;
	e.template_name = "no-such-template";
	omni_assert_ok(omni_e2b_backend_new(&lib, "p1", &o, NULL));
	omni_assert_err(omni_backend_start(lib), -ENOENT);
	cr_assert(strstr(omni_error_last(), "no-such-template"), "%s",
	          omni_error_last());
	omni_backend_free(lib);
	lib = NULL;
	/* A known one other than base. */
	lib_start("other");
	omni_backend_free(lib);
	lib = NULL;
	/* A key the API refuses. */
	setenv("E2B_API_KEY", "e2b_not-a-valid-key", 1);
	omni_assert_ok(omni_e2b_backend_new(&lib, "p1", NULL, NULL));
	omni_assert_err(omni_backend_start(lib), -EACCES);
	cr_assert(strstr(omni_error_last(), "E2B_API_KEY"), "%s",
	          omni_error_last());
	cr_assert_null(strstr(omni_error_last(), "not-a-valid-key"), "%s",
	               omni_error_last());
}

Test(e2b_lib, sandbox_killed_on_shutdown_and_files_gone)
{
	lib_start(NULL);
	cr_assert_eq(e2b_test_live_sandboxes(&srv), 1);
	omni_assert_ok(omni_backend_shutdown(lib));
	cr_assert_eq(omni_backend_get_status(lib), OMNI_STATUS_STOPPED);
	cr_assert_eq(e2b_test_live_sandboxes(&srv), 0);
	struct stat st;
	omni_assert_err(omni_vfs_stat(lib, "", &st), -ENOTCONN);
}

Test(e2b_lib, keep_alive_outlives_the_timeout)
{
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_e2b_options e = OMNI_E2B_OPTIONS_INIT;
	struct omni_command_result r;

	/* Three seconds to live, refreshed every second: twice the
	 * lifetime passes, and a refresh may be a second late on a loaded
	 * machine (ASan, parallel suites) without the sandbox expiring. */
	o.backend = &e.head;
	e.timeout_s = 3;
	omni_assert_ok(omni_e2b_backend_new(&lib, "keepalive", &o, NULL));
	omni_assert_ok(omni_backend_start(lib));
	sleep(7);
	omni_assert_ok(omni_backend_execute_command(lib, "echo alive", 30, &r));
	cr_assert_str_eq(r.output, "alive\n");
	omni_command_result_finish(&r);
	cr_assert(e2b_test_count(&srv, "POST /sandboxes/{id}/timeout") >= 4,
	          "%s", e2b_test_counts(&srv));
}
