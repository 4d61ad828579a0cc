/*
 * backends/state/state_gcs.c - the "gcs" state manager: workspace snapshots as
 *tar.gz objects in a Google Cloud Storage bucket, through the JSON API (libcurl
 *via http.c, cJSON, libarchive via tar_snapshot.c).
 *
 * USAGE
 *	struct omni_state_gcs_options o = OMNI_STATE_GCS_OPTIONS_INIT;
 *	o.bucket = "my-bucket";          (or $OMNIAGENTS_GCS_BUCKET)
 *	omni_state_gcs(&st, &o);
 *	omnifs --state gcs ...  /  --state gcs://my-bucket/some/prefix
 *	Objects: <prefix>/<project_id>/<YYYYmmdd_HHMMSS_ffffff>.tar.gz (UTC).
 *	See omni/state.h for the environment and gcs_auth.h for credentials.
 *
 * ENDPOINTS (base = https://storage.googleapis.com, $OMNIAGENTS_GCS_ENDPOINT
 * or $STORAGE_EMULATOR_HOST; JSON = base/storage/v1, UPLOAD =
 * base/upload/storage/v1)
 *	GET    JSON/b/B/o?prefix=P/&delimiter=/&fields=..&pageToken=   list
 *	POST   UPLOAD/b/B/o?uploadType=multipart&ifGenerationMatch=0   <= 8 MiB
 *	POST   UPLOAD/b/B/o?uploadType=resumable&name=N&ifGenerationMatch=0
 *	PUT    <session> Content-Range: bytes A-B/T, then bytes STAR/T to ask
 *	       how much arrived after a failure (308 + Range), 404/410 = start
 *	       over
 *	GET    JSON/b/B/o/N?alt=media&generation=G                     download
 *	GET    JSON/b/B/o/N                                            metadata
 *	DELETE JSON/b/B/o/N                                            cleanup
 *
 * DESIGN
 *	Save archives the workspace (tar_snapshot.c) into a file under
 *	<state_dir>/<project>.gcs/, compares the archive's content digest
 *	with the last snapshot this data folder saved or loaded (last.json):
 *	the same means nothing to upload. Otherwise the archive becomes
 *	pending/<id>.tar.gz first, and every pending archive is uploaded,
 *	oldest first, then deleted. So a save that cannot upload (network,
 *	credentials, a missing bucket) loses nothing: the archive stays under
 *	the data folder, the error says where, and the next save uploads it.
 *	The workspace is only read.
 *	Uploads carry ifGenerationMatch=0, so a retried upload can never
 *	overwrite; a 412 is answered by comparing the stored object's hashes
 *	with ours (the same: an earlier attempt got through). The object's
 *	md5Hash and crc32c must match what was sent. Archives up to
 *	resumable_threshold go in one multipart request (metadata + data);
 *	larger ones in a resumable session, chunk by chunk, resuming from the
 *	server's Range after a cut. The message and the content digest go in
 *	the object's metadata.
 *	Load lists the project's objects (every page: the newest is on the
 *	last), takes the greatest name (or a newer pending archive of this
 *	data folder), and does nothing when that is the snapshot this data
 *	folder last saved or loaded and the workspace is not empty (it is at
 *	least as new). Otherwise it downloads into a file, checks CRC-32C
 *	and MD5 against x-goog-hash (a mismatch is retried, then -EIO), reads
 *	the whole archive through (tar_snapshot.c) and only then writes the
 *	workspace; a non-empty workspace that differs is first archived under
 *	backups/ (the newest five are kept).
 *
 * ERRORS
 *	HTTP statuses through omni_http_check() (404 ENOENT, 401/403 EACCES,
 *	409 EEXIST, 408/504 ETIMEDOUT, 429/503 EAGAIN, other 5xx EIO) with the
 *	server's message and the object or bucket; transport errors keep
 *	curl's errno. 408, 429, 5xx and transport failures are retried
 *	(max_retries, backoff retry_base_ms * 2^n plus jitter, capped at 32 s)
 *	when the request is safe to repeat; 401 makes the token be fetched
 *	anew once.
 *
 * LOCKING
 *	Every operation holds the manager's mutex for its whole length
 *	(credentials and counters live in the manager) and an exclusive flock
 *	on <state_dir>/<project>.lock against other processes. One curl
 *	handle per request (http.c).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "state/gcs_auth.h"
#include "core/hash.h"
#include "core/http.h"
#include "omni/sys/backend_impl.h"
#include "omni/error.h"
#include "omni/log.h"
#include "omni/sys/state_impl.h"
#include "state/snapshot.h"
#include "state/tar_snapshot.h"

#define LOCK_TIMEOUT_S    600
#define DEFAULT_THRESHOLD (8u * 1024 * 1024)
#define DEFAULT_CHUNK     (8u * 1024 * 1024)
#define CHUNK_QUANTUM     (256u * 1024)
#define MAX_BACKOFF_MS    32000
#define KEEP_BACKUPS      5
#define URL_MAX           4096
#define SUFFIX            ".tar.gz"

struct gcs_state {
	struct omni_state base;
	pthread_mutex_t mutex;
	char *bucket;
	char *prefix;      /* "" or "a/b" (no slashes around) */
	char *state_dir;   /* NULL: the default */
	char api[1100];    /* <base>/storage/v1 */
	char upload[1100]; /* <base>/upload/storage/v1 */
	struct omni_http_endpoint ep;
	struct omni__gcs_auth auth;
	unsigned int max_retries, retry_base_ms;
	size_t threshold, chunk;
	unsigned int seed;
};

struct gcs_op {
	struct gcs_state *gs;
	struct omni_backend *b;
	char objprefix[1024]; /* "<prefix>/<project>/" */
	char dir[PATH_MAX];
	char home[PATH_MAX];    /* <dir>/<project>.gcs */
	char pending[PATH_MAX]; /* home/pending */
	char backups[PATH_MAX]; /* home/backups */
	char last_path[PATH_MAX];
	int lock_fd;
	struct omni__progress progress;
	/* The snapshot this data folder last saved or loaded. */
	char last_id[32];
	char last_digest[33];
};

struct gcs_object {
	char *name;
	char id[32];
	long long generation, size, created;
	long long files; /* pending: entries, for the upload metadata */
	char md5[32], crc32c[16]; /* base64, as GCS gives them */
	char *message;
	char digest[33];
	bool pending;
	char *path; /* pending: the local archive */
};

struct gcs_objects {
	struct gcs_object *items;
	size_t count, cap;
};

/* --- small helpers
 * -------------------------------------------------------------- */

static void objects_finish(struct gcs_objects *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].name);
		free(l->items[i].message);
		free(l->items[i].path);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static struct gcs_object *objects_add(struct gcs_objects *l)
{
	if (l->count == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 32;
		struct gcs_object *p = realloc(l->items, cap * sizeof(*p));
		if (!p)
			return NULL;
		l->items = p;
		l->cap = cap;
	}
	struct gcs_object *o = &l->items[l->count++];
	memset(o, 0, sizeof(*o));
	return o;
}

static int object_cmp_desc(const void *a, const void *b)
{
	return strcmp(((const struct gcs_object *)b)->id,
	              ((const struct gcs_object *)a)->id);
}

/* The id of an object name "<objprefix><id>.tar.gz", or false. */
static bool id_of(const char *objprefix, const char *name, char id[32])
{
	size_t pl = strlen(objprefix), nl = strlen(name), sl = strlen(SUFFIX);

	if (strncmp(name, objprefix, pl) != 0 || nl <= pl + sl ||
	    strcmp(name + nl - sl, SUFFIX) != 0 || nl - pl - sl >= 32 ||
	    memchr(name + pl, '/', nl - pl - sl))
		return false;
	memcpy(id, name + pl, nl - pl - sl);
	id[nl - pl - sl] = '\0';
	return true;
}

static int escape(const char *s, char *out, size_t size)
{
	return omni_http_escape(s, out, size);
}

