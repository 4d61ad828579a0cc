/*
 * backends/docker/docker.c - the docker backend: a real container per session,
 *files on the host side of its bind mount, commands through omni-agent inside
 *it.
 *
 * USAGE
 *	struct omni_docker_options d = OMNI_DOCKER_OPTIONS_INIT;
 *	d.image = "ghcr.io/astral-sh/uv:debian";   (the default)
 *	d.network = "none";        NULL: the daemon's default network
 *	d.memory_bytes = 512 << 20; d.cpus = 1.5; d.pids_limit = 256;  0: none
 *	struct omni_backend_options o = OMNI_BACKEND_OPTIONS_INIT;
 *	o.env = (const char *[]){ "KEY=VALUE", NULL };
 *	o.progress = true;         pull progress on stderr
 *	o.backend = &d.head;
 *	omni_docker_backend_new(&b, "myproject", &o, NULL);
 *	omnifs --backend docker --image IMG [--network none] MOUNTPOINT
 *
 *	Environment: DOCKER_HOST (unix:///path, tcp://host:port),
 *	DOCKER_TLS_VERIFY, DOCKER_TLS, DOCKER_CERT_PATH, DOCKER_API_VERSION
 *	(as the docker CLI reads them); OMNI_AGENT_PATH (the omni-agent
 *	binary); OMNI_DATA_PATH and OMNI_RUNTIME_DIR as for every backend.
 *
 * The container. Named omniagents-<project_id>, labelled
 * org.omnifs.project=<project_id> (and org.omnifs.workspace=<host dir>).
 * Its main process is omni-agent (exec/agent.c), a static binary
 * bind-mounted read-only at /omni-agent: it is init (reaps, stops at once
 * on SIGTERM) and serves the exec protocol of omni/ipc.h on
 * /run/omni/agent.sock. Three bind mounts (HostConfig.Mounts, which fail
 * fast on a missing source where Binds would create it as root):
 *	<data>/<project_id>            -> /workspace
 *	<omni-agent>                   -> /omni-agent (read-only)
 *	<runtime dir>/docker-<project> -> /run/omni   (0700, the caller's)
 * WorkingDir /workspace, Env HOME=/workspace plus opts.env, User
 * "<uid>:<gid>" of the caller (so files made in the container belong to
 * the caller on the host), NetworkMode, Memory, NanoCpus, PidsLimit, and
 * Init false (the agent is init).
 *
 * start: reach the daemon and check its API version; create the
 * workspace; find the container by name. Ours (by label) and bound to this
 * workspace: start it if stopped, unpause it if paused, reuse it. Ours but
 * bound elsewhere (another data path), or with its runtime directory gone:
 * remove it and make a new one. Someone else's: -EEXIST. None: make sure
 * the image is there (pull with progress), create, start. Then wait (at
 * most 10 s) until the agent answers a ping on its socket; a container
 * that exits meanwhile fails with the tail of its log.
 * status: GET /containers/{id}/json; RUNNING only when the container runs,
 * so one stopped or removed behind our back reads STOPPED.
 * shutdown: (backend.c has saved the snapshot) close the agent stream,
 * stop with t=2, remove with force and v, drop the runtime directory (bind
 * mode) or the volume (agent mode).
 *
 * Files: confined.c on the host workspace, exactly as the local backend
 * (openat2 beneath it, so a symlink made in the container cannot lead a
 * file operation out). Commands: docker_exec.c.
 *
 * Agent mode (opts.files "agent", or "auto" when the probe of
 * docker_agent.c finds the daemon cannot see the data folder; settled in
 * omni__docker_backend_open(), which then gives the instance the table
 * docker_agent_ops, with OMNI_CAP_REMOTE so fs/main.c puts the cache in
 * front). Nothing of this machine is mounted: Mounts are the volume
 * omniagents-<project> at /workspace (made when missing, kept across
 * container restarts, removed at shutdown after the container) and a tmpfs
 * (mode 1777) at /run/omni for the agent's socket; omni-agent is put in
 * with the archive API before each start (docker_agent.c), and the
 * container's label org.omnifs.files=agent tells the two modes apart when
 * it is found again (a bind-mode container is replaced). Every connection
 * to the agent is a channel of docker_mux.c's exec stream, so
 * docker_exec.c runs unchanged; the path operations are the file
 * client's (docker_remote.c).
 *
 * Endpoints: GET /containers/{name}/json, POST /containers/create?name=,
 * POST /containers/{id}/start, /unpause, /stop?t=2, DELETE
 * /containers/{id}?force=1&v=1, plus those of docker_api.c (version,
 * images, pull, logs). Errors: see docker_api.c; a foreign container of
 * our name is -EEXIST, a missing or dynamic omni-agent -ENOENT / -ENOEXEC,
 * an agent that never answers -ETIMEDOUT.
 *
 * Locking: none of our own. start and shutdown run alone (backend.c);
 * afterwards the instance is only read (the api endpoint, names, run_dir,
 * run_fd, root), so FUSE threads and commands share it freely.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "docker/docker.h"
#include "base/error.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/session.h"
#include "core/registry.h"

#define AGENT_WAIT_MS   10000
#define CALL_TIMEOUT_MS 30000L
/* docker stop's grace period, and how long the request may take. */
#define STOP_GRACE_S    2
#define STOP_TIMEOUT_MS ((STOP_GRACE_S + 20) * 1000L)

