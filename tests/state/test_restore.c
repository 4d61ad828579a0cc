/*
 * tests/state/test_restore.c - restores cannot be turned into attacks (issue
 * 11, attacks 2, 3, 4, 5 and 8) and saves read what the scan saw (issue 10).
 * Each test replays an attack as a sandbox would mount it, through the real
 * managers: crafted tar.gz archives put into the local GCS server
 * (tests/servers/gcs) under a snapshot name, crafted git trees pushed to a
 * bare remote with the git CLI (git mktree accepts duplicate names and odd
 * modes; libgit2 reads them), then a local backend started on a fresh or
 * pre-filled data folder loads them. The workspace is compared byte for
 * byte (a listing with content hashes) where a load must fail.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"
#include "omni/log.h"
#include "state/snapshot.h"
#include "state/state_git.h"
#include "state/tar_snapshot.h"
#include "state_helpers.h"

#define BUCKET "omnifs-test-bucket"
#define PREFIX "pre/fix"

static struct {
	char tmp[PATH_MAX];
	char project[64];
	char remote[PATH_MAX];
	struct omni_backend *b[3];
	struct test_server gcs;
	pthread_mutex_t log_lock;
	char log[8192];
} fx;

static void capture(enum omni_log_level level, const char *msg, void *payload)
{
	(void)payload;
	if (level > OMNI_LOG_WARN)
		return;
	pthread_mutex_lock(&fx.log_lock);
	size_t n = strlen(fx.log);
	snprintf(fx.log + n, sizeof(fx.log) - n, "%s\n", msg);
	pthread_mutex_unlock(&fx.log_lock);
}

static void setup(void)
{
	char home[PATH_MAX], run[PATH_MAX];

	memset(&fx, 0, sizeof(fx));
	pthread_mutex_init(&fx.log_lock, NULL);
	omni_test_mkdtemp(fx.tmp, sizeof(fx.tmp));
	omni_test_project_id(fx.project, sizeof(fx.project), "rs");
	omni_test_fmt(fx.remote, sizeof(fx.remote), "%s/remote.git", fx.tmp);
	omni_test_fmt(home, sizeof(home), "%s/home", fx.tmp);
	omni_test_fmt(run, sizeof(run), "%s/run", fx.tmp);
	cr_assert(mkdir(home, 0700) == 0 && mkdir(run, 0700) == 0);
	setenv("HOME", home, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("OMNI_RUNTIME_DIR", run, 1);
	static const char *const clear[] = {
		"GOOGLE_APPLICATION_CREDENTIALS",
		"GOOGLE_OAUTH_ACCESS_TOKEN",
		"CLOUDSDK_AUTH_ACCESS_TOKEN",
		"CLOUDSDK_CONFIG",
		"GCE_METADATA_HOST",
		"OMNIAGENTS_GCS_ENDPOINT",
		"OMNIAGENTS_GITHUB_API_KEY",
		"GITHUB_TOKEN",
		"OMNIAGENTS_GITHUB_STATE_REPO",
		"SSH_AUTH_SOCK",
		"OMNI_RESTORE_MAX_ENTRIES",
		"OMNI_RESTORE_MAX_BYTES",
		NULL,
	};
	for (size_t i = 0; clear[i]; i++)
		unsetenv(clear[i]);
	omni_log_set_sink(capture, NULL);
	omni_assert_ok(omni_global_init());
}

static void teardown(void)
{
	for (int i = 0; i < 3; i++)
		omni_backend_free(fx.b[i]);
	omni_log_set_sink(NULL, NULL);
	state_pairings_finish();
	test_server_stop(&fx.gcs);
	omni_test_rm_rf(fx.tmp);
	omni_global_shutdown();
	omni_test_leak_check();
}

TestSuite(state_restore, .init = setup, .fini = teardown, .timeout = 120);

/* --- helpers
 * ------------------------------------------------------------------ */

static const char *path_in(const char *fmt, const char *name)
{
	static char buf[4][PATH_MAX];
	static int next;
	char *p = buf[next++ % 4], rel[PATH_MAX];

	omni_test_fmt(rel, sizeof(rel), fmt, name);
	omni_test_fmt(p, PATH_MAX, "%s/%s", fx.tmp, rel);
	return p;
}

/* The host directory of the workspace of data folder data. */
static const char *ws(const char *data)
{
	static char p[2][PATH_MAX];
	static int next;
	char *out = p[next++ % 2];

	omni_test_fmt(out, PATH_MAX, "%s/%s/%s", fx.tmp, data, fx.project);
	return out;
}

