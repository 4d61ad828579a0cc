/*
 * tests/fs/test_cli.c - omnifs's command line as users expect it.
 *
 *	omnifs_options  every option has an -o form; fstab-only options are
 *	                dropped; [PROJECT] MOUNTPOINT; auto_unmount by default
 *	env_secrets     local commands do not inherit the daemon's
 *	                credentials (issue 11, attack 6), through the library
 *	                and through omni-exec on a mount; --env and -e pass
 *	                them on purpose
 *	mount_helper    mount -t fuse.omnifs and mount -T FSTAB (mount.fuse3
 *	                starts "omnifs PROJECT MNT -o ..."), unmounted with
 *	                umount
 *
 * mount(8) drops PATH before it runs mount.fuse3, whose shell then finds
 * omnifs in the default PATH only. So the mount_helper tests run in a
 * private mount namespace (unshare -m) where a directory holding a link to
 * build/omnifs is bind-mounted over /usr/local/sbin: nothing on the host
 * changes, and the mounts they make are seen by nobody else.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "helpers.h"
#include "mount_helpers.h"
#include "omni/omni.h"
#include "cli.h"

/* --- omnifs_options ------------------------------------------------------- */

TestSuite(omnifs_options, .timeout = 30);

static struct omnifs_cli cli;
static struct fuse_args args;

/* Parse a NULL-terminated argument list (argv[0] added) into cli/args. */
static int parse(const char *const *words)
{
	char *argv[64] = { "omnifs" };
	int argc = 1;

	for (const char *const *w = words; *w && argc < 63; w++)
		argv[argc++] = (char *)*w;
	memset(&cli, 0, sizeof(cli));
	args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	return omnifs_cli_parse(&args, &cli);
}

#define PARSE(...) parse((const char *const[]){ __VA_ARGS__, NULL })

/* What parsing left for libfuse, as one string. */
static void rest(char *out, size_t size)
{
	out[0] = '\0';
	for (int i = 1; i < args.argc; i++) {
		strncat(out, args.argv[i], size - strlen(out) - 2);
		strncat(out, " ", size - strlen(out) - 1);
	}
}

static void done(void)
{
	omnifs_cli_free(&cli);
	fuse_opt_free_args(&args);
}

Test(omnifs_options, every_option_has_an_o_form)
{
	static const char *const o =
	    "backend=docker,image=img:1,state=git:/r.git,project=p,"
	    "data_path=/d,env=K=V,env=A=b\\,c,network=none,memory=512m,"
	    "docker_files=agent,"
	    "cpus=1.5,pids_limit=64,template=t,request_timeout=3,"
	    "cache_ttl=7,attr_timeout=2,entry_timeout=2,negative_timeout=1,"
	    "quiet,verbose";

	cr_assert_eq(PARSE("-o", o, "/mnt"), 0);
	cr_assert_str_eq(cli.backend, "docker");
	cr_assert_str_eq(cli.image, "img:1");
	cr_assert_str_eq(cli.state, "git:/r.git");
	cr_assert_str_eq(cli.project, "p");
	cr_assert_str_eq(cli.data_path, "/d");
	cr_assert_eq(cli.nenv, 2);
	cr_assert_str_eq(cli.env[0], "K=V");
	cr_assert_str_eq(cli.env[1], "A=b,c");
	cr_assert_str_eq(cli.network, "none");
	cr_assert_str_eq(cli.docker_files, "agent");
	cr_assert_str_eq(cli.memory, "512m");
	cr_assert_str_eq(cli.cpus, "1.5");
	cr_assert_str_eq(cli.pids_limit, "64");
	cr_assert_str_eq(cli.template, "t");
	cr_assert_str_eq(cli.request_timeout, "3");
	cr_assert_str_eq(cli.cache_ttl, "7");
	cr_assert_str_eq(cli.attr_timeout, "2");
	cr_assert(cli.quiet && cli.verbose);
	cr_assert_str_eq(omnifs_cli_mountpoint(&cli), "/mnt");
	done();
}

