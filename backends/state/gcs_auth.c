/*
 * backends/state/gcs_auth.c - OAuth 2 access tokens for the gcs state manager
 *(see gcs_auth.h for where they come from).
 *
 * ENDPOINTS
 *	POST <token_uri> grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *	                   &assertion=<JWT>          (service account)
 *	POST <token_uri>   grant_type=refresh_token&client_id=&client_secret=
 *	                   &refresh_token=           (authorized user)
 *	GET  http://<metadata>/computeMetadata/v1/instance/service-accounts/
 *	     default/token  with Metadata-Flavor: Google (and the same header
 *	                   expected back)
 *	Each answers {"access_token": ..., "expires_in": seconds}.
 *
 * ERRORS
 *	A token endpoint that refuses is -EACCES with its error_description
 *	(or error) and status; one that cannot be reached keeps the transport
 *	errno (-ECONNREFUSED, -ETIMEDOUT, ...). A credentials file that cannot
 *	be read or parsed, or of an unsupported type (external_account,
 *	impersonated_service_account), is -EINVAL naming the file. Tokens and
 *	keys never appear in messages or logs.
 *
 * The JWT is signed with OpenSSL 3 (EVP_DigestSign, RSA PKCS#1 v1.5 with
 * SHA-256) and encoded base64url without padding.
 *
 * Locking: none here; the caller serialises (the manager's mutex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "state/gcs_auth.h"
#include "core/hash.h"
#include "core/http.h"
#include "omni/error.h"
#include "omni/log.h"

#define GOOGLE_TOKEN_URI "https://oauth2.googleapis.com/token"
#define CREDENTIALS_MAX  (64 * 1024)
/* Refresh this long before a token expires (as google-auth-library). */
#define EARLY_S 300

void omni__gcs_auth_init(struct omni__gcs_auth *a, bool anonymous)
{
	memset(a, 0, sizeof(*a));
	if (anonymous) {
		a->kind = OMNI_GCS_CRED_NONE;
		snprintf(a->source, sizeof(a->source),
		         "an emulator (no "
		         "credentials)");
	}
}

static void wipe(char **s)
{
	if (*s) {
		/* Secrets do not linger in freed memory. */
		memset(*s, 0, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void omni__gcs_auth_finish(struct omni__gcs_auth *a)
{
	wipe(&a->client_email);
	wipe(&a->private_key);
	wipe(&a->private_key_id);
	wipe(&a->client_id);
	wipe(&a->client_secret);
	wipe(&a->refresh_token);
	wipe(&a->quota_project);
	wipe(&a->token_uri);
	wipe(&a->token);
}

const char *omni__gcs_auth_quota_project(const struct omni__gcs_auth *a)
{
	return a->quota_project;
}

/* --- JWT
 * ---------------------------------------------------------------------- */

static int b64url_json(cJSON *j, char **out)
{
	char *text = cJSON_PrintUnformatted(j);
	size_t len = text ? strlen(text) : 0;
	char *enc = text ? malloc(len / 3 * 4 + 8) : NULL;

	*out = NULL;
	if (!enc) {
		cJSON_free(text);
		return -ENOMEM;
	}
	omni__base64_encode(text, len, true, enc, len / 3 * 4 + 8);
	cJSON_free(text);
	*out = enc;
	return 0;
}

int omni__gcs_jwt(const char *client_email, const char *pem_key,
                  const char *key_id, const char *scope, const char *aud,
                  long long now, char **out)
{
	cJSON *hdr = cJSON_CreateObject(), *claims = cJSON_CreateObject();
	char *h = NULL, *c = NULL, *input = NULL, *sig64 = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *md = NULL;
	BIO *bio = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	if (!hdr || !claims || !cJSON_AddStringToObject(hdr, "alg", "RS256") ||
	    !cJSON_AddStringToObject(hdr, "typ", "JWT") ||
	    (key_id && !cJSON_AddStringToObject(hdr, "kid", key_id)) ||
	    !cJSON_AddStringToObject(claims, "iss", client_email) ||
	    !cJSON_AddStringToObject(claims, "scope", scope) ||
	    !cJSON_AddStringToObject(claims, "aud", aud) ||
	    !cJSON_AddNumberToObject(claims, "iat", (double)now) ||
	    !cJSON_AddNumberToObject(claims, "exp", (double)(now + 3600)) ||
	    b64url_json(hdr, &h) < 0 || b64url_json(claims, &c) < 0 ||
	    asprintf(&input, "%s.%s", h, c) < 0) {
		input = NULL;
		rc = omni_error_set(-ENOMEM, "gcs auth: out of memory");
		goto out;
	}
	bio = BIO_new_mem_buf(pem_key, -1);
	key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	if (!key) {
		rc = omni_error_set(-EINVAL, "gcs auth: the service account's "
		                             "private_key is not a PEM key");
		goto out;
	}
	if (!(md = EVP_MD_CTX_new()) ||
	    EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input,
	                   strlen(input)) != 1 ||
	    !(sig = malloc(siglen)) ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input,
	                   strlen(input)) != 1 ||
	    !(sig64 = malloc(siglen / 3 * 4 + 8))) {
		rc = omni_error_set(-EINVAL, "gcs auth: cannot sign with the "
		                             "service account's key (RS256)");
		goto out;
	}
	omni__base64_encode(sig, siglen, true, sig64, siglen / 3 * 4 + 8);
	if (asprintf(out, "%s.%s", input, sig64) < 0) {
		*out = NULL;
		rc = omni_error_set(-ENOMEM, "gcs auth: out of memory");
		goto out;
	}
	rc = 0;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(key);
	BIO_free(bio);
	free(sig);
	free(sig64);
	free(input);
	free(h);
	free(c);
	cJSON_Delete(hdr);
	cJSON_Delete(claims);
	return rc;
}

/* --- finding the credentials
 * -------------------------------------------------- */

static char *json_str(const cJSON *j, const char *name)
{
	const char *v =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, name));

	return v && *v ? strdup(v) : NULL;
}

