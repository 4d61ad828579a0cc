/*
 * tests/local/test_local_files.c - the local backend's files and
 * directories (suite backend_local, see test_local.c): write/read round
 * trips (text, all 256 byte values, 5 MB, missing parents), file_exists,
 * copy, move, delete, and directories: list (flat and recursive), create,
 * delete.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "local_helpers.h"

/* --- read and write ------------------------------------------------------- */

Test(backend_local, write_read_round_trip)
{
	char *data = NULL;
	size_t len = 0;

	local_put("hello.txt", "Hello, world\n");
	local_assert_content("hello.txt", "Hello, world\n");
	local_assert_content("/workspace/hello.txt", "Hello, world\n");
	local_assert_content("./x/../hello.txt", "Hello, world\n");
	/* The file is really on the host. */
	data = omni_test_read_host(local_hp("hello.txt"), &len);
	cr_assert_not_null(data);
	cr_assert_str_eq(data, "Hello, world\n");
	free(data);
	/* out_len may be NULL; the buffer is NUL-terminated. */
	omni_assert_ok(
	    omni_backend_read_file(local_fx.b, "hello.txt", &data, NULL));
	cr_assert_str_eq(data, "Hello, world\n");
	free(data);
}

Test(backend_local, write_replaces_and_truncates)
{
	struct stat st;

	local_put("f.txt", "a much longer first content");
	local_put("f.txt", "short");
	local_assert_content("f.txt", "short");
	cr_assert_eq(stat(local_hp("f.txt"), &st), 0);
	cr_assert_eq(st.st_size, 5);
	/* An empty write makes an empty file. */
	omni_assert_ok(omni_backend_write_file(local_fx.b, "empty", "", 0));
	local_assert_content("empty", "");
	omni_assert_ok(omni_backend_write_file(local_fx.b, "empty2", NULL, 0));
	local_assert_content("empty2", "");
}

Test(backend_local, binary_all_byte_values)
{
	unsigned char bytes[256 * 3];
	char *data;
	size_t len, hlen;

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (unsigned char)(255 - i % 256);
	omni_assert_ok(
	    omni_backend_write_file(local_fx.b, "bin", bytes, sizeof(bytes)));
	omni_assert_ok(omni_backend_read_file(local_fx.b, "bin", &data, &len));
	cr_assert_eq(len, sizeof(bytes));
	cr_assert_eq(memcmp(data, bytes, len), 0);
	cr_assert_eq(data[len], '\0');
	free(data);
	data = omni_test_read_host(local_hp("bin"), &hlen);
	cr_assert_eq(hlen, sizeof(bytes));
	cr_assert_eq(memcmp(data, bytes, hlen), 0);
	free(data);
}

Test(backend_local, five_megabytes)
{
	size_t n = 5 * 1024 * 1024 + 17;
	unsigned char *big = malloc(n);
	char *data;
	size_t len;
	struct stat st;

	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (unsigned char)((i * 2654435761u) >> 13);
	omni_assert_ok(
	    omni_backend_write_file(local_fx.b, "big/5mb.bin", big, n));
	cr_assert_eq(stat(local_hp("big/5mb.bin"), &st), 0);
	cr_assert_eq((size_t)st.st_size, n);
	omni_assert_ok(
	    omni_backend_read_file(local_fx.b, "big/5mb.bin", &data, &len));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, big, n), 0);
	free(data);
	free(big);
}

