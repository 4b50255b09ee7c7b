#!/usr/bin/env bash
# slacker through CRI, the interface kubelet uses (issue 19): Debian's containerd 1.6 with
# its CRI plugin, private (own root, state, socket, config, CNI dirs, stream port), with
# slacker-snapshotter as the proxy plugin "slacker" and `snapshotter = "slacker"` for CRI,
# snapshot annotations on. Pods are host-network (no CNI). The client, test/cri
# (slacker-cri), makes kubelet's calls.
#   1. version/status; pull of a standard image; a pod (its pause image from the local
#      registry) running a container whose output is checked in its CRI log file and in a
#      host directory bound into it (an emptyDir); stop and remove; ImageStatus
#   2. pull of an image a slacker dockerd pushed whose layer is a reference to 64 MiB of
#      data: downloads only the reference tar (bytes counted in the registry's log), no
#      snapshot is created on the store and the store grows by KiB; a container reads the
#      64 MiB
#   3. a second containerd (own snapshotter, same store) pulls and starts the same image
#      through CRI: no layer blob fetched, no snapshot created, store growth in KiB
#   4. ImageFsInfo: the image file system is the snapshotter's and its usage is the
#      snapshots' usage; ContainerStats: the writable layer counts what the container
#      wrote, not the image's tree (kubelet's ephemeral-storage accounting)
#   5. a snapshotter restart under a running pod: the container keeps running and
#      writing, exec works, a new container starts in the same pod
#   6. slackerctl gc (dry run, then --delete) keeps every snapshot the containerds use
#   7. removing pods and images through CRI leaves nothing mounted
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SNAPSHOTTER=${SNAPSHOTTER:-$REPO/build/snapshotter/slacker-snapshotter}
SLACKER_CRI=${SLACKER_CRI:-$REPO/build/test/cri/slacker-cri}
CTR_BIN=/usr/bin/ctr
require_slackerctl
e2e_workdir
[ -x "$SNAPSHOTTER" ] || { echo "e2e: $SNAPSHOTTER not built (set SNAPSHOTTER=)" >&2; exit 2; }
[ -x "$SLACKER_CRI" ] || { echo "e2e: $SLACKER_CRI not built (set SLACKER_CRI=)" >&2; exit 2; }
[ -x "$CTR_BIN" ] || { echo "e2e: $CTR_BIN missing (apt-get install containerd)" >&2; exit 2; }
command -v runc >/dev/null || { echo "e2e: runc missing (apt-get install runc)" >&2; exit 2; }

# The reference layer's payload: large enough that a copy would show in the store's usage.
BIG_MIB=64

. "$(dirname "$0")/cri_lib.sh"

# --- setup: a shared store; a slacker dockerd worker pushes the pause image, a standard
# image and an image whose layer is a reference to BIG_MIB MiB of random data.

make_shared_store "$W/store"
e2e_defer remove_cgroups
SLK=slk$$c
C1=cri$$a
C2=cri$$b
start_slackerd "$SLK" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$SLK" --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"
dk wa push "$REG/base:1" >/dev/null
# The pause image: the busybox layer with a sleeping entrypoint (the sandbox's process
# only holds the pod's namespaces; containerd stops it with SIGKILL).
printf 'FROM %s\nENTRYPOINT ["/bin/sleep", "2147483647"]\n' "$REG/base:1" |
  dk wa build -q -t "$REG/pause:1" - >/dev/null
dk wa push "$REG/pause:1" >/dev/null
# `sync`: see containerd_e2e.sh (a copy of the mount in another namespace).
dk wa run --name mk --network none "$REG/base:1" \
  sh -c "head -c $((BIG_MIB << 20)) /dev/urandom > /big; md5sum /big > /big.md5; echo from-docker > /data-a; sync" >/dev/null
dk wa commit mk "$REG/app:v1" >/dev/null
dk wa push "$REG/app:v1" >/dev/null
start_snapshotter "$C1" --store "$W/store"
start_cri_ctrd c1 "$C1"

