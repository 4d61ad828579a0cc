/*
 * backends/state/gcs_objects.c - the gcs state manager's requests and
 * objects: every request with its retries and credentials, listing a
 * project's snapshot objects (all pages), an object's metadata, deleting,
 * and downloads checked against their CRC-32C and MD5 (see the head of
 * state_gcs.c for the design, gcs.h for the shared structures).
 *
 * Requests go through http.c, one curl handle each; a request is repeated
 * on 408, 429, 5xx and transport failures when it is safe to repeat, with
 * a backoff of retry_base_ms * 2^n plus jitter (capped at 32 s), and once
 * after a 401 with a fresh token. A download is written into a file and
 * rewound before a repeat; a corrupted one is fetched again, then -EIO.
 *
 * Locking: called with the manager's mutex held (state_gcs.c).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/hash.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/gcs.h"
#include "state/snapshot.h"

#define MAX_BACKOFF_MS 32000

/* --- small helpers
 * -------------------------------------------------------------- */

void omni__gcs_objects_finish(struct gcs_objects *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].name);
		free(l->items[i].message);
		free(l->items[i].path);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

struct gcs_object *omni__gcs_objects_add(struct gcs_objects *l)
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

/* The id of an object name "<objprefix><YYYYmmdd_HHMMSS_ffffff>.tar.gz"
 * (the manager's own pattern), or false: any other object under the
 * prefix is not a snapshot, whatever it holds or however it sorts. */
static bool id_of(const char *objprefix, const char *name, char id[32])
{
	size_t pl = strlen(objprefix), nl = strlen(name),
	       sl = strlen(OMNI__GCS_SUFFIX);

	if (strncmp(name, objprefix, pl) != 0 || nl != pl + 22 + sl ||
	    strcmp(name + nl - sl, OMNI__GCS_SUFFIX) != 0)
		return false;
	memcpy(id, name + pl, 22);
	id[22] = '\0';
	return omni__snap_time(id) >= 0;
}

int omni__gcs_escape(const char *s, char *out, size_t size)
{
	return omni__http_escape(s, out, size);
}

long long omni__gcs_json_ll(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

	if (cJSON_IsString(v))
		return strtoll(v->valuestring, NULL, 10);
	if (cJSON_IsNumber(v))
		return (long long)v->valuedouble;
	return 0;
}

void omni__gcs_json_copy(const cJSON *j, const char *name, char *out,
                         size_t size)
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

void omni__gcs_b64_crc(uint32_t crc, char out[16])
{
	unsigned char be[4] = { (unsigned char)(crc >> 24),
		                (unsigned char)(crc >> 16),
		                (unsigned char)(crc >> 8), (unsigned char)crc };

	omni__base64_encode(be, 4, false, out, 16);
}

int omni__gcs_path_join(char *out, const char *dir, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", dir, name);

	if (n < 0 || n >= PATH_MAX)
		return omni_error_set(-ENAMETOOLONG, "gcs: path too long");
	return 0;
}

/* --- requests with retries
 * ------------------------------------------------------- */

void omni__gcs_backoff(struct gcs_state *gs, unsigned int attempt)
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

bool omni__gcs_retryable_status(long status)
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
int omni__gcs_send(struct gcs_op *op, const struct gcs_req *r,
                   struct omni__http_response *resp)
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
		struct omni__http_request req = {
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
		omni__http_response_finish(resp);
		rc = omni__http_request(&gs->ep, &req, resp);
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
			again = r->retry &&
			        omni__gcs_retryable_status(resp->status);
		}
		if (!again || attempt >= gs->max_retries)
			return rc;
		/* Without the query: a resumable session's URL is the
		 * upload's credential. */
		omni_log(OMNI_LOG_DEBUG, "gcs: %s %.*s: %s, retrying",
		         r->method, (int)strcspn(r->url, "?"), r->url,
		         rc < 0 ? resp->error : "server error");
		omni_error_clear();
		omni__gcs_backoff(gs, attempt);
		if (r->rewind && (rc = r->rewind(r->payload)) < 0)
			return rc;
	}
}

/* Check a reply: 2xx is 0, anything else -errno with the server's text. */
int omni__gcs_check(const struct omni__http_response *resp, const char *what,
                    const char *bucket, const char *name)
{
	return omni__http_check(resp, "gcs: %s gs://%s/%s", what, bucket, name);
}

/* --- list, metadata, delete
 * ---------------------------------------------------- */