static long long json_ll(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

	if (cJSON_IsString(v))
		return strtoll(v->valuestring, NULL, 10);
	if (cJSON_IsNumber(v))
		return (long long)v->valuedouble;
	return 0;
}

static void json_copy(const cJSON *j, const char *name, char *out, size_t size)
{
	const char *v =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, name));

	snprintf(out, size, "%s", v ? v : "");
}

/* RFC 3339 "2026-11-26T09:30:00.123Z" to seconds, or 0. */
static long long rfc3339(const char *s)
{
	struct tm tm = { 0 };

	if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon,
	                 &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (long long)timegm(&tm);
}

/* Hashes of a whole host file. */
static int file_hashes(int fd, unsigned char md5[16], uint32_t *crc,
                       long long *size)
{
	struct omni__md5 m;
	char *buf = malloc(1 << 20);
	int rc = 0;

	*crc = 0;
	*size = 0;
	if (!buf || omni__md5_init(&m) < 0) {
		free(buf);
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	}
	for (off_t off = 0;;) {
		ssize_t n = pread(fd, buf, 1 << 20, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = omni_error_set_errno(-errno,
			                          "gcs: reading an archive");
			break;
		}
		if (n == 0)
			break;
		omni__md5_update(&m, buf, (size_t)n);
		*crc = omni__crc32c(*crc, buf, (size_t)n);
		off += n;
		*size += n;
	}
	omni__md5_final(&m, md5);
	free(buf);
	return rc;
}

static void b64_crc(uint32_t crc, char out[16])
{
	unsigned char be[4] = { (unsigned char)(crc >> 24),
		                (unsigned char)(crc >> 16),
		                (unsigned char)(crc >> 8), (unsigned char)crc };

	omni__base64_encode(be, 4, false, out, 16);
}

/* --- one operation
 * ---------------------------------------------------------------- */

static struct gcs_state *gcs_of(struct omni_state *st)
{
	return (struct gcs_state *)st;
}

static int path_join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX)
		return omni_error_set(-ENAMETOOLONG, "gcs: path too long");
	return 0;
}

static void read_last(struct gcs_op *op)
{
	char buf[1024];
	FILE *f = fopen(op->last_path, "re");
	size_t n;

	op->last_id[0] = op->last_digest[0] = '\0';
	if (!f)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	cJSON *j = cJSON_Parse(buf);
	json_copy(j, "id", op->last_id, sizeof(op->last_id));
	json_copy(j, "digest", op->last_digest, sizeof(op->last_digest));
	cJSON_Delete(j);
}

static int write_last(struct gcs_op *op, const char *id, const char *digest)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
	                 "{\"id\": \"%s\", \"digest\": \"%s\"}\n", id, digest);

	snprintf(op->last_id, sizeof(op->last_id), "%s", id);
	snprintf(op->last_digest, sizeof(op->last_digest), "%s", digest);
	return omni__host_write_file(op->last_path, buf, (size_t)n);
}

static void op_end(struct gcs_op *op)
{
	omni__state_unlock(op->lock_fd);
	op->lock_fd = -1;
}

static int op_begin(struct gcs_op *op, struct gcs_state *gs,
                    struct omni_backend *b)
{
	const char *project = omni_backend_project_id(b);
	char name[PATH_MAX], lock[PATH_MAX];
	int rc, n;

	memset(op, 0, sizeof(*op));
	op->gs = gs;
	op->b = b;
	op->lock_fd = -1;
	omni__progress_start(&op->progress, false, "gcs");
	if (strcmp(project, ".omnifs-state") == 0)
		return omni_error_set(-EINVAL,
		                      "gcs state: project id '%s' is "
		                      "reserved",
		                      project);
	n = snprintf(op->objprefix, sizeof(op->objprefix), "%s%s%s/",
	             gs->prefix, gs->prefix[0] ? "/" : "", project);
	if (n < 0 || (size_t)n >= sizeof(op->objprefix))
		return omni_error_set(-ENAMETOOLONG,
		                      "gcs: object prefix too long");
	snprintf(name, sizeof(name), "%s.gcs", project);
	snprintf(lock, sizeof(lock), "%s.lock", project);
	if ((rc = omni__state_dir(b, gs->state_dir, op->dir, sizeof(op->dir))) <
	        0 ||
	    (rc = path_join(op->home, op->dir, name)) < 0 ||
	    (rc = path_join(op->pending, op->home, "pending")) < 0 ||
	    (rc = path_join(op->backups, op->home, "backups")) < 0 ||
	    (rc = path_join(op->last_path, op->home, "last.json")) < 0 ||
	    (rc = path_join(name, op->dir, lock)) < 0 ||
	    (rc = omni__host_mkdir_p(op->pending, 0700)) < 0)
		return rc;
	if ((rc = omni__state_lock(name, LOCK_TIMEOUT_S, "gcs state",
	                           &op->lock_fd)) < 0)
		return rc;
	read_last(op);
	return 0;
}

/* --- requests with retries
 * ------------------------------------------------------- */

struct gcs_req {
	const char *method;
	const char *url;
	const char *content_type;
	const void *body;
	size_t body_len;
	const char *headers[6]; /* extra ones, NULL-terminated */
	omni_http_data_cb on_data;
	omni_http_header_cb on_header;
	void *payload;
	bool retry; /* safe to repeat */
	/* Called before a repeat (e.g. to rewind a download). */
	int (*rewind)(void *payload);
	long timeout_ms, low_speed_s;
};

static void backoff(struct gcs_state *gs, unsigned int attempt)
{
	long long ms = gs->retry_base_ms;

	for (unsigned int i = 0; i < attempt && ms < MAX_BACKOFF_MS; i++)
		ms *= 2;
	if (ms > MAX_BACKOFF_MS)
		ms = MAX_BACKOFF_MS;
	ms += rand_r(&gs->seed) % (gs->retry_base_ms + 1);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static bool retryable_status(long status)
{
	return status == 408 || status == 429 ||
	       (status >= 500 && status < 600);
}

static bool retryable_errno(int rc)
{
	return rc == -ECONNRESET || rc == -ETIMEDOUT || rc == -ECONNREFUSED ||
	       rc == -EHOSTUNREACH || rc == -EIO || rc == -EPROTO ||
	       rc == -EAGAIN;
}

/*
 * Send r (with credentials), repeating it on 408/429/5xx and transport
 * failures when r->retry, and once after a 401 with a fresh token.
 * Returns 0 when a reply came (resp holds it; the caller checks the
 * status) or -errno.
 */
static int gcs_send(struct gcs_op *op, const struct gcs_req *r,
                    struct omni_http_response *resp)
{
	struct gcs_state *gs = op->gs;
	char auth[4096], quota[512];
	bool refreshed = false;
	int rc;

	memset(resp, 0, sizeof(*resp));
	for (unsigned int attempt = 0;; attempt++) {
		const char *hdrs[10];
		size_t n = 0;

		if ((rc = omni__gcs_auth_header(&gs->auth, false, auth,
		                                sizeof(auth))) < 0)
			return rc;
		if (auth[0])
			hdrs[n++] = auth;
		const char *qp = omni__gcs_auth_quota_project(&gs->auth);
		if (qp) {
			snprintf(quota, sizeof(quota),
			         "x-goog-user-project: %s", qp);
			hdrs[n++] = quota;
		}
		for (size_t i = 0; r->headers[i] && n < 9; i++)
			hdrs[n++] = r->headers[i];
		hdrs[n] = NULL;
		struct omni_http_request req = {
			.method = r->method,
			.path = r->url,
			.headers = hdrs,
			.body = r->body,
			.body_len = r->body_len,
			.content_type = r->content_type,
			.timeout_ms = r->timeout_ms,
			.low_speed_s = r->low_speed_s ? r->low_speed_s : 60,
			.on_data = r->on_data,
			.on_header = r->on_header,
			.payload = r->payload,
		};
		omni_http_response_finish(resp);
		rc = omni_http_request(&gs->ep, &req, resp);
		bool again;
		if (rc < 0) {
			again = r->retry && retryable_errno(rc);
		} else if (resp->status == 401 && auth[0] && !refreshed) {
			refreshed = true;
			if ((rc = omni__gcs_auth_header(&gs->auth, true, auth,
			                                sizeof(auth))) < 0)
				return rc;
			if (r->rewind && (rc = r->rewind(r->payload)) < 0)
				return rc;
			continue;
		} else {
			again = r->retry && retryable_status(resp->status);
		}
		if (!again || attempt >= gs->max_retries)
			return rc;
		/* Without the query: a resumable session's URL is the
		 * upload's credential. */
		omni_log(OMNI_LOG_DEBUG, "gcs: %s %.*s: %s, retrying",
		         r->method, (int)strcspn(r->url, "?"), r->url,
		         rc < 0 ? resp->error : "server error");
		omni_error_clear();
		backoff(gs, attempt);
		if (r->rewind && (rc = r->rewind(r->payload)) < 0)
			return rc;
	}
}

/* Check a reply: 2xx is 0, anything else -errno with the server's text. */
static int check(const struct omni_http_response *resp, const char *what,
                 const char *bucket, const char *name)
{
	return omni_http_check(resp, "gcs: %s gs://%s/%s", what, bucket, name);
}

/* --- list, metadata, delete
 * ---------------------------------------------------- */

static int parse_object(const cJSON *it, const char *objprefix,
                        struct gcs_objects *out)
{
	const char *name =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
	char id[32];

	if (!name || !id_of(objprefix, name, id))
		return 0;
	struct gcs_object *o = objects_add(out);
	if (!o || !(o->name = strdup(name)))
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	snprintf(o->id, sizeof(o->id), "%s", id);
	o->generation = json_ll(it, "generation");
	o->size = json_ll(it, "size");
	json_copy(it, "md5Hash", o->md5, sizeof(o->md5));
	json_copy(it, "crc32c", o->crc32c, sizeof(o->crc32c));
	o->created = rfc3339(cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(it, "timeCreated")));
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(it, "metadata");
	const char *msg = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(md, "message"));
	json_copy(md, "omnifs-digest", o->digest, sizeof(o->digest));
	if (msg && !(o->message = strdup(msg)))
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	return 0;
}

