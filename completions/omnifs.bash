# completions/omnifs.bash - bash completion for omnifs(1).
#
# The options come from "omnifs --help" (so they follow the program),
# backends and state managers from fixed lists, projects from
# "omnifs --list --json" when this omnifs has it. make install puts this
# file in $(DATADIR)/bash-completion/completions/omnifs.

_omnifs_options() {
	"$1" --help 2>/dev/null | grep -oE -- '--[a-z][a-z-]*' | sort -u
}

# The -o names: those --help prints, the other option's -o forms, and
# the fstab ones.
_omnifs_o_options() {
	{
		"$1" --help 2>/dev/null | grep -oE -- '-o [a-z_]+=?' |
			sed 's/^-o //'
		printf '%s\n' backend= project= state= data_path= env= image= \
			network= docker_files= memory= cpus= pids_limit= template= \
			request_timeout= cache_ttl= journal= from= overlay= auto_unmount \
			no_auto_unmount \
			noauto user users _netdev nofail
	} | sort -u
}

_omnifs_projects() {
	"$1" --list --json 2>/dev/null |
		grep -oE '"project": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'
}

# Values of the option $1 (a long option or an -o name) matching $2.
_omnifs_values() {
	case $1 in
	--backend | backend) compgen -W "local docker e2b" -- "$2" ;;
	--state | state) compgen -W "none git gcs" -- "$2" ;;
	--overlay | overlay) compgen -d -- "$2" ;;
	--project | project | --log | --from | from | --diff | --apply) compgen -W "$(_omnifs_projects "$3")" -- "$2" ;;
	--journal | journal) compgen -W "on off" -- "$2" ;;
	--docker-files | docker_files) compgen -W "auto bind agent" -- "$2" ;;
	--data-path | data_path) compgen -d -- "$2" ;;
	esac
}

_omnifs() {
	local prog=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]}
	local prev="" prev2=""
	[ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
	[ "$COMP_CWORD" -gt 1 ] && prev2=${COMP_WORDS[COMP_CWORD - 2]}
	COMPREPLY=()

	# --opt=VALUE: bash splits it at '=' (when COMP_WORDBREAKS has '='),
	# or leaves one word.
	if [ "$cur" = "=" ] && [[ $prev == --* ]]; then
		mapfile -t COMPREPLY < <(_omnifs_values "$prev" "" "$prog")
		return 0
	fi
	if [ "$prev" = "=" ] && [[ $prev2 == --* ]]; then
		mapfile -t COMPREPLY < <(_omnifs_values "$prev2" "$cur" "$prog")
		return 0
	fi
	if [[ $cur == --*=* ]]; then
		mapfile -t COMPREPLY < <(compgen -P "${cur%%=*}=" -W \
			"$(_omnifs_values "${cur%%=*}" "${cur#*=}" "$prog")")
		return 0
	fi
	case $prev in
	--backend | --state | --project | --data-path)
		mapfile -t COMPREPLY < <(_omnifs_values "$prev" "$cur" "$prog")
		return 0
		;;
	-o)
		# -o a=b,c=d: complete the last item.
		local head="" last=$cur
		if [[ $cur == *,* ]]; then
			head=${cur%,*},
			last=${cur##*,}
		fi
		if [[ $last == *=* ]]; then
			mapfile -t COMPREPLY < <(compgen -P "$head${last%%=*}=" -W \
				"$(_omnifs_values "${last%%=*}" "${last#*=}" "$prog")")
		else
			mapfile -t COMPREPLY < <(compgen -P "$head" -W \
				"$(_omnifs_o_options "$prog")" -- "$last")
		fi
		compopt -o nospace 2>/dev/null
		return 0
		;;
	esac

	if [[ $cur == -* ]]; then
		mapfile -t COMPREPLY < <(compgen -W \
			"$(_omnifs_options "$prog") -o -f -d -s -q -h -V" -- "$cur")
	else
		# PROJECT or MOUNTPOINT: directories, and the running projects.
		mapfile -t COMPREPLY < <(compgen -d -- "$cur"
			compgen -W "$(_omnifs_projects "$prog")" -- "$cur")
	fi
	return 0
}

complete -F _omnifs omnifs
