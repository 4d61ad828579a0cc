# completions/omni-exec.bash - bash completion for omni-exec(1).
#
# The options come from "omni-exec --help" (so they follow the program),
# projects from "omnifs --list --json" when omnifs has it. After the
# first operand the words are the command's: they complete as a command
# line of their own. make install puts this file in
# $(DATADIR)/bash-completion/completions/omni-exec.

_omni_exec_projects() {
	omnifs --list --json 2>/dev/null |
		grep -oE '"project": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'
}

_omni_exec() {
	local prog=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]} prev="" i
	[ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
	COMPREPLY=()

	# Where the command starts: the first operand after the options
	# (options that take a value skip it).
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-C | --mount | --project | -e | --env | --timeout | -c) ((i++)) ;;
		--) ((i++)) && break ;;
		-*) ;;
		*) break ;;
		esac
	done
	if [ "$i" -lt "$COMP_CWORD" ]; then
		# The command's own arguments: bash-completion's completion
		# for that command when it is loaded, else file names.
		if declare -F _command_offset >/dev/null; then
			_command_offset "$i"
		else
			mapfile -t COMPREPLY < <(compgen -f -- "$cur")
		fi
		return 0
	fi

	case $prev in
	-C | --mount)
		mapfile -t COMPREPLY < <(compgen -d -- "$cur")
		return 0
		;;
	--project)
		mapfile -t COMPREPLY < <(compgen -W "$(_omni_exec_projects)" \
			-- "$cur")
		return 0
		;;
	-e | --env)
		mapfile -t COMPREPLY < <(compgen -v -- "$cur")
		return 0
		;;
	--timeout | -c | --save | --checkpoint | --rollback)
		return 0
		;;
	esac
	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$("$prog" --help 2>/dev/null |
			grep -oE -- '(^|[ ,])--?[a-zA-Z][a-z-]*' |
			tr -d ' ,' | sort -u)" -- "$cur")
	else
		mapfile -t COMPREPLY < <(compgen -c -- "$cur")
	fi
	return 0
}

complete -F _omni_exec omni-exec
