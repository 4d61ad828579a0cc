/*
 * backends/docker/docker_host.c - the daemons docker_api.c reaches beyond a
 * DOCKER_HOST of unix:// or tcp://: docker contexts, and ssh://.
 *
 * Contexts, as the docker CLI resolves them (docker.md A.1): DOCKER_HOST
 * wins; else DOCKER_CONTEXT; else "currentContext" in config.json of
 * $DOCKER_CONFIG (default ~/.docker). "default" (or none) is the local
 * socket. A named context is contexts/meta/<sha256 of the name>/meta.json
 * under that folder, whose Endpoints.docker.Host is the daemon and
 * Endpoints.docker.SkipTLSVerify switches verification off; its TLS files
 * are contexts/tls/<sha256>/docker/{ca,cert,key}.pem, TLS being on when any
 * of them exists.
 *
 * ssh://[user@]host[:port]: as the docker CLI does, every connection is
 * `ssh [-l user] [-p port] -o BatchMode=yes [$OMNI_DOCKER_SSH_OPTS] -T --
 * host docker system dial-stdio`, the far side's docker CLI joining its
 * stdin and stdout to the daemon there. For each new connection (http.h's
 * dial hook, called from curl's CURLOPT_OPENSOCKETFUNCTION, so a kept
 * connection costs nothing) curl connects to a Unix socket in the private
 * runtime directory whose one connection becomes ssh's stdin and stdout, so
 * plain requests and hijacked streams work alike over it. ssh is started
 * through a double fork (it belongs to init, not to us: nothing to reap);
 * it ends when its socket is closed. $OMNI_DOCKER_SSH_OPTS holds extra ssh
 * options split at spaces (e.g. "-F /path/config" or "-i key"), for setups
 * ~/.ssh/config does not cover.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/sha.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "docker/docker.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/session.h"

#define MAX_JSON (1u << 20)
#define MAX_ARGS 48

/* --- contexts ------------------------------------------------------------- */

