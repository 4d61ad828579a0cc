/*
 * fork.c - omnifs --from (see fork.h): the argument split at '@', the
 * source checked to be a valid project id, the rest is the library's
 * (omni__checkpoint_fork). Done once the session has started and before
 * the mount shows the workspace, so nothing sees it half copied; the
 * journal is not on yet, so the copy is not journaled file by file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fork.h"
#include "omni/error.h"
#include "omni/log.h"
#include "state/checkpoint.h"

int omnifs_fork(struct omni_backend *b, const char *from)
{
	char *project = strdup(from), *at, *text = NULL;
	int rc;

	if (!project)
		return omni_error_set(-ENOMEM, "out of memory");
	if ((at = strchr(project, '@')))
		*at++ = '\0';
	if (!omni_project_id_valid(project) || (at && !*at)) {
		rc = omni_error_set(-EINVAL,
		                    "--from %s: give PROJECT or "
		                    "PROJECT@CHECKPOINT",
		                    from);
	} else {
		rc = omni__checkpoint_fork(b, project, at, &text);
		if (rc == 0)
			omni_log(OMNI_LOG_INFO, "%s", text);
	}
	free(text);
	free(project);
	return rc;
}
