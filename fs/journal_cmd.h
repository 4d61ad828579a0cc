/*
 * journal_cmd.h - omnifs's side of the journal (fs/ only): whether a mount
 * keeps one (-o journal=on|off), and omnifs --log PROJECT [--since T]
 * [--json], which prints it (backends/journal/journal.h has the database).
 */
#ifndef OMNIFS_JOURNAL_CMD_H
#define OMNIFS_JOURNAL_CMD_H

#include <stdbool.h>
#include <stdio.h>

#include "cli.h"

/* 1 when the mount keeps a journal (the default), 0 with journal=off; -1
 * after a message for a value that is neither. */
int omnifs_journal_wanted(const struct omnifs_cli *cli);

/* --since T: "30s", "10m", "2h", "1d" (ago) or an ISO time
 * ("2026-01-31T12:00:00Z", "2026-01-31 12:00:00", "2026-01-31"; UTC) into
 * milliseconds since the epoch; now_ms is the present. -1 when T is
 * neither. */
long long omnifs_parse_since(const char *t, long long now_ms);

/* omnifs --log: print the journal of cli->log to out; the exit code. */
int omnifs_journal_log(const struct omnifs_cli *cli, FILE *out);

#endif
