/*
 * main.c - omnifs: mount a backend session's workspace on a directory.
 *
 *	omnifs [options] [PROJECT] MOUNTPOINT
 *	omnifs --list [--json]
 *	omnifs --log PROJECT [--since T] [--json]
 *	omnifs --diff PROJECT | --apply PROJECT
 *
 * Order of events: parse options (cli.c); check the mount point
 * (mountpoint.c: a directory with nothing mounted on it, a dead mount of
 * ours cleared); unless -f, fork, and let the parent wait on a pipe until
 * the child reports "mounted" or an error (so a startup failure reaches
 * the terminal with a non-zero exit, and the shell, or mount(8), gets its
 * prompt back only once the mount works); with --overlay, mount the
 * overlayfs the local backend will serve (overlay.h); start the backend
 * session (core/session.h: the backend, its state manager and, for a
 * remote backend, the cache in front of it; start loads the latest
 * snapshot); with --from, fill the new workspace from a checkpoint
 * (fork.h); unless -o journal=off, start the journal (journal_cmd.h);
 * create and mount the FUSE session (with auto_unmount unless turned off,
 * so a killed daemon leaves no dead mount); open the control socket for
 * omni-exec; publish the session file --list reads (sessions.c); serve.
 * When the loop ends (fusermount3 -u, umount, SIGTERM, SIGINT, SIGHUP) the
 * control server stops, the session file goes, the mount goes away, and
 * the session shuts down, saving a snapshot through the state manager.
 * main() runs these steps one function each, in that order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "base/datapath.h"
#include "base/tempfile.h"
#include "cache/cache.h"
#include "core/session.h"
#include "ctl.h"
#include "mountpoint.h"
#include "omni/ipc.h"
#include "omni/omni.h"
#include "omni/session.h"
#include "omnifs.h"
#include "cli.h"
#include "fork.h"
#include "overlay.h"
#include "journal_cmd.h"
#include "sessions.h"

/* --- reporting to the waiting parent -------------------------------------- */

static int report_fd = -1;

/* Tell the parent how startup went: "" for success, else the message. */
static void report(const char *msg)
{
	if (report_fd < 0)
		return;
	size_t len = strlen(msg);
	ssize_t w = write(report_fd, msg, len ? len : 1);
	(void)w;
	close(report_fd);
	report_fd = -1;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (report_fd >= 0)
		report(msg);
	else
		fprintf(stderr, "omnifs: %s\n", msg);
}

/* Fork; the parent waits for the child's report and exits with it. */
static int daemonize_early(void)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0) {
		perror("omnifs: pipe");
		return -1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("omnifs: fork");
		return -1;
	}
	if (pid > 0) {
		char msg[1024];
		ssize_t n;

		close(p[1]);
		do {
			n = read(p[0], msg, sizeof(msg) - 1);
		} while (n < 0 && errno == EINTR);
		if (n <= 0) {
			fprintf(stderr,
			        "omnifs: the daemon died while starting\n");
			_exit(1);
		}
		msg[n] = '\0';
		if (msg[0] == '\0' || (n == 1 && msg[0] == '\0'))
			_exit(0);
		fprintf(stderr, "omnifs: %s\n", msg);
		_exit(1);
	}
	close(p[0]);
	report_fd = p[1];
	setsid();
	return 0;
}

static void syslog_sink(enum omni_log_level level, const char *msg,
                        void *payload)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG,
		                    LOG_DEBUG };

	(void)payload;
	syslog(prio[level], "%s", msg);
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
}

/* --- the daemon's life, step by step -------------------------------------- */

/* What main() carries from one step to the next. */
struct daemon {
	struct fuse_args args;
	struct fuse_cmdline_opts opts;
	struct omnifs_cli cli;
	struct omnifs fs;
	struct omni_backend_options bopts;
	struct omni_docker_options dopts;
	struct omni_e2b_options eopts;
	struct omni__cache_options copts;
	double request_timeout;
	struct omni__session *session;
	struct omnifs_ctl *ctl;
	struct fuse_loop_config *loop;
	char mountpoint[PATH_MAX], data_path[PATH_MAX], sock[PATH_MAX];
	char project[256];
	bool mounted, handlers, watching, published;
	/* What --list shows (sessions.h); info_lock guards it once the
	 * control server runs (saves come on its threads). */
	struct omnifs_session_info info;
	char last_save_id[128];
	pthread_mutex_t info_lock;
	int fuse_dup;                   /* see hold_fuse_device() */
	struct omnifs_overlay *overlay; /* --overlay, while mounted */
};

