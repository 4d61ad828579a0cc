/*
 * backends/e2b/e2b_process.c - commands in the sandbox through envd's process
 *service.
 *
 * Endpoints:
 *	start    process.Process/Start (server stream): {"process":{"cmd",
 *	         "args","envs","cwd"},"stdin":bool,"pty":{"size":..}?};
 *	         Connect-Timeout-Ms is the command's timeout (envd kills it
 *	         and ends the stream with deadline_exceeded: exit code 124)
 *	stdin    process.Process/SendInput {"stdin"|"pty": base64};
 *	         EOF: CloseStdin (a terminal gets ^D instead)
 *	signal   SIGKILL and SIGTERM: process.Process/SendSignal. envd knows
 *	         no other signal, so the rest are sent with kill(1) run in the
 *	         sandbox on the command's process group; on a terminal,
 *	         SIGINT, SIGQUIT and SIGTSTP are typed as ^C, ^\ and ^Z.
 *	         Once a signalled command ends, what is left of its group is
 *	         killed the same way (an extra command, only then).
 *	resize   process.Process/Update {"pty":{"size":{cols,rows}}}
 *
 * A command given as argv runs as is (envd execs it: a missing program
 * exits 127 from envd's sh wrapper); a shell string runs with /bin/sh -c.
 * The working directory is /tmp/workspace/<cwd>; a missing one ends the
 * stream with invalid_argument before any start event: -ENOENT here.
 * Exit statuses come from the end event: exitCode when the process
 * exited, else the signal named in its status text ("signal: killed"),
 * reported as 128+N.
 *
 * omni__e2b_run() is the same machinery for the backend's own helper
 * commands (chmod, touch, ...): argv, no stdin, LC_ALL=C, bounded by the
 * request timeout, output collected.
 *
 * Locking: the stream belongs to exec_wait's thread; exec_input,
 * exec_signal and exec_resize may come from another thread and only use
 * the pid (fixed once started) and unary requests.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "e2b/e2b.h"
#include "omni/error.h"
#include "omni/log.h"

#define PROC_SVC "/process.Process/"

struct e2b_exec {
	struct omni_exec base;
	struct e2b_stream *s;
	unsigned long pid;
	bool pty;
	bool stdin_on;
	bool ended;            /* the end event came */
	atomic_bool finished;  /* exec_wait returned */
	atomic_bool signalled; /* clean the process group at the end */
	struct omni_exec_status st;
};

static struct e2b_exec *exec_of(struct omni_exec *e)
{
	return (struct e2b_exec *)e;
}

int omni__e2b_signal_from_status(const char *status)
{
	char name[128];

	if (!status || strncmp(status, "signal: ", 8) != 0)
		return 0;
	snprintf(name, sizeof(name), "%s", status + 8);
	char *core = strstr(name, " (core dumped)");
	if (core)
		*core = '\0';
	for (int sig = 1; sig < 65; sig++) {
		const char *d = sigdescr_np(sig);
		if (d && strcasecmp(d, name) == 0)
			return sig;
	}
	return 0;
}

