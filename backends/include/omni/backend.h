/*
 * omni/backend.h - the consumer API of libomni: one session with a backend.
 *
 * This header mirrors the documented Python interface call for call:
 *
 *   Python                              C
 *   LocalBackend(project_id, state)     omni_local_backend_new()
 *   DockerBackend(project_id, ...)      omni_docker_backend_new()
 *   E2BBackend(project_id, ...)         omni_e2b_backend_new()
 *   start() / shutdown()                omni_backend_start() / _shutdown()
 *   get_status()                        omni_backend_get_status()
 *   execute_command(cmd, timeout)       omni_backend_execute_command()
 *   read_file / write_file              omni_backend_read_file() /
 * _write_file() file_exists                         omni_backend_file_exists()
 *   copy_file / move_file / delete_file omni_backend_copy_file() ...
 *   get_working_directory()             omni_backend_get_working_directory()
 *   list_directory(path, recursive)     omni_backend_list_directory()
 *   create_directory(path, parents)     omni_backend_create_directory()
 *   delete_directory(path)              omni_backend_delete_directory()
 *   glob_files(pattern, path)           omni_backend_glob_files()
 *   save_snapshot / load_latest_snapshot / list_snapshots
 *                                       omni_backend_save_snapshot() ...
 *
 * Paths: absolute paths under the working directory ("/workspace/src/a.c"),
 * the working directory itself, and relative paths ("src/a.c", "./x") all
 * name files in the workspace.  A path that leaves it ("../x", "/etc/passwd",
 * a symlink pointing outside) fails with -EACCES and touches nothing.
 *
 * Errors: every call returns 0 (or a non-negative value where documented)
 * or a negative errno, and sets a message readable with omni_error_last().
 *
 * Threads: one struct omni_backend may be used from several threads at once
 * once started; start, shutdown and free must not race with other calls.
 */
#ifndef OMNI_BACKEND_H
#define OMNI_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct omni_backend;
struct omni_state;

enum omni_status {
	OMNI_STATUS_UNINITIALIZED = 0,
	OMNI_STATUS_RUNNING,
	OMNI_STATUS_STOPPED,
};

/* What omni_backend_file_exists() finds. NONE is 0 so it reads as false. */
enum omni_file_type {
	OMNI_FILE_NONE = 0,
	OMNI_FILE_FILE,
	OMNI_FILE_DIRECTORY,
	OMNI_FILE_SYMLINK,
};

/* "UNINITIALIZED", "RUNNING", "STOPPED". */
const char *omni_status_name(enum omni_status status);

#define OMNI_BACKEND_OPTIONS_VERSION 2

/*
 * The first member of a backend's own options: which backend they are
 * for, and the version of that backend's options struct.
 */
struct omni_backend_options_head {
	const char *backend;
	unsigned int version;
};

/*
 * Options every backend reads. Start from OMNI_BACKEND_OPTIONS_INIT.
 * Strings are copied by the constructor. Secrets (API keys, tokens) are
 * never options: they come from the environment only.
 */
struct omni_backend_options {
	unsigned int version;
	/* Where workspaces live: NULL means $OMNI_DATA_PATH, else "./data". */
	const char *data_path;
	/* Extra environment, "KEY=VALUE" strings, NULL-terminated, or NULL. */
	const char *const *env;
	/* Print progress of long work (image pulls, transfers) on stderr. */
	bool progress;
	/* The options of the backend itself (&docker_opts.head,
	 * &e2b_opts.head), or NULL for its defaults. A backend given the
	 * options of another backend refuses them with -EINVAL. */
	const struct omni_backend_options_head *backend;
};

#define OMNI_BACKEND_OPTIONS_INIT                                              \
	{                                                                      \
		.version = OMNI_BACKEND_OPTIONS_VERSION                        \
	}

/* The docker backend's own options. */
#define OMNI_DOCKER_OPTIONS_VERSION 2