/* What a step returns to go on to the next one (else an exit code). */
#define GO_ON (-1)

/* --- control hooks -------------------------------------------------------- */

/* Under the writeback cache, what was written through the mount may
 * still be the kernel's dirty pages: syncfs(2) sends them (nothing to do
 * when nothing is dirty). Opened for each command: a descriptor kept open
 * would make the mount busy. */
static int sync_mount(struct daemon *d)
{
	int fd = open(d->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0 || syncfs(fd) < 0) {
		rc = -errno;
		omni_log(OMNI_LOG_WARN, "syncfs %s: %s", d->mountpoint,
		         strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Before a command: what was written through the mount goes down (host
 * mounts with the writeback cache) or up (remote) first. */
static int hook_before_exec(void *payload)
{
	struct daemon *d = payload;
	struct omnifs *fs = &d->fs;

	if (fs->writeback)
		return sync_mount(d);
	return fs->remote ? omni__cache_flush_all(fs->backend) : 0;
}

static void hook_after_exec(void *payload)
{
	struct omnifs *fs = &((struct daemon *)payload)->fs;

	/* The command's changes as the watch saw them (exact, sizes under
	 * the writeback cache included), the daemon's caches, then the
	 * kernel's; nothing is fetched until asked for. */
	omnifs_watch_drain(fs);
	omni_vfs_invalidate(fs->backend, "");
	omnifs_invalidate_all(fs);
}

/* A change made in the sandbox behind the mount (the backend's watch
 * thread): the kernel forgets it. NULL only says the watch is lost. */
static void on_change(const char *path, const struct stat *st, void *payload)
{
	if (path)
		omnifs_invalidate_path(payload, path, st);
}

static int hook_control(const char *request, char **reply, void *payload)
{
	struct omnifs *fs = &((struct daemon *)payload)->fs;

	if (strcmp(request, "stats") == 0) {
		*reply = omnifs_stats_text(fs);
		return *reply ? 0 : -ENOMEM;
	}
	/* omni-exec --sync: every pending upload and mode, then the
	 * answer. */
	if (strcmp(request, "sync") == 0) {
		int rc = fs->remote ? omni__cache_flush_all(fs->backend) : 0;
		if (rc < 0)
			return rc;
		*reply = strdup("synced");
		return *reply ? 0 : -ENOMEM;
	}
	return -EINVAL;
}

/* A rollback made path where the kernel may remember nothing. */
static void hook_invalidate_path(const char *path, void *payload)
{
	omnifs_invalidate_path(&((struct daemon *)payload)->fs, path, NULL);
}

/* A snapshot was saved on request: --list shows when. */
static void hook_after_save(const char *id, void *payload)
{
	struct daemon *d = payload;

	pthread_mutex_lock(&d->info_lock);
	snprintf(d->last_save_id, sizeof(d->last_save_id), "%s", id);
	d->info.last_save = (long long)time(NULL);
	d->info.last_save_id = d->last_save_id;
	if (d->published && omnifs_session_publish(&d->info) < 0)
		omni_log(OMNI_LOG_WARN, "session file: %s", omni_error_last());
	pthread_mutex_unlock(&d->info_lock);
}

/* --help, --version, --list, and the mount point. */
static int check_command_line(struct daemon *d, const char *prog)
{
	const char *mnt = omnifs_cli_mountpoint(&d->cli);

	if (d->opts.show_help) {
		omnifs_cli_usage(prog);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lowlevel_help();
		return 0;
	}
	if (d->opts.show_version) {
		printf("omnifs %s (libomni %s)\n", OMNI_VERSION,
		       omni_version());
		fflush(stdout); /* before libfuse writes its own lines */
		fuse_lowlevel_version();
		return 0;
	}
	if (d->cli.list)
		return omnifs_session_list(stdout, d->cli.json);
	if (d->cli.log)
		return omnifs_journal_log(&d->cli, stdout);
	if (d->cli.diff)
		return omnifs_overlay_diff(d->cli.data_path, d->cli.diff,
		                           stdout);
	if (d->cli.apply)
		return omnifs_overlay_apply(d->cli.data_path, d->cli.apply,
		                            stdout);
	if (omnifs_journal_wanted(&d->cli) < 0)
		return 2;
	if (!mnt) {
		fprintf(
		    stderr,
		    "usage: %s [options] [PROJECT] MOUNTPOINT (try --help)\n",
		    prog);
		return 2;
	}
	if (omnifs_mountpoint_check(mnt, d->mountpoint, sizeof(d->mountpoint)))
		return 1;
	return GO_ON;
}

/* The numbers of the command line; 2 for a bad one. */
static int parse_numbers(struct daemon *d)
{
	const struct omnifs_cli *cli = &d->cli;

	if (omnifs_parse_double(cli->attr_timeout, &d->fs.attr_timeout,
	                        "attr_timeout") ||
	    omnifs_parse_double(cli->entry_timeout, &d->fs.entry_timeout,
	                        "entry_timeout") ||
	    omnifs_parse_double(cli->negative_timeout, &d->fs.negative_timeout,
	                        "negative_timeout") ||
	    omnifs_parse_double(cli->cache_ttl, &d->copts.ttl, "cache_ttl") ||
	    omnifs_parse_double(cli->request_timeout, &d->request_timeout,
	                        "--request-timeout") ||
	    omnifs_parse_size(cli->memory, &d->dopts.memory_bytes,
	                      "--memory") ||
	    omnifs_parse_size(cli->pids_limit, &d->dopts.pids_limit,
	                      "--pids-limit") ||
	    omnifs_parse_double(cli->cpus, &d->dopts.cpus, "--cpus"))
		return 2;
	return GO_ON;
}

/* The project id: PROJECT or --project, else the mount point's name. */
static int choose_project(struct daemon *d)
{
	const char *base = strrchr(d->mountpoint, '/'), *given;

	if (omnifs_cli_project(&d->cli, &given))
		return 2;
	snprintf(d->project, sizeof(d->project), "%s",
	         given ? given : (base && base[1] ? base + 1 : "root"));
	if (!omni_project_id_valid(d->project)) {
		fprintf(stderr,
		        "omnifs: invalid project id '%s' (use letters, digits, "
		        ". _ -; "
		        "or give --project)\n",
		        d->project);
		return 2;
	}
	return GO_ON;
}

/* The data path, made absolute: it must not depend on the daemon's cwd. */
static int choose_data_path(struct daemon *d)
{
	if (omni__data_path(d->cli.data_path, d->data_path,
	                    sizeof(d->data_path)) < 0) {
		fprintf(stderr, "omnifs: %s\n", omni_error_last());
		return 1;
	}
	return GO_ON;
}

/* The backend's options from the command line: the common ones, and
 * those of the chosen backend. */
static int set_backend_options(struct daemon *d)
{
	const char *name = d->cli.backend ? d->cli.backend : "local";

	d->bopts.data_path = d->data_path;
	d->bopts.env = (const char *const *)d->cli.env;
	d->bopts.progress = !d->cli.quiet;
	d->dopts.image = d->cli.image;
	d->dopts.network = d->cli.network;
	d->dopts.files = d->cli.docker_files;
	d->eopts.template_name = d->cli.template;
	if (d->cli.verbose || d->opts.debug)
		omni_log_set_level(OMNI_LOG_DEBUG);
	if (d->cli.request_timeout) {
		if (d->request_timeout <= 0) {
			fprintf(stderr,
			        "omnifs: --request-timeout must be > 0\n");
			return 2;
		}
		d->eopts.request_timeout_s = d->request_timeout;
	}
	if (strcmp(name, "docker") == 0)
		d->bopts.backend = &d->dopts.head;
	else if (strcmp(name, "e2b") == 0)
		d->bopts.backend = &d->eopts.head;
	return GO_ON;
}

/* Everything the command line says, checked before the daemon forks. */
static int configure(struct daemon *d, const char *prog)
{
	int ret = check_command_line(d, prog);

	if (ret == GO_ON)
		ret = parse_numbers(d);
	if (ret == GO_ON)
		ret = choose_project(d);
	if (ret == GO_ON)
		ret = choose_data_path(d);
	if (ret == GO_ON)
		ret = set_backend_options(d);
	return ret;
}

/* The control socket's path, and no other daemon answering on it. */
static int check_not_mounted(struct daemon *d)
{
	int rc = omni_runtime_dir(d->sock, sizeof(d->sock), true);

	if (rc == 0)
		rc = omni_session_socket_path(d->project, d->sock,
		                              sizeof(d->sock));
	if (rc < 0) {
		fail("%s", omni_error_last());
		return -1;
	}
	int fd;
	if (omni__unix_connect(d->sock, &fd) == 0) {
		close(fd);
		fail("project '%s' is already mounted (control socket %s "
		     "answers)",
		     d->project, d->sock);
		return -1;
	}
	return 0;
}

/* Every round trip to a remote backend counts: the cache answers what it
 * can, and snapshots go through it (they hold what the mount shows). */
static int add_cache(struct daemon *d)
{
	struct rlimit rl;

	/* Its clean copies each keep a descriptor: allow what we may, and
	 * keep no more copies than that allows. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
			getrlimit(RLIMIT_NOFILE, &rl);
		}
		if (rl.rlim_cur != RLIM_INFINITY &&
		    d->copts.max_clean_files > (rl.rlim_cur - 256) / 2)
			d->copts.max_clean_files =
			    rl.rlim_cur > 512 ? (rl.rlim_cur - 256) / 2 : 64;
	}
	/* Write-back keeps pending uploads under the data folder. */
	const char *mode = d->cli.cache_mode ? d->cli.cache_mode : "writes";
	if (strcmp(mode, "writes") != 0 && strcmp(mode, "close") != 0)
		return omni_error_set(-EINVAL,
		                      "cache_mode must be 'writes' or 'close', "
		                      "not '%s'",
		                      mode);
	d->copts.writeback = strcmp(mode, "writes") == 0;
	int n = snprintf(d->copts.spool, sizeof(d->copts.spool),
	                 "%s/.omnifs-cache/%s", d->data_path, d->project);
	if (n < 0 || (size_t)n >= sizeof(d->copts.spool))
		d->copts.spool[0] = '\0';
	int rc = omni__session_add_cache(d->session, &d->copts);
	d->fs.remote = true;
	if (!d->cli.attr_timeout)
		d->fs.attr_timeout = d->copts.ttl;
	if (!d->cli.entry_timeout)
		d->fs.entry_timeout = d->copts.ttl;
	if (!d->cli.negative_timeout)
		d->fs.negative_timeout = d->copts.ttl;
	return rc;
}

/* --overlay DIR: the workspace the local backend serves is an overlayfs
 * of DIR (overlay.h), mounted before the backend starts. */
static int start_overlay(struct daemon *d)
{
	if (d->cli.backend && strcmp(d->cli.backend, "local") != 0) {
		fail("--overlay works with the local backend only");
		return -1;
	}
	if (!(d->overlay = calloc(1, sizeof(*d->overlay)))) {
		fail("out of memory");
		return -1;
	}
	if (omnifs_overlay_mount(d->overlay, d->cli.overlay, d->data_path,
	                         d->project) < 0) {
		fail("%s", omni_error_last());
		free(d->overlay);
		d->overlay = NULL;
		return -1;
	}
	return 0;
}

/* A host mount keeps names and attributes for long: the change watch
 * (watch.h) invalidates what other writers change. Without the watch the
 * operations cap them (ops.c). */
#define HOST_TIMEOUT 60.0

static void host_timeouts(struct daemon *d)
{
	if (!d->cli.attr_timeout)
		d->fs.attr_timeout = HOST_TIMEOUT;
	if (!d->cli.entry_timeout)
		d->fs.entry_timeout = HOST_TIMEOUT;
	if (!d->cli.negative_timeout)
		d->fs.negative_timeout = HOST_TIMEOUT;
	d->fs.writeback_mode = d->cli.no_writeback ? -1 : d->cli.writeback;
}

/* Make the session (state manager, backend, cache) and start it, which
 * loads the latest snapshot. */
static int start_session(struct daemon *d)
{
	struct omni_state *state = NULL;
	int rc;

	if (d->cli.overlay && start_overlay(d) < 0)
		return -1;
	rc = omni_state_new(&state, d->cli.state ? d->cli.state : "none");

	if (rc == 0)
		rc = omni__session_open(
		    &d->session, d->cli.backend ? d->cli.backend : "local",
		    d->project, &d->bopts, state);
	if (rc == 0 && (omni_vfs_caps(omni__session_backend(d->session)) &
	                OMNI_CAP_REMOTE))
		rc = add_cache(d);
	if (rc == 0)
		rc = omni__session_start(d->session);
	if (rc == 0 && d->cli.from &&
	    (rc = omnifs_fork(omni__session_backend(d->session), d->cli.from)) <
	        0)
		omni__session_shutdown(d->session);
	if (rc == 0 && omnifs_journal_wanted(&d->cli) == 1 &&
	    (rc = omni__session_journal(d->session)) < 0)
		omni__session_shutdown(d->session);
	if (rc < 0) {
		fail("%s", omni_error_last());
		return -1;
	}
	d->fs.backend = omni__session_backend(d->session);
	/* Uploads an earlier session left pending go up after the snapshot
	 * load, so they win over it. */
	if (d->fs.remote)
		omni__cache_recover(d->fs.backend);
	d->fs.host_files =
	    (omni_vfs_caps(d->fs.backend) & OMNI_CAP_FILE_FD) != 0;
	if (!d->fs.remote)
		host_timeouts(d);
	if (omnifs_inodes_new(&d->fs.inodes) < 0) {
		fail("out of memory");
		return -1;
	}
	return 0;
}

/*
 * auto_unmount races with the kernel. When the daemon is killed, its
 * descriptors are released last-closed first, so the socket to the
 * fusermount3 helper (opened after /dev/fuse) goes before /dev/fuse: the
 * helper can wake, open the mount point while the connection still lives,
 * get ECONNABORTED instead of ENOTCONN, and leave the mount dead. A
 * duplicate of the /dev/fuse descriptor at a high number is closed after
 * every other, so released before them: the connection is gone by the
 * time the helper looks.
 */
static void hold_fuse_device(struct daemon *d)
{
	struct rlimit rl;
	int high = 1023;

	if (d->cli.no_auto_unmount)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
	    rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur <= (rlim_t)high)
		high = (int)rl.rlim_cur - 1;
	d->fuse_dup = fcntl(fuse_session_fd(d->fs.se), F_DUPFD_CLOEXEC, high);
}

/*
 * fuse_session_mount(). With auto_unmount, libfuse leaves a fusermount3
 * process running for the life of the mount, holding the descriptors it
 * inherited: the caller's terminal or, in out=$(omnifs ...), a pipe that
 * would then never end. So in the background it runs with stdin and
 * stdout on /dev/null and stderr in an unlinked file, whose text (what
 * fusermount3 said) goes into the error when the mount fails.
 */
static int mount_session(struct daemon *d)
{
	int null = -1, err = -1, saved[3] = { -1, -1, -1 }, rc;
	char why[512] = "";

	if (!d->opts.foreground) {
		null = open("/dev/null", O_RDWR | O_CLOEXEC);
		err = omni__temp_fd("omnifs-mount");
		for (int fd = 0; fd < 3 && null >= 0; fd++) {
			saved[fd] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
			dup2(fd == 2 && err >= 0 ? err : null, fd);
		}
	}
	rc = fuse_session_mount(d->fs.se, d->mountpoint);
	for (int fd = 0; fd < 3; fd++)
		if (saved[fd] >= 0) {
			dup2(saved[fd], fd);
			close(saved[fd]);
		}
	if (rc != 0 && err >= 0) {
		ssize_t n = pread(err, why, sizeof(why) - 1, 0);
		why[n > 0 ? n : 0] = '\0';
		why[strcspn(why, "\n")] = '\0';
	}
	if (null >= 0)
		close(null);
	if (err >= 0)
		close(err);
	if (rc != 0) {
		fail("cannot mount on %s: %s", d->mountpoint,
		     why[0] ? why
		            : "is /dev/fuse there, and fusermount3? (see the "
		              "log)");
		return -1;
	}
	d->mounted = true;
	hold_fuse_device(d);
	return 0;
}

/* Create the FUSE session and mount it. */
static int mount_fs(struct daemon *d)
{
	char fsopts[512];
	bool shared = false;

	/* The kernel's own permission checks cost a GETATTR of the parent
	 * directory before every create and unlink. A host-directory backend
	 * does not need them for a private mount: the daemon is the mounting
	 * user, so the host file system already checks every call as that
	 * user (access(2) is answered by op_access). They stay on for remote
	 * backends and for mounts shared with -o allow_other. */
	for (int i = 0; i < d->args.argc; i++)
		if (strstr(d->args.argv[i], "allow_other"))
			shared = true;
	snprintf(fsopts, sizeof(fsopts), "-ofsname=omnifs:%s,subtype=omnifs%s",
	         d->project,
	         d->fs.host_files && !shared ? "" : ",default_permissions");
	if (fuse_opt_add_arg(&d->args, fsopts) != 0) {
		fail("out of memory");
		return -1;
	}
	d->fs.se =
	    fuse_session_new(&d->args, &omnifs_ops, sizeof(omnifs_ops), &d->fs);
	if (!d->fs.se) {
		fail("cannot create the FUSE session (bad -o option?)");
		return -1;
	}
	if (fuse_set_signal_handlers(d->fs.se) != 0) {
		fail("cannot install signal handlers");
		return -1;
	}
	d->handlers = true;
	return mount_session(d);
}

/* The control socket for omni-exec, and the backend's change watch. */
static int start_control(struct daemon *d)
{
	struct omnifs_ctl_hooks hooks = {
		.before_exec = hook_before_exec,
		.after_exec = hook_after_exec,
		.control = hook_control,
		.after_save = hook_after_save,
		.invalidate_path = hook_invalidate_path,
		.payload = d,
	};

	if (omnifs_ctl_start(&d->ctl, d->fs.backend, d->sock, &hooks) < 0) {
		fail("control socket %s: %s", d->sock, omni_error_last());
		return -1;
	}
	if (omni_vfs_caps(d->fs.backend) & OMNI_CAP_WATCH) {
		d->watching =
		    omni_vfs_watch(d->fs.backend, on_change, &d->fs) == 0;
		if (!d->watching)
			omni_log(OMNI_LOG_DEBUG, "no change watch: %s",
			         omni_error_last());
	}
	return 0;
}

/* The session file --list reads (sessions.h). Not fatal: the mount works
 * without it. */
static void publish(struct daemon *d)
{
	d->info = (struct omnifs_session_info){
		.project = d->project,
		.backend = d->cli.backend ? d->cli.backend : "local",
		.mountpoint = d->mountpoint,
		.state = omni_state_name(omni__session_state(d->session)),
		.socket = d->sock,
		.pid = getpid(),
		.started = (long long)time(NULL),
	};
	pthread_mutex_lock(&d->info_lock);
	d->published = omnifs_session_publish(&d->info) == 0;
	if (!d->published)
		omni_log(OMNI_LOG_WARN, "session file: %s", omni_error_last());
	pthread_mutex_unlock(&d->info_lock);
}

/* Unless -f: logs to syslog, no terminal, cwd "/". Then the parent is
 * told the mount works. */
static void go_background(struct daemon *d)
{
	if (!d->opts.foreground) {
		omni_log_set_sink(syslog_sink, NULL);
		openlog("omnifs", LOG_PID, LOG_DAEMON);
		detach_stdio();
		if (chdir("/") < 0) {
			/* Not fatal: the data path is absolute. */
		}
	}
	report("");
}

/* Serve FUSE requests until the mount goes away or a signal comes. */
static int serve(struct daemon *d)
{
	d->loop = fuse_loop_cfg_create();
	if (!d->loop) {
		omni_log(OMNI_LOG_ERROR, "out of memory");
		return 1;
	}
	fuse_loop_cfg_set_clone_fd(d->loop, (unsigned int)d->opts.clone_fd);
	fuse_loop_cfg_set_idle_threads(d->loop, d->opts.max_idle_threads);
	/* libfuse leaves max_threads at UINT_MAX unless -o max_threads=N
	 * was given; pass it on only when it was. */
	if (d->opts.max_threads > 0 && d->opts.max_threads <= 100000)
		fuse_loop_cfg_set_max_threads(d->loop, d->opts.max_threads);
	int rc = d->opts.singlethread ? fuse_session_loop(d->fs.se)
	                              : fuse_session_loop_mt(d->fs.se, d->loop);
	return rc == 0 ? 0 : 1;
}

/* Undo mount_fs() and start_control(), whatever they got to. */
static void unmount_fs(struct daemon *d)
{
	if (!d->fs.se)
		return;
	omnifs_ctl_stop(d->ctl);
	d->ctl = NULL;
	if (d->published)
		omnifs_session_unpublish(d->project);
	d->published = false;
	if (d->fuse_dup >= 0)
		close(d->fuse_dup);
	d->fuse_dup = -1;
	if (d->mounted)
		fuse_session_unmount(d->fs.se);
	if (d->handlers)
		fuse_remove_signal_handlers(d->fs.se);
	/* Notifications are pointless now; stop sending them (this waits
	 * for one in progress). */
	if (d->watching)
		omni_vfs_watch(d->fs.backend, NULL, NULL);
	struct fuse_session *se = d->fs.se;
	d->fs.se = NULL;
	fuse_session_destroy(se);
	fuse_loop_cfg_destroy(d->loop);
	d->loop = NULL;
}

/* Shut the session down (a snapshot is saved) and free it; ret becomes 1
 * when the shutdown fails. */
static int stop_session(struct daemon *d, int ret)
{
	if (d->session) {
		if (omni__session_shutdown(d->session) < 0) {
			omni_log(OMNI_LOG_ERROR, "shutdown: %s",
			         omni_error_last());
			ret = 1;
		}
		omni__session_free(d->session);
		d->session = NULL;
	}
	omnifs_inodes_free(d->fs.inodes);
	d->fs.inodes = NULL;
	if (d->overlay)
		omnifs_overlay_unmount(d->overlay);
	free(d->overlay);
	d->overlay = NULL;
	return ret;
}

/* From the fork to the end of the session; the exit code. */
static int run(struct daemon *d)
{
	int ret = 1;

	if (!d->opts.foreground && daemonize_early() < 0)
		return 1;
	if (omni_global_init() < 0) {
		fail("%s", omni_error_last());
		return 1;
	}
	if (check_not_mounted(d) == 0) {
		if (start_session(d) == 0 && mount_fs(d) == 0 &&
		    start_control(d) == 0) {
			publish(d);
			go_background(d);
			ret = serve(d);
		}
		unmount_fs(d);
		ret = stop_session(d, ret);
	}
	omni_global_shutdown();
	return ret;
}

/* What the command line left to free; the parent learns of a failure. */
static void finish(struct daemon *d, int ret)
{
	if (report_fd >= 0)
		report(ret == 0 ? "" : "failed to start");
	omnifs_cli_free(&d->cli);
	free(d->opts.mountpoint);
	fuse_opt_free_args(&d->args);
}

int main(int argc, char *argv[])
{
	struct daemon d = {
		.args = FUSE_ARGS_INIT(argc, argv),
		.fs = { .attr_timeout = 1.0, .entry_timeout = 1.0 },
		.bopts = OMNI_BACKEND_OPTIONS_INIT,
		.dopts = OMNI_DOCKER_OPTIONS_INIT,
		.eopts = OMNI_E2B_OPTIONS_INIT,
		.copts = OMNI__CACHE_OPTIONS_INIT,
		.info_lock = PTHREAD_MUTEX_INITIALIZER,
		.fuse_dup = -1,
	};
	int ret;

	signal(SIGPIPE, SIG_IGN);
	omni_log_set_prefix("omnifs");
	if (omnifs_cli_parse(&d.args, &d.cli) != 0) {
		finish(&d, 2);
		return 2;
	}
	if (fuse_parse_cmdline(&d.args, &d.opts) != 0)
		return 2;
	ret = configure(&d, argv[0]);
	if (ret == GO_ON)
		ret = run(&d);
	finish(&d, ret);
	return ret;
}