/* Start slot i on data folder data with st; returns start's result. */
static int try_start(int i, const char *data, struct omni_state *st)
{
	return state_backend_try(&fx.b[i], state_pairing("local"), fx.project,
	                         path_in("%s", data), st);
}

/* The GCS server (once), used as an emulator. */
static void start_gcs(void)
{
	if (!fx.gcs.pid) {
		const char *args[] = { "--bucket", BUCKET, NULL };
		test_server_start(&fx.gcs, "tests/servers/gcs/server.js", args);
		setenv("STORAGE_EMULATOR_HOST", fx.gcs.url, 1);
	}
}

static struct omni_state *gcs_state(void)
{
	struct omni_state_gcs_options o = OMNI_STATE_GCS_OPTIONS_INIT;
	struct omni_state *st;

	start_gcs();
	o.bucket = BUCKET;
	o.prefix = PREFIX;
	o.retry_base_ms = 10;
	o.max_retries = 2;
	omni_assert_ok(omni_state_gcs(&st, &o));
	return st;
}

static struct omni_state *git_state(void)
{
	struct omni_state_git_options o = OMNI_STATE_GIT_OPTIONS_INIT;
	struct omni_state *st;

	o.remote = fx.remote;
	omni_assert_ok(omni_state_git(&st, &o));
	return st;
}

static int last_status;

/* sh_out's text without its trailing newlines, asserting success. */
static char *trimmed(char *out)
{
	size_t len = strlen(out);

	cr_assert_eq(last_status, 0, "%s", out);
	while (len && out[len - 1] == '\n')
		out[--len] = '\0';
	return out;
}

#define run_out(...) trimmed(sh_out(&last_status, NULL, __VA_ARGS__))

/* Every entry under dir with its type, mode, link target and content
 * hash: equal strings mean byte for byte the same tree. */
static char *tree_hash(const char *dir)
{
	return run_out("cd '%s' && find . -printf '%%y %%m %%p %%l\\n' | sort "
	               "&& find . -type f -exec md5sum {} + | sort",
	               dir);
}

struct entry {
	const char *name;
	char type; /* 'f' 'd' 'l' */
	unsigned int mode;
	const char *data; /* content, or the symlink's target */
	long long zeros;  /* a file of that many zero bytes instead */
};

