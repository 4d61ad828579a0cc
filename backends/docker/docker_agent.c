/*
 * backends/docker/docker_agent.c - what agent mode needs from the Engine API
 * beyond docker.c's container life: the workspace volume, putting omni-agent
 * into a created container, and the probe that picks the mode.
 *
 * The volume. omniagents-<project> (labelled org.omnifs.project), mounted
 * at /workspace: POST /volumes/create is idempotent (an existing volume of
 * that name is returned as it is), so a restart finds the same files.
 * DELETE /volumes/{name} at shutdown, after the container is gone.
 *
 * omni-agent. PUT /containers/{id}/archive?path=/&noOverwriteDirNonDir=1
 * before the container starts, with a tar made in memory of two entries:
 *	workspace/   directory, mode 0755, owned by the caller's uid:gid
 *	omni-agent   the static binary, mode 0755, root's
 * The first is how /workspace becomes writable for the container's user
 * (the caller's uid:gid, as in bind mode) without running anything as
 * root: a new named volume is empty and root-owned, and Docker gives it the
 * owner and mode of the image's directory at the mount point when it first
 * mounts it (the volume "copy-up"); an existing volume mounted while the
 * archive is extracted is chowned directly. Either way /workspace is the
 * caller's. Chosen over a one-time `docker exec -u 0 chown`: no extra exec
 * and nothing in the container ever runs as root on our behalf.
 *
 * The probe (--docker-files=auto). Can the daemon see this machine's data
 * folder? Write <data>/.omnifs-probe-<pid> holding a random token, create
 * (never start) a throwaway container (of the session's image when the
 * daemon has it, else of any image it has, else the session's pulled) with a
 *bind Mount (Type bind fails fast with 400 when the source is missing on the
 * daemon's machine) of the data folder at /omni-probe, read the marker back
 * with GET /containers/{id}/archive and look for the token; remove the
 * container and the marker. Token seen: bind. Create refused with 400 (no
 * such path there), archive 404, or a different file: agent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/datapath.h"
#include "docker/docker.h"
#include "omni/error.h"
#include "omni/log.h"

#define CALL_TIMEOUT_MS 30000L
#define PUT_TIMEOUT_MS  120000L
#define AGENT_MAX       (64u << 20)

/* --- the volume ----------------------------------------------------------- */

int omni__docker_volume_ensure(struct omni__docker_backend *db)
{
	char body[512], what[256];
	cJSON *reply = NULL;

	snprintf(body, sizeof(body),
	         "{\"Name\":\"%s\",\"Labels\":{\"" OMNI_DOCKER_LABEL_PROJECT
	         "\":\"%s\"}}",
	         db->name, db->host.base.project_id);
	snprintf(what, sizeof(what), "creating volume %s", db->name);
	int rc = omni__docker_call(&db->api, "POST", "/volumes/create", body,
	                           CALL_TIMEOUT_MS, &reply, what);
	cJSON_Delete(reply);
	return rc;
}

int omni__docker_volume_remove(struct omni__docker_backend *db)
{
	struct omni__http_response resp;
	char path[256];

	snprintf(path, sizeof(path), "/volumes/%s", db->name);
	int rc = omni__docker_request(&db->api, "DELETE", path, NULL,
	                              CALL_TIMEOUT_MS, &resp);
	if (rc == 0 && resp.status != 404)
		rc = omni__http_check(&resp, "docker: removing volume %s",
		                      db->name);
	omni__http_response_finish(&resp);
	if (rc == 0)
		omni_log(OMNI_LOG_DEBUG, "docker: removed volume %s", db->name);
	return rc;
}

/* --- a tar in memory ------------------------------------------------------ */

/* v in size-1 octal digits and a NUL (values here always fit). */
static void octal(char *field, size_t size, unsigned long long v)
{
	field[size - 1] = '\0';
	for (size_t i = size - 1; i-- > 0; v >>= 3)
		field[i] = (char)('0' + (v & 7));
}

/* A ustar header at h (512 bytes, zeroed by the caller). */
static void tar_header(unsigned char *h, const char *name, char type,
                       unsigned mode, unsigned uid, unsigned gid,
                       unsigned long long size)
{
	char *c = (char *)h;
	unsigned sum = 0;

	snprintf(c, 100, "%s", name);
	octal(c + 100, 8, mode);
	octal(c + 108, 8, uid);
	octal(c + 116, 8, gid);
	octal(c + 124, 12, size);
	octal(c + 136, 12, (unsigned long long)time(NULL));
	memset(c + 148, ' ', 8);
	c[156] = type;
	memcpy(c + 257, "ustar", 6);
	memcpy(c + 263, "00", 2);
	for (int i = 0; i < 512; i++)
		sum += h[i];
	octal(c + 148, 7, sum);
	c[155] = ' ';
}

