/*
 * cli.c - omnifs's command line (see cli.h).
 *
 * One table (cli_spec) for libfuse's option parser: each option appears in
 * its long forms ("--backend=%s", "--backend %s") and its -o form
 * ("backend=%s"), so the two cannot drift apart. What the table does not
 * name goes to cli_proc(): --env in any form, the positional arguments,
 * and -o options, of which the fstab-only ones are dropped and the rest
 * are left for libfuse (which rejects what it does not know).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

enum { KEY_ENV };

#define CLI_OPT(t, p)                                                          \
	{                                                                      \
		t, offsetof(struct omnifs_cli, p), 1                           \
	}
/* "--NAME %s", "--NAME=%s" and -o "OPT=%s" for one field. libfuse runs
 * every template that matches, and "--NAME %s" also takes "--NAME=V" (as
 * "=V"): the "=" form comes after it, so its value is the one kept. */
#define CLI_STR(name, opt, p)                                                  \
	CLI_OPT("--" name " %s", p), CLI_OPT("--" name "=%s", p),              \
	    CLI_OPT(opt "=%s", p)

static const struct fuse_opt cli_spec[] = {
	CLI_STR("backend", "backend", backend),
	CLI_STR("project", "project", project),
	CLI_STR("state", "state", state),
	CLI_STR("image", "image", image),
	CLI_STR("network", "network", network),
	CLI_STR("docker-files", "docker_files", docker_files),
	CLI_STR("data-path", "data_path", data_path),
	CLI_STR("memory", "memory", memory),
	CLI_STR("cpus", "cpus", cpus),
	CLI_STR("pids-limit", "pids_limit", pids_limit),
	CLI_STR("template", "template", template),
	CLI_STR("request-timeout", "request_timeout", request_timeout),
	CLI_STR("journal", "journal", journal),
	CLI_STR("log", "log", log),
	CLI_STR("since", "since", since),
	CLI_STR("from", "from", from),
	CLI_STR("overlay", "overlay", overlay),
	CLI_STR("diff", "diff", diff),
	CLI_STR("apply", "apply", apply),
	CLI_OPT("attr_timeout=%s", attr_timeout),
	CLI_OPT("entry_timeout=%s", entry_timeout),
	CLI_OPT("negative_timeout=%s", negative_timeout),
	CLI_OPT("cache_ttl=%s", cache_ttl),
	CLI_STR("cache-mode", "cache_mode", cache_mode),
	CLI_OPT("--quiet", quiet),
	CLI_OPT("-q", quiet),
	CLI_OPT("quiet", quiet),
	CLI_OPT("--verbose", verbose),
	CLI_OPT("verbose", verbose),
	CLI_OPT("--list", list),
	CLI_OPT("--json", json),
	CLI_OPT("no_auto_unmount", no_auto_unmount),
	CLI_OPT("writeback", writeback),
	CLI_OPT("no_writeback", no_writeback),
	/* Takes "--env K=V" (as "--envK=V") and "--env=K=V" alike. */
	FUSE_OPT_KEY("--env ", KEY_ENV),
	FUSE_OPT_KEY("-e ", KEY_ENV),
	FUSE_OPT_KEY("env=", KEY_ENV),
	/* For mount(8) only (mount.fuse3 drops most of them already). */
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END,
};

/* "--env=K=V", "--envK=V" ("--env K=V"), "-eK=V" or "env=K=V". */
static int add_env(struct omnifs_cli *cli, const char *arg)
{
	static const char *const prefix[] = { "--env=", "--env", "-e", "env=" };
	const char *kv = arg;

	for (size_t i = 0; i < sizeof(prefix) / sizeof(*prefix); i++)
		if (strncmp(arg, prefix[i], strlen(prefix[i])) == 0) {
			kv = arg + strlen(prefix[i]);
			break;
		}
	if (!strchr(kv, '=') || kv[0] == '=') {
		fprintf(stderr, "omnifs: --env wants KEY=VALUE, not '%s'\n",
		        kv);
		return -1;
	}
	char **env = realloc(cli->env, (cli->nenv + 2) * sizeof(*env));
	if (!env)
		return -1;
	cli->env = env;
	if (!(env[cli->nenv] = strdup(kv)))
		return -1;
	env[++cli->nenv] = NULL;
	return 0;
}

