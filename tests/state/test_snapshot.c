/*
 * tests/state/test_snapshot.c - the pieces the state managers share, without
 * any server: CRC-32C, MD5 and base64 (hash.c), the ignore rules, the
 * workspace scan (snapshot_scan.c) and the apply protocol
 * (snapshot_apply.c), archives
 * (tar_snapshot.c), the project lock, snapshot names, and the JWT of the
 * service-account flow (gcs_auth.c), on a local backend in a temp
 * directory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/api.h"
#include "state/gcs_auth.h"
#include "core/hash.h"
#include "core/session.h"
#include "helpers.h"
#include "mount_helpers.h"
#include "omni/sys/backend_impl.h"
#include "state/snapshot.h"
#include "state_helpers.h"
#include "state/tar_snapshot.h"

static struct omni_fixture fx;

static void setup(void)
{
	omni_fixture_start(&fx);
}

static void teardown(void)
{
	omni_fixture_finish(&fx);
}

TestSuite(state_snapshot, .init = setup, .fini = teardown, .timeout = 60);

static void put(const char *path, const char *text)
{
	omni_assert_ok(omni_backend_write_file(fx.b, path, text, strlen(text)));
}

/* The scan of the workspace as "path path ..." (directories end in /). */
static char *scan_text(unsigned int flags)
{
	struct omni__ws_list l;
	size_t cap = 4096, len = 0;
	char *out = calloc(1, cap);

	omni_assert_ok(omni__ws_scan(fx.b, flags, &l));
	for (size_t i = 0; i < l.count; i++) {
		int n = snprintf(out + len, cap - len, "%s%s%s", len ? " " : "",
		                 l.items[i].path,
		                 S_ISDIR(l.items[i].st.st_mode) ? "/" : "");
		cr_assert(n > 0 && (size_t)n < cap - len);
		len += (size_t)n;
	}
	omni__ws_list_finish(&l);
	return out;
}

/* --- hashes
 * ---------------------------------------------------------------------- */