Test(omnifs_options, long_forms_still_work)
{
	cr_assert_eq(PARSE("--backend", "docker", "--data-path=/d", "--env",
	                   "A=1", "-e", "B=2", "--env=C=3", "--pids-limit", "9",
	                   "-q", "/mnt"),
	             0);
	cr_assert_str_eq(cli.backend, "docker");
	cr_assert_str_eq(cli.data_path, "/d");
	cr_assert_eq(cli.nenv, 3);
	cr_assert_str_eq(cli.env[0], "A=1");
	cr_assert_str_eq(cli.env[1], "B=2");
	cr_assert_str_eq(cli.env[2], "C=3");
	cr_assert_str_eq(cli.pids_limit, "9");
	cr_assert(cli.quiet);
	done();
}

Test(omnifs_options, fstab_options_are_dropped_fuse_ones_kept)
{
	char left[1024];

	/* What mount.fuse3 passes on for an fstab line, and more. */
	cr_assert_eq(PARSE("proj", "/mnt", "-o",
	                   "noauto,user,users,nouser,auto,_netdev,nofail,"
	                   "defaults,x-systemd.automount,x-gvfs-hide,"
	                   "comment=systemd.x,backend=local,dev,suid,"
	                   "allow_other"),
	             0);
	rest(left, sizeof(left));
	static const char *const gone[] = { "noauto",  "user",     "_netdev",
		                            "nofail",  "defaults", "x-",
		                            "comment", "backend",  "proj",
		                            "/mnt",    NULL };
	for (const char *const *g = gone; *g; g++)
		cr_assert_null(strstr(left, *g), "'%s' left in '%s'", *g, left);
	cr_assert_not_null(strstr(left, "allow_other"), "%s", left);
	cr_assert_not_null(strstr(left, "dev,suid"), "%s", left);
	cr_assert_not_null(strstr(left, "auto_unmount"), "%s", left);
	cr_assert_str_eq(cli.backend, "local");
	done();
}

Test(omnifs_options, project_and_mount_point)
{
	const char *p;

	cr_assert_eq(PARSE("/mnt/x"), 0);
	cr_assert_str_eq(omnifs_cli_mountpoint(&cli), "/mnt/x");
	cr_assert_eq(omnifs_cli_project(&cli, &p), 0);
	cr_assert_null(p);
	done();
	cr_assert_eq(PARSE("myproj", "/mnt/x"), 0);
	cr_assert_str_eq(omnifs_cli_mountpoint(&cli), "/mnt/x");
	cr_assert_eq(omnifs_cli_project(&cli, &p), 0);
	cr_assert_str_eq(p, "myproj");
	done();
	/* As mount(8) shows it, and agreeing with --project. */
	cr_assert_eq(PARSE("omnifs:myproj", "--project", "myproj", "/m"), 0);
	cr_assert_eq(omnifs_cli_project(&cli, &p), 0);
	cr_assert_str_eq(p, "myproj");
	done();
	cr_assert_eq(PARSE("a", "-o", "project=b", "/m"), 0);
	cr_assert_eq(omnifs_cli_project(&cli, &p), 2);
	done();
	cr_assert_eq(PARSE("a", "b", "c"), 2);
	done();
	cr_assert_eq(PARSE("--env", "novalue", "/m"), 2);
	done();
}

Test(omnifs_options, no_auto_unmount_turns_it_off)
{
	char left[1024];

	cr_assert_eq(PARSE("-o", "no_auto_unmount", "/m"), 0);
	rest(left, sizeof(left));
	cr_assert_null(strstr(left, "auto_unmount"), "%s", left);
	cr_assert(cli.no_auto_unmount);
	done();
}