/* The tar of workspace/ and omni-agent (see the top). */
static int make_tar(const char *agent, unsigned char **out, size_t *len)
{
	int fd = open(agent, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return omni_error_set_errno(-errno, "omni-agent %s", agent);
	if (fstat(fd, &st) < 0 || st.st_size <= 0 ||
	    (unsigned long long)st.st_size > AGENT_MAX) {
		close(fd);
		return omni_error_set(-EFBIG, "omni-agent %s: bad size", agent);
	}
	size_t size = (size_t)st.st_size;
	size_t body = (size + 511) / 512 * 512;
	size_t total = 512 + 512 + body + 1024;
	unsigned char *t = calloc(1, total);
	if (!t) {
		close(fd);
		return omni_error_set(-ENOMEM, "docker: out of memory");
	}
	tar_header(t, "workspace/", '5', 0755, (unsigned)getuid(),
	           (unsigned)getgid(), 0);
	tar_header(t + 512, "omni-agent", '0', 0755, 0, 0, size);
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, t + 1024 + got, size - got);
		if (n <= 0) {
			int rc = n < 0 ? -errno : -EIO;
			close(fd);
			free(t);
			return omni_error_set_errno(rc, "reading %s", agent);
		}
		got += (size_t)n;
	}
	close(fd);
	*out = t;
	*len = total;
	return 0;
}

int omni__docker_agent_install(struct omni__docker_backend *db,
                               const char *agent)
{
	unsigned char *tar = NULL;
	size_t len = 0;
	char path[512];
	int rc;

	if ((rc = make_tar(agent, &tar, &len)) < 0)
		return rc;
	snprintf(path, sizeof(path),
	         "/v%s/containers/%s/archive?path=%%2F&noOverwriteDirNonDir=1",
	         db->api.version, db->id);
	struct omni__http_request req = {
		.method = "PUT",
		.path = path,
		.body = tar,
		.body_len = len,
		.content_type = "application/x-tar",
		.timeout_ms = PUT_TIMEOUT_MS,
	};
	struct omni__http_response resp;
	rc = omni__http_request(&db->api.ep, &req, &resp);
	if (rc == 0)
		rc = omni__http_check(
		    &resp, "docker: putting omni-agent into %s", db->name);
	else
		rc = omni_error_set_errno(rc,
		                          "docker: putting omni-agent into "
		                          "%s",
		                          db->name);
	omni__http_response_finish(&resp);
	free(tar);
	return rc;
}

/* --- the probe ------------------------------------------------------------ */

/* A removal that reports nothing (the probe's container). */
static void remove_quietly(const struct omni__docker_api *api, const char *id)
{
	struct omni__http_response resp;
	char path[256];

	snprintf(path, sizeof(path), "/containers/%s?force=1&v=1", id);
	omni__docker_request(api, "DELETE", path, NULL, CALL_TIMEOUT_MS, &resp);
	omni__http_response_finish(&resp);
}

/* Create the probe container; 1 made (id set), 0 the daemon refused the
 * bind (no such folder there), -errno. */
static int probe_create(const struct omni__docker_api *api, const char *image,
                        const char *data, char *id, size_t id_size)
{
	struct omni__http_response resp;
	cJSON *body = cJSON_CreateObject();
	cJSON *hc = body ? cJSON_AddObjectToObject(body, "HostConfig") : NULL;
	cJSON *mounts = hc ? cJSON_AddArrayToObject(hc, "Mounts") : NULL;
	cJSON *m = mounts ? cJSON_CreateObject() : NULL;
	cJSON *ep = body ? cJSON_AddArrayToObject(body, "Entrypoint") : NULL;
	char *text = NULL;

	if (m && cJSON_AddItemToArray(mounts, m) &&
	    cJSON_AddStringToObject(body, "Image", image) && ep &&
	    cJSON_AddItemToArray(ep, cJSON_CreateString("/omni-probe")) &&
	    cJSON_AddStringToObject(m, "Type", "bind") &&
	    cJSON_AddStringToObject(m, "Source", data) &&
	    cJSON_AddStringToObject(m, "Target", "/omni-probe") &&
	    cJSON_AddBoolToObject(m, "ReadOnly", true))
		text = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	if (!text)
		return omni_error_set(-ENOMEM, "docker: out of memory");
	int rc = omni__docker_request(api, "POST", "/containers/create", text,
	                              CALL_TIMEOUT_MS, &resp);
	free(text);
	if (rc == 0 && resp.status == 400) {
		char msg[256];
		omni__http_error_text(resp.body, resp.body_len, msg,
		                      sizeof(msg));
		omni_log(OMNI_LOG_DEBUG, "docker: probe: %s", msg);
		omni__http_response_finish(&resp);
		return 0;
	}
	if (rc == 0)
		rc = omni__http_check(&resp, "docker: probing the daemon");
	if (rc == 0) {
		cJSON *r = cJSON_ParseWithLength(resp.body ? resp.body : "",
		                                 resp.body_len);
		const cJSON *i = cJSON_GetObjectItemCaseSensitive(r, "Id");
		if (cJSON_IsString(i) && strlen(i->valuestring) < id_size &&
		    !strchr(i->valuestring, '/'))
			snprintf(id, id_size, "%s", i->valuestring);
		else
			rc = omni_error_set(-EPROTO,
			                    "docker: probe: no container id");
		cJSON_Delete(r);
	}
	omni__http_response_finish(&resp);
	return rc < 0 ? rc : 1;
}

