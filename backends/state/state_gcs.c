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
 *	data folder): only names of our own pattern count, any other object
 *	under the prefix is ignored with a warning (so "~.tar.gz", which
 *	sorts last, cannot pin itself as the newest); and does nothing when that
 *is the snapshot this data folder last saved or loaded and the workspace is not
 *empty (it is at least as new). Otherwise it downloads into a file, checks
 *CRC-32C and MD5 against x-goog-hash (a mismatch is retried, then -EIO), reads
 *	the whole archive through (tar_snapshot.c: names, limits) and only
 *	then writes the workspace, staged whole and swapped in
 *	(snapshot_apply.c); a non-empty workspace that differs is first
 *	archived under backups/ (the newest five are kept).
 *
 * ERRORS
 *	HTTP statuses through omni__http_check() (404 ENOENT, 401/403 EACCES,
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
 *
 * FILES
 *	state_gcs.c    the manager: one operation, save, load, list,
 *	               cleanup, life cycle (this file)
 *	gcs_objects.c  requests with retries, listing, metadata, delete,
 *	               downloads, object names
 *	gcs_upload.c   multipart and resumable uploads, pending archives
 *	gcs_auth.c     credentials; gcs.h what the files share
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

#include "state/gcs.h"
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
#define KEEP_BACKUPS      5

/* --- one operation
 * ---------------------------------------------------------------- */

static struct gcs_state *gcs_of(struct omni_state *st)
{
	return (struct gcs_state *)st;
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
	omni__gcs_json_copy(j, "id", op->last_id, sizeof(op->last_id));
	omni__gcs_json_copy(j, "digest", op->last_digest,
	                    sizeof(op->last_digest));
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
	    (rc = omni__gcs_path_join(op->home, op->dir, name)) < 0 ||
	    (rc = omni__gcs_path_join(op->pending, op->home, "pending")) < 0 ||
	    (rc = omni__gcs_path_join(op->backups, op->home, "backups")) < 0 ||
	    (rc = omni__gcs_path_join(op->last_path, op->home, "last.json")) <
	        0 ||
	    (rc = omni__gcs_path_join(name, op->dir, lock)) < 0 ||
	    (rc = omni__host_mkdir_p(op->pending, 0700)) < 0)
		return rc;
	if ((rc = omni__state_lock(name, LOCK_TIMEOUT_S, "gcs state",
	                           &op->lock_fd)) < 0)
		return rc;
	read_last(op);
	return 0;
}

/* --- the manager
 * -------------------------------------------------------------------- */

/* An archive file under home, opened for writing. */
static int object_cmp_desc(const void *a, const void *b)
{
	return strcmp(((const struct gcs_object *)b)->id,
	              ((const struct gcs_object *)a)->id);
}

static int temp_archive(struct gcs_op *op, const char *stem, char *path)
{
	char name[64];
	int fd;

	snprintf(name, sizeof(name), "%s-%ld.tmp", stem, (long)getpid());
	if (omni__gcs_path_join(path, op->home, name) < 0)
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
	         OMNI__GCS_SUFFIX);
	int rc = omni__gcs_get_object(op, name, &obj);
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
	if (rc < 0 || (rc = omni__gcs_list_pending(&op, &pend)) < 0)
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
		if ((rc = omni__gcs_path_join(meta, op.pending, file)) < 0)
			goto out;
		snprintf(file, sizeof(file), "%s%s", id, OMNI__GCS_SUFFIX);
		if ((rc = omni__gcs_path_join(path, op.pending, file)) < 0)
			goto out;
		if ((rc = omni__gcs_write_pending_meta(
		         meta, message, info.digest, info.files)) < 0)
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
		struct gcs_object *o = omni__gcs_objects_add(&pend);
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
		if ((rc = omni__gcs_upload_archive(&op, p->path, &la)) < 0) {
			rc =
			    omni_error_set(rc,
			                   "%s; the snapshot is kept in %s and "
			                   "will be uploaded by the next save",
			                   omni_error_last(), p->path);
			goto out;
		}
		omni__gcs_drop_pending(p);
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
	omni__gcs_objects_finish(&pend);
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
		if (name[0] != '.' && strstr(name, OMNI__GCS_SUFFIX) &&
		    ++kept > KEEP_BACKUPS) {
			char path[PATH_MAX];
			if (omni__gcs_path_join(path, op->backups, name) == 0)
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
		snprintf(name, sizeof(name), "%s%s", stamp, OMNI__GCS_SUFFIX);
		if ((rc = omni__gcs_path_join(path, op->backups, name)) == 0 &&
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
	char dl[PATH_MAX] = "", what[1400] = "snapshot";
	bool applying = false, same = false;
	int rc, fd = -1;

	pthread_mutex_lock(&gs->mutex);
	if ((rc = op_begin(&op, gs, b)) < 0)
		goto unlock;
	if ((rc = omni__gcs_list_remote(&op, &remote)) < 0 ||
	    (rc = omni__gcs_list_pending(&op, &pend)) < 0)
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
	if ((rc = omni__apply_begin(&a, b, 0, &op.progress, what)) < 0)
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
		if ((rc = omni__gcs_download_object(&op, newest, fd)) < 0)
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
	omni__gcs_objects_finish(&remote);
	omni__gcs_objects_finish(&pend);
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
	if ((rc = omni__gcs_list_remote(&op, &all)) < 0 ||
	    (rc = omni__gcs_list_pending(&op, &all)) < 0)
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
	omni__gcs_objects_finish(&all);
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
	if ((rc = omni__gcs_list_remote(&op, &remote)) < 0)
		goto out;
	for (size_t i = 0; i < remote.count && rc == 0; i++)
		rc = omni__gcs_delete_object(&op, remote.items[i].name);
	if (rc == 0)
		rc = omni__host_remove_tree(op.home);
	omni_log(OMNI_LOG_DEBUG, "gcs: deleted %zu snapshots under gs://%s/%s",
	         remote.count, gs->bucket, op.objprefix);
out:
	omni__gcs_objects_finish(&remote);
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
