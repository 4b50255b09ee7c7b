# shellcheck shell=bash
# Helpers for driving containerd's CRI plugin on slacker (test/e2e/cri_e2e.sh,
# bench/run_cri.sh). Source after lib.sh and e2e_workdir; they use W, REG (the local
# registry), SNAPSHOTTER, SLACKER_CRI and CTR_BIN.

# cri_config DIR SNAPSHOTTER_SOCKET [CRI_SNAPSHOTTER]: a containerd 1.6 config with the
# CRI plugin on CRI_SNAPSHOTTER (default slacker, the proxy plugin at SNAPSHOTTER_SOCKET;
# overlayfs for a comparison). Everything containerd and CRI write is under DIR: root, state, sockets, runc's
# state, CNI config and binary dirs (CRI creates conf_dir; host-network pods never use
# CNI), the registry hosts dir. The streaming server (exec/attach/port-forward URLs) listens on a
# port of the kernel's choosing on 127.0.0.1 (its default, 10010, could clash).
cri_config() {
  local d=$1 snap_sock=$2 cri_snap=${3:-slacker}
  cat <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$d/ctd.sock"
[ttrpc]
  address = "$d/ctd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REG/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  stats_collect_period = 1
  # CRI gives the pause process oom_score_adj -998; this machine (a sandbox itself) does
  # not let even root lower it (runc: "failed to update /proc/self/oom_score_adj:
  # Permission denied"). Restricted: never below containerd's own score.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "$cri_snap"
    disable_snapshot_annotations = false
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state, by default in the host-wide /run/containerd/runc.
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$d/cni/bin"
    conf_dir = "$d/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$d/certs.d"
[proxy_plugins]
  [proxy_plugins.slacker]
    type = "snapshot"
    address = "$snap_sock"
EOF
}

# start_cri_ctrd NAME SNAPSHOTTER_NAME [CRI_SNAPSHOTTER]: containerd + CRI under $W/NAME,
# socket $W/NAME/ctd.sock; the local registry over plain HTTP (hosts.toml).
start_cri_ctrd() {
  local name=$1 snap=$2 cri_snap=${3:-slacker} d=$W/$1 pid
  mkdir -p "$d/cni/bin" "$d/cni/net.d" "$d/certs.d/$REG"
  cri_config "$d" "$W/$snap.sock" "$cri_snap" >"$d/config.toml"
  cat >"$d/certs.d/$REG/hosts.toml" <<EOF
server = "http://$REG"
[host."http://$REG"]
  capabilities = ["pull", "resolve"]
EOF
  rm -f "$d/ctd.sock"
  e2e_spawn "ctrd-$name" "$d/containerd.log" "$CONTAINERD_BIN" --config "$d/config.toml"
  pid=$E2E_SPAWNED_PID
  [ -e "$W/.e2e/registered-ctrd-$name" ] || {
    touch "$W/.e2e/registered-ctrd-$name"
    e2e_defer stop_ctrd "$name"
  }
  e2e_wait_for "containerd $name" "$pid" "$d/containerd.log" cri "$name" version
  e2e_log "containerd $name with CRI up (pid $pid, socket $d/ctd.sock)"
}

# stop_ctrd NAME: CRI pods and containers first (as kubelet's drain would), then
# containerd, then any shim or container process left from its dirs.
stop_ctrd() {
  local name=$1 p id
  if [ -S "$W/$name/ctd.sock" ]; then
    for id in $(cri "$name" pods 2>/dev/null | sed -n 's/^pod=\([^ ]*\).*/\1/p'); do
      cri "$name" stopp "$id" || true
      cri "$name" rmp "$id" || true
    done
  fi
  e2e_stop "ctrd-$name" "containerd $name" 30 || true
  for p in $(e2e_pids_under "$W/$name"); do
    e2e_log "LEAK: process $p still runs from $W/$name: $(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")"
    e2e_stop_pid "$p" "leftover $p" 5 || true
  done
  e2e_unmount_under "$W/$name"
}

# cri NAME ARGS...: slacker-cri against containerd NAME, bounded in time.
cri() {
  local name=$1
  shift
  timeout -k 10 "${E2E_CMD_TIMEOUT:-300}" "$SLACKER_CRI" -r "$W/$name/ctd.sock" --timeout 240 "$@"
}

# c NAME ARGS...: ctr against containerd NAME in CRI's namespace.
c() {
  local name=$1
  shift
  timeout -k 10 "${E2E_CMD_TIMEOUT:-300}" "$CTR_BIN" -a "$W/$name/ctd.sock" -n k8s.io "$@"
}

# field KEY: the value of KEY= in slacker-cri's output on stdin.
field() { sed -n "s/^$1=//p" | head -1; }

