/*
 * tests/support/file_io_model.h - one file's data through every kind of
 * I/O, against a model.
 *
 * file_io_model_run() makes DIR/io-file and runs a seeded sequence of
 * operations on it through two descriptors, one opened with O_DIRECT and
 * one buffered: aligned direct writes and reads, buffered writes and reads
 * at any offset, truncates, copy_file_range in both directions (the kernel
 * copies through READ and WRITE when a FUSE daemon has no
 * COPY_FILE_RANGE), punched holes, zeroed ranges, fsync (on a remote
 * backend, an upload while the file stays open) and writes through a
 * shared mapping. After every operation its result is compared with an
 * in-memory model of the file, and every 100 operations the whole file
 * and its size (through fstat) as well. A difference fails the test with
 * the operation's number.
 */
#ifndef OMNI_TESTS_FILE_IO_MODEL_H
#define OMNI_TESTS_FILE_IO_MODEL_H

void file_io_model_run(const char *dir, const char *where, unsigned seed,
                       int ops);

#endif
