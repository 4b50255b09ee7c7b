#!/usr/bin/env bash
# slacker as a containerd snapshotter (issue 10): Debian's containerd 1.6, private (own
# root, state, socket, config) with slacker-snapshotter as the proxy plugin "slacker",
# on a shared reflink store that a slacker dockerd worker also uses.
#   1. ctr image pull --snapshotter slacker of a standard image, ctr run of it
#   2. pull + run of an image a slacker dockerd pushed (reference layer): no layer data
#      copied (no new snapshot on the store, store usage unchanged)
#   3. ctr snapshots commit on containerd c1; a second containerd (c2) with its own
#      snapshotter on the same store adopts it and reads its files
#   4. c2 pulls the image with containerd's own unpacker (client.Pull with unpack, as CRI,
#      nerdctl and Docker's containerd image store do; test/e2e/ctrpull): every layer is
#      answered ALREADY_EXISTS from the store's index (published by c1), no layer blob
#      is fetched from the registry, nothing is unpacked; then runs it
#   5. a snapshotter restart keeps active and committed snapshots usable
#   6. removing images and snapshots unmounts everything the snapshotter mounted
set -euo pipefail
. "$(dirname "$0")/lib.sh"
SNAPSHOTTER=${SNAPSHOTTER:-$REPO/build/snapshotter/slacker-snapshotter}
CTR_BIN=/usr/bin/ctr
e2e_workdir
[ -x "$SNAPSHOTTER" ] || { echo "e2e: $SNAPSHOTTER not built (set SNAPSHOTTER=)" >&2; exit 2; }
[ -x "$CTR_BIN" ] || { echo "e2e: $CTR_BIN missing (apt-get install containerd)" >&2; exit 2; }

# --- helpers: a private containerd with slacker-snapshotter as its proxy plugin

# start_ctrd NAME SNAPSHOTTER_NAME: containerd under $W/NAME, socket $W/NAME/ctd.sock.
start_ctrd() {
  local name=$1 snap=$2 d=$W/$1 pid
  mkdir -p "$d"
  {
    containerd_config "$d" "$d/ctd.sock" io.containerd.snapshotter.v1.aufs io.containerd.snapshotter.v1.btrfs \
      io.containerd.snapshotter.v1.zfs io.containerd.snapshotter.v1.devmapper
    # No garbage collection on a timer: only after a deletion, or when a test asks for it
    # (gc_now). `ctr snapshots view` makes a view with neither a lease nor a gc.root label,
    # which the collector removes at its next run: the startup run (100 ms after start,
    # c2 starts just before its view) or a run after a deletion (issue 16).
    cat <<EOT
[plugins."io.containerd.gc.v1.scheduler"]
  startup_delay = "0s"
  mutation_threshold = 0
[proxy_plugins]
  [proxy_plugins.slacker]
    type = "snapshot"
    address = "$W/$snap.sock"
EOT
  } >"$d/config.toml"
  rm -f "$d/ctd.sock"
  e2e_spawn "ctrd-$name" "$d/containerd.log" "$CONTAINERD_BIN" --config "$d/config.toml"
  pid=$E2E_SPAWNED_PID
  [ -e "$W/.e2e/registered-ctrd-$name" ] || {
    touch "$W/.e2e/registered-ctrd-$name"
    e2e_defer stop_ctrd "$name"
  }
  e2e_wait_for "containerd $name" "$pid" "$d/containerd.log" "$CTR_BIN" -a "$d/ctd.sock" version
}

# stop_ctrd NAME: containerd, then any shim or container process left from its dirs.
stop_ctrd() {
  local name=$1 p
  e2e_stop "ctrd-$name" "containerd $name" 30 || true
  for p in $(e2e_pids_under "$W/$name"); do
    e2e_log "LEAK: process $p still runs from $W/$name"
    e2e_stop_pid "$p" "leftover $p" 5 || true
  done
  e2e_unmount_under "$W/$name"
}

# gc_now NAME: a synchronous garbage collection on containerd NAME (a lease deleted with
# --sync). Afterwards none is pending: with the scheduler configured in start_ctrd, the
# next one runs only after a deletion.
gc_now() {
  local lease
  lease=$(c "$1" leases create | awk '{print $1}')
  c "$1" leases delete --sync "$lease" >/dev/null
}

