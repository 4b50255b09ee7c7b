# shellcheck shell=bash
# The network lab of bench/run (issue 21 item 1): the registry and the storage host each
# in a network namespace of their own, joined to the workers (this host's network) by a
# veth pair whose two ends are shaped with tc tbf (bandwidth, each direction), with the
# round trip added by bench/delay_proxy.py at the workers' end of each link (this kernel
# has no sch_netem: CONFIG_NET_SCH_NETEM is not set). Everything is made by the benchmark
# and removed by its cleanup trap: the namespaces are held by a process each (no named
# netns), the veths are named slk…$$ and have private /30 addresses only (registry
# 10.231.18.0/30, storage host 10.231.17.0/30 from test/e2e/nfs_lib.sh).
#
# Source after lib.sh, nfs_lib.sh and e2e_workdir:
#   netlab_profile NAME        # sets NETLAB_{REG,STORE}_{RATE,RTT}; fails on an unknown name
#   netlab_registry_up         # sets REG (the address dockerds use) and REGISTRY_NS
#   netlab_store_up            # the NFS storage host + storaged behind its link; STORAGED_URL
#   netlab_link_json           # the profile and the round trips measured, as JSON
# The round trip is measured through the proxy (200 echo round trips to the far
# namespace) and the proxy's delay set so that the measurement meets the profile's: the
# proxy's thread wake-ups add 0.2-0.4 ms of their own, so a profile below that (lan-10g:
# 0.2 ms) gets what the proxy can do, which the JSON reports.

# shellcheck disable=SC2034 # read by bench/run
NETLAB_PROFILES=(loopback lan-10g lan-1g remote-registry)
NETLAB_ECHO_PORT=7007
NETLAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETLAB_REG_PORT=5000

netlab_profile() {
  case "$1" in
    loopback) NETLAB_REG_RATE="" NETLAB_REG_RTT="" NETLAB_STORE_RATE="" NETLAB_STORE_RTT="" ;;
    lan-10g) NETLAB_REG_RATE=10gbit NETLAB_REG_RTT=0.2 NETLAB_STORE_RATE=10gbit NETLAB_STORE_RTT=0.2 ;;
    lan-1g) NETLAB_REG_RATE=1gbit NETLAB_REG_RTT=0.5 NETLAB_STORE_RATE=1gbit NETLAB_STORE_RTT=0.5 ;;
    remote-registry) NETLAB_REG_RATE=100mbit NETLAB_REG_RTT=20 NETLAB_STORE_RATE=1gbit NETLAB_STORE_RTT=0.5 ;;
    *) return 1 ;;
  esac
}

# netlab_tbf DEV RATE [NS_PID]: a token bucket of RATE on DEV's egress (inside the
# namespace of NS_PID when given). Burst: 1 ms at RATE, at least 64 KiB (one GSO packet:
# tbf segments larger ones); queue: 50 ms at RATE.
netlab_tbf() {
  local dev=$1 rate=$2 ns=${3:-} bps burst
  case "$rate" in
    *gbit) bps=$((${rate%gbit} * 1000000000)) ;;
    *mbit) bps=$((${rate%mbit} * 1000000)) ;;
    *) fail "netlab: rate $rate is not NNgbit or NNmbit" || return ;;
  esac
  burst=$((bps / 8 / 1000))
  [ "$burst" -ge 65536 ] || burst=65536
  local cmd=(tc qdisc replace dev "$dev" root tbf rate "$rate" burst "$burst" latency 50ms)
  if [ -n "$ns" ]; then nsenter -t "$ns" -n -- "${cmd[@]}"; else "${cmd[@]}"; fi ||
    fail "netlab: tc tbf on $dev failed"
}