struct omni_docker_options {
	struct omni_backend_options_head head;
	/* The image (default ghcr.io/astral-sh/uv:debian). */
	const char *image;
	/* Network mode ("none", "bridge", ...; NULL = daemon default). */
	const char *network;
	/* Limits; 0 means no limit. */
	long long memory_bytes;
	double cpus;
	long long pids_limit;
	/* --- version 2 --- */
	/* Where the workspace lives: "bind" (a host directory bind-mounted
	 * at /workspace: the daemon must be on this machine), "agent" (a
	 * volume in the daemon, files and commands through omni-agent over
	 * the Engine API: any daemon, tcp:// and ssh:// included), or NULL /
	 * "auto": probe the daemon (can it see this machine's data folder?). */
	const char *files;
};

#define OMNI_DOCKER_OPTIONS_INIT                                               \
	{                                                                      \
		.head = { "docker", OMNI_DOCKER_OPTIONS_VERSION }              \
	}

/* The e2b backend's own options. */
#define OMNI_E2B_OPTIONS_VERSION 1

struct omni_e2b_options {
	struct omni_backend_options_head head;
	/* The sandbox template (NULL: "base"). */
	const char *template_name;
	/* The sandbox's lifetime in seconds (0: 3600). */
	unsigned int timeout_s;
	/* Seconds one request may take (0: $OMNI_E2B_REQUEST_TIMEOUT, else
	 * 10); at most 3600. */
	double request_timeout_s;
};

#define OMNI_E2B_OPTIONS_INIT                                                  \
	{                                                                      \
		.head = { "e2b", OMNI_E2B_OPTIONS_VERSION }                    \
	}

/*
 * Make a backend session by name ("local", "docker" or "e2b") for a project.
 * state is the state manager (NULL means none); the session takes
 * ownership of it, even on failure. opts may be NULL for defaults. Nothing
 * is started yet. Unknown names give -EINVAL, a bad project id -EINVAL.
 */
int omni_backend_new(struct omni_backend **out, const char *name,
                     const char *project_id,
                     const struct omni_backend_options *opts,
                     struct omni_state *state);

int omni_local_backend_new(struct omni_backend **out, const char *project_id,
                           struct omni_state *state);
int omni_docker_backend_new(struct omni_backend **out, const char *project_id,
                            const struct omni_backend_options *opts,
                            struct omni_state *state);
int omni_e2b_backend_new(struct omni_backend **out, const char *project_id,
                         const struct omni_backend_options *opts,
                         struct omni_state *state);

/* A project id is 1-128 characters of [A-Za-z0-9._-], not "." or "..". */
bool omni_project_id_valid(const char *id);

/* The names omni_backend_new() knows, NULL-terminated. */
const char *const *omni_backend_names(void);

/* Free the session (shutting it down first if it still runs). NULL is ok. */
void omni_backend_free(struct omni_backend *b);

/*
 * Start the session: create the workspace (directory, container or
 * sandbox) and load the latest snapshot through the state manager.
 * Starting a running session is a no-op.
 */
int omni_backend_start(struct omni_backend *b);

/* Save a snapshot through the state manager, then stop the session. The
 * session is stopped even when the save fails; the save's error is
 * returned. */
int omni_backend_shutdown(struct omni_backend *b);

enum omni_status omni_backend_get_status(struct omni_backend *b);

/* The backend's name ("local", ...) and project id. Borrowed. */
const char *omni_backend_name(const struct omni_backend *b);
const char *omni_backend_project_id(const struct omni_backend *b);

/* The working directory as the sandbox sees it: where commands run and
 * what pwd prints in them. On local the workspace's absolute host path,
 * $OMNI_DATA_PATH/<project_id> (symlinks resolved), where "/workspace/..."
 * is accepted as an alias in paths; "/workspace" on docker;
 * "/tmp/workspace" on e2b. Borrowed. */
const char *omni_backend_get_working_directory(struct omni_backend *b);

/* --- commands ----------------------------------------------------------- */

struct omni_command_result {
	char *output;      /* stdout and stderr merged, NUL-terminated */
	size_t output_len; /* bytes in output, not counting the NUL */
	int exit_code;     /* 124 on timeout, 128+N when killed by signal N */
};

