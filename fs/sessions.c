/*
 * sessions.c - the session files and omnifs --list (see sessions.h).
 *
 * A session file is one JSON object:
 *
 *	{ "project": "p", "backend": "docker", "mountpoint": "/home/me/p",
 *	  "pid": 4242, "started": 1700000000, "state": "git",
 *	  "socket": "/run/user/1000/omnifs/p.sock",
 *	  "last_save": 1700000100, "last_save_id": "3f2a..." }
 *
 * (last_save and last_save_id are null before the first save). --list
 * --json prints an array of these with "uptime" (seconds) added.
 * Liveness is the pid (kill 0) and the control socket answering a
 * connect, so a pid reused by another program does not keep a dead
 * session listed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "omni/error.h"
#include "omni/ipc.h"
#include "omni/session.h"
#include "sessions.h"

#define SUFFIX       ".session"
#define MAX_FILE     (64 * 1024)
#define MAX_SESSIONS 4096

static pthread_mutex_t publish_lock = PTHREAD_MUTEX_INITIALIZER;

static int session_path(const char *project, char *out, size_t size)
{
	char dir[PATH_MAX];
	int rc = omni_runtime_dir(dir, sizeof(dir), false);

	if (rc < 0)
		return rc;
	if ((size_t)snprintf(out, size, "%s/%s" SUFFIX, dir, project) >= size)
		return omni_error_set(
		    -ENAMETOOLONG, "%s/%s" SUFFIX ": too long", dir, project);
	return 0;
}

/* A string member, or null for NULL. */
static bool add_str(cJSON *o, const char *name, const char *value)
{
	return value ? cJSON_AddStringToObject(o, name, value) != NULL
	             : cJSON_AddNullToObject(o, name) != NULL;
}

static char *info_text(const struct omnifs_session_info *in)
{
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	bool ok = o != NULL;

	ok = ok && add_str(o, "project", in->project) &&
	     add_str(o, "backend", in->backend) &&
	     add_str(o, "mountpoint", in->mountpoint) &&
	     cJSON_AddNumberToObject(o, "pid", (double)in->pid) &&
	     cJSON_AddNumberToObject(o, "started", (double)in->started) &&
	     add_str(o, "state", in->state) && add_str(o, "socket", in->socket);
	if (ok && in->last_save)
		ok = cJSON_AddNumberToObject(o, "last_save",
		                             (double)in->last_save) != NULL;
	else if (ok)
		ok = cJSON_AddNullToObject(o, "last_save") != NULL;
	ok = ok && add_str(o, "last_save_id",
	                   in->last_save ? in->last_save_id : NULL);
	if (ok)
		text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Write text to path through a temporary file renamed over it. */
static int write_atomic(const char *path, const char *text)
{
	char tmp[PATH_MAX + 32];
	size_t len = strlen(text), done = 0;

	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	int fd = open(
	    tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return omni_error_set_errno(-errno, "%s", tmp);
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int err = w < 0 ? errno : EIO;
			close(fd);
			unlink(tmp);
			return omni_error_set_errno(-err, "%s", tmp);
		}
		done += (size_t)w;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		int err = errno;
		unlink(tmp);
		return omni_error_set_errno(-err, "%s", path);
	}
	return 0;
}

int omnifs_session_publish(const struct omnifs_session_info *info)
{
	char path[PATH_MAX];
	int rc = session_path(info->project, path, sizeof(path));

	if (rc < 0)
		return rc;
	char *text = info_text(info);
	if (!text)
		return omni_error_set(-ENOMEM, "session file: out of memory");
	pthread_mutex_lock(&publish_lock);
	rc = write_atomic(path, text);
	pthread_mutex_unlock(&publish_lock);
	free(text);
	return rc;
}

/* The JSON object of a session file, or NULL. */
static cJSON *read_session(const char *path)
{
	char buf[MAX_FILE + 1];
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return NULL;
	while (len < MAX_FILE) {
		ssize_t r = read(fd, buf + len, MAX_FILE - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	cJSON *o = cJSON_Parse(buf);
	if (o && (!cJSON_IsString(cJSON_GetObjectItem(o, "project")) ||
	          !cJSON_IsNumber(cJSON_GetObjectItem(o, "pid")))) {
		cJSON_Delete(o);
		o = NULL;
	}
	return o;
}

static pid_t pid_of(const cJSON *o)
{
	return (pid_t)cJSON_GetObjectItem(o, "pid")->valuedouble;
}

void omnifs_session_unpublish(const char *project)
{
	char path[PATH_MAX];

	if (session_path(project, path, sizeof(path)) < 0)
		return;
	pthread_mutex_lock(&publish_lock);
	cJSON *o = read_session(path);
	/* A newer daemon of the project may have written it since. */
	if (o && pid_of(o) == getpid())
		unlink(path);
	cJSON_Delete(o);
	pthread_mutex_unlock(&publish_lock);
}

/* --- --list --------------------------------------------------------------- */

/* Is the daemon of o alive and serving its control socket? */
static bool alive(const cJSON *o)
{
	pid_t pid = pid_of(o);
	const char *sock =
	    cJSON_GetStringValue(cJSON_GetObjectItem(o, "socket"));
	int fd;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM) || !sock)
		return false;
	if (omni__unix_connect(sock, &fd) < 0)
		return false;
	close(fd);
	return true;
}

static const char *str_of(const cJSON *o, const char *name)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(o, name));

	return s ? s : "-";
}

static int by_project(const void *a, const void *b)
{
	return strcmp(str_of(*(cJSON *const *)a, "project"),
	              str_of(*(cJSON *const *)b, "project"));
}