Test(omnifs_options, numbers)
{
	double d = -1;
	long long n = -1;

	cr_assert_eq(omnifs_parse_double("1.5", &d, "x"), 0);
	cr_assert_float_eq(d, 1.5, 1e-9);
	cr_assert_eq(omnifs_parse_double("-1", &d, "x"), -1);
	cr_assert_eq(omnifs_parse_double("1s", &d, "x"), -1);
	cr_assert_eq(omnifs_parse_size("2k", &n, "x"), 0);
	cr_assert_eq(n, 2048);
	cr_assert_eq(omnifs_parse_size("3G", &n, "x"), 0);
	cr_assert_eq(n, 3LL << 30);
	cr_assert_eq(omnifs_parse_size("9999999999999g", &n, "x"), -1);
	cr_assert_eq(omnifs_parse_size("", &n, "x"), -1);
}

/* --- env_secrets ---------------------------------------------------------- */

static const char *const secret_names[] = {
	"E2B_API_KEY",
	"GITHUB_TOKEN",
	"MY_API_KEY",
	"AWS_SECRET_ACCESS_KEY",
	"OMNIAGENTS_GITHUB_API_KEY",
	"GOOGLE_APPLICATION_CREDENTIALS",
	NULL,
};

/* Put the credentials and a harmless variable in this process's
 * environment (a daemon started from it inherits them). */
static void plant_secrets(void)
{
	for (const char *const *n = secret_names; *n; n++)
		cr_assert_eq(setenv(*n, "leaked", 1), 0);
	cr_assert_eq(setenv("OMNI_HARMLESS", "harmless", 1), 0);
}

static void secrets_fini(void)
{
	for (const char *const *n = secret_names; *n; n++)
		unsetenv(*n);
	unsetenv("OMNI_HARMLESS");
}

TestSuite(env_secrets, .fini = secrets_fini, .timeout = 60);

/* The next line of text after p, or NULL. */
static const char *next_line(const char *p)
{
	const char *nl = strchr(p, '\n');

	return nl && nl[1] ? nl + 1 : NULL;
}

/* Does the output of env(1) hold NAME=VALUE on a line of its own? */
static bool has_line(const char *out, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = *out ? out : NULL; p; p = next_line(p))
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || !p[n]))
			return true;
	return false;
}

/* Does it define NAME at all? */
static bool has_name(const char *out, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = *out ? out : NULL; p; p = next_line(p))
		if (strncmp(p, name, n) == 0 && p[n] == '=')
			return true;
	return false;
}

static void assert_only_harmless(const char *out)
{
	cr_assert(has_line(out, "OMNI_HARMLESS=harmless"), "%s", out);
	for (const char *const *n = secret_names; *n; n++)
		cr_assert(!has_name(out, *n), "%s reached the command", *n);
}

Test(env_secrets, library_local_commands_get_no_credentials)
{
	struct omni_fixture fx = { 0 };
	struct omni_command_result res;

	plant_secrets();
	omni_fixture_start(&fx);
	omni_assert_ok(omni_backend_execute_command(fx.b, "env", 10, &res));
	cr_assert_eq(res.exit_code, 0);
	assert_only_harmless(res.output);
	omni_command_result_finish(&res);
	omni_fixture_finish(&fx);
}

Test(env_secrets, library_env_option_passes_one_on_purpose)
{
	struct omni_fixture fx = { 0 };
	struct omni_backend_options opts = OMNI_BACKEND_OPTIONS_INIT;
	const char *env[] = { "GITHUB_TOKEN=x", NULL };
	struct omni_command_result res;
	struct omni_backend *b;

	plant_secrets();
	omni_test_mkdtemp(fx.tmp, sizeof(fx.tmp));
	omni_test_project_id(fx.project, sizeof(fx.project), "env");
	omni_test_fmt(fx.data, sizeof(fx.data), "%s/data", fx.tmp);
	opts.data_path = fx.data;
	opts.env = env;
	omni_assert_ok(omni_backend_new(&b, "local", fx.project, &opts, NULL));
	omni_assert_ok(omni_backend_start(b));
	omni_assert_ok(omni_backend_execute_command(b, "env", 10, &res));
	cr_assert(has_line(res.output, "GITHUB_TOKEN=x"), "%s", res.output);
	cr_assert(!has_name(res.output, "E2B_API_KEY"));
	cr_assert(has_line(res.output, "OMNI_HARMLESS=harmless"));
	omni_command_result_finish(&res);
	omni_backend_free(b);
	omni_test_rm_rf(fx.tmp);
}

