# shellcheck shell=bash
# Helpers for slacker's end-to-end tests: private dockerds, slackerd as a legacy
# graphdriver plugin, a local registry, a busybox base image, and a tiny case runner.
#
# Source it from a script that runs as root under `set -euo pipefail`:
#   . "$(dirname "$0")/lib.sh"
#   e2e_workdir                       # W=/var/tmp/slacker-e2e.XXXXXX, cleanup trap
#   start_slackerd slk$$a             # plugin "slk<pid>a", socket $W/plugins/slk<pid>a.sock
#   start_dockerd w1 slk$$a           # dockerd -s slk<pid>a; use it with: dk w1 ps
#   run_case "import" case_import     # PASS/FAIL line per case
#   e2e_summary                       # "N passed, N failed"; exit status
#
# Everything one test starts lives under $W. Daemons are stopped by PID; every
# global side effect (plugin spec files in /etc/docker/plugins, empty dirs dockerd
# and containerd create under /run) is undone by the cleanup trap, which runs all
# registered cleanups in reverse order even after a failure or ^C.
#
# State (PIDs, argument lists, the cleanup list) is kept in files under $W/.e2e, not
# in shell variables, so the helpers work the same from a case's subshell (run_case
# runs each case in one, to get a dependable `set -e`) as from the main shell.
#
# Environment:
#   SLACKERD          the plugin binary (default $REPO/build/cmd/slackerd)
#   E2E_KEEP=1        keep $W after the test (daemons are still stopped)
#   E2E_WAIT=N        seconds to wait for a daemon to come up (default 60)
#   E2E_CMD_TIMEOUT=N bound on each docker CLI call (default 300)
#   E2E_DEADLINE=N    seconds after which the whole test stops and cleans up (default
#                     1500, under ctest's TIMEOUT of 1800)
#
# Host tools used explicitly: /usr/sbin/dockerd and /usr/bin/docker (20.10, Debian);
# /usr/local/bin/docker, if present, is an unrelated client and is never used.

E2E_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=${REPO:-$(cd "$E2E_LIB_DIR/../.." && pwd)}
SLACKERD=${SLACKERD:-$REPO/build/cmd/slackerd}
E2E_WAIT=${E2E_WAIT:-60}
DOCKERD_BIN=/usr/sbin/dockerd
DOCKER_BIN=/usr/bin/docker
CONTAINERD_BIN=/usr/bin/containerd
REGISTRY_BIN=/usr/bin/docker-registry
# Classic builder: Debian's CLI has no buildx, and BuildKit needs it.
export DOCKER_BUILDKIT=0

# require_slackerctl: sets SLACKERCTL (default $REPO/build/ctl/slackerctl) and exits 2
# with a clear message if it is not built.
require_slackerctl() {
  SLACKERCTL=${SLACKERCTL:-$REPO/build/ctl/slackerctl}
  [ -x "$SLACKERCTL" ] || {
    echo "e2e: $SLACKERCTL not built (set SLACKERCTL=)" >&2
    exit 2
  }
}

E2E_PASSED=0
E2E_FAILED=0
E2E_SKIPPED=0
E2E_FAILED_NAMES=()

# ---------------------------------------------------------------------------
# messages and assertions

e2e_log() { echo "[e2e $(date +%T)] $*" >&2; }

# fail MSG: print MSG and return 1 (inside a case, `set -e` then ends the case).
# json_get JSON PATH: the value at PATH ("a.b.0.c") of JSON; strings bare, others as JSON.
json_get() {
  python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}

fail() {
  echo "  FAIL: $*" >&2
  return 1
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
  [ "$1" == "$2" ] && return 0
  fail "${3:-value}: expected [$1], got [$2]"
}

# assert_contains HAYSTACK NEEDLE [WHAT]
assert_contains() {
  case "$1" in *"$2"*) return 0 ;; esac
  fail "${3:-output} does not contain [$2]; it is: [$1]"
}

# assert_not_contains HAYSTACK NEEDLE [WHAT]
assert_not_contains() {
  case "$1" in *"$2"*) fail "${3:-output} contains [$2]; it is: [$1]" ;; esac
  return 0
}