static int read_host_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf;
	size_t n;

	*out = NULL;
	if (!f)
		return -errno;
	buf = malloc(CREDENTIALS_MAX + 1);
	if (!buf) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, CREDENTIALS_MAX + 1, f);
	fclose(f);
	if (n > CREDENTIALS_MAX) {
		free(buf);
		return -EFBIG;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

static int load_file(struct omni__gcs_auth *a, const char *path,
                     const char *how)
{
	char *text;
	cJSON *j = NULL;
	int rc = read_host_file(path, &text);

	snprintf(a->source, sizeof(a->source), "%s (%s)", path, how);
	if (rc < 0)
		return omni_error_set(rc == -EFBIG ? -EINVAL : rc,
		                      "gcs auth: cannot read the credentials "
		                      "%s: %s",
		                      a->source, strerror(-rc));
	j = cJSON_Parse(text);
	memset(text, 0, strlen(text));
	free(text);
	const char *type =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "type"));
	if (!j || !type) {
		cJSON_Delete(j);
		return omni_error_set(-EINVAL,
		                      "gcs auth: %s is not a Google "
		                      "credentials file",
		                      a->source);
	}
	if (strcmp(type, "service_account") == 0) {
		a->kind = OMNI_GCS_CRED_SERVICE_ACCOUNT;
		a->client_email = json_str(j, "client_email");
		a->private_key = json_str(j, "private_key");
		a->private_key_id = json_str(j, "private_key_id");
		a->token_uri = json_str(j, "token_uri");
		if (!a->client_email || !a->private_key)
			rc = omni_error_set(-EINVAL,
			                    "gcs auth: %s lacks "
			                    "client_email or "
			                    "private_key",
			                    a->source);
	} else if (strcmp(type, "authorized_user") == 0) {
		a->kind = OMNI_GCS_CRED_AUTHORIZED_USER;
		a->client_id = json_str(j, "client_id");
		a->client_secret = json_str(j, "client_secret");
		a->refresh_token = json_str(j, "refresh_token");
		a->quota_project = json_str(j, "quota_project_id");
		a->token_uri = json_str(j, "token_uri");
		if (!a->client_id || !a->client_secret || !a->refresh_token)
			rc = omni_error_set(-EINVAL,
			                    "gcs auth: %s lacks "
			                    "client_id, client_secret "
			                    "or refresh_token",
			                    a->source);
	} else {
		rc = omni_error_set(-EINVAL,
		                    "gcs auth: %s: credentials of type "
		                    "'%s' are not supported (use a "
		                    "service account key or "
		                    "authorized_user credentials)",
		                    a->source, type);
	}
	if (rc == 0 && !a->token_uri &&
	    !(a->token_uri = strdup(GOOGLE_TOKEN_URI)))
		rc = omni_error_set(-ENOMEM, "gcs auth: out of memory");
	cJSON_Delete(j);
	if (rc < 0)
		a->kind = OMNI_GCS_CRED_UNKNOWN;
	return rc;
}

