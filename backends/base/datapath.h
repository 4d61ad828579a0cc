/*
 * backends/base/datapath.h - where workspaces live on the host (private).
 *
 * The data path is the folder that holds one workspace per project (the
 * local backend's files, the state managers' bookkeeping). It is the
 * --data-path option (struct omni_backend_options.data_path), else
 * $OMNI_DATA_PATH, else "./data"; an empty value counts as unset. A
 * relative one is taken against the current directory and made absolute
 * once, so that a daemon that later changes directory still means the
 * same folder; a leading "./" is dropped on the way ("./data" becomes
 * "<cwd>/data").
 */
#ifndef OMNI_BASE_DATAPATH_H
#define OMNI_BASE_DATAPATH_H

#include <stddef.h>

/* The absolute data path for the option given (NULL or "": unset) into
 * out. 0, or -errno with a message (getcwd failed, -ENAMETOOLONG). */
int omni__data_path(const char *given, char *out, size_t size);

#endif
