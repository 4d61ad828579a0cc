#!/usr/bin/env bash
# check-banned-calls.sh - fail when the sources (not tests/) call a function
# that has no place in a daemon that parses untrusted input: unbounded
# copies (strcpy, strcat, sprintf, vsprintf, gets), a tokenizer with hidden
# state (strtok), a shell started on a string (system, popen), and a number
# parser that cannot report an error (atoi, atol, atoll).
#
# Usage: scripts/check-banned-calls.sh [DIR...]   (default: backends fs exec)
# Prints each offending line as FILE:LINE: TEXT and exits 1 when any is found.
# Comments are skipped: lines inside /* ... */ blocks and // tails.
set -euo pipefail
cd "$(dirname "$0")/.."

banned='strcpy|strcat|sprintf|vsprintf|gets|strtok|system|popen|atoi|atol|atoll'
dirs=("$@")
[ ${#dirs[@]} -eq 0 ] && dirs=(backends fs exec)

found=$(find "${dirs[@]}" -name '*.[ch]' -print0 | sort -z |
	xargs -0 awk -v pat="(^|[^A-Za-z0-9_.>])(${banned})[ \t]*\\(" '
		FNR == 1 { incomment = 0 }
		{
			line = $0
			out = ""
			while (length(line) > 0) {
				if (incomment) {
					end = index(line, "*/")
					if (end == 0) { line = ""; break }
					line = substr(line, end + 2)
					incomment = 0
				} else {
					start = index(line, "/*")
					if (start == 0) { out = out line; line = ""; break }
					out = out substr(line, 1, start - 1)
					line = substr(line, start + 2)
					incomment = 1
				}
			}
			sub(/\/\/.*/, "", out)
			gsub(/"([^"\\]|\\.)*"/, "\"\"", out)
			if (out ~ pat)
				printf "%s:%d: %s\n", FILENAME, FNR, $0
		}')
if [ -n "$found" ]; then
	echo "banned calls (use snprintf, strtol with end checks, posix_spawn, strtok_r...):" >&2
	echo "$found" >&2
	exit 1
fi