# c NAME ARGS...: ctr against containerd NAME, bounded in time.
c() {
  local name=$1
  shift
  timeout -k 10 "${E2E_CMD_TIMEOUT:-300}" "$CTR_BIN" -a "$W/$name/ctd.sock" -n e2e "$@"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

store_used_kib() { sync -f "$W/store"; df -k --output=used "$W/store" | tail -1 | tr -d ' '; }
store_snapshots() { find "$W/store/snapshots" -name '*.img' | wc -l; }

# --- setup: a shared store; a slacker dockerd worker pushes a standard and a reference image

make_shared_store "$W/store"
SLK=slk$$a
C1=ctrd$$a
C2=ctrd$$b
start_slackerd "$SLK" --store "$W/store"
REG=$(start_registry)
start_dockerd wa "$SLK" --insecure-registry "$REG"
make_busybox_image wa "$REG/base:1"
dk wa push "$REG/base:1" >/dev/null
# `sync`: slackerd snapshots a stopped container's volume after unmounting it; if another
# mount namespace on the host (another test's `unshare -m`) copied the mount meanwhile,
# the unmount leaves dirty data in that copy's cache and the snapshot misses it. Seen on
# the shared CI machine; a driver issue, not this test's subject (see snapshotter/README.md).
dk wa run --name mk --network none "$REG/base:1" sh -c 'echo from-docker > /data-a; sync' >/dev/null
dk wa commit mk "$REG/app:v1" >/dev/null
dk wa push "$REG/app:v1" >/dev/null
start_snapshotter "$C1" --store "$W/store"
start_ctrd c1 "$C1"

case_pull_and_run_standard_image() {
  local out
  local t0
  t0=$(now_ms)
  c c1 image pull --plain-http --snapshotter slacker "$REG/base:1" >/dev/null
  e2e_log "ctr pull of base:1 (standard layer, unpacked by containerd): $(($(now_ms) - t0)) ms"
  grep -q "event=commit " "$W/$C1-snapshotter.log" || fail "the snapshotter committed no layer"
  # shellcheck disable=SC2016 # expanded by the container's shell: proves it ran there
  out=$(c c1 run --rm --snapshotter slacker "$REG/base:1" t1 sh -c 'echo hello-$((6*7)); ls /bin/busybox')
  assert_eq "hello-42
/bin/busybox" "$out" "ctr run output"
  c c1 snapshots --snapshotter slacker ls | grep -q Committed || fail "no committed snapshot listed"
}

case_pull_reference_image_copies_no_data() {
  local before_kib after_kib before_n after_n out
  before_kib=$(store_used_kib)
  before_n=$(store_snapshots)
  local t0
  t0=$(now_ms)
  c c1 image pull --plain-http --snapshotter slacker "$REG/app:v1" >/dev/null
  e2e_log "ctr pull of app:v1 (base present, reference layer): $(($(now_ms) - t0)) ms"
  after_kib=$(store_used_kib)
  after_n=$(store_snapshots)
  e2e_log "pull of app:v1 (reference layer): store ${before_kib} -> ${after_kib} KiB, snapshots $before_n -> $after_n"
  grep -q "event=commit_reference" "$W/$C1-snapshotter.log" || fail "the reference layer was not resolved"
  assert_eq "$before_n" "$after_n" "snapshots on the store (a reference must not create one)"
  [ $((after_kib - before_kib)) -lt 1024 ] || fail "pulling a reference layer grew the store by $((after_kib - before_kib)) KiB"
  out=$(c c1 run --rm --snapshotter slacker "$REG/app:v1" t2 cat /data-a)
  assert_eq "from-docker" "$out" "file written by the docker worker"
}

# case_commit_seen_by_second_containerd [SUFFIX]: SUFFIX names a repetition
# (E2E_COMMIT_REPEAT); c2 is started by the first run.
case_commit_seen_by_second_containerd() {
  local n=${1:-} parent cmd
  parent=$(chain_ids app v1 | tail -1)
  # The mount command ctr prints is what a user (or containerd) runs: run it.
  mkdir -p "$W/mnt-work$n" "$W/mnt-view$n"
  cmd=$(c c1 snapshots --snapshotter slacker prepare --target "$W/mnt-work$n" "work$n" "$parent")
  assert_contains "$cmd" "mount -t bind "
  eval "$cmd"
  echo committed-on-c1 >"$W/mnt-work$n/commit-marker"
  umount "$W/mnt-work$n"
  local t0
  t0=$(now_ms)
  c c1 snapshots --snapshotter slacker commit "mycommit$n" "work$n"
  e2e_log "ctr snapshots commit: $(($(now_ms) - t0)) ms"
  c c1 snapshots --snapshotter slacker info "mycommit$n" | grep -q '"Kind": "Committed"' ||
    fail "mycommit$n is not committed on c1"
  if [ ! -e "$W/.e2e/registered-ctrd-c2" ]; then
    start_snapshotter "$C2" --store "$W/store"
    start_ctrd c2 "$C2"
  fi
  "$SNAPSHOTTER" adopt --containerd "$W/c2/ctd.sock" --namespace e2e "mycommit$n"
  c c2 snapshots --snapshotter slacker info "mycommit$n" | grep -q '"Kind": "Committed"' ||
    fail "c2 does not know mycommit$n"
  # containerd's garbage collector removes snapshots nothing references (its first run,
  # shortly after start, once raced the adopt): adopt must have made it a gc root.
  c c2 snapshots --snapshotter slacker info "mycommit$n" | grep -q '"containerd.io/gc.root"' ||
    fail "the adopted snapshot is not a gc root"
  # The view has no lease and no gc.root label (ctr's `view` sets neither): a collection
  # before our mount would remove it and unmount its layer, and the mount below would bind
  # the empty mount point ("expected [committed-on-c1], got []", issue 16). Collect first,
  # so none is pending while the view lives; the `rm` below is the next deletion.
  gc_now c2
  cmd=$(c c2 snapshots --snapshotter slacker view --target "$W/mnt-view$n" "v1$n" "mycommit$n")
  eval "$cmd"
  local src
  src=$(findmnt -n -o SOURCE "$W/mnt-view$n")
  case $src in
  /dev/loop*) ;;
  *) fail "the view's mount is not the layer's file system (source $src): the view was removed meanwhile" ;;
  esac
  assert_eq "committed-on-c1" "$(cat "$W/mnt-view$n/commit-marker")" "file committed on c1, read on c2"
  assert_eq "from-docker" "$(cat "$W/mnt-view$n/data-a")" "image content under the commit on c2"
  if touch "$W/mnt-view$n/x" 2>/dev/null; then fail "a view is writable"; fi
  umount "$W/mnt-view$n"
  c c2 snapshots --snapshotter slacker rm "v1$n"
}

