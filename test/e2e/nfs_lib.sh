# shellcheck shell=bash
# A real NFS server for the e2e tests (shared/NFS-LAB.md): nfs-ganesha (NFSv3, VFS FSAL)
# and rpcbind in a private mount namespace, exporting a loop-mounted XFS (reflink=1)
# image, plus slacker-storaged on that export in the same namespace (the "storage host").
# The worker side of a test never sees the XFS mount: it reaches the files only over NFS.
#
# Source after lib.sh and e2e_workdir:
#   nfs_server_start            # sets NFS_EXPORT (the export path) and NFS_URL (nfs://127.0.0.1/...)
#   storaged_start [args]       # slacker-storaged on the export; sets STORAGED_URL, STORAGED_TOKEN_FILE
#   nfs_restart_ganesha         # kill ganesha by pid and start it again (clients reconnect)
#   nfs_kill_ganesha; nfs_crash_export; nfs_start_ganesha
#                               # the storage host's crash: SIGKILL, the export's page cache lost
#   storaged_stop / storaged_start again
#   nfs_ns CMD...               # run CMD inside the storage host's mount namespace
# NFS_NETNS=1 (before nfs_server_start): the storage host gets its own network namespace
# too, reached from the host over a veth pair: its servers listen at NFS_SERVER_ADDR
# (10.231.17.2; the host's end is 10.231.17.1), so they take no port of the host and a
# benchmark can put a delaying proxy in front of them (bench/prefetch); the veth and the
# namespace go with the cleanup. Without it the storage host is on the host network at
# 127.0.0.1. Clients use NFS_HOST (default NFS_SERVER_ADDR; set it before storaged_start
# to send them through a proxy): NFS_URL, the export storaged advertises, STORAGED_URL.
# Everything is stopped by PID by the cleanup trap; the XFS image is unmounted in the
# namespace (its loop device was attached by mount -o loop: autoclear detaches it).
#
# Ports: rpcbind 111, NFS 2049, MOUNT 20048 on the host network (a mount namespace does
# not move ports); nfs_server_start refuses loudly if one of them is taken.
#
# Environment: STORAGED (default $REPO/build/storaged/slacker-storaged),
#              NFS_FUSE (default $REPO/build/nfs_bridge/slacker-nfs-fuse).

STORAGED=${STORAGED:-$REPO/build/storaged/slacker-storaged}
NFS_FUSE=${NFS_FUSE:-$REPO/build/nfs_bridge/slacker-nfs-fuse}

# nfs_missing_tools [--no-storaged]: prints what this host lacks to run the NFS fixture
# (empty: ready).
# shellcheck disable=SC2120 # the argument is optional
nfs_missing_tools() {
  local t missing=() storaged=$STORAGED
  [ "${1:-}" = --no-storaged ] && storaged=/usr/bin/nsenter
  for t in /usr/bin/ganesha.nfsd /usr/sbin/rpcbind /usr/bin/nfs-ls /usr/sbin/mkfs.xfs /usr/sbin/xfs_io \
    /usr/bin/unshare /usr/bin/nsenter "$storaged" "$NFS_FUSE"; do
    [ -x "$t" ] || missing+=("$t")
  done
  [ -e /dev/fuse ] || missing+=(/dev/fuse)
  echo "${missing[*]}"
}

NFS_SERVER_ADDR=127.0.0.1
NFS_HOST=127.0.0.1
_nfs_nsenter_flags() { if [ "${NFS_NETNS:-0}" = 1 ]; then echo "-m -n"; else echo "-m"; fi; }
# shellcheck disable=SC2046 # the flags are words
nfs_ns() { nsenter -t "$(cat "$W/nfs/ns.pid")" $(_nfs_nsenter_flags) -- "$@"; }

_nfs_port_taken() { ss -Hltn "( sport = :$1 )" | grep -q .; }

