/*
 * backends/core/global.c - process-wide set-up of libomni and the libraries
 * under it.
 *
 * libcurl and libgit2 each want one global initialisation before any thread
 * uses them (libcurl-thread(3), libgit2 docs/threading.md); programs call
 * omni_global_init() first thing in main().
 */
#include <errno.h>

#include <curl/curl.h>
#include <git2.h>

#include "omni/error.h"
#include "omni/omni.h"

int omni_global_init(void)
{
	CURLcode cc = curl_global_init(CURL_GLOBAL_DEFAULT);

	if (cc != CURLE_OK)
		return omni_error_set(-EIO, "libcurl: %s",
		                      curl_easy_strerror(cc));
	if (git_libgit2_init() < 0) {
		curl_global_cleanup();
		return omni_error_set(-EIO, "libgit2 failed to initialise");
	}
	return 0;
}

void omni_global_shutdown(void)
{
	git_libgit2_shutdown();
	curl_global_cleanup();
}

const char *omni_version(void)
{
	return OMNI_VERSION;
}