# build_ctrpull: test/e2e/ctrpull (containerd's client.Pull with unpack, the path CRI,
# nerdctl and Docker's containerd image store take), built offline in GOPATH mode against
# Debian's containerd Go sources. Sets CTRPULL; returns 1 when the toolchain is missing.
build_ctrpull() {
  command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/containerd/containerd ] || return 1
  mkdir -p "$W/go/src"
  ln -s "$E2E_LIB_DIR/ctrpull" "$W/go/src/ctrpull"
  (cd "$W/go/src/ctrpull" && GO111MODULE=off GOFLAGS='' GOPATH="$W/go:/usr/share/gocode" \
    GOCACHE="${GOCACHE:-/var/tmp/slacker-ctrpull-gocache}" go build -o "$W/ctrpull" .) >"$W/ctrpull-build.log" 2>&1 || {
    tail -20 "$W/ctrpull-build.log" >&2
    fail "building test/e2e/ctrpull failed"
    return
  }
  CTRPULL=$W/ctrpull
}

# GETs the registry served for a blob (its log has one line per request).
blob_gets() { grep -c "GET.*/blobs/$1\|/blobs/$1.*GET" "$W/registry.log" || true; }

case_second_host_unpacker_pull_fetches_no_layer() {
  local before_n after_n out d digests before=() i=0
  if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/containerd/containerd ]; then
    e2e_skip_loud "needs golang-go and golang-github-containerd-containerd-dev to build the unpacker client"
    return 77
  fi
  build_ctrpull
  digests=$(curl -fsS -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "http://$REG/v2/app/manifests/v1" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
  for d in $digests; do before+=("$(blob_gets "$d")"); done
  before_n=$(store_snapshots)
  local t0
  t0=$(now_ms)
  "$CTRPULL" -address "$W/c2/ctd.sock" -namespace e2e -snapshotter slacker "$REG/app:v1" >/dev/null
  e2e_log "unpacker pull of app:v1 on c2 (all layers remote): $(($(now_ms) - t0)) ms"
  after_n=$(store_snapshots)
  for d in $digests; do
    # c1's ctr pull fetched every blob: a zero here means the log format was not understood.
    [ "${before[$i]}" -ge 1 ] || fail "no GET of $d found in $W/registry.log (c1 fetched it)"
    assert_eq "${before[$i]}" "$(blob_gets "$d")" "registry GETs of layer blob $d during c2's pull"
    i=$((i + 1))
  done
  assert_eq "$before_n" "$after_n" "snapshots on the store after c2's pull"
  if grep -q "event=commit " "$W/$C2-snapshotter.log"; then
    fail "c2 unpacked a layer that c1 had already published"
  fi
  [ "$(grep -c "event=remote_snapshot" "$W/$C2-snapshotter.log")" -ge 2 ] ||
    fail "c2 did not take both layers as remote snapshots"
  out=$(c c2 run --rm --snapshotter slacker "$REG/app:v1" t3 cat /data-a)
  assert_eq "from-docker" "$out" "run on c2"
}

