/*
 * backends/state/gcs.h - what the files of the gcs state manager share
 * (private): the manager, one operation, the object lists, a request, and
 * the functions one file calls in another.
 *
 *   state_gcs.c    the manager: save, load, list, cleanup, life cycle
 *   gcs_objects.c  requests with retries, listing, metadata, delete,
 *                  downloads, object names
 *   gcs_upload.c   multipart and resumable uploads, pending archives
 *   gcs_auth.c     credentials (gcs_auth.h)
 *
 * See the head of state_gcs.c for the design.
 */
#ifndef OMNI_STATE_GCS_H
#define OMNI_STATE_GCS_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "core/http.h"
#include "core/progress.h"
#include "omni/sys/state_impl.h"
#include "state/gcs_auth.h"

#define OMNI__GCS_URL_MAX 4096
#define OMNI__GCS_SUFFIX  ".tar.gz"

struct gcs_state {
	struct omni_state base;
	pthread_mutex_t mutex;
	char *bucket;
	char *prefix;      /* "" or "a/b" (no slashes around) */
	char *state_dir;   /* NULL: the default */
	char api[1100];    /* <base>/storage/v1 */
	char upload[1100]; /* <base>/upload/storage/v1 */
	struct omni__http_endpoint ep;
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

struct gcs_req {
	const char *method;
	const char *url;
	const char *content_type;
	const void *body;
	size_t body_len;
	const char *headers[6]; /* extra ones, NULL-terminated */
	omni__http_data_cb on_data;
	omni__http_header_cb on_header;
	void *payload;
	bool retry; /* safe to repeat */
	/* Called before a repeat (e.g. to rewind a download). */
	int (*rewind)(void *payload);
	long timeout_ms, low_speed_s;
};

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

/* --- gcs_objects.c: helpers ---------------------------------------------- */

void omni__gcs_objects_finish(struct gcs_objects *l);
/* A new zeroed entry at the end of l, or NULL without memory. */
struct gcs_object *omni__gcs_objects_add(struct gcs_objects *l);
/* Percent-encode s for a URL (omni__http_escape). */
int omni__gcs_escape(const char *s, char *out, size_t size);
/* A number member given as a string or a number, or 0. */
long long omni__gcs_json_ll(const cJSON *j, const char *name);
/* A string member into out ("" when absent). */
void omni__gcs_json_copy(const cJSON *j, const char *name, char *out,
                         size_t size);
/* A CRC-32C in base64 of its big-endian bytes, as GCS gives it. */
void omni__gcs_b64_crc(uint32_t crc, char out[16]);
/* dir/name into out (PATH_MAX); -ENAMETOOLONG. */
int omni__gcs_path_join(char *out, const char *dir, const char *name);

/* --- gcs_objects.c: requests with retries --------------------------------- */

/* Sleep before repeat number attempt (exponential, jitter, capped). */
void omni__gcs_backoff(struct gcs_state *gs, unsigned int attempt);
/* 408, 429 and 5xx are worth repeating. */
bool omni__gcs_retryable_status(long status);
/*
 * Send r (with credentials), repeating it on 408/429/5xx and transport
 * failures when r->retry, and once after a 401 with a fresh token.
 * Returns 0 when a reply came (resp holds it; the caller checks the
 * status) or -errno.
 */
int omni__gcs_send(struct gcs_op *op, const struct gcs_req *r,
                   struct omni__http_response *resp);
/* Check a reply: 2xx is 0, anything else -errno with the server's text. */
int omni__gcs_check(const struct omni__http_response *resp, const char *what,
                    const char *bucket, const char *name);

/* --- gcs_objects.c: objects ----------------------------------------------- */

/* Every snapshot object of the project, all pages. */
int omni__gcs_list_remote(struct gcs_op *op, struct gcs_objects *out);
/* The object resource of name; -ENOENT when it does not exist. */
int omni__gcs_get_object(struct gcs_op *op, const char *name, cJSON **out);
/* Delete name; a missing object is fine. */
int omni__gcs_delete_object(struct gcs_op *op, const char *name);
/* Download obj into fd, checking its CRC-32C and MD5. */
int omni__gcs_download_object(struct gcs_op *op, const struct gcs_object *obj,
                              int fd);

/* --- gcs_upload.c ----------------------------------------------------------
 */

/* Upload one archive as <objprefix><id>.tar.gz. */
int omni__gcs_upload_archive(struct gcs_op *op, const char *path,
                             struct local_archive *la);
/* The metadata of a pending archive, beside it as <id>.json. */
int omni__gcs_write_pending_meta(const char *path, const char *message,
                                 const char *digest, long long files);
/* The pending archives, oldest first (appended to out). */
int omni__gcs_list_pending(struct gcs_op *op, struct gcs_objects *out);
/* Delete a pending archive and its metadata. */
void omni__gcs_drop_pending(const struct gcs_object *p);

#endif