/* Every snapshot object of the project, all pages. */
static int list_remote(struct gcs_op *op, struct gcs_objects *out)
{
	struct gcs_state *gs = op->gs;
	char bucket[512], prefix[3200], token[2048] = "", etoken[6200];
	char url[URL_MAX + 8000];
	int rc;

	if ((rc = escape(gs->bucket, bucket, sizeof(bucket))) < 0 ||
	    (rc = escape(op->objprefix, prefix, sizeof(prefix))) < 0)
		return rc;
	for (;;) {
		struct omni_http_response resp;
		if ((rc = escape(token, etoken, sizeof(etoken))) < 0)
			return rc;
		snprintf(
		    url, sizeof(url),
		    "%s/b/%s/o?prefix=%s&delimiter=%%2F&maxResults=1000"
		    "&fields=items(name%%2Cgeneration%%2Csize%%2Cmd5Hash"
		    "%%2Ccrc32c%%2CtimeCreated%%2Cmetadata)%%2CnextPageToken"
		    "%s%s",
		    gs->api, bucket, prefix, token[0] ? "&pageToken=" : "",
		    etoken);
		struct gcs_req r = { .method = "GET",
			             .url = url,
			             .retry = true,
			             .timeout_ms = 120000 };
		if ((rc = gcs_send(op, &r, &resp)) == 0)
			rc = check(&resp, "listing", gs->bucket, op->objprefix);
		if (rc < 0) {
			omni_http_response_finish(&resp);
			return rc;
		}
		cJSON *j = cJSON_ParseWithLength(resp.body ? resp.body : "",
		                                 resp.body_len);
		omni_http_response_finish(&resp);
		if (!j)
			return omni_error_set(-EPROTO,
			                      "gcs: listing gs://%s/%s: "
			                      "the reply is not JSON",
			                      gs->bucket, op->objprefix);
		const cJSON *items =
		    cJSON_GetObjectItemCaseSensitive(j, "items");
		const cJSON *it;
		cJSON_ArrayForEach(it, items)
		{
			if ((rc = parse_object(it, op->objprefix, out)) < 0)
				break;
		}
		json_copy(j, "nextPageToken", token, sizeof(token));
		cJSON_Delete(j);
		if (rc < 0)
			return rc;
		if (!token[0])
			return 0;
	}
}

static int object_url(struct gcs_op *op, const char *name, const char *query,
                      char *url, size_t size)
{
	char bucket[512], obj[3200];
	int rc;

	if ((rc = escape(op->gs->bucket, bucket, sizeof(bucket))) < 0 ||
	    (rc = escape(name, obj, sizeof(obj))) < 0)
		return rc;
	int n = snprintf(url, size, "%s/b/%s/o/%s%s%s", op->gs->api, bucket,
	                 obj, query ? "?" : "", query ? query : "");
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "gcs: URL too long");
	return 0;
}

/* The object resource of name; -ENOENT when it does not exist. */
static int get_object(struct gcs_op *op, const char *name, cJSON **out)
{
	char url[URL_MAX + 4000];
	struct omni_http_response resp;
	int rc;

	*out = NULL;
	if ((rc = object_url(op, name, NULL, url, sizeof(url))) < 0)
		return rc;
	struct gcs_req r = {
		.method = "GET", .url = url, .retry = true, .timeout_ms = 60000
	};
	if ((rc = gcs_send(op, &r, &resp)) == 0 &&
	    (rc = check(&resp, "reading", op->gs->bucket, name)) == 0) {
		*out = cJSON_ParseWithLength(resp.body ? resp.body : "",
		                             resp.body_len);
		if (!*out)
			rc = omni_error_set(-EPROTO,
			                    "gcs: gs://%s/%s: the reply is "
			                    "not JSON",
			                    op->gs->bucket, name);
	}
	omni_http_response_finish(&resp);
	return rc;
}

static int delete_object(struct gcs_op *op, const char *name)
{
	char url[URL_MAX + 4000];
	struct omni_http_response resp;
	int rc;

	if ((rc = object_url(op, name, NULL, url, sizeof(url))) < 0)
		return rc;
	struct gcs_req r = { .method = "DELETE",
		             .url = url,
		             .retry = true,
		             .timeout_ms = 60000 };
	if ((rc = gcs_send(op, &r, &resp)) == 0 && resp.status != 404)
		rc = check(&resp, "deleting", op->gs->bucket, name);
	omni_http_response_finish(&resp);
	return rc;
}

/* --- uploads
 * ---------------------------------------------------------------------- */

struct local_archive {
	const char *id;
	int fd;
	long long size;
	unsigned char md5[16];
	uint32_t crc;
	char md5_b64[32], crc_b64[16];
	const char *message;
	const char *digest;
	long long files;
};

/* Does the stored object hold exactly our bytes? */
static bool same_hashes(const cJSON *obj, const struct local_archive *la)
{
	char md5[32], crc[16];

	json_copy(obj, "md5Hash", md5, sizeof(md5));
	json_copy(obj, "crc32c", crc, sizeof(crc));
	if (!md5[0] && !crc[0])
		return false;
	return (!md5[0] || strcmp(md5, la->md5_b64) == 0) &&
	       (!crc[0] || strcmp(crc, la->crc_b64) == 0);
}

