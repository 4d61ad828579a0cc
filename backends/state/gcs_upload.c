/*
 * backends/state/gcs_upload.c - the gcs state manager's uploads and its
 * pending archives (see the head of state_gcs.c for the design, gcs.h for
 * the shared structures).
 *
 * An archive waits under <home>/pending/<id>.tar.gz, with its message,
 * digest and entry count in <id>.json, until it is uploaded; then both
 * are deleted. Every upload carries ifGenerationMatch=0, so a repeat can
 * never overwrite: a 412 is settled by comparing the stored object's
 * hashes with ours. Archives up to the threshold go in one multipart
 * request (metadata + data); larger ones in a resumable session, chunk by
 * chunk, asking the session how much arrived after a failure and going on
 * from there (a session gone with 404/410 is started again, twice at
 * most). The object the upload answers with must carry our MD5 and
 * CRC-32C, or it is deleted and the upload fails.
 *
 * Locking: called with the manager's mutex held (state_gcs.c).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/hash.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/gcs.h"
#include "state/snapshot.h"

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

/* --- uploads
 * ---------------------------------------------------------------------- */

/* Does the stored object hold exactly our bytes? */
static bool same_hashes(const cJSON *obj, const struct local_archive *la)
{
	char md5[32], crc[16];

	omni__gcs_json_copy(obj, "md5Hash", md5, sizeof(md5));
	omni__gcs_json_copy(obj, "crc32c", crc, sizeof(crc));
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
	int rc = omni__gcs_get_object(op, name, &obj);

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
                         const struct omni__http_response *resp,
                         const struct local_archive *la)
{
	cJSON *obj =
	    cJSON_ParseWithLength(resp->body ? resp->body : "", resp->body_len);
	bool ok = obj && same_hashes(obj, la);

	cJSON_Delete(obj);
	if (ok)
		return 0;
	/* Never leave a damaged snapshot to be loaded later. */
	omni__gcs_delete_object(op, name);
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
	char bucket[512], url[OMNI__GCS_URL_MAX], boundary[48], ctype[96];
	char *meta = metadata_json(name, la), *body = NULL;
	struct omni__http_response resp = { 0 };
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
	/* 128 bytes were kept for the closing boundary (6 + its 23). */
	len += (size_t)snprintf(body + len, 128, "\r\n--%s--\r\n", boundary);
	if ((rc = omni__gcs_escape(gs->bucket, bucket, sizeof(bucket))) < 0)
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
	if ((rc = omni__gcs_send(op, &r, &resp)) < 0)
		goto out;
	omni__progress_add(&op->progress, 0, la->size);
	if (resp.status == 412)
		rc = settle_existing(op, name, la);
	else if ((rc = omni__gcs_check(&resp, "uploading", gs->bucket, name)) ==
	         0)
		rc = verify_stored(op, name, &resp, la);
out:
	omni__http_response_finish(&resp);
	cJSON_free(meta);
	free(body);
	return rc;
}

struct session_headers {
	char location[OMNI__GCS_URL_MAX];
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
	char bucket[512], obj[3200], url[OMNI__GCS_URL_MAX + 4000], len_hdr[64];
	struct session_headers h = { .range_end = -1 };
	struct omni__http_response resp;
	char *meta = metadata_json(name, la);
	int rc;