static int cli_proc(void *data, const char *arg, int key,
                    struct fuse_args *outargs)
{
	struct omnifs_cli *cli = data;

	(void)outargs;
	switch (key) {
	case KEY_ENV:
		return add_env(cli, arg);
	case FUSE_OPT_KEY_NONOPT:
		if (cli->npos == 2) {
			fprintf(stderr,
			        "omnifs: too many arguments: '%s' (give "
			        "[PROJECT] MOUNTPOINT)\n",
			        arg);
			return -1;
		}
		if (!(cli->pos[cli->npos] = strdup(arg)))
			return -1;
		cli->npos++;
		return 0;
	case FUSE_OPT_KEY_OPT:
		/* x-systemd.automount and the like: for mount(8). */
		return strncmp(arg, "x-", 2) == 0 ? 0 : 1;
	default:
		return 1;
	}
}

int omnifs_cli_parse(struct fuse_args *args, struct omnifs_cli *cli)
{
	if (fuse_opt_parse(args, cli, cli_spec, cli_proc) != 0)
		return 2;
	/* A daemon killed with SIGKILL leaves no dead mount point behind:
	 * fusermount3 unmounts when the FUSE device closes. */
	if (!cli->no_auto_unmount &&
	    fuse_opt_add_arg(args, "-oauto_unmount") != 0) {
		fprintf(stderr, "omnifs: out of memory\n");
		return 2;
	}
	return 0;
}

const char *omnifs_cli_mountpoint(const struct omnifs_cli *cli)
{
	return cli->npos ? cli->pos[cli->npos - 1] : NULL;
}

int omnifs_cli_project(const struct omnifs_cli *cli, const char **out)
{
	const char *source = cli->npos == 2 ? cli->pos[0] : NULL;

	/* mount(8) shows our mounts as "omnifs:PROJECT": take that too. */
	if (source && strncmp(source, "omnifs:", 7) == 0)
		source += 7;
	if (source && cli->project && strcmp(source, cli->project) != 0) {
		fprintf(stderr,
		        "omnifs: two projects given: '%s' and --project %s\n",
		        source, cli->project);
		return 2;
	}
	*out = source ? source : cli->project;
	return 0;
}

void omnifs_cli_free(struct omnifs_cli *cli)
{
	char *strings[] = {
		cli->backend,       cli->project,
		cli->state,         cli->image,
		cli->network,       cli->docker_files,
		cli->data_path,     cli->memory,
		cli->cpus,          cli->pids_limit,
		cli->template,      cli->attr_timeout,
		cli->entry_timeout, cli->negative_timeout,
		cli->cache_ttl,     cli->request_timeout,
		cli->journal,       cli->log,
		cli->since,         cli->from,
		cli->overlay,       cli->diff,
		cli->apply,         cli->cache_mode,
		cli->pos[0],        cli->pos[1],
	};

	/* fuse_opt_parse() strdup()s every string option. */
	for (size_t i = 0; i < sizeof(strings) / sizeof(*strings); i++)
		free(strings[i]);
	for (size_t i = 0; i < cli->nenv; i++)
		free(cli->env[i]);
	free(cli->env);
	memset(cli, 0, sizeof(*cli));
}

int omnifs_parse_double(const char *s, double *out, const char *what)
{
	char *end;

	if (!s)
		return 0;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || v < 0) {
		fprintf(stderr, "omnifs: bad %s '%s'\n", what, s);
		return -1;
	}
	*out = v;
	return 0;
}