/*
 * Run command with /bin/sh -c in the working directory. timeout_s <= 0
 * means no timeout. On a timeout the whole process group is killed, the
 * call returns 0 with exit_code 124 and the output gathered so far.
 * Fails only when the command could not be run at all. Free the result
 * with omni_command_result_finish().
 */
int omni_backend_execute_command(struct omni_backend *b, const char *command,
                                 double timeout_s,
                                 struct omni_command_result *out);
void omni_command_result_finish(struct omni_command_result *res);

/* --- files ---------------------------------------------------------------- */

/* Read a whole file into a new NUL-terminated buffer (free() it). */
int omni_backend_read_file(struct omni_backend *b, const char *path, char **out,
                           size_t *out_len);

/* Create or replace a file with data, creating missing parent directories. */
int omni_backend_write_file(struct omni_backend *b, const char *path,
                            const void *data, size_t len);

/* Returns an enum omni_file_type (>= 0; NONE when missing) or -errno. */
int omni_backend_file_exists(struct omni_backend *b, const char *path);

/* Copy a regular file (content and mode); the target is replaced. */
int omni_backend_copy_file(struct omni_backend *b, const char *src,
                           const char *dst);

/* Move a file or directory; the target file is replaced. */
int omni_backend_move_file(struct omni_backend *b, const char *src,
                           const char *dst);

/* Delete a file or symlink (not a directory: -EISDIR). */
int omni_backend_delete_file(struct omni_backend *b, const char *path);

/* --- directories ------------------------------------------------------- */

struct omni_dir_entry {
	char *path; /* relative to the listed directory */
	enum omni_file_type type;
	unsigned long long size;
};

struct omni_dir_list {
	struct omni_dir_entry *entries;
	size_t count;
};

/* List a directory (sorted by path), descending into subdirectories when
 * recursive. Free with omni_dir_list_finish(). */
int omni_backend_list_directory(struct omni_backend *b, const char *path,
                                bool recursive, struct omni_dir_list *out);
void omni_dir_list_finish(struct omni_dir_list *list);

/* Create a directory; with parents, missing parents are made and an
 * existing directory is not an error. */
int omni_backend_create_directory(struct omni_backend *b, const char *path,
                                  bool parents);

/* Delete a directory and everything in it. The workspace root itself
 * cannot be deleted (-EBUSY). */
int omni_backend_delete_directory(struct omni_backend *b, const char *path);

struct omni_str_list {
	char **items;
	size_t count;
};
void omni_str_list_finish(struct omni_str_list *list);

/*
 * Files (not directories) matching pattern, searched from path (NULL or ""
 * for the working directory). Patterns know '*', '?', '[...]' (with '!' or
 * '^' to negate and ranges) within one path component and '**' for any
 * number of components. Results are paths relative to the search
 * directory, sorted bytewise.
 */
int omni_backend_glob_files(struct omni_backend *b, const char *pattern,
                            const char *path, struct omni_str_list *out);

/* --- snapshots through the state manager ---------------------------------- */

struct omni_snapshot {
	char *id;
	long long time; /* seconds since the epoch */
	char *message;
};

struct omni_snapshot_list {
	struct omni_snapshot *items; /* newest first */
	size_t count;
};
void omni_snapshot_list_finish(struct omni_snapshot_list *list);

/* Save the workspace; *id_out (may be NULL) gets the snapshot id or NULL
 * when nothing was saved (the none manager, or nothing changed). */
int omni_backend_save_snapshot(struct omni_backend *b, const char *message,
                               char **id_out);

/* Load the newest snapshot into the workspace. Returns 1 when one was
 * loaded, 0 when there is none. */
int omni_backend_load_latest_snapshot(struct omni_backend *b);

int omni_backend_list_snapshots(struct omni_backend *b,
                                struct omni_snapshot_list *out);

/* The state manager the session uses. Borrowed. */
struct omni_state *omni_backend_state(struct omni_backend *b);

#ifdef __cplusplus
}
#endif

#endif
