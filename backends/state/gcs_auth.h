/*
 * backends/state/gcs_auth.h - OAuth 2 access tokens for Google Cloud Storage
 * (private).
 *
 * Where the credentials come from, first found (looked up on first use):
 *   none        when the manager talks to an emulator (STORAGE_EMULATOR_HOST)
 *   token       $GOOGLE_OAUTH_ACCESS_TOKEN or $CLOUDSDK_AUTH_ACCESS_TOKEN,
 *               used as is (it cannot be refreshed)
 *   file        $GOOGLE_APPLICATION_CREDENTIALS, else gcloud's
 *               application_default_credentials.json (in $CLOUDSDK_CONFIG or
 *               ~/.config/gcloud): "service_account" (a JWT signed RS256 with
 *               the key, exchanged at its token_uri) or "authorized_user" (a
 *               refresh token exchanged at its token_uri or Google's)
 *   metadata    the metadata server of the machine
 *               ($GCE_METADATA_HOST or $GCE_METADATA_IP, else
 *               metadata.google.internal), header Metadata-Flavor: Google
 * Tokens are cached and refreshed five minutes before they expire, or at
 * once after the API answered 401 (omni__gcs_auth_header(force)).
 *
 * Locking: none; the gcs manager calls this under its mutex.
 */
#ifndef OMNI_GCS_AUTH_H
#define OMNI_GCS_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define OMNI_GCS_SCOPE "https://www.googleapis.com/auth/devstorage.read_write"

enum omni__gcs_cred {
	OMNI_GCS_CRED_UNKNOWN = 0, /* not looked up yet */
	OMNI_GCS_CRED_NONE,
	OMNI_GCS_CRED_TOKEN,
	OMNI_GCS_CRED_SERVICE_ACCOUNT,
	OMNI_GCS_CRED_AUTHORIZED_USER,
	OMNI_GCS_CRED_METADATA,
};

struct omni__gcs_auth {
	enum omni__gcs_cred kind;
	char source[512]; /* where the credentials came from, for messages */
	char *client_email, *private_key, *private_key_id;
	char *client_id, *client_secret, *refresh_token, *quota_project;
	char *token_uri;
	char metadata_url[512];
	char *token;          /* cached access token */
	long long expires_at; /* its expiry, seconds since the epoch */
};

/* anonymous: never send credentials (an emulator). */
void omni__gcs_auth_init(struct omni__gcs_auth *a, bool anonymous);
void omni__gcs_auth_finish(struct omni__gcs_auth *a);

/*
 * The "Authorization: Bearer ..." header line into out, or "" when
 * anonymous. force fetches a new token even when one is cached (after a
 * 401). -EACCES with the reason when no credentials work, -EINVAL for an
 * unreadable or unsupported credentials file.
 */
int omni__gcs_auth_header(struct omni__gcs_auth *a, bool force, char *out,
                          size_t size);

/* The project to bill (authorized_user's quota_project_id), or NULL. */
const char *omni__gcs_auth_quota_project(const struct omni__gcs_auth *a);

/*
 * A JWT for the service-account flow: header {"alg":"RS256","typ":"JWT",
 * "kid":key_id}, claims {iss, scope, aud, iat: now, exp: now + 3600},
 * signed with the PEM private key. *out is malloc'd.
 */
int omni__gcs_jwt(const char *client_email, const char *pem_key,
                  const char *key_id, const char *scope, const char *aud,
                  long long now, char **out);

#endif
