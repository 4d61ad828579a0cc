/*
 * journal_cmd.c - -o journal=on|off and omnifs --log (see journal_cmd.h).
 *
 * --log needs no running daemon: it reads the database in the data folder
 * (the same --data-path / $OMNI_DATA_PATH rule as a mount), read-only, so
 * it can run while the session writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journal/journal.h"
#include "journal_cmd.h"
#include "omni/error.h"
#include "omni/backend.h"

int omnifs_journal_wanted(const struct omnifs_cli *cli)
{
	const char *v = cli->journal;

	if (!v || strcmp(v, "on") == 0 || strcmp(v, "1") == 0 ||
	    strcmp(v, "yes") == 0)
		return 1;
	if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0 ||
	    strcmp(v, "no") == 0)
		return 0;
	fprintf(stderr, "omnifs: journal=%s: use on or off\n", v);
	return -1;
}

static long long parse_iso(const char *t)
{
	static const char *const formats[] = {
		"%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S",
		"%Y-%m-%dT%H:%M",     "%Y-%m-%d %H:%M",    "%Y-%m-%d",
	};

	for (size_t i = 0; i < sizeof(formats) / sizeof(*formats); i++) {
		struct tm tm;
		const char *end;

		memset(&tm, 0, sizeof(tm));
		end = strptime(t, formats[i], &tm);
		if (end && *end == '\0')
			return (long long)timegm(&tm) * 1000;
	}
	return -1;
}

long long omnifs_parse_since(const char *t, long long now_ms)
{
	char *end;
	long long n, unit = 1000;

	if (!t || !*t)
		return -1;
	errno = 0;
	n = strtoll(t, &end, 10);
	if (!errno && end != t && n >= 0 && strlen(end) <= 1) {
		switch (*end) {
		case '\0':
		case 's':
			break;
		case 'm':
			unit = 60 * 1000;
			break;
		case 'h':
			unit = 3600 * 1000;
			break;
		case 'd':
			unit = 86400 * 1000;
			break;
		default:
			return parse_iso(t);
		}
		if (n > now_ms / unit)
			return 0;
		return now_ms - n * unit;
	}
	return parse_iso(t);
}

int omnifs_journal_log(const struct omnifs_cli *cli, FILE *out)
{
	char path[PATH_MAX];
	long long since = 0;
	struct timespec now;

	if (!omni_project_id_valid(cli->log)) {
		fprintf(stderr, "omnifs: --log: invalid project id '%s'\n",
		        cli->log);
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	if (cli->since && (since = omnifs_parse_since(
	                       cli->since, (long long)now.tv_sec * 1000 +
	                                       now.tv_nsec / 1000000)) < 0) {
		fprintf(stderr,
		        "omnifs: --since %s: give 30s, 10m, 2h, 1d or an ISO "
		        "time\n",
		        cli->since);
		return 2;
	}
	if (omni__journal_path(cli->data_path, cli->log, path, sizeof(path)) <
	        0 ||
	    omni__journal_print(path, since, cli->json != 0, out) < 0) {
		fprintf(stderr, "omnifs: --log %s: %s\n", cli->log,
		        omni_error_last());
		return 1;
	}
	return 0;
}