/* A tar.gz (pax) with the entries in this order, duplicates and all. */
static void craft_tar(const char *path, const struct entry *es, size_t n)
{
	struct archive *a = archive_write_new();
	struct archive_entry *e = archive_entry_new();
	static char zeros[1 << 16];

	cr_assert(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
	cr_assert(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
	cr_assert(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		long long size = es[i].type != 'f' ? 0
		                 : es[i].zeros     ? es[i].zeros
		                               : (long long)strlen(es[i].data);
		archive_entry_clear(e);
		archive_entry_set_pathname(e, es[i].name);
		archive_entry_set_filetype(e, es[i].type == 'f'   ? AE_IFREG
		                              : es[i].type == 'd' ? AE_IFDIR
		                                                  : AE_IFLNK);
		archive_entry_set_perm(e, es[i].mode);
		archive_entry_set_size(e, size);
		if (es[i].type == 'l')
			archive_entry_set_symlink(e, es[i].data);
		cr_assert(archive_write_header(a, e) == ARCHIVE_OK);
		if (es[i].type == 'f' && !es[i].zeros)
			cr_assert(archive_write_data(a, es[i].data, size) ==
			          size);
		for (long long left = es[i].zeros; left > 0;) {
			size_t k = left > (long long)sizeof(zeros)
			               ? sizeof(zeros)
			               : (size_t)left;
			cr_assert(archive_write_data(a, zeros, k) ==
			          (ssize_t)k);
			left -= (long long)k;
		}
	}
	archive_entry_free(e);
	cr_assert(archive_write_close(a) == ARCHIVE_OK);
	archive_write_free(a);
}

/* Put the archive file into the bucket as the project's snapshot id. */
static void upload_archive(const char *file, const char *id)
{
	char name[256], *data;
	size_t len;

	data = omni_test_read_host(file, &len);
	omni_test_fmt(name, sizeof(name), PREFIX "/%s/%s.tar.gz", fx.project,
	              id);
	test_gcs_upload(&fx.gcs, BUCKET, name, data, len);
	free(data);
}

/* Upload the crafted entries as the newest snapshot. */
static void upload_entries(const struct entry *es, size_t n, const char *id)
{
	const char *file = path_in("%s.tar.gz", id);

	craft_tar(file, es, n);
	upload_archive(file, id);
}

/* Fill data folder data's workspace on the host before any load. */
static void prefill(const char *data)
{
	cr_assert(sh_in(NULL,
	                "mkdir -p '%s/repo/.git/hooks' && cd '%s' && "
	                "printf 'keep me' > keep.txt && "
	                "printf '[core]' > repo/.git/config && "
	                "mkdir -p src && printf 'int x;' > src/x.c && "
	                "ln -s src/x.c link",
	                ws(data), ws(data)) == 0);
}

static mode_t host_mode(const char *path)
{
	struct stat st;

	cr_assert(lstat(path, &st) == 0, "%s", path);
	return st.st_mode;
}

/* --- attack 2: setuid, setgid and sticky bits
 * ----------------------------- */

Test(state_restore, gcs_setuid_setgid_sticky_are_dropped_and_logged)
{
	const struct entry es[] = {
		{ "shared", 'd', 03777, NULL, 0 },
		{ "bin/su", 'f', 04755, "#!/bin/sh\nid\n", 0 },
		{ "bin/sg", 'f', 02755, "#!/bin/sh\n", 0 },
	};
	char p[PATH_MAX];

	start_gcs();
	upload_entries(es, 3, "20300101_000000_000000");
	omni_assert_ok(try_start(0, "a", gcs_state()));
	omni_test_fmt(p, sizeof(p), "%s/bin/su", ws("a"));
	cr_assert_eq(host_mode(p) & 07777, 0755, "%o", host_mode(p));
	omni_test_fmt(p, sizeof(p), "%s/bin/sg", ws("a"));
	cr_assert_eq(host_mode(p) & 07777, 0755, "%o", host_mode(p));
	omni_test_fmt(p, sizeof(p), "%s/shared", ws("a"));
	cr_assert_eq(host_mode(p) & 07777, 0777, "%o", host_mode(p));
	cr_assert(strstr(fx.log, "bin/su") && strstr(fx.log, "setuid"), "%s",
	          fx.log);
	cr_assert(strstr(fx.log, "shared") && strstr(fx.log, "sticky"), "%s",
	          fx.log);
}

/* Push a commit of tree (made with git mktree from lines) to the
 * project's branch of the remote. */
static void push_tree(const char *lines)
{
	char branch[OMNI__GIT_REF_MAX], cmd[8192];

	omni_assert_ok(omni__git_branch_name("state/", fx.project, branch,
	                                     sizeof(branch)));
	omni_test_fmt(cmd, sizeof(cmd),
	              "cd '%s' && t=$(printf '%s' | git mktree) && "
	              "c=$(git -c user.name=t -c user.email=t@t commit-tree "
	              "$t -m crafted) && git update-ref 'refs/heads/%s' $c",
	              fx.remote, lines, branch);
	cr_assert(sh_in(NULL, "%s", cmd) == 0, "%s", cmd);
}

/* A blob of text in the remote; its id in out. */
static void blob(const char *text, char out[64])
{
	char *id =
	    run_out("cd '%s' && printf '%s' | git hash-object -w --stdin",
	            fx.remote, text);

	snprintf(out, 64, "%s", id);
	free(id);
}

Test(state_restore, git_mode_bits_of_a_crafted_tree_are_dropped)
{
	char b[64], lines[512], p[PATH_MAX];

	cr_assert(sh_in(NULL, "git init -q --bare '%s'", fx.remote) == 0);
	blob("#!/bin/sh\\nid\\n", b);
	omni_test_fmt(lines, sizeof(lines),
	              "104755 blob %s\\tsu\\n102755 blob %s\\tsg\\n", b, b);
	push_tree(lines);
	omni_assert_ok(try_start(0, "a", git_state()));
	omni_test_fmt(p, sizeof(p), "%s/su", ws("a"));
	cr_assert_eq(host_mode(p) & 07777, 0755, "%o", host_mode(p));
	omni_test_fmt(p, sizeof(p), "%s/sg", ws("a"));
	cr_assert_eq(host_mode(p) & 07777, 0755, "%o", host_mode(p));
	cr_assert(strstr(fx.log, "su: mode 4755"), "%s", fx.log);
}

/* --- attacks 3 and 4: symlinks in the way, and a failed load
 * --------------- */

Test(state_restore, git_duplicate_names_cannot_plant_a_hook)
{
	char b[64], t[64], h[64], lines[1024], hook[PATH_MAX], *before, *after;

	cr_assert(sh_in(NULL, "git init -q --bare '%s'", fx.remote) == 0);
	/* x -> repo/.git as a symlink, and x/hooks/pre-commit as a tree,
	 * side by side in one tree. */
	blob("repo/.git", b);
	blob("#!/bin/sh\\ntouch /tmp/pwned\\n", h);
	char *hooks =
	    run_out("cd '%s' && printf '100755 blob %s\\tpre-commit\\n' "
	            "| git mktree",
	            fx.remote, h);
	char *tx = run_out("cd '%s' && printf '040000 tree %s\\thooks\\n' | "
	                   "git mktree",
	                   fx.remote, hooks);
	snprintf(t, sizeof(t), "%s", tx);
	free(hooks);
	free(tx);
	omni_test_fmt(lines, sizeof(lines),
	              "120000 blob %s\\tx\\n040000 tree %s\\tx\\n", b, t);
	push_tree(lines);
	prefill("a");
	before = tree_hash(ws("a"));
	int rc = try_start(0, "a", git_state());
	cr_assert_eq(rc, -EINVAL, "%d %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "unsafe snapshot"), "%s",
	          omni_error_last());
	omni_test_fmt(hook, sizeof(hook), "%s/repo/.git/hooks/pre-commit",
	              ws("a"));
	cr_assert(!omni_test_host_exists(hook));
	after = tree_hash(ws("a"));
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
}

/* Load entries over a pre-filled workspace: the load fails with -EINVAL
 * and the workspace, the .git inside it and a directory outside are
 * exactly as they were. */
static void refused_without_a_trace(const struct entry *es, size_t n,
                                    const char *data, const char *id)
{
	char outside[PATH_MAX], *before, *after, *out_before, *out_after;

	omni_test_fmt(outside, sizeof(outside), "%s/outside", fx.tmp);
	cr_assert(sh_in(NULL, "mkdir -p '%s' && echo host > '%s/f'", outside,
	                outside) == 0);
	start_gcs();
	upload_entries(es, n, id);
	prefill(data);
	before = tree_hash(ws(data));
	out_before = tree_hash(outside);
	int rc = try_start(0, data, gcs_state());
	cr_assert_eq(rc, -EINVAL, "%d %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "unsafe snapshot"), "%s",
	          omni_error_last());
	after = tree_hash(ws(data));
	out_after = tree_hash(outside);
	cr_assert_str_eq(before, after);
	cr_assert_str_eq(out_before, out_after);
	free(before);
	free(after);
	free(out_before);
	free(out_after);
}

Test(state_restore, tar_symlink_then_file_beneath_fails_and_changes_nothing)
{
	char target[PATH_MAX];

	omni_test_fmt(target, sizeof(target), "%s/outside", fx.tmp);
	const struct entry es[] = {
		{ "new.txt", 'f', 0644, "staged, never seen", 0 },
		{ "x", 'l', 0777, "repo/.git", 0 },
		{ "x/hooks/pre-commit", 'f', 0755, "#!/bin/sh\n", 0 },
		{ "out", 'l', 0777, target, 0 },
		{ "out/evil", 'f', 0644, "evil", 0 },
	};
	refused_without_a_trace(es, 5, "a", "20300101_000000_000000");
}

Test(state_restore, tar_file_beneath_then_symlink_fails_and_changes_nothing)
{
	const struct entry es[] = {
		{ "x/hooks/pre-commit", 'f', 0755, "#!/bin/sh\n", 0 },
		{ "x", 'l', 0777, "repo/.git", 0 },
		{ "keep.txt", 'f', 0644, "replaced?", 0 },
	};
	refused_without_a_trace(es, 3, "a", "20300101_000000_000000");
}

Test(state_restore, tar_duplicates_of_one_kind_keep_the_last)
{
	const struct entry es[] = {
		{ "d", 'd', 0755, NULL, 0 },
		{ "d/f", 'f', 0644, "first", 0 },
		{ "d/f", 'f', 0644, "second", 0 },
		{ "l", 'l', 0777, "d/f", 0 },
		{ "l", 'l', 0777, "d", 0 },
	};
	char p[PATH_MAX], *text;

	start_gcs();
	upload_entries(es, 5, "20300101_000000_000000");
	omni_assert_ok(try_start(0, "a", gcs_state()));
	omni_test_fmt(p, sizeof(p), "%s/d/f", ws("a"));
	text = omni_test_read_host(p, NULL);
	cr_assert_str_eq(text, "second");
	free(text);
	text = run_out("readlink '%s/l'", ws("a"));
	cr_assert_str_eq(text, "d");
	free(text);
	text = run_out("ls -a '%s'", ws("a"));
	cr_assert_null(strstr(text, OMNI__STAGE_PREFIX), "%s", text);
	free(text);
}

/* --- attack 8: limits and sparse files
 * ----------------------------------- */

Test(state_restore, a_gzip_bomb_stops_at_the_byte_limit)
{
	const struct entry es[] = {
		{ "small.txt", 'f', 0644, "small", 0 },
		{ "bomb", 'f', 0644, NULL, 64ll << 20 },
	};
	char *before, *after;

	setenv("OMNI_RESTORE_MAX_BYTES", "1M", 1);
	start_gcs();
	upload_entries(es, 2, "20300101_000000_000000");
	prefill("a");
	before = tree_hash(ws("a"));
	int rc = try_start(0, "a", gcs_state());
	cr_assert_eq(rc, -EFBIG, "%d %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "OMNI_RESTORE_MAX_BYTES"), "%s",
	          omni_error_last());
	after = tree_hash(ws("a"));
	cr_assert_str_eq(before, after);
	free(before);
	free(after);
}

Test(state_restore, too_many_entries_stop_at_the_entry_limit)
{
	struct entry es[20];
	char names[20][16];

	for (int i = 0; i < 20; i++) {
		snprintf(names[i], sizeof(names[i]), "f%02d", i);
		es[i] = (struct entry){ names[i], 'f', 0644, "x", 0 };
	}
	setenv("OMNI_RESTORE_MAX_ENTRIES", "10", 1);
	start_gcs();
	upload_entries(es, 20, "20300101_000000_000000");
	int rc = try_start(0, "a", gcs_state());
	cr_assert_eq(rc, -EFBIG, "%d %s", rc, omni_error_last());
	cr_assert(strstr(omni_error_last(), "OMNI_RESTORE_MAX_ENTRIES"), "%s",
	          omni_error_last());

	setenv("OMNI_RESTORE_MAX_ENTRIES", "ten", 1);
	rc = try_start(1, "b", gcs_state());
	cr_assert_eq(rc, -EINVAL, "%d %s", rc, omni_error_last());
}

Test(state_restore, gnu_sparse_entries_keep_their_data)
{
	char src[PATH_MAX], archive[PATH_MAX];

	omni_test_fmt(src, sizeof(src), "%s/sparse", fx.tmp);
	omni_test_fmt(archive, sizeof(archive), "%s/sparse.tar.gz", fx.tmp);
	/* Data between holes, a file ending in a hole, one all hole. */
	cr_assert(sh_in(NULL,
	                "mkdir -p '%s' && cd '%s' && truncate -s 10M mid && "
	                "printf HELLO | dd of=mid bs=1 seek=3000000 "
	                "conv=notrunc 2>/dev/null && printf END | dd of=mid "
	                "bs=1 seek=10485757 conv=notrunc 2>/dev/null && "
	                "printf START > tail && truncate -s 8M tail && "
	                "truncate -s 5M hole && "
	                "tar --sparse -czf '%s' mid tail hole",
	                src, src, archive) == 0);
	start_gcs();
	upload_archive(archive, "20300101_000000_000000");
	omni_assert_ok(try_start(0, "a", gcs_state()));
	const char *names[] = { "mid", "tail", "hole" };
	for (int i = 0; i < 3; i++) {
		char a[PATH_MAX], b[PATH_MAX];
		omni_test_fmt(a, sizeof(a), "%s/%s", src, names[i]);
		omni_test_fmt(b, sizeof(b), "%s/%s", ws("a"), names[i]);
		cr_assert(sh_in(NULL, "cmp '%s' '%s'", a, b) == 0, "%s", b);
	}
}

/* --- attack 5: snapshot names
 * ---------------------------------------------- */

Test(state_restore, only_snapshot_names_count)
{
	const struct entry evil[] = { { "f.txt", 'f', 0644, "evil", 0 } };
	char *text;

	omni_assert_ok(try_start(0, "a", gcs_state()));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "f.txt", "real", 4));
	omni_assert_ok(omni_backend_save_snapshot(fx.b[0], "real", NULL));
	/* Names that sort after every real save. */
	upload_entries(evil, 1, "~");
	upload_entries(evil, 1, "99999999_999999_999999x");
	upload_entries(evil, 1, "zzzz");
	omni_assert_ok(try_start(1, "b", gcs_state()));
	omni_assert_ok(omni_backend_read_file(fx.b[1], "f.txt", &text, NULL));
	cr_assert_str_eq(text, "real");
	free(text);
	cr_assert(strstr(fx.log, "~.tar.gz") && strstr(fx.log, "ignoring"),
	          "%s", fx.log);
}