/* The live sessions of dir, sorted by project, into *out (n of them);
 * stale files are removed. */
static int collect(const char *dir, cJSON ***out, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	cJSON **all = NULL;

	*out = NULL;
	*n = 0;
	if (!d)
		return errno == ENOENT
		           ? 0
		           : omni_error_set_errno(-errno, "%s", dir);
	while ((de = readdir(d)) && *n < MAX_SESSIONS) {
		size_t len = strlen(de->d_name), sl = strlen(SUFFIX);
		char path[PATH_MAX];
		if (len <= sl || strcmp(de->d_name + len - sl, SUFFIX) != 0 ||
		    (size_t)snprintf(path, sizeof(path), "%s/%s", dir,
		                     de->d_name) >= sizeof(path))
			continue;
		cJSON *o = read_session(path);
		if (!o || !alive(o)) {
			if (o)
				unlink(path);
			cJSON_Delete(o);
			continue;
		}
		cJSON **grown = realloc(all, (*n + 1) * sizeof(*all));
		if (!grown) {
			cJSON_Delete(o);
			break;
		}
		all = grown;
		all[(*n)++] = o;
	}
	closedir(d);
	if (*n)
		qsort(all, *n, sizeof(*all), by_project);
	*out = all;
	return 0;
}

/* "42s", "3m07s", "2h05m", "4d03h". */
static void fmt_age(long long s, char *out, size_t size)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, size, "%llds", s);
	else if (s < 3600)
		snprintf(out, size, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, size, "%lldh%02lldm", s / 3600, s / 60 % 60);
	else
		snprintf(out, size, "%lldd%02lldh", s / 86400, s / 3600 % 24);
}

/* One row's cells: project backend mountpoint pid uptime state save. */
static void row_cells(const cJSON *o, long long now, char cells[7][PATH_MAX])
{
	const cJSON *save = cJSON_GetObjectItem(o, "last_save");
	char age[32];

	snprintf(cells[0], PATH_MAX, "%s", str_of(o, "project"));
	snprintf(cells[1], PATH_MAX, "%s", str_of(o, "backend"));
	snprintf(cells[2], PATH_MAX, "%s", str_of(o, "mountpoint"));
	snprintf(cells[3], PATH_MAX, "%ld", (long)pid_of(o));
	fmt_age(now - (long long)cJSON_GetNumberValue(
	                  cJSON_GetObjectItem(o, "started")),
	        age, sizeof(age));
	snprintf(cells[4], PATH_MAX, "%s", age);
	snprintf(cells[5], PATH_MAX, "%s", str_of(o, "state"));
	if (cJSON_IsNumber(save)) {
		fmt_age(now - (long long)save->valuedouble, age, sizeof(age));
		snprintf(cells[6], PATH_MAX, "%s ago", age);
	} else {
		snprintf(cells[6], PATH_MAX, "never");
	}
}

static void print_table(FILE *out, cJSON **all, size_t n, long long now)
{
	static const char *const head[7] = { "PROJECT",    "BACKEND",
		                             "MOUNTPOINT", "PID",
		                             "UPTIME",     "STATE",
		                             "LAST SAVE" };
	char cells[7][PATH_MAX];
	int width[7];

	for (int c = 0; c < 7; c++)
		width[c] = (int)strlen(head[c]);
	for (size_t i = 0; i < n; i++) {
		row_cells(all[i], now, cells);
		for (int c = 0; c < 7; c++)
			if ((int)strlen(cells[c]) > width[c])
				width[c] = (int)strlen(cells[c]);
	}
	for (int c = 0; c < 7; c++)
		fprintf(out, "%-*s%s", c < 6 ? width[c] : 0, head[c],
		        c < 6 ? "  " : "\n");
	for (size_t i = 0; i < n; i++) {
		row_cells(all[i], now, cells);
		for (int c = 0; c < 7; c++)
			fprintf(out, "%-*s%s", c < 6 ? width[c] : 0, cells[c],
			        c < 6 ? "  " : "\n");
	}
}

static int print_json(FILE *out, cJSON **all, size_t n, long long now)
{
	cJSON *array = cJSON_CreateArray();
	bool ok = array != NULL;

	for (size_t i = 0; ok && i < n; i++) {
		double started = cJSON_GetNumberValue(
		    cJSON_GetObjectItem(all[i], "started"));
		cJSON *o = cJSON_Duplicate(all[i], true);
		ok =
		    o && cJSON_AddItemToArray(array, o) &&
		    cJSON_AddNumberToObject(o, "uptime", (double)now - started);
	}
	char *text = ok ? cJSON_Print(array) : NULL;
	cJSON_Delete(array);
	if (!text)
		return -ENOMEM;
	fprintf(out, "%s\n", text);
	free(text);
	return 0;
}

int omnifs_session_list(FILE *out, bool json)
{
	char dir[PATH_MAX];
	cJSON **all;
	size_t n;
	int rc = omni_runtime_dir(dir, sizeof(dir), false);

	if (rc == -ENOENT) {
		/* No daemon ever ran: nothing to list. */
		all = NULL;
		n = 0;
	} else if (rc < 0 || (rc = collect(dir, &all, &n)) < 0) {
		fprintf(stderr, "omnifs: --list: %s\n", omni_error_last());
		return 1;
	}
	long long now = (long long)time(NULL);
	if (json)
		rc = print_json(out, all, n, now);
	else
		print_table(out, all, n, now);
	for (size_t i = 0; i < n; i++)
		cJSON_Delete(all[i]);
	free(all);
	if (rc < 0) {
		fprintf(stderr, "omnifs: --list: out of memory\n");
		return 1;
	}
	return 0;
}
