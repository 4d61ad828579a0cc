/*
 * cli.h - omnifs's command line (fs/ only).
 *
 *	omnifs [options] [PROJECT] MOUNTPOINT
 *	omnifs --list [--json]
 *	mount -t fuse.omnifs PROJECT MOUNTPOINT -o OPTIONS   (mount.fuse3)
 *
 * Every option has a long form and an -o form: --data-path=DIR is also
 * -o data_path=DIR, --env K=V is -o env=K=V, --quiet is -o quiet. The
 * options of /etc/fstab that only mount(8) reads (noauto, user, users,
 * nouser, auto, _netdev, nofail, defaults, x-*, comment=*) are accepted and
 * ignored, as sshfs does, so an fstab line can carry them. Two positional
 * arguments are the project and the mount point, which is how mount.fuse3
 * starts a file system helper; one is the mount point.
 *
 * omnifs_cli_parse() takes what is omnifs's out of args and leaves the
 * FUSE options for fuse_parse_cmdline() and fuse_session_new(), with
 * -o auto_unmount added unless -o no_auto_unmount was given.
 */
#ifndef OMNIFS_CLI_H
#define OMNIFS_CLI_H

#include <stddef.h>

#include <fuse_lowlevel.h>

struct omnifs_cli {
	char *backend;
	char *project;
	char *state;
	char *image;
	char *network;
	char *docker_files;
	char *data_path;
	char *memory;
	char *cpus;
	char *pids_limit;
	char *template;
	char *attr_timeout;
	char *entry_timeout;
	char *negative_timeout;
	char *cache_ttl;
	char *request_timeout;
	/* The journal (journal_cmd.h): -o journal=on|off, --log PROJECT,
	 * --since T. */
	char *journal;
	char *log;
	char *since;
	/* --from PROJECT[@CHECKPOINT] (fork.h). */
	char *from;
	/* --overlay DIR, --diff PROJECT, --apply PROJECT (overlay.h). */
	char *overlay;
	char *diff;
	char *apply;
	char *cache_mode;
	char **env;
	size_t nenv;
	/* The positional arguments: [PROJECT] MOUNTPOINT. */
	char *pos[2];
	int npos;
	int quiet;
	int verbose;
	int list;
	int json;
	int no_auto_unmount;
	int writeback;
	int no_writeback;
};

/*
 * Parse args into cli (zeroed by the caller); omnifs's options are taken
 * out of args. 0, or 2 after a message on stderr (a bad command line).
 */
int omnifs_cli_parse(struct fuse_args *args, struct omnifs_cli *cli);

/* The mount point given (NULL: none), and the project named by the
 * command line (the PROJECT argument or --project; NULL: none). A project
 * given both ways must agree: 2 after a message, else 0. */
const char *omnifs_cli_mountpoint(const struct omnifs_cli *cli);
int omnifs_cli_project(const struct omnifs_cli *cli, const char **out);

/* --help text (omnifs's own; the caller adds libfuse's). */
void omnifs_cli_usage(const char *prog);

/* Free what parsing allocated; cli is zeroed. */
void omnifs_cli_free(struct omnifs_cli *cli);

/* "1.5" into *out (>= 0); "" and NULL leave *out. -1 after a message
 * naming what. */
int omnifs_parse_double(const char *s, double *out, const char *what);
/* "512m" into bytes (k, m, g suffixes, powers of 1024), likewise. */
int omnifs_parse_size(const char *s, long long *out, const char *what);

#endif