int omnifs_parse_size(const char *s, long long *out, const char *what)
{
	char *end;

	if (!s)
		return 0;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	long long mul = 1;
	if (*end == 'k' || *end == 'K')
		mul = 1024;
	else if (*end == 'm' || *end == 'M')
		mul = 1024 * 1024;
	else if (*end == 'g' || *end == 'G')
		mul = 1024LL * 1024 * 1024;
	if (mul != 1)
		end++;
	if (errno || end == s || *end || v < 0 || v > LLONG_MAX / mul) {
		fprintf(stderr, "omnifs: bad %s '%s'\n", what, s);
		return -1;
	}
	*out = v * mul;
	return 0;
}

/* --- --help --------------------------------------------------------------- */

/* The -o options of the mount and of FUSE, second half of --help. */
static void usage_o_options(void)
{
	fputs(
	    "omnifs -o options:\n"
	    "    -o attr_timeout=S      seconds the kernel keeps attributes "
	    "(local,\n"
	    "                           docker: 60, at most 1 without the "
	    "change watch;\n"
	    "                           e2b: cache_ttl)\n"
	    "    -o entry_timeout=S     seconds the kernel keeps names "
	    "(likewise)\n"
	    "    -o negative_timeout=S  seconds the kernel remembers missing "
	    "names\n"
	    "                           (likewise; 0 without the change "
	    "watch)\n"
	    "    -o writeback           local, docker: the kernel's writeback "
	    "cache (off by\n"
	    "                           default: see omnifs(1), CACHING)\n"
	    "    -o no_writeback        local, docker: no writeback cache (the "
	    "default)\n"
	    "    -o cache_ttl=S         remote backends (e2b): seconds "
	    "attributes,\n"
	    "                           listings and file content are trusted "
	    "(5);\n"
	    "                           also the kernel's timeouts unless "
	    "given\n"
	    "    -o cache_mode=M        remote backends (e2b): 'writes' "
	    "(default) keeps\n"
	    "                           what close writes on local disk "
	    "and uploads it\n"
	    "                           in the background; 'close' uploads "
	    "at close\n"
	    "                           (also --cache-mode=M)\n"
	    "    -o no_auto_unmount     keep a dead mount point when the "
	    "daemon is\n"
	    "                           killed (auto_unmount is on by "
	    "default)\n"
	    "    -o noauto, user, users, nouser, auto, _netdev, nofail, "
	    "defaults,\n"
	    "       x-*, comment=*      fstab options for mount(8); "
	    "ignored\n"
	    "\n"
	    "An /etc/fstab line (mount.fuse3 starts omnifs PROJECT "
	    "MOUNTPOINT -o ...):\n"
	    "    myproject /home/me/myproject fuse.omnifs "
	    "noauto,user,backend=docker,state=git 0 0\n"
	    "\n"
	    "Secrets (E2B_API_KEY, tokens) are read from the environment "
	    "only. Commands\n"
	    "of the local backend get the environment without the "
	    "credentials\n"
	    "(E2B_*, GOOGLE_*, OMNIAGENTS_*, AWS_*, GITHUB_TOKEN, *_TOKEN, "
	    "*_API_KEY,\n"
	    "*_SECRET*); --env passes any variable on purpose.\n"
	    "\n",
	    stdout);
}

