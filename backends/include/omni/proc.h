/*
 * backends/include/omni/proc.h - run a command as a local process group
 * (private to libomni and omni-agent).
 *
 * The local backend and omni-agent (inside a docker container) both run
 * commands the same way, with this module: posix_spawn into a new process
 * group (a new session with a pseudo-terminal for tty requests), pipes or a
 * pty for output, a pidfd to notice the exit, a deadline that kills the
 * group. libc only, so omni-agent can link it statically.
 */
#ifndef OMNI_PROC_H
#define OMNI_PROC_H

#include <stdbool.h>
#include <sys/types.h>

#include "omni/vfs.h"

struct omni_proc;

/*
 * Start req. dir_fd is an open directory the command starts in (-1: the
 * current directory); shell strings run with /bin/sh -c. A program that is
 * missing or cannot be executed is reported like a shell does: the proc
 * ends with 127 or 126 and a message on its stderr.
 */
int omni_proc_spawn(struct omni_proc **out, const struct omni_exec_request *req,
                    int dir_fd);
/*
 * The same with base (NULL-terminated, or NULL for none) in place of the
 * process's environment under req->env: the local backend passes its
 * environment without credentials (base/env.h), omni-agent its own.
 */
int omni_proc_spawn_env(struct omni_proc **out,
                        const struct omni_exec_request *req, int dir_fd,
                        const char *const *base);
pid_t omni_proc_pid(const struct omni_proc *p);
int omni_proc_wait(struct omni_proc *p, omni_output_cb cb, void *payload,
                   struct omni_exec_status *status);
int omni_proc_input(struct omni_proc *p, const void *data, size_t len);
int omni_proc_signal(struct omni_proc *p, int sig);
int omni_proc_resize(struct omni_proc *p, unsigned short rows,
                     unsigned short cols);
void omni_proc_free(struct omni_proc *p);

/*
 * A proc as a command: a struct omni_exec (omni/sys/backend_impl.h) with
 * the proc behind it, for a backend (b) or for omni-agent's exec server
 * (b NULL). The functions after omni__proc_exec_spawn() have the types of
 * the exec slots of struct omni_backend_ops and of struct
 * omni__ipc_server_ops, so a table names them as they are; free also
 * kills a command still running. base_env is as omni_proc_spawn_env()'s
 * base; NULL: the process's own environment.
 */
int omni__proc_exec_spawn(struct omni_exec **out, struct omni_backend *b,
                          const struct omni_exec_request *req, int dir_fd,
                          const char *const *base_env);
pid_t omni__proc_exec_pid(struct omni_exec *e);
int omni__proc_exec_wait(struct omni_exec *e, omni_output_cb cb, void *payload,
                         struct omni_exec_status *status);
int omni__proc_exec_input(struct omni_exec *e, const void *data, size_t len);
int omni__proc_exec_signal(struct omni_exec *e, int sig);
int omni__proc_exec_resize(struct omni_exec *e, unsigned short rows,
                           unsigned short cols);
void omni__proc_exec_free(struct omni_exec *e);

/*
 * For a process that is PID 1 (omni-agent): another thread reaps every
 * child with waitpid(-1) and reports each status here, so that the
 * commands' waiters still learn their exit status. Call
 * omni_proc_set_reaper_mode(true) before the first spawn.
 */
void omni_proc_set_reaper_mode(bool on);
void omni_proc_reaped(pid_t pid, int status);

#endif