case_version_and_status() {
  local out
  out=$(cri c1 version)
  assert_eq "containerd" "$(field runtime_name <<<"$out")" "runtime name"
  assert_eq "v1" "$(field runtime_api_version <<<"$out")" "CRI API version"
  out=$(cri c1 status)
  assert_contains "$out" "condition=RuntimeReady:true"
  # No CNI config: NetworkReady is false, and host-network pods do not need it (kubelet
  # starts hostNetwork pods while the network is not ready).
  assert_contains "$out" "condition=NetworkReady:false"
}

case_pull_standard_image_and_run_pod() {
  local out t0 ids pod_id cid code
  t0=$(now_ms)
  out=$(cri c1 pull "$REG/base:1")
  e2e_log "CRI pull of base:1 (standard layer): $(($(now_ms) - t0)) ms"
  assert_contains "$(field image_ref <<<"$out")" "sha256:" "PullImage's image ref"
  out=$(cri c1 inspecti "$REG/base:1")
  assert_contains "$out" "tag=$REG/base:1" "ImageStatus"
  [ "$(field size <<<"$out")" -gt 0 ] || fail "ImageStatus size is 0: $out"
  grep -q "event=commit " "$W/$C1-snapshotter.log" || fail "the snapshotter committed no layer"
  t0=$(now_ms)
  # A host directory bound as kubelet binds an emptyDir: what the container writes there
  # is on the host.
  mkdir -p "$W/pods/vol-p1"
  # shellcheck disable=SC2016 # expanded by the container's shell: proves it ran there
  ids=$(CRI_MOUNT="$W/pods/vol-p1:/vol" run_pod_container c1 p1 "$REG/base:1" hello \
    sh -c 'echo hello-$((6*7)); ls /bin/busybox; echo to-stderr >&2; echo in-volume > /vol/f')
  read -r pod_id cid <<<"$ids"
  code=$(wait_exited c1 "$cid")
  e2e_log "CRI RunPodSandbox + create + start + exit (base:1): $(($(now_ms) - t0)) ms"
  assert_eq 0 "$code" "exit code"
  out=$(cri c1 inspectp "$pod_id")
  assert_eq ready "$(field state <<<"$out")" "sandbox state"
  assert_eq NODE "$(field network <<<"$out")" "sandbox network namespace"
  out=$(cri c1 inspect "$cid")
  assert_eq "$W/pods/p1/hello/0.log" "$(field log_path <<<"$out")" "container log path"
  assert_eq "hello-42
/bin/busybox" "$(log_lines "$W/pods/p1/hello/0.log" stdout)" "container stdout in its CRI log"
  assert_eq "to-stderr" "$(log_lines "$W/pods/p1/hello/0.log" stderr)" "container stderr in its CRI log"
  assert_eq in-volume "$(cat "$W/pods/vol-p1/f" 2>&1)" "file the container wrote to its host-path mount"
  # The container's and the sandbox's root file systems are slacker snapshots.
  c c1 containers info "$cid" | grep -q '"Snapshotter": "slacker"' || fail "container not on slacker"
  c c1 containers info "$pod_id" | grep -q '"Snapshotter": "slacker"' || fail "sandbox not on slacker"
  remove_pod c1 "$pod_id" "$cid"
  if cri c1 inspectp "$pod_id" 2>/dev/null; then fail "the sandbox still exists after RemovePodSandbox"; fi
}

