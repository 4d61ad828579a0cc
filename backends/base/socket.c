/*
 * backends/base/socket.c - Unix stream sockets: listen on a path, connect
 * to one (see omni/ipc.h). The one place that fills a sockaddr_un, used by
 * the control server (fs/ctl.c), omni-agent, omni-exec and the docker
 * backend.
 *
 * libc only: omni-agent links this file statically.
 *
 * Listening. The socket is given its mode before it exists: fchmod() on
 * the socket descriptor before bind() sets the mode the socket file is
 * created with (Linux), and bind() applies the umask on top, so the file
 * is never wider than asked, even for a moment; afterwards it is set to
 * exactly the mode asked (the umask may have narrowed it). umask() is
 * process-wide and other threads create files concurrently, so it is not
 * touched. What lies at the path already is handled as the caller says
 * (enum omni__unix_stale).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "omni/error.h"
#include "omni/ipc.h"

#define LISTEN_BACKLOG 128

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
	size_t len = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (len >= sizeof(sa->sun_path))
		return omni_error_set(-ENAMETOOLONG, "socket path too long: %s",
		                      path);
	memcpy(sa->sun_path, path, len + 1);
	return 0;
}

/* Connect fd to sa, retrying when a signal interrupts. 0 or -errno. */
static int connect_addr(int fd, const struct sockaddr_un *sa)
{
	while (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

int omni__unix_connect(const char *path, int *out)
{
	struct sockaddr_un sa;
	int fd, rc;

	*out = -1;
	if ((rc = fill_addr(&sa, path)) < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omni_error_set_errno(-errno, "socket");
	rc = connect_addr(fd, &sa);
	if (rc < 0) {
		close(fd);
		return omni_error_set_errno(rc, "cannot connect to %s", path);
	}
	*out = fd;
	return 0;
}

/* Clear the path for bind() as stale says. */
static int clear_stale(const struct sockaddr_un *sa, const char *path,
                       enum omni__unix_stale stale)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return 0;
	if (stale == OMNI__UNIX_STALE_REMOVE) {
		/* Whatever served it is gone (a previous run). */
		if (S_ISSOCK(st.st_mode))
			unlink(path);
		return 0;
	}
	if (!S_ISSOCK(st.st_mode))
		return omni_error_set(-EEXIST, "%s exists and is not a socket",
		                      path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omni_error_set_errno(-errno, "socket");
	rc = connect_addr(fd, sa);
	close(fd);
	if (rc == 0)
		return omni_error_set(-EADDRINUSE,
		                      "%s: another server listens there", path);
	if (unlink(path) < 0 && errno != ENOENT)
		return omni_error_set_errno(-errno, "cannot remove stale %s",
		                            path);
	return 0;
}

int omni__unix_listen(const char *path, mode_t mode,
                      enum omni__unix_stale stale, struct stat *st_out)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd, rc;

	if ((rc = fill_addr(&sa, path)) < 0)
		return rc;
	if ((rc = clear_stale(&sa, path, stale)) < 0)
		return rc;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return omni_error_set_errno(-errno, "socket");
	/* The socket file takes this mode (minus the umask) at bind. */
	if (fchmod(fd, mode) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = omni_error_set_errno(-errno, "cannot bind %s", path);
		close(fd);
		return rc;
	}
	if (lstat(path, &st) < 0 ||
	    ((st.st_mode & 0777) != mode && chmod(path, mode) < 0) ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		rc = omni_error_set_errno(-errno, "cannot listen on %s", path);
		close(fd);
		unlink(path);
		return rc;
	}
	if (st_out)
		*st_out = st;
	return fd;
}
