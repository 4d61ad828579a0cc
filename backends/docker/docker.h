/*
 * backends/docker/docker.h - the docker backend's internals, shared by docker.c
 * (the session: container life and files), docker_api.c (the Engine API client)
 * and docker_exec.c (commands through omni-agent). Private to libomni; the
 * tests include it to reach the pure helpers (DOCKER_HOST parsing, image names,
 * the pull progress parser).
 */
#ifndef OMNI_DOCKER_H
#define OMNI_DOCKER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "core/confined.h"
#include "core/http.h"
#include "omni/sys/backend_impl.h"

/* The Engine API version omnifs speaks: Docker 20.10 (Debian 12). */
#define OMNI_DOCKER_API_VERSION "1.41"
/* Labels on every container omnifs makes. */
#define OMNI_DOCKER_LABEL_PROJECT   "org.omnifs.project"
#define OMNI_DOCKER_LABEL_WORKSPACE "org.omnifs.workspace"
#define OMNI_DOCKER_LABEL_FILES     "org.omnifs.files" /* bind | agent */
/* Where things are inside the container. */
#define OMNI_DOCKER_AGENT_PATH    "/omni-agent"
#define OMNI_DOCKER_RUN_DIR       "/run/omni"
#define OMNI_DOCKER_WORKDIR       "/workspace"
#define OMNI_DOCKER_DEFAULT_IMAGE "ghcr.io/astral-sh/uv:debian"

/* --- the Engine API client (docker_api.c) --------------------------------- */

struct omni__docker_api {
	struct omni__http_endpoint ep;
	/* The daemon as the user names it, for messages:
	 * "unix:///var/run/docker.sock", "tcp://host:2376". */
	char host[PATH_MAX + 16];
	/* The API version in request paths ("1.41"). */
	char version[16];
	bool version_pinned; /* from DOCKER_API_VERSION: not negotiated */
};

/*
 * Where the daemon is, from the environment as the docker CLI reads it:
 * DOCKER_HOST (unix:///path or tcp://host[:port][/base]; default
 * unix:///var/run/docker.sock), DOCKER_TLS_VERIFY / DOCKER_TLS and
 * DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem, default ~/.docker) for tcp,
 * DOCKER_API_VERSION to pin a version; ssh://[user@]host[:port] through
 * ssh; without DOCKER_HOST, the docker context in force (DOCKER_CONTEXT,
 * currentContext), else the local socket. No I/O but reading the context.
 * -EINVAL for a DOCKER_HOST omnifs cannot use (npipe://, ...).
 */
int omni__docker_api_init(struct omni__docker_api *api);

/* A docker context (docker_host.c). */
struct omni__docker_context {
	char name[256];
	char host[PATH_MAX + 16]; /* Endpoints.docker.Host */
	char tls_dir[PATH_MAX];   /* contexts/tls/<sha256>/docker */
	bool tls;                 /* a TLS file is there */
	bool skip_verify;         /* SkipTLSVerify */
};

/* The context in force when DOCKER_HOST is unset: DOCKER_CONTEXT, else
 * config.json's currentContext. 1 with *ctx filled, 0 for none or
 * "default", -errno for a named context that cannot be read. */
int omni__docker_context(struct omni__docker_context *ctx);

/* DOCKER_HOST=ssh://[user@]host[:port]: requests go through `ssh host
 * docker system dial-stdio` (the endpoint's dial hook). */
int omni__docker_ssh_init(struct omni__docker_api *api, const char *url);

/*
 * Ask the daemon for its version (GET /version) and pick the API version:
 * 1.41, or the daemon's minimum when that is higher (the calls omnifs
 * makes have not changed since). -ECONNREFUSED / -ENOENT / -EACCES when
 * the daemon cannot be reached ("cannot reach the Docker daemon at ..."),
 * -EPROTONOSUPPORT when it is older than 1.41.
 */
int omni__docker_api_negotiate(struct omni__docker_api *api);

/*
 * One request to path (without the version prefix: "/containers/x/json").
 * json, when not NULL, is sent as an application/json body. Returns 0
 * when a reply came (any status; resp to be finished by the caller) or
 * -errno with "cannot reach the Docker daemon at HOST: ...".
 */
int omni__docker_request(const struct omni__docker_api *api, const char *method,
                         const char *path, const char *json, long timeout_ms,
                         struct omni__http_response *resp);