# e2e_skip_loud REASON: a SKIP line nobody can miss (for a case that cannot run here).
# Call it in a case, then `return 77`.
e2e_skip_loud() {
  echo "#### SKIPPED, NOT TESTED: ${E2E_CASE:-}: $*"
}

# run_case NAME FN [ARGS]: run FN in a subshell with `set -e` honoured (a function
# called from `if` or `||` would run with errexit silently off), print PASS/FAIL.
# A case that must be skipped prints its own SKIP (e2e_skip_loud) and returns 77.
# The subshell runs in the background and the main shell `wait`s for it: a signal
# (^C, the E2E_DEADLINE watchdog) then interrupts the wait at once and the cleanup
# trap runs, instead of waiting for a hung docker command to return.
run_case() {
  local name=$1 rc=0
  shift
  E2E_CASE=$name
  e2e_log "case $name"
  set +e
  (
    set -e
    "$@"
  ) &
  E2E_CASE_PID=$!
  wait "$E2E_CASE_PID"
  rc=$?
  E2E_CASE_PID=
  set -e
  if [ "$rc" -eq 0 ]; then
    echo "PASS $name"
    E2E_PASSED=$((E2E_PASSED + 1))
  elif [ "$rc" -eq 77 ]; then
    E2E_SKIPPED=$((E2E_SKIPPED + 1))
    echo "SKIP $name"
  else
    echo "FAIL $name"
    E2E_FAILED=$((E2E_FAILED + 1))
    E2E_FAILED_NAMES+=("$name")
  fi
  E2E_CASE=
  return 0
}

# e2e_summary: the result line alone, then exit non-zero if anything failed.
e2e_summary() {
  [ "$E2E_SKIPPED" -eq 0 ] || echo "($E2E_SKIPPED skipped; see the SKIP lines)"
  [ "${#E2E_FAILED_NAMES[@]}" -eq 0 ] || echo "(failed: ${E2E_FAILED_NAMES[*]})"
  echo "$E2E_PASSED passed, $E2E_FAILED failed"
  [ "$E2E_FAILED" -eq 0 ]
}

# ---------------------------------------------------------------------------
# work dir and cleanup

# e2e_defer CMD [ARGS]: run CMD at exit (last registered runs first).
e2e_defer() {
  printf '%q ' "$@" >>"$W/.e2e/cleanup"
  echo >>"$W/.e2e/cleanup"
}