nfs_server_start() {
  local d=$W/nfs p
  mkdir -p "$d"
  for p in 111 2049 20048; do
    if [ "${NFS_NETNS:-0}" != 1 ] && _nfs_port_taken "$p"; then
      fail "TCP port $p is taken on this host; the NFS fixture needs 111, 2049 and 20048"
      return
    fi
  done
  NFS_EXPORT=$d/export
  mkdir -p "$NFS_EXPORT"
  truncate -s 20G "$d/xfs.img"
  mkfs.xfs -q -m reflink=1 -s size=4096 "$d/xfs.img"

  # The namespace holder: a sleep in its own mount namespace; everything of the storage
  # host runs inside it (nsenter). Killing it after the daemons drops the namespace.
  # shellcheck disable=SC2046 # the flags are words
  unshare $(_nfs_nsenter_flags) --propagation private sleep infinity </dev/null >/dev/null 2>&1 &
  echo $! >"$d/ns.pid"
  e2e_defer nfs_server_stop
  local i
  for ((i = 0; i < 50; i++)); do
    [ "$(readlink "/proc/$(cat "$d/ns.pid")/ns/mnt")" != "$(readlink /proc/self/ns/mnt)" ] && break
    sleep 0.1
  done
  [ "${NFS_NETNS:-0}" = 1 ] && { _nfs_veth_up || return; }
  nfs_ns mount -t tmpfs tmpfs /run
  nfs_ns mkdir -p /run/ganesha /run/rpcbind "$d/recovery"
  nfs_ns mount -o loop,noatime "$d/xfs.img" "$NFS_EXPORT"
  cat >"$d/ganesha.conf" <<EOF
NFS_CORE_PARAM { Protocols = 3; NFS_Port = 2049; MNT_Port = 20048; Enable_NLM = false; Enable_RQUOTA = false; }
NFSV4 { Graceless = true; RecoveryRoot = "$d/recovery"; }
# slacker-storaged renames and clones files under ganesha's feet: no attribute caching,
# and directory contents revalidated by getattr, or clients see stale names and sizes.
MDCACHE { Use_Getattr_Directory_Invalidation = true; }
EXPORT { Export_Id = 1; Path = "$NFS_EXPORT"; Pseudo = /export; Access_Type = RW;
         Squash = No_Root_Squash; SecType = sys; Protocols = 3; Transports = TCP;
         Attr_Expiration_Time = 0; ${NFS_EXPORT_EXTRA:-} FSAL { Name = VFS; } }
LOG { Default_Log_Level = WARN; }
EOF
  # Foreground (-f) so the pid we stop is rpcbind's own (nsenter execs it).
  # shellcheck disable=SC2046 # the flags are words
  e2e_spawn nfs-rpcbind "$d/rpcbind.log" nsenter -t "$(cat "$d/ns.pid")" $(_nfs_nsenter_flags) -- /usr/sbin/rpcbind -f -w
  for ((i = 0; i < 50; i++)); do
    nfs_ns test -S /run/rpcbind.sock && break
    sleep 0.1
  done
  nfs_ns test -S /run/rpcbind.sock || { fail "rpcbind did not start: $(cat "$d/rpcbind.log")"; return; }
  _nfs_start_ganesha || return
  NFS_URL="nfs://$NFS_HOST$NFS_EXPORT"
  e2e_log "NFS server up: $NFS_URL"
}

_nfs_start_ganesha() {
  local d=$W/nfs i
  # shellcheck disable=SC2046 # the flags are words
  e2e_spawn nfs-ganesha "$d/ganesha.out" nsenter -t "$(cat "$d/ns.pid")" $(_nfs_nsenter_flags) -- \
    /usr/bin/ganesha.nfsd -F -f "$d/ganesha.conf" -L "$d/ganesha.log" -p /run/ganesha/ganesha.pid
  for ((i = 0; i < 100; i++)); do
    if nfs-ls "nfs://$NFS_SERVER_ADDR$NFS_EXPORT/" >/dev/null 2>&1; then
      date +%s >"$d/ganesha.ready-second" # its write verifier is from this second or before
      return 0
    fi
    e2e_alive "$E2E_SPAWNED_PID" || break
    sleep 0.2
  done
  fail "ganesha did not answer on nfs://$NFS_SERVER_ADDR$NFS_EXPORT; log: $(tail -n 20 "$d/ganesha.log" 2>/dev/null)"
}

_nfs_stop_ganesha() { e2e_stop nfs-ganesha ganesha 20 || true; }

# nfs_start_ganesha: start the NFS server again after nfs_kill_ganesha, as a new instance a
# client can tell from the one before. ganesha's write verifier is its start time in whole
# seconds (ServerEpoch), so an instance started within the same second as the previous one
# has the same verifier and no NFS client can detect that UNSTABLE writes were lost (a real
# storage host takes longer than a second to come back). Wait for the next second first.
nfs_start_ganesha() {
  local ready
  ready=$(cat "$W/nfs/ganesha.ready-second" 2>/dev/null || echo 0)
  while [ "$(date +%s)" -le "$ready" ]; do sleep 0.1; done
  _nfs_start_ganesha
}