static char *metadata_json(const char *name, const struct local_archive *la)
{
	cJSON *j = cJSON_CreateObject(), *md;
	char files[32];
	char *text = NULL;

	snprintf(files, sizeof(files), "%lld", la->files);
	if (j && cJSON_AddStringToObject(j, "name", name) &&
	    cJSON_AddStringToObject(j, "contentType", "application/gzip") &&
	    cJSON_AddStringToObject(j, "md5Hash", la->md5_b64) &&
	    cJSON_AddStringToObject(j, "crc32c", la->crc_b64) &&
	    (md = cJSON_AddObjectToObject(j, "metadata")) &&
	    cJSON_AddStringToObject(md, "message",
	                            la->message ? la->message : "") &&
	    cJSON_AddStringToObject(md, "omnifs-digest",
	                            la->digest ? la->digest : "") &&
	    cJSON_AddStringToObject(md, "omnifs-files", files))
		text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	return text;
}

/* After a 412 (the name exists): an earlier attempt of ours got through
 * when the stored bytes are ours. */
static int settle_existing(struct gcs_op *op, const char *name,
                           const struct local_archive *la)
{
	cJSON *obj;
	int rc = get_object(op, name, &obj);

	if (rc < 0)
		return rc;
	bool same = same_hashes(obj, la);
	cJSON_Delete(obj);
	if (!same)
		return omni_error_set(-EEXIST,
		                      "gcs: gs://%s/%s already exists "
		                      "with other content",
		                      op->gs->bucket, name);
	omni_log(OMNI_LOG_DEBUG,
	         "gcs: %s was already stored by an earlier "
	         "attempt",
	         name);
	return 0;
}

/* The object the upload answered with must hold our bytes. */
static int verify_stored(struct gcs_op *op, const char *name,
                         const struct omni_http_response *resp,
                         const struct local_archive *la)
{
	cJSON *obj =
	    cJSON_ParseWithLength(resp->body ? resp->body : "", resp->body_len);
	bool ok = obj && same_hashes(obj, la);

	cJSON_Delete(obj);
	if (ok)
		return 0;
	/* Never leave a damaged snapshot to be loaded later. */
	delete_object(op, name);
	return omni_error_set(-EIO,
	                      "gcs: gs://%s/%s was stored with other "
	                      "bytes than were sent (hash mismatch); it "
	                      "was deleted",
	                      op->gs->bucket, name);
}

static int upload_multipart(struct gcs_op *op, const char *name,
                            const struct local_archive *la)
{
	struct gcs_state *gs = op->gs;
	char bucket[512], url[URL_MAX], boundary[48], ctype[96];
	char *meta = metadata_json(name, la), *body = NULL;
	struct omni_http_response resp = { 0 };
	size_t len = 0;
	int rc;

	snprintf(boundary, sizeof(boundary), "omnifs-%08x%08x",
	         (unsigned)rand_r(&gs->seed), (unsigned)rand_r(&gs->seed));
	snprintf(ctype, sizeof(ctype), "multipart/related; boundary=%s",
	         boundary);
	if (!meta) {
		rc = omni_error_set(-ENOMEM, "gcs: out of memory");
		goto out;
	}
	size_t head_cap = strlen(meta) + 256;
	body = malloc(head_cap + (size_t)la->size + 128);
	if (!body) {
		rc = omni_error_set(-ENOMEM, "gcs: out of memory");
		goto out;
	}
	len =
	    (size_t)snprintf(body, head_cap,
	                     "--%s\r\nContent-Type: application/json; "
	                     "charset=UTF-8\r\n\r\n%s\r\n--%s\r\nContent-Type: "
	                     "application/gzip\r\n\r\n",
	                     boundary, meta, boundary);
	for (size_t done = 0; done < (size_t)la->size;) {
		ssize_t n = pread(la->fd, body + len + done,
		                  (size_t)la->size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = omni_error_set_errno(n < 0 ? -errno : -EIO,
			                          "gcs: reading the archive");
			goto out;
		}
		done += (size_t)n;
	}
	len += (size_t)la->size;
	len += (size_t)sprintf(body + len, "\r\n--%s--\r\n", boundary);
	if ((rc = escape(gs->bucket, bucket, sizeof(bucket))) < 0)
		goto out;
	snprintf(url, sizeof(url),
	         "%s/b/%s/o?uploadType=multipart&ifGenerationMatch=0",
	         gs->upload, bucket);
	struct gcs_req r = { .method = "POST",
		             .url = url,
		             .content_type = ctype,
		             .body = body,
		             .body_len = len,
		             .retry = true,
		             .low_speed_s = 60 };
	if ((rc = gcs_send(op, &r, &resp)) < 0)
		goto out;
	omni__progress_add(&op->progress, 0, la->size);
	if (resp.status == 412)
		rc = settle_existing(op, name, la);
	else if ((rc = check(&resp, "uploading", gs->bucket, name)) == 0)
		rc = verify_stored(op, name, &resp, la);
out:
	omni_http_response_finish(&resp);
	cJSON_free(meta);
	free(body);
	return rc;
}

struct session_headers {
	char location[URL_MAX];
	bool has_range;
	long long range_end;
};

static void session_header(const char *name, const char *value, void *payload)
{
	struct session_headers *h = payload;

	if (strcasecmp(name, "Location") == 0) {
		snprintf(h->location, sizeof(h->location), "%s", value);
	} else if (strcasecmp(name, "Range") == 0) {
		const char *dash = strchr(value, '-');
		if (dash) {
			h->has_range = true;
			h->range_end = strtoll(dash + 1, NULL, 10);
		}
	}
}

/* Start a resumable session; *status 412 means the name exists. */
static int session_start(struct gcs_op *op, const char *name,
                         const struct local_archive *la, char *session,
                         size_t size, long *status)
{
	struct gcs_state *gs = op->gs;
	char bucket[512], obj[3200], url[URL_MAX + 4000], len_hdr[64];
	struct session_headers h = { .range_end = -1 };
	struct omni_http_response resp;
	char *meta = metadata_json(name, la);
	int rc;

	*status = 0;
	if (!meta)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	if ((rc = escape(gs->bucket, bucket, sizeof(bucket))) < 0 ||
	    (rc = escape(name, obj, sizeof(obj))) < 0) {
		cJSON_free(meta);
		return rc;
	}
	snprintf(url, sizeof(url),
	         "%s/b/%s/o?uploadType=resumable&name=%s&ifGenerationMatch=0",
	         gs->upload, bucket, obj);
	snprintf(len_hdr, sizeof(len_hdr), "X-Upload-Content-Length: %lld",
	         la->size);
	struct gcs_req r = {
		.method = "POST",
		.url = url,
		.content_type = "application/json; charset=UTF-8",
		.body = meta,
		.body_len = strlen(meta),
		.headers = { "X-Upload-Content-Type: application/gzip", len_hdr,
		             NULL },
		.on_header = session_header,
		.payload = &h,
		.retry = true,
		.timeout_ms = 60000,
	};
	rc = gcs_send(op, &r, &resp);
	cJSON_free(meta);
	if (rc == 0) {
		*status = resp.status;
		if (resp.status != 412 &&
		    (rc = check(&resp, "starting the upload of", gs->bucket,
		                name)) == 0 &&
		    !h.location[0])
			rc = omni_error_set(-EPROTO,
			                    "gcs: the resumable upload of "
			                    "gs://%s/%s got no session "
			                    "(no Location)",
			                    gs->bucket, name);
	}
	omni_http_response_finish(&resp);
	if (rc == 0)
		snprintf(session, size, "%s", h.location);
	return rc;
}