/* --- issue 10: the save reads what the scan saw
 * ------------------------- */

/* The scanned entry of path. */
static const struct omni__ws_entry *scanned(const struct omni__ws_list *l,
                                            const char *path)
{
	const struct omni__ws_entry *e = omni__ws_find(l, path);

	cr_assert_not_null(e, "%s not scanned", path);
	return e;
}

static int count_chunk(const void *data, size_t len, void *payload)
{
	(void)data;
	*(size_t *)payload += len;
	return 0;
}

Test(state_restore, a_scanned_file_swapped_is_never_read)
{
	struct omni__ws_list l;
	char p[PATH_MAX], host[PATH_MAX];
	size_t got = 0;

	omni_assert_ok(try_start(0, "a", NULL));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "fifo", "x", 1));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "link", "x", 1));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "other", "x", 1));
	omni_assert_ok(omni_backend_write_file(fx.b[0], "peer", "peer", 4));
	omni_assert_ok(omni__ws_scan(fx.b[0], 0, &l));
	omni_test_fmt(host, sizeof(host), "%s/secret", fx.tmp);
	omni_test_write_host(host, "host secret", 11);
	/* After the scan: a FIFO (an open would hang), a symlink to a host
	 * file, a symlink to another workspace file. */
	omni_test_fmt(p, sizeof(p), "%s", ws("a"));
	cr_assert(sh_in(p,
	                "rm fifo link other && mkfifo fifo && ln -s '%s' link "
	                "&& ln -s peer other",
	                host) == 0);
	const char *names[] = { "fifo", "link", "other" };
	for (int i = 0; i < 3; i++) {
		int rc =
		    omni__ws_read(fx.b[0], names[i], &scanned(&l, names[i])->st,
		                  count_chunk, &got);
		cr_assert_eq(rc, -ESTALE, "%s: %d %s", names[i], rc,
		             omni_error_last());
	}
	cr_assert_eq(got, 0);
	omni__ws_list_finish(&l);
}