case_pull_reference_image_downloads_no_data() {
  local before_kib after_kib before_n after_n mark bytes n digests ids pod_id cid out t0
  digests=$(layer_digests app v1)
  before_kib=$(store_used_kib)
  before_n=$(store_snapshots)
  mark=$(registry_log_mark)
  t0=$(now_ms)
  cri c1 pull "$REG/app:v1" >/dev/null
  e2e_log "CRI pull of app:v1 (base present, ${BIG_MIB} MiB reference layer): $(($(now_ms) - t0)) ms"
  after_kib=$(store_used_kib)
  after_n=$(store_snapshots)
  read -r bytes n <<<"$(registry_blob_bytes "$mark" app)"
  e2e_log "CRI pull of app:v1: $n blobs, $bytes bytes from the registry (layers: $digests);" \
    "store ${before_kib} -> ${after_kib} KiB (+$((after_kib - before_kib)) KiB), snapshots $before_n -> $after_n"
  grep -q "event=commit_reference" "$W/$C1-snapshotter.log" || fail "the reference layer was not resolved"
  assert_eq "$before_n" "$after_n" "snapshots on the store (a reference must not create one)"
  # The config blob and the reference tar (a few KiB); the payload is BIG_MIB MiB.
  [ "$bytes" -lt 65536 ] || fail "the pull downloaded $bytes bytes of blobs"
  [ $((after_kib - before_kib)) -lt 1024 ] || fail "the pull grew the store by $((after_kib - before_kib)) KiB"
  out=$(cri c1 inspecti "$REG/app:v1")
  assert_contains "$out" "tag=$REG/app:v1" "ImageStatus"
  ids=$(run_pod_container c1 p2 "$REG/app:v1" app sh -c 'cat /data-a; md5sum -c /big.md5; wc -c < /big')
  read -r pod_id cid <<<"$ids"
  assert_eq 0 "$(wait_exited c1 "$cid")" "exit code"
  assert_eq "from-docker
/big: OK
$((BIG_MIB << 20))" "$(log_lines "$W/pods/p2/app/0.log")" "the reference layer's data, read in the container"
  remove_pod c1 "$pod_id" "$cid"
}

case_second_containerd_starts_it_without_copying() {
  local before_kib after_kib before_n after_n mark bytes n ids pod_id cid t0
  start_snapshotter "$C2" --store "$W/store"
  start_cri_ctrd c2 "$C2"
  before_kib=$(store_used_kib)
  before_n=$(store_snapshots)
  mark=$(registry_log_mark)
  t0=$(now_ms)
  cri c2 pull "$REG/app:v1" >/dev/null
  e2e_log "CRI pull of app:v1 on c2 (store has every layer): $(($(now_ms) - t0)) ms"
  read -r bytes n <<<"$(registry_blob_bytes "$mark" app)"
  t0=$(now_ms)
  ids=$(run_pod_container c2 q1 "$REG/app:v1" app sh -c 'cat /data-a; md5sum -c /big.md5')
  read -r pod_id cid <<<"$ids"
  assert_eq 0 "$(wait_exited c2 "$cid")" "exit code"
  e2e_log "CRI pod start on c2 (pause pulled by CRI, container exits): $(($(now_ms) - t0)) ms"
  after_kib=$(store_used_kib)
  after_n=$(store_snapshots)
  e2e_log "c2: app:v1 pull fetched $n blobs, $bytes bytes; pod run: store ${before_kib} -> ${after_kib} KiB" \
    "(+$((after_kib - before_kib)) KiB), snapshots $before_n -> $after_n"
  # Only the config blob: every layer is answered ALREADY_EXISTS from the store's index.
  local d
  for d in $(layer_digests app v1); do
    if tail -n +"$((mark + 1))" "$W/registry.log" | grep -q "GET.*blobs/$d"; then
      fail "c2 fetched layer blob $d"
    fi
  done
  if grep -q "event=commit " "$W/$C2-snapshotter.log"; then fail "c2 unpacked a layer"; fi
  grep -q "event=remote_snapshot" "$W/$C2-snapshotter.log" || fail "c2 took no layer from the store"
  assert_eq "$before_n" "$after_n" "snapshots on the store"
  [ $((after_kib - before_kib)) -lt 2048 ] || fail "c2's pull and pod grew the store by $((after_kib - before_kib)) KiB"
  assert_eq "from-docker
/big: OK" "$(log_lines "$W/pods/q1/app/0.log")" "the container's output on c2"
  remove_pod c2 "$pod_id" "$cid"
}