static int upload_resumable(struct gcs_op *op, const char *name,
                            const struct local_archive *la)
{
	struct gcs_state *gs = op->gs;
	char session[URL_MAX], range[96], hash[128];
	char *buf = malloc(gs->chunk);
	unsigned int failures = 0, restarts = 0;
	long long off = 0, reported = 0;
	long status;
	int rc;

	if (!buf)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	snprintf(hash, sizeof(hash), "X-Goog-Hash: crc32c=%s,md5=%s",
	         la->crc_b64, la->md5_b64);
restart:
	if ((rc = session_start(op, name, la, session, sizeof(session),
	                        &status)) < 0)
		goto out;
	if (status == 412) {
		rc = settle_existing(op, name, la);
		goto out;
	}
	off = 0;
	for (bool query = false;;) {
		struct session_headers h = { .range_end = -1 };
		struct omni_http_response resp;
		size_t len = 0;

		if (query) {
			snprintf(range, sizeof(range),
			         "Content-Range: bytes */%lld", la->size);
		} else {
			long long left = la->size - off;
			len = left > (long long)gs->chunk ? gs->chunk
			                                  : (size_t)left;
			if (len && pread(la->fd, buf, len, (off_t)off) !=
			               (ssize_t)len) {
				rc = omni_error_set_errno(-EIO,
				                          "gcs: reading the "
				                          "archive");
				goto out;
			}
			if (len)
				snprintf(range, sizeof(range),
				         "Content-Range: bytes %lld-%lld/%lld",
				         off, off + (long long)len - 1,
				         la->size);
			else
				snprintf(range, sizeof(range),
				         "Content-Range: bytes */%lld",
				         la->size);
		}
		bool final = query || off + (long long)len == la->size;
		struct gcs_req r = {
			.method = "PUT",
			.url = session,
			.content_type = "application/gzip",
			.body = buf,
			.body_len = len,
			.headers = { range, final ? hash : NULL, NULL },
			.on_header = session_header,
			.payload = &h,
			.retry = false,
			.low_speed_s = 60,
		};
		rc = gcs_send(op, &r, &resp);
		query = false;
		if (rc == 0 && (resp.status == 200 || resp.status == 201)) {
			omni__progress_add(&op->progress, 0,
			                   la->size - reported);
			rc = verify_stored(op, name, &resp, la);
			omni_http_response_finish(&resp);
			goto out;
		}
		if (rc == 0 && resp.status == 308) {
			long long was = off;
			off = h.has_range ? h.range_end + 1 : 0;
			if (off > was || len == 0)
				failures = 0;
			if (off > reported) {
				omni__progress_add(&op->progress, 0,
				                   off - reported);
				reported = off;
			}
			omni_http_response_finish(&resp);
			continue;
		}
		if (rc == 0 && resp.status == 412) {
			omni_http_response_finish(&resp);
			rc = settle_existing(op, name, la);
			goto out;
		}
		if (rc == 0 && (resp.status == 404 || resp.status == 410) &&
		    restarts < 2) {
			/* The session is gone: start over. */
			omni_http_response_finish(&resp);
			restarts++;
			goto restart;
		}
		if (rc == 0 && !retryable_status(resp.status)) {
			rc = check(&resp, "uploading", gs->bucket, name);
			omni_http_response_finish(&resp);
			goto out;
		}
		/* A cut connection or a server error: wait, then ask the
		 * session how much it has, and go on from there. */
		omni_http_response_finish(&resp);
		if (++failures > gs->max_retries) {
			/* Named by the object: the session URL in curl's
			 * message is the upload's credential. */
			if (rc == 0)
				rc = omni_error_set(
				    omni_http_status_to_errno(resp.status),
				    "gcs: uploading gs://%s/%s: "
				    "HTTP %ld",
				    gs->bucket, name, resp.status);
			else
				rc = omni_error_set(
				    rc, "gcs: uploading gs://%s/%s: %s",
				    gs->bucket, name,
				    resp.error[0] ? resp.error : strerror(-rc));
			goto out;
		}
		omni_log(OMNI_LOG_DEBUG,
		         "gcs: upload of %s interrupted at %lld, "
		         "resuming",
		         name, off);
		omni_error_clear();
		backoff(gs, failures - 1);
		query = true;
	}
out:
	free(buf);
	return rc;
}

/* Upload one archive as <objprefix><id>.tar.gz. */
static int upload_archive(struct gcs_op *op, const char *path,
                          struct local_archive *la)
{
	char name[1200];
	int rc;

	snprintf(name, sizeof(name), "%s%s%s", op->objprefix, la->id, SUFFIX);
	la->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (la->fd < 0)
		return omni_error_set_errno(-errno, "gcs: %s", path);
	if ((rc = file_hashes(la->fd, la->md5, &la->crc, &la->size)) < 0)
		goto out;
	omni__base64_encode(la->md5, 16, false, la->md5_b64,
	                    sizeof(la->md5_b64));
	b64_crc(la->crc, la->crc_b64);
	snprintf(op->progress.what, sizeof(op->progress.what),
	         "uploading gs://%.40s/%.80s", op->gs->bucket, name);
	if ((size_t)la->size <= op->gs->threshold)
		rc = upload_multipart(op, name, la);
	else
		rc = upload_resumable(op, name, la);
out:
	close(la->fd);
	la->fd = -1;
	return rc;
}

/* --- pending archives
 * ------------------------------------------------------------ */

struct pending_meta {
	char *message;
	char digest[33];
	long long files;
};

static int read_pending_meta(const char *path, struct pending_meta *m)
{
	char *text = NULL;
	FILE *f = fopen(path, "re");

	memset(m, 0, sizeof(*m));
	if (f) {
		text = malloc(64 * 1024);
		size_t n = text ? fread(text, 1, 64 * 1024 - 1, f) : 0;
		fclose(f);
		if (text)
			text[n] = '\0';
	}
	cJSON *j = text ? cJSON_Parse(text) : NULL;
	free(text);
	const char *msg = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(j, "message"));
	m->message = strdup(msg ? msg : "snapshot");
	json_copy(j, "digest", m->digest, sizeof(m->digest));
	m->files = json_ll(j, "files");
	cJSON_Delete(j);
	return m->message ? 0 : omni_error_set(-ENOMEM, "gcs: out of memory");
}

static int write_pending_meta(const char *path, const char *message,
                              const char *digest, long long files)
{
	cJSON *j = cJSON_CreateObject();
	char *text = NULL;
	int rc;

	if (j && cJSON_AddStringToObject(j, "message", message) &&
	    cJSON_AddStringToObject(j, "digest", digest) &&
	    cJSON_AddNumberToObject(j, "files", (double)files))
		text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!text)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	rc = omni__host_write_file(path, text, strlen(text));
	cJSON_free(text);
	return rc;
}

static int pending_cmp(const void *a, const void *b)
{
	return strcmp(((const struct gcs_object *)a)->id,
	              ((const struct gcs_object *)b)->id);
}

/* The pending archives, oldest first. */
static int list_pending(struct gcs_op *op, struct gcs_objects *out)
{
	DIR *d = opendir(op->pending);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0
		                       : omni_error_set_errno(-errno, "gcs: %s",
		                                              op->pending);
	while ((de = readdir(d))) {
		char id[32], path[PATH_MAX], meta[PATH_MAX];
		size_t nl = strlen(de->d_name), sl = strlen(SUFFIX);
		struct pending_meta pm;

		if (nl <= sl || nl - sl >= sizeof(id) ||
		    strcmp(de->d_name + nl - sl, SUFFIX) != 0)
			continue;
		memcpy(id, de->d_name, nl - sl);
		id[nl - sl] = '\0';
		if (omni__snap_time(id) < 0)
			continue;
		if ((rc = path_join(path, op->pending, de->d_name)) < 0)
			break;
		snprintf(meta, sizeof(meta), "%.*s.json",
		         (int)(strlen(path) - sl), path);
		if ((rc = read_pending_meta(meta, &pm)) < 0)
			break;
		struct gcs_object *o = objects_add(out);
		if (!o || !(o->path = strdup(path))) {
			free(pm.message);
			rc = omni_error_set(-ENOMEM, "gcs: out of memory");
			break;
		}
		snprintf(o->id, sizeof(o->id), "%s", id);
		o->pending = true;
		o->message = pm.message;
		snprintf(o->digest, sizeof(o->digest), "%s", pm.digest);
		o->files = pm.files;
	}
	closedir(d);
	if (rc == 0 && out->count > 1)
		qsort(out->items, out->count, sizeof(*out->items), pending_cmp);
	return rc;
}