# netlab_proxy NAME LISTEN TARGET ECHO_NS_PID PORT...: the delaying proxy for a link
# (and an echo server in the far namespace to measure it); its delay is read from
# $W/netlab/NAME.rtt on SIGUSR1; its counters (netlab_counters) go to
# $W/netlab/NAME.stats. NETLAB_RPC_PORTS: the ports whose RPC calls it counts.
netlab_proxy() {
  local name=$1 listen=$2 target=$3 ns=$4 rpc=()
  shift 4
  [ -z "${NETLAB_RPC_PORTS:-}" ] || rpc=(--rpc-ports "$NETLAB_RPC_PORTS")
  mkdir -p "$W/netlab"
  echo 0 >"$W/netlab/$name.rtt"
  e2e_spawn "echo-$name" "$W/netlab/echo-$name.log" nsenter -t "$ns" -n -- \
    python3 "$NETLAB_DIR/delay_proxy.py" --echo "$NETLAB_ECHO_PORT"
  e2e_defer e2e_stop "echo-$name" "link echo $name" 10
  e2e_spawn "proxy-$name" "$W/netlab/proxy-$name.log" python3 "$NETLAB_DIR/delay_proxy.py" \
    --listen "$listen" --target "$target" --rtt-file "$W/netlab/$name.rtt" --stats-file "$W/netlab/$name.stats" \
    "${rpc[@]}" "$@" "$NETLAB_ECHO_PORT"
  e2e_defer e2e_stop "proxy-$name" "delay proxy $name" 10
  e2e_wait_for "delay proxy $name" "$E2E_SPAWNED_PID" "$W/netlab/proxy-$name.log" \
    grep -q ready "$W/netlab/proxy-$name.log"
}

# netlab_counters NAME: the link's counters now, one JSON line ({"seq", "ports": {PORT:
# {"connections", "bytes_up", "bytes_down", "rpc_calls"}}}): the proxy writes them on
# SIGUSR2, with a sequence number this waits to see advance.
netlab_counters() {
  local f=$W/netlab/$1.stats seq i
  seq=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["seq"])' "$f") || return
  kill -USR2 "$(cat "$W/.e2e/pid/proxy-$1")" || return
  for ((i = 0; i < 200; i++)); do
    if python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(d["seq"] <= int(sys.argv[2]))' \
      "$f" "$seq" 2>/dev/null; then
      cat "$f"
      return 0
    fi
    sleep 0.02
  done
  fail "netlab: the $1 link's counters did not update ($f)"
}

# netlab_calibrate NAME LISTEN TARGET_RTT_MS: sets the proxy's delay so that the round
# trip measured through it is TARGET_RTT_MS (or as close as the proxy gets); prints the
# measured round trip in ms.
netlab_calibrate() {
  local name=$1 listen=$2 want=$3 set=$3 got i
  for ((i = 0; i < 4; i++)); do
    echo "$set" >"$W/netlab/$name.rtt"
    kill -USR1 "$(cat "$W/.e2e/pid/proxy-$name")"
    sleep 0.2
    got=$(python3 "$NETLAB_DIR/delay_proxy.py" --probe "$listen" "$NETLAB_ECHO_PORT")
    set=$(python3 -c 'import sys; w, s, g = map(float, sys.argv[1:]); print(f"{max(0.0, s + w - g):.3f}")' \
      "$want" "$set" "$got")
  done
  echo "$got"
}

# netlab_ns_holder FILE: a process in a new network namespace (its pid in FILE); the
# namespace goes when it is stopped.
netlab_ns_holder() {
  unshare -n sleep infinity </dev/null >/dev/null 2>&1 &
  echo $! >"$1"
  local i
  for ((i = 0; i < 50; i++)); do
    [ "$(readlink "/proc/$(cat "$1")/ns/net")" != "$(readlink /proc/self/ns/net)" ] && return 0
    sleep 0.1
  done
  fail "netlab: no network namespace for $1"
}

netlab_registry_down() {
  local d=$W/netlab
  e2e_stop registry registry 15 || true
  [ -s "$d/reg-ns.pid" ] && { e2e_stop_pid "$(cat "$d/reg-ns.pid")" "registry namespace holder" 5 || true; }
  rm -f "$d/reg-ns.pid"
  ip link del "slkrv$$" 2>/dev/null || true
}