struct swapper {
	const char *dir;
	volatile bool stop;
};

/* Swap "victim" between a regular file and a FIFO, as fast as it goes. */
static void *swap_loop(void *arg)
{
	struct swapper *s = arg;
	char file[PATH_MAX], fifo[PATH_MAX], victim[PATH_MAX];

	omni_test_fmt(file, sizeof(file), "%s/.f.tmp", s->dir);
	omni_test_fmt(fifo, sizeof(fifo), "%s/.p.tmp", s->dir);
	omni_test_fmt(victim, sizeof(victim), "%s/victim", s->dir);
	while (!s->stop) {
		omni_test_write_host(file, "regular", 7);
		rename(file, victim);
		mkfifo(fifo, 0644);
		rename(fifo, victim);
	}
	return NULL;
}

Test(state_restore, a_save_racing_a_fifo_swap_finishes_without_it)
{
	struct swapper s = { .dir = NULL };
	pthread_t t;
	char archive[PATH_MAX];

	omni_assert_ok(try_start(0, "a", NULL));
	for (int i = 0; i < 50; i++) {
		char name[32];
		snprintf(name, sizeof(name), "f%02d", i);
		omni_assert_ok(omni_backend_write_file(fx.b[0], name, "x", 1));
	}
	s.dir = ws("a");
	omni_test_fmt(archive, sizeof(archive), "%s/race.tar.gz", fx.tmp);
	cr_assert(pthread_create(&t, NULL, swap_loop, &s) == 0);
	for (int round = 0; round < 30; round++) {
		struct omni__tar_info info;
		int fd = open(archive, O_RDWR | O_CREAT | O_TRUNC, 0600);
		cr_assert(fd >= 0);
		omni_assert_ok(omni__tar_write(fx.b[0], 0, fd, NULL, &info));
		close(fd);
		/* victim is absent, or a regular file with its text. */
		char *list =
		    run_out("tar tvzf '%s' | grep victim || true", archive);
		cr_assert(!list[0] || list[0] == '-', "%s", list);
		free(list);
	}
	s.stop = true;
	pthread_join(t, NULL);
}