static char *read_small(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0;

	if (!f)
		return NULL;
	buf = malloc(MAX_JSON + 1);
	if (buf)
		len = fread(buf, 1, MAX_JSON, f);
	fclose(f);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static int config_dir(char *out, size_t size)
{
	const char *dir = getenv("DOCKER_CONFIG");
	const char *home = getenv("HOME");
	int n;

	if (dir && *dir)
		n = snprintf(out, size, "%s", dir);
	else
		n = snprintf(out, size, "%s/.docker", home ? home : "");
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The context name in force: DOCKER_CONTEXT, else currentContext. */
static void context_name(const char *dir, char *out, size_t size)
{
	const char *env = getenv("DOCKER_CONTEXT");
	char path[PATH_MAX + 32];

	out[0] = '\0';
	if (env && *env) {
		snprintf(out, size, "%s", env);
		return;
	}
	snprintf(path, sizeof(path), "%s/config.json", dir);
	char *text = read_small(path);
	cJSON *c = text ? cJSON_Parse(text) : NULL;
	const cJSON *cur =
	    cJSON_GetObjectItemCaseSensitive(c, "currentContext");
	if (cJSON_IsString(cur))
		snprintf(out, size, "%s", cur->valuestring);
	cJSON_Delete(c);
	free(text);
}

static void sha256_hex(const char *s, char out[65])
{
	unsigned char d[SHA256_DIGEST_LENGTH];

	SHA256((const unsigned char *)s, strlen(s), d);
	for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int omni__docker_context(struct omni__docker_context *ctx)
{
	char dir[PATH_MAX], path[PATH_MAX + 160], hex[65];

	memset(ctx, 0, sizeof(*ctx));
	if (config_dir(dir, sizeof(dir)) < 0)
		return 0;
	context_name(dir, ctx->name, sizeof(ctx->name));
	if (!ctx->name[0] || strcmp(ctx->name, "default") == 0)
		return 0;
	sha256_hex(ctx->name, hex);
	snprintf(path, sizeof(path), "%s/contexts/meta/%s/meta.json", dir, hex);
	char *text = read_small(path);
	if (!text)
		return omni_error_set(-ENOENT,
		                      "docker context '%s' not found (no %s)",
		                      ctx->name, path);
	cJSON *meta = cJSON_Parse(text);
	free(text);
	const cJSON *ep = cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(meta, "Endpoints"), "docker");
	const cJSON *host = cJSON_GetObjectItemCaseSensitive(ep, "Host");
	const cJSON *skip =
	    cJSON_GetObjectItemCaseSensitive(ep, "SkipTLSVerify");
	if (!cJSON_IsString(host) ||
	    strlen(host->valuestring) >= sizeof(ctx->host)) {
		cJSON_Delete(meta);
		return omni_error_set(-EINVAL,
		                      "docker context '%s': %s has no "
		                      "Endpoints.docker.Host",
		                      ctx->name, path);
	}
	snprintf(ctx->host, sizeof(ctx->host), "%s", host->valuestring);
	ctx->skip_verify = cJSON_IsTrue(skip);
	cJSON_Delete(meta);
	int n = snprintf(ctx->tls_dir, sizeof(ctx->tls_dir),
	                 "%.3900s/contexts/tls/%s/docker", dir, hex);
	if (n < 0 || (size_t)n >= sizeof(ctx->tls_dir))
		return omni_error_set(-ENAMETOOLONG, "DOCKER_CONFIG too long");
	static const char *const files[] = { "ca.pem", "cert.pem", "key.pem" };
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", ctx->tls_dir, files[i]);
		if (access(path, R_OK) == 0)
			ctx->tls = true;
	}
	omni_log(OMNI_LOG_DEBUG, "docker: context %s: %s%s", ctx->name,
	         ctx->host, ctx->tls ? " (TLS)" : "");
	return 1;
}

/* --- ssh ------------------------------------------------------------------ */

/* ssh://[user@]host[:port] into its parts. */
static int ssh_parse(const char *url, char *user, char *host, char *port,
                     size_t size)
{
	const char *p = url + 6;
	const char *at = strchr(p, '@');
	const char *end = p + strcspn(p, "/?#");

	user[0] = port[0] = '\0';
	if (at && at < end) {
		if ((size_t)(at - p) >= size)
			return -ENAMETOOLONG;
		snprintf(user, size, "%.*s", (int)(at - p), p);
		p = at + 1;
	}
	const char *colon = memchr(p, ':', (size_t)(end - p));
	const char *hend = colon ? colon : end;
	if (hend == p || (size_t)(hend - p) >= size)
		return -EINVAL;
	snprintf(host, size, "%.*s", (int)(hend - p), p);
	if (colon) {
		if ((size_t)(end - colon - 1) >= size)
			return -ENAMETOOLONG;
		snprintf(port, size, "%.*s", (int)(end - colon - 1), colon + 1);
		for (const char *c = port; *c; c++)
			if (*c < '0' || *c > '9')
				return -EINVAL;
	}
	/* Not an option to ssh. */
	if (host[0] == '-' || user[0] == '-')
		return -EINVAL;
	return 0;
}

/* A listening socket at a fresh path in the private runtime directory. */
static int ssh_listener(char *path, size_t size)
{
	static _Atomic unsigned counter;
	char rt[PATH_MAX];
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (omni_runtime_dir(rt, sizeof(rt), true) < 0)
		return -1;
	int n = snprintf(path, size, "%s/ssh-%ld-%u.sock", rt, (long)getpid(),
	                 atomic_fetch_add(&counter, 1));
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, path, (size_t)n + 1);
	unlink(path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, 1) < 0) {
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

/*
 * The dial hook: a socket curl connects to (in the private runtime
 * directory), and a process, double-forked so nothing is left to reap,
 * that takes that one connection, removes the name, and becomes `ssh ...
 * docker system dial-stdio` on it. It gives up (and removes the name) after
 * 60 s without a connection.
 */
static int ssh_dial(const struct omni__http_endpoint *ep, char *path,
                    size_t size)
{
	char user[256], host[256], port[256], opts[1024];
	char *argv[MAX_ARGS];
	int argc = 0;

	if (ssh_parse(ep->dial_arg, user, host, port, sizeof(user)) < 0)
		return -EINVAL;
	argv[argc++] = "ssh";
	if (user[0]) {
		argv[argc++] = "-l";
		argv[argc++] = user;
	}
	if (port[0]) {
		argv[argc++] = "-p";
		argv[argc++] = port;
	}
	argv[argc++] = "-o";
	argv[argc++] = "BatchMode=yes";
	argv[argc++] = "-o";
	argv[argc++] = "ConnectTimeout=30";
	const char *extra = getenv("OMNI_DOCKER_SSH_OPTS");
	snprintf(opts, sizeof(opts), "%s", extra ? extra : "");
	for (char *save = NULL, *t = strtok_r(opts, " ", &save);
	     t && argc < MAX_ARGS - 8; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	argv[argc++] = "-T";
	argv[argc++] = "--";
	argv[argc++] = host;
	argv[argc++] = "docker";
	argv[argc++] = "system";
	argv[argc++] = "dial-stdio";
	argv[argc] = NULL;
	bool quiet = getenv("OMNI_DOCKER_SSH_STDERR") == NULL;

	int lfd = ssh_listener(path, size);
	if (lfd < 0)
		return -EIO;
	pid_t pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. */
		if (fork() != 0)
			_exit(0);
		setsid();
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int c = poll(&p, 1, 60000) == 1 ? accept(lfd, NULL, NULL) : -1;
		unlink(path);
		if (c < 0)
			_exit(1);
		dup2(c, 0);
		dup2(c, 1);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0 && quiet)
			dup2(null, 2);
		execvp("ssh", argv);
		_exit(127);
	}
	close(lfd);
	if (pid < 0) {
		unlink(path);
		return -errno;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

int omni__docker_ssh_init(struct omni__docker_api *api, const char *url)
{
	char user[256], host[256], port[256];
	int rc = ssh_parse(url, user, host, port, sizeof(user));

	if (rc < 0 || strlen(url) >= sizeof(api->ep.dial_arg) ||
	    strlen(url) >= sizeof(api->host))
		return omni_error_set(rc < 0 ? rc : -ENAMETOOLONG,
		                      "DOCKER_HOST=%s: not ssh://[user@]host"
		                      "[:port]",
		                      url);
	snprintf(api->ep.dial_arg, sizeof(api->ep.dial_arg), "%s", url);
	snprintf(api->host, sizeof(api->host), "%s", url);
	snprintf(api->ep.base_url, sizeof(api->ep.base_url),
	         "http://127.0.0.1");
	api->ep.dial = ssh_dial;
	/* ssh's own handshake may take a while on a slow link. */
	api->ep.connect_timeout_ms = 30000;
	return 0;
}