static void drop_pending(const struct gcs_object *p)
{
	char meta[PATH_MAX];
	size_t sl = strlen(SUFFIX);

	snprintf(meta, sizeof(meta), "%.*s.json", (int)(strlen(p->path) - sl),
	         p->path);
	unlink(p->path);
	unlink(meta);
}

/* --- downloads
 * ---------------------------------------------------------------------- */

struct download {
	struct gcs_op *op;
	int fd;
	struct omni__md5 md5;
	uint32_t crc;
	long long got;
	char hash_hdr[256];
};

static int download_data(const void *data, size_t len, void *payload)
{
	struct download *d = payload;
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(d->fd, (const char *)data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return omni_error_set_errno(-errno, "gcs: writing the "
			                                    "download");
		done += (size_t)n;
	}
	omni__md5_update(&d->md5, data, len);
	d->crc = omni__crc32c(d->crc, data, len);
	d->got += (long long)len;
	omni__progress_add(&d->op->progress, 0, (long long)len);
	return 0;
}

static void download_header(const char *name, const char *value, void *payload)
{
	struct download *d = payload;

	if (strcasecmp(name, "x-goog-hash") != 0)
		return;
	/* Several x-goog-hash lines may come; keep them all. */
	size_t have = strlen(d->hash_hdr);
	snprintf(d->hash_hdr + have, sizeof(d->hash_hdr) - have, "%s%s",
	         have ? "," : "", value);
}

static int download_rewind(void *payload)
{
	struct download *d = payload;

	omni__md5_finish(&d->md5);
	if (omni__md5_init(&d->md5) < 0)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	d->crc = 0;
	omni__progress_add(&d->op->progress, 0, -d->got);
	d->got = 0;
	d->hash_hdr[0] = '\0';
	if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0)
		return omni_error_set_errno(-errno,
		                            "gcs: rewinding the download");
	return 0;
}

/* "crc32c=AAA==,md5=BBB==" -> the value of key, or "". */
static void hash_value(const char *hdr, const char *key, char *out, size_t size)
{
	size_t kl = strlen(key);

	out[0] = '\0';
	for (const char *p = hdr; p && *p;) {
		while (*p == ' ' || *p == ',')
			p++;
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			const char *v = p + kl + 1;
			size_t n = strcspn(v, ",");
			snprintf(out, size, "%.*s", (int)n, v);
			return;
		}
		p = strchr(p, ',');
	}
}

/* Download obj into fd, checking its CRC-32C and MD5. */
static int download_object(struct gcs_op *op, const struct gcs_object *obj,
                           int fd)
{
	struct gcs_state *gs = op->gs;
	struct download d = { .op = op, .fd = fd };
	char url[URL_MAX + 4000], query[64];
	int rc;

	snprintf(query, sizeof(query), "alt=media&generation=%lld",
	         obj->generation);
	if ((rc = object_url(op, obj->name,
	                     obj->generation ? query : "alt=media", url,
	                     sizeof(url))) < 0)
		return rc;
	if (omni__md5_init(&d.md5) < 0)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	for (unsigned int attempt = 0;; attempt++) {
		struct omni_http_response resp;
		unsigned char md5[16];
		char md5_b64[32], crc_b64[16], want_md5[64], want_crc[32];

		if ((rc = download_rewind(&d)) < 0)
			break;
		struct gcs_req r = {
			.method = "GET",
			.url = url,
			.on_data = download_data,
			.on_header = download_header,
			.payload = &d,
			.rewind = download_rewind,
			.retry = true,
			.low_speed_s = 60,
		};
		rc = gcs_send(op, &r, &resp);
		if (rc == 0)
			rc = check(&resp, "downloading", gs->bucket, obj->name);
		omni_http_response_finish(&resp);
		if (rc < 0)
			break;
		omni__md5_final(&d.md5, md5);
		omni__base64_encode(md5, 16, false, md5_b64, sizeof(md5_b64));
		b64_crc(d.crc, crc_b64);
		hash_value(d.hash_hdr, "crc32c", want_crc, sizeof(want_crc));
		hash_value(d.hash_hdr, "md5", want_md5, sizeof(want_md5));
		if (!want_crc[0])
			snprintf(want_crc, sizeof(want_crc), "%s", obj->crc32c);
		if (!want_md5[0])
			snprintf(want_md5, sizeof(want_md5), "%s", obj->md5);
		bool crc_ok = !want_crc[0] || strcmp(want_crc, crc_b64) == 0;
		bool md5_ok = !want_md5[0] || strcmp(want_md5, md5_b64) == 0;
		bool size_ok = !obj->size || obj->size == d.got;
		if (crc_ok && md5_ok && size_ok && (want_crc[0] || want_md5[0]))
			break;
		if (!want_crc[0] && !want_md5[0] && size_ok) {
			omni_log(OMNI_LOG_DEBUG,
			         "gcs: %s came without hashes; "
			         "not checked",
			         obj->name);
			break;
		}
		rc = omni_error_set(
		    -EIO,
		    "gcs: the download of gs://%s/%s is corrupted "
		    "(crc32c %s, expected %s; md5 %s, expected "
		    "%s; %lld bytes)",
		    gs->bucket, obj->name, crc_b64, want_crc, md5_b64, want_md5,
		    d.got);
		if (attempt >= gs->max_retries)
			break;
		omni_log(OMNI_LOG_DEBUG, "%s; retrying", omni_error_last());
		omni_error_clear();
		backoff(gs, attempt);
	}
	omni__md5_finish(&d.md5);
	return rc;
}

/* --- the manager
 * -------------------------------------------------------------------- */

/* An archive file under home, opened for writing. */
static int temp_archive(struct gcs_op *op, const char *stem, char *path)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "%s-%ld.tmp", stem, (long)getpid());
	if (path_join(path, op->home, name) < 0)
		return -ENAMETOOLONG;
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return omni_error_set_errno(-errno, "gcs: creating %s", path);
	return fd;
}

/* Does the object of the last snapshot still exist? (Not sure: yes.) */
static bool last_still_stored(struct gcs_op *op)
{
	char name[1200];
	cJSON *obj;

	snprintf(name, sizeof(name), "%s%s%s", op->objprefix, op->last_id,
	         SUFFIX);
	int rc = get_object(op, name, &obj);
	cJSON_Delete(obj);
	if (rc == -ENOENT)
		return false;
	omni_error_clear();
	return true;
}

