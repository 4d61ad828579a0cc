/*
 * tests/bench/journal-record.c - what one journal record costs, without
 * FUSE and without the file system: the hook of a node call (an unlink
 * in a directory, its path from the cache) called in a loop on a local
 * backend with a journal, for tests/bench/journal.sh.
 *
 *	journal-record DATA_DIR [RECORDS]
 *
 * Prints the CPU time a record costs the calling thread, and the CPU
 * time the journal's writer thread spends on it (the process's CPU time
 * less the caller's, the flush included), in nanoseconds, the best of
 * five runs: the figures the elapsed times of journal.sh cannot resolve
 * on a noisy machine.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "journal/hook.h"
#include "journal/journal.h"
#include "omni/backend.h"
#include "omni/error.h"
#include "omni/vfs.h"

static double seconds(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
	fprintf(stderr, "journal-record: %s: %s\n", what, omni_error_last());
	return 1;
}

int main(int argc, char **argv)
{
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	struct omni_backend *b;
	char db[4096];
	struct stat st;

	if (argc < 2) {
		fprintf(stderr, "usage: journal-record DATA_DIR [RECORDS]\n");
		return 2;
	}
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
	opts.data_path = argv[1];
	snprintf(db, sizeof(db), "%s/journal-record.sqlite", argv[1]);
	if (omni_backend_new(&b, "local", "jrecord", &opts, NULL) < 0 ||
	    omni_backend_start(b) < 0)
		return fail("local backend");
	if (omni__journal_attach(b, db) < 0)
		return fail("journal");
	int root = omni_vfs_node_root(b);
	if (root < 0 || omni_vfs_node_mkdir(b, root, "d", 0755) < 0)
		return fail("mkdir");
	int dir = omni_vfs_node_lookup(b, root, "d", &st);
	if (dir < 0)
		return fail("lookup");

	double caller = 1e9, writer = 1e9;
	for (int run = 0; run < 5; run++) {
		double t0 = seconds(CLOCK_THREAD_CPUTIME_ID);
		double p0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
		for (long i = 0; i < n; i++)
			omni__journal_node_op(b, "unlink", dir, "f0001", -1,
			                      NULL, -1, -1, 0);
		double t1 = seconds(CLOCK_THREAD_CPUTIME_ID);
		omni__journal_flush(omni__journal_of(b));
		double t2 = seconds(CLOCK_THREAD_CPUTIME_ID);
		double p2 = seconds(CLOCK_PROCESS_CPUTIME_ID);
		if (t1 - t0 < caller)
			caller = t1 - t0;
		if ((p2 - p0) - (t2 - t0) < writer)
			writer = (p2 - p0) - (t2 - t0);
	}
	printf("one record: %.0f ns on the calling thread, %.0f ns of the "
	       "writer thread's CPU\n",
	       caller * 1e9 / (double)n, writer * 1e9 / (double)n);
	close(dir);
	close(root);
	omni__journal_detach(b);
	omni_backend_free(b);
	return 0;
}