# netlab_registry_up: the registry in its own network namespace at 10.231.18.2, behind
# NETLAB_REG_RATE and NETLAB_REG_RTT; dockerds reach it at REG=10.231.18.1:5000 (the
# proxy). registry_spawn (below) starts it again after a reset, in the same namespace.
netlab_registry_up() {
  local d=$W/netlab
  mkdir -p "$d"
  netlab_ns_holder "$d/reg-ns.pid" || return
  REGISTRY_NS=$(cat "$d/reg-ns.pid")
  e2e_defer netlab_registry_down
  ip link add "slkrv$$" type veth peer name "slkrp$$" netns "$REGISTRY_NS" || fail "netlab: veth pair" || return
  ip addr add 10.231.18.1/30 dev "slkrv$$"
  ip link set "slkrv$$" up
  nsenter -t "$REGISTRY_NS" -n -- ip addr add 10.231.18.2/30 dev "slkrp$$"
  nsenter -t "$REGISTRY_NS" -n -- ip link set "slkrp$$" up
  nsenter -t "$REGISTRY_NS" -n -- ip link set lo up
  netlab_tbf "slkrv$$" "$NETLAB_REG_RATE" || return
  netlab_tbf "slkrp$$" "$NETLAB_REG_RATE" "$REGISTRY_NS" || return
  registry_yml "10.231.18.2:$NETLAB_REG_PORT"
  REGISTRY_ADDR=10.231.18.2:$NETLAB_REG_PORT
  registry_spawn || return
  netlab_proxy reg 10.231.18.1 10.231.18.2 "$REGISTRY_NS" "$NETLAB_REG_PORT" || return
  NETLAB_REG_RTT_MEASURED=$(netlab_calibrate reg 10.231.18.1 "$NETLAB_REG_RTT")
  REG=10.231.18.1:$NETLAB_REG_PORT
  curl -fsS "http://$REG/v2/" >/dev/null || fail "netlab: registry not reachable through the link" || return
  log "registry at $REG: $NETLAB_REG_RATE, RTT $NETLAB_REG_RTT_MEASURED ms measured ($NETLAB_REG_RTT wanted)"
}

# registry_spawn: (re)start the registry of $W/registry.yml, in REGISTRY_NS if set, and
# wait until it answers at REGISTRY_ADDR.
registry_spawn() {
  local wrap=()
  [ -z "${REGISTRY_NS:-}" ] || wrap=(nsenter -t "$REGISTRY_NS" -n --)
  e2e_spawn registry "$W/registry.log" "${wrap[@]}" "$REGISTRY_BIN" serve "$W/registry.yml"
  e2e_wait_for registry "$E2E_SPAWNED_PID" "$W/registry.log" \
    "${wrap[@]}" curl -fsS "http://$REGISTRY_ADDR/v2/"
}

# netlab_store_up: ganesha + slacker-storaged in the storage host's namespaces
# (nfs_lib.sh, NFS_NETNS=1), behind NETLAB_STORE_RATE and NETLAB_STORE_RTT; sets
# STORAGED_URL and STORAGED_TOKEN_FILE for the workers.
netlab_store_up() {
  NFS_NETNS=1
  nfs_server_start || return
  local ns
  ns=$(cat "$W/nfs/ns.pid")
  netlab_tbf "$(cat "$W/nfs/veth")" "$NETLAB_STORE_RATE" || return
  netlab_tbf "slkp$$" "$NETLAB_STORE_RATE" "$ns" || return
  STORAGED_PORT=$(e2e_free_port)
  NETLAB_RPC_PORTS=111,2049,20048 netlab_proxy store 10.231.17.1 "$NFS_SERVER_ADDR" "$ns" 111 2049 20048 "$STORAGED_PORT" || return
  NETLAB_STORE_RTT_MEASURED=$(netlab_calibrate store 10.231.17.1 "$NETLAB_STORE_RTT")
  NFS_HOST=10.231.17.1
  storaged_start || return
  log "store at $STORAGED_URL: $NETLAB_STORE_RATE, RTT $NETLAB_STORE_RTT_MEASURED ms measured ($NETLAB_STORE_RTT wanted)"
}

# netlab_link_json TOPOLOGY: {"name", "registry": {...}, "store": {...}} for latest.json.
netlab_link_json() {
  python3 - "$1" "${NETLAB_REG_RATE:-}" "${NETLAB_REG_RTT:-}" "${NETLAB_REG_RTT_MEASURED:-}" \
    "${NETLAB_STORE_RATE:-}" "${NETLAB_STORE_RTT:-}" "${NETLAB_STORE_RTT_MEASURED:-}" <<'PY'
import json, sys
name, rr, rt, rm, sr, st, sm = sys.argv[1:]
def link(rate, rtt, measured):
    if not rate:
        return {"rate": "loopback"}
    return {"rate": rate, "rtt_ms": float(rtt), "rtt_measured_ms": float(measured)}
print(json.dumps({"name": name, "registry": link(rr, rt, rm), "store": link(sr, st, sm)}))
PY
}