# nfs_kill_ganesha: SIGKILL the NFS server: no clean shutdown, as in a crash.
nfs_kill_ganesha() {
  local pid i
  pid=$(cat "$W/.e2e/pid/nfs-ganesha")
  kill -KILL "$pid"
  for ((i = 0; i < 100; i++)); do
    e2e_alive "$pid" || break
    sleep 0.1
  done
  e2e_alive "$pid" && { fail "ganesha (pid $pid) survived SIGKILL"; return; }
  e2e_stop nfs-ganesha ganesha 1 >/dev/null 2>&1 || true # collects its status (137)
}

# nfs_crash_export: the storage host's crash as its file system sees it: the export's XFS
# stops without writing its page cache or its log (xfs_io shutdown without -f, as
# xfstests' godown), then is mounted again (log recovery). What ganesha had taken as
# UNSTABLE writes and not yet committed is gone. REQUIRES: ganesha stopped.
nfs_crash_export() {
  nfs_ns xfs_io -x -c shutdown "$NFS_EXPORT"
  nfs_ns umount "$NFS_EXPORT"
  nfs_ns mount -o loop,noatime "$W/nfs/xfs.img" "$NFS_EXPORT"
}

# nfs_restart_ganesha [DOWN_SECONDS]: stop the NFS server, stay down a while, start it.
nfs_restart_ganesha() {
  _nfs_stop_ganesha
  sleep "${1:-2}"
  _nfs_start_ganesha
}

# shellcheck disable=SC2120 # extra args are optional
storaged_start() {
  local d=$W/nfs port
  STORAGED_TOKEN_FILE=$d/token
  [ -s "$STORAGED_TOKEN_FILE" ] || { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STORAGED_TOKEN_FILE"; }
  chmod 0600 "$STORAGED_TOKEN_FILE"  # storaged refuses a token file others can read
  port=${STORAGED_PORT:-$((20000 + $$ % 20000))}
  STORAGED_PORT=$port
  if [ ! -e "$W/.e2e/registered-storaged" ]; then
    touch "$W/.e2e/registered-storaged"
    e2e_defer storaged_stop
  fi
  # Through nsenter: storaged must see the XFS mount, which only exists in there.
  # shellcheck disable=SC2046 # the flags are words
  e2e_spawn storaged "$W/storaged.log" nsenter -t "$(cat "$d/ns.pid")" $(_nfs_nsenter_flags) -- \
    "$STORAGED" --listen "$NFS_SERVER_ADDR:$port" --root "$NFS_EXPORT" --token-file "$STORAGED_TOKEN_FILE" \
    --export "nfs://$NFS_HOST$NFS_EXPORT" "$@"
  e2e_wait_for storaged "$E2E_SPAWNED_PID" "$W/storaged.log" \
    curl -fsS -H "Authorization: Bearer $(cat "$STORAGED_TOKEN_FILE")" "http://$NFS_SERVER_ADDR:$port/v1/store" || return
  STORAGED_URL=http://$NFS_HOST:$port
  e2e_log "slacker-storaged up at $STORAGED_URL"
}

storaged_stop() { e2e_stop storaged slacker-storaged 20 || true; }

nfs_server_stop() {
  local d=$W/nfs
  [ -s "$d/ns.pid" ] || return 0
  storaged_stop
  _nfs_stop_ganesha
  e2e_stop nfs-rpcbind rpcbind 10 || true
  nfs_ns umount "$NFS_EXPORT" 2>/dev/null || nfs_ns umount -l "$NFS_EXPORT" 2>/dev/null || true
  e2e_stop_pid "$(cat "$d/ns.pid")" "nfs namespace holder" 5 || true
  rm -f "$d/ns.pid"
  [ -s "$d/veth" ] && ip link del "$(cat "$d/veth")" 2>/dev/null
  rm -f "$d/veth"
}

# The storage host's link (NFS_NETNS=1): a veth pair, the host's end named after this
# shell's pid (10.231.17.1/30), the other end in the namespace (NFS_SERVER_ADDR 10.231.17.2).
_nfs_veth_up() {
  local d=$W/nfs host=slkv$$ peer=slkp$$
  ip link add "$host" type veth peer name "$peer" netns "$(cat "$d/ns.pid")" || { fail "veth pair"; return; }
  echo "$host" >"$d/veth"
  ip addr add 10.231.17.1/30 dev "$host"
  ip link set "$host" up
  nfs_ns ip addr add 10.231.17.2/30 dev "$peer"
  nfs_ns ip link set "$peer" up
  nfs_ns ip link set lo up
  NFS_SERVER_ADDR=10.231.17.2
  NFS_HOST=$NFS_SERVER_ADDR
}