Test(state_snapshot, crc32c_known_values)
{
	/* RFC 3720 B.4 and the usual check value. */
	unsigned char zeros[32] = { 0 }, ones[32], inc[32];

	memset(ones, 0xff, sizeof(ones));
	for (int i = 0; i < 32; i++)
		inc[i] = (unsigned char)i;
	cr_assert_eq(omni__crc32c(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(omni__crc32c(0, zeros, 32), 0x8A9136AAu);
	cr_assert_eq(omni__crc32c(0, ones, 32), 0x62A8AB43u);
	cr_assert_eq(omni__crc32c(0, inc, 32), 0x46DD794Eu);
	cr_assert_eq(omni__crc32c(0, "", 0), 0u);
	/* Incremental = at once, whatever the split. */
	uint32_t c = omni__crc32c(0, "1234", 4);
	cr_assert_eq(omni__crc32c(c, "56789", 5), 0xE3069283u);
}

Test(state_snapshot, md5_base64_and_hex)
{
	struct omni__md5 m;
	unsigned char sum[16], back[16];
	char hex[33], b64[32], url[32];

	cr_assert(omni__md5_init(&m) == 0);
	omni__md5_update(&m, "abc", 3);
	omni__md5_final(&m, sum);
	omni__hex(sum, 16, hex);
	cr_assert_str_eq(hex, "900150983cd24fb0d6963f7d28e17f72");
	cr_assert_eq(omni__base64_encode(sum, 16, false, b64, sizeof(b64)), 24);
	cr_assert_str_eq(b64, "kAFQmDzST7DWlj99KOF/cg==");
	omni__base64_encode(sum, 16, true, url, sizeof(url));
	cr_assert_str_eq(url, "kAFQmDzST7DWlj99KOF_cg");
	cr_assert_eq(omni__base64_decode(b64, back, sizeof(back)), 16);
	cr_assert(memcmp(back, sum, 16) == 0);
	cr_assert_eq(omni__base64_decode("a!b", back, sizeof(back)), -EINVAL);
	cr_assert_eq(omni__base64_encode(sum, 16, false, b64, 10),
	             -ENAMETOOLONG);
}

/* --- ignore rules
 * ------------------------------------------------------------------ */

struct ignore_case {
	char rules[96];
	char path[64];
	bool dir, ignored;
};

ParameterizedTestParameters(state_snapshot, ignore_rules)
{
	static struct ignore_case cases[] = {
		{ "*.log", "a.log", false, true },
		{ "*.log", "deep/er/a.log", false, true },
		{ "*.log", "a.logx", false, false },
		{ "build/", "build", true, true },
		{ "build/", "build", false, false },
		{ "build/", "src/build", true, true },
		{ "/top.txt", "top.txt", false, true },
		{ "/top.txt", "sub/top.txt", false, false },
		{ "docs/*.md", "docs/a.md", false, true },
		{ "docs/*.md", "x/docs/a.md", false, false },
		{ "docs/**/*.md", "docs/a/b/c.md", false, true },
		{ "docs/**/*.md", "docs/c.md", false, true },
		{ "**/cache", "a/b/cache", true, true },
		{ "**/cache", "cache", true, true },
		{ "out/**", "out/x", false, true },
		{ "out/**", "out", true, false },
		{ "*.log\n!keep.log", "keep.log", false, false },
		{ "*.log\n!keep.log", "other.log", false, true },
		{ "!keep.log\n*.log", "keep.log", false, true },
		{ "# comment\n\n  \nfoo", "foo", false, true },
		{ "# comment", "# comment", false, false },
		{ "\\#hash", "#hash", false, true },
		{ "trail   ", "trail", false, true },
		{ "a?c", "abc", false, true },
		{ "[ab]x", "bx", false, true },
		{ "[ab]x", "cx", false, false },
		{ "*", ".hidden", false, true },
		{ "sub/", "sub", true, true },
		{ "crlf\r", "crlf", false, true },
	};
	return cr_make_param_array(struct ignore_case, cases,
	                           sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct ignore_case *c, state_snapshot, ignore_rules)
{
	struct omni__ignore_set *set;

	omni_assert_ok(
	    omni__ignore_parse(&set, "", c->rules, strlen(c->rules)));
	bool got = omni__ignored(&set, 1, c->path, c->dir);
	omni__ignore_free(set);
	cr_assert_eq(got, c->ignored, "rules '%s', path '%s'%s: %d", c->rules,
	             c->path, c->dir ? " (dir)" : "", got);
}

Test(state_snapshot, nested_gitignore_sets)
{
	struct omni__ignore_set *sets[2];

	omni_assert_ok(omni__ignore_parse(&sets[0], "", "*.tmp\n", 6));
	omni_assert_ok(
	    omni__ignore_parse(&sets[1], "sub", "!x.tmp\n/only\n", 13));
	/* The deeper file wins, and its anchored rules are relative to it. */
	cr_assert(omni__ignored(sets, 2, "a.tmp", false));
	cr_assert(!omni__ignored(sets, 2, "sub/x.tmp", false));
	cr_assert(omni__ignored(sets, 2, "sub/y.tmp", false));
	cr_assert(omni__ignored(sets, 2, "sub/only", false));
	cr_assert(!omni__ignored(sets, 2, "only", false));
	cr_assert(!omni__ignored(sets, 2, "subx/only", false));
	omni__ignore_free(sets[0]);
	omni__ignore_free(sets[1]);
}

Test(state_snapshot, scan_applies_defaults_gitignores_and_skips_git)
{
	char *text;

	put("a.txt", "a");
	put(".gitignore", "*.log\nsecret/\n");
	put("x.log", "ignored");
	put("secret/key", "ignored");
	put("node_modules/m/i.js", "ignored by default");
	put("src/__pycache__/c.pyc", "ignored by default");
	put("src/m.py", "kept");
	put("src/.gitignore", "gen/\n!x.log\n");
	put("src/gen/g.c", "ignored by src/.gitignore");
	put("src/x.log", "re-included below src");
	put("repo/.git/HEAD", "ref");
	put("repo/f", "f");
	omni_assert_ok(omni_backend_create_directory(fx.b, "empty", false));
	char fifo[PATH_MAX];
	omni_test_host_path(&fx, "pipe", fifo, sizeof(fifo));
	cr_assert(mkfifo(fifo, 0600) == 0); /* not a file: left out */

	text = scan_text(OMNI__SCAN_SKIP_GIT);
	cr_assert_str_eq(text, ".gitignore a.txt empty/ repo/ repo/f src/ "
	                       "src/.gitignore src/m.py src/x.log");
	free(text);
	text = scan_text(0);
	cr_assert(strstr(text, "repo/.git/ repo/.git/HEAD"), "%s", text);
	free(text);
}

/* --- apply
 * ---------------------------------------------------------------------------
 */

static int write_file(struct omni__apply *a, const char *path, mode_t mode,
                      const char *text)
{
	struct omni__apply_file af;
	int rc = omni__apply_file_open(a, &af, path, mode);

	if (rc == 0 &&
	    (rc = omni__apply_file_write(a, &af, text, strlen(text))) < 0)
		omni__apply_file_abort(a, &af);
	else if (rc == 0)
		rc = omni__apply_file_commit(a, &af, -1, NULL);
	return rc;
}

Test(state_snapshot, apply_replaces_deletes_and_keeps_what_it_must)
{
	struct omni__apply a;
	char *text;

	put("old.txt", "stale");
	put("olddir/x", "stale");
	put("becomes_dir", "a file where a directory goes");
	put("becomes_file/inner", "a directory where a file goes");
	put("node_modules/kept.js", "ignored: never deleted");
	put("mixed/ignored.log", "ignored: keeps mixed/");
	put("mixed/.gitignore", "*.log\n");
	omni_assert_ok(
	    omni_backend_create_directory(fx.b, "user_empty", false));
	put("same.txt", "same");

	omni_assert_ok(omni__apply_begin(&a, fx.b, 0, NULL, "test"));
	cr_assert(!omni__apply_workspace_empty(&a));
	cr_assert_not_null(omni__apply_existing(&a, "same.txt"));
	omni__apply_keep(&a, "same.txt");
	omni_assert_ok(omni__apply_dir(&a, "becomes_dir", 0750));
	omni_assert_ok(write_file(&a, "becomes_dir/f", 0644, "inside"));
	omni_assert_ok(write_file(&a, "becomes_file", 0755, "now a file"));
	omni_assert_ok(write_file(&a, "new/deep/n.txt", 0600, "new"));
	omni_assert_ok(omni__apply_symlink(&a, "link", "new/deep/n.txt"));
	omni_assert_ok(omni__apply_finish(&a));
	omni__apply_cleanup(&a);

	text = state_tree_text(fx.b, NULL);
	cr_assert(strstr(text, "d becomes_dir\n"), "%s", text);
	cr_assert(strstr(text, "f 755 becomes_file "), "%s", text);
	cr_assert(strstr(text, "f 600 new/deep/n.txt "), "%s", text);
	cr_assert(strstr(text, "l link -> new/deep/n.txt"), "%s", text);
	cr_assert(strstr(text, "node_modules/kept.js"), "%s", text);
	cr_assert(strstr(text, "mixed/ignored.log"), "%s", text);
	cr_assert(strstr(text, "d user_empty"), "%s", text);
	cr_assert(strstr(text, "same.txt"), "%s", text);
	cr_assert_null(strstr(text, "old.txt"), "%s", text);
	cr_assert_null(strstr(text, "olddir"), "%s", text);
	cr_assert_null(strstr(text, "inner"), "%s", text);
	/* No temporaries or staging left behind. */
	cr_assert_null(strstr(text, ".omnifs-tmp"), "%s", text);
	cr_assert_null(strstr(text, OMNI__STAGE_PREFIX), "%s", text);
	free(text);
	struct stat st;
	char p[PATH_MAX];
	omni_test_host_path(&fx, "becomes_dir", p, sizeof(p));
	cr_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0750);
}

Test(state_snapshot, snapshot_paths)
{
	char p[64];

	strcpy(p, "./a/b/");
	cr_assert(omni__snap_path_ok(p));
	cr_assert_str_eq(p, "a/b");
	static const char *const bad[] = { "",       "/etc/passwd", "../x",
		                           "a/../b", "a//b",        "./",
		                           "a/./b",  ".",           NULL };
	for (size_t i = 0; bad[i]; i++) {
		strcpy(p, bad[i]);
		cr_assert(!omni__snap_path_ok(p), "'%s' accepted", bad[i]);
	}
}

/* --- archives
 * ------------------------------------------------------------------------ */

Test(state_snapshot, archive_round_trip_and_digest)
{
	char path[PATH_MAX];
	struct omni__tar_info w, c;
	struct omni__apply a;

	put("a.txt", "alpha");
	put("bin/x", "#!/bin/sh\n");
	omni_assert_ok(omni_vfs_chmod(fx.b, "bin/x", 0700));
	omni_assert_ok(omni_vfs_symlink(fx.b, "a.txt", "l"));
	omni_assert_ok(omni_backend_create_directory(fx.b, "e", false));
	char *before = state_tree_text(fx.b, NULL);

	omni_test_fmt(path, sizeof(path), "%s/snap.tar.gz", fx.tmp);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	omni_assert_ok(omni__tar_write(fx.b, 0, fd, NULL, &w));
	cr_assert_eq(w.files, 3);
	cr_assert_eq(w.bytes, 5 + 10);
	cr_assert_gt(w.size, 0);
	omni_assert_ok(omni__tar_check(fd, path, &c));
	cr_assert_str_eq(c.digest, w.digest,
	                 "the same entries, the same digest");
	cr_assert_eq(c.files, w.files);
	/* The CLI reads it too. */
	cr_assert(sh_in(NULL,
	                "tar tzf '%s' | sort | tr '\\n' ' ' | grep -qx "
	                "'a.txt bin/ bin/x e/ l '",
	                path) == 0);

	/* Into an emptied workspace: the same tree comes back. */
	omni_assert_ok(omni__remove_tree(fx.b, ""));
	omni_assert_ok(omni__apply_begin(&a, fx.b, 0, NULL, "test"));
	cr_assert(omni__apply_workspace_empty(&a));
	omni_assert_ok(omni__tar_apply(&a, fd, path));
	omni_assert_ok(omni__apply_finish(&a));
	omni__apply_cleanup(&a);
	close(fd);
	char *after = state_tree_text(fx.b, NULL);
	cr_assert_str_eq(after, before);
	free(before);
	free(after);

	/* The digest sees a mode change, and not the order. */
	struct omni__digest d1 = { 0 }, d2 = { 0 };
	unsigned char z[16] = { 0 };
	char h1[33], h2[33];
	omni__digest_add(&d1, 'f', 0644, "a", z);
	omni__digest_add(&d1, 'f', 0644, "b", z);
	omni__digest_add(&d2, 'f', 0644, "b", z);
	omni__digest_add(&d2, 'f', 0644, "a", z);
	omni_assert_ok(omni__digest_final(&d1, h1));
	omni_assert_ok(omni__digest_final(&d2, h2));
	cr_assert_str_eq(h1, h2);
	omni__digest_finish(&d2);
	omni__digest_add(&d2, 'f', 0600, "b", z);
	omni__digest_add(&d2, 'f', 0644, "a", z);
	omni_assert_ok(omni__digest_final(&d2, h2));
	cr_assert_str_neq(h1, h2);
	omni__digest_finish(&d1);
	omni__digest_finish(&d2);
}

/* --- place, lock, names
 * -------------------------------------------------------------- */

Test(state_snapshot, state_dir_lock_and_names)
{
	char dir[PATH_MAX], lock[PATH_MAX + 16], want[PATH_MAX], a[32], b[32];
	int fd1, fd2;

	omni_assert_ok(omni__state_dir(fx.b, NULL, dir, sizeof(dir)));
	omni_test_fmt(want, sizeof(want), "%s/.omnifs-state", fx.data);
	cr_assert_str_eq(dir, want);
	struct stat st;
	cr_assert(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);

	omni_test_fmt(lock, sizeof(lock), "%s/p.lock", dir);
	omni_assert_ok(omni__state_lock(lock, 5, "test", &fd1));
	/* A second holder (another open file description) waits, then
	 * gives up with a message. */
	long long t0 = omni_test_now_ms();
	omni_assert_err(omni__state_lock(lock, 0, "test", &fd2), -EBUSY);
	cr_assert(strstr(omni_error_last(), "another save or load"));
	cr_assert_lt(omni_test_now_ms() - t0, 2000);
	omni__state_unlock(fd1);
	omni_assert_ok(omni__state_lock(lock, 0, "test", &fd2));
	omni__state_unlock(fd2);

	omni__snap_timestamp(a, NULL);
	cr_assert_eq(strlen(a), 22);
	cr_assert_gt(omni__snap_time(a), 1600000000);
	/* Never at or before the previous name, even when the clock is. */
	omni__snap_timestamp(b, "29991231_235959_999999");
	cr_assert_str_eq(b, "30000101_000000_000000");
	cr_assert_eq(omni__snap_time("20260101_000000_000000"), 1767225600);
	cr_assert_eq(omni__snap_time("2026-01-01"), -1);
	cr_assert_eq(omni__snap_time("20261301_000000_000000"), -1);
}

/* --- the service-account JWT
 * --------------------------------------------------------- */

static void b64url_to_bin(const char *s, size_t n, unsigned char *out, int *len)
{
	char buf[2048];
	size_t j = 0;

	for (size_t i = 0; i < n && j < sizeof(buf) - 4; i++)
		buf[j++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (j % 4)
		buf[j++] = '=';
	buf[j] = '\0';
	*len = omni__base64_decode(buf, out, 1024);
}

Test(state_snapshot, jwt_is_rs256_signed_with_the_claims)
{
	char key[PATH_MAX], pub[PATH_MAX], *jwt;
	unsigned char sig[1024], claims[1024];
	int siglen, clen;

	omni_test_fmt(key, sizeof(key), "%s/k.pem", fx.tmp);
	omni_test_fmt(pub, sizeof(pub), "%s/k.pub", fx.tmp);
	cr_assert(sh_in(NULL,
	                "openssl genrsa -out '%s' 2048 2>/dev/null && "
	                "openssl rsa -in '%s' -pubout -out '%s' 2>/dev/null",
	                key, key, pub) == 0);
	char *pem = omni_test_read_host(key, NULL);
	omni_assert_ok(omni__gcs_jwt("me@x.iam", pem, "kid1", OMNI_GCS_SCOPE,
	                             "http://127.0.0.1/token", 1700000000,
	                             &jwt));
	free(pem);
	char *dot1 = strchr(jwt, '.'), *dot2 = strrchr(jwt, '.');
	cr_assert(dot1 && dot2 && dot1 != dot2);
	b64url_to_bin(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims, &clen);
	cr_assert_gt(clen, 0);
	claims[clen] = '\0';
	cr_assert(strstr((char *)claims, "\"iss\":\"me@x.iam\""), "%s", claims);
	cr_assert(strstr((char *)claims, "\"aud\":\"http://127.0.0.1/token\""));
	cr_assert(strstr((char *)claims, "\"exp\":1700003600"), "%s", claims);
	cr_assert(strstr((char *)claims, "devstorage.read_write"));
	b64url_to_bin(dot2 + 1, strlen(dot2 + 1), sig, &siglen);
	cr_assert_eq(siglen, 256);

	/* Verify with the public key, as the token endpoint does. */
	FILE *f = fopen(pub, "r");
	EVP_PKEY *pk = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	cr_assert(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1);
	cr_assert_eq(EVP_DigestVerify(md, sig, (size_t)siglen,
	                              (unsigned char *)jwt,
	                              (size_t)(dot2 - jwt)),
	             1);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pk);
	free(jwt);

	omni_assert_err(
	    omni__gcs_jwt("me", "not a key", NULL, "s", "a", 0, &jwt), -EINVAL);
}

/* --- the cache goes between the session and its manager ------------------ */

Test(state_snapshot, session_cache_keeps_the_manager)
{
	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
	struct omni__session *s;
	struct omni_backend *inner, *cache;
	struct omni_state *st;
	char other[PATH_MAX];

	omni_test_fmt(other, sizeof(other), "%s/other", fx.tmp);
	o.data_path = other;
	o.progress = true;
	setenv("OMNIAGENTS_GITHUB_STATE_REPO", "owner/repo", 1);
	omni_assert_ok(omni_state_new(&st, "git"));
	omni_assert_ok(omni__session_open(&s, "local", "moved", &o, st));
	inner = omni__session_backend(s);
	omni_assert_ok(omni__session_add_cache(s, NULL));
	cache = omni__session_backend(s);
	cr_assert_neq(cache, inner);
	cr_assert(omni__session_cached(s));
	/* One manager, reached from both, and it saves through the cache,
	 * which reads the data path and progress setting of the backend. */
	cr_assert_eq(omni__session_state(s), st);
	cr_assert_str_eq(omni_state_name(omni_backend_state(cache)), "git");
	cr_assert_str_eq(omni_state_name(omni_backend_state(inner)), "git");
	cr_assert_str_eq(cache->opts.data_path, other);
	cr_assert(cache->opts.progress);
	/* Once only, and not with a running session. */
	omni_assert_err(omni__session_add_cache(s, NULL), -EBUSY);
	omni__session_free(s); /* frees the git manager once */
	omni_assert_err(omni__session_add_cache(fx.b->session, NULL), -EBUSY);
}