case_image_fs_info() {
  local out mp used inodes ts sum
  # CRI collects snapshot usage every stats_collect_period (1 s here).
  sleep 3
  out=$(cri c1 imagefsinfo)
  e2e_log "ImageFsInfo on c1: $(tr '\n' ' ' <<<"$out")"
  mp=$(field mountpoint <<<"$out")
  used=$(field used_bytes <<<"$out")
  inodes=$(field inodes_used <<<"$out")
  ts=$(field timestamp <<<"$out")
  assert_eq "$W/c1/root/io.containerd.snapshotter.v1.slacker" "$mp" "image file system mount point"
  [ "$used" -gt 0 ] || fail "ImageFsInfo used_bytes is 0"
  [ "$inodes" -gt 0 ] || fail "ImageFsInfo inodes_used is 0"
  [ $(($(date +%s) - ts / 1000000000)) -lt 30 ] || fail "ImageFsInfo timestamp is stale: $ts"
  # CRI's figure is the sum of the snapshotter's Usage over containerd's snapshots.
  sum=$(c c1 snapshots --snapshotter slacker usage -b | awk 'NR > 1 {s += $2} END {print s + 0}')
  e2e_log "ImageFsInfo used_bytes $used; sum of ctr snapshots usage $sum"
  assert_eq "$sum" "$used" "ImageFsInfo used_bytes against the snapshots' usage"
  # Nothing creates that directory for a proxy snapshotter, so kubelet could not read the
  # image fs capacity there; deploy/kubernetes binds the store on it (install step 4).
  [ ! -e "$mp" ] || fail "$mp exists before the deployment step creates it"
  mkdir -p "$mp"
  mount --bind "$W/store" "$mp"
  assert_eq "$(stat -f -c '%b %S' "$W/store")" "$(stat -f -c '%b %S' "$mp")" "capacity kubelet reads at the image fs path"
  umount "$mp"
}

case_writable_layer_usage() {
  local ids pod_id cid out used inodes i
  # kubelet's ephemeral-storage accounting reads the container's writable layer from
  # ContainerStats: CRI takes it from the snapshotter's Usage of the active snapshot. It
  # must be what the container wrote (8 MiB), not the image's tree (BIG_MIB MiB).
  ids=$(run_pod_container c1 p4 "$REG/app:v1" writer sh -c 'head -c 8388608 /dev/urandom > /written; sync; sleep 600')
  read -r pod_id cid <<<"$ids"
  for ((i = 0; i < 100; i++)); do
    out=$(cri c1 stats "$cid")
    used=$(field writable_used_bytes <<<"$out")
    [ "${used:-0}" -lt $((8 << 20)) ] || break
    sleep 0.2
  done
  inodes=$(field writable_inodes_used <<<"$out")
  e2e_log "ContainerStats writable layer after writing 8 MiB on a ${BIG_MIB} MiB image: $used bytes, $inodes inodes"
  [ "$used" -ge $((8 << 20)) ] || fail "writable layer usage $used bytes: the 8 MiB written are not counted"
  [ "$used" -lt $((16 << 20)) ] || fail "writable layer usage $used bytes counts more than the container wrote"
  [ "$inodes" -lt 100 ] || fail "writable layer counts $inodes inodes for one new file"
  remove_pod c1 "$pod_id" "$cid"
}

case_snapshotter_restart_under_running_pod() {
  local ids pod_id cid n1 n2 cid2 out
  # shellcheck disable=SC2016 # the container's shell expands it
  ids=$(run_pod_container c1 p3 "$REG/app:v1" ticker sh -c 'i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.2; done')
  read -r pod_id cid <<<"$ids"
  sleep 1
  e2e_stop "snap-$C1" "slacker-snapshotter $C1" 30
  n1=$(wc -l <"$W/pods/p3/ticker/0.log")
  sleep 2
  n2=$(wc -l <"$W/pods/p3/ticker/0.log")
  [ "$n2" -gt "$n1" ] || fail "the container stopped writing while the snapshotter was down ($n1 -> $n2 lines)"
  assert_eq running "$(cri c1 inspect "$cid" | field state)" "container state, snapshotter down"
  start_snapshotter "$C1" --store "$W/store"
  assert_eq running "$(cri c1 inspect "$cid" | field state)" "container state after the restart"
  out=$(cri c1 exec "$cid" -- cat /data-a)
  assert_eq from-docker "$out" "exec in the running container after the restart"
  # A new container in the same pod needs the snapshotter: Prepare on the restarted one.
  # shellcheck disable=SC2046
  cid2=$(cri c1 create --pod "$pod_id" --name second --image "$REG/base:1" $(pod_flags p3) -- echo second-ok |
    field container_id)
  cri c1 start "$cid2"
  assert_eq 0 "$(wait_exited c1 "$cid2")" "exit code of a container started after the restart"
  assert_eq second-ok "$(log_lines "$W/pods/p3/second/0.log")" "output of the second container"
  remove_pod c1 "$pod_id" "$cid" "$cid2"
}