/*
 * The same, and a non-2xx reply becomes -errno with the message
 * "docker: <what>: <the daemon's message> (HTTP N)". On success *out (when
 * not NULL) gets the parsed JSON reply (cJSON_Delete() it; NULL for an
 * empty body); a reply that does not parse is -EPROTO.
 */
int omni__docker_call(const struct omni__docker_api *api, const char *method,
                      const char *path, const char *json, long timeout_ms,
                      cJSON **out, const char *what);

/* A reference is [host[:port]/]name[:tag][@digest] of A-Z a-z 0-9 . _ - / :
 * @; anything else (spaces, '?', '%', '..') is refused. */
bool omni__docker_image_valid(const char *image);

/* Split an image reference for POST /images/create: repo and tag
 * ("latest" when none; "" when the reference has a digest, which then
 * stays in repo). -ENAMETOOLONG when a part does not fit. */
int omni__docker_image_split(const char *image, char *repo, size_t repo_size,
                             char *tag, size_t tag_size);

/* Progress of a pull, from the daemon's JSON message stream. */
struct omni__docker_layer {
	char id[80];
	long long current, total; /* download bytes */
	bool done;
};

struct omni__docker_pull {
	const char *image;
	FILE *out; /* progress display; NULL: silent */
	bool tty;  /* out is a terminal: redraw one line */
	struct omni__docker_layer *layers;
	size_t nlayers, cap;
	long long last_draw_ms;
	bool drawn;    /* a progress line is on screen */
	char *partial; /* an incomplete line carried to the next chunk */
	size_t partial_len;
	char status[256]; /* the last "Status: ..." text */
};

/* Feed raw bytes of the stream (any split). Returns 0, or -EIO with the
 * daemon's message when a line reports an error ("errorDetail"). */
int omni__docker_pull_feed(struct omni__docker_pull *p, const void *data,
                           size_t len);
/* Sum of the layers: bytes downloaded, bytes known in total, layers done,
 * layers seen. */
void omni__docker_pull_totals(const struct omni__docker_pull *p,
                              long long *done, long long *total,
                              size_t *layers_done, size_t *layers);
void omni__docker_pull_finish(struct omni__docker_pull *p);

/*
 * Make sure image is in the daemon: inspect it, and pull it when it is
 * missing, with a progress display on stderr when progress is set. A pull
 * that fails names the image and quotes the daemon (-ENOENT for an image
 * the registry does not have, -EIO and the like otherwise).
 */
int omni__docker_ensure_image(const struct omni__docker_api *api,
                              const char *image, bool progress);

/* The last lines of a container's output (GET /containers/ID/logs), one
 * line joined with " | ", into out ("" when none). For error messages. */
void omni__docker_logs_tail(const struct omni__docker_api *api, const char *id,
                            char *out, size_t size);

/* --- hijacked streams (docker_stream.c) ---------------------------------- */

/* A hijacked connection: a raw two-way byte stream. */
struct omni__docker_stream {
	CURL *h;
	int fd;    /* to poll; owned by h */
	char *pre; /* stream bytes that came with the response head */
	size_t pre_off, pre_len;
};

/*
 * POST path (without the version prefix, e.g. "/exec/ID/start") with the
 * JSON body and "Connection: Upgrade", "Upgrade: tcp", over api's transport
 * (unix, tcp, TLS, ssh); read the head (101 or 200 wanted; an error reply
 * is -errno quoting the daemon). timeout_ms bounds connecting and the head.
 */
int omni__docker_stream_open(const struct omni__docker_api *api,
                             const char *path, const char *json,
                             long timeout_ms, struct omni__docker_stream *s);
/* Never block: bytes, 0 at EOF, -EAGAIN, -ECONNRESET. */
ssize_t omni__docker_stream_recv(struct omni__docker_stream *s, void *buf,
                                 size_t len);
ssize_t omni__docker_stream_send(struct omni__docker_stream *s, const void *buf,
                                 size_t len);
void omni__docker_stream_close(struct omni__docker_stream *s);

/* --- the session (docker.c) ----------------------------------------------- */

/* Where the workspace lives (struct omni_docker_options.files). */
enum omni__docker_files {
	OMNI__DOCKER_FILES_BIND = 1,  /* a host directory, bind-mounted */
	OMNI__DOCKER_FILES_AGENT = 2, /* a volume, reached through the agent */
};

struct omni__docker_mux;