/* {"process":{"cmd":..,"args":[..],"envs":{..},"cwd":..},"stdin":b} */
static cJSON *start_msg(const char *cmd, const char *const *args,
                        const char *const *env, const char *cwd,
                        bool want_stdin, bool tty, unsigned short rows,
                        unsigned short cols)
{
	cJSON *m = cJSON_CreateObject();
	cJSON *p = cJSON_AddObjectToObject(m, "process");
	cJSON *a = cJSON_AddArrayToObject(p, "args");
	cJSON *e = cJSON_AddObjectToObject(p, "envs");
	bool ok = m && p && a && e && cJSON_AddStringToObject(p, "cmd", cmd) &&
	          cJSON_AddStringToObject(p, "cwd", cwd) &&
	          cJSON_AddBoolToObject(m, "stdin", want_stdin);

	for (const char *const *x = args; ok && x && *x; x++)
		ok = cJSON_AddItemToArray(a, cJSON_CreateString(*x));
	ok = ok && omni__e2b_env_to_json(e, env);
	if (ok && tty) {
		cJSON *pty = cJSON_AddObjectToObject(m, "pty");
		cJSON *size = cJSON_AddObjectToObject(pty, "size");
		ok = pty && size &&
		     cJSON_AddNumberToObject(size, "cols", cols ? cols : 80) &&
		     cJSON_AddNumberToObject(size, "rows", rows ? rows : 24);
	}
	if (!ok) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

/* The inner event of {"event":{...}}. */
static const cJSON *event_of(const cJSON *msg)
{
	const cJSON *ev = cJSON_GetObjectItemCaseSensitive(msg, "event");

	return cJSON_IsObject(ev) ? ev : msg;
}

/* Wait for the start event: its pid, or the error that came instead. */
static int await_start(struct e2b_stream *s, unsigned long *pid,
                       const char *what)
{
	for (;;) {
		cJSON *m = NULL;
		int rc = omni__e2b_stream_next(s, &m, -1);
		if (rc == 0) {
			const char *code, *text;
			rc = omni__e2b_stream_end(s, &code, &text);
			if (rc == -EINVAL && strstr(text, "does not exist"))
				rc = -ENOENT;
			if (rc == 0)
				rc = -EPROTO;
			return omni_error_set(rc, "e2b: %s: %s", what,
			                      text[0]
			                          ? text
			                          : "the stream ended before "
			                            "the command started");
		}
		if (rc < 0)
			return rc;
		const cJSON *start =
		    cJSON_GetObjectItemCaseSensitive(event_of(m), "start");
		if (start) {
			const cJSON *p =
			    cJSON_GetObjectItemCaseSensitive(start, "pid");
			*pid = cJSON_IsNumber(p) ? (unsigned long)p->valuedouble
			                         : 0;
			cJSON_Delete(m);
			return 0;
		}
		cJSON_Delete(m);
	}
}

int omni__e2b_exec_start(struct omni_backend *b,
                         const struct omni_exec_request *req,
                         struct omni_exec **out)
{
	struct e2b_backend *eb = e2b_of(b);
	char cwd[PATH_MAX];
	const char *cmd;
	const char *const *args;
	const char *sh_args[3];
	struct e2b_exec *e;
	cJSON *msg;
	int rc;

	*out = NULL;
	if ((rc = omni__e2b_abs(req->cwd, cwd, sizeof(cwd))) < 0)
		return rc;
	if (req->argv && req->argv[0]) {
		cmd = req->argv[0];
		args = req->argv + 1;
	} else if (req->shell) {
		sh_args[0] = "-c";
		sh_args[1] = req->shell;
		sh_args[2] = NULL;
		cmd = "/bin/sh";
		args = sh_args;
	} else {
		return omni_error_set(-EINVAL, "e2b: exec: no command");
	}
	if (!(e = calloc(1, sizeof(*e))))
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	e->base.backend = b;
	e->pty = req->tty;
	e->stdin_on = req->want_stdin || req->tty;
	msg = start_msg(cmd, args, req->env, cwd, e->stdin_on, req->tty,
	                req->rows, req->cols);
	if (!msg) {
		free(e);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	rc =
	    omni__e2b_stream_open(&e->s, eb, E2B_M_START, PROC_SVC "Start", msg,
	                          eb->req_timeout_ms, 30000, req->timeout_ms);
	cJSON_Delete(msg);
	if (rc == 0)
		rc = await_start(e->s, &e->pid, "exec");
	if (rc < 0) {
		omni__e2b_stream_free(e->s);
		free(e);
		return rc;
	}
	*out = &e->base;
	return 0;
}

static cJSON *selector(unsigned long pid)
{
	cJSON *m = cJSON_CreateObject();
	cJSON *p = cJSON_AddObjectToObject(m, "process");

	if (!p || !cJSON_AddNumberToObject(p, "pid", (double)pid)) {
		cJSON_Delete(m);
		return NULL;
	}
	return m;
}

/* A call about process pid with message m, built when ok (false: out of
 * memory). Takes m. */
static int pid_rpc(struct e2b_backend *eb, enum e2b_method meth,
                   const char *rpc_path, cJSON *m, bool ok, unsigned long pid)
{
	char what[64];
	int rc;

	if (!ok) {
		cJSON_Delete(m);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	snprintf(what, sizeof(what), "pid %lu", pid);
	rc = omni__e2b_rpc(eb, meth, rpc_path, m, what, NULL);
	cJSON_Delete(m);
	return rc;
}

static int send_signal(struct e2b_backend *eb, unsigned long pid,
                       const char *name)
{
	cJSON *m = selector(pid);
	bool ok = m && cJSON_AddStringToObject(m, "signal", name);
	int rc =
	    pid_rpc(eb, E2B_M_SENDSIGNAL, PROC_SVC "SendSignal", m, ok, pid);

	/* A process that already ended is no error. */
	if (rc == -ENOENT) {
		omni_error_clear();
		rc = 0;
	}
	return rc;
}

/* kill(1) in the sandbox on the process group of pid (or pid alone when
 * it leads none). */
static int kill_group(struct e2b_backend *eb, unsigned long pid, int sig)
{
	char s[16], g[32], p[32];

	snprintf(s, sizeof(s), "-%d", sig);
	snprintf(g, sizeof(g), "-%lu", pid);
	snprintf(p, sizeof(p), "%lu", pid);
	int rc = omni__e2b_run(
	    eb, (const char *const[]){ "kill", s, "--", g, NULL }, NULL, NULL);
	if (rc > 0)
		rc = omni__e2b_run(
		    eb, (const char *const[]){ "kill", s, "--", p, NULL }, NULL,
		    NULL);
	return rc < 0 ? rc : 0;
}

static int send_input(struct e2b_backend *eb, unsigned long pid, bool pty,
                      const void *data, size_t len)
{
	cJSON *m = selector(pid);
	cJSON *in = m ? cJSON_AddObjectToObject(m, "input") : NULL;
	size_t b64_size = OMNI__BASE64_LEN(len) + 1;
	char *b64 = malloc(b64_size);
	bool ok = in && b64;

	if (ok) {
		omni__base64_encode(data, len, false, b64, b64_size);
		ok = cJSON_AddStringToObject(in, pty ? "pty" : "stdin", b64);
	}
	free(b64);
	return pid_rpc(eb, E2B_M_SENDINPUT, PROC_SVC "SendInput", m, ok, pid);
}

/* Fill the status from an end event. */
static void take_end(struct e2b_exec *e, const cJSON *end)
{
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(end, "exitCode");
	const cJSON *exited = cJSON_GetObjectItemCaseSensitive(end, "exited");
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(end, "status");

	e->ended = true;
	int sig = omni__e2b_signal_from_status(
	    cJSON_IsString(status) ? status->valuestring : NULL);
	if (cJSON_IsTrue(exited) || !sig) {
		e->st.exit_code =
		    cJSON_IsNumber(code) ? (int)code->valuedouble : 0;
		if (e->st.exit_code < 0 || e->st.exit_code > 255)
			e->st.exit_code = 255;
		e->st.signal = 0;
	} else {
		e->st.signal = sig;
		e->st.exit_code = 128 + sig;
	}
}

int omni__e2b_exec_wait(struct omni_exec *oe, omni_output_cb cb, void *payload,
                        struct omni_exec_status *status)
{
	struct e2b_exec *e = exec_of(oe);
	struct e2b_backend *eb = e2b_of(oe->backend);
	unsigned char *buf = NULL;
	size_t cap = 0;
	bool quiet = false; /* the callback asked to stop */
	int rc;

	memset(status, 0, sizeof(*status));
	for (;;) {
		cJSON *m = NULL;
		rc = omni__e2b_stream_next(e->s, &m, -1);
		if (rc <= 0)
			break;
		const cJSON *ev = event_of(m);
		const cJSON *data =
		    cJSON_GetObjectItemCaseSensitive(ev, "data");
		const cJSON *end = cJSON_GetObjectItemCaseSensitive(ev, "end");
		if (cJSON_IsObject(data)) {
			static const char *const keys[] = { "stdout", "stderr",
				                            "pty" };
			for (int i = 0; i < 3; i++) {
				const cJSON *d =
				    cJSON_GetObjectItemCaseSensitive(data,
				                                     keys[i]);
				if (!cJSON_IsString(d))
					continue;
				size_t n = strlen(d->valuestring);
				if (n + 4 > cap) {
					unsigned char *nb = realloc(buf, n + 4);
					if (!nb) {
						rc = omni_error_set(
						    -ENOMEM,
						    "e2b: out of memory");
						break;
					}
					buf = nb;
					cap = n + 4;
				}
				ssize_t len = omni__base64_decode_n(
				    d->valuestring, n, OMNI__BASE64_LENIENT,
				    buf, cap);
				if (len < 0) {
					rc = omni_error_set(
					    -EPROTO, "e2b: bad output data");
					break;
				}
				int stream = i == 1 ? OMNI_EXEC_STDERR
				                    : OMNI_EXEC_STDOUT;
				if (!quiet && len > 0 &&
				    cb(stream, buf, (size_t)len, payload) !=
				        0) {
					quiet = true;
					atomic_store(&e->signalled, true);
					send_signal(eb, e->pid,
					            "SIGNAL_SIGKILL");
				}
			}
		} else if (cJSON_IsObject(end)) {
			take_end(e, end);
		}
		cJSON_Delete(m);
		if (rc < 0)
			break;
	}
	free(buf);
	if (rc == 0) {
		const char *code, *text;
		int err = omni__e2b_stream_end(e->s, &code, &text);
		if (strcmp(code, "deadline_exceeded") == 0) {
			e->st.timed_out = true;
			e->st.exit_code = 124;
			e->st.signal = 0;
			atomic_store(&e->signalled, true);
		} else if (!e->ended) {
			rc = omni_error_set(err < 0 ? err : -EPROTO, "%s",
			                    text[0]
			                        ? text
			                        : "e2b: the command's stream "
			                          "ended without its end");
		}
	} else if (rc < 0 && e->ended) {
		/* The outcome is known; losing the tail of the stream does
		 * not change it. */
		omni_error_clear();
		rc = 0;
	}
	if (atomic_load(&e->signalled))
		kill_group(eb, e->pid, SIGKILL);
	atomic_store(&e->finished, true);
	if (rc < 0)
		return rc;
	*status = e->st;
	return 0;
}

int omni__e2b_exec_input(struct omni_exec *oe, const void *data, size_t len)
{
	struct e2b_exec *e = exec_of(oe);
	struct e2b_backend *eb = e2b_of(oe->backend);

	if (len > 0)
		return send_input(eb, e->pid, e->pty, data, len);
	if (e->pty)
		return send_input(eb, e->pid, true, "\x04", 1);
	cJSON *m = selector(e->pid);
	if (!m)
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	int rc = omni__e2b_rpc(eb, E2B_M_CLOSESTDIN, PROC_SVC "CloseStdin", m,
	                       "stdin", NULL);
	cJSON_Delete(m);
	return rc;
}

int omni__e2b_exec_signal(struct omni_exec *oe, int sig)
{
	struct e2b_exec *e = exec_of(oe);
	struct e2b_backend *eb = e2b_of(oe->backend);

	if (sig <= 0 || sig >= 65)
		return omni_error_set(-EINVAL, "e2b: bad signal %d", sig);
	atomic_store(&e->signalled, true);
	if (sig == SIGKILL)
		return send_signal(eb, e->pid, "SIGNAL_SIGKILL");
	if (e->pty && (sig == SIGINT || sig == SIGQUIT || sig == SIGTSTP)) {
		const char *key = sig == SIGINT    ? "\x03"
		                  : sig == SIGQUIT ? "\x1c"
		                                   : "\x1a";
		return send_input(eb, e->pid, true, key, 1);
	}
	int rc = kill_group(eb, e->pid, sig);
	if (rc < 0 && sig == SIGTERM)
		rc = send_signal(eb, e->pid, "SIGNAL_SIGTERM");
	return rc;
}

int omni__e2b_exec_resize(struct omni_exec *oe, unsigned short rows,
                          unsigned short cols)
{
	struct e2b_exec *e = exec_of(oe);
	cJSON *m = selector(e->pid);
	cJSON *pty = m ? cJSON_AddObjectToObject(m, "pty") : NULL;
	cJSON *size = pty ? cJSON_AddObjectToObject(pty, "size") : NULL;
	int rc;

	if (!e->pty) {
		cJSON_Delete(m);
		return 0;
	}
	if (!size || !cJSON_AddNumberToObject(size, "cols", cols) ||
	    !cJSON_AddNumberToObject(size, "rows", rows)) {
		cJSON_Delete(m);
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	}
	rc = omni__e2b_rpc(e2b_of(oe->backend), E2B_M_UPDATE, PROC_SVC "Update",
	                   m, "pty", NULL);
	cJSON_Delete(m);
	return rc;
}

void omni__e2b_exec_free(struct omni_exec *oe)
{
	struct e2b_exec *e = exec_of(oe);

	if (!e)
		return;
	if (!atomic_load(&e->finished) && !e->ended) {
		struct e2b_backend *eb = e2b_of(oe->backend);
		send_signal(eb, e->pid, "SIGNAL_SIGKILL");
		kill_group(eb, e->pid, SIGKILL);
	}
	omni__e2b_stream_free(e->s);
	free(e);
}

/* --- helper commands ------------------------------------------------------ */

struct text {
	char *data;
	size_t len;
};

static int text_add(struct text *t, const void *data, size_t n)
{
	if (t->len + n > (1u << 20))
		return 0; /* helpers print little; keep the head */
	char *p = realloc(t->data, t->len + n + 1);
	if (!p)
		return -ENOMEM;
	memcpy(p + t->len, data, n);
	t->len += n;
	p[t->len] = '\0';
	t->data = p;
	return 0;
}

int omni__e2b_run(struct e2b_backend *eb, const char *const *argv,
                  char **out_stdout, char **out_stderr)
{
	static const char *const env[] = { "LC_ALL=C", NULL };
	struct text out = { 0 }, err = { 0 };
	struct e2b_stream *s = NULL;
	unsigned char *buf = NULL;
	bool ended = false;
	int exit_code = 0;
	int rc;

	if (out_stdout)
		*out_stdout = NULL;
	if (out_stderr)
		*out_stderr = NULL;
	atomic_fetch_add(&eb->helper_cmds, 1);
	cJSON *msg =
	    start_msg(argv[0], argv + 1, env, E2B_WORKDIR, false, false, 0, 0);
	if (!msg)
		return omni_error_set(-ENOMEM, "e2b: out of memory");
	rc = omni__e2b_stream_open(&s, eb, E2B_M_START, PROC_SVC "Start", msg,
	                           eb->req_timeout_ms, eb->req_timeout_ms,
	                           (unsigned int)eb->req_timeout_ms);
	cJSON_Delete(msg);
	long long deadline = omni__now_ms() + eb->req_timeout_ms + 2000;
	while (rc == 0) {
		cJSON *m = NULL;
		long left = (long)(deadline - omni__now_ms());
		if (left <= 0) {
			rc = omni_error_set(-ETIMEDOUT, "e2b: %s: no answer",
			                    argv[0]);
			break;
		}
		rc = omni__e2b_stream_next(s, &m, left);
		if (rc == -EAGAIN)
			rc = omni_error_set(-ETIMEDOUT, "e2b: %s: no answer",
			                    argv[0]);
		if (rc <= 0)
			break;
		rc = 0;
		const cJSON *ev = event_of(m);
		const cJSON *data =
		    cJSON_GetObjectItemCaseSensitive(ev, "data");
		const cJSON *end = cJSON_GetObjectItemCaseSensitive(ev, "end");
		for (int i = 0; i < 2 && cJSON_IsObject(data); i++) {
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(
			    data, i ? "stderr" : "stdout");
			if (!cJSON_IsString(d))
				continue;
			size_t n = strlen(d->valuestring);
			unsigned char *nb = realloc(buf, n + 4);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			buf = nb;
			ssize_t len = omni__base64_decode_n(
			    d->valuestring, n, OMNI__BASE64_LENIENT, buf,
			    n + 4);
			if (len > 0)
				rc =
				    text_add(i ? &err : &out, buf, (size_t)len);
		}
		if (cJSON_IsObject(end)) {
			struct e2b_exec tmp = { .ended = false };
			take_end(&tmp, end);
			exit_code = tmp.st.exit_code;
			ended = true;
		}
		cJSON_Delete(m);
	}
	free(buf);
	if (rc == 0 && !ended) {
		const char *code, *text;
		rc = omni__e2b_stream_end(s, &code, &text);
		rc = omni_error_set(rc < 0 ? rc : -EPROTO, "e2b: %s: %s",
		                    argv[0], text[0] ? text : "no exit status");
	}
	omni__e2b_stream_free(s);
	if (rc < 0) {
		free(out.data);
		free(err.data);
		return rc == -ENOMEM ? omni_error_set(rc, "e2b: out of memory")
		                     : rc;
	}
	if (out_stdout)
		*out_stdout = out.data;
	else
		free(out.data);
	if (out_stderr)
		*out_stderr = err.data;
	else
		free(err.data);
	return exit_code;
}

int omni__e2b_run_error(int exit_code, const char *err, const char *what)
{
	static const int errs[] = {
		ENOENT,    EACCES, EPERM,  EEXIST, ENOTDIR,      EISDIR,
		ENOTEMPTY, EINVAL, ENOSPC, EROFS,  ENAMETOOLONG, ELOOP,
		EBUSY,     EXDEV,  EDQUOT, EFBIG,  EMLINK,       ETXTBSY,
	};
	char text[400];

	snprintf(text, sizeof(text), "%s", err ? err : "");
	size_t n = strlen(text);
	while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
		text[--n] = '\0';
	if (exit_code == 127)
		return omni_error_set(-ENOSYS,
		                      "e2b: %s: the command is missing "
		                      "in the sandbox",
		                      what);
	for (size_t i = 0; i < sizeof(errs) / sizeof(*errs); i++) {
		const char *d = strerrordesc_np(errs[i]);
		if (d && strstr(text, d))
			return omni_error_set(-errs[i], "e2b: %s: %s", what,
			                      text);
	}
	return omni_error_set(-EIO, "e2b: %s: exit %d%s%s", what, exit_code,
	                      text[0] ? ": " : "", text);
}