case_gc_keeps_what_containerd_uses() {
  local out deletable ids pod_id cid node
  out=$("$SLACKERCTL" --store "$W/store" gc --registry "http://$REG" --min-age 0 2>&1)
  e2e_log "slackerctl gc (dry run): $(tail -1 <<<"$out")"
  "$SLACKERCTL" --store "$W/store" gc --registry "http://$REG" --delete --min-age 0 --grace 0 >"$W/gc.out" 2>&1 ||
    fail "slackerctl gc --delete failed: $(tail -5 "$W/gc.out")"
  e2e_log "slackerctl gc --delete: $(tail -1 "$W/gc.out")"
  deletable=$(grep -c '^deleted snapshot' "$W/gc.out" || true)
  e2e_log "gc deleted $deletable snapshots (dockerd's unused -init layers are expected)"
  # None of them is a snapshot a containerd node took from the store's index.
  local snap
  while read -r snap; do
    if grep -qs "\"$snap\"" "$W"/store/containerd/names/*.json; then
      fail "gc deleted snapshot $snap, published for containerd in $W/store/containerd/names"
    fi
  done < <(sed -n 's/^deleted snapshot \([0-9a-f]*\).*/\1/p' "$W/gc.out")
  # Every image still starts on both containerds, its data intact.
  for node in c1 c2; do
    ids=$(run_pod_container "$node" "gc-$node" "$REG/app:v1" app sh -c 'cat /data-a; md5sum -c /big.md5')
    read -r pod_id cid <<<"$ids"
    assert_eq 0 "$(wait_exited "$node" "$cid")" "exit code on $node after gc"
    assert_eq "from-docker
/big: OK" "$(log_lines "$W/pods/gc-$node/app/0.log")" "output on $node after gc"
    remove_pod "$node" "$pod_id" "$cid"
  done
}

case_removal_leaves_nothing_mounted() {
  local n img
  for n in c1 c2; do
    [ -z "$(cri "$n" pods)" ] || fail "pods left on $n: $(cri "$n" pods)"
    for img in "$REG/app:v1" "$REG/base:1" "$REG/pause:1"; do
      cri "$n" rmi "$img" 2>/dev/null || true
    done
    if cri "$n" inspecti "$REG/app:v1" >/dev/null 2>&1; then fail "app:v1 still present on $n"; fi
    # containerd removes deleted snapshots from the snapshotter when it collects; a
    # lease deleted with --sync runs a collection now.
    local lease
    lease=$(c "$n" leases create | awk '{print $1}')
    c "$n" leases delete --sync "$lease" >/dev/null
  done
  for n in "$C1" "$C2"; do
    [ -z "$(e2e_mounts_under "$W/$n-state/driver/mnt")" ] ||
      fail "mounts left under $n: $(e2e_mounts_under "$W/$n-state/driver/mnt" | tr '\n' ' ')"
  done
}

run_case "CRI version and status" case_version_and_status
run_case "CRI: standard image, pod, container output" case_pull_standard_image_and_run_pod
run_case "CRI: reference image pull downloads no layer data" case_pull_reference_image_downloads_no_data
run_case "CRI on a second containerd: no data copied" case_second_containerd_starts_it_without_copying
run_case "CRI ImageFsInfo" case_image_fs_info
run_case "CRI ContainerStats: writable layer usage" case_writable_layer_usage
run_case "CRI: snapshotter restart under a running pod" case_snapshotter_restart_under_running_pod
run_case "slackerctl gc keeps what containerd uses" case_gc_keeps_what_containerd_uses
run_case "CRI removal leaves nothing mounted" case_removal_leaves_nothing_mounted
e2e_summary