	*status = 0;
	if (!meta)
		return omni_error_set(-ENOMEM, "gcs: out of memory");
	if ((rc = omni__gcs_escape(gs->bucket, bucket, sizeof(bucket))) < 0 ||
	    (rc = omni__gcs_escape(name, obj, sizeof(obj))) < 0) {
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
	rc = omni__gcs_send(op, &r, &resp);
	cJSON_free(meta);
	if (rc == 0) {
		*status = resp.status;
		if (resp.status != 412 &&
		    (rc = omni__gcs_check(&resp, "starting the upload of",
		                          gs->bucket, name)) == 0 &&
		    !h.location[0])
			rc = omni_error_set(-EPROTO,
			                    "gcs: the resumable upload of "
			                    "gs://%s/%s got no session "
			                    "(no Location)",
			                    gs->bucket, name);
	}
	omni__http_response_finish(&resp);
	if (rc == 0)
		snprintf(session, size, "%s", h.location);
	return rc;
}

/*
 * The next PUT of a resumable upload from off: the chunk read into buf
 * (*len bytes) and its Content-Range, or, for a query (or nothing left to
 * send), "bytes STAR/size" to ask the session how much it has.
 */
static int next_chunk(struct gcs_op *op, const struct local_archive *la,
                      long long off, bool query, char *buf, size_t *len,
                      char *range, size_t size)
{
	*len = 0;
	if (query) {
		snprintf(range, size, "Content-Range: bytes */%lld", la->size);
		return 0;
	}
	long long left = la->size - off;
	*len = left > (long long)op->gs->chunk ? op->gs->chunk : (size_t)left;
	if (*len && pread(la->fd, buf, *len, (off_t)off) != (ssize_t)*len)
		return omni_error_set_errno(-EIO, "gcs: reading the "
		                                  "archive");
	if (*len)
		snprintf(range, size, "Content-Range: bytes %lld-%lld/%lld",
		         off, off + (long long)*len - 1, la->size);
	else
		snprintf(range, size, "Content-Range: bytes */%lld", la->size);
	return 0;
}

/* The error of a resumable upload that failed too often (rc, or the last
 * reply's status). Named by the object: the session URL in curl's
 * message is the upload's credential. */
static int upload_failed(struct gcs_op *op, const char *name, int rc,
                         const struct omni__http_response *resp)
{
	if (rc == 0)
		return omni_error_set(omni__http_status_to_errno(resp->status),
		                      "gcs: uploading gs://%s/%s: "
		                      "HTTP %ld",
		                      op->gs->bucket, name, resp->status);
	return omni_error_set(rc, "gcs: uploading gs://%s/%s: %s",
	                      op->gs->bucket, name,
	                      resp->error[0] ? resp->error : strerror(-rc));
}

/*
 * After a 308 to a PUT of len bytes from was: the session holds the bytes
 * up to its Range, so the upload goes on from there. Progress (or the
 * answer to a query) clears the failures.
 */
static long long resume_point(struct gcs_op *op,
                              const struct session_headers *h, long long was,
                              size_t len, unsigned int *failures,
                              long long *reported)
{
	long long off = h->has_range ? h->range_end + 1 : 0;

	if (off > was || len == 0)
		*failures = 0;
	if (off > *reported) {
		omni__progress_add(&op->progress, 0, off - *reported);
		*reported = off;
	}
	return off;
}

static int upload_resumable(struct gcs_op *op, const char *name,
                            const struct local_archive *la)
{
	struct gcs_state *gs = op->gs;
	char session[OMNI__GCS_URL_MAX], range[96], hash[128];
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
		struct omni__http_response resp;
		size_t len = 0;

		if ((rc = next_chunk(op, la, off, query, buf, &len, range,
		                     sizeof(range))) < 0)
			goto out;
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
		rc = omni__gcs_send(op, &r, &resp);
		query = false;
		if (rc == 0 && (resp.status == 200 || resp.status == 201)) {
			omni__progress_add(&op->progress, 0,
			                   la->size - reported);
			rc = verify_stored(op, name, &resp, la);
			omni__http_response_finish(&resp);
			goto out;
		}
		if (rc == 0 && resp.status == 308) {
			off = resume_point(op, &h, off, len, &failures,
			                   &reported);
			omni__http_response_finish(&resp);
			continue;
		}
		if (rc == 0 && resp.status == 412) {
			omni__http_response_finish(&resp);
			rc = settle_existing(op, name, la);
			goto out;
		}
		if (rc == 0 && (resp.status == 404 || resp.status == 410) &&
		    restarts < 2) {
			/* The session is gone: start over. */
			omni__http_response_finish(&resp);
			restarts++;
			goto restart;
		}
		if (rc == 0 && !omni__gcs_retryable_status(resp.status)) {
			rc = omni__gcs_check(&resp, "uploading", gs->bucket,
			                     name);
			omni__http_response_finish(&resp);
			goto out;
		}
		/* A cut connection or a server error: wait, then ask the
		 * session how much it has, and go on from there. */
		omni__http_response_finish(&resp);
		if (++failures > gs->max_retries) {
			rc = upload_failed(op, name, rc, &resp);
			goto out;
		}
		omni_log(OMNI_LOG_DEBUG,
		         "gcs: upload of %s interrupted at %lld, "
		         "resuming",
		         name, off);
		omni_error_clear();
		omni__gcs_backoff(gs, failures - 1);
		query = true;
	}
out:
	free(buf);
	return rc;
}

/* Upload one archive as <objprefix><id>.tar.gz. */
int omni__gcs_upload_archive(struct gcs_op *op, const char *path,
                             struct local_archive *la)
{
	char name[1200];
	int rc;

	snprintf(name, sizeof(name), "%s%s%s", op->objprefix, la->id,
	         OMNI__GCS_SUFFIX);
	la->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (la->fd < 0)
		return omni_error_set_errno(-errno, "gcs: %s", path);
	if ((rc = file_hashes(la->fd, la->md5, &la->crc, &la->size)) < 0)
		goto out;
	omni__base64_encode(la->md5, 16, false, la->md5_b64,
	                    sizeof(la->md5_b64));
	omni__gcs_b64_crc(la->crc, la->crc_b64);
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
	omni__gcs_json_copy(j, "digest", m->digest, sizeof(m->digest));
	m->files = omni__gcs_json_ll(j, "files");
	cJSON_Delete(j);
	return m->message ? 0 : omni_error_set(-ENOMEM, "gcs: out of memory");
}

int omni__gcs_write_pending_meta(const char *path, const char *message,
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
int omni__gcs_list_pending(struct gcs_op *op, struct gcs_objects *out)
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
		size_t nl = strlen(de->d_name), sl = strlen(OMNI__GCS_SUFFIX);
		struct pending_meta pm;

		if (nl <= sl || nl - sl >= sizeof(id) ||
		    strcmp(de->d_name + nl - sl, OMNI__GCS_SUFFIX) != 0)
			continue;
		memcpy(id, de->d_name, nl - sl);
		id[nl - sl] = '\0';
		if (omni__snap_time(id) < 0)
			continue;
		if ((rc = omni__gcs_path_join(path, op->pending, de->d_name)) <
		    0)
			break;
		snprintf(meta, sizeof(meta), "%.*s.json",
		         (int)(strlen(path) - sl), path);
		if ((rc = read_pending_meta(meta, &pm)) < 0)
			break;
		struct gcs_object *o = omni__gcs_objects_add(out);
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

void omni__gcs_drop_pending(const struct gcs_object *p)
{
	char meta[PATH_MAX];
	size_t sl = strlen(OMNI__GCS_SUFFIX);

	snprintf(meta, sizeof(meta), "%.*s.json", (int)(strlen(p->path) - sl),
	         p->path);
	unlink(p->path);
	unlink(meta);
}