Test(env_secrets, omni_exec_on_a_mount_gets_no_credentials)
{
	struct mount_fx m;
	const char *extra[] = { "--env", "GITHUB_TOKEN=x", NULL };
	int st;

	plant_secrets();
	mount_up(&m, extra);
	char *out = sh_out(&st, m.mnt, "omni-exec env");
	cr_assert_eq(st, 0);
	cr_assert(has_line(out, "OMNI_HARMLESS=harmless"), "%s", out);
	/* --env passes it on purpose; the daemon's own value does not. */
	cr_assert(has_line(out, "GITHUB_TOKEN=x"), "%s", out);
	for (const char *const *n = secret_names; *n; n++)
		cr_assert(strcmp(*n, "GITHUB_TOKEN") == 0 || !has_name(out, *n),
		          "%s reached the command", *n);
	free(out);
	/* And omni-exec -e, on purpose too. */
	out = sh_out(&st, m.mnt, "omni-exec -e MY_API_KEY=y env");
	cr_assert(has_line(out, "MY_API_KEY=y"), "%s", out);
	cr_assert(!has_name(out, "E2B_API_KEY"));
	free(out);
	mount_down(&m);
}

/* --- mount_helper --------------------------------------------------------- */

TestSuite(mount_helper, .timeout = 90);

struct helper_fx {
	char tmp[PATH_MAX], mnt[PATH_MAX], data[PATH_MAX], run[PATH_MAX];
	char sbin[PATH_MAX], project[64];
};

/* A private directory with the mount point, the data and runtime
 * directories, and sbin/omnifs -> build/omnifs; the variables the
 * scripts below read. Skips when mount.fuse3 or unshare is missing. */