Test(backend_local, write_makes_missing_parents)
{
	struct stat st;

	local_put("a/b/c/deep.txt", "deep");
	cr_assert_eq(stat(local_hp("a/b/c"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	local_assert_content("a/b/c/deep.txt", "deep");
	local_put("/workspace/x/y.txt", "abs");
	local_assert_content("x/y.txt", "abs");
}

Test(backend_local, write_errors)
{
	local_put("file", "f");
	/* A parent that is a file. */
	omni_assert_err(omni_backend_write_file(local_fx.b, "file/sub", "x", 1),
	                -ENOTDIR);
	/* The workspace itself, or a directory. */
	omni_assert_err(
	    omni_backend_write_file(local_fx.b, "/workspace", "x", 1), -EISDIR);
	omni_assert_err(omni_backend_write_file(local_fx.b, "", "x", 1),
	                -EISDIR);
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "dir", false));
	omni_assert_err(omni_backend_write_file(local_fx.b, "dir", "x", 1),
	                -EISDIR);
}

Test(backend_local, read_errors)
{
	char *data = (char *)&local_fx;
	size_t len = 99;

	omni_assert_err(
	    omni_backend_read_file(local_fx.b, "missing.txt", &data, &len),
	    -ENOENT);
	cr_assert_null(data);
	cr_assert_eq(len, 0);
	cr_assert_str_neq(omni_error_last(), "");
	omni_assert_err(
	    omni_backend_read_file(local_fx.b, "no/such/dir/f", &data, &len),
	    -ENOENT);
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "d", false));
	omni_assert_err(omni_backend_read_file(local_fx.b, "d", &data, &len),
	                -EISDIR);
	cr_assert_null(data);
	omni_assert_err(
	    omni_backend_read_file(local_fx.b, "/workspace", &data, &len),
	    -EISDIR);
	local_put("f", "x");
	omni_assert_err(omni_backend_read_file(local_fx.b, "f/g", &data, &len),
	                -ENOTDIR);
}

Test(backend_local, read_empty_file)
{
	char *data;
	size_t len = 99;

	omni_test_write_host(local_hp("zero"), "", 0);
	omni_assert_ok(omni_backend_read_file(local_fx.b, "zero", &data, &len));
	cr_assert_eq(len, 0);
	cr_assert_not_null(data);
	cr_assert_str_eq(data, "");
	free(data);
}

/* --- file_exists ---------------------------------------------------------- */

Test(backend_local, file_exists_types)
{
	local_put("f.txt", "f");
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "d", false));
	cr_assert_eq(symlink("f.txt", local_hp("link")), 0);
	cr_assert_eq(symlink("nowhere", local_hp("dangling")), 0);

	cr_assert_eq(omni_backend_file_exists(local_fx.b, "f.txt"),
	             OMNI_FILE_FILE);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "/workspace/f.txt"),
	             OMNI_FILE_FILE);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "d"),
	             OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, ""),
	             OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "/workspace"),
	             OMNI_FILE_DIRECTORY);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "link"),
	             OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "dangling"),
	             OMNI_FILE_SYMLINK);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "nope"),
	             OMNI_FILE_NONE);
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "nope/deeper"),
	             OMNI_FILE_NONE);
	/* Under a regular file: not there (ENOTDIR is "none"). */
	cr_assert_eq(omni_backend_file_exists(local_fx.b, "f.txt/x"),
	             OMNI_FILE_NONE);
	/* "none" is not an error: the message is cleared. */
	cr_assert_str_eq(omni_error_last(), "");
	omni_assert_err(omni_backend_file_exists(local_fx.b, "../x"), -EACCES);
}

/* --- copy, move, delete --------------------------------------------------- */