struct omni__docker_backend {
	/* base, and root: the host side of the /workspace bind */
	struct omni__host_backend host;
	struct omni__docker_api api;
	/* Its own options (image and network copied; NULL: defaults). */
	struct omni_docker_options opts;
	/* Agent mode: the file sessions of the path slots
	 * (docker_remote.h), or NULL. */
	struct omni__docker_remote *remote;
	char name[160];         /* omniagents-<project_id> */
	char id[80];            /* the container's id, once known */
	char run_dir[PATH_MAX]; /* host dir bound at /run/omni */
	int run_fd;             /* O_PATH descriptor of run_dir */
	bool run_dir_made;      /* made by this start (remove on failure) */
	_Atomic int
	    agent_pid; /* host pid of the container's init, 0: unknown */
	/* Agent mode: the workspace is the volume omniagents-<project> and
	 * every connection to the agent is a channel of one exec stream. */
	enum omni__docker_files files;
	struct omni__docker_mux *mux;
	/* Kept connections of api over TCP, TLS and ssh. */
	struct omni__curl_pool pool;
};

/*
 * Connect to the agent's socket, <run_dir>/agent.sock. The container can
 * write that directory, so nothing in it is trusted by name: the name is
 * opened beneath run_fd with O_PATH|O_NOFOLLOW, must be a socket (not a
 * symlink to another session's control socket or another container's
 * agent), is connected to through /proc/self/fd, and the listening peer
 * (SO_PEERCRED) must be the container's init, the omni-agent we started:
 * -EPERM otherwise, with a message that says what was found. *fd gets a
 * blocking, close-on-exec descriptor.
 */
int omni__docker_agent_connect(struct omni__docker_backend *db, int *fd);

/* --- agent mode (docker_agent.c) ------------------------------------------ */

/* The volume omniagents-<project>: made when missing (kept otherwise). */
int omni__docker_volume_ensure(struct omni__docker_backend *db);
int omni__docker_volume_remove(struct omni__docker_backend *db);
/* Put /omni-agent (and a workspace/ owned by the caller) into the created
 * container db->id. */
int omni__docker_agent_install(struct omni__docker_backend *db,
                               const char *agent);
/* Can the daemon see data_path (NULL: the default data folder)? *out gets
 * BIND or AGENT. The throwaway container is made of image when the daemon
 * has it, else of any image it has, else of image pulled. */
int omni__docker_probe_files(const struct omni__docker_api *api,
                             const char *image, bool progress,
                             const char *data_path,
                             enum omni__docker_files *out);

/* --- agent mode's stream (docker_mux.c) ----------------------------------- */

int omni__docker_mux_new(struct omni__docker_backend *db);
/* A connection to the agent as a channel of the stream (made, or made
 * again after a drop, as needed); *fd is a blocking socket. */
int omni__docker_mux_connect(struct omni__docker_backend *db, int *fd);
/* Close the stream (channels see EOF); a later connect makes a new one. */
void omni__docker_mux_stop(struct omni__docker_backend *db);
void omni__docker_mux_free(struct omni__docker_backend *db);
/* How many streams were made (1 + reconnects), for tests. */
unsigned omni__docker_mux_streams(struct omni__docker_backend *db);

/* The host pid of the container's init (State.Pid), into *pid; 0 when it
 * does not run. */
int omni__docker_init_pid(struct omni__docker_backend *db, int *pid);

/* A description of the container's state for messages ("container X is
 * exited, status 137", "... was removed"), into out. wait_ms: how long to
 * wait for a container still reported running to be seen stopped (the
 * caller saw its agent go). */
void omni__docker_describe_state(struct omni__docker_backend *db, char *out,
                                 size_t size, int wait_ms);

/* --- commands (docker_exec.c) --------------------------------------------- */

int omni__docker_exec_start(struct omni_backend *b,
                            const struct omni_exec_request *req,
                            struct omni_exec **out);
int omni__docker_exec_wait(struct omni_exec *e, omni_output_cb cb,
                           void *payload, struct omni_exec_status *status);
int omni__docker_exec_input(struct omni_exec *e, const void *data, size_t len);
int omni__docker_exec_signal(struct omni_exec *e, int sig);
int omni__docker_exec_resize(struct omni_exec *e, unsigned short rows,
                             unsigned short cols);
void omni__docker_exec_free(struct omni_exec *e);

/* Ask the agent "ping" on a new connection; 0 when it answered "pong"
 * within timeout_ms. */
int omni__docker_agent_ping(struct omni__docker_backend *db, int timeout_ms);

#endif