static int resolve(struct omni__gcs_auth *a)
{
	const char *v;
	char path[1024];

	if (a->kind != OMNI_GCS_CRED_UNKNOWN)
		return 0;
	static const char *const token_vars[] = {
		"GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"
	};
	for (size_t i = 0; i < 2; i++) {
		if ((v = getenv(token_vars[i])) && *v) {
			if (!(a->token = strdup(v)))
				return omni_error_set(-ENOMEM, "gcs auth: out "
				                               "of memory");
			a->kind = OMNI_GCS_CRED_TOKEN;
			a->expires_at = 0;
			snprintf(a->source, sizeof(a->source), "$%s",
			         token_vars[i]);
			return 0;
		}
	}
	if ((v = getenv("GOOGLE_APPLICATION_CREDENTIALS")) && *v)
		return load_file(a, v, "GOOGLE_APPLICATION_CREDENTIALS");
	if ((v = getenv("CLOUDSDK_CONFIG")) && *v)
		snprintf(path, sizeof(path),
		         "%s/application_default_credentials.json", v);
	else
		snprintf(
		    path, sizeof(path),
		    "%s/.config/gcloud/application_default_credentials.json",
		    getenv("HOME") ? getenv("HOME") : "");
	if (access(path, R_OK) == 0)
		return load_file(a, path,
		                 "gcloud application default credentials");
	v = getenv("GCE_METADATA_HOST");
	if (!v || !*v)
		v = getenv("GCE_METADATA_IP");
	snprintf(a->metadata_url, sizeof(a->metadata_url),
	         "http://%s/computeMetadata/v1/instance/service-accounts/"
	         "default/token",
	         v && *v ? v : "metadata.google.internal");
	snprintf(a->source, sizeof(a->source), "the metadata server (%s)",
	         v && *v ? v : "metadata.google.internal");
	a->kind = OMNI_GCS_CRED_METADATA;
	return 0;
}

/* --- fetching a token
 * ------------------------------------------------------------ */

struct flavor {
	bool google;
};

static void flavor_header(const char *name, const char *value, void *payload)
{
	struct flavor *f = payload;

	if (strcasecmp(name, "Metadata-Flavor") == 0 &&
	    strcmp(value, "Google") == 0)
		f->google = true;
}

/* Take {"access_token", "expires_in"} from a 2xx reply. */
static int take_token(struct omni__gcs_auth *a,
                      const struct omni__http_response *resp)
{
	cJSON *j =
	    cJSON_ParseWithLength(resp->body ? resp->body : "", resp->body_len);
	const char *tok = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(j, "access_token"));
	const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
	long long life =
	    cJSON_IsNumber(exp) ? (long long)exp->valuedouble : 3600;

	if (!tok || !*tok) {
		cJSON_Delete(j);
		return omni_error_set(-EPROTO,
		                      "gcs auth: %s answered without "
		                      "an access_token",
		                      a->source);
	}
	wipe(&a->token);
	a->token = strdup(tok);
	cJSON_Delete(j);
	if (!a->token)
		return omni_error_set(-ENOMEM, "gcs auth: out of memory");
	/* Refresh early, but never sooner than half the token's life. */
	long long early = life > 2 * EARLY_S ? EARLY_S : life / 2;
	a->expires_at = (long long)time(NULL) + life - early;
	return 0;
}

/* An OAuth error reply: {"error": "...", "error_description": "..."}. */
static int refused(struct omni__gcs_auth *a, const char *url,
                   const struct omni__http_response *resp)
{
	cJSON *j =
	    cJSON_ParseWithLength(resp->body ? resp->body : "", resp->body_len);
	const char *why = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(j, "error_description"));
	char text[256];
	int rc;

	if (!why)
		why = omni__http_error_text(resp->body, resp->body_len, text,
		                            sizeof(text));
	rc =
	    omni_error_set(-EACCES,
	                   "gcs auth: %s refused the credentials "
	                   "from %s: %s (HTTP %ld)",
	                   url, a->source,
	                   why && *why ? why : "no reason given", resp->status);
	cJSON_Delete(j);
	return rc;
}

static int post_form(struct omni__gcs_auth *a, const char *form)
{
	struct omni__http_endpoint ep = { .connect_timeout_ms = 10000 };
	struct omni__http_request req = {
		.method = "POST",
		.path = a->token_uri,
		.body = form,
		.body_len = strlen(form),
		.content_type = "application/x-www-form-urlencoded",
		.timeout_ms = 60000,
		.max_body = 1024 * 1024,
	};
	struct omni__http_response resp;
	int rc = omni__http_request(&ep, &req, &resp);

	if (rc < 0) {
		rc = omni_error_set(rc,
		                    "gcs auth: cannot get a token for %s: %s",
		                    a->source, omni_error_last());
	} else if (resp.status < 200 || resp.status > 299) {
		rc = refused(a, a->token_uri, &resp);
	} else {
		rc = take_token(a, &resp);
	}
	omni__http_response_finish(&resp);
	return rc;
}

