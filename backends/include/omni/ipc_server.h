/*
 * omni/ipc_server.h - the server side of the exec wire protocol (omni/ipc.h),
 * written once for its two servers: omni-agent (exec/agent.c), which runs
 * commands as local processes inside a container, and the omnifs daemon's
 * control server (fs/ctl.c), which runs them through a backend. Private to
 * omnifs (omni__ prefix); libc only, so omni-agent can link it statically.
 *
 * The server owns a listening socket, accepts on a thread of its own and
 * gives each connection a thread, which reads the first frame and either
 * runs one command (EXEC), answers one request (CONTROL), or serves a
 * file session (FILES, omni/ipc_files.h, through ops->files). What differs
 * between the two servers comes in through struct omni__ipc_server_ops.
 *
 * A command's life on the connection thread, with a reader thread that
 * takes STDIN, SIGNAL and RESIZE frames meanwhile:
 *
 *	decode EXEC (ERROR -EPROTO when malformed) into an omni_exec_request
 *	ops->exec_start            ERROR with its errno and message on failure
 *	STARTED pid
 *	ops->exec_wait             output -> STDOUT / STDERR frames
 *	stop the reader, ops->exec_free
 *	ops->exec_done             (before the client can learn the end)
 *	EXIT, or ERROR when the wait failed
 *
 * A client that leaves before the end (its socket reads end-of-stream) has
 * its command killed with SIGKILL; so has every command when the server
 * stops. Threads start with the signal mask of the thread that called
 * omni__ipc_server_start(), so a caller blocks there what its helper
 * threads must not take.
 */
#ifndef OMNI_IPC_SERVER_H
#define OMNI_IPC_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#include "omni/ipc.h"
#include "omni/vfs.h"

struct omni__ipc_server;
struct omni__ipc_conn;

/* The default time a client has to send its request after connecting. */
#define OMNI_IPC_IDLE_MS 10000

/*
 * What a server does with a connection. payload is the config's; handle is
 * what exec_start made. Slots may be called from several connection
 * threads at once.
 *
 * A command is a struct omni_exec (omni/vfs.h) and its slots have the types
 * of omni_vfs_exec_wait() and its siblings, so that the control server
 * plugs the backend's functions in as they are; omni-agent's commands are
 * omni_proc handles behind that opaque type.
 */
struct omni__ipc_server_ops {
	/* Optional. Before the first frame: 0 serves the peer on fd, -errno
	 * with omni_error_set() refuses it with an ERROR frame. */
	int (*check_peer)(void *payload, int fd);
	/* Start the command of a decoded request (req->cwd is the client's
	 * CWD field as it came, or NULL): set *handle, and *pid for the
	 * STARTED frame (it starts 0: nothing to set when a pid means
	 * nothing). -errno with omni_error_set() is answered with an ERROR
	 * frame. */
	int (*exec_start)(void *payload, const struct omni_exec_request *req,
	                  struct omni_exec **handle, uint32_t *pid);
	/* Pump the command's output into cb until it ends. */
	int (*exec_wait)(struct omni_exec *handle, omni_output_cb cb,
	                 void *cb_payload, struct omni_exec_status *status);
	/* From the reader thread while exec_wait runs. */
	int (*exec_input)(struct omni_exec *handle, const void *data,
	                  size_t len);
	/* Also called with the server's lock held (stop, a vanished
	 * client): must not block. */
	int (*exec_signal)(struct omni_exec *handle, int sig);
	int (*exec_resize)(struct omni_exec *handle, unsigned short rows,
	                   unsigned short cols);
	void (*exec_free)(struct omni_exec *handle);
	/* Optional. After a command ended and before its EXIT (or ERROR)
	 * frame is sent. */
	void (*exec_done)(void *payload);
	/* Optional. Answer a CONTROL request other than "ping" (which the
	 * server answers "pong") with omni__ipc_conn_reply(). NULL: such
	 * requests get status EINVAL. */
	void (*control)(void *payload, struct omni__ipc_conn *conn,
	                const char *request);
	/* Optional. A FILES first frame (omni/ipc_files.h, payload data):
	 * serve the file session on fd until the client leaves; the
	 * connection is closed after. It is no longer idle (never evicted,
	 * no deadline); stopping the server shuts fd down. NULL: FILES is
	 * answered with an ERROR frame. */
	void (*files)(void *payload, int fd, const unsigned char *data,
	              size_t len);
};

struct omni__ipc_server_config {
	const char *name; /* in log lines: "control", "agent" */
	const struct omni__ipc_server_ops *ops;
	void *payload;
	/* More connections at once than this are refused with -EAGAIN;
	 * 0: no limit. Before refusing, the server closes the oldest
	 * connection that has not sent its request yet (an idle one), so
	 * idle clients cannot lock out one that speaks at once. */
	unsigned int max_conns;
	/* The same, counted per peer uid (SO_PEERCRED); 0: no limit. */
	unsigned int max_conns_per_uid;
	/* A connection must have sent its whole first frame within this
	 * many milliseconds, or it is closed. 0: OMNI_IPC_IDLE_MS. */
	unsigned int idle_ms;
	/* Optional: the socket file behind the listening descriptor and its
	 * identity (omni__unix_listen()'s st_out). omni__ipc_server_stop()
	 * removes it if it is still that file. */
	const char *path;
	dev_t path_dev;
	ino_t path_ino;
};

/*
 * Serve listen_fd (the server owns it from now on, also on failure) until
 * omni__ipc_server_stop(). cfg is copied; ops, payload and path must live
 * until then. Returns 0 or -errno with a message.
 */
int omni__ipc_server_start(struct omni__ipc_server **out, int listen_fd,
                           const struct omni__ipc_server_config *cfg);

/*
 * Refuse new commands (-ESHUTDOWN) and SIGKILL every running one. Does not
 * block: omni-agent calls it on SIGTERM just before it exits. NULL is ok.
 */
void omni__ipc_server_kill_all(struct omni__ipc_server *srv);

/*
 * Stop accepting, remove the socket file (cfg.path), end running commands
 * (sockets shut down, process groups killed), wait for every thread and
 * free the server. NULL is ok.
 */
void omni__ipc_server_stop(struct omni__ipc_server *srv);

struct omni__ipc_server_stats {
	unsigned long long commands; /* started */
	unsigned long long failed;   /* requests answered with ERROR */
	unsigned int running;
	unsigned int conns;         /* open */
	unsigned long long evicted; /* idle ones closed to make room */
};

void omni__ipc_server_stats(struct omni__ipc_server *srv,
                            struct omni__ipc_server_stats *out);

/* Send the REPLY to a CONTROL request (text may be NULL). 0 or -errno. */
int omni__ipc_conn_reply(struct omni__ipc_conn *conn, unsigned int status,
                         const char *text);

#endif