void omnifs_cli_usage(const char *prog)
{
	printf(
	    "usage: %s [options] [PROJECT] MOUNTPOINT\n"
	    "       %s --list [--json]\n"
	    "       %s --log PROJECT [--since T] [--json]\n"
	    "       %s --overlay DIR [options] MOUNTPOINT\n"
	    "       %s --diff PROJECT | --apply PROJECT\n"
	    "       mount -t fuse.omnifs PROJECT MOUNTPOINT -o OPTIONS\n"
	    "\n"
	    "Mount the workspace of a sandbox session on MOUNTPOINT. Run "
	    "commands\n"
	    "in the same session with omni-exec; unmount with fusermount3 -u "
	    "(or\n"
	    "umount). PROJECT is the project id, as --project gives it.\n"
	    "\n"
	    "omnifs options (each also as -o NAME=VALUE, NAME in "
	    "brackets):\n"
	    "    --backend=NAME         [backend] local, docker or e2b "
	    "(default: local)\n"
	    "    --project=ID           [project] project id (default: "
	    "PROJECT, else\n"
	    "                           MOUNTPOINT's name)\n"
	    "    --state=NAME           [state] state manager: none, git or "
	    "gcs\n"
	    "                           (default: none); git:REMOTE and\n"
	    "                           gcs://BUCKET[/PREFIX] name the remote "
	    "or bucket\n"
	    "                           (else from the environment)\n"
	    "    --data-path=DIR        [data_path] where workspaces live "
	    "(default:\n"
	    "                           $OMNI_DATA_PATH or ./data); the "
	    "workspace is DIR/ID\n"
	    "    -e, --env=KEY=VALUE    [env] environment for the sandbox "
	    "(repeatable)\n"
	    "    --image=IMAGE          [image] docker: image (default\n"
	    "                           ghcr.io/astral-sh/uv:debian)\n"
	    "    --network=MODE         [network] docker: network mode (none, "
	    "bridge, ...)\n"
	    "    --docker-files=MODE    [docker_files] docker: bind (the data "
	    "folder\n"
	    "                           bind-mounted), agent (a volume, files "
	    "and\n"
	    "                           commands over the Engine API: remote "
	    "daemons)\n"
	    "                           or auto (default: probe the daemon)\n"
	    "    --memory=BYTES         [memory] docker: memory limit (k, m, g "
	    "suffixes)\n"
	    "    --cpus=N               [cpus] docker: CPU limit\n"
	    "    --pids-limit=N         [pids_limit] docker: process limit\n"
	    "    --template=NAME        [template] e2b: sandbox template "
	    "(default: base)\n"
	    "    --request-timeout=S    [request_timeout] e2b: bound of each "
	    "request (10);\n"
	    "                           calls on the mount fail after it when "
	    "the\n"
	    "                           sandbox does not answer\n"
	    "    -q, --quiet            [quiet] no progress output\n"
	    "    --verbose              [verbose] log what the library does\n"
	    "    --list                 list this user's running sessions "
	    "(project,\n"
	    "                           backend, mount point, pid, uptime, "
	    "state, last save)\n"
	    "    --json                 with --list: one JSON array; with "
	    "--log: one\n"
	    "                           JSON object a line\n"
	    "    --from=PROJECT[@ID]    [from] start from a copy of "
	    "PROJECT's checkpoint ID\n"
	    "                           (default: its newest) in a new, "
	    "empty project; on\n"
	    "                           any backend\n"
	    "    --overlay=DIR          [overlay] local: show DIR, keep what "
	    "changes in the\n"
	    "                           project's data folder; DIR is never "
	    "written (kernel\n"
	    "                           overlayfs: root or CAP_SYS_ADMIN)\n"
	    "    --diff=PROJECT         the changes of PROJECT's overlay "
	    "against DIR, as a\n"
	    "                           unified diff (deletions, binary files "
	    "named)\n"
	    "    --apply=PROJECT        write them into DIR (PROJECT "
	    "unmounted); nothing is\n"
	    "                           written when DIR changed a file "
	    "meanwhile\n"
	    "    --journal=on|off       [journal] record every change and "
	    "command in\n"
	    "                           DIR/.omnifs-journal/ID.sqlite "
	    "(default: "
	    "on)\n"
	    "    --log=PROJECT          print PROJECT's journal (what the "
	    "agent did)\n"
	    "    --since=T              with --log: only records of the last "
	    "T (30s, 10m,\n"
	    "                           2h, 1d) or since an ISO time "
	    "(2026-01-31T12:00:00Z)\n"
	    "    -h, --help             this help\n"
	    "    -V, --version          version\n"
	    "\n",
	    prog, prog, prog, prog, prog);
	usage_o_options();
}
