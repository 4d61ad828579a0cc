/*
 * backends/base/mountinfo.c - walking /proc/self/mountinfo (see
 * mountinfo.h).
 *
 * One getline() buffer for the whole walk; each line is cut in place
 * (strtok_r on spaces) and its escaped fields decoded in place, so a
 * callback gets pointers into that buffer. Locking: none.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mountinfo.h"
#include "omni/error.h"

/* Decode mountinfo's octal escapes in place. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 +
			              (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/* Cut one line into m; false when it does not have the fields. */
static bool parse_line(char *line, struct omni__mount *m)
{
	char *fields[5], *save = NULL, *p = line;

	line[strcspn(line, "\n")] = '\0';
	for (int i = 0; i < 5; i++, p = NULL)
		if (!(fields[i] = strtok_r(p, " ", &save)))
			return false;
	/* save points at the mount options; the optional tags after them
	 * end at " - ". */
	char *sep = save ? strstr(save, " - ") : NULL;
	if (!sep)
		return false;
	char *fstype = strtok_r(sep + 3, " ", &save);
	char *source = strtok_r(NULL, " ", &save);
	char *super = strtok_r(NULL, " ", &save);
	if (!fstype || !source)
		return false;
	unescape(fields[4]);
	unescape(source);
	m->point = fields[4];
	m->fstype = fstype;
	m->source = source;
	m->super = super ? super : "";
	return true;
}

int omni__mountinfo_each(omni__mount_cb cb, void *payload)
{
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return omni_error_set_errno(-errno, "/proc/self/mountinfo");
	while (rc == 0 && getline(&line, &cap, f) > 0) {
		struct omni__mount m;
		if (parse_line(line, &m))
			rc = cb(&m, payload);
	}
	free(line);
	fclose(f);
	return rc;
}