static int gcs_save(struct omni_state *st, struct omni_backend *b,
                    const char *message, char **id_out)
{
	struct gcs_state *gs = gcs_of(st);
	struct gcs_objects pend = { 0 };
	struct omni__tar_info info;
	struct gcs_op op;
	char tmp[PATH_MAX] = "", id[32] = "", uploaded[32] = "";
	int rc, fd = -1;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b)) < 0)
		goto unlock;
	omni__progress_start(&op.progress, b->opts.progress,
	                     "saving snapshot to gcs");
	if ((fd = temp_archive(&op, "new", tmp)) < 0) {
		rc = fd;
		goto out;
	}
	rc = omni__tar_write(b, 0, fd, &op.progress, &info);
	close(fd);
	if (rc < 0 || (rc = list_pending(&op, &pend)) < 0)
		goto out;
	bool unchanged =
	    op.last_digest[0] && strcmp(op.last_digest, info.digest) == 0;
	if (unchanged && pend.count == 0 && !last_still_stored(&op))
		unchanged = false;
	if (unchanged) {
		unlink(tmp);
	} else {
		char path[PATH_MAX], meta[PATH_MAX], prev[32], file[64];
		const char *newest = op.last_id;
		if (pend.count &&
		    strcmp(pend.items[pend.count - 1].id, newest) > 0)
			newest = pend.items[pend.count - 1].id;
		snprintf(prev, sizeof(prev), "%s", newest);
		omni__snap_timestamp(id, prev[0] ? prev : NULL);
		snprintf(file, sizeof(file), "%s.json", id);
		if ((rc = path_join(meta, op.pending, file)) < 0)
			goto out;
		snprintf(file, sizeof(file), "%s%s", id, SUFFIX);
		if ((rc = path_join(path, op.pending, file)) < 0)
			goto out;
		if ((rc = write_pending_meta(meta, message, info.digest,
		                             info.files)) < 0)
			goto out;
		if (rename(tmp, path) < 0) {
			rc = omni_error_set_errno(-errno, "gcs: keeping %s",
			                          path);
			unlink(meta);
			goto out;
		}
		tmp[0] = '\0';
		if ((rc = write_last(&op, id, info.digest)) < 0)
			goto out;
		struct gcs_object *o = objects_add(&pend);
		if (!o || !(o->path = strdup(path)) ||
		    !(o->message = strdup(message))) {
			rc = omni_error_set(-ENOMEM, "gcs: out of memory");
			goto out;
		}
		o->pending = true;
		snprintf(o->id, sizeof(o->id), "%s", id);
		snprintf(o->digest, sizeof(o->digest), "%s", info.digest);
		o->files = info.files;
	}
	long long files = op.progress.files;
	op.progress.bytes = 0;
	for (size_t i = 0; i < pend.count; i++) {
		const struct gcs_object *p = &pend.items[i];
		struct local_archive la = { .id = p->id,
			                    .fd = -1,
			                    .message = p->message,
			                    .digest = p->digest,
			                    .files = p->files };
		if ((rc = upload_archive(&op, p->path, &la)) < 0) {
			rc =
			    omni_error_set(rc,
			                   "%s; the snapshot is kept in %s and "
			                   "will be uploaded by the next save",
			                   omni_error_last(), p->path);
			goto out;
		}
		drop_pending(p);
		snprintf(uploaded, sizeof(uploaded), "%s", p->id);
	}
	op.progress.files = files;
	const char *result = id[0] ? id : uploaded[0] ? uploaded : NULL;
	if (id_out && result && !(*id_out = strdup(result)))
		rc = omni_error_set(-ENOMEM, "gcs: out of memory");
	if (result)
		omni__progress_done(&op.progress,
		                    "saved snapshot %s to gs://%s/%s", result,
		                    gs->bucket, op.objprefix);
	else
		omni__progress_done(&op.progress,
		                    "nothing changed since "
		                    "snapshot %s",
		                    op.last_id);
out:
	omni__progress_done(&op.progress, NULL);
	if (tmp[0])
		unlink(tmp);
	objects_finish(&pend);
	op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

/* Keep the newest KEEP_BACKUPS archives in backups/. */
static void prune_backups(struct gcs_op *op)
{
	struct dirent **list;
	int n = scandir(op->backups, &list, NULL, alphasort);
	int kept = 0;

	for (int i = n - 1; i >= 0; i--) {
		const char *name = list[i]->d_name;
		if (name[0] != '.' && strstr(name, SUFFIX) &&
		    ++kept > KEEP_BACKUPS) {
			char path[PATH_MAX];
			if (path_join(path, op->backups, name) == 0)
				unlink(path);
		}
		free(list[i]);
	}
	if (n >= 0)
		free(list);
}

/* Archive the workspace under backups/ before a load replaces it; *same
 * when it already holds exactly the snapshot (digest). */
static int backup_workspace(struct gcs_op *op, const char *digest, bool *same)
{
	char stamp[32], name[64], path[PATH_MAX], tmp[PATH_MAX];
	struct omni__tar_info info;
	int fd, rc;

	*same = false;
	if ((rc = omni__host_mkdir_p(op->backups, 0700)) < 0)
		return rc;
	if ((fd = temp_archive(op, "backup", tmp)) < 0)
		return fd;
	rc = omni__tar_write(op->b, 0, fd, NULL, &info);
	close(fd);
	if (rc == 0 && strcmp(info.digest, digest) == 0) {
		*same = true;
	} else if (rc == 0) {
		omni__snap_timestamp(stamp, NULL);
		snprintf(name, sizeof(name), "%s%s", stamp, SUFFIX);
		if ((rc = path_join(path, op->backups, name)) == 0 &&
		    rename(tmp, path) < 0)
			rc = omni_error_set_errno(-errno, "gcs: keeping %s",
			                          path);
		if (rc == 0) {
			omni_log(OMNI_LOG_DEBUG,
			         "gcs: the workspace was kept in %s", path);
			prune_backups(op);
		}
	}
	unlink(tmp);
	return rc;
}

static int gcs_load(struct omni_state *st, struct omni_backend *b)
{
	struct gcs_state *gs = gcs_of(st);
	struct gcs_objects remote = { 0 }, pend = { 0 };
	struct omni__tar_info info;
	struct omni__apply a;
	struct gcs_op op;
	char dl[PATH_MAX] = "", what[1400];
	bool applying = false, same = false;
	int rc, fd = -1;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b)) < 0)
		goto unlock;
	if ((rc = list_remote(&op, &remote)) < 0 ||
	    (rc = list_pending(&op, &pend)) < 0)
		goto out;
	const struct gcs_object *newest = NULL;
	for (size_t i = 0; i < remote.count; i++)
		if (!newest || strcmp(remote.items[i].id, newest->id) > 0)
			newest = &remote.items[i];
	if (pend.count &&
	    (!newest || strcmp(pend.items[pend.count - 1].id, newest->id) > 0))
		newest = &pend.items[pend.count - 1];
	if (!newest) {
		omni_log(OMNI_LOG_DEBUG,
		         "gcs: no snapshot under gs://%s/%s yet", gs->bucket,
		         op.objprefix);
		rc = 0;
		goto out;
	}
	if ((rc = omni__apply_begin(&a, b, 0, &op.progress)) < 0)
		goto out;
	applying = true;
	if (strcmp(newest->id, op.last_id) == 0 &&
	    !omni__apply_workspace_empty(&a)) {
		/* This data folder saved or loaded that snapshot, and its
		 * workspace has been here since: it is at least as new. */
		rc = 1;
		goto out;
	}
	omni__progress_start(&op.progress, b->opts.progress,
	                     "downloading snapshot %s", newest->id);
	if (newest->pending) {
		snprintf(what, sizeof(what), "%s", newest->path);
		fd = open(newest->path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			rc = omni_error_set_errno(-errno, "gcs: %s",
			                          newest->path);
			goto out;
		}
	} else {
		snprintf(what, sizeof(what), "gs://%s/%s", gs->bucket,
		         newest->name);
		if ((fd = temp_archive(&op, "download", dl)) < 0) {
			rc = fd;
			goto out;
		}
		if ((rc = download_object(&op, newest, fd)) < 0)
			goto out;
	}
	/* Everything is read and checked before the workspace is touched. */
	if ((rc = omni__tar_check(fd, what, &info)) < 0)
		goto out;
	if (!omni__apply_workspace_empty(&a) &&
	    (rc = backup_workspace(&op, info.digest, &same)) < 0)
		goto out;
	if (!same) {
		op.progress.files = op.progress.bytes = 0;
		snprintf(op.progress.what, sizeof(op.progress.what),
		         "loading snapshot %s", newest->id);
		if ((rc = omni__tar_apply(&a, fd, what)) < 0 ||
		    (rc = omni__apply_finish(&a)) < 0)
			goto out;
		omni__progress_done(&op.progress, "loaded snapshot %s from %s",
		                    newest->id, what);
	}
	if ((rc = write_last(&op, newest->id, info.digest)) < 0)
		goto out;
	rc = 1;