/* Does the probe container see marker holding token? */
static int probe_read(const struct omni__docker_api *api, const char *id,
                      const char *marker, const char *token, bool *seen)
{
	struct omni__http_response resp;
	char path[512];

	*seen = false;
	snprintf(path, sizeof(path),
	         "/containers/%s/archive?path=%%2Fomni-probe%%2F%s", id,
	         marker);
	int rc = omni__docker_request(api, "GET", path, NULL, CALL_TIMEOUT_MS,
	                              &resp);
	if (rc == 0 && resp.status == 200 && resp.body)
		*seen = memmem(resp.body, resp.body_len, token,
		               strlen(token)) != NULL;
	else if (rc == 0 && resp.status != 404)
		rc = omni__http_check(&resp,
		                      "docker: probe: reading the marker");
	omni__http_response_finish(&resp);
	return rc;
}

/* An image for the probe's container (never started, so any will do):
 * want when the daemon has it, else the first image the daemon lists, else
 * want pulled. */
static int probe_image(const struct omni__docker_api *api, const char *want,
                       bool progress, char *out, size_t size)
{
	char path[512];
	cJSON *list = NULL;
	const cJSON *img;

	snprintf(path, sizeof(path), "/images/%s/json", want);
	snprintf(out, size, "%s", want);
	int rc = omni__docker_call(api, "GET", path, NULL, CALL_TIMEOUT_MS,
	                           NULL, "inspecting the image");
	if (rc == 0)
		return 0;
	omni_error_clear();
	rc = omni__docker_call(api, "GET", "/images/json", NULL,
	                       CALL_TIMEOUT_MS, &list, "listing images");
	if (rc < 0)
		return rc;
	cJSON_ArrayForEach(img, list)
	{
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(img, "Id");
		if (cJSON_IsString(id) && strlen(id->valuestring) < size &&
		    omni__docker_image_valid(id->valuestring)) {
			snprintf(out, size, "%s", id->valuestring);
			cJSON_Delete(list);
			return 0;
		}
	}
	cJSON_Delete(list);
	return omni__docker_ensure_image(api, want, progress);
}

int omni__docker_probe_files(const struct omni__docker_api *api,
                             const char *want, bool progress,
                             const char *data_path,
                             enum omni__docker_files *out)
{
	char image[512];
	char data[PATH_MAX], marker[64], mpath[PATH_MAX + 80], token[40];
	char id[80] = "";
	unsigned char rnd[16];
	bool seen = false;
	int rc;

	if ((rc = omni__data_path(data_path, data, sizeof(data))) < 0 ||
	    (rc = probe_image(api, want, progress, image, sizeof(image))) < 0)
		return rc;
	if (mkdir(data, 0755) < 0 && errno != EEXIST)
		return omni_error_set_errno(-errno, "cannot create %s", data);
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		return omni_error_set_errno(-errno, "getrandom");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(token + 2 * i, 3, "%02x", rnd[i]);
	snprintf(marker, sizeof(marker), ".omnifs-probe-%ld", (long)getpid());
	snprintf(mpath, sizeof(mpath), "%s/%s", data, marker);
	int fd = open(mpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return omni_error_set_errno(-errno, "cannot write %s", mpath);
	bool ok = write(fd, token, strlen(token)) == (ssize_t)strlen(token);
	close(fd);
	if (!ok) {
		unlink(mpath);
		return omni_error_set(-EIO, "cannot write %s", mpath);
	}
	rc = probe_create(api, image, data, id, sizeof(id));
	if (rc > 0) {
		rc = probe_read(api, id, marker, token, &seen);
		remove_quietly(api, id);
	}
	unlink(mpath);
	if (rc < 0)
		return rc;
	*out = seen ? OMNI__DOCKER_FILES_BIND : OMNI__DOCKER_FILES_AGENT;
	omni_log(OMNI_LOG_DEBUG, "docker: files: %s (the daemon at %s %s %s)",
	         seen ? "bind" : "agent", api->host,
	         seen ? "sees" : "does not see", data);
	return 0;
}