Test(backend_local, copy_keeps_content_and_mode)
{
	struct stat st;

	local_put("src.sh", "#!/bin/sh\necho hi\n");
	cr_assert_eq(chmod(local_hp("src.sh"), 0751), 0);
	omni_assert_ok(omni_backend_copy_file(local_fx.b, "src.sh", "dst.sh"));
	local_assert_content("dst.sh", "#!/bin/sh\necho hi\n");
	local_assert_content("src.sh", "#!/bin/sh\necho hi\n");
	cr_assert_eq(stat(local_hp("dst.sh"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751, "mode %o", st.st_mode & 07777);

	/* Into a missing directory, replacing nothing. */
	omni_assert_ok(omni_backend_copy_file(local_fx.b, "/workspace/src.sh",
	                                      "new/dir/copy.sh"));
	local_assert_content("new/dir/copy.sh", "#!/bin/sh\necho hi\n");

	/* Replacing an existing longer file with another mode. */
	local_put("old", "a much longer old content that must go away");
	cr_assert_eq(chmod(local_hp("old"), 0600), 0);
	omni_assert_ok(omni_backend_copy_file(local_fx.b, "src.sh", "old"));
	local_assert_content("old", "#!/bin/sh\necho hi\n");
	cr_assert_eq(stat(local_hp("old"), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0751, "mode %o", st.st_mode & 07777);
}

Test(backend_local, copy_large_and_binary)
{
	size_t n = 3 * 1024 * 1024 + 5;
	char *big = malloc(n), *data;
	size_t len;

	cr_assert_not_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)(i * 7);
	omni_assert_ok(omni_backend_write_file(local_fx.b, "big", big, n));
	omni_assert_ok(omni_backend_copy_file(local_fx.b, "big", "big2"));
	omni_assert_ok(omni_backend_read_file(local_fx.b, "big2", &data, &len));
	cr_assert_eq(len, n);
	cr_assert_eq(memcmp(data, big, n), 0);
	free(data);
	free(big);
}

Test(backend_local, copy_errors)
{
	omni_assert_err(omni_backend_copy_file(local_fx.b, "missing", "x"),
	                -ENOENT);
	cr_assert_not(omni_test_host_exists(local_hp("x")));
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "d", false));
	omni_assert_err(omni_backend_copy_file(local_fx.b, "d", "x"), -EISDIR);
	cr_assert_not(omni_test_host_exists(local_hp("x")));
	local_put("f", "f");
	omni_assert_err(omni_backend_copy_file(local_fx.b, "f", "d"), -EISDIR);
	omni_assert_err(omni_backend_copy_file(local_fx.b, "f", "../f"),
	                -EACCES);
	omni_assert_err(
	    omni_backend_copy_file(local_fx.b, "/etc/hostname", "f2"), -EACCES);
}

Test(backend_local, copy_onto_itself_keeps_the_data)
{
	/* Opening the target with O_TRUNC first would empty the source. */
	local_put("same.txt", "precious");
	omni_assert_err(
	    omni_backend_copy_file(local_fx.b, "same.txt", "same.txt"),
	    -EINVAL);
	local_assert_content("same.txt", "precious");
	cr_assert_lt(omni_backend_copy_file(local_fx.b, "same.txt",
	                                    "/workspace/./same.txt"),
	             0);
	local_assert_content("same.txt", "precious");
	/* The same file under another name. */
	cr_assert_eq(symlink("same.txt", local_hp("alias")), 0);
	cr_assert_lt(omni_backend_copy_file(local_fx.b, "same.txt", "alias"),
	             0);
	local_assert_content("same.txt", "precious");
	omni_assert_ok(omni_vfs_link(local_fx.b, "same.txt", "hard"));
	cr_assert_lt(omni_backend_copy_file(local_fx.b, "hard", "same.txt"), 0);
	local_assert_content("same.txt", "precious");
}

Test(backend_local, move_file_and_directory)
{
	local_put("a.txt", "A");
	omni_assert_ok(omni_backend_move_file(local_fx.b, "a.txt", "b.txt"));
	cr_assert_not(omni_test_host_exists(local_hp("a.txt")));
	local_assert_content("b.txt", "A");

	/* Into a missing directory. */
	omni_assert_ok(
	    omni_backend_move_file(local_fx.b, "b.txt", "sub/dir/c.txt"));
	local_assert_content("sub/dir/c.txt", "A");

	/* A whole directory. */
	local_put("tree/one", "1");
	local_put("tree/deep/two", "2");
	omni_assert_ok(
	    omni_backend_move_file(local_fx.b, "/workspace/tree", "moved"));
	cr_assert_not(omni_test_host_exists(local_hp("tree")));
	local_assert_content("moved/one", "1");
	local_assert_content("moved/deep/two", "2");

	/* The target file is replaced. */
	local_put("x", "new");
	local_put("y", "old");
	omni_assert_ok(omni_backend_move_file(local_fx.b, "x", "y"));
	local_assert_content("y", "new");
	cr_assert_not(omni_test_host_exists(local_hp("x")));
}