static void helper_up(struct helper_fx *h)
{
	char bin[PATH_MAX], link[PATH_MAX + 16], path_env[PATH_MAX * 2];

	if (access("/sbin/mount.fuse3", X_OK) != 0 &&
	    access("/usr/sbin/mount.fuse3", X_OK) != 0)
		cr_skip_test("mount.fuse3 is missing (Debian package fuse3)");
	if (sh_in(NULL, "unshare -m true 2>/dev/null") != 0 ||
	    access("/usr/local/sbin", F_OK) != 0)
		cr_skip_test("no private mount namespace (unshare -m)");
	omni_test_mkdtemp(h->tmp, sizeof(h->tmp));
	omni_test_project_id(h->project, sizeof(h->project), "mh");
	omni_test_fmt(h->mnt, sizeof(h->mnt), "%s/mnt", h->tmp);
	omni_test_fmt(h->data, sizeof(h->data), "%s/data", h->tmp);
	omni_test_fmt(h->run, sizeof(h->run), "%s/run", h->tmp);
	omni_test_fmt(h->sbin, sizeof(h->sbin), "%s/sbin", h->tmp);
	cr_assert_eq(mkdir(h->mnt, 0755), 0);
	cr_assert_eq(mkdir(h->run, 0700), 0);
	cr_assert_eq(mkdir(h->sbin, 0755), 0);
	test_build_dir(bin, sizeof(bin));
	omni_test_fmt(link, sizeof(link), "%s/omnifs", h->sbin);
	omni_test_fmt(path_env, sizeof(path_env), "%s/omnifs", bin);
	cr_assert_eq(symlink(path_env, link), 0);
	omni_test_fmt(path_env, sizeof(path_env), "%s:%s", bin,
	              getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", path_env, 1);
	setenv("OMNI_RUNTIME_DIR", h->run, 1);
	setenv("T_MNT", h->mnt, 1);
	setenv("T_DATA", h->data, 1);
	setenv("T_SBIN", h->sbin, 1);
	setenv("T_PROJ", h->project, 1);
	setenv("T_TMP", h->tmp, 1);
}

/* Run mount_cmd in a private mount namespace, then check the mount (type,
 * source, the env= option reaching commands), write a file through it,
 * and umount; the daemon must exit and leave the file in the workspace.
 * want_var is "NAME=value" that the options set. */
static void mount_and_check(struct helper_fx *h, const char *mount_cmd,
                            const char *want_var)
{
	char path[PATH_MAX];
	int st;

	setenv("T_MOUNT", mount_cmd, 1);
	setenv("T_VAR", want_var, 1);
	char *out = sh_out(
	    &st, h->tmp,
	    "unshare -m --propagation private sh -c '"
	    "trap \"umount -l \\\"$T_MNT\\\" 2>/dev/null\" EXIT; "
	    "mount --bind \"$T_SBIN\" /usr/local/sbin || exit 10; "
	    "eval \"$T_MOUNT\" 2>&1 || exit 11; "
	    "grep -q \" $T_MNT .* - fuse.omnifs omnifs:$T_PROJ \" "
	    "/proc/self/mountinfo || exit 12; "
	    "omni-exec -C \"$T_MNT\" env | grep -qx \"$T_VAR\" || exit 13; "
	    "echo through > \"$T_MNT/f\" || exit 14; "
	    "umount \"$T_MNT\" || exit 15; "
	    "for i in $(seq 100); do test -e \"$OMNI_RUNTIME_DIR/$T_PROJ.sock\""
	    " || exit 0; sleep 0.1; done; exit 16' 2>&1");
	cr_assert_eq(st, 0, "step %d failed: %s", st, out);
	free(out);
	omni_test_fmt(path, sizeof(path), "%s/%s/f", h->data, h->project);
	char *got = omni_test_read_host(path, NULL);
	cr_assert_str_eq(got ? got : "", "through\n");
	free(got);
	/* Nothing is left mounted on the host. */
	cr_assert(!mount_is_mounted(h->mnt));
}

Test(mount_helper, mount_t_fuse_omnifs)
{
	struct helper_fx h;
	char cmd[512];

	helper_up(&h);
	omni_test_fmt(cmd, sizeof(cmd),
	              "mount -t fuse.omnifs \"$T_PROJ\" \"$T_MNT\" -o "
	              "backend=local,data_path=\"$T_DATA\",env=FROM_O=yes,"
	              "quiet");
	mount_and_check(&h, cmd, "FROM_O=yes");
	omni_test_rm_rf(h.tmp);
}

Test(mount_helper, mount_T_fstab_line)
{
	struct helper_fx h;
	char fstab[PATH_MAX], line[PATH_MAX * 3];

	helper_up(&h);
	omni_test_fmt(fstab, sizeof(fstab), "%s/fstab", h.tmp);
	omni_test_fmt(line, sizeof(line),
	              "# a test fstab\n"
	              "%s %s fuse.omnifs noauto,user,_netdev,nofail,"
	              "x-systemd.automount,backend=local,data_path=%s,"
	              "env=FROM_FSTAB=yes 0 0\n",
	              h.project, h.mnt, h.data);
	omni_test_write_host(fstab, line, strlen(line));
	setenv("T_FSTAB", fstab, 1);
	mount_and_check(&h, "mount -T \"$T_FSTAB\" \"$T_MNT\"",
	                "FROM_FSTAB=yes");
	omni_test_rm_rf(h.tmp);
}