#include "docker/docker_remote.h"

/* The file client's life (docker_remote.h), in agent mode only. */
static int remote_attach(struct omni__docker_backend *db)
{
	return omni__docker_remote_attach(db);
}

static void remote_watch_stop(struct omni__docker_backend *db)
{
	omni__docker_remote_watch_stop(db->remote);
}

static void remote_free(struct omni__docker_backend *db)
{
	if (db->remote)
		omni__docker_remote_free(db->remote);
	db->remote = NULL;
}

static char *docker_stats(struct omni_backend *b)
{
	return omni__docker_remote_stats_text(
	    ((struct omni__docker_backend *)b)->remote);
}

static struct omni__docker_backend *db_of(struct omni_backend *b)
{
	return (struct omni__docker_backend *)b;
}

/* --- omni-agent ----------------------------------------------------------- */

/* A statically linked ELF has no PT_INTERP: the container's image may
 * have no libc at all (busybox-static), or another one. */
static int check_static(const char *path)
{
	unsigned char ident[EI_NIDENT];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return omni_error_set_errno(-errno, "omni-agent %s", path);
	if (pread(fd, ident, sizeof(ident), 0) != (ssize_t)sizeof(ident) ||
	    memcmp(ident, ELFMAG, SELFMAG) != 0) {
		rc = omni_error_set(-ENOEXEC,
		                    "omni-agent %s is not an ELF "
		                    "program",
		                    path);
		goto out;
	}
	/* The two classes differ in their headers' sizes and layouts; a
	 * program header's p_type comes first in both. */
	bool is64 = ident[EI_CLASS] == ELFCLASS64;
	union {
		Elf32_Ehdr e32;
		Elf64_Ehdr e64;
	} eh;
	union {
		Elf32_Phdr p32;
		Elf64_Phdr p64;
	} ph;
	size_t eh_size = is64 ? sizeof(eh.e64) : sizeof(eh.e32);
	size_t ph_size = is64 ? sizeof(ph.p64) : sizeof(ph.p32);
	if (pread(fd, &eh, eh_size, 0) != (ssize_t)eh_size)
		goto bad;
	uint64_t phoff = is64 ? eh.e64.e_phoff : eh.e32.e_phoff;
	unsigned int phnum = is64 ? eh.e64.e_phnum : eh.e32.e_phnum;
	uint64_t phentsize = is64 ? eh.e64.e_phentsize : eh.e32.e_phentsize;
	for (unsigned int i = 0; i < phnum; i++) {
		off_t off = (off_t)(phoff + i * phentsize);
		if (pread(fd, &ph, ph_size, off) != (ssize_t)ph_size)
			goto bad;
		if ((is64 ? ph.p64.p_type : ph.p32.p_type) == PT_INTERP)
			goto dynamic;
	}
	goto out;
bad:
	rc =
	    omni_error_set(-ENOEXEC, "omni-agent %s: truncated ELF file", path);
	goto out;
dynamic:
	rc = omni_error_set(-ENOEXEC,
	                    "omni-agent %s is dynamically linked; containers "
	                    "need the static build (make build/omni-agent)",
	                    path);
out:
	close(fd);
	return rc;
}

static bool executable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	       access(path, X_OK) == 0;
}

/* $OMNI_AGENT_PATH, else omni-agent beside the running program (omnifs
 * and omni-tests live beside it in build/ and in BINDIR), else PATH. */
static int find_agent(char *out, size_t size)
{
	const char *env = getenv("OMNI_AGENT_PATH");
	char cand[PATH_MAX], exe[PATH_MAX];

	cand[0] = '\0';
	if (env && *env) {
		if (!executable(env))
			return omni_error_set(-ENOENT,
			                      "OMNI_AGENT_PATH=%s is not an "
			                      "executable file",
			                      env);
		snprintf(cand, sizeof(cand), "%s", env);
	}
	if (!cand[0]) {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			char *slash = strrchr(exe, '/');
			if (slash) {
				*slash = '\0';
				int m = snprintf(cand, sizeof(cand),
				                 "%s/omni-agent", exe);
				if (m < 0 || (size_t)m >= sizeof(cand) ||
				    !executable(cand))
					cand[0] = '\0';
			}
		}
	}
	const char *path = getenv("PATH");
	while (!cand[0] && path && *path) {
		const char *colon = strchr(path, ':');
		size_t len = colon ? (size_t)(colon - path) : strlen(path);
		int m = snprintf(cand, sizeof(cand), "%.*s/omni-agent",
		                 (int)len, path);
		if (len == 0 || m < 0 || (size_t)m >= sizeof(cand) ||
		    !executable(cand))
			cand[0] = '\0';
		path = colon ? colon + 1 : NULL;
	}
	if (!cand[0])
		return omni_error_set(-ENOENT,
		                      "omni-agent not found (looked at "
		                      "$OMNI_AGENT_PATH, beside this program "
		                      "and in PATH); build it with make, or "
		                      "set OMNI_AGENT_PATH");
	if (!realpath(cand, exe))
		return omni_error_set_errno(-errno, "omni-agent %s", cand);
	if (strlen(exe) >= size)
		return omni_error_set(-ENAMETOOLONG,
		                      "omni-agent path too long");
	snprintf(out, size, "%s", exe);
	return check_static(out);
}