case_snapshotter_restart_keeps_snapshots() {
  local parent cmd out
  parent=$(chain_ids app v1 | tail -1)
  mkdir -p "$W/mnt-keep"
  cmd=$(c c1 snapshots --snapshotter slacker prepare --target "$W/mnt-keep" keep "$parent")
  eval "$cmd"
  echo before-restart >"$W/mnt-keep/kept"
  umount "$W/mnt-keep"
  e2e_stop "snap-$C1" "slacker-snapshotter $C1" 30
  start_snapshotter "$C1" --store "$W/store"
  grep -q "event=catalog_loaded snapshots=[1-9]" "$W/$C1-snapshotter.log" || fail "catalog not reloaded"
  cmd=$(c c1 snapshots --snapshotter slacker mounts "$W/mnt-keep" keep)
  eval "$cmd"
  assert_eq "before-restart" "$(cat "$W/mnt-keep/kept")" "active snapshot after a snapshotter restart"
  umount "$W/mnt-keep"
  c c1 snapshots --snapshotter slacker commit kept keep
  out=$(c c1 run --rm --snapshotter slacker "$REG/app:v1" t4 cat /data-a)
  assert_eq "from-docker" "$out" "run after a snapshotter restart"
  c c1 snapshots --snapshotter slacker rm kept
}

case_usage_and_errors_through_ctr() {
  local out
  out=$(c c1 snapshots --snapshotter slacker usage -b mycommit | tail -1)
  assert_contains "$out" "mycommit"
  if c c1 snapshots --snapshotter slacker rm "$(chain_ids base 1 | tail -1)" 2>"$W/rm.err"; then
    fail "removing a snapshot with children succeeded"
  fi
  assert_contains "$(cat "$W/rm.err")" "precondition" "error for a snapshot with children"
}

case_removal_unmounts_everything() {
  local n name
  for n in c1 c2; do
    c "$n" snapshots --snapshotter slacker rm work 2>/dev/null || true
    c "$n" snapshots --snapshotter slacker rm mycommit 2>/dev/null || true
    for name in $(c "$n" images ls -q); do c "$n" images rm --sync "$name" >/dev/null; done
    # containerd removes a deleted snapshot from the snapshotter only when it collects:
    # collect now rather than hope the one scheduled after the deletions has run.
    gc_now "$n"
  done
  for n in "$C1" "$C2"; do
    [ -z "$(e2e_mounts_under "$W/$n-state/driver/mnt")" ] ||
      fail "mounts left under $n: $(e2e_mounts_under "$W/$n-state/driver/mnt" | tr '\n' ' ')"
  done
}

# E2E_COMMIT_REPEAT=N: only the cases the commit case needs, then the commit case N
# times (issue 16: it lost the committed file intermittently).
if [ "${E2E_COMMIT_REPEAT:-0}" -gt 0 ]; then
  run_case "pull and run a standard image" case_pull_and_run_standard_image
  run_case "pull a reference image: no data copied" case_pull_reference_image_copies_no_data
  for ((i = 1; i <= E2E_COMMIT_REPEAT; i++)); do
    run_case "commit seen by a second containerd ($i of $E2E_COMMIT_REPEAT)" case_commit_seen_by_second_containerd "-$i"
  done
  for ((i = 1; i <= E2E_COMMIT_REPEAT; i++)); do
    for n in c1 c2; do c "$n" snapshots --snapshotter slacker rm "mycommit-$i" 2>/dev/null || true; done
  done
  run_case "removing images and snapshots unmounts" case_removal_unmounts_everything
  e2e_summary
  exit
fi
run_case "pull and run a standard image" case_pull_and_run_standard_image
run_case "pull a reference image: no data copied" case_pull_reference_image_copies_no_data
run_case "commit seen by a second containerd" case_commit_seen_by_second_containerd
run_case "second host pulls through containerd's unpacker: no layer fetched" case_second_host_unpacker_pull_fetches_no_layer
run_case "snapshotter restart keeps snapshots" case_snapshotter_restart_keeps_snapshots
run_case "usage and error codes through ctr" case_usage_and_errors_through_ctr
run_case "removing images and snapshots unmounts" case_removal_unmounts_everything
e2e_summary
