/*
 * tests/bench/fsbench.c - metadata and small-file workloads for
 *tests/bench/local-fs.sh.
 *
 *	fsbench create DIR DIRS FILES_PER_DIR SIZE
 *	fsbench stat   DIR DIRS FILES_PER_DIR
 *	fsbench read   DIR DIRS FILES_PER_DIR
 *	fsbench remove DIR DIRS FILES_PER_DIR
 *
 * Files are DIR/dNN/fNNNN. Prints the elapsed wall time in seconds. Plain
 * syscalls, one process, so the figures measure the file system and not
 * the cost of starting programs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "fsbench: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr,
		        "usage: fsbench create|stat|read|remove DIR DIRS "
		        "FILES [SIZE]\n");
		return 2;
	}
	const char *mode = argv[1], *dir = argv[2];
	long dirs = strtol(argv[3], NULL, 10),
	     files = strtol(argv[4], NULL, 10);
	long size = argc > 5 ? strtol(argv[5], NULL, 10) : 0;
	char path[4096], buf[65536];
	struct stat st;

	memset(buf, 'x', sizeof(buf));
	if (size > (long)sizeof(buf))
		size = sizeof(buf);
	double t0 = now();
	for (long d = 0; d < dirs; d++) {
		snprintf(path, sizeof(path), "%s/d%02ld", dir, d);
		if (strcmp(mode, "create") == 0 && mkdir(path, 0755) < 0 &&
		    errno != EEXIST)
			die("mkdir", path);
		for (long f = 0; f < files; f++) {
			snprintf(path, sizeof(path), "%s/d%02ld/f%04ld", dir, d,
			         f);
			if (strcmp(mode, "create") == 0) {
				int fd = open(
				    path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
				if (fd < 0)
					die("create", path);
				if (write(fd, buf, (size_t)size) != size)
					die("write", path);
				if (close(fd) < 0)
					die("close", path);
			} else if (strcmp(mode, "stat") == 0) {
				if (stat(path, &st) < 0)
					die("stat", path);
			} else if (strcmp(mode, "read") == 0) {
				int fd = open(path, O_RDONLY);
				if (fd < 0)
					die("open", path);
				while (read(fd, buf, sizeof(buf)) > 0)
					;
				close(fd);
			} else if (strcmp(mode, "remove") == 0) {
				if (unlink(path) < 0)
					die("unlink", path);
			}
		}
		if (strcmp(mode, "remove") == 0) {
			snprintf(path, sizeof(path), "%s/d%02ld", dir, d);
			if (rmdir(path) < 0)
				die("rmdir", path);
		}
	}
	printf("%.4f\n", now() - t0);
	return 0;
}