Test(backend_local, move_errors)
{
	omni_assert_err(omni_backend_move_file(local_fx.b, "missing", "x"),
	                -ENOENT);
	/* A failed move leaves no new directories behind. */
	omni_assert_err(
	    omni_backend_move_file(local_fx.b, "missing", "new/dir/x"),
	    -ENOENT);
	cr_assert_not(omni_test_host_exists(local_hp("new")));
	omni_assert_err(omni_backend_move_file(local_fx.b, "/workspace", "x"),
	                -EBUSY);
	local_put("f", "f");
	omni_assert_err(omni_backend_move_file(local_fx.b, "f", ""), -EBUSY);
	omni_assert_err(omni_backend_move_file(local_fx.b, "f", "../f"),
	                -EACCES);
	omni_assert_err(omni_backend_move_file(local_fx.b, "../f", "f"),
	                -EACCES);
	/* A directory onto a non-empty directory. */
	local_put("d1/a", "a");
	local_put("d2/b", "b");
	cr_assert_lt(omni_backend_move_file(local_fx.b, "d1", "d2"), 0);
	local_assert_content("d2/b", "b");
	local_assert_content("f", "f");
}

Test(backend_local, delete_file)
{
	local_put("f", "f");
	omni_assert_ok(omni_backend_delete_file(local_fx.b, "f"));
	cr_assert_not(omni_test_host_exists(local_hp("f")));
	omni_assert_err(omni_backend_delete_file(local_fx.b, "f"), -ENOENT);
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "d", false));
	omni_assert_err(omni_backend_delete_file(local_fx.b, "d"), -EISDIR);
	cr_assert(omni_test_host_exists(local_hp("d")));
	omni_assert_err(omni_backend_delete_file(local_fx.b, "/workspace"),
	                -EISDIR);

	/* A symlink is deleted, not its target. */
	local_put("target", "t");
	cr_assert_eq(symlink("target", local_hp("link")), 0);
	omni_assert_ok(omni_backend_delete_file(local_fx.b, "link"));
	cr_assert_not(omni_test_host_exists(local_hp("link")));
	local_assert_content("target", "t");
	/* A dangling one too. */
	cr_assert_eq(symlink("nowhere", local_hp("dangling")), 0);
	omni_assert_ok(omni_backend_delete_file(local_fx.b, "dangling"));
	cr_assert_not(omni_test_host_exists(local_hp("dangling")));
}

/* --- directories ---------------------------------------------------------- */

Test(backend_local, list_directory_flat_and_recursive)
{
	struct omni_dir_list l;

	local_put("b.txt", "bbb");
	local_put("a.txt", "a");
	local_put("sub/inner.txt", "12345");
	local_put("sub/deeper/z", "");
	cr_assert_eq(symlink("a.txt", local_hp("ln")), 0);

	omni_assert_ok(omni_backend_list_directory(local_fx.b, "", false, &l));
	cr_assert_eq(l.count, 4);
	cr_assert_str_eq(l.entries[0].path, "a.txt");
	cr_assert_eq(l.entries[0].type, OMNI_FILE_FILE);
	cr_assert_eq(l.entries[0].size, 1);
	cr_assert_str_eq(l.entries[1].path, "b.txt");
	cr_assert_eq(l.entries[1].size, 3);
	cr_assert_str_eq(l.entries[2].path, "ln");
	cr_assert_eq(l.entries[2].type, OMNI_FILE_SYMLINK);
	cr_assert_str_eq(l.entries[3].path, "sub");
	cr_assert_eq(l.entries[3].type, OMNI_FILE_DIRECTORY);
	omni_dir_list_finish(&l);
	cr_assert_null(l.entries);
	cr_assert_eq(l.count, 0);

	omni_assert_ok(
	    omni_backend_list_directory(local_fx.b, "/workspace", true, &l));
	static const char *want[] = { "a.txt",        "b.txt",
		                      "ln",           "sub",
		                      "sub/deeper",   "sub/deeper/z",
		                      "sub/inner.txt" };
	cr_assert_eq(l.count, sizeof(want) / sizeof(*want));
	for (size_t i = 0; i < l.count; i++)
		cr_assert_str_eq(l.entries[i].path, want[i], "entry %zu", i);
	cr_assert_eq(l.entries[4].type, OMNI_FILE_DIRECTORY);
	cr_assert_eq(l.entries[5].type, OMNI_FILE_FILE);
	cr_assert_eq(l.entries[5].size, 0);
	cr_assert_eq(l.entries[6].size, 5);
	omni_dir_list_finish(&l);

	/* Paths are relative to the listed directory. */
	omni_assert_ok(
	    omni_backend_list_directory(local_fx.b, "sub", true, &l));
	cr_assert_eq(l.count, 3);
	cr_assert_str_eq(l.entries[0].path, "deeper");
	cr_assert_str_eq(l.entries[1].path, "deeper/z");
	cr_assert_str_eq(l.entries[2].path, "inner.txt");
	omni_dir_list_finish(&l);
}