/* --- the runtime directory ------------------------------------------------ */

static void run_dir_close(struct omni__docker_backend *db)
{
	if (db->run_fd >= 0)
		close(db->run_fd);
	db->run_fd = -1;
}

/* Use dir (made 0700 and ours when missing) for the agent's socket. */
static int run_dir_use(struct omni__docker_backend *db, const char *dir,
                       bool create)
{
	struct stat st;

	run_dir_close(db);
	if (strlen(dir) >= sizeof(db->run_dir))
		return omni_error_set(-ENAMETOOLONG,
		                      "runtime directory too long");
	snprintf(db->run_dir, sizeof(db->run_dir), "%s", dir);
	if (create && mkdir(dir, 0700) < 0 && errno != EEXIST)
		return omni_error_set_errno(-errno, "cannot create %s", dir);
	db->run_fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (db->run_fd < 0)
		return omni_error_set_errno(-errno, "%s", dir);
	if (fstat(db->run_fd, &st) < 0)
		return omni_error_set_errno(-errno, "%s", dir);
	if (st.st_uid != geteuid())
		return omni_error_set(-EACCES,
		                      "%s belongs to uid %u, not to you", dir,
		                      (unsigned)st.st_uid);
	if ((st.st_mode & 0777) != 0700 && chmod(dir, 0700) < 0)
		return omni_error_set_errno(-errno, "chmod %s", dir);
	return 0;
}

static int run_dir_create(struct omni__docker_backend *db)
{
	char rt[PATH_MAX], dir[PATH_MAX];
	int rc = omni_runtime_dir(rt, sizeof(rt), true);

	if (rc < 0)
		return rc;
	int n = snprintf(dir, sizeof(dir), "%s/docker-%s", rt,
	                 db->host.base.project_id);
	if (n < 0 || (size_t)n >= sizeof(dir))
		return omni_error_set(-ENAMETOOLONG,
		                      "runtime directory too long");
	if ((rc = run_dir_use(db, dir, true)) < 0)
		return rc;
	db->run_dir_made = true;
	/* A socket left by an earlier container is stale. */
	unlinkat(db->run_fd, "agent.sock", 0);
	return 0;
}

/* Remove what run_dir_create() made (the socket the agent left, if any). */
static void run_dir_remove(struct omni__docker_backend *db)
{
	if (db->run_fd < 0)
		return;
	run_dir_close(db);
	char sock[PATH_MAX + 16];
	if ((size_t)snprintf(sock, sizeof(sock), "%s/agent.sock", db->run_dir) <
	    sizeof(sock))
		unlink(sock);
	rmdir(db->run_dir);
}

/* --- containers ----------------------------------------------------------- */

static int inspect(struct omni__docker_backend *db, const char *ref,
                   cJSON **out)
{
	char path[256], what[256];

	snprintf(path, sizeof(path), "/containers/%s/json", ref);
	snprintf(what, sizeof(what), "inspecting container %s", ref);
	return omni__docker_call(&db->api, "GET", path, NULL, CALL_TIMEOUT_MS,
	                         out, what);
}

static const char *json_str(const cJSON *obj, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(obj, a);

	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsString(x) ? x->valuestring : NULL;
}

/* The host directory bound at target in an inspected container. */
static const char *mount_source(const cJSON *c, const char *target)
{
	const cJSON *m;
	const cJSON *mounts = cJSON_GetObjectItemCaseSensitive(c, "Mounts");

	cJSON_ArrayForEach(m, mounts)
	{
		const char *dst = json_str(m, "Destination", NULL);
		if (dst && strcmp(dst, target) == 0)
			return json_str(m, "Source", NULL);
	}
	return NULL;
}

int omni__docker_init_pid(struct omni__docker_backend *db, int *pid)
{
	cJSON *c = NULL;
	int rc = inspect(db, db->id[0] ? db->id : db->name, &c);

	*pid = 0;
	if (rc == 0) {
		const cJSON *state =
		    cJSON_GetObjectItemCaseSensitive(c, "State");
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(state, "Pid");
		if (cJSON_IsNumber(p) && p->valuedouble > 0 &&
		    p->valuedouble < 1e9)
			*pid = (int)p->valuedouble;
	}
	cJSON_Delete(c);
	return rc;
}