out:
	omni__progress_done(&op.progress, NULL);
	if (fd >= 0)
		close(fd);
	if (dl[0])
		unlink(dl);
	if (applying)
		omni__apply_cleanup(&a);
	objects_finish(&remote);
	objects_finish(&pend);
	op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static int gcs_list(struct omni_state *st, struct omni_backend *b,
                    struct omni_snapshot_list *out)
{
	struct gcs_state *gs = gcs_of(st);
	struct gcs_objects all = { 0 };
	struct gcs_op op;
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b)) < 0)
		goto unlock;
	if ((rc = list_remote(&op, &all)) < 0 ||
	    (rc = list_pending(&op, &all)) < 0)
		goto out;
	if (all.count > 1)
		qsort(all.items, all.count, sizeof(*all.items),
		      object_cmp_desc);
	out->items = calloc(all.count + 1, sizeof(*out->items));
	if (!out->items) {
		rc = omni_error_set(-ENOMEM, "gcs: out of memory");
		goto out;
	}
	for (size_t i = 0; i < all.count; i++) {
		const struct gcs_object *o = &all.items[i];
		struct omni_snapshot *s = &out->items[out->count];
		char msg[1024];

		/* An upload that got through but whose local copy remained
		 * is listed once. */
		if (out->count &&
		    strcmp(out->items[out->count - 1].id, o->id) == 0)
			continue;
		long long t = omni__snap_time(o->id);
		s->time = t >= 0 ? t : o->created;
		if (o->message && o->message[0])
			snprintf(msg, sizeof(msg), "%s%s", o->message,
			         o->pending ? " (not uploaded yet)" : "");
		else
			snprintf(msg, sizeof(msg), "Snapshot %s%s", o->id,
			         o->pending ? " (not uploaded yet)" : "");
		s->id = strdup(o->id);
		s->message = strdup(msg);
		if (!s->id || !s->message) {
			free(s->id);
			free(s->message);
			rc = omni_error_set(-ENOMEM, "gcs: out of memory");
			goto out;
		}
		out->count++;
	}
out:
	if (rc < 0)
		omni_snapshot_list_finish(out);
	objects_finish(&all);
	op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static int gcs_cleanup(struct omni_state *st, struct omni_backend *b)
{
	struct gcs_state *gs = gcs_of(st);
	struct gcs_objects remote = { 0 };
	struct gcs_op op;
	int rc;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b)) < 0)
		goto unlock;
	if ((rc = list_remote(&op, &remote)) < 0)
		goto out;
	for (size_t i = 0; i < remote.count && rc == 0; i++)
		rc = delete_object(&op, remote.items[i].name);
	if (rc == 0)
		rc = omni__host_remove_tree(op.home);
	omni_log(OMNI_LOG_DEBUG, "gcs: deleted %zu snapshots under gs://%s/%s",
	         remote.count, gs->bucket, op.objprefix);
out:
	objects_finish(&remote);
	op_end(&op);
unlock:
	pthread_mutex_unlock(&gs->mutex);
	return rc;
}

static void gcs_destroy(struct omni_state *st)
{
	struct gcs_state *gs = gcs_of(st);

	pthread_mutex_destroy(&gs->mutex);
	omni__gcs_auth_finish(&gs->auth);
	free(gs->bucket);
	free(gs->prefix);
	free(gs->state_dir);
	free(gs);
}

static const struct omni_state_ops gcs_ops = {
	.version = OMNI_STATE_OPS_VERSION,
	.name = "gcs",
	.load = gcs_load,
	.save = gcs_save,
	.list = gcs_list,
	.cleanup = gcs_cleanup,
	.destroy = gcs_destroy,
};

static const char *first_env(const char *const *names)
{
	for (; *names; names++) {
		const char *v = getenv(*names);
		if (v && *v)
			return v;
	}
	return NULL;
}

/* Bucket names: 3-222 of a-z 0-9 - _ . (GCS's rules, loosely). */
static bool bucket_ok(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 222)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* Work out the API base and whether to authenticate. */
static int set_endpoint(struct gcs_state *gs, const char *opt, bool *anonymous)
{
	const char *base =
	    opt && *opt ? opt : getenv("OMNIAGENTS_GCS_ENDPOINT");
	const char *emu = getenv("STORAGE_EMULATOR_HOST");
	char url[1024];

	*anonymous = false;
	if (!base || !*base) {
		if (emu && *emu) {
			base = emu;
			*anonymous = true;
		} else {
			base = "https://storage.googleapis.com";
		}
	}
	int n = snprintf(url, sizeof(url), "%s%s",
	                 strstr(base, "://") ? "" : "http://", base);
	if (n < 0 || (size_t)n >= sizeof(url))
		return omni_error_set(-EINVAL, "gcs state: endpoint too long");
	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
	snprintf(gs->api, sizeof(gs->api), "%s/storage/v1", url);
	snprintf(gs->upload, sizeof(gs->upload), "%s/upload/storage/v1", url);
	gs->ep.connect_timeout_ms = 15000;
	return 0;
}

int omni_state_gcs(struct omni_state **out,
                   const struct omni_state_gcs_options *opts)
{
	static const char *const bucket_vars[] = { "OMNIAGENTS_GCS_BUCKET",
		                                   "OMNIAGENTS_BUCKET_NAME",
		                                   "BUCKET_OMNIAGENTS", NULL };
	static const char *const prefix_vars[] = { "OMNIAGENTS_GCS_PREFIX",
		                                   NULL };
	struct omni_state_gcs_options defaults = OMNI_STATE_GCS_OPTIONS_INIT;
	bool anonymous;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	if (opts->version < 1 || opts->version > OMNI_STATE_GCS_OPTIONS_VERSION)
		return omni_error_set(-EINVAL,
		                      "gcs state: options version %u "
		                      "unknown",
		                      opts->version);
	const char *bucket = opts->bucket && *opts->bucket
	                         ? opts->bucket
	                         : first_env(bucket_vars);
	if (!bucket)
		return omni_error_set(-EINVAL,
		                      "gcs state: no bucket: set "
		                      "OMNIAGENTS_GCS_BUCKET or use --state "
		                      "gcs://BUCKET[/PREFIX]");
	if (!bucket_ok(bucket))
		return omni_error_set(-EINVAL,
		                      "gcs state: '%s' is not a bucket "
		                      "name",
		                      bucket);
	const char *prefix =
	    opts->prefix ? opts->prefix : first_env(prefix_vars);
	if (!prefix)
		prefix = "";
	while (*prefix == '/')
		prefix++;
	struct gcs_state *gs = calloc(1, sizeof(*gs));
	if (!gs)
		return omni_error_set(-ENOMEM, "gcs state: out of memory");
	gs->base.ops = &gcs_ops;
	pthread_mutex_init(&gs->mutex, NULL);
	gs->bucket = strdup(bucket);
	gs->prefix = strdup(prefix);
	gs->state_dir = opts->state_dir ? strdup(opts->state_dir) : NULL;
	if (!gs->bucket || !gs->prefix || (opts->state_dir && !gs->state_dir)) {
		omni__gcs_auth_init(&gs->auth, true);
		gcs_destroy(&gs->base);
		return omni_error_set(-ENOMEM, "gcs state: out of memory");
	}
	size_t pl = strlen(gs->prefix);
	while (pl && gs->prefix[pl - 1] == '/')
		gs->prefix[--pl] = '\0';
	if ((rc = set_endpoint(gs, opts->endpoint, &anonymous)) < 0) {
		omni__gcs_auth_init(&gs->auth, true);
		gcs_destroy(&gs->base);
		return rc;
	}
	omni__gcs_auth_init(&gs->auth, anonymous);
	gs->max_retries = opts->max_retries ? opts->max_retries : 5;
	gs->retry_base_ms = opts->retry_base_ms ? opts->retry_base_ms : 1000;
	gs->threshold = opts->resumable_threshold ? opts->resumable_threshold
	                                          : DEFAULT_THRESHOLD;
	size_t chunk = opts->chunk_size ? opts->chunk_size : DEFAULT_CHUNK;
	gs->chunk = (chunk + CHUNK_QUANTUM - 1) / CHUNK_QUANTUM * CHUNK_QUANTUM;
	gs->seed = (unsigned int)time(NULL) ^ (unsigned int)getpid();
	*out = &gs->base;
	return 0;
}