Test(backend_local, list_sorts_bytewise)
{
	struct omni_dir_list l;
	static const char *names[] = { "b",   "B",   "a",  "_",
		                       "a-b", "a.b", "10", "9" };
	static const char *sorted[] = { "10", "9",   "B",   "_",
		                        "a",  "a-b", "a.b", "b" };

	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++)
		local_put(names[i], "");
	omni_assert_ok(
	    omni_backend_list_directory(local_fx.b, NULL, false, &l));
	cr_assert_eq(l.count, 8);
	for (size_t i = 0; i < l.count; i++)
		cr_assert_str_eq(l.entries[i].path, sorted[i]);
	omni_dir_list_finish(&l);
}

Test(backend_local, list_directory_errors)
{
	struct omni_dir_list l;

	omni_assert_ok(omni_backend_list_directory(local_fx.b, "", true, &l));
	cr_assert_eq(l.count, 0);
	omni_dir_list_finish(&l);
	local_put("f", "x");
	omni_assert_err(omni_backend_list_directory(local_fx.b, "f", false, &l),
	                -ENOTDIR);
	cr_assert_eq(l.count, 0);
	omni_assert_err(
	    omni_backend_list_directory(local_fx.b, "missing", false, &l),
	    -ENOENT);
	omni_assert_err(
	    omni_backend_list_directory(local_fx.b, "..", false, &l), -EACCES);
}

Test(backend_local, directory_links_inside)
{
	struct omni_dir_list l;

	local_put("real/a", "a");
	cr_assert_eq(symlink("real", local_hp("dl")), 0);
	cr_assert_eq(symlink("real/a", local_hp("fl")), 0);
	cr_assert_eq(symlink("nowhere", local_hp("dangling")), 0);
	/* A link to a directory lists as the directory ... */
	omni_assert_ok(
	    omni_backend_list_directory(local_fx.b, "dl", false, &l));
	cr_assert_eq(l.count, 1);
	cr_assert_str_eq(l.entries[0].path, "a");
	omni_dir_list_finish(&l);
	/* ... a link to a file or to nothing does not. */
	omni_assert_err(
	    omni_backend_list_directory(local_fx.b, "fl", false, &l), -ENOTDIR);
	omni_assert_err(
	    omni_backend_list_directory(local_fx.b, "dangling", false, &l),
	    -ENOENT);
	/* mkdir -p through and onto a link to a directory. */
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "dl", true));
	omni_assert_ok(
	    omni_backend_create_directory(local_fx.b, "dl/x/y", true));
	cr_assert(omni_test_host_exists(local_hp("real/x/y")));
	omni_assert_err(omni_backend_create_directory(local_fx.b, "fl/x", true),
	                -ENOTDIR);
	omni_assert_err(omni_backend_write_file(local_fx.b, "fl/x", "x", 1),
	                -ENOTDIR);
	omni_assert_err(
	    omni_backend_write_file(local_fx.b, "dangling/x", "x", 1), -ENOENT);
	cr_assert_not(omni_test_host_exists(local_hp("nowhere")));
}