static int fetch_service_account(struct omni__gcs_auth *a)
{
	char *jwt = NULL, *form = NULL;
	int rc = omni__gcs_jwt(a->client_email, a->private_key,
	                       a->private_key_id, OMNI_GCS_SCOPE, a->token_uri,
	                       (long long)time(NULL), &jwt);

	if (rc < 0)
		return rc;
	if (asprintf(&form,
	             "grant_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Agrant-type%%"
	             "3Ajwt-bearer&assertion=%s",
	             jwt) < 0) {
		free(jwt);
		return omni_error_set(-ENOMEM, "gcs auth: out of memory");
	}
	free(jwt);
	rc = post_form(a, form);
	wipe(&form);
	return rc;
}

static int fetch_authorized_user(struct omni__gcs_auth *a)
{
	size_t n = 3 * (strlen(a->client_id) + strlen(a->client_secret) +
	                strlen(a->refresh_token)) +
	           128;
	char *id = malloc(n), *secret = malloc(n), *refresh = malloc(n);
	char *form = NULL;
	int rc = -ENOMEM;

	if (id && secret && refresh &&
	    omni__http_escape(a->client_id, id, n) == 0 &&
	    omni__http_escape(a->client_secret, secret, n) == 0 &&
	    omni__http_escape(a->refresh_token, refresh, n) == 0 &&
	    asprintf(&form,
	             "grant_type=refresh_token&client_id=%s&client_secret=%s"
	             "&refresh_token=%s",
	             id, secret, refresh) >= 0)
		rc = post_form(a, form);
	else
		rc = omni_error_set(-ENOMEM, "gcs auth: out of memory");
	if (form)
		wipe(&form);
	wipe(&id);
	wipe(&secret);
	wipe(&refresh);
	return rc;
}

static int fetch_metadata(struct omni__gcs_auth *a)
{
	struct omni__http_endpoint ep = { .connect_timeout_ms = 3000 };
	const char *hdrs[] = { "Metadata-Flavor: Google", NULL };
	struct flavor fl = { false };
	struct omni__http_request req = {
		.method = "GET",
		.path = a->metadata_url,
		.headers = hdrs,
		.timeout_ms = 10000,
		.on_header = flavor_header,
		.payload = &fl,
		.max_body = 1024 * 1024,
	};
	struct omni__http_response resp;
	int rc = omni__http_request(&ep, &req, &resp);

	if (rc < 0) {
		rc = omni_error_set(-EACCES,
		                    "gcs auth: no credentials: set "
		                    "GOOGLE_APPLICATION_CREDENTIALS (a key "
		                    "file) or GOOGLE_OAUTH_ACCESS_TOKEN; the "
		                    "metadata server did not answer (%s)",
		                    omni_error_last());
	} else if (resp.status < 200 || resp.status > 299) {
		rc = refused(a, a->metadata_url, &resp);
	} else if (!fl.google) {
		rc = omni_error_set(-EPROTO,
		                    "gcs auth: %s answered without "
		                    "Metadata-Flavor: Google",
		                    a->metadata_url);
	} else {
		rc = take_token(a, &resp);
	}
	omni__http_response_finish(&resp);
	return rc;
}

int omni__gcs_auth_header(struct omni__gcs_auth *a, bool force, char *out,
                          size_t size)
{
	int rc;

	out[0] = '\0';
	if ((rc = resolve(a)) < 0)
		return rc;
	if (a->kind == OMNI_GCS_CRED_NONE)
		return 0;
	if (a->kind == OMNI_GCS_CRED_TOKEN) {
		/* A given token cannot be refreshed: a 401 is final. */
		if (force)
			return omni_error_set(-EACCES,
			                      "gcs auth: the API refused "
			                      "the token in %s",
			                      a->source);
	} else if (force || !a->token || time(NULL) >= a->expires_at) {
		omni_log(OMNI_LOG_DEBUG, "gcs auth: getting a token from %s",
		         a->source);
		if (a->kind == OMNI_GCS_CRED_SERVICE_ACCOUNT)
			rc = fetch_service_account(a);
		else if (a->kind == OMNI_GCS_CRED_AUTHORIZED_USER)
			rc = fetch_authorized_user(a);
		else
			rc = fetch_metadata(a);
		if (rc < 0)
			return rc;
	}
	int n = snprintf(out, size, "Authorization: Bearer %s", a->token);
	if (n < 0 || (size_t)n >= size)
		return omni_error_set(-EPROTO, "gcs auth: the access token is "
		                               "too long");
	return 0;
}