now_ms() { echo $(($(date +%s%N) / 1000000)); }
store_used_kib() { sync -f "$W/store"; df -k --output=used "$W/store" | tail -1 | tr -d ' '; }
store_snapshots() { find "$W/store/snapshots" -name '*.img' | wc -l; }

# Pod flags: one pod name per test pod; logs under $W/pods/NAME; cgroups under a parent
# of this run's own (removed at the end).
CG=slacker-cri-e2e-$$
pod_flags() { echo "--pod-name $1 --pod-uid uid-$1 --pod-ns e2e --log-dir $W/pods/$1 --cgroup-parent /$CG"; }
remove_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/"$CG"; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || e2e_log "cannot remove cgroup $d"
  done
}

# registry_log_mark: the registry log's current line count (for registry_blob_bytes).
registry_log_mark() { wc -l <"$W/registry.log"; }
# registry_blob_bytes MARK REPO: bytes the registry sent for blob GETs of REPO after MARK
# (distribution logs one "response completed" line per request with its size).
registry_blob_bytes() {
  tail -n +"$(($1 + 1))" "$W/registry.log" | python3 -c '
import re, sys
repo, total, n = sys.argv[1], 0, 0
for line in sys.stdin:
    if "response completed" not in line or "http.request.method=GET" not in line:
        continue
    m = re.search(r"http.request.uri=\"/v2/([^\"]+)/blobs/", line)
    w = re.search(r"http.response.written=(\d+)", line)
    if m and m.group(1) == repo and w:
        total += int(w.group(1)); n += 1
print(total, n)' "$2"
}
# layer_digests REPO TAG: the image's layer blob digests, from the registry's manifest.
layer_digests() {
  curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/$1/manifests/$2" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))'
}

# run_pod_container NODE POD IMAGE NAME CMD...: RunPodSandbox, CreateContainer,
# StartContainer as kubelet does; prints "POD_ID CONTAINER_ID". CRI_MOUNT=HOST:CTR[,...]
# (optional) binds host directories into the container, as kubelet does for an emptyDir.
# CRI_STEP_MS (optional, a file): "SANDBOX_MS CREATE_MS START_MS" of the three calls.
run_pod_container() {
  local node=$1 pod=$2 image=$3 name=$4 pod_id cid t0 t1 t2 t3
  shift 4
  mkdir -p "$W/pods/$pod"
  t0=$(now_ms)
  # shellcheck disable=SC2046 # pod_flags is a word list
  pod_id=$(cri "$node" runp $(pod_flags "$pod") | field pod_id)
  [ -n "$pod_id" ] || fail "RunPodSandbox $pod on $node returned no id" || return
  t1=$(now_ms)
  # shellcheck disable=SC2046
  cid=$(cri "$node" create --pod "$pod_id" --name "$name" --image "$image" \
    ${CRI_MOUNT:+--mount "$CRI_MOUNT"} $(pod_flags "$pod") -- "$@" | field container_id)
  [ -n "$cid" ] || fail "CreateContainer $name on $node returned no id" || return
  t2=$(now_ms)
  cri "$node" start "$cid"
  t3=$(now_ms)
  [ -z "${CRI_STEP_MS:-}" ] || echo "$((t1 - t0)) $((t2 - t1)) $((t3 - t2))" >"$CRI_STEP_MS"
  echo "$pod_id $cid"
}

# wait_exited NODE CID: until ContainerStatus says exited (bounded); prints its exit code.
wait_exited() {
  local i out
  for ((i = 0; i < 600; i++)); do
    out=$(cri "$1" inspect "$2")
    if [ "$(field state <<<"$out")" = exited ]; then
      field exit_code <<<"$out"
      return 0
    fi
    sleep 0.1
  done
  fail "container $2 on $1 did not exit in 60 s: $out"
}

# remove_pod NODE POD_ID CID...: StopContainer, RemoveContainer, StopPodSandbox,
# RemovePodSandbox.
remove_pod() {
  local node=$1 pod_id=$2 cid
  shift 2
  for cid in "$@"; do
    cri "$node" stop "$cid" --grace 2
    cri "$node" rm "$cid"
  done
  cri "$node" stopp "$pod_id"
  cri "$node" rmp "$pod_id"
}

# log_lines FILE [STREAM]: the content of a CRI log's lines (of STREAM only: stdout or
# stderr). The runtime reads the two streams through separate pipes, so their relative
# order in the file is not the order the container wrote them in: compare per stream.
log_lines() { awk -v s="${2:-}" 's == "" || $2 == s { $1 = $2 = $3 = ""; sub(/^   /, ""); print }' "$1"; }