Test(backend_local, create_directory)
{
	struct stat st;

	omni_assert_ok(omni_backend_create_directory(local_fx.b, "d", false));
	cr_assert_eq(stat(local_hp("d"), &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	omni_assert_err(omni_backend_create_directory(local_fx.b, "d", false),
	                -EEXIST);
	omni_assert_err(omni_backend_create_directory(local_fx.b, "x/y", false),
	                -ENOENT);
	cr_assert_not(omni_test_host_exists(local_hp("x")));
	omni_assert_ok(
	    omni_backend_create_directory(local_fx.b, "x/y/z", true));
	cr_assert_eq(stat(local_hp("x/y/z"), &st), 0);
	/* With parents an existing directory is fine. */
	omni_assert_ok(
	    omni_backend_create_directory(local_fx.b, "x/y/z", true));
	omni_assert_ok(
	    omni_backend_create_directory(local_fx.b, "/workspace/x", true));
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "", true));
	omni_assert_err(
	    omni_backend_create_directory(local_fx.b, "/workspace", false),
	    -EEXIST);
	/* A file in the way. */
	local_put("file", "");
	omni_assert_err(omni_backend_create_directory(local_fx.b, "file", true),
	                -ENOTDIR);
	omni_assert_err(
	    omni_backend_create_directory(local_fx.b, "file/sub", true),
	    -ENOTDIR);
	omni_assert_err(
	    omni_backend_create_directory(local_fx.b, "file", false), -EEXIST);
	omni_assert_err(
	    omni_backend_create_directory(local_fx.b, "../up", true), -EACCES);
}

Test(backend_local, delete_directory_recursive)
{
	local_put("tree/a", "a");
	local_put("tree/sub/b", "b");
	local_put("tree/sub/deeper/c", "c");
	local_put("tree/.hidden", "h");
	omni_assert_ok(
	    omni_backend_create_directory(local_fx.b, "tree/empty", false));
	omni_assert_ok(omni_backend_delete_directory(local_fx.b, "tree"));
	cr_assert_not(omni_test_host_exists(local_hp("tree")));
	/* An empty one. */
	omni_assert_ok(omni_backend_create_directory(local_fx.b, "e", false));
	omni_assert_ok(
	    omni_backend_delete_directory(local_fx.b, "/workspace/e"));
	cr_assert_not(omni_test_host_exists(local_hp("e")));
}

Test(backend_local, delete_directory_does_not_follow_links)
{
	local_put("keep/precious", "p");
	local_put("d/file", "f");
	cr_assert_eq(symlink("../keep", local_hp("d/link")), 0);
	omni_assert_ok(omni_backend_delete_directory(local_fx.b, "d"));
	cr_assert_not(omni_test_host_exists(local_hp("d")));
	local_assert_content("keep/precious", "p");
}

Test(backend_local, delete_directory_errors)
{
	omni_assert_err(omni_backend_delete_directory(local_fx.b, "/workspace"),
	                -EBUSY);
	omni_assert_err(omni_backend_delete_directory(local_fx.b, ""), -EBUSY);
	omni_assert_err(omni_backend_delete_directory(local_fx.b, "."), -EBUSY);
	omni_assert_err(omni_backend_delete_directory(local_fx.b, "a/.."),
	                -EBUSY);
	cr_assert(omni_test_host_exists(local_fx.host));
	omni_assert_err(omni_backend_delete_directory(local_fx.b, "missing"),
	                -ENOENT);
	local_put("f", "x");
	omni_assert_err(omni_backend_delete_directory(local_fx.b, "f"),
	                -ENOTDIR);
	cr_assert(omni_test_host_exists(local_hp("f")));
	omni_assert_err(omni_backend_delete_directory(local_fx.b, ".."),
	                -EACCES);
}