void omni__docker_describe_state(struct omni__docker_backend *db, char *out,
                                 size_t size, int wait_ms)
{
	long long until = omni__now_ms() + wait_ms;
	cJSON *c = NULL;
	const char *st = NULL;
	int rc;

	/* The daemon learns that a container died a moment after its
	 * processes are gone: when the caller saw the agent go, give it
	 * that moment. */
	for (;;) {
		rc = inspect(db, db->id[0] ? db->id : db->name, &c);
		st = rc == 0 ? json_str(c, "State", "Status") : NULL;
		if (rc < 0 || !st || strcmp(st, "running") != 0 ||
		    omni__now_ms() >= until)
			break;
		cJSON_Delete(c);
		c = NULL;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	if (rc == -ENOENT) {
		snprintf(out, size, "container %s was removed", db->name);
	} else if (rc < 0) {
		snprintf(out, size, "%s", omni_error_last());
	} else {
		const cJSON *state =
		    cJSON_GetObjectItemCaseSensitive(c, "State");
		const cJSON *code =
		    cJSON_GetObjectItemCaseSensitive(state, "ExitCode");
		const cJSON *oom =
		    cJSON_GetObjectItemCaseSensitive(state, "OOMKilled");
		if (st && strcmp(st, "running") != 0 && cJSON_IsNumber(code))
			snprintf(out, size, "container %s is %s, status %d%s",
			         db->name, st, code->valueint,
			         cJSON_IsTrue(oom) ? ", out of memory" : "");
		else
			snprintf(out, size, "container %s is %s", db->name,
			         st ? st : "in an unknown state");
	}
	cJSON_Delete(c);
	omni_error_clear();
}

static int container_post(struct omni__docker_backend *db, const char *verb,
                          const char *query, long timeout_ms)
{
	struct omni__http_response resp;
	char path[256], what[256];
	int rc;

	snprintf(path, sizeof(path), "/containers/%s/%s%s", db->id, verb,
	         query ? query : "");
	rc = omni__docker_request(&db->api, "POST", path, NULL, timeout_ms,
	                          &resp);
	/* 304: already in that state. */
	if (rc == 0 && resp.status != 304) {
		snprintf(what, sizeof(what), "%s container %s", verb, db->name);
		rc = omni__http_check(&resp, "docker: %s", what);
	}
	omni__http_response_finish(&resp);
	return rc;
}

static int container_remove(struct omni__docker_backend *db, const char *ref)
{
	struct omni__http_response resp;
	char path[256];
	int rc;

	snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", ref);
	rc = omni__docker_request(&db->api, "DELETE", path, NULL,
	                          STOP_TIMEOUT_MS, &resp);
	if (rc == 0 && resp.status != 404)
		rc = omni__http_check(&resp, "docker: removing container %s",
		                      db->name);
	omni__http_response_finish(&resp);
	return rc;
}

static int add_mount(cJSON *mounts, const char *src, const char *dst, bool ro)
{
	cJSON *m = cJSON_CreateObject();

	if (!m || !cJSON_AddItemToArray(mounts, m) ||
	    !cJSON_AddStringToObject(m, "Type", "bind") ||
	    !cJSON_AddStringToObject(m, "Source", src) ||
	    !cJSON_AddStringToObject(m, "Target", dst) ||
	    !cJSON_AddBoolToObject(m, "ReadOnly", ro))
		return -ENOMEM;
	return 0;
}

static bool agent_mode(const struct omni__docker_backend *db)
{
	return db->files == OMNI__DOCKER_FILES_AGENT;
}

/* Agent mode: the volume at /workspace and a private tmpfs for the agent's
 * socket (mode 1777: the container's user makes the socket); nothing of
 * this machine. */
static int add_agent_mounts(struct omni__docker_backend *db, cJSON *mounts)
{
	cJSON *v = cJSON_CreateObject();
	if (!v || !cJSON_AddItemToArray(mounts, v)) {
		cJSON_Delete(v);
		return -ENOMEM;
	}
	cJSON *t = cJSON_CreateObject();
	if (!t || !cJSON_AddItemToArray(mounts, t)) {
		cJSON_Delete(t);
		return -ENOMEM;
	}
	bool ok = true;
	cJSON *to = t ? cJSON_AddObjectToObject(t, "TmpfsOptions") : NULL;
	ok = ok && cJSON_AddStringToObject(v, "Type", "volume") &&
	     cJSON_AddStringToObject(v, "Source", db->name) &&
	     cJSON_AddStringToObject(v, "Target", OMNI_DOCKER_WORKDIR) &&
	     cJSON_AddStringToObject(t, "Type", "tmpfs") &&
	     cJSON_AddStringToObject(t, "Target", OMNI_DOCKER_RUN_DIR) && to &&
	     cJSON_AddNumberToObject(to, "Mode", 01777) &&
	     cJSON_AddNumberToObject(to, "SizeBytes", 1 << 20);
	return ok ? 0 : -ENOMEM;
}

static int add_strings(cJSON *obj, const char *name, const char *const *v)
{
	cJSON *a = cJSON_AddArrayToObject(obj, name);

	if (!a)
		return -ENOMEM;
	for (; v && *v; v++) {
		cJSON *s = cJSON_CreateString(*v);
		if (!s || !cJSON_AddItemToArray(a, s)) {
			cJSON_Delete(s);
			return -ENOMEM;
		}
	}
	return 0;
}

/* The body of POST /containers/create (malloc'd JSON text). */
static char *create_body(struct omni__docker_backend *db, const char *image,
                         const char *workspace, const char *agent)
{
	const struct omni_docker_options *o = &db->opts;
	const char *const *env = db->host.base.opts.env;
	const char *entry[] = { OMNI_DOCKER_AGENT_PATH,
		                "--listen",
		                OMNI_DOCKER_RUN_DIR "/agent.sock",
		                "--workdir",
		                OMNI_DOCKER_WORKDIR,
		                NULL };
	const char *none[] = { NULL };
	const char *home[] = { "HOME=" OMNI_DOCKER_WORKDIR, NULL };
	char user[64];
	char *text = NULL;
	int bad = 0;

	snprintf(user, sizeof(user), "%u:%u", (unsigned)getuid(),
	         (unsigned)getgid());
	cJSON *root = cJSON_CreateObject();
	if (!root)
		return NULL;
	bad |= !cJSON_AddStringToObject(root, "Image", image);
	bad |= add_strings(root, "Entrypoint", entry);
	/* An empty Cmd: the image's CMD would become the agent's
	 * arguments otherwise. */
	bad |= add_strings(root, "Cmd", none);
	bad |=
	    !cJSON_AddStringToObject(root, "WorkingDir", OMNI_DOCKER_WORKDIR);
	bad |= !cJSON_AddStringToObject(root, "User", user);
	bad |= add_strings(root, "Env", home);
	cJSON *array = cJSON_GetObjectItemCaseSensitive(root, "Env");
	for (const char *const *e = env; array && e && *e; e++)
		bad |= !cJSON_AddItemToArray(array, cJSON_CreateString(*e));
	bad |= !cJSON_AddBoolToObject(root, "Tty", false);
	bad |= !cJSON_AddBoolToObject(root, "OpenStdin", false);
	bad |= !cJSON_AddBoolToObject(root, "AttachStdin", false);
	bad |= !cJSON_AddBoolToObject(root, "AttachStdout", false);
	bad |= !cJSON_AddBoolToObject(root, "AttachStderr", false);
	cJSON *labels = cJSON_AddObjectToObject(root, "Labels");
	bad |= !labels ||
	       !cJSON_AddStringToObject(labels, OMNI_DOCKER_LABEL_PROJECT,
	                                db->host.base.project_id) ||
	       !cJSON_AddStringToObject(labels, OMNI_DOCKER_LABEL_WORKSPACE,
	                                workspace);

	bad |= !labels ||
	       !cJSON_AddStringToObject(labels, OMNI_DOCKER_LABEL_FILES,
	                                agent_mode(db) ? "agent" : "bind");

	cJSON *hc = cJSON_AddObjectToObject(root, "HostConfig");
	cJSON *mounts = hc ? cJSON_AddArrayToObject(hc, "Mounts") : NULL;
	bad |= !mounts;
	if (mounts && agent_mode(db)) {
		bad |= add_agent_mounts(db, mounts);
	} else if (mounts) {
		bad |= add_mount(mounts, workspace, OMNI_DOCKER_WORKDIR, false);
		bad |= add_mount(mounts, agent, OMNI_DOCKER_AGENT_PATH, true);
		bad |=
		    add_mount(mounts, db->run_dir, OMNI_DOCKER_RUN_DIR, false);
	}
	if (hc) {
		bad |= !cJSON_AddBoolToObject(hc, "Init", false);
		if (o->network && *o->network)
			bad |= !cJSON_AddStringToObject(hc, "NetworkMode",
			                                o->network);
		if (o->memory_bytes > 0)
			bad |= !cJSON_AddNumberToObject(
			    hc, "Memory", (double)o->memory_bytes);
		if (o->cpus > 0)
			bad |= !cJSON_AddNumberToObject(
			    hc, "NanoCpus", (double)(long long)(o->cpus * 1e9));
		if (o->pids_limit > 0)
			bad |= !cJSON_AddNumberToObject(hc, "PidsLimit",
			                                (double)o->pids_limit);
	}
	if (!bad)
		text = cJSON_PrintUnformatted(root);
	cJSON_Delete(root);
	return text;
}

static int create(struct omni__docker_backend *db, const char *image,
                  const char *workspace)
{
	char agent[PATH_MAX], path[256], what[256];
	cJSON *reply = NULL;
	int rc;

	if ((rc = find_agent(agent, sizeof(agent))) < 0)
		return rc;
	if (agent_mode(db))
		rc = omni__docker_volume_ensure(db);
	else
		rc = run_dir_create(db);
	if (rc < 0)
		return rc;
	if ((rc = omni__docker_ensure_image(&db->api, image,
	                                    db->host.base.opts.progress)) < 0)
		return rc;
	char *body = create_body(db, image, workspace, agent);
	if (!body)
		return omni_error_set(-ENOMEM, "docker: out of memory");
	snprintf(path, sizeof(path), "/containers/create?name=%s", db->name);
	snprintf(what, sizeof(what), "creating container %s from %s", db->name,
	         image);
	rc = omni__docker_call(&db->api, "POST", path, body, CALL_TIMEOUT_MS,
	                       &reply, what);
	free(body);
	if (rc < 0)
		return rc;
	const char *id = json_str(reply, "Id", NULL);
	if (!id || strlen(id) >= sizeof(db->id)) {
		cJSON_Delete(reply);
		return omni_error_set(-EPROTO,
		                      "docker: %s: no container id in "
		                      "the reply",
		                      what);
	}
	snprintf(db->id, sizeof(db->id), "%s", id);
	cJSON_Delete(reply);
	omni_log(OMNI_LOG_DEBUG, "docker: created %s (%.12s) from %s", db->name,
	         db->id, image);
	if (agent_mode(db))
		return omni__docker_agent_install(db, agent);
	return 0;
}

/* adopt() in agent mode: a container of ours in agent mode is reused with
 * its volume (omni-agent put in again when it is not running: it may be
 * newer); one in bind mode is replaced. */
static int adopt_agent(struct omni__docker_backend *db, const cJSON *c,
                       const char *status)
{
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(c, "Config");
	const char *files = json_str(config, "Labels", OMNI_DOCKER_LABEL_FILES);
	char agent[PATH_MAX];
	int rc;

	if (!files || strcmp(files, "agent") != 0) {
		omni_log(OMNI_LOG_DEBUG,
		         "docker: %s is a bind-mode container; making an "
		         "agent-mode one",
		         db->name);
		rc = container_remove(db, db->id);
		db->id[0] = '\0';
		return rc < 0 ? rc : 0;
	}
	if (status && strcmp(status, "paused") == 0) {
		rc = container_post(db, "unpause", NULL, CALL_TIMEOUT_MS);
	} else if (!status || strcmp(status, "running") != 0) {
		if ((rc = find_agent(agent, sizeof(agent))) < 0 ||
		    (rc = omni__docker_agent_install(db, agent)) < 0)
			return rc;
		rc = container_post(db, "start", NULL, CALL_TIMEOUT_MS);
	} else {
		rc = 0;
	}
	if (rc < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG,
	         "docker: reusing %s (%.12s, was %s) and its "
	         "volume",
	         db->name, db->id, status ? status : "?");
	return 1;
}

/*
 * An existing container of our name. 1: reused (db->id and run_dir set);
 * 0: it was ours but unusable and has been removed; -errno otherwise.
 */
static int adopt(struct omni__docker_backend *db, cJSON *c,
                 const char *workspace)
{
	const cJSON *config = cJSON_GetObjectItemCaseSensitive(c, "Config");
	const char *label =
	    json_str(config, "Labels", OMNI_DOCKER_LABEL_PROJECT);
	const char *id = json_str(c, "Id", NULL);
	const char *status = json_str(c, "State", "Status");
	struct stat st;

	if (!label || strcmp(label, db->host.base.project_id) != 0)
		return omni_error_set(-EEXIST,
		                      "a container named %s exists but was not "
		                      "made by omnifs for project '%s' (label "
		                      "%s=%s); remove or rename it",
		                      db->name, db->host.base.project_id,
		                      OMNI_DOCKER_LABEL_PROJECT,
		                      label ? label : "missing");
	if (!id || strlen(id) >= sizeof(db->id))
		return omni_error_set(-EPROTO, "docker: container %s has no id",
		                      db->name);
	snprintf(db->id, sizeof(db->id), "%s", id);
	if (agent_mode(db))
		return adopt_agent(db, c, status);

	const char *ws = mount_source(c, OMNI_DOCKER_WORKDIR);
	const char *run = mount_source(c, OMNI_DOCKER_RUN_DIR);
	const char *agent = mount_source(c, OMNI_DOCKER_AGENT_PATH);
	bool usable = ws && strcmp(ws, workspace) == 0 && run &&
	              stat(run, &st) == 0 && S_ISDIR(st.st_mode) && agent &&
	              stat(agent, &st) == 0;
	if (!usable) {
		omni_log(OMNI_LOG_DEBUG,
		         "docker: %s is bound to %s, not %s, or its runtime "
		         "directory or agent is gone; making a new one",
		         db->name, ws ? ws : "nothing", workspace);
		int rc = container_remove(db, db->id);
		db->id[0] = '\0';
		return rc < 0 ? rc : 0;
	}
	int rc = run_dir_use(db, run, false);
	if (rc < 0)
		return rc;
	if (status && strcmp(status, "paused") == 0)
		rc = container_post(db, "unpause", NULL, CALL_TIMEOUT_MS);
	else if (!status || strcmp(status, "running") != 0)
		rc = container_post(db, "start", NULL, CALL_TIMEOUT_MS);
	if (rc < 0)
		return rc;
	omni_log(OMNI_LOG_DEBUG, "docker: reusing %s (%.12s, was %s)", db->name,
	         db->id, status ? status : "?");
	return 1;
}

static bool container_running(struct omni__docker_backend *db, int *code)
{
	cJSON *c = NULL;
	bool running = false;

	*code = -1;
	if (inspect(db, db->id, &c) == 0) {
		const cJSON *state =
		    cJSON_GetObjectItemCaseSensitive(c, "State");
		const char *st = json_str(state, "Status", NULL);
		const cJSON *ec =
		    cJSON_GetObjectItemCaseSensitive(state, "ExitCode");
		running = st && (strcmp(st, "running") == 0 ||
		                 strcmp(st, "created") == 0 ||
		                 strcmp(st, "restarting") == 0);
		if (cJSON_IsNumber(ec))
			*code = ec->valueint;
	}
	cJSON_Delete(c);
	omni_error_clear();
	return running;
}

/* Wait until the agent answers, or the container has died. */
static int wait_agent(struct omni__docker_backend *db)
{
	long long deadline = omni__now_ms() + AGENT_WAIT_MS;
	long long next_check = omni__now_ms() + 200;
	char log[512];
	int code;

	for (;;) {
		if (omni__docker_agent_ping(db, 1000) == 0)
			return 0;
		long long now = omni__now_ms();
		if (now >= next_check) {
			next_check = now + 250;
			if (!container_running(db, &code)) {
				omni__docker_logs_tail(&db->api, db->id, log,
				                       sizeof(log));
				return omni_error_set(
				    -EIO,
				    "container %s stopped at once (status "
				    "%d)%s%s",
				    db->name, code, log[0] ? ": " : "", log);
			}
		}
		if (now >= deadline)
			break;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	omni__docker_logs_tail(&db->api, db->id, log, sizeof(log));
	return omni_error_set(
	    -ETIMEDOUT,
	    "omni-agent in container %s did not answer on "
	    "%s/agent.sock within %d s%s%s%s",
	    db->name, agent_mode(db) ? OMNI_DOCKER_RUN_DIR : db->run_dir,
	    AGENT_WAIT_MS / 1000,
	    agent_mode(db) ? " (through the exec stream)" : "",
	    log[0] ? "; its log: " : "", log);
}

/* --- the session ---------------------------------------------------------- */

/* The daemon from the environment. Over TCP, TLS and ssh the requests keep
 * their connections (the pool): a handshake, or an ssh login, per request
 * would cost several round trips each. */
static int api_init(struct omni__docker_backend *db)
{
	int rc = omni__docker_api_init(&db->api);

	if (rc == 0 && !db->api.ep.unix_socket[0])
		db->api.ep.pool = &db->pool;
	return rc;
}

static void release_host(struct omni__docker_backend *db)
{
	run_dir_close(db);
	omni__confined_close(&db->host.root);
}

static int docker_start(struct omni_backend *b)
{
	struct omni__docker_backend *db = db_of(b);
	const char *image = db->opts.image && *db->opts.image
	                        ? db->opts.image
	                        : OMNI_DOCKER_DEFAULT_IMAGE;
	char workspace[PATH_MAX];
	bool created = false;
	cJSON *c = NULL;
	int rc;

	db->id[0] = '\0';
	db->run_dir_made = false;
	atomic_store(&db->agent_pid, 0);
	if ((rc = api_init(db)) < 0 ||
	    (rc = omni__docker_api_negotiate(&db->api)) < 0)
		return rc;
	if (agent_mode(db)) {
		snprintf(workspace, sizeof(workspace), "volume:%s", db->name);
	} else if ((rc = omni__workspace_host_dir(b, workspace,
	                                          sizeof(workspace))) < 0 ||
	           (rc = omni__confined_open(&db->host.root, workspace)) < 0) {
		return rc;
	}

	rc = inspect(db, db->name, &c);
	if (rc == 0) {
		rc = adopt(db, c, workspace);
		cJSON_Delete(c);
		c = NULL;
		if (rc < 0)
			goto fail;
	} else if (rc == -ENOENT) {
		omni_error_clear();
		rc = 0;
	} else {
		goto fail;
	}
	if (rc == 0) {
		if (!omni__docker_image_valid(image)) {
			rc = omni_error_set(-EINVAL, "invalid image name '%s'",
			                    image);
			goto fail;
		}
		if ((rc = create(db, image, workspace)) < 0)
			goto fail;
		created = true;
		if ((rc = container_post(db, "start", NULL, CALL_TIMEOUT_MS)) <
		    0)
			goto fail;
	}
	if ((rc = wait_agent(db)) < 0 ||
	    (agent_mode(db) && (rc = remote_attach(db)) < 0))
		goto fail;
	return 0;

fail:
	omni__docker_mux_stop(db);
	if (created || db->run_dir_made) {
		/* Do not leave a container that never worked behind; keep
		 * the message that explains why. */
		struct omni__error_saved saved;
		omni__error_save(&saved);
		if (created)
			container_remove(db, db->id);
		run_dir_remove(db);
		omni__error_restore(&saved, rc);
	}
	release_host(db);
	db->id[0] = '\0';
	return rc;
}

static enum omni_status docker_status(struct omni_backend *b)
{
	int code;

	return container_running(db_of(b), &code) ? OMNI_STATUS_RUNNING
	                                          : OMNI_STATUS_STOPPED;
}

static int docker_shutdown(struct omni_backend *b)
{
	struct omni__docker_backend *db = db_of(b);
	char q[32];
	int rc = 0, rrc;

	if (agent_mode(db))
		remote_watch_stop(db);
	omni__docker_mux_stop(db);
	if (db->id[0]) {
		snprintf(q, sizeof(q), "?t=%d", STOP_GRACE_S);
		rc = container_post(db, "stop", q, STOP_TIMEOUT_MS);
		if (rc == -ENOENT) {
			omni_error_clear();
			rc = 0;
		}
		rrc = container_remove(db, db->id);
		if (rc == 0)
			rc = rrc;
		omni_log(OMNI_LOG_DEBUG, "docker: removed %s (%.12s)", db->name,
		         db->id);
		db->id[0] = '\0';
	}
	/* After the state save (backend.c saves before shutdown) and the
	 * container: the volume goes with the session. */
	if (agent_mode(db)) {
		rrc = omni__docker_volume_remove(db);
		if (rc == 0)
			rc = rrc;
	}
	run_dir_remove(db);
	release_host(db);
	return rc;
}

static void docker_destroy(struct omni_backend *b)
{
	struct omni__docker_backend *db = db_of(b);

	release_host(db);
	remote_free(db);
	omni__docker_mux_free(db);
	omni__curl_pool_destroy(&db->pool);
	free((char *)db->opts.image);
	free((char *)db->opts.network);
	free((char *)db->opts.files);
	omni__backend_finish(b);
	free(db);
}

static const struct omni_backend_ops docker_ops = {
	OMNI__HOST_BACKEND_OPS,
	.name = "docker",
	.start = docker_start,
	.shutdown = docker_shutdown,
	.status = docker_status,
	.destroy = docker_destroy,
	OMNI_BACKEND_EXEC_OPS(omni__docker),
};

/*
 * Agent mode: lifecycle and commands as above (docker.c, docker_exec.c over
 * docker_mux.c's stream); the path operations come from the file client,
 * backends/docker/docker_remote.c, whose header defines
 * OMNI__DOCKER_REMOTE_OPS (the slots) and OMNI__DOCKER_REMOTE_CAPS. The caps
 * are the table's, so the mode is settled when the backend is made (the probe
 * runs in omni__docker_backend_open()), before fs/main.c decides on the
 * remote cache.
 */

static const struct omni_backend_ops docker_agent_ops = {
	.version = OMNI_BACKEND_OPS_VERSION,
	.name = "docker",
	.caps = OMNI_CAP_REMOTE | OMNI_CAP_TTY | OMNI__DOCKER_REMOTE_CAPS,
	.start = docker_start,
	.shutdown = docker_shutdown,
	.status = docker_status,
	.destroy = docker_destroy,
	OMNI__DOCKER_REMOTE_OPS,
	.stats = docker_stats,
	OMNI_BACKEND_EXEC_OPS(omni__docker),
};

/* Copy the docker options (own may be NULL: the defaults). A version 1
 * struct ends before files. */
static int copy_options(struct omni__docker_backend *db,
                        const struct omni_backend_options_head *own)
{
	struct omni_docker_options defaults = OMNI_DOCKER_OPTIONS_INIT;
	const struct omni_docker_options *o =
	    own ? (const struct omni_docker_options *)own : &defaults;

	if (o->head.version < 2) {
		memcpy(&db->opts, o,
		       offsetof(struct omni_docker_options, files));
		db->opts.files = NULL;
	} else {
		db->opts = *o;
	}
	db->opts.image = o->image ? strdup(o->image) : NULL;
	db->opts.network = o->network ? strdup(o->network) : NULL;
	db->opts.files = db->opts.files ? strdup(db->opts.files) : NULL;
	if ((o->image && !db->opts.image) || (o->network && !db->opts.network))
		return omni_error_set(-ENOMEM, "docker backend: out of memory");
	return 0;
}

/* bind, agent, or the probe's answer for auto. */
static int resolve_files(struct omni__docker_backend *db)
{
	const char *f = db->opts.files;
	const char *image = db->opts.image && *db->opts.image
	                        ? db->opts.image
	                        : OMNI_DOCKER_DEFAULT_IMAGE;
	int rc;

	if (f && strcmp(f, "bind") == 0) {
		db->files = OMNI__DOCKER_FILES_BIND;
	} else if (f && strcmp(f, "agent") == 0) {
		db->files = OMNI__DOCKER_FILES_AGENT;
	} else if (!f || !*f || strcmp(f, "auto") == 0) {
		if (!omni__docker_image_valid(image))
			return omni_error_set(-EINVAL,
			                      "invalid image name '%s'", image);
		if ((rc = api_init(db)) < 0 ||
		    (rc = omni__docker_api_negotiate(&db->api)) < 0 ||
		    (rc = omni__docker_probe_files(
		         &db->api, image, db->host.base.opts.progress,
		         db->host.base.opts.data_path, &db->files)) < 0)
			return rc;
	} else {
		return omni_error_set(-EINVAL,
		                      "docker: files mode '%s' (known: bind, "
		                      "agent, auto)",
		                      f);
	}
	omni_log(OMNI_LOG_DEBUG, "docker: %s files mode for %s",
	         db->files == OMNI__DOCKER_FILES_AGENT
	             ? "agent (a volume, through omni-agent)"
	             : "bind (the host's data folder)",
	         db->name);
	return 0;
}

int omni__docker_backend_open(struct omni_backend **out, const char *project_id,
                              const struct omni_backend_options *opts)
{
	const struct omni_backend_options_head *own;
	struct omni__docker_backend *db;
	int rc;

	*out = NULL;
	if ((rc = omni__backend_own_options(
	         opts, "docker", OMNI_DOCKER_OPTIONS_VERSION, &own)) < 0)
		return rc;
	if (!(db = calloc(1, sizeof(*db))))
		return omni_error_set(-ENOMEM, "docker backend: out of memory");
	db->host.root.root_fd = -1;
	db->run_fd = -1;
	omni__curl_pool_init(&db->pool);
	rc = omni__backend_init(&db->host.base, &docker_ops, project_id,
	                        OMNI_DOCKER_WORKDIR, opts);
	if (rc < 0) {
		omni__curl_pool_destroy(&db->pool);
		free(db);
		return rc;
	}
	snprintf(db->name, sizeof(db->name), "omniagents-%s", project_id);
	if ((rc = copy_options(db, own)) < 0 ||
	    (rc = omni__docker_mux_new(db)) < 0 ||
	    (rc = resolve_files(db)) < 0) {
		docker_destroy(&db->host.base);
		return rc;
	}
	if (agent_mode(db))
		db->host.base.ops = &docker_agent_ops;
	*out = &db->host.base;
	return 0;
}
