# bash completion for weirctl. Load it with
#   source <(weirctl completion bash)
# or install it as /usr/share/bash-completion/completions/weirctl (cmake --install does).
# Service and version names come from the admin API when weir answers within 1.5 s, through the
# same --admin, token and TLS options as the command line being completed.

# COMPREPLY from compgen's answer, one word a line (file names may hold spaces).
_weirctl_reply() { mapfile -t COMPREPLY < <(compgen "$@"); }

_weirctl() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
  local commands="status get set-weights promote rollback guard explain rollout events fleet
    reload metrics health completion"
  local global="--admin --token --token-file --json --cacert --cert --key --insecure --help
    --version"
  COMPREPLY=()
  case $prev in
    --token-file | --cacert | --cert | --key)
      _weirctl_reply -f -- "$cur"
      return
      ;;
    --admin | --token | --reason | --since | --limit | --interval)
      return
      ;;
  esac

  # The command, its arguments so far, and the options that say which weir to ask.
  local i word cmd="" reach=()
  local -a args=()
  for ((i = 1; i < COMP_CWORD; i++)); do
    word=${COMP_WORDS[i]}
    case $word in
      --admin | --token | --token-file | --cacert | --cert | --key)
        reach+=("$word" "${COMP_WORDS[i + 1]}")
        ((i++))
        ;;
      --reason | --since | --limit | --interval) ((i++)) ;;
      --insecure | -k) reach+=("$word") ;;
      -*) ;;
      *)
        if [[ -z $cmd ]]; then cmd=$word; else args+=("$word"); fi
        ;;
    esac
  done

  if [[ $cur == -* ]]; then
    local own=""
    case $cmd in
      get) own="--watch --interval" ;;
      set-weights) own="--reason --force" ;;
      rollback) own="--reason --to-previous" ;;
      promote | guard | rollout) own="--reason" ;;
      events) own="--since --limit --follow --interval" ;;
    esac
    _weirctl_reply -W "$global $own" -- "$cur"
    return
  fi
  if [[ -z $cmd ]]; then
    _weirctl_reply -W "$commands" -- "$cur"
    return
  fi

  local ctl=${COMP_WORDS[0]}
  _weirctl_ask() { "$ctl" "${reach[@]}" __complete "$@" 2>/dev/null; }
  local n=${#args[@]}
  case $cmd in
    status | get | explain | rollback | set-weights | promote | guard | rollout)
      if ((n == 0)); then
        _weirctl_reply -W "$(_weirctl_ask services)" -- "$cur"
        return
      fi
      ;;
    completion)
      ((n == 0)) && _weirctl_reply -W "bash" -- "$cur"
      return
      ;;
    *) return ;;
  esac
  case $cmd in
    guard) ((n == 1)) && _weirctl_reply -W "on off" -- "$cur" ;;
    rollout)
      ((n == 1)) && _weirctl_reply -W "start pause resume abort promote approve" -- "$cur"
      ;;
    promote)
      ((n == 1)) && _weirctl_reply -W "$(_weirctl_ask versions "${args[0]}")" -- "$cur"
      ;;
    set-weights)
      # VERSION=WEIGHT: offer "VERSION=" and leave the weight to the operator.
      [[ $cur == "=" || $prev == "=" ]] && return
      local v offers=""
      for v in $(_weirctl_ask versions "${args[0]}"); do offers+=" $v="; done
      _weirctl_reply -W "$offers" -- "$cur"
      compopt -o nospace 2>/dev/null
      ;;
  esac
}

complete -F _weirctl weirctl