static int parse_object(const cJSON *it, const char *objprefix,
                        struct gcs_objects *out)
{
	const char *name =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "name"));
	char id[32];

	if (!name)
		return 0;
	if (!id_of(objprefix, name, id)) {
		omni_log(OMNI_LOG_WARN,
		         "gcs: ignoring %s: not a snapshot name "
		         "(<prefix>/<project>/YYYYmmdd_HHMMSS_ffffff%s)",
		         name, OMNI__GCS_SUFFIX);
		return 0;
	}
	struct gcs_object *o = omni__gcs_objects_add(out);
	if (!o || !(o->name = strdup(name)))
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	snprintf(o->id, sizeof(o->id), "%s", id);
	o->generation = omni__gcs_json_ll(it, "generation");
	o->size = omni__gcs_json_ll(it, "size");
	omni__gcs_json_copy(it, "md5Hash", o->md5, sizeof(o->md5));
	omni__gcs_json_copy(it, "crc32c", o->crc32c, sizeof(o->crc32c));
	o->created = rfc3339(cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(it, "timeCreated")));
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(it, "metadata");
	const char *msg = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(md, "message"));
	omni__gcs_json_copy(md, "omnifs-digest", o->digest, sizeof(o->digest));
	if (msg && !(o->message = strdup(msg)))
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	return 0;
}

/* Every snapshot object of the project, all pages. */
int omni__gcs_list_remote(struct gcs_op *op, struct gcs_objects *out)
{
	struct gcs_state *gs = op->gs;
	char bucket[512], prefix[3200], token[2048] = "", etoken[6200];
	char url[OMNI__GCS_URL_MAX + 8000];
	int rc;

	if ((rc = omni__gcs_escape(gs->bucket, bucket, sizeof(bucket))) < 0 ||
	    (rc = omni__gcs_escape(op->objprefix, prefix, sizeof(prefix))) < 0)
		return rc;
	for (;;) {
		struct omni__http_response resp;
		if ((rc = omni__gcs_escape(token, etoken, sizeof(etoken))) < 0)
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
		if ((rc = omni__gcs_send(op, &r, &resp)) == 0)
			rc = omni__gcs_check(&resp, "listing", gs->bucket,
			                     op->objprefix);
		if (rc < 0) {
			omni__http_response_finish(&resp);
			return rc;
		}
		cJSON *j = cJSON_ParseWithLength(resp.body ? resp.body : "",
		                                 resp.body_len);
		omni__http_response_finish(&resp);
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
		omni__gcs_json_copy(j, "nextPageToken", token, sizeof(token));
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

	if ((rc = omni__gcs_escape(op->gs->bucket, bucket, sizeof(bucket))) <
	        0 ||
	    (rc = omni__gcs_escape(name, obj, sizeof(obj))) < 0)
		return rc;
	int n = snprintf(url, size, "%s/b/%s/o/%s%s%s", op->gs->api, bucket,
	                 obj, query ? "?" : "", query ? query : "");
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-ENAMETOOLONG, "gcs: URL too long");
	return 0;
}

/* The object resource of name; -ENOENT when it does not exist. */
int omni__gcs_get_object(struct gcs_op *op, const char *name, cJSON **out)
{
	char url[OMNI__GCS_URL_MAX + 4000];
	struct omni__http_response resp;
	int rc;

	*out = NULL;
	if ((rc = object_url(op, name, NULL, url, sizeof(url))) < 0)
		return rc;
	struct gcs_req r = {
		.method = "GET", .url = url, .retry = true, .timeout_ms = 60000
	};
	if ((rc = omni__gcs_send(op, &r, &resp)) == 0 &&
	    (rc = omni__gcs_check(&resp, "reading", op->gs->bucket, name)) ==
	        0) {
		*out = cJSON_ParseWithLength(resp.body ? resp.body : "",
		                             resp.body_len);
		if (!*out)
			rc = omni_error_set(-EPROTO,
			                    "gcs: gs://%s/%s: the reply is "
			                    "not JSON",
			                    op->gs->bucket, name);
	}
	omni__http_response_finish(&resp);
	return rc;
}

int omni__gcs_delete_object(struct gcs_op *op, const char *name)
{
	char url[OMNI__GCS_URL_MAX + 4000];
	struct omni__http_response resp;
	int rc;

	if ((rc = object_url(op, name, NULL, url, sizeof(url))) < 0)
		return rc;
	struct gcs_req r = { .method = "DELETE",
		             .url = url,
		             .retry = true,
		             .timeout_ms = 60000 };
	if ((rc = omni__gcs_send(op, &r, &resp)) == 0 && resp.status != 404)
		rc = omni__gcs_check(&resp, "deleting", op->gs->bucket, name);
	omni__http_response_finish(&resp);
	return rc;
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
int omni__gcs_download_object(struct gcs_op *op, const struct gcs_object *obj,
                              int fd)
{
	struct gcs_state *gs = op->gs;
	struct download d = { .op = op, .fd = fd };
	char url[OMNI__GCS_URL_MAX + 4000], query[64];
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
		struct omni__http_response resp;
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
		rc = omni__gcs_send(op, &r, &resp);
		if (rc == 0)
			rc = omni__gcs_check(&resp, "downloading", gs->bucket,
			                     obj->name);
		omni__http_response_finish(&resp);
		if (rc < 0)
			break;
		omni__md5_final(&d.md5, md5);
		omni__base64_encode(md5, 16, false, md5_b64, sizeof(md5_b64));
		omni__gcs_b64_crc(d.crc, crc_b64);
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
		omni__gcs_backoff(gs, attempt);
	}
	omni__md5_finish(&d.md5);
	return rc;
}