# Mount points at or under DIR, deepest first (mountinfo escapes spaces as \040).
e2e_mounts_under() {
  local dir=$1 mp
  awk '{print $5}' /proc/self/mountinfo | while read -r mp; do
    mp=$(printf '%b' "$mp")
    case "$mp" in "$dir" | "$dir"/*) echo "$mp" ;; esac
  done | awk '{print length($0) "\t" $0}' | sort -rn | cut -f2-
}

# e2e_settle STATE: slackerd tears a removed layer down (unmount, loop device, volume
# file) just after Remove returned, while its record is <STATE>/layers/<id>.removing
# (driver/README.md "Start and stop"). Waits (at most 10 s) until no removal is in
# progress, so the leak checks that follow see the end state; they say what is left.
e2e_settle() {
  local state=$1 i
  for ((i = 0; i < 100; i++)); do
    compgen -G "$state/layers/*.removing" >/dev/null || return 0
    sleep 0.1
  done
  e2e_log "removals still in progress after 10 s: $(cd "$state/layers" && echo *.removing)"
}

# e2e_no_spares: filters out the lines naming a spare volume (driver/spares.cc: a clone
# of an image's snapshot slackerd keeps mounted for up to --unmount-delay after a
# container's creation, as a cache; its file, loop device, mount and clone temp file are
# all named "_spare-<16 hex>"). slackerd discards them when it stops: the checks after a
# stop (no mount, loop device or file left) see every spare.
e2e_no_spares() { grep -v -e '_spare-[0-9a-f]\{16\}' || true; }

# e2e_entries DIR: the names in DIR, one per line, sorted (nothing if DIR is missing).
e2e_entries() { find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort; }

# Loop devices whose backing file is under DIR.
e2e_loops_under() {
  local dir=$1
  losetup -n -l -O NAME,BACK-FILE 2>/dev/null | while read -r dev file; do
    case "$file" in "$dir"/*) echo "$dev $file" ;; esac
  done
}

# PIDs of processes (other than this shell's own) whose command line mentions DIR:
# daemons, containerd shims, anything a test left running.
e2e_pids_under() {
  local dir=$1 p cmd
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    [ "$p" = $$ ] || [ "$p" = "${BASHPID:-}" ] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
    case "$cmd" in *"$dir"/*) echo "$p" ;; esac
  done
}

# Unmount everything under DIR (deepest first), then detach loops backed under DIR.
# Loud: something left behind is a leak of whoever mounted it.
e2e_unmount_under() {
  local dir=$1 mp dev file
  while read -r mp; do
    [ -n "$mp" ] || continue
    e2e_log "LEAK: unmounting $mp"
    umount "$mp" 2>/dev/null || umount -l "$mp" || e2e_log "cannot unmount $mp"
  done < <(e2e_mounts_under "$dir")
  while read -r dev file; do
    [ -n "$dev" ] || continue
    e2e_log "LEAK: detaching $dev ($file)"
    losetup -d "$dev" || e2e_log "cannot detach $dev"
  done < <(e2e_loops_under "$dir")
}

_e2e_rmdir_if_created() { rmdir "$1" 2>/dev/null || true; }

_e2e_exit_trap() {
  local rc=$? c
  set +e
  trap - EXIT INT TERM
  [ -z "${E2E_WATCHDOG_PID:-}" ] || kill -TERM "$E2E_WATCHDOG_PID" 2>/dev/null
  if [ -n "${E2E_CASE_PID:-}" ]; then # interrupted in the middle of a case
    e2e_log "interrupted during case '${E2E_CASE:-}'; stopping it (pid $E2E_CASE_PID)"
    kill -TERM "$E2E_CASE_PID" 2>/dev/null
  fi
  if [ -f "$W/.e2e/cleanup" ]; then
    while IFS= read -r c; do
      [ -n "$c" ] || continue
      eval "$c" || e2e_log "cleanup step failed: $c"
    done < <(tac "$W/.e2e/cleanup")
  fi
  e2e_unmount_under "$W"
  if [ -n "$(e2e_mounts_under "$W")" ]; then
    e2e_log "mounts remain under $W; not deleting it"
  elif [ "${E2E_KEEP:-0}" = 1 ]; then
    e2e_log "kept $W (E2E_KEEP=1)"
  else
    rm -rf "$W"
  fi
  exit "$rc"
}

# e2e_workdir: create W (all of this test's state) and install the cleanup trap.
# Call it once, from the main shell, before anything else.
e2e_workdir() {
  [ "$(id -u)" = 0 ] || {
    echo "e2e: must run as root (dockerd, mounts)" >&2
    exit 2
  }
  local d
  for d in "$DOCKERD_BIN" "$DOCKER_BIN" "$CONTAINERD_BIN"; do
    [ -x "$d" ] || {
      echo "e2e: $d missing (apt-get install docker.io)" >&2
      exit 2
    }
  done
  W=$(mktemp -d /var/tmp/slacker-e2e.XXXXXX)
  export W
  mkdir -p "$W/.e2e/pid" "$W/.e2e/rc" "$W/.e2e/args" "$W/plugins" "$W/docker-config"
  : >"$W/.e2e/cleanup"
  # The docker CLI keeps its config and credentials here, not in ~/.docker.
  export DOCKER_CONFIG=$W/docker-config
  trap _e2e_exit_trap EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # Watchdog: past E2E_DEADLINE seconds, SIGTERM this shell so the cleanup trap runs
  # before an outer timeout (ctest's TIMEOUT) kills everything without cleaning up.
  local main=$$ deadline=${E2E_DEADLINE:-1500}
  (
    trap 'kill "$sp" 2>/dev/null; exit 0' TERM
    sleep "$deadline" &
    sp=$!
    wait "$sp" || exit 0
    echo "#### e2e: DEADLINE: still running after ${deadline}s (E2E_DEADLINE); stopping" >&2
    kill -TERM "$main"
  ) </dev/null >/dev/null &
  E2E_WATCHDOG_PID=$!
  # Global dirs our daemons create when missing (spec files; containerd shim sockets
  # under /run/containerd/s; dockerd's managed-plugin dir /run/docker/plugins). Remove
  # them at the end if we created them and they are empty again. Registered first, so
  # they run last.
  for d in /etc/docker /etc/docker/plugins /run/docker /run/docker/plugins \
    /run/containerd /run/containerd/s; do
    [ -e "$d" ] || e2e_defer _e2e_rmdir_if_created "$d"
  done
  e2e_log "work dir $W"
}

# ---------------------------------------------------------------------------
# processes

# e2e_alive PID: true while PID runs (a zombie counts as gone).
e2e_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ]
}

# e2e_spawn KEY LOG CMD...: start CMD in the background with its output in LOG.
# A small watcher subshell records its PID in $W/.e2e/pid/KEY and, when it ends, its
# exit status in $W/.e2e/rc/KEY, so whichever shell stops it (main shell or a case's
# subshell) can tell a clean exit from a crash. Sets E2E_SPAWNED_PID.
e2e_spawn() {
  local key=$1 log=$2 i
  shift 2
  rm -f "$W/.e2e/pid/$key" "$W/.e2e/rc/$key"
  (
    set +e # the watcher must outlive a non-zero exit to record it
    "$@" </dev/null >>"$log" 2>&1 &
    echo $! >"$W/.e2e/pid/$key.tmp"
    mv "$W/.e2e/pid/$key.tmp" "$W/.e2e/pid/$key"
    wait $!
    echo $? >"$W/.e2e/rc/$key"
  ) </dev/null >/dev/null 2>&1 &
  for ((i = 0; i < 100; i++)); do
    [ -s "$W/.e2e/pid/$key" ] && break
    sleep 0.05
  done
  E2E_SPAWNED_PID=$(cat "$W/.e2e/pid/$key")
}

# e2e_stop_pid PID WHAT [TIMEOUT]: SIGTERM, wait, SIGKILL after TIMEOUT seconds.
# Returns 1 if it had to be killed.
e2e_stop_pid() {
  local pid=$1 what=$2 bound=${3:-30} i
  e2e_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < bound * 10; i++)); do
    e2e_alive "$pid" || return 0
    sleep 0.1
  done
  e2e_log "$what (pid $pid) ignored SIGTERM for ${bound}s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  return 1
}

# e2e_stop KEY WHAT [TIMEOUT]: stop what e2e_spawn started under KEY. Returns its
# exit status (137 when it had to be killed); 0 if it is not running.
e2e_stop() {
  local key=$1 what=$2 bound=${3:-30} pid i rc
  [ -f "$W/.e2e/pid/$key" ] || return 0
  pid=$(cat "$W/.e2e/pid/$key")
  e2e_stop_pid "$pid" "$what" "$bound" || true
  rm -f "$W/.e2e/pid/$key"
  for ((i = 0; i < 50; i++)); do
    [ -s "$W/.e2e/rc/$key" ] && break
    sleep 0.1
  done
  rc=$(cat "$W/.e2e/rc/$key" 2>/dev/null || echo 255)
  [ "$rc" = 0 ] || e2e_log "$what (pid $pid) exited with status $rc"
  return "$rc"
}

# e2e_wait_for WHAT PID LOG CMD...: poll CMD until it succeeds (bounded by E2E_WAIT),
# failing early with the log's tail if PID dies.
e2e_wait_for() {
  local what=$1 pid=$2 log=$3 i
  shift 3
  for ((i = 0; i < E2E_WAIT * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if ! e2e_alive "$pid"; then
      echo "e2e: $what exited during start-up; last lines of $log:" >&2
      tail -n 30 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "e2e: $what not ready after ${E2E_WAIT}s; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  return 1
}

# ---------------------------------------------------------------------------
# slackerd

# start_slackerd NAME [extra slackerd args, e.g. --store DIR]
# Runs slackerd as the legacy plugin NAME: socket $W/plugins/NAME.sock, state
# $W/NAME-state, log $W/NAME-slackerd.log. dockerd only looks for legacy plugins in
# global dirs (/run/docker/plugins/NAME.sock, /etc/docker/plugins/NAME.spec and
# /usr/lib/docker/plugins/NAME.spec; see moby pkg/plugins/discovery.go), so a spec
# file /etc/docker/plugins/NAME.spec points dockerd at the private socket. Pick a
# NAME unique to this run (e.g. slk$$a): the spec dir is shared by the whole host.
# E2E_PLUGIN_SPEC=0: no spec file (for callers that use the socket directly).
start_slackerd() {
  local name=$1
  shift
  local sock=$W/plugins/$name.sock state=$W/$name-state log=$W/$name-slackerd.log pid
  [ -x "$SLACKERD" ] || fail "slackerd binary $SLACKERD not built (set SLACKERD=)" || return
  if [ -e "/etc/docker/plugins/$name.spec" ] && [ ! -e "$W/.e2e/args/slackerd-$name" ]; then
    fail "/etc/docker/plugins/$name.spec exists already: plugin name $name is taken"
    return
  fi
  : >"$W/.e2e/args/slackerd-$name"
  [ $# -eq 0 ] || printf '%q ' "$@" >"$W/.e2e/args/slackerd-$name"
  rm -f "$sock"
  e2e_spawn "slackerd-$name" "$log" \
    "$SLACKERD" --socket "$sock" --state "$state" --host-id "$name" --log-level debug "$@"
  pid=$E2E_SPAWNED_PID
  if [ ! -e "$W/.e2e/registered-slackerd-$name" ]; then
    touch "$W/.e2e/registered-slackerd-$name"
    e2e_defer release_embedded_store "$name"
    e2e_defer stop_slackerd "$name"
    if [ "${E2E_PLUGIN_SPEC:-1}" = 1 ]; then
      mkdir -p /etc/docker/plugins
      echo "unix://$sock" >"/etc/docker/plugins/$name.spec"
      e2e_defer rm -f "/etc/docker/plugins/$name.spec"
    fi
  fi
  e2e_wait_for "slackerd $name" "$pid" "$log" test -S "$sock" || return
  e2e_log "slackerd $name up (pid $pid, socket $sock)"
}

# stop_slackerd NAME: SIGTERM and wait (SIGKILL after 30 s). Returns non-zero if the
# plugin did not exit 0 by itself. A no-op if it is not running.
stop_slackerd() {
  local name=$1 rc=0
  e2e_stop "slackerd-$name" "slackerd $name" 30 || rc=$?
  [ "$rc" = 0 ] || e2e_log "slackerd $name: see its log $W/$name-slackerd.log"
  return "$rc"
}

# restart_slackerd NAME: stop and start again with the same arguments.
restart_slackerd() {
  local name=$1 args
  args=$(cat "$W/.e2e/args/slackerd-$name")
  stop_slackerd "$name"
  eval "start_slackerd $(printf '%q' "$name") $args"
}

# slackerd_state NAME: its --state dir.
slackerd_state() { echo "$W/$1-state"; }

# release_embedded_store NAME: unmount the embedded store of a stopped slackerd.
# Without --store, slackerd loop-mounts <state>/store.img at <state>/store and, by
# design, leaves it mounted when it exits: the next start reuses the mount
# (loopdev/embedded_store.h). The loop device is attached with autoclear, so the
# unmount also detaches it; returns non-zero if it does not.
release_embedded_store() {
  local store
  store=$(slackerd_state "$1")/store
  mountpoint -q "$store" 2>/dev/null || return 0
  umount "$store" || return
  local i
  for ((i = 0; i < 50; i++)); do
    [ -z "$(e2e_loops_under "$(slackerd_state "$1")")" ] && return 0
    sleep 0.1
  done
  e2e_log "loop device of $store still attached after unmount: $(e2e_loops_under "$(slackerd_state "$1")")"
  return 1
}

# ---------------------------------------------------------------------------
# dockerd (each with its own containerd)

# dk NAME ARGS...: the docker CLI against the private dockerd NAME, bounded by
# E2E_CMD_TIMEOUT seconds (default 300). A command that runs over marks the daemon
# wedged (a deadlocked plugin, typically): later dk calls to it fail at once instead
# of each waiting out the bound, and the cleanup still stops it by PID.
dk() {
  local name=$1 rc=0
  shift
  if [ -e "$W/.e2e/wedged-$name" ]; then
    echo "dk: dockerd $name is wedged (an earlier command timed out); not running: docker $*" >&2
    return 125
  fi
  timeout -k 10 "${E2E_CMD_TIMEOUT:-300}" "$DOCKER_BIN" -H "unix://$W/$name/docker.sock" "$@" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "dk: 'docker $*' on $name did not finish in ${E2E_CMD_TIMEOUT:-300}s; marking $name wedged" >&2
    touch "$W/.e2e/wedged-$name"
  fi
  return "$rc"
}

# start_dockerd NAME STORAGE_DRIVER [extra dockerd args]
# A private dockerd under $W/NAME: data, exec root, socket, pidfile, logs. Networking
# is off (no bridge, no iptables): run containers and builds with --network none.
#
# containerd_config DATA_DIR SOCKET [PLUGIN...]: a private containerd's config on stdout:
# root, state and opt under DATA_DIR, gRPC at SOCKET (ttrpc beside it), the CRI plugin
# and the named PLUGINs disabled. Callers append their own sections after it.
containerd_config() {
  local data=$1 sock=$2 p disabled='"io.containerd.grpc.v1.cri"'
  shift 2
  for p in "$@"; do disabled+=", \"$p\""; done
  cat <<EOF
version = 2
root = "$data/root"
state = "$data/state"
disabled_plugins = [$disabled]
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$data/opt"
EOF
}

# start_snapshotter NAME [args]: slacker-snapshotter ($SNAPSHOTTER) with socket
# $W/NAME.sock, state $W/NAME-state, host id NAME, log $W/NAME-snapshotter.log; stopped by
# the cleanup trap (containerd_e2e.sh, cri_e2e.sh).
start_snapshotter() {
  local name=$1 pid
  shift
  rm -f "$W/$name.sock"
  e2e_spawn "snap-$name" "$W/$name-snapshotter.log" "$SNAPSHOTTER" --address "$W/$name.sock" \
    --state "$W/$name-state" --host-id "$name" --log-level debug "$@"
  pid=$E2E_SPAWNED_PID
  [ -e "$W/.e2e/registered-snap-$name" ] || {
    touch "$W/.e2e/registered-snap-$name"
    e2e_defer e2e_stop "snap-$name" "slacker-snapshotter $name" 30
  }
  e2e_wait_for "slacker-snapshotter $name" "$pid" "$W/$name-snapshotter.log" test -S "$W/$name.sock"
}

# containerd: without --containerd, dockerd 20.10 uses the system containerd if
# /run/containerd/containerd.sock exists and only otherwise starts one of its own. A
# test must never share the host's containerd, so each private dockerd gets its own
# containerd started here (own root, state and socket; own config, so the host's
# /etc/containerd/config.toml is not read) and passed with --containerd.
# --config-file: dockerd would otherwise read /etc/docker/daemon.json, and it writes
# its identity key to /etc/docker/key.json unless "deprecated-key-path" moves it.
start_dockerd() {
  local name=$1 driver=$2
  shift 2
  local d=$W/$name ctd_pid pid
  [ -e "$W/.e2e/args/dockerd-$name" ] || printf '%q ' "$driver" "$@" >"$W/.e2e/args/dockerd-$name"
  mkdir -p "$d/data" "$d/exec" "$d/containerd"
  if [ ! -e "$W/.e2e/registered-dockerd-$name" ]; then
    touch "$W/.e2e/registered-dockerd-$name"
    e2e_defer stop_dockerd "$name"
  fi

  # containerd, configured the way dockerd's own supervisor configures it.
  containerd_config "$d/containerd" "$d/ctd.sock" >"$d/containerd.toml"
  if [ -s "$W/.e2e/pid/containerd-$name" ] && e2e_alive "$(cat "$W/.e2e/pid/containerd-$name")"; then
    # dockerd died (a crash test killed it) and its containerd lives on, as on a host.
    e2e_log "containerd for $name still runs; dockerd reconnects to it"
  else
    rm -f "$d/ctd.sock"
    e2e_spawn "containerd-$name" "$d/containerd.log" "$CONTAINERD_BIN" --config "$d/containerd.toml"
    ctd_pid=$E2E_SPAWNED_PID
    e2e_wait_for "containerd for $name" "$ctd_pid" "$d/containerd.log" test -S "$d/ctd.sock" || return
  fi

  echo "{\"deprecated-key-path\": \"$d/key.json\"}" >"$d/daemon.json"
  local ip6=()
  "$DOCKERD_BIN" --help 2>&1 | grep -q -- '--ip6tables' && ip6=(--ip6tables=false)
  e2e_spawn "dockerd-$name" "$d/dockerd.log" \
    "$DOCKERD_BIN" --config-file "$d/daemon.json" --experimental --debug \
    -s "$driver" --data-root "$d/data" --exec-root "$d/exec" \
    -H "unix://$d/docker.sock" --pidfile "$d/docker.pid" --containerd "$d/ctd.sock" \
    --bridge=none --iptables=false --ip-masq=false "${ip6[@]}" --userland-proxy=false \
    --shutdown-timeout 5 "$@"
  pid=$E2E_SPAWNED_PID
  rm -f "$W/.e2e/wedged-$name"
  e2e_wait_for "dockerd $name" "$pid" "$d/dockerd.log" dk "$name" info || return
  e2e_log "dockerd $name up (pid $pid, -s $driver, docker -H unix://$d/docker.sock)"
}

# stop_dockerd NAME: SIGTERM dockerd (it stops its containers, waiting at most
# --shutdown-timeout), wait; then its containerd; then anything still running from
# its dirs (shims of a killed dockerd); then unmount leftovers. Returns non-zero if
# something had to be forced.
stop_dockerd() {
  local name=$1 d=$W/$1 rc=0 p
  e2e_stop "dockerd-$name" "dockerd $name" 60 || rc=1
  # containerd's own exit status on SIGTERM is not ours to judge; it only must stop.
  e2e_stop "containerd-$name" "containerd $name" 30 || true
  # Shims and container processes outlive a killed dockerd/containerd; shims carry
  # our containerd's address on their command line.
  for p in $(e2e_pids_under "$d"); do
    e2e_log "LEAK: process $p still runs from $d: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
    e2e_stop_pid "$p" "leftover $p" 5 || true
    rc=1
  done
  if [ -d "$d/exec/runtime-runc/moby" ] && command -v runc >/dev/null; then
    for p in $(runc --root "$d/exec/runtime-runc/moby" list -q 2>/dev/null); do
      e2e_log "LEAK: container $p still exists in runc; deleting it"
      runc --root "$d/exec/runtime-runc/moby" delete --force "$p" || true
      rc=1
    done
  fi
  e2e_unmount_under "$d"
  return "$rc"
}

# restart_dockerd NAME: stop and start again with the same dirs and arguments.
restart_dockerd() {
  local name=$1 args
  args=$(cat "$W/.e2e/args/dockerd-$name")
  stop_dockerd "$name" || true
  eval "start_dockerd $(printf '%q' "$name") $args"
}

# ---------------------------------------------------------------------------
# registry

# e2e_free_port: a TCP port nobody listens on (from /proc/net/tcp{,6}).
e2e_free_port() {
  local used port
  # Listening sockets have state 0A; the local port is the hex after the colon.
  used=$(awk 'NR > 1 && $4 == "0A" {split($2, a, ":"); print a[2]}' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null | while read -r h; do echo $((16#$h)); done)
  while :; do
    port=$((20000 + RANDOM % 30000))
    grep -qx "$port" <<<"$used" || break
  done
  echo "$port"
}

# start_registry: a local registry (distribution 2.x) on 127.0.0.1:PORT with storage
# under $W. Sets E2E_REGISTRY=127.0.0.1:PORT and prints it. dockerd treats 127.0.0.0/8
# as insecure (plain HTTP) by default; pass --insecure-registry anyway to be explicit.
# registry_yml ADDR[TLS]: $W/registry.yml, a registry listening at ADDR (followed by its
# tls: block, if any) with its storage in $W/registry.
registry_yml() {
  cat >"$W/registry.yml" <<EOF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $W/registry
  delete:
    enabled: true
http:
  addr: $1
EOF
}
start_registry() { _start_registry_scheme http; }
# start_tls_registry: the same over HTTPS with a self-signed certificate ($W/registry.crt).
start_tls_registry() { _start_registry_scheme https; }
_start_registry_scheme() {
  local scheme=$1 port pid curl_tls=() tls_yml=""
  [ -x "$REGISTRY_BIN" ] || fail "$REGISTRY_BIN missing (apt-get install docker-registry)" || return
  if [ "$scheme" = https ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
      -addext subjectAltName=IP:127.0.0.1 -keyout "$W/registry.key" -out "$W/registry.crt" \
      >/dev/null 2>&1 || fail "openssl could not make a certificate" || return
    curl_tls=(--cacert "$W/registry.crt")
    tls_yml="
  tls:
    certificate: $W/registry.crt
    key: $W/registry.key"
  fi
  for _ in 1 2 3; do
    port=$(e2e_free_port)
    registry_yml "127.0.0.1:$port$tls_yml"
    e2e_spawn registry "$W/registry.log" "$REGISTRY_BIN" serve "$W/registry.yml"
    pid=$E2E_SPAWNED_PID
    [ -e "$W/.e2e/registered-registry" ] || {
      touch "$W/.e2e/registered-registry"
      e2e_defer stop_registry
    }
    if e2e_wait_for registry "$pid" "$W/registry.log" \
      curl -fsS "${curl_tls[@]}" "$scheme://127.0.0.1:$port/v2/"; then
      E2E_REGISTRY=127.0.0.1:$port
      export E2E_REGISTRY
      echo "$E2E_REGISTRY"
      return 0
    fi
    stop_registry # port taken between the check and the bind? try another
  done
  fail "registry did not start; see $W/registry.log"
}

stop_registry() { e2e_stop registry registry 15 || true; }

# chain_ids REPO TAG: the layer chain ids (containerd's snapshot names: identity.ChainID
# over the diff ids) of image REPO:TAG in the local registry $REG, from its config blob.
chain_ids() {
  local cfg
  cfg=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["digest"])')
  curl -fsS "http://$REG/v2/$1/blobs/$cfg" | python3 -c '
import hashlib, json, sys
chain = None
for d in json.load(sys.stdin)["rootfs"]["diff_ids"]:
    chain = d if chain is None else "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    print(chain)'
}

# ---------------------------------------------------------------------------
# images

# make_busybox_image DOCKERD TAG: import a one-layer image: busybox-static with
# every applet linked where `busybox --list-full` puts it (what `busybox --install -s`
# would do inside the root, without needing /proc there), /etc/passwd, /etc/group,
# /tmp (1777), /root, and empty /proc /sys /dev mount points.
make_busybox_image() {
  local dk_name=$1 tag=$2 r applet
  local bb=/bin/busybox
  [ -x "$bb" ] || fail "$bb missing (apt-get install busybox-static)" || return
  if ldd "$bb" >/dev/null 2>&1; then
    fail "$bb is dynamically linked (install busybox-static, not busybox)"
    return
  fi
  r=$(mktemp -d "$W/rootfs.XXXXXX")
  mkdir -p "$r/bin" "$r/sbin" "$r/usr/bin" "$r/usr/sbin" "$r/etc" "$r/tmp" "$r/root" \
    "$r/proc" "$r/sys" "$r/dev"
  chmod 1777 "$r/tmp"
  chmod 700 "$r/root"
  cp "$bb" "$r/bin/busybox"
  for applet in $("$bb" --list-full); do
    [ -e "$r/$applet" ] || [ -L "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
  done
  cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$r/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
  tar --numeric-owner -C "$r" -c . | dk "$dk_name" import - "$tag" >/dev/null
  rm -rf "$r"
}

# make_shared_store DIR [SIZE]: a sparse XFS image with reflink=1, loop-mounted at DIR
# (unmounted by the cleanup trap): the shared store several workers use, as an NFSv4.2
# or XFS share would be in production.
make_shared_store() {
  local dir=$1 size=${2:-16G}
  truncate -s "$size" "$dir.img"
  mkfs.xfs -q -m reflink=1 -s size=4096 "$dir.img"
  mkdir -p "$dir"
  mount -o loop,noatime "$dir.img" "$dir"
  e2e_defer umount "$dir"
}
